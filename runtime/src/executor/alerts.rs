//! Accepted alerts read back: one by id, or a page of those whose id starts
//! with a prefix (a hunt's findings are alerts `hunt:<name>:<rule>:<event>`).
//!
//! Intake keeps each alert's record in the `alerts` tree under
//! `tenant\0<alert id>`: the alert as received, its body's sha256, the runs
//! it started and the runs it was folded into. Records written before the
//! alert itself was kept have no `alert`; they are answered from the first
//! run that holds it.

use serde::{Deserialize, Serialize};

use super::{Executor, ExecutorError, key, store_err};
use crate::model::Alert;
use crate::tenant::TenantId;

/// The most alerts one page returns.
pub const MAX_ALERT_PAGE: usize = 500;

/// An accepted alert with what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertRecord {
    /// The alert as received (`None` only for a record of an older
    /// version whose runs are gone).
    pub alert: Option<Alert>,
    /// sha256 of the alert's body (a repeat with another body is refused).
    pub sha256: String,
    /// Runs it started.
    #[serde(default)]
    pub runs: Vec<String>,
    /// Runs it was folded into (deduplicated).
    #[serde(default)]
    pub folded_into: Vec<String>,
    /// When it was accepted, Unix milliseconds.
    #[serde(default)]
    pub received: i64,
}

/// A page of alerts, in id order.
#[derive(Debug, Clone, Serialize)]
pub struct AlertPage {
    /// The alerts.
    pub alerts: Vec<AlertRecord>,
    /// The id to pass as `after` for the next page, if there may be more.
    pub next: Option<String>,
}

impl Executor {
    /// Alert `id` of `tenant`, if it was accepted.
    pub fn alert(&self, tenant: &TenantId, id: &str) -> Result<Option<AlertRecord>, ExecutorError> {
        let Some(bytes) = self.inner.alerts.get(key(&[tenant.as_str(), id]))? else {
            return Ok(None);
        };
        self.alert_record(tenant, &bytes).map(Some)
    }

    /// Up to `limit` (at most [`MAX_ALERT_PAGE`]) alerts of `tenant` whose
    /// id starts with `prefix`, in id order, after the id `after`.
    pub fn alerts_page(
        &self,
        tenant: &TenantId,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AlertPage, ExecutorError> {
        let limit = limit.clamp(1, MAX_ALERT_PAGE);
        let start = key(&[tenant.as_str(), prefix]);
        let mut low = start.clone();
        if let Some(after) = after {
            // Strictly after the cursor: its key with a zero byte appended.
            low = key(&[tenant.as_str(), after]);
            low.push(0);
            low = low.max(start.clone());
        }
        let mut alerts = Vec::new();
        let tenant_prefix = key(&[tenant.as_str(), ""]);
        for entry in self.inner.alerts.range(low..) {
            let (k, bytes) = entry?;
            if !k.starts_with(&start) {
                break;
            }
            alerts.push(self.alert_record(tenant, &bytes)?);
            if alerts.len() == limit {
                let id = String::from_utf8_lossy(&k[tenant_prefix.len()..]).into_owned();
                return Ok(AlertPage {
                    alerts,
                    next: Some(id),
                });
            }
        }
        Ok(AlertPage { alerts, next: None })
    }

    fn alert_record(&self, tenant: &TenantId, bytes: &[u8]) -> Result<AlertRecord, ExecutorError> {
        let mut record: AlertRecord = serde_json::from_slice(bytes).map_err(store_err)?;
        if record.alert.is_none() {
            for run in record.runs.iter().chain(&record.folded_into) {
                match self.get_run(tenant, run) {
                    Ok(run) => {
                        record.alert = Some(run.alert);
                        break;
                    }
                    Err(ExecutorError::RunNotFound(_)) => {}
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(record)
    }
}
