//! Per-tenant quotas on plugin calls: a fuel budget per minute shared by all
//! the tenant's calls, and a memory cap per call. (The cap on concurrent
//! runs lives in the executor, which owns runs.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tenant::{Limits, TenantId, TenantQuota};

use super::PluginError;

const WINDOW: Duration = Duration::from_secs(60);

struct QuotaState {
    quota: TenantQuota,
    window_start: Instant,
    fuel_used: u64,
}

/// What a call was admitted with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    /// The call's limits after the quota (never above the plugin's own).
    pub(crate) limits: Limits,
    /// Whether the fuel budget was cut to what is left of the minute's
    /// quota, so running out means the quota, not the plugin's budget.
    pub(crate) fuel_cut_by_quota: bool,
}

/// Quotas of every tenant that has one.
#[derive(Default)]
pub(crate) struct Quotas {
    tenants: Mutex<HashMap<TenantId, QuotaState>>,
}

impl Quotas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, QuotaState>> {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets (or, with the default quota, clears) a tenant's quota. The
    /// fuel already used this minute still counts.
    pub(crate) fn set(&self, tenant: &TenantId, quota: TenantQuota) {
        let mut tenants = self.lock();
        if quota == TenantQuota::default() {
            tenants.remove(tenant);
            return;
        }
        tenants
            .entry(tenant.clone())
            .and_modify(|state| state.quota = quota)
            .or_insert(QuotaState {
                quota,
                window_start: Instant::now(),
                fuel_used: 0,
            });
    }

    /// Admits a call: lowers its limits to the quota, or refuses it when
    /// the minute's fuel is spent.
    pub(crate) fn admit(
        &self,
        tenant: &TenantId,
        limits: Limits,
    ) -> Result<Admission, PluginError> {
        let mut admission = Admission {
            limits,
            fuel_cut_by_quota: false,
        };
        let mut tenants = self.lock();
        let Some(state) = tenants.get_mut(tenant) else {
            return Ok(admission);
        };
        if let Some(memory) = state.quota.memory_per_call_bytes {
            admission.limits.memory_bytes = admission.limits.memory_bytes.min(memory);
        }
        if let Some(per_minute) = state.quota.fuel_per_minute {
            let now = Instant::now();
            if now.duration_since(state.window_start) >= WINDOW {
                state.window_start = now;
                state.fuel_used = 0;
            }
            let left = per_minute.saturating_sub(state.fuel_used);
            if left == 0 {
                let retry_after = WINDOW.saturating_sub(now.duration_since(state.window_start));
                return Err(PluginError::QuotaExceeded {
                    detail: format!(
                        "tenant {tenant} has used its {per_minute} fuel for this minute"
                    ),
                    retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                });
            }
            if left < admission.limits.fuel {
                admission.limits.fuel = left;
                admission.fuel_cut_by_quota = true;
            }
        }
        Ok(admission)
    }

    /// Charges the fuel a call burned to its tenant's minute.
    pub(crate) fn charge(&self, tenant: &TenantId, fuel: u64) {
        if let Some(state) = self.lock().get_mut(tenant)
            && state.quota.fuel_per_minute.is_some()
        {
            state.fuel_used = state.fuel_used.saturating_add(fuel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_is_shared_per_minute_and_memory_is_capped() {
        let quotas = Quotas::default();
        let tenant = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        let plugin = Limits::default();
        quotas.set(
            &tenant,
            TenantQuota {
                max_concurrent_runs: None,
                fuel_per_minute: Some(1_000),
                memory_per_call_bytes: Some(1 << 20),
            },
        );
        let first = quotas.admit(&tenant, plugin);
        let Ok(first) = first else {
            panic!("first call refused: {first:?}")
        };
        assert_eq!(first.limits.memory_bytes, 1 << 20);
        assert_eq!(first.limits.fuel, 1_000);
        assert!(first.fuel_cut_by_quota);
        quotas.charge(&tenant, 600);
        let second = quotas.admit(&tenant, plugin);
        assert!(
            matches!(second, Ok(a) if a.limits.fuel == 400),
            "{second:?}"
        );
        quotas.charge(&tenant, 400);
        let third = quotas.admit(&tenant, plugin);
        assert!(
            matches!(third, Err(PluginError::QuotaExceeded { retry_after_ms, .. }) if retry_after_ms <= 60_000),
            "{third:?}"
        );
        // Another tenant is untouched.
        let other = TenantId::new("other").unwrap_or_else(|_| unreachable!());
        assert!(matches!(quotas.admit(&other, plugin), Ok(a) if a.limits == plugin));
        // Clearing the quota lifts it.
        quotas.set(&tenant, TenantQuota::default());
        assert!(matches!(quotas.admit(&tenant, plugin), Ok(a) if a.limits == plugin));
    }
}
