//! The persisted state of a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::guardrails::Decision;
use crate::model::{Alert, Entity};
use crate::playbook::Mode;
use crate::tenant::TenantId;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Steps are running (or will resume after a restart).
    Running,
    /// Waiting for a human on at least one action.
    WaitingApproval,
    /// Every step finished without a failing error.
    Succeeded,
    /// Finished, but at least one step failed under `on_error: continue`
    /// (its error is on the step): the run went on without that output.
    SucceededWithErrors,
    /// A step failed under `on_error: fail`.
    Failed,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started (if found after a restart, it is resumed or reconciled).
    Running,
    /// Finished with output.
    Succeeded,
    /// `when` was false, or a step it needs did not succeed.
    Skipped,
    /// Failed (see `error`).
    Failed,
    /// A responder action waits for approval.
    WaitingApproval,
    /// Guardrails refused the action (protected target, or re-check failed).
    Refused,
    /// A human denied the action, or its approval expired.
    Denied,
}

impl RunStatus {
    /// The status as the API writes it (`succeeded_with_errors`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::WaitingApproval => "waiting_approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::SucceededWithErrors => "succeeded_with_errors",
            RunStatus::Failed => "failed",
        }
    }

    /// Whether the run is over (succeeded, with or without step errors, or
    /// failed).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::SucceededWithErrors | RunStatus::Failed
        )
    }
}

impl StepStatus {
    /// Whether the step is done for good.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            StepStatus::Pending | StepStatus::Running | StepStatus::WaitingApproval
        )
    }
}

/// One step's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// Status.
    pub status: StepStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Output visible to later CEL as `steps.<id>`.
    pub output: Option<serde_json::Value>,
    /// Error, if it failed.
    pub error: Option<String>,
    /// Responders: the guardrail decision.
    pub decision: Option<Decision>,
    /// Responders: the target.
    pub target: Option<Entity>,
    /// Responders: the pending approval.
    pub approval_id: Option<String>,
    /// Started, Unix ms.
    pub started: Option<i64>,
    /// Finished, Unix ms.
    pub finished: Option<i64>,
}

impl StepState {
    pub(crate) fn pending() -> Self {
        StepState {
            status: StepStatus::Pending,
            attempts: 0,
            output: None,
            error: None,
            decision: None,
            target: None,
            approval_id: None,
            started: None,
            finished: None,
        }
    }
}

/// A run of one playbook on one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant: TenantId,
    /// Playbook name.
    pub playbook: String,
    /// Playbook version at start.
    pub playbook_version: u32,
    /// sha256 of the playbook source at start (the run keeps using it).
    pub playbook_sha256: String,
    /// Plugin name → digest at start (the run keeps using them).
    pub plugins: BTreeMap<String, String>,
    /// Mode at start.
    pub mode: Mode,
    /// Whether this is a dry run / replay (nothing persisted, nothing acts).
    pub dry_run: bool,
    /// The alert.
    pub alert: Alert,
    /// Alerts folded into this run by dedup.
    pub folded: Vec<String>,
    /// Status.
    pub status: RunStatus,
    /// Step id → state.
    pub steps: BTreeMap<String, StepState>,
    /// Targets acted on ("kind:value").
    pub acted: Vec<String>,
    /// Created, Unix ms.
    pub created: i64,
    /// When a score step first finished, Unix ms (MTTD = this - alert.time).
    pub verdict_at: Option<i64>,
    /// When an action first executed, Unix ms (MTTC = this - alert.time).
    pub contained_at: Option<i64>,
    /// Finished, Unix ms.
    pub finished: Option<i64>,
    /// Analyst feedback on the run, newest last.
    #[serde(default)]
    pub feedback: Vec<crate::model::Feedback>,
}
