//! Measurement: what automation changed, per tenant and playbook.
//!
//! MTTD is alert time → the first verdict (a score step finishing); MTTC is
//! alert time → the first executed action, approval waits included. Runs
//! before `baseline_until` form the baseline period, later runs the current
//! one, so a tenant can show the gain against how things were before.
//!
//! The figures come from counters moved as runs change (kept by
//! [`super::tally::Tally`], one [`Period`] per tenant, playbook and hour of
//! run creation), not from reading runs: a request costs the number of
//! hours with runs, plus — when the baseline cut falls inside an hour — the
//! runs of that one hour. Durations are kept in a histogram exact to the
//! millisecond below 1,024 ms and within 1/64 (1.6 %) above, so a median is
//! the lower bound of its bucket.

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::Run;

/// Milliseconds in the hour a run is counted under.
pub const HOUR_MS: i64 = 3_600_000;

/// Below this many milliseconds a duration has a bucket of its own.
const EXACT_BELOW: i64 = 1024;
/// Sub-buckets per power of two above [`EXACT_BELOW`].
const SUB_BUCKET_BITS: u32 = 6;

/// Durations, ms, in buckets of bounded relative width.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    buckets: BTreeMap<u32, u64>,
    sum: i128,
    count: u64,
}

fn bucket_of(ms: i64) -> u32 {
    let ms = ms.max(0);
    if ms < EXACT_BELOW {
        return ms as u32;
    }
    let power = 63 - ms.leading_zeros();
    let mantissa = (ms >> (power - SUB_BUCKET_BITS)) & ((1 << SUB_BUCKET_BITS) - 1);
    EXACT_BELOW as u32 + (power - 10) * (1 << SUB_BUCKET_BITS) + mantissa as u32
}

fn lower_bound(bucket: u32) -> i64 {
    if bucket < EXACT_BELOW as u32 {
        return i64::from(bucket);
    }
    let above = bucket - EXACT_BELOW as u32;
    let power = above / (1 << SUB_BUCKET_BITS) + 10;
    let mantissa = i64::from(above % (1 << SUB_BUCKET_BITS));
    ((1 << SUB_BUCKET_BITS) + mantissa) << (power - SUB_BUCKET_BITS)
}

impl Durations {
    /// Counts one duration.
    pub fn observe(&mut self, ms: i64) {
        *self.buckets.entry(bucket_of(ms)).or_default() += 1;
        self.sum += i128::from(ms.max(0));
        self.count += 1;
    }

    fn add(&mut self, other: &Durations, sign: i64) {
        for (bucket, count) in &other.buckets {
            let entry = self.buckets.entry(*bucket).or_default();
            *entry = if sign > 0 {
                entry.saturating_add(*count)
            } else {
                entry.saturating_sub(*count)
            };
            if *entry == 0 {
                self.buckets.remove(bucket);
            }
        }
        self.sum += other.sum * i128::from(sign);
        self.count = if sign > 0 {
            self.count.saturating_add(other.count)
        } else {
            self.count.saturating_sub(other.count)
        };
    }

    /// The median (the upper one of an even count), as its bucket's lower bound.
    pub fn median(&self) -> Option<i64> {
        let rank = self.count / 2;
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen > rank {
                return Some(lower_bound(*bucket));
            }
        }
        None
    }

    /// The mean.
    pub fn mean(&self) -> Option<i64> {
        (self.count > 0).then(|| (self.sum / i128::from(self.count)) as i64)
    }
}

/// What one playbook's runs of one hour add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    /// Runs started.
    pub runs: u64,
    /// Alerts folded into them.
    pub folded: u64,
    /// Runs finished.
    pub finished: u64,
    /// Finished runs that never asked a human.
    pub without_human: u64,
    /// Runs with a label.
    pub labelled: u64,
    /// Runs whose latest label is false positive.
    pub false_positives: u64,
    /// Alert → first verdict.
    pub mttd: Durations,
    /// Alert → first executed action.
    pub mttc: Durations,
    /// Approval request → decision, for the approvals of finished runs.
    pub approval_waits: Durations,
}

impl Period {
    /// `self += other`.
    pub fn add(&mut self, other: &Period) {
        self.combine(other, 1);
    }

    /// `self -= other` (other is a part of self).
    pub fn subtract(&mut self, other: &Period) {
        self.combine(other, -1);
    }

