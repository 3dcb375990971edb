//! The work queue: intake puts work on it, workers take it off.
//!
//! An accepted alert's runs, and a decided approval's continuation, are
//! [`Work`] items. [`WorkQueue`] is the seam: [`LocalQueue`] is the
//! in-process queue; `rampart-nats` puts NATS JetStream behind it so that
//! several nodes share one queue.
//!
//! Nothing here is durable on its own, by design: every item is recomputed
//! from the run journal after a restart (a run still `running`; an approval
//! decided but not yet applied to its run — see [`super::Executor::resume`]).
//! An item may therefore be delivered more than once; each is idempotent
//! (a run that is no longer running, or an approval already applied, is a
//! no-op).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::tenant::TenantId;

/// One unit of work, always about one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Continue a run until it finishes or waits for a human.
    Run {
        /// The run's tenant.
        tenant: TenantId,
        /// The run.
        run: String,
    },
    /// An approval was decided (approved, denied or expired): apply the
    /// decision to its step and continue the run.
    Decided {
        /// The run's tenant.
        tenant: TenantId,
        /// The run.
        run: String,
        /// The approval.
        approval: String,
    },
}

impl Work {
    /// The tenant whose share this work counts against.
    pub fn tenant(&self) -> &TenantId {
        match self {
            Work::Run { tenant, .. } | Work::Decided { tenant, .. } => tenant,
        }
    }

    /// The run this work changes: at most one item per run is worked on
    /// at a time.
    pub fn run(&self) -> &str {
        match self {
            Work::Run { run, .. } | Work::Decided { run, .. } => run,
        }
    }

    fn run_key(&self) -> (TenantId, String) {
        (self.tenant().clone(), self.run().to_owned())
    }
}

/// A delivered item; [`WorkQueue::ack`] it once its effects are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What to do.
    pub work: Work,
    /// The queue's own handle on this delivery (a shared queue maps it to
    /// its broker's message; the local queue leaves it 0).
    pub tag: u64,
}

/// What became of a delivered item. A shared queue tells every node, so a
/// caller waiting on one node learns that another node finished the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The item.
    pub work: Work,
    /// Why the worker failed on it, if it did (the run resumes later).
    pub failure: Option<String>,
    /// The node that worked on it.
    pub node: String,
}

/// Why the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue was closed (its executor is gone).
    #[error("the work queue is closed")]
    Closed,
    /// The broker behind a shared queue refused or did not answer.
    #[error("work queue broker: {0}")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where intake leaves work and workers take it.
///
/// Contract: [`WorkQueue::next`] hands out an item only while its tenant has
/// fewer than its share of items in flight, and never two items of one run
/// at once; tenants take turns, so one tenant's backlog does not delay
/// another's work. An item is in flight from delivery until its ack.
pub trait WorkQueue: Send + Sync + 'static {
    /// Adds `work`. Returns `false` when the same item is already queued or
    /// in flight (it is not added twice).
    fn push(&self, work: Work) -> Result<bool, QueueError>;
    /// The next item a worker may take; `None` once closed.
    fn next(&self) -> BoxFuture<'_, Option<Delivery>>;
    /// The item's work is done (or given up on, with `failure` saying
    /// why): frees its run and its tenant's share.
    fn ack(&self, delivery: &Delivery, failure: Option<&str>);
    /// The item cannot be worked on now (another node holds its run): frees
    /// its run and share here and delivers it again after `after`.
    fn retry(&self, delivery: &Delivery, after: std::time::Duration);
    /// How many items of `tenant` may be in flight at once.
    fn set_share(&self, tenant: &TenantId, share: usize);
    /// Items queued and not yet delivered.
    fn depth(&self) -> usize;
    /// Wakes every waiting worker with `None`.
    fn close(&self);
    /// Whether other nodes take items from this queue too: a worker then
    /// holds its run's lease while it works, and waiters learn of
    /// completions from [`WorkQueue::completions`] instead of from their own
    /// workers.
    fn shared(&self) -> bool {
        false
    }
    /// Every node's completions (a shared queue only).
    fn completions(&self) -> Option<tokio::sync::broadcast::Receiver<Completion>> {
        None
    }
}

