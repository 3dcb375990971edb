//! Ingest: alerts (native and OCSF) and telemetry events.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Tenant, Wait, need};
use crate::extract::{body_bytes, parse_json};
use crate::{MAX_ALERTS_PER_REQUEST, REFUSAL_DELAY};
use rampart::model::Alert;

/// A JSON array of raw items, refused past [`MAX_ALERTS_PER_REQUEST`]
/// items while it is scanned (a 16 MiB array of tiny items never becomes
/// millions of entries).
pub(crate) struct RawBatch<'a>(Vec<&'a serde_json::value::RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawBatch<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Items<'a> {
            type Value = RawBatch<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "an alert or an array of at most {MAX_ALERTS_PER_REQUEST} alerts"
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de serde_json::value::RawValue>()? {
                    if items.len() == MAX_ALERTS_PER_REQUEST {
                        return Err(serde::de::Error::custom(format!(
                            "at most {MAX_ALERTS_PER_REQUEST} alerts per request"
                        )));
                    }
                    items.push(item);
                }
                Ok(RawBatch(items))
            }
        }
        deserializer.deserialize_seq(Items(std::marker::PhantomData))
    }
}

/// Whether a raw item is OCSF, read without building it as a tree.
#[derive(Deserialize)]
pub(crate) struct OcsfProbe {
    #[serde(default)]
    class_uid: Option<serde::de::IgnoredAny>,
}

/// One alert (ours or OCSF Detection Finding JSON) or an array of them,
/// parsed straight into typed alerts: the body is never held as a JSON tree
/// (an OCSF item is, one item at a time), so peak memory stays a small
/// multiple of the body.
pub(crate) fn alerts_from(bytes: &[u8]) -> Result<Vec<Alert>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|err| ApiError::bad_request(format!("the body is not UTF-8: {err}")))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty; send an alert or an array of alerts",
        ));
    }
    let items: Vec<&serde_json::value::RawValue> = if text.trim_start().starts_with('[') {
        parse_json::<RawBatch<'_>>(bytes)?.0
    } else {
        vec![parse_json::<&serde_json::value::RawValue>(bytes)?]
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let located = |detail: String| ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_alert".to_owned(),
                detail,
                location: Some(json!({"index": index})),
                retry_after: None,
            };
            let probe: OcsfProbe =
                serde_json::from_str(item.get()).map_err(|err| located(err.to_string()))?;
            let alert = if probe.class_uid.is_some() {
                let doc: Value =
                    serde_json::from_str(item.get()).map_err(|err| located(err.to_string()))?;
                rampart::ocsf::alert_from_ocsf(&doc).map_err(|err| located(err.to_string()))?
            } else {
                serde_json::from_str::<Alert>(item.get()).map_err(|err| located(err.to_string()))?
            };
            if alert.id.is_empty() || alert.id.len() > 256 {
                return Err(located("alert id must be 1-256 characters".to_owned()));
            }
            let problems = alert.problems();
            if !problems.is_empty() {
                return Err(located(problems.join("; ")));
            }
            Ok(alert)
        })
        .collect()
}

pub(crate) async fn ingest(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Ingest>,
    wait: Wait,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    // The rate is charged before the body is read or parsed: a tenant past
    // its rate costs no parsing. The rest of a batch is charged once its
    // size is known.
    if let Err(refused) = state.control.ingest().take(&tenant, 1) {
        // Held for a moment before it is answered (a tarpit): a client that
        // retries at once retries at most about once a second per
        // connection, and connections per address are capped, so a flood
        // past the rate costs the server little CPU and other tenants less.
        tokio::time::sleep(REFUSAL_DELAY).await;
        return Err(refused.into());
    }
    let bytes = body_bytes(request, &state).await?;
    // Every alert is checked before any is accepted: nothing half-taken.
    // A refused body gives its charge back.
    let alerts = match alerts_from(&bytes).and_then(|alerts| {
        state
            .control
            .ingest()
            .check_batch(&tenant, alerts.len())
            .map(|()| alerts)
            .map_err(ApiError::from)
    }) {
        Ok(alerts) => alerts,
        Err(err) => {
            state.control.ingest().give_back(&tenant, 1);
            return Err(err);
        }
    };
    drop(bytes);
    if alerts.len() > 1 {
        state.control.ingest().take(&tenant, alerts.len() - 1)?;
    }
    // Accepted (durable, queued) one by one; then the runs are waited for
    // as the client prefers. They run on the executor's workers either way.
    state.up_to_date().await?;
    let mut results = Vec::new();
    let mut runs = Vec::new();
    for alert in &alerts {
        let accepted = state.executor.accept(&tenant, alert).await?;
        runs.extend(accepted.runs.iter().cloned());
        results.push(json!(accepted));
    }
    let settled = state
        .executor
        .settle(&tenant, &runs, Some(wait.wait))
        .await?;
    Ok(wait.answer(settled, json!({"results": results})))
}

pub(crate) async fn ingest_events(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Ingest>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("events must be UTF-8 JSON"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty; send events as a JSON array, an object or JSON lines",
        ));
    }
    let items: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(single @ Value::Object(_)) => vec![single],
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line).map_err(|err| ApiError {
                    status: StatusCode::BAD_REQUEST,
                    error: "invalid_event".to_owned(),
                    detail: err.to_string(),
                    location: Some(json!({"line": index + 1, "column": err.column()})),
                    retry_after: None,
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if items.len() > 100_000 {
        return Err(ApiError::bad_request("at most 100000 events per request"));
    }
    let now = rampart::executor::now_ms();
    let events: Vec<rampart::model::Event> = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            // Our {id, time, data} shape, or a raw telemetry document.
            match serde_json::from_value::<rampart::model::Event>(item.clone()) {
                Ok(event) => event,
                Err(_) => rampart::model::Event {
                    id: item
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("ev-{now}-{index}"), str::to_owned),
                    time: item.get("time").and_then(Value::as_i64).unwrap_or(now),
                    data: item,
                },
            }
        })
        .collect();
    let stored = state
        .control
        .hunts()
        .events()
        .append(&tenant, events, now)?;
    Ok(Json(json!({"stored": stored})))
}
