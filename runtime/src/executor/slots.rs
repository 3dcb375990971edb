//! CPU slots for the executor's synchronous sections (intake, and the
//! bookkeeping of each wave of a run): as many slots as cores, and a
//! tenant's share is half of them. A tenant alone on the machine may use
//! every slot; it may take more than its share only while no other tenant
//! waits for a slot or has used one within the last [`RESERVED_FOR`] —
//! a tenant sending alerts one after another keeps its share between
//! them, so its sections never queue behind another tenant's borrowed
//! ones. A freed slot goes to a tenant under its share first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::tenant::TenantId;

/// How long a tenant's share stays reserved after it last took a slot.
pub const RESERVED_FOR: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    held: HashMap<TenantId, usize>,
    waiting: HashMap<TenantId, usize>,
    /// When each tenant last took a slot (pruned past [`RESERVED_FOR`]).
    last_taken: HashMap<TenantId, Instant>,
}

/// The slots.
#[derive(Debug)]
pub struct CpuSlots {
    total: usize,
    share: usize,
    state: Mutex<State>,
    freed: Notify,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct CpuSlot {
    slots: Arc<CpuSlots>,
    tenant: TenantId,
}

impl CpuSlots {
    /// `total` slots, `share` of them per tenant when tenants compete.
    pub fn new(total: usize, share: usize) -> Arc<Self> {
        Arc::new(CpuSlots {
            total: total.max(1),
            share: share.clamp(1, total.max(1)),
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        })
    }

    /// One slot per core, half of them per tenant.
    pub fn for_this_machine() -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        CpuSlots::new(cores, (cores / 2).max(1))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn grantable(&self, state: &State, tenant: &TenantId) -> bool {
        if state.in_use >= self.total {
            return false;
        }
        let held = state.held.get(tenant).copied().unwrap_or(0);
        if held < self.share {
            return true;
        }
        let now = Instant::now();
        let others_waiting = state
            .waiting
            .iter()
            .any(|(other, count)| other != tenant && *count > 0);
        let others_recent = state
            .last_taken
            .iter()
            .any(|(other, at)| other != tenant && now.duration_since(*at) < RESERVED_FOR);
        !others_waiting && !others_recent
    }

    /// Waits for a slot for `tenant`.
    pub async fn acquire(self: &Arc<Self>, tenant: &TenantId) -> CpuSlot {
        let mut registered = false;
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a slot freed in between wakes us.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if self.grantable(&state, tenant) {
                    if registered && let Some(count) = state.waiting.get_mut(tenant) {
                        *count = count.saturating_sub(1);
                    }
                    state.in_use += 1;
                    *state.held.entry(tenant.clone()).or_default() += 1;
                    let now = Instant::now();
                    state
                        .last_taken
                        .retain(|_, at| now.duration_since(*at) < RESERVED_FOR);
                    state.last_taken.insert(tenant.clone(), now);
                    return CpuSlot {
                        slots: self.clone(),
                        tenant: tenant.clone(),
                    };
                }
                if !registered {
                    *state.waiting.entry(tenant.clone()).or_default() += 1;
                    registered = true;
                }
            }
            notified.await;
        }
    }
}

impl Drop for CpuSlot {
    fn drop(&mut self) {
        {
            let mut state = self.slots.lock();
            state.in_use = state.in_use.saturating_sub(1);
            if let Some(held) = state.held.get_mut(&self.tenant) {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    state.held.remove(&self.tenant);
                }
            }
            state.waiting.retain(|_, count| *count > 0);
        }
        self.slots.freed.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("tenant")
    }

    #[tokio::test]
    async fn a_tenant_alone_uses_every_slot_and_yields_to_a_waiting_one() {
        let slots = CpuSlots::new(2, 1);
        let (heavy, calm) = (tenant("heavy"), tenant("calm"));
        let first = slots.acquire(&heavy).await;
        let second = tokio::time::timeout(Duration::from_millis(100), slots.acquire(&heavy))
            .await
            .expect("alone, a tenant borrows the second slot");
        // Both slots held by heavy: calm and another heavy section wait.
        let calm_waits = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(&calm).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let heavy_waits = tokio::spawn({
            let (slots, heavy) = (slots.clone(), heavy.clone());
            async move { slots.acquire(&heavy).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        // The freed slot goes to calm (under its share), not to heavy.
        let calm_slot = tokio::time::timeout(Duration::from_millis(200), calm_waits)
            .await
            .expect("calm gets the freed slot")
            .expect("task");
        assert!(
            !heavy_waits.is_finished(),
            "heavy must not take calm's share"
        );
        drop(second);
        let heavy_slot = tokio::time::timeout(Duration::from_millis(200), heavy_waits)
            .await
            .expect("heavy gets its own share back")
            .expect("task");
        drop((calm_slot, heavy_slot));
        assert_eq!(slots.lock().in_use, 0);
        // calm used a slot just now: heavy keeps to its share for a while.
        let one = slots.acquire(&heavy).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire(&heavy))
                .await
                .is_err(),
            "heavy borrowed the share of a tenant active {RESERVED_FOR:?} ago"
        );
        tokio::time::sleep(RESERVED_FOR).await;
        let two = tokio::time::timeout(Duration::from_millis(100), slots.acquire(&heavy))
            .await
            .expect("after the reservation, heavy borrows again");
        drop((one, two));
    }
}
