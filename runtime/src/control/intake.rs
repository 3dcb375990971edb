//! The ingest rate of each tenant: a token bucket of `ingest_per_second`
//! alerts a second with bursts of twice that (the tenant record's rate),
//! charged before a body is read or parsed, so a tenant past its rate costs
//! no parsing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{ControlError, Tenants};
use crate::tenant::TenantId;

/// Per tenant: tokens left and when they were last topped up.
type Buckets = HashMap<TenantId, (f64, Instant)>;

/// Each tenant's ingest token bucket.
#[derive(Clone)]
pub struct IngestLimits {
    tenants: Tenants,
    buckets: Arc<Mutex<Buckets>>,
}

impl std::fmt::Debug for IngestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLimits").finish_non_exhaustive()
    }
}

fn lock(buckets: &Mutex<Buckets>) -> std::sync::MutexGuard<'_, Buckets> {
    buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl IngestLimits {
    /// Limits at the rates on the tenants' records.
    pub fn new(tenants: Tenants) -> Self {
        IngestLimits {
            tenants,
            buckets: Arc::default(),
        }
    }

    fn rate(&self, tenant: &TenantId) -> Result<u32, ControlError> {
        Ok(self.tenants.get(tenant)?.ingest_per_second.max(1))
    }

    /// Takes `count` alerts from `tenant`'s bucket, or refuses with how long
    /// to wait ([`ControlError::RateLimited`]).
    pub fn take(&self, tenant: &TenantId, count: usize) -> Result<(), ControlError> {
        let rate = f64::from(self.rate(tenant)?);
        let mut buckets = lock(&self.buckets);
        let now = Instant::now();
        let (tokens, last) = buckets.entry(tenant.clone()).or_insert((rate * 2.0, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate * 2.0);
        *last = now;
        if *tokens < count as f64 {
            let wait = ((count as f64 - *tokens) / rate).ceil().max(1.0);
            return Err(ControlError::RateLimited {
                tenant: tenant.clone(),
                rate: rate as u32,
                retry_after_s: wait as u64,
            });
        }
        *tokens -= count as f64;
        Ok(())
    }

    /// Gives back `count` alerts taken for a request that was then refused.
    pub fn give_back(&self, tenant: &TenantId, count: usize) {
        let Ok(rate) = self.rate(tenant) else {
            return;
        };
        let burst = f64::from(rate) * 2.0;
        if let Some((tokens, _)) = lock(&self.buckets).get_mut(tenant) {
            *tokens = (*tokens + count as f64).min(burst);
        }
    }

    /// A batch larger than the tenant's burst can never pass: refused
    /// naming the largest it may send ([`ControlError::BatchTooLarge`]),
    /// not rate-limited forever.
    pub fn check_batch(&self, tenant: &TenantId, count: usize) -> Result<(), ControlError> {
        let rate = u64::from(self.rate(tenant)?);
        let burst = rate * 2;
        if count as u64 > burst {
            return Err(ControlError::BatchTooLarge {
                tenant: tenant.clone(),
                rate,
                burst,
                count,
            });
        }
        Ok(())
    }
}
