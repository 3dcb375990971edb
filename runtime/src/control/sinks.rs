//! The findings sink: a tenant's run verdicts and hunt findings pushed, as
//! OCSF 1.8 Detection Findings, to an HTTP receiver of its SIEM.
//!
//! Formats: `hec` (Splunk HTTP Event Collector: one `{"event": <ocsf>,
//! "sourcetype": "ocsf:detection_finding", "time": <s>}` object per
//! finding, `Authorization: Splunk <token>`), `opensearch` (the `_bulk`
//! API: an `{"index": {}}` line before each document, NDJSON) and `ndjson`
//! (one document per line; `Authorization: Bearer <token>` when a token is
//! set). The URL follows the approval webhook's address rule (an internal
//! address only when an admin allows it, checked again at every delivery);
//! the token is sealed apart from the config. A delivery is tried as the
//! approval webhook's is (three times, 1 s and 4 s apart; a 4xx is final);
//! every delivery, delivered or failed, is an audit
//! record (`findings_exported`) with the run or hunt, the count and the
//! outcome — what left the system is on the chain.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::webhooks::{WebhookError, parse_url, post_retrying, resolve};
use super::{ControlError, Tenants, WebhookConfig, audit_change};
use crate::audit::AuditKind;
use crate::executor::Executor;
use crate::store::{Keyspace, Tree};
use crate::tenant::TenantId;

/// The name the sink's token is sealed under.
const TOKEN_NAME: &str = "findings-sink";

/// The body a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    /// Splunk HTTP Event Collector.
    Hec,
    /// OpenSearch / Elasticsearch `_bulk`.
    Opensearch,
    /// One OCSF document per line.
    Ndjson,
}

/// A tenant's findings sink as stored (the token is sealed apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Where, and whether it may be internal.
    #[serde(flatten)]
    pub target: WebhookConfig,
    /// The body's shape.
    pub format: SinkFormat,
    /// Whether a token is set.
    pub has_token: bool,
}

/// Every tenant's findings sink.
#[derive(Clone)]
pub struct FindingSinks {
    executor: Executor,
    tenants: Tenants,
    configs: Tree,
    tokens: Tree,
    /// Tenants that have a sink: a finished run of any other costs no
    /// store read and no task.
    configured: Arc<RwLock<HashSet<TenantId>>>,
}

impl std::fmt::Debug for FindingSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FindingSinks").finish_non_exhaustive()
    }
}

fn decode_err(source: serde_json::Error) -> ControlError {
    ControlError::Decode {
        what: "findings sink".to_owned(),
        source,
    }
}

impl FindingSinks {
    /// Over `space`.
    pub fn open(
        space: &Keyspace,
        executor: Executor,
        tenants: Tenants,
    ) -> Result<Self, ControlError> {
        let configs = space.open_tree("findings-sinks")?;
        let mut configured = HashSet::new();
        for entry in configs.iter() {
            let (tenant, _) = entry?;
            if let Ok(tenant) = TenantId::new(String::from_utf8_lossy(&tenant).into_owned()) {
                configured.insert(tenant);
            }
        }
        Ok(FindingSinks {
            executor,
            tenants,
            configs,
            tokens: space.open_tree("findings-sink-tokens")?,
            configured: Arc::new(RwLock::new(configured)),
        })
    }

    /// Whether `tenant` has a sink (in memory, no store read).
    pub fn has(&self, tenant: &TenantId) -> bool {
        self.configured
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(tenant)
    }

    /// Reads again which tenants have a sink (set through another node).
    pub(super) fn restore(&self) -> Result<(), ControlError> {
        let mut configured = HashSet::new();
        for entry in self.configs.iter() {
            let (tenant, _) = entry?;
            if let Ok(tenant) = TenantId::new(String::from_utf8_lossy(&tenant).into_owned()) {
                configured.insert(tenant);
            }
        }
        *self
            .configured
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = configured;
        Ok(())
    }

    fn mark(&self, tenant: &TenantId, configured: bool) {
        let mut set = self
            .configured
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if configured {
            set.insert(tenant.clone());
        } else {
            set.remove(tenant);
        }
    }

