//! Workers: what intake and decisions put on the [`WorkQueue`] is taken
//! off by a dispatcher and worked on in tasks of its own — never inside the
//! request that caused it, so a client that hangs up interrupts nothing.
//! Callers that want the outcome wait with [`Executor::settle`].

use super::approvals::ApprovalStatus;
use super::queue::{Completion, Delivery, Work, WorkQueue};
use super::run::{RunStatus, StepState, StepStatus};
use super::{Executor, ExecutorError, Inner, StepResult, read_lock};
use crate::audit::AuditKind;
use crate::model::now_ms;
use crate::tenant::TenantId;
use std::sync::Arc;
use std::time::Duration;

/// How often the workers deny approvals whose time ran out.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// The lease of approval expiry on a shared queue.
const EXPIRY_LEASE: &str = "timer\0approval-expiry";

/// On a shared queue, every this many expiry ticks the node holding the
/// expiry lease sweeps the journal for runs nobody holds (see `resume`).
const SWEEP_EVERY_TICKS: u64 = 10;

/// When an item whose run another node holds comes back.
const HELD_ELSEWHERE: Duration = Duration::from_millis(500);

/// Work not yet done for one run, and who waits for it.
#[derive(Default)]
pub(super) struct Outstanding {
    count: usize,
    /// The last failure of an item of this run since it was last settled.
    failure: Option<Arc<ExecutorError>>,
    waiters: Vec<tokio::sync::oneshot::Sender<Option<Arc<ExecutorError>>>>,
}

