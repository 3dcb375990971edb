//! Rate windows for the guardrails: how many actions of a kind a tenant
//! executed in the last `per`, in time that does not grow with history or
//! with the size of the window.
//!
//! Every action is an entry `tenant\0action\0<time BE><run><step>` in
//! `rates` (exact, time-ordered) and one more in a minute and an hour
//! counter in `rate-counts` (`tenant\0action\0m<minute BE>` and
//! `…h<hour BE>`). A window `(now - per, now]` is counted as: the exact
//! entries up to the first whole minute, the minute counters up to the
//! first whole hour, and the hour counters from there on — at most a
//! minute of entries plus 60 + 744 counters, whatever the limit. The
//! counters are rebuilt from the entries when the executor opens (so a
//! crash between the two writes, or a data directory from before the
//! counters, is made whole), and both are pruned past the longest window.

use super::{Executor, ExecutorError, key};
use crate::tenant::TenantId;
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

fn counter_key(prefix: &[u8], resolution: u8, index: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.push(resolution);
    k.extend_from_slice(&index.max(0).to_be_bytes());
    k
}

fn ceil_div(value: i64, unit: i64) -> i64 {
    value.div_euclid(unit) + i64::from(value.rem_euclid(unit) != 0)
}

fn add_to_counter(tree: &crate::store::Tree, k: Vec<u8>, by: u64) -> Result<(), ExecutorError> {
    tree.update_and_fetch(k, |old| {
        let count = old
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        Some(count.saturating_add(by).to_be_bytes().to_vec())
    })?;
    Ok(())
}

