//! `/metrics`: Prometheus text from counters.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::Role;
use crate::error::ApiError;
use crate::gate::Caller;
use rampart::tenant::TenantId;

pub(crate) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    use std::fmt::Write as _;
    // A `metrics` token (or public metrics) sees totals only, no tenant
    // names; an admin token sees them by tenant.
    let principal = state.principal(&caller);
    if !state.public_metrics {
        match &principal {
            Ok(p) if matches!(p.token.role, Role::Admin | Role::Metrics) => {}
            Ok(_) => {
                return Err(ApiError::forbidden(
                    "metrics need a token of role metrics or admin",
                ));
            }
            Err(err) => return Err(err.clone()),
        }
    }
    let named = principal.is_ok_and(|p| p.token.role == Role::Admin);
    let label = |tenant: &TenantId| {
        if named {
            tenant.to_string()
        } else {
            "all".to_owned()
        }
    };
    // From counters kept as runs change (`executor/tally.rs`): a scrape
    // costs the tenants and statuses, not the runs.
    use rampart::executor::tally::{BUCKETS_SECS, Histogram};
    let mut runs_by_status: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    let mut mttd: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut mttc: BTreeMap<String, Histogram> = BTreeMap::new();
    let merge = |into: &mut Histogram, from: &Histogram| {
        for (a, b) in into.buckets.iter_mut().zip(from.buckets) {
            *a += b;
        }
        into.over += from.over;
        into.sum += from.sum;
        into.count += from.count;
    };
    for (tenant, tally) in state.executor.tally() {
        for (status, count) in &tally.runs {
            *runs_by_status
                .entry((label(&tenant), (*status).to_owned()))
                .or_default() += count;
        }
        *folded.entry(label(&tenant)).or_default() += tally.folded;
        if tally.mttd.count > 0 {
            merge(mttd.entry(label(&tenant)).or_default(), &tally.mttd);
        }
        if tally.mttc.count > 0 {
            merge(mttc.entry(label(&tenant)).or_default(), &tally.mttc);
        }
    }
    let pending = state
        .executor
        .approvals()
        .pending(None)
        .map_err(ApiError::internal)?
        .len() as u64;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP rampart_node_info The node that answered (counters below are its own; runs and approvals are the shared store's).\n# TYPE rampart_node_info gauge\nrampart_node_info{{node=\"{}\"}} 1",
        state.executor.node_id()
    );
    let _ = writeln!(
        text,
        "# HELP rampart_runs Runs by tenant and status.\n# TYPE rampart_runs gauge"
    );
    for ((tenant, status), count) in &runs_by_status {
        let _ = writeln!(
            text,
            "rampart_runs{{tenant=\"{tenant}\",status=\"{status}\"}} {count}"
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_approvals_pending Approvals waiting.\n# TYPE rampart_approvals_pending gauge\nrampart_approvals_pending {pending}"
    );
    let _ = writeln!(
        text,
        "# HELP rampart_work_queued Accepted runs and decisions waiting for a worker.\n# TYPE rampart_work_queued gauge\nrampart_work_queued {}",
        state.executor.queue_depth()
    );
    let _ = writeln!(
        text,
        "# HELP rampart_dedup_folded_total Alerts folded into open runs.\n# TYPE rampart_dedup_folded_total counter"
    );
    for (tenant, count) in &folded {
        let _ = writeln!(
            text,
            "rampart_dedup_folded_total{{tenant=\"{tenant}\"}} {count}"
        );
    }
    for (name, help, histograms) in [
        (
            "rampart_mttd_seconds",
            "Alert time to first verdict.",
            &mttd,
        ),
        (
            "rampart_mttc_seconds",
            "Alert time to first containment.",
            &mttc,
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (tenant, histogram) in histograms {
            for (i, bound) in BUCKETS_SECS.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "{name}_bucket{{tenant=\"{tenant}\",le=\"{bound}\"}} {}",
                    histogram.cumulative(i)
                );
            }
            let _ = writeln!(
                text,
                "{name}_bucket{{tenant=\"{tenant}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(text, "{name}_sum{{tenant=\"{tenant}\"}} {}", histogram.sum);
            let _ = writeln!(
                text,
                "{name}_count{{tenant=\"{tenant}\"}} {}",
                histogram.count
            );
        }
    }
    let mut calls: BTreeMap<(String, String, &str), rampart::sandbox::CallCounter> =
        BTreeMap::new();
    let mut latency: BTreeMap<(String, String), rampart::sandbox::CallCounter> = BTreeMap::new();
    for (tenant, plugin, outcome, counter) in state.executor.runtime().call_counters() {
        latency
            .entry((label(&tenant), plugin.clone()))
            .or_default()
            .merge(&counter);
        calls
            .entry((label(&tenant), plugin, outcome))
            .or_default()
            .merge(&counter);
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_call_duration_seconds Plugin call latency, every outcome.\n# TYPE rampart_plugin_call_duration_seconds histogram"
    );
    for ((tenant, plugin), counter) in &latency {
        for (count, bound) in counter
            .buckets
            .iter()
            .zip(rampart::sandbox::CallCounter::BUCKETS_US)
        {
            let _ = writeln!(
                text,
                "rampart_plugin_call_duration_seconds_bucket{{tenant=\"{tenant}\",plugin=\"{plugin}\",le=\"{}\"}} {count}",
                bound as f64 / 1e6
            );
        }
        let _ = writeln!(
            text,
            "rampart_plugin_call_duration_seconds_bucket{{tenant=\"{tenant}\",plugin=\"{plugin}\",le=\"+Inf\"}} {}\nrampart_plugin_call_duration_seconds_sum{{tenant=\"{tenant}\",plugin=\"{plugin}\"}} {}\nrampart_plugin_call_duration_seconds_count{{tenant=\"{tenant}\",plugin=\"{plugin}\"}} {}",
            counter.calls,
            counter.duration_us as f64 / 1e6,
            counter.calls
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_calls_total Plugin calls by outcome (traps, fuel, deadlines, ... by kind).\n# TYPE rampart_plugin_calls_total counter"
    );
    for ((tenant, plugin, outcome), counter) in &calls {
        let _ = writeln!(
            text,
            "rampart_plugin_calls_total{{tenant=\"{tenant}\",plugin=\"{plugin}\",outcome=\"{outcome}\"}} {}",
            counter.calls
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_call_seconds_total Summed plugin call time.\n# TYPE rampart_plugin_call_seconds_total counter"
    );
    for ((tenant, plugin, outcome), counter) in &calls {
        let _ = writeln!(
            text,
            "rampart_plugin_call_seconds_total{{tenant=\"{tenant}\",plugin=\"{plugin}\",outcome=\"{outcome}\"}} {}",
            counter.duration_us as f64 / 1e6
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_fuel_total Summed fuel burned.\n# TYPE rampart_plugin_fuel_total counter"
    );
    for ((tenant, plugin, outcome), counter) in &calls {
        let _ = writeln!(
            text,
            "rampart_plugin_fuel_total{{tenant=\"{tenant}\",plugin=\"{plugin}\",outcome=\"{outcome}\"}} {}",
            counter.fuel
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
