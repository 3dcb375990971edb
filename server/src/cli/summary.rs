//! `rampart api summary`: what a SOC lead reads at the end of a shift — runs
//! by playbook and status, verdicts, risk, actions by outcome, the approvals
//! waiting for a human, and MTTD/MTTC — from the server's own API.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::Failure;

/// One GET: the JSON body, or a failure naming the path and the answer.
pub(super) type Get<'a> = &'a dyn Fn(
    String,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Value, Failure>> + 'a>,
>;

/// One GET of a text body (playbook sources).
pub(super) type GetText<'a> = &'a dyn Fn(
    String,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, Failure>> + 'a>,
>;

fn count<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
    *map.entry(key).or_default() += 1;
}

fn duration(ms: &Value) -> String {
    match ms.as_f64() {
        None => "—".to_owned(),
        Some(ms) if ms < 1_000.0 => format!("{ms:.0} ms"),
        Some(ms) if ms < 120_000.0 => format!("{:.1} s", ms / 1_000.0),
        Some(ms) if ms < 7_200_000.0 => format!("{:.1} min", ms / 60_000.0),
        Some(ms) => format!("{:.1} h", ms / 3_600_000.0),
    }
}

/// Builds the report for `tenant`: `get` fetches JSON, `get_text` text.
pub(super) async fn report(
    get: Get<'_>,
    get_text: GetText<'_>,
    tenant: &str,
) -> Result<String, Failure> {
    let listed = get(format!("/v1/tenants/{tenant}/runs?limit=1000")).await?;
    let runs = listed["runs"].as_array().cloned().unwrap_or_default();
    let mut by_playbook: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut risk: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut actions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    let mut responders: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for summary in &runs {
        let Some(id) = summary["id"].as_str() else {
            continue;
        };
        let run = get(format!("/v1/tenants/{tenant}/runs/{id}")).await?;
        let playbook = run["playbook"].as_str().unwrap_or("?").to_owned();
        if !responders.contains_key(&playbook) {
            let source = get_text(format!("/v1/tenants/{tenant}/playbooks/{playbook}")).await?;
            responders.insert(playbook.clone(), responder_steps(&source));
        }
        let acting_steps = responders.get(&playbook).cloned().unwrap_or_default();
        let status = run["status"].as_str().unwrap_or("?").to_owned();
        count(by_playbook.entry(playbook.clone()).or_default(), status);
        let steps = run["steps"].as_object().cloned().unwrap_or_default();
        let mut strongest = "no intel";
        let rank = |v: &str| match v {
            "malicious" => 4,
            "suspicious" => 3,
            "benign" => 2,
            "unknown" => 1,
            _ => 0,
        };
        for (step_id, state) in &steps {
            let output = &state["output"];
            for found in output["enrichments"].as_array().into_iter().flatten() {
                if let Some(verdict) = found["verdict"].as_str()
                    && verdict != "unknown"
                    && rank(verdict) > rank(strongest)
                {
                    strongest = match verdict {
                        "malicious" => "malicious",
                        "suspicious" => "suspicious",
                        _ => "benign",
                    };
                }
            }
            if let Some(score) = output["risk"].as_u64() {
                count(
                    &mut risk,
                    match score {
                        80.. => "high (>= 80)",
                        50..=79 => "medium (50-79)",
                        _ => "low (< 50)",
                    },
                );
            }
            let step_status = state["status"].as_str().unwrap_or("?");
            if let Some(action) = acting_steps.get(step_id) {
                let outcome = match (step_status, output["outcome"].as_str()) {
                    ("succeeded", Some(outcome)) => outcome.replace('_', " "),
                    ("skipped", _) => "not needed".to_owned(),
                    (other, _) => other.replace('_', " "),
                };
                count(
                    actions.entry(format!("{action} ({playbook})")).or_default(),
                    outcome,
                );
                if let Some(reasons) = state["decision"]["reasons"].as_array()
                    && state["decision"]["verdict"] != "execute"
                {
                    for reason in reasons.iter().filter_map(Value::as_str) {
                        count(&mut refusals, super::guardrail_rule(reason));
                    }
                }
            }
        }
        count(&mut verdicts, strongest.to_owned());
    }

    let mut out = String::new();
    let total = listed["total"].as_u64().unwrap_or(runs.len() as u64);
    let _ = writeln!(out, "Tenant {tenant}: {total} runs");
    let statuses: Vec<String> = {
        let mut all: Vec<String> = by_playbook
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    };
    let _ = write!(out, "\n  {:<22}", "playbook");
    for status in &statuses {
        let _ = write!(out, " {:>17}", status.replace('_', " "));
    }
    let _ = writeln!(out);
    for (playbook, counts) in &by_playbook {
        let _ = write!(out, "  {playbook:<22}");
        for status in &statuses {
            let _ = write!(out, " {:>17}", counts.get(status).copied().unwrap_or(0));
        }
        let _ = writeln!(out);
    }
    let joined = |map: Vec<(String, u64)>| -> String {
        map.into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let _ = writeln!(
        out,
        "\nStrongest verdict per run: {}",
        joined(verdicts.into_iter().collect())
    );
    let _ = writeln!(
        out,
        "Risk: {}",
        joined(risk.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    );
    let _ = writeln!(out, "\nActions by kind and outcome");
    for (step, outcomes) in &actions {
        let _ = writeln!(
            out,
            "  {step:<36} {}",
            joined(outcomes.iter().map(|(k, v)| (k.clone(), *v)).collect())
        );
    }
    if !refusals.is_empty() {
        let _ = writeln!(out, "\nWhy not automatic (guardrail reasons)");
        let mut sorted: Vec<(String, u64)> = refusals.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (reason, n) in sorted {
            let _ = writeln!(out, "  {n:>5}  {reason}");
        }
    }

    let approvals = get(format!("/v1/tenants/{tenant}/approvals")).await?;
    let pending: Vec<&Value> = approvals["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["status"] == "pending")
        .collect();
    let mut by_action: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for approval in &pending {
        by_action
            .entry(approval["action"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(approval);
    }
    let _ = writeln!(
        out,
        "\nApprovals pending: {} ({})",
        pending.len(),
        joined(
            by_action
                .iter()
                .map(|(k, v)| (k.clone(), v.len() as u64))
                .collect()
        )
    );
    // A few of each kind, so a rare containment is not buried under blocks.
    let shown: Vec<&Value> = by_action
        .values()
        .flat_map(|list| list.iter().take(4).copied())
        .collect();
    for approval in &shown {
        let given = approval["approvals"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "  {}  {} {} ({}/{} approvals) — {}",
            approval["id"].as_str().unwrap_or("?"),
            approval["action"].as_str().unwrap_or("?"),
            approval["target"]["value"].as_str().unwrap_or("?"),
            given,
            approval["required"].as_u64().unwrap_or(1),
            approval["reasons"]
                .as_array()
                .map(|r| r
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        );
    }
    if pending.len() > shown.len() {
        let _ = writeln!(out, "  … and {} more", pending.len() - shown.len());
    }

    let measured = get(format!("/v1/tenants/{tenant}/measurements")).await?;
    let _ = writeln!(
        out,
        "\n  {:<22} {:>6} {:>10} {:>10} {:>19} {:>10}",
        "playbook", "runs", "MTTD p50", "MTTC p50", "finished w/o human", "folded"
    );
    for playbook in measured["playbooks"].as_array().into_iter().flatten() {
        let current = &playbook["current"];
        let _ = writeln!(
            out,
            "  {:<22} {:>6} {:>10} {:>10} {:>18.0}% {:>9.0}%",
            playbook["playbook"].as_str().unwrap_or("?"),
            current["runs"].as_u64().unwrap_or(0),
            duration(&current["mttd_p50_ms"]),
            duration(&current["mttc_p50_ms"]),
            current["closed_without_human"].as_f64().unwrap_or(0.0) * 100.0,
            current["folded_share"].as_f64().unwrap_or(0.0) * 100.0,
        );
    }
    Ok(out)
}

/// The responder steps of a playbook's YAML: step id → action name.
fn responder_steps(yaml: &str) -> BTreeMap<String, String> {
    let Ok(doc) = serde_saphyr::from_str::<Value>(yaml) else {
        return BTreeMap::new();
    };
    doc["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|step| step.get("respond").is_some())
        .filter_map(|step| {
            let id = step["id"].as_str()?.to_owned();
            let action = step["action"]
                .as_str()
                .or_else(|| step["respond"].as_str())
                .unwrap_or("action")
                .to_owned();
            Some((id, action))
        })
        .collect()
}