#[derive(Default)]
struct Lanes {
    /// Per tenant, its items in arrival order.
    lanes: BTreeMap<TenantId, VecDeque<Work>>,
    /// The tenant served last (turns go round in tenant order).
    turn: Option<TenantId>,
    in_flight: HashMap<TenantId, usize>,
    shares: HashMap<TenantId, usize>,
    /// Runs with an item in flight.
    busy: HashSet<(TenantId, String)>,
    /// Items queued or in flight (no item is added twice).
    present: HashSet<Work>,
    depth: usize,
    closed: bool,
}

impl Lanes {
    fn share(&self, tenant: &TenantId, default_share: usize) -> usize {
        self.shares.get(tenant).copied().unwrap_or(default_share)
    }

    /// The next deliverable item, taking tenants in turn after the last one
    /// served.
    fn take(&mut self, default_share: usize) -> Option<Work> {
        let tenants: Vec<TenantId> = match &self.turn {
            Some(last) => {
                let after = self
                    .lanes
                    .range::<TenantId, _>((
                        std::ops::Bound::Excluded(last),
                        std::ops::Bound::Unbounded,
                    ))
                    .map(|(t, _)| t.clone());
                let upto = self
                    .lanes
                    .range::<TenantId, _>(..=last)
                    .map(|(t, _)| t.clone());
                after.chain(upto).collect()
            }
            None => self.lanes.keys().cloned().collect(),
        };
        for tenant in tenants {
            if self.in_flight.get(&tenant).copied().unwrap_or(0)
                >= self.share(&tenant, default_share)
            {
                continue;
            }
            let Some(lane) = self.lanes.get_mut(&tenant) else {
                continue;
            };
            let Some(index) = lane
                .iter()
                .position(|work| !self.busy.contains(&work.run_key()))
            else {
                continue;
            };
            let Some(work) = lane.remove(index) else {
                continue;
            };
            if lane.is_empty() {
                self.lanes.remove(&tenant);
            }
            self.depth -= 1;
            self.busy.insert(work.run_key());
            *self.in_flight.entry(tenant.clone()).or_default() += 1;
            self.turn = Some(tenant);
            return Some(work);
        }
        None
    }
}

/// The in-process queue: per-tenant lanes served in turn, a share of
/// in-flight items per tenant, one item per run at a time.
pub struct LocalQueue {
    lanes: Arc<Mutex<Lanes>>,
    ready: Arc<tokio::sync::Notify>,
    default_share: usize,
}

fn lock_lanes(lanes: &Mutex<Lanes>) -> std::sync::MutexGuard<'_, Lanes> {
    lanes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn push_to(
    lanes: &Mutex<Lanes>,
    ready: &tokio::sync::Notify,
    work: Work,
) -> Result<bool, QueueError> {
    let mut lanes = lock_lanes(lanes);
    if lanes.closed {
        return Err(QueueError::Closed);
    }
    if !lanes.present.insert(work.clone()) {
        return Ok(false);
    }
    lanes
        .lanes
        .entry(work.tenant().clone())
        .or_default()
        .push_back(work);
    lanes.depth += 1;
    drop(lanes);
    ready.notify_waiters();
    Ok(true)
}

impl LocalQueue {
    /// A queue where a tenant without a share of its own may have
    /// `default_share` items in flight.
    pub fn new(default_share: usize) -> Self {
        LocalQueue {
            lanes: Arc::new(Mutex::new(Lanes::default())),
            ready: Arc::new(tokio::sync::Notify::new()),
            default_share: default_share.max(1),
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        lock_lanes(&self.lanes)
    }

    /// Items of `tenant` queued here or in flight.
    pub fn held(&self, tenant: &TenantId) -> usize {
        let lanes = self.lanes();
        lanes.lanes.get(tenant).map_or(0, VecDeque::len)
            + lanes.in_flight.get(tenant).copied().unwrap_or(0)
    }

    /// The share of items in flight `tenant` has.
    pub fn share_of(&self, tenant: &TenantId) -> usize {
        self.lanes().share(tenant, self.default_share)
    }
}

impl WorkQueue for LocalQueue {
    fn push(&self, work: Work) -> Result<bool, QueueError> {
        push_to(&self.lanes, &self.ready, work)
    }