type RunKey = (TenantId, String);

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Executor {
    /// Puts `work` on the queue (starting the workers on first use).
    pub(super) fn enqueue(&self, work: Work) -> Result<(), ExecutorError> {
        self.start_workers();
        let run_key = (work.tenant().clone(), work.run().to_owned());
        if self.inner.queue.shared() {
            // Counted before the push, which waits for the broker: not under
            // the lock (a worker finishing meanwhile would block a tokio
            // worker on it while the broker's reply needs one), and early
            // enough that a completion from another node is not missed.
            lock(&self.inner.outstanding)
                .entry(run_key.clone())
                .or_default()
                .count += 1;
            if let Err(err) = self.inner.queue.push(work) {
                self.complete(&run_key, None);
                return Err(err.into());
            }
            return Ok(());
        }
        // Counted under the lock a finishing worker takes, so its
        // completion cannot be missed by a waiter.
        let mut outstanding = lock(&self.inner.outstanding);
        if self.inner.queue.push(work)? {
            outstanding.entry(run_key).or_default().count += 1;
        }
        Ok(())
    }

    /// Starts the dispatcher (and the approval-expiry tick) if it is not
    /// running on this tokio runtime.
    pub(super) fn start_workers(&self) {
        let mut slot = lock(&self.inner.dispatcher);
        if slot.as_ref().is_some_and(|handle| !handle.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let queue = self.inner.queue.clone();
        let inner = Arc::downgrade(&self.inner);
        *slot = Some(runtime.spawn(dispatch(queue, inner)));
    }

    /// Items queued and not yet taken by a worker.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue.depth()
    }

    /// Waits until no work is queued or in flight for any of `runs` of
    /// `tenant` — each has finished or waits for a human — or until
    /// `deadline` passes. Whether all settled; a failure of a worker on one
    /// of them is returned.
    pub async fn settle(
        &self,
        tenant: &TenantId,
        runs: &[String],
        deadline: Option<Duration>,
    ) -> Result<bool, ExecutorError> {
        let mut waiting = Vec::new();
        {
            let mut outstanding = lock(&self.inner.outstanding);
            for run in runs {
                let run_key = (tenant.clone(), run.clone());
                if let Some(entry) = outstanding.get_mut(&run_key) {
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    entry.waiters.push(sender);
                    waiting.push((run.clone(), receiver));
                }
            }
        }
        let all = async {
            for (run, receiver) in waiting {
                if let Ok(Some(failure)) = receiver.await {
                    return Err(ExecutorError::Worker { run, failure });
                }
            }
            Ok(true)
        };
        match deadline {
            Some(deadline) => tokio::time::timeout(deadline, all)
                .await
                .unwrap_or(Ok(false)),
            None => all.await,
        }
    }

    async fn work_on(self, delivery: Delivery) {
        use futures::FutureExt;
        let work = delivery.work.clone();
        // On a shared queue another node may hold this run (a redelivery,
        // a continuation queued while it still works on the run): the
        // run's lease decides, and the item comes back later.
        let lease = match &self.inner.leases {
            Some(leases) => {
                let name = crate::cluster::run_lease(work.tenant().as_str(), work.run());
                match leases.take(&name, crate::cluster::RUN_LEASE) {
                    Ok(true) => Some(LeaseKeeper::start(leases.clone(), name)),
                    Ok(false) => {
                        self.inner.queue.retry(&delivery, HELD_ELSEWHERE);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(?work, error = %err, "taking a run's lease failed; the item comes back");
                        self.inner.queue.retry(&delivery, HELD_ELSEWHERE);
                        return;
                    }
                }
            }
            None => None,
        };
        if lease.is_some() {
            let refresh = read_lock(&self.inner.refresh).clone();
            if let Some(refresh) = refresh {
                refresh().await;
            }
        }
        let outcome = std::panic::AssertUnwindSafe(self.work(&work))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ExecutorError::WorkerPanicked(format!("{work:?}"))));
        if let Err(err) = &outcome {
            tracing::warn!(?work, error = %err, "work item failed; the run resumes at the next start");
        }
        // Released after the item's effects are committed and before the
        // ack: a crash between the two redelivers an item that is a no-op.
        if let Some(lease) = lease {
            lease.release();
        }
        let failure = outcome.as_ref().err().map(ToString::to_string);
        self.inner.queue.ack(&delivery, failure.as_deref());
        if self.inner.queue.shared() {
            // Waiters on every node (this one too) learn of it from the
            // queue's completions.
            return;
        }
        let run_key: RunKey = (work.tenant().clone(), work.run().to_owned());
        self.complete(&run_key, outcome.err().map(Arc::new));
    }

    /// One item of `run_key` is done: the last one tells its waiters.
    fn complete(&self, run_key: &RunKey, failure: Option<Arc<ExecutorError>>) {
        let mut outstanding = lock(&self.inner.outstanding);
        let Some(entry) = outstanding.get_mut(run_key) else {
            return;
        };
        if let Some(failure) = failure {
            entry.failure = Some(failure);
        }
        entry.count = entry.count.saturating_sub(1);
        if entry.count == 0
            && let Some(entry) = outstanding.remove(run_key)
        {
            for waiter in entry.waiters {
                let _ = waiter.send(entry.failure.clone());
            }
        }
    }

    /// A completion from the shared queue (any node's, this one's too).
    fn completed(&self, completion: Completion) {
        let run_key: RunKey = (
            completion.work.tenant().clone(),
            completion.work.run().to_owned(),
        );
        let failure = completion.failure.map(|failure| {
            Arc::new(ExecutorError::Remote {
                node: completion.node,
                failure,
            })
        });
        self.complete(&run_key, failure);
    }

    /// Denies expired approvals — on a shared queue only on the node that
    /// holds the expiry lease, so the cluster does it once.
    async fn expiry_tick(&self, tick: u64) -> Result<(), ExecutorError> {
        let Some(leases) = &self.inner.leases else {
            return self.expire_approvals(now_ms()).await.map(|_| ());
        };
        if !leases.take(EXPIRY_LEASE, crate::cluster::TIMER_LEASE)? {
            return Ok(());
        }
        if tick.is_multiple_of(SWEEP_EVERY_TICKS) {
            // What no node holds and no queue will bring: a run whose node
            // died after saving it and before its alert was accepted (ended
            // as never accepted), or after accepting and before queueing
            // it (queued again). The same pass as at start-up.
            self.resume().await?;
            return Ok(());
        }
        self.expire_approvals(now_ms()).await.map(|_| ())
    }

    async fn work(&self, work: &Work) -> Result<(), ExecutorError> {
        match work {
            Work::Run { tenant, run } => {
                let mut run = self.get_run(tenant, run)?;
                if run.status != RunStatus::Running {
                    return Ok(());
                }
                let playbook = self.playbook_of(&run)?;
                self.drive(&mut run, &playbook).await
            }
            Work::Decided {
                tenant,
                run,
                approval,
            } => self.continue_decided(tenant, run, approval).await,
        }
    }

    /// Applies a decided approval to its step — the approved action runs
    /// (re-checked, bound to exactly what was approved), a denied or
    /// expired one is closed as denied — and continues the run. A no-op
    /// once applied, so a redelivery after a crash changes nothing.
    async fn continue_decided(
        &self,
        tenant: &TenantId,
        run_id: &str,
        approval_id: &str,
    ) -> Result<(), ExecutorError> {
        let approval = self.inner.approvals.get(tenant, approval_id)?;
        if approval.status == ApprovalStatus::Pending {
            return Ok(());
        }
        let mut run = self.get_run(tenant, run_id)?;
        let waiting = run.steps.get(&approval.step_id).is_some_and(|state| {
            state.status == StepStatus::WaitingApproval
                && state.approval_id.as_deref() == Some(approval.id.as_str())
        });
        if !waiting {
            self.inner.approvals.applied(&approval)?;
            return Ok(());
        }
        let playbook = self.playbook_of(&run)?;
        let Some(step) = playbook.step(&approval.step_id).cloned() else {
            return Err(ExecutorError::PlaybookNotFound(approval.step_id.clone()));
        };
        let state = run
            .steps
            .get(&step.id)
            .cloned()
            .unwrap_or_else(StepState::pending);
        if approval.status == ApprovalStatus::Approved {
            let result = StepResult {
                id: step.id.clone(),
                state: state.clone(),
                audit: Vec::new(),
                approval: None,
                acted: None,
                scored: false,
            };
            let result = self
                .execute_approved(&run, &playbook, &step, &approval, result, state)
                .await?;
            let actor = approval.approvals.last().map(|vote| vote.principal.clone());
            // An approved action asks for no further approval.
            let mut requested = Vec::new();
            if self.apply(
                &mut run,
                &playbook,
                result,
                actor.as_deref(),
                &mut requested,
            )? {
                // The approved action failed and its step does not continue:
                // the run fails, as it would have in a wave of `drive`.
                run.status = RunStatus::Failed;
                self.finish(&mut run, &playbook)?;
                self.inner.approvals.applied(&approval)?;
                return Ok(());
            }
        } else {
            let (kind, reason) = match &approval.denial {
                Some(vote) => (AuditKind::ApprovalDenied, vote.reason.clone()),
                None => (AuditKind::ApprovalExpired, "approval timed out".to_owned()),
            };
            if let Some(state) = run.steps.get_mut(&approval.step_id) {
                state.status = StepStatus::Denied;
                state.finished = Some(now_ms());
                state.error = Some(format!("{kind:?}: {reason}"));
            }
        }
        run.status = RunStatus::Running;
        self.save(&run)?;
        self.inner.approvals.applied(&approval)?;
        self.drive(&mut run, &playbook).await
    }
}

