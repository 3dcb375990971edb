//! Per-tenant shares of what every tenant's calls compete for: sandbox
//! slots (the pooling allocator's instances), guest CPU, compiles and
//! outbound connections.
//!
//! Each tenant gets its own semaphore for each resource, sized by
//! [`ShareConfig`], in front of the process-wide one: a tenant that fills
//! its share waits on itself, never on the others. Waiting is bounded
//! (by the call's deadline, or a fixed wait for compiles) and ends with a
//! specific error rather than a pool failure.
//!
//! Guest CPU is shared at epoch-tick granularity: a call holds one of its
//! tenant's CPU permits while it runs (guest code and host work), gives it
//! back at every tick and while it waits (see `io_gate`), and queues for it
//! again (FIFO) before it goes on. A tenant with eight loops and one CPU
//! permit uses one async worker; the other tenants' calls keep the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tenant::TenantId;

/// How much of each shared resource one tenant may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareConfig {
    /// Sandboxes (calls and open hunt sessions) one tenant may hold at once;
    /// more wait for one of its own to end.
    pub tenant_instances: u32,
    /// Calls of one tenant that may run guest code at the same moment.
    pub tenant_cpu: u32,
    /// Compiles running at once in the process.
    pub compiles: u32,
    /// Compiles one tenant may run at once.
    pub tenant_compiles: u32,
    /// Outbound HTTP connections one tenant's calls may hold open at once.
    pub tenant_connections: u32,
    /// Outbound HTTP connections one call may hold open at once.
    pub call_connections: u32,
}

impl ShareConfig {
    /// Shares for a pool of `instances` on this machine: a quarter of the
    /// pool and half of the cores per tenant.
    pub fn for_pool(instances: u32) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        ShareConfig {
            tenant_instances: (instances / 4).max(1),
            tenant_cpu: (cores / 2).max(1),
            compiles: 2,
            tenant_compiles: 1,
            tenant_connections: 64,
            call_connections: 8,
        }
    }
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig::for_pool(200)
    }
}

/// One tenant's semaphores.
pub(crate) struct TenantShare {
    pub(crate) instances: Arc<Semaphore>,
    pub(crate) cpu: Arc<Semaphore>,
    pub(crate) compiles: Arc<Semaphore>,
    pub(crate) connections: Arc<Semaphore>,
}

/// The process-wide pools and every tenant's share of them.
pub(crate) struct Shares {
    config: ShareConfig,
    pool_instances: u32,
    instances: Arc<Semaphore>,
    compiles: Arc<Semaphore>,
    tenants: Mutex<HashMap<TenantId, Arc<TenantShare>>>,
}

/// A held sandbox slot: the tenant's and the pool's. Dropped after the
/// `Store` that used it.
#[derive(Debug)]
pub(crate) struct SlotPermit {
    _tenant: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

/// Why a share could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ShareError {
    /// The tenant's own share stayed full for the whole wait.
    #[error(
        "tenant {tenant} already holds its {share} {what}; none came free within {waited_ms} ms"
    )]
    TenantFull {
        /// The tenant.
        tenant: TenantId,
        /// What was asked for.
        what: &'static str,
        /// Its share.
        share: u32,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The process-wide pool stayed full for the whole wait.
    #[error("all {pool} {what} of this process are busy; none came free within {waited_ms} ms")]
    PoolFull {
        /// What was asked for.
        what: &'static str,
        /// The pool's size.
        pool: u32,
        /// How long it waited.
        waited_ms: u64,
    },
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Shares {
    pub(crate) fn new(config: ShareConfig, pool_instances: u32) -> Self {
        Shares {
            config,
            pool_instances,
            instances: Arc::new(Semaphore::new(pool_instances as usize)),
            compiles: Arc::new(Semaphore::new(config.compiles.max(1) as usize)),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> ShareConfig {
        self.config
    }

    /// The tenant's semaphores (made on first use).
    pub(crate) fn tenant(&self, tenant: &TenantId) -> Arc<TenantShare> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                let permits = |n: u32| Arc::new(Semaphore::new(n.max(1) as usize));
                Arc::new(TenantShare {
                    instances: permits(self.config.tenant_instances),
                    cpu: permits(self.config.tenant_cpu),
                    compiles: permits(self.config.tenant_compiles),
                    connections: permits(self.config.tenant_connections),
                })
            })
            .clone()
    }

    /// Waits (at most `wait`) for a sandbox slot: first one of the
    /// tenant's own, then one of the pool's.
    pub(crate) async fn slot(
        &self,
        tenant: &TenantId,
        wait: Duration,
    ) -> Result<SlotPermit, ShareError> {
        let share = self.tenant(tenant);
        let level = Level {
            what: "sandbox slots",
            tenant: (&share.instances, self.config.tenant_instances),
            pool: (&self.instances, self.pool_instances),
        };
        let (own, pool) = level.acquire(tenant, wait).await?;
        Ok(SlotPermit {
            _tenant: own,
            _pool: pool,
        })
    }

    /// Waits (at most `wait`) for a compile slot: the tenant's, then the
    /// process's.
    pub(crate) async fn compile_slot(
        &self,
        tenant: &TenantId,
        wait: Duration,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), ShareError> {
        let share = self.tenant(tenant);
        let level = Level {
            what: "compile slots",
            tenant: (&share.compiles, self.config.tenant_compiles),
            pool: (&self.compiles, self.config.compiles),
        };
        level.acquire(tenant, wait).await
    }
}