    fn next(&self) -> BoxFuture<'_, Option<Delivery>> {
        Box::pin(async move {
            loop {
                // Registered before the check, so a push between the check
                // and the wait is not missed.
                let notified = self.ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut lanes = self.lanes();
                    if lanes.closed {
                        return None;
                    }
                    if let Some(work) = lanes.take(self.default_share) {
                        return Some(Delivery { work, tag: 0 });
                    }
                }
                notified.await;
            }
        })
    }

    fn ack(&self, delivery: &Delivery, _failure: Option<&str>) {
        let mut lanes = self.lanes();
        let work = &delivery.work;
        lanes.present.remove(work);
        lanes.busy.remove(&work.run_key());
        if let Some(count) = lanes.in_flight.get_mut(work.tenant()) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                lanes.in_flight.remove(work.tenant());
            }
        }
        drop(lanes);
        self.ready.notify_waiters();
    }

    fn retry(&self, delivery: &Delivery, after: std::time::Duration) {
        self.ack(delivery, None);
        let work = delivery.work.clone();
        let lanes = self.lanes.clone();
        let ready = self.ready.clone();
        let requeue = async move {
            tokio::time::sleep(after).await;
            push_to(&lanes, &ready, work)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(requeue)),
            Err(_) => tracing::warn!(?delivery, "no runtime to deliver a retried item again"),
        }
    }

    fn set_share(&self, tenant: &TenantId, share: usize) {
        self.lanes().shares.insert(tenant.clone(), share.max(1));
        self.ready.notify_waiters();
    }

    fn depth(&self) -> usize {
        self.lanes().depth
    }

    fn close(&self) {
        self.lanes().closed = true;
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).unwrap_or_else(|err| panic!("{err}"))
    }

    fn run(t: &str, id: &str) -> Work {
        Work::Run {
            tenant: tenant(t),
            run: id.to_owned(),
        }
    }

    async fn take(queue: &LocalQueue) -> Option<Delivery> {
        tokio::time::timeout(std::time::Duration::from_millis(50), queue.next())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn tenants_take_turns_within_their_shares() {
        let queue = LocalQueue::new(2);
        for i in 0..10 {
            assert!(queue.push(run("acme", &format!("a{i}"))).is_ok());
        }
        assert!(queue.push(run("beta", "b0")).is_ok());
        assert!(queue.push(run("beta", "b1")).is_ok());
        let mut order = Vec::new();
        while let Some(delivery) = take(&queue).await {
            order.push(delivery.work.run().to_owned());
        }
        // acme's share is 2: its backlog does not hold beta back.
        assert_eq!(order, ["a0", "b0", "a1", "b1"]);
        assert_eq!(queue.depth(), 8);
    }

    #[tokio::test]
    async fn one_item_per_run_at_a_time_and_no_item_twice() {
        let queue = LocalQueue::new(8);
        let decided = Work::Decided {
            tenant: tenant("acme"),
            run: "r1".to_owned(),
            approval: "r1.block".to_owned(),
        };
        assert!(matches!(queue.push(run("acme", "r1")), Ok(true)));
        assert!(matches!(queue.push(run("acme", "r1")), Ok(false)));
        assert!(matches!(queue.push(decided.clone()), Ok(true)));
        let first = take(&queue).await;
        assert_eq!(first.as_ref().map(|d| d.work.run()), Some("r1"));
        // The decision waits while the run is being worked on.
        assert!(take(&queue).await.is_none());
        if let Some(first) = &first {
            queue.ack(first, None);
        }
        let second = take(&queue).await;
        assert_eq!(second.map(|d| d.work), Some(decided));
    }

    #[tokio::test]
    async fn close_wakes_waiting_workers() {
        let queue = std::sync::Arc::new(LocalQueue::new(1));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        queue.close();
        let woke = tokio::time::timeout(std::time::Duration::from_secs(2), waiting).await;
        assert!(matches!(woke, Ok(Ok(None))));
        assert!(matches!(
            queue.push(run("acme", "r")),
            Err(QueueError::Closed)
        ));
    }
}
