//! Workers: what intake and decisions put on the [`WorkQueue`] is taken
//! off by a dispatcher and worked on in tasks of its own — never inside the
//! request that caused it, so a client that hangs up interrupts nothing.
//! Callers that want the outcome wait with [`Executor::settle`].

use super::approvals::ApprovalStatus;
use super::queue::{Delivery, Work, WorkQueue};
use super::run::{RunStatus, StepState, StepStatus};
use super::{Executor, ExecutorError, Inner, StepResult};
use crate::audit::AuditKind;
use crate::model::now_ms;
use crate::tenant::TenantId;
use std::sync::Arc;
use std::time::Duration;

/// How often the workers deny approvals whose time ran out.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

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
        let outcome = std::panic::AssertUnwindSafe(self.work(&work))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ExecutorError::WorkerPanicked(format!("{work:?}"))));
        if let Err(err) = &outcome {
            tracing::warn!(?work, error = %err, "work item failed; the run resumes at the next start");
        }
        self.inner.queue.ack(&delivery);
        let run_key: RunKey = (work.tenant().clone(), work.run().to_owned());
        let mut outstanding = lock(&self.inner.outstanding);
        let Some(entry) = outstanding.get_mut(&run_key) else {
            return;
        };
        if let Err(err) = outcome {
            entry.failure = Some(Arc::new(err));
        }
        entry.count = entry.count.saturating_sub(1);
        if entry.count == 0
            && let Some(entry) = outstanding.remove(&run_key)
        {
            for waiter in entry.waiters {
                let _ = waiter.send(entry.failure.clone());
            }
        }
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
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            delivery = queue.next() => {
                let Some(delivery) = delivery else { break };
                let Some(inner) = inner.upgrade() else {
                    queue.ack(&delivery);
                    break;
                };
                tokio::spawn(Executor { inner }.work_on(delivery));
            }
            _ = expiry.tick() => {
                let Some(inner) = inner.upgrade() else { break };
                if let Err(err) = (Executor { inner }).expire_approvals(now_ms()).await {
                    tracing::warn!(error = %err, "expiring approvals failed");
                }
            }
        }
    }
}