    fn combine(&mut self, other: &Period, sign: i64) {
        let apply = |mine: &mut u64, theirs: u64| {
            *mine = if sign > 0 {
                mine.saturating_add(theirs)
            } else {
                mine.saturating_sub(theirs)
            };
        };
        apply(&mut self.runs, other.runs);
        apply(&mut self.folded, other.folded);
        apply(&mut self.finished, other.finished);
        apply(&mut self.without_human, other.without_human);
        apply(&mut self.labelled, other.labelled);
        apply(&mut self.false_positives, other.false_positives);
        self.mttd.add(&other.mttd, sign);
        self.mttc.add(&other.mttc, sign);
        self.approval_waits.add(&other.approval_waits, sign);
    }

    /// What `run` as it stands adds, with the waits of its decided
    /// approvals (the counters moved one transition at a time come to the
    /// same).
    pub fn of_run(run: &Run, approval_waits: &[i64]) -> Period {
        let mut period = Period {
            runs: 1,
            folded: run.folded.len() as u64,
            ..Period::default()
        };
        if let Some(at) = run.verdict_at {
            period.mttd.observe(at - run.alert.time);
        }
        if let Some(at) = run.contained_at {
            period.mttc.observe(at - run.alert.time);
        }
        if run.status.is_finished() {
            period.finish(run, approval_waits);
        }
        if let Some(label) = run.feedback.last().map(|f| f.label) {
            period.label(label, 1);
        }
        period
    }

    /// Counts `run` finishing.
    pub fn finish(&mut self, run: &Run, approval_waits: &[i64]) {
        self.finished += 1;
        if !asked_a_human(run) {
            self.without_human += 1;
        }
        for wait in approval_waits {
            self.approval_waits.observe(*wait);
        }
    }

    /// Counts (`sign` 1) or uncounts (-1) a run's latest label.
    pub fn label(&mut self, label: crate::model::FeedbackLabel, sign: i64) {
        let fp = u64::from(label == crate::model::FeedbackLabel::FalsePositive);
        if sign > 0 {
            self.labelled += 1;
            self.false_positives += fp;
        } else {
            self.labelled = self.labelled.saturating_sub(1);
            self.false_positives = self.false_positives.saturating_sub(fp);
        }
    }

    fn stats(&self) -> PeriodStats {
        let total_alerts = self.runs + self.folded;
        PeriodStats {
            runs: self.runs,
            folded: self.folded,
            folded_share: if total_alerts == 0 {
                0.0
            } else {
                self.folded as f64 / total_alerts as f64
            },
            mttd_p50_ms: self.mttd.median(),
            mttd_mean_ms: self.mttd.mean(),
            mttc_p50_ms: self.mttc.median(),
            mttc_mean_ms: self.mttc.mean(),
            approval_wait_p50_ms: self.approval_waits.median(),
            closed_without_human: if self.finished == 0 {
                0.0
            } else {
                self.without_human as f64 / self.finished as f64
            },
            labelled: self.labelled,
            false_positive_rate: (self.labelled > 0)
                .then(|| self.false_positives as f64 / self.labelled as f64),
        }
    }
}

/// Whether any step of `run` asked for an approval.
pub fn asked_a_human(run: &Run) -> bool {
    run.steps.values().any(|step| step.approval_id.is_some())
}

/// Figures of one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeriodStats {
    /// Runs started.
    pub runs: u64,
    /// Alerts folded into them by dedup.
    pub folded: u64,
    /// Share of alerts folded by dedup (folded / (runs + folded)).
    pub folded_share: f64,
    /// Median MTTD, ms.
    pub mttd_p50_ms: Option<i64>,
    /// Mean MTTD, ms.
    pub mttd_mean_ms: Option<i64>,
    /// Median MTTC, ms.
    pub mttc_p50_ms: Option<i64>,
    /// Mean MTTC, ms.
    pub mttc_mean_ms: Option<i64>,
    /// Median approval wait (request → decision), ms.
    pub approval_wait_p50_ms: Option<i64>,
    /// Share of finished runs closed without any human approval.
    pub closed_without_human: f64,
    /// Runs an analyst labelled.
    pub labelled: u64,
    /// Share of labelled runs whose latest label is false positive.
    pub false_positive_rate: Option<f64>,
}

/// Figures of one playbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybookStats {
    /// Playbook name.
    pub playbook: String,
    /// Runs before the baseline cut-off.
    pub baseline: Option<PeriodStats>,
    /// Runs after it (or all runs).
    pub current: PeriodStats,
    /// Current median MTTC relative to the baseline's, in percent (negative = faster).
    pub mttc_change_pct: Option<f64>,
    /// Current median MTTD relative to the baseline's, in percent.
    pub mttd_change_pct: Option<f64>,
}