/// Takes items off `queue` and works on each in a task of its own until the
/// queue closes or the executor is gone; denies expired approvals on a tick.
async fn dispatch(queue: Arc<dyn WorkQueue>, inner: std::sync::Weak<Inner>) {
    let mut expiry = tokio::time::interval(EXPIRY_TICK);
    let mut ticks: u64 = 0;
    let mut completions = queue.completions();
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            delivery = queue.next() => {
                let Some(delivery) = delivery else { break };
                let Some(inner) = inner.upgrade() else {
                    queue.ack(&delivery, Some("the executor is gone"));
                    break;
                };
                tokio::spawn(Executor { inner }.work_on(delivery));
            }
            _ = expiry.tick() => {
                let Some(inner) = inner.upgrade() else { break };
                ticks += 1;
                if let Err(err) = (Executor { inner }).expiry_tick(ticks).await {
                    tracing::warn!(error = %err, "expiring approvals failed");
                }
            }
            completion = next_completion(&mut completions) => {
                let Some(completion) = completion else {
                    completions = None;
                    continue;
                };
                let Some(inner) = inner.upgrade() else { break };
                (Executor { inner }).completed(completion);
            }
        }
    }
}

/// The next completion from a shared queue; never, for a local one. `None`
/// when the queue's completions ended.
async fn next_completion(
    completions: &mut Option<tokio::sync::broadcast::Receiver<Completion>>,
) -> Option<Completion> {
    let Some(receiver) = completions else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(completion) => return Some(completion),
            // A waiter that missed its completion times out as it would
            // when the work takes too long; nothing else depends on it.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "missed completions from the shared queue");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Keeps a run's lease while a worker works on it: renewed every third of
/// its time to live, released when the work is done.
struct LeaseKeeper {
    leases: crate::cluster::Leases,
    name: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    fn start(leases: crate::cluster::Leases, name: String) -> Self {
        let renewer = {
            let (leases, name) = (leases.clone(), name.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::cluster::RUN_LEASE / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match leases.take(&name, crate::cluster::RUN_LEASE) {
                        Ok(true) => {}
                        Ok(false) => tracing::error!(
                            lease = %name.replace('\0', "/"),
                            "another node took the lease of a run this node still works on (this node stalled past the lease)"
                        ),
                        Err(err) => tracing::warn!(error = %err, "renewing a run's lease failed"),
                    }
                }
            })
        };
        LeaseKeeper {
            leases,
            name,
            renewer,
        }
    }

    fn release(self) {
        self.renewer.abort();
        if let Err(err) = self.leases.release(&self.name) {
            tracing::warn!(error = %err, "releasing a run's lease failed; it expires");
        }
    }
}