    /// Sets `tenant`'s sink (audited). The URL must be http(s) and resolve;
    /// an internal address only with `may_reach_internal` (an admin).
    pub async fn set(
        &self,
        tenant: &TenantId,
        url: &str,
        format: SinkFormat,
        token: Option<String>,
        may_reach_internal: bool,
        actor: &str,
    ) -> Result<SinkConfig, ControlError> {
        let located = |field: &'static str| move |source| ControlError::Webhook { field, source };
        let (_, host, port, _) = parse_url(url).map_err(located("url"))?;
        if token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > 4_096)
        {
            return Err(located("token")(WebhookError::Secret));
        }
        self.tenants.get(tenant)?;
        let addresses = resolve(&host, port).await.map_err(located("url"))?;
        let internal = addresses.iter().any(|ip| crate::net::is_internal(*ip));
        if internal && !may_reach_internal {
            return Err(ControlError::WebhookInternal(host));
        }
        let config = SinkConfig {
            target: WebhookConfig {
                url: url.to_owned(),
                allow_private: internal,
            },
            format,
            has_token: token.is_some(),
        };
        match token {
            Some(token) => {
                let sealed = self.tenants.secret_box().seal(
                    tenant,
                    "_sink",
                    TOKEN_NAME,
                    &crate::tenant::Secret::new(token),
                )?;
                self.tokens.insert(tenant.as_str(), sealed)?;
            }
            None => {
                self.tokens.remove(tenant.as_str())?;
            }
        }
        let bytes = serde_json::to_vec(&config).map_err(decode_err)?;
        self.configs.insert(tenant.as_str(), bytes)?;
        self.configs.flush()?;
        self.mark(tenant, true);
        audit_change(
            &self.executor,
            tenant,
            actor,
            json!({"findings_sink": url, "format": format}),
        )?;
        Ok(config)
    }

    /// `tenant`'s sink, if any.
    pub fn get(&self, tenant: &TenantId) -> Result<Option<SinkConfig>, ControlError> {
        self.configs
            .get(tenant.as_str())?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(decode_err))
            .transpose()
    }

    /// Removes `tenant`'s sink (audited); whether there was one.
    pub fn delete(&self, tenant: &TenantId, actor: &str) -> Result<bool, ControlError> {
        if self.configs.get(tenant.as_str())?.is_none() {
            return Ok(false);
        }
        self.configs.remove(tenant.as_str())?;
        self.tokens.remove(tenant.as_str())?;
        self.configs.flush()?;
        self.mark(tenant, false);
        audit_change(
            &self.executor,
            tenant,
            actor,
            json!({"findings_sink": null}),
        )?;
        Ok(true)
    }

    /// Pushes run `run_id`'s verdict, if its tenant has a sink.
    pub async fn export_run(&self, tenant: &TenantId, run_id: &str) {
        if !self.has(tenant) {
            return;
        }
        let Ok(Some(config)) = self.get(tenant) else {
            return;
        };
        let Ok(run) = self.executor.get_run(tenant, run_id) else {
            return;
        };
        let docs = [crate::ocsf::run_to_ocsf(&run)];
        self.export(tenant, &config, &docs, json!({"run": run_id}))
            .await;
    }

    /// Pushes `hunt`'s new findings, if the tenant has a sink.
    pub async fn export_findings(
        &self,
        tenant: &TenantId,
        hunt: &str,
        findings: &[crate::model::Finding],
    ) {
        if findings.is_empty() || !self.has(tenant) {
            return;
        }
        let Ok(Some(config)) = self.get(tenant) else {
            return;
        };
        let docs: Vec<Value> = findings
            .iter()
            .map(|finding| crate::ocsf::finding_to_ocsf(tenant, hunt, finding))
            .collect();
        self.export(tenant, &config, &docs, json!({"hunt": hunt}))
            .await;
    }

    async fn export(&self, tenant: &TenantId, config: &SinkConfig, docs: &[Value], what: Value) {
        let token = match self.tokens.get(tenant.as_str()) {
            Ok(Some(sealed)) => self
                .tenants
                .secret_box()
                .unseal(tenant, "_sink", TOKEN_NAME, &sealed)
                .ok()
                .map(|secret| secret.expose().to_owned()),
            _ => None,
        };
        let (content_type, body) = body(config.format, docs);
        let mut headers = Vec::new();
        if let Some(token) = token {
            let scheme = match config.format {
                SinkFormat::Hec => "Splunk",
                SinkFormat::Opensearch | SinkFormat::Ndjson => "Bearer",
            };
            headers.push(("authorization", format!("{scheme} {token}")));
        }
        let outcome =
            match post_retrying(&config.target, || headers.clone(), content_type, &body).await {
                Ok(status) if (200..300).contains(&status) => Ok(status),
                Ok(status) => Err(format!("answered {status}")),
                Err(err) => Err(err.to_string()),
            };
        let mut detail = json!({"url": config.target.url, "format": config.format, "findings": docs.len(), "export": what});
        match &outcome {
            Ok(status) => detail["status"] = json!(status),
            Err(error) => {
                tracing::warn!(%tenant, "findings sink: {error}");
                detail["error"] = json!(error);
            }
        }
        let run = detail["export"]["run"].as_str().map(str::to_owned);
        if let Err(err) = self.executor.audit().append(
            tenant,
            AuditKind::FindingsExported,
            run.as_deref(),
            None,
            None,
            detail,
        ) {
            tracing::error!(%tenant, "findings sink audit: {err}");
        }
    }
}

/// The content type and body of `docs` in `format`.
fn body(format: SinkFormat, docs: &[Value]) -> (&'static str, Vec<u8>) {
    let mut out = String::new();
    for doc in docs {
        match format {
            SinkFormat::Hec => {
                let time = doc["time"].as_i64().unwrap_or(0) as f64 / 1000.0;
                out.push_str(
                    &json!({"event": doc, "sourcetype": "ocsf:detection_finding", "time": time})
                        .to_string(),
                );
                out.push('\n');
            }
            SinkFormat::Opensearch => {
                out.push_str("{\"index\":{}}\n");
                out.push_str(&doc.to_string());
                out.push('\n');
            }
            SinkFormat::Ndjson => {
                out.push_str(&doc.to_string());
                out.push('\n');
            }
        }
    }
    let content_type = match format {
        SinkFormat::Hec => "application/json",
        SinkFormat::Opensearch | SinkFormat::Ndjson => "application/x-ndjson",
    };
    (content_type, out.into_bytes())
}