fn change(before: Option<i64>, after: Option<i64>) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if before > 0 => {
            Some((after - before) as f64 * 100.0 / before as f64)
        }
        _ => None,
    }
}

/// Figures per playbook from the hourly counters `hours` (playbook, hour →
/// period). With a cut, `split` is what the runs of the cut's own hour
/// created before the cut add up to, per playbook.
pub fn measure(
    hours: &BTreeMap<(String, i64), Period>,
    baseline_until: Option<i64>,
    split: &BTreeMap<String, Period>,
) -> Vec<PlaybookStats> {
    let cut_hour = baseline_until.map(|cut| cut.div_euclid(HOUR_MS));
    let mut sums: BTreeMap<&str, (Period, Period)> = BTreeMap::new();
    for ((playbook, hour), period) in hours {
        let (before, after) = sums.entry(playbook.as_str()).or_default();
        match cut_hour {
            Some(cut) if *hour < cut => before.add(period),
            Some(cut) if *hour == cut => {
                after.add(period);
                if let Some(part) = split.get(playbook) {
                    after.subtract(part);
                    before.add(part);
                }
            }
            _ => after.add(period),
        }
    }
    sums.into_iter()
        .map(|(name, (before, after))| {
            let baseline = baseline_until.map(|_| before.stats());
            let current = after.stats();
            PlaybookStats {
                playbook: name.to_owned(),
                mttc_change_pct: change(
                    baseline.as_ref().and_then(|b| b.mttc_p50_ms),
                    current.mttc_p50_ms,
                ),
                mttd_change_pct: change(
                    baseline.as_ref().and_then(|b| b.mttd_p50_ms),
                    current.mttd_p50_ms,
                ),
                baseline,
                current,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_1024_ms_and_within_a_64th_above() {
        for ms in [0, 1, 50, 1023] {
            assert_eq!(lower_bound(bucket_of(ms)), ms);
        }
        for ms in [1024_i64, 1500, 65_432, 3_600_000, 86_400_000 * 30] {
            let low = lower_bound(bucket_of(ms));
            assert!(low <= ms && ms - low <= ms / 64, "{ms} → {low}");
            assert!(bucket_of(low) == bucket_of(ms));
        }
        let mut monotonic = 0;
        for ms in (0..5_000_000).step_by(997) {
            let bucket = bucket_of(ms);
            assert!(bucket >= monotonic);
            monotonic = bucket;
        }
    }

    #[test]
    fn median_mean_and_subtraction() {
        let mut d = Durations::default();
        for ms in [10, 20, 30, 40] {
            d.observe(ms);
        }
        assert_eq!((d.median(), d.mean()), (Some(30), Some(25)));
        let mut part = Durations::default();
        part.observe(40);
        d.add(&part, -1);
        assert_eq!((d.median(), d.mean(), d.count), (Some(20), Some(20), 3));
    }

    fn period(runs: u64, mttc: &[i64]) -> Period {
        let mut period = Period {
            runs,
            ..Period::default()
        };
        for ms in mttc {
            period.mttc.observe(*ms);
        }
        period
    }

    #[test]
    fn a_cut_inside_an_hour_moves_that_hours_early_runs_to_the_baseline() {
        let mut hours = BTreeMap::new();
        hours.insert(("block".to_owned(), 10), period(2, &[900, 1000]));
        hours.insert(("block".to_owned(), 11), period(3, &[500, 20, 30]));
        hours.insert(("block".to_owned(), 12), period(1, &[10]));
        let split = BTreeMap::from([("block".to_owned(), period(1, &[500]))]);
        let stats = measure(&hours, Some(11 * HOUR_MS + 5), &split);
        let baseline = stats[0].baseline.as_ref().expect("baseline");
        assert_eq!((baseline.runs, stats[0].current.runs), (3, 3));
        assert_eq!(baseline.mttc_p50_ms, Some(900));
        assert_eq!(stats[0].current.mttc_p50_ms, Some(20));
        assert_eq!(
            stats[0].mttc_change_pct,
            Some((20.0 - 900.0) * 100.0 / 900.0)
        );
        let all = measure(&hours, None, &BTreeMap::new());
        assert_eq!((all[0].current.runs, all[0].baseline.clone()), (6, None));
    }
}