/// A tenant's semaphore in front of the process's, with their sizes.
struct Level<'a> {
    what: &'static str,
    tenant: (&'a Arc<Semaphore>, u32),
    pool: (&'a Arc<Semaphore>, u32),
}

impl Level<'_> {
    /// One permit of each, the tenant's first; waits at most `wait` in all.
    async fn acquire(
        &self,
        tenant: &TenantId,
        wait: Duration,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), ShareError> {
        // The common case, both free: no timer to arm.
        if let Ok(own) = self.tenant.0.clone().try_acquire_owned()
            && let Ok(pool) = self.pool.0.clone().try_acquire_owned()
        {
            return Ok((own, pool));
        }
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        let own = tokio::time::timeout_at(deadline, self.tenant.0.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| ShareError::TenantFull {
                tenant: tenant.clone(),
                what: self.what,
                share: self.tenant.1,
                waited_ms: millis(started.elapsed()),
            })?;
        let pool = tokio::time::timeout_at(deadline, self.pool.0.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| ShareError::PoolFull {
                what: self.what,
                pool: self.pool.1,
                waited_ms: millis(started.elapsed()),
            })?;
        Ok((own, pool))
    }
}

/// A call's hold on its tenant's guest CPU (see the module docs). Cloning
/// shares the hold, so the epoch callback's future can put it back.
#[derive(Clone)]
pub(crate) struct CpuGate {
    permits: Arc<Semaphore>,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl CpuGate {
    pub(crate) fn new(permits: Arc<Semaphore>) -> Self {
        CpuGate {
            permits,
            held: Arc::new(Mutex::new(None)),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives the permit back (entering the host, or at a tick).
    pub(crate) fn release(&self) {
        self.slot().take();
    }

    /// Takes a permit if one is free now; says whether the call holds one.
    pub(crate) fn try_take(&self) -> bool {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = self.permits.clone().try_acquire_owned().ok();
        }
        slot.is_some()
    }

    /// Queues for a permit and holds it.
    pub(crate) async fn take(&self) {
        if self.try_take() {
            return;
        }
        if let Ok(permit) = self.permits.clone().acquire_owned().await {
            *self.slot() = Some(permit);
        }
    }

    /// At a tick: give the permit up, let the executor run others, then
    /// queue behind the tenant's other calls for it again.
    pub(crate) fn next_turn(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        self.release();
        let gate = self.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            gate.take().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).unwrap_or_else(|_| unreachable!())
    }

    #[tokio::test]
    async fn a_full_tenant_waits_on_itself_not_on_others() {
        let config = ShareConfig {
            tenant_instances: 2,
            ..ShareConfig::for_pool(4)
        };
        let shares = Shares::new(config, 4);
        let wait = Duration::from_millis(50);
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(shares.slot(&tenant("a"), wait).await);
        }
        assert!(held.iter().all(Result::is_ok));
        let third = shares.slot(&tenant("a"), wait).await;
        assert!(
            matches!(&third, Err(ShareError::TenantFull { share: 2, .. })),
            "{third:?}"
        );
        // The other tenant still gets the pool's remaining slots.
        let b1 = shares.slot(&tenant("b"), wait).await;
        let b2 = shares.slot(&tenant("b"), wait).await;
        assert!(b1.is_ok() && b2.is_ok());
        // The pool is now full: a third tenant waits, then is told so.
        let c = shares.slot(&tenant("c"), wait).await;
        assert!(matches!(&c, Err(ShareError::PoolFull { .. })), "{c:?}");
        // A slot that comes free is handed to the waiter.
        drop(held.pop());
        let again = shares.slot(&tenant("a"), Duration::from_secs(1)).await;
        assert!(again.is_ok());
    }

    #[tokio::test]
    async fn cpu_gate_hands_the_permit_round() {
        let permits = Arc::new(Semaphore::new(1));
        let first = CpuGate::new(permits.clone());
        let second = CpuGate::new(permits.clone());
        first.take().await;
        assert_eq!(permits.available_permits(), 0);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), second.take())
                .await
                .is_err()
        );
        // A tick of the first lets the second in.
        let turn = first.next_turn();
        second.take().await;
        assert!(second.slot().is_some());
        second.release();
        turn.await;
        assert!(first.slot().is_some());
    }
}