fn counter_value(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

impl Executor {
    /// Records an executed action of kind `action` at `now`.
    pub(super) fn record_action(
        &self,
        tenant: &TenantId,
        action: &str,
        now: i64,
        run_id: &str,
        step_id: &str,
    ) -> Result<(), ExecutorError> {
        let prefix = key(&[tenant.as_str(), action, ""]);
        let mut entry = prefix.clone();
        entry.extend_from_slice(&now.to_be_bytes());
        entry.extend_from_slice(run_id.as_bytes());
        entry.extend_from_slice(step_id.as_bytes());
        if !self.inner.rates.insert(entry, [])? {
            let counts = &self.inner.rate_counts;
            add_to_counter(
                counts,
                counter_key(&prefix, b'm', now.div_euclid(MINUTE_MS)),
                1,
            )?;
            add_to_counter(
                counts,
                counter_key(&prefix, b'h', now.div_euclid(HOUR_MS)),
                1,
            )?;
        }
        self.prune_rates(tenant, action, now)
    }

    /// Actions of kind `action` in the last `per`, counted up to `cap` (the
    /// guardrail only needs to know whether the limit is reached).
    pub(super) fn recent_actions(
        &self,
        tenant: &TenantId,
        action: &str,
        per: Duration,
        now: i64,
        cap: u32,
    ) -> Result<u32, ExecutorError> {
        let since = now.saturating_sub(i64::try_from(per.as_millis()).unwrap_or(i64::MAX));
        // The window is (since, now]: entries at `since + 1` and later.
        let start = since.saturating_add(1).max(0);
        let prefix = key(&[tenant.as_str(), action, ""]);
        let first_minute = ceil_div(start, MINUTE_MS);
        let first_hour = ceil_div(first_minute * MINUTE_MS, HOUR_MS);
        let cap = u64::from(cap);
        let mut count = 0u64;
        // Exact entries before the first whole minute.
        let mut from = prefix.clone();
        from.extend_from_slice(&start.to_be_bytes());
        let mut to = prefix.clone();
        to.extend_from_slice(&(first_minute * MINUTE_MS).to_be_bytes());
        for entry in self.inner.rates.range(from..to) {
            entry?;
            count += 1;
            if count >= cap {
                return Ok(u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
        // Whole minutes up to the first whole hour, then whole hours (the
        // current ones included: nothing is later than now).
        let counts = &self.inner.rate_counts;
        let minutes =
            counter_key(&prefix, b'm', first_minute)..counter_key(&prefix, b'm', first_hour * 60);
        let hours = counter_key(&prefix, b'h', first_hour)..counter_key(&prefix, b'h', i64::MAX);
        for range in [minutes, hours] {
            for entry in counts.range(range) {
                let (_, value) = entry?;
                count = count.saturating_add(counter_value(&value));
                if count >= cap {
                    return Ok(u32::try_from(count.min(cap)).unwrap_or(u32::MAX));
                }
            }
        }
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Drops a few of this kind's rate entries and counters older than the
    /// longest window a playbook may set, so history does not pile up.
    pub(super) fn prune_rates(
        &self,
        tenant: &TenantId,
        action: &str,
        now: i64,
    ) -> Result<(), ExecutorError> {
        let window =
            i64::try_from(crate::playbook::MAX_RATE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(window).max(0);
        let prefix = key(&[tenant.as_str(), action, ""]);
        let mut end = prefix.clone();
        end.extend_from_slice(&cutoff.to_be_bytes());
        // A bounded batch per action: pruning keeps pace with inserting.
        let old: Vec<Vec<u8>> = self
            .inner
            .rates
            .range(prefix.clone()..end)
            .keys()
            .take(16)
            .collect::<Result<_, _>>()?;
        for key in old {
            self.inner.rates.remove(key)?;
        }
        // Counters wholly before the cutoff (one older bucket is kept).
        for (resolution, unit) in [(b'm', MINUTE_MS), (b'h', HOUR_MS)] {
            let below = counter_key(&prefix, resolution, cutoff.div_euclid(unit) - 1);
            let old: Vec<Vec<u8>> = self
                .inner
                .rate_counts
                .range(counter_key(&prefix, resolution, 0)..below)
                .keys()
                .take(16)
                .collect::<Result<_, _>>()?;
            for key in old {
                self.inner.rate_counts.remove(key)?;
            }
        }
        Ok(())
    }

    /// Rebuilds the minute and hour counters from the exact entries (at
    /// open: one scan of the rate history, at most the longest window).
    pub(super) fn rebuild_rate_counts(&self) -> Result<(), ExecutorError> {
        let mut counters: std::collections::BTreeMap<Vec<u8>, u64> = Default::default();
        for entry in self.inner.rates.iter() {
            let (k, _) = entry?;
            // tenant \0 action \0 <time BE> …
            let mut separators = k
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == 0)
                .map(|(i, _)| i);
            let (Some(_), Some(second)) = (separators.next(), separators.next()) else {
                continue;
            };
            let prefix = &k[..=second];
            let Some(time) = k
                .get(second + 1..second + 9)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_be_bytes)
            else {
                continue;
            };
            *counters
                .entry(counter_key(prefix, b'm', time.div_euclid(MINUTE_MS)))
                .or_default() += 1;
            *counters
                .entry(counter_key(prefix, b'h', time.div_euclid(HOUR_MS)))
                .or_default() += 1;
        }
        self.inner.rate_counts.clear()?;
        let mut batch = crate::store::space::Batch::default();
        for (k, count) in counters {
            batch.insert(k, count.to_be_bytes());
        }
        self.inner.rate_counts.apply_batch(batch)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::sandbox::RuntimeConfig;

    fn executor() -> (tempfile::TempDir, Executor) {
        let dir = tempfile::tempdir().expect("dir");
        let store = crate::store::SledStore::open(&dir.path().join("data")).expect("store");
        let key = crate::audit::AuditKey::from_bytes(vec![7; 32]).expect("key");
        let executor = Executor::new(RuntimeConfig::default(), store, key).expect("executor");
        (dir, executor)
    }

    /// The three-level count equals counting the entries one by one, for
    /// windows that start mid-minute, on a minute, mid-hour and hours back.
    #[test]
    fn counts_match_counting_every_entry() {
        let (_dir, executor) = executor();
        let tenant = TenantId::new("acme").expect("tenant");
        let now = 1_800_000_000_000i64 + 1_234;
        let mut seed = 0x9e37_79b9_u64;
        let mut times = Vec::new();
        for i in 0..600 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let time = now - (seed % (3 * HOUR_MS as u64)) as i64;
            times.push(time);
            executor
                .record_action(&tenant, "block-ip", time, &format!("run-{i}"), "act")
                .expect("record");
        }
        let check = |executor: &Executor| {
            for per_ms in [
                1_000,
                60_000,
                61_500,
                7 * 60_000,
                HOUR_MS,
                HOUR_MS + 59_999,
                150 * 60_000,
                4 * HOUR_MS,
            ] {
                let since = now - per_ms;
                let expected = times.iter().filter(|t| **t > since).count() as u32;
                let got = executor
                    .recent_actions(
                        &tenant,
                        "block-ip",
                        Duration::from_millis(per_ms as u64),
                        now,
                        u32::MAX,
                    )
                    .expect("count");
                assert_eq!(got, expected, "window of {per_ms} ms");
                let capped = executor
                    .recent_actions(
                        &tenant,
                        "block-ip",
                        Duration::from_millis(per_ms as u64),
                        now,
                        5,
                    )
                    .expect("count");
                assert_eq!(capped, expected.min(5));
            }
        };
        check(&executor);
        // Rebuilt from the entries alone, the counters say the same.
        executor.inner.rate_counts.clear().expect("clear");
        executor.rebuild_rate_counts().expect("rebuild");
        check(&executor);
        // Another kind and another tenant are counted apart.
        let other = TenantId::new("beta").expect("tenant");
        assert_eq!(
            executor
                .recent_actions(
                    &other,
                    "block-ip",
                    Duration::from_secs(86_400),
                    now,
                    u32::MAX
                )
                .expect("count"),
            0
        );
    }
}
