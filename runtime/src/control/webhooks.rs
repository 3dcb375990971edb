//! Approval webhooks: when a run waits for a human, the tenant's webhook
//! gets a signed POST so a chat bot or ticketing system can page someone.
//!
//! The body is JSON; `X-Rampart-Signature: v1=<hex>` is HMAC-SHA256 under
//! the tenant's webhook secret over `<X-Rampart-Timestamp>.<body>`, so the
//! receiver can check both origin and freshness (reject old timestamps to
//! stop replays). Delivery is retried three times; a failure is logged and
//! counted, never fatal to the run (the approval is in the API either way).
//!
//! [`Webhooks`] is the control plane's service (set with its address rule,
//! get with delivery counts, delete, announce); the rest are the delivery
//! primitives it uses.

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;

use super::{ControlError, Tenants, audit_change};
use crate::executor::Executor;
use crate::executor::approvals::Approval;
use crate::store::{Keyspace, Tree};
use crate::tenant::TenantId;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-rampart-signature";
/// Header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-rampart-timestamp";

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

pub use super::WebhookConfig;

/// Why a webhook URL is not acceptable or a delivery failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// The URL does not parse or is not http(s).
    #[error("webhook url: {0}")]
    InvalidUrl(String),
    /// The host resolves to an internal address the tenant may not reach.
    #[error("webhook host {0} resolves to an internal address; only an admin may allow that")]
    Internal(String),
    /// Delivery failed.
    #[error("webhook delivery: {0}")]
    Delivery(String),
    /// The signing secret is too short or too long.
    #[error("the signing secret is 16 to 1024 bytes")]
    Secret,
}

/// The addresses a webhook host names, the same way at set time and at
/// delivery: an IP literal is itself; `localhost` and `*.localhost` (with or
/// without a trailing dot, any case) are loopback without asking DNS
/// (RFC 6761); any other name is resolved.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, WebhookError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Ok(vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ]);
    }
    Ok(tokio::net::lookup_host((host, port))
        .await
        .map_err(|err| WebhookError::Delivery(format!("resolving {host}: {err}")))?
        .map(|addr| addr.ip())
        .collect())
}

/// The URL's scheme, host and port, checked.
pub fn parse_url(url: &str) -> Result<(bool, String, u16, http::Uri), WebhookError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|err| WebhookError::InvalidUrl(format!("{err}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(WebhookError::InvalidUrl(
                "must start with http:// or https://".to_owned(),
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| WebhookError::InvalidUrl("no host".to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if url.len() > 2_048 {
        return Err(WebhookError::InvalidUrl(
            "longer than 2048 bytes".to_owned(),
        ));
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((https, host, port, uri))
}

/// Signs `body` at `timestamp`: `v1=<hex hmac-sha256(secret, "{timestamp}.{body}")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON announced for a pending approval.
pub fn body(approval: &Approval) -> Vec<u8> {
    let value = serde_json::json!({
        "event": "approval.requested",
        "tenant": approval.tenant,
        "approval": approval,
        "approve": format!("/v1/tenants/{}/approvals/{}/approve", approval.tenant, approval.id),
        "deny": format!("/v1/tenants/{}/approvals/{}/deny", approval.tenant, approval.id),
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Delivers `approval` to `config` signed with `secret`, retrying.
pub async fn deliver(
    config: &WebhookConfig,
    secret: &[u8],
    approval: &Approval,
) -> Result<u16, WebhookError> {
    let body = body(approval);
    // Signed afresh at each try: the timestamp is part of the signature.
    let headers = || {
        let timestamp = crate::executor::now_ms() / 1000;
        vec![
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, sign(secret, timestamp, &body)),
            ("x-rampart-delivery", approval.id.clone()),
        ]
    };
    post_retrying(config, headers, "application/json", &body).await
}

/// POSTs `body` to `config` up to [`ATTEMPTS`] times (1 s, then 4 s apart,
/// each try bounded by [`TIMEOUT`]), with the headers `headers` makes for
/// each try. An answer below 500 is final (a 4xx will not change on a
/// retry), as is a URL or address that may not be used; the last failure
/// otherwise.
pub(super) async fn post_retrying(
    config: &WebhookConfig,
    headers: impl Fn() -> Vec<(&'static str, String)>,
    content_type: &str,
    body: &[u8],
) -> Result<u16, WebhookError> {
    let mut last = WebhookError::Delivery("not attempted".to_owned());
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (2 * (attempt - 1)))).await;
        }
        match tokio::time::timeout(TIMEOUT, post_to(config, &headers(), content_type, body)).await {
            Ok(Ok(status)) if status < 500 => return Ok(status),
            Ok(Ok(status)) => last = WebhookError::Delivery(format!("answered {status}")),
            Ok(Err(err @ (WebhookError::Internal(_) | WebhookError::InvalidUrl(_)))) => {
                return Err(err);
            }
            Ok(Err(err)) => last = err,
            Err(_) => last = WebhookError::Delivery(format!("no answer within {TIMEOUT:?}")),
        }
    }
    Err(last)
}

/// POSTs `body` to `config`'s URL with `headers` once, connecting only to an
/// address the config allows (checked at connect time, not only when the
/// URL was set); the response status.
async fn post_to(
    config: &WebhookConfig,
    headers: &[(&'static str, String)],
    content_type: &str,
    body: &[u8],
) -> Result<u16, WebhookError> {
    let (https, host, port, uri) = parse_url(&config.url)?;
    let addresses = resolve(&host, port).await?;
    // Connect to a checked address, not whatever the name resolves to next.
    let Some(ip) = addresses
        .iter()
        .copied()
        .find(|ip| config.allow_private || !crate::net::is_internal(*ip))
    else {
        return Err(WebhookError::Internal(host));
    };
    let stream = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|err| WebhookError::Delivery(format!("connecting to {host}: {err}")))?;
    let delivery_error = |err: hyper::Error| WebhookError::Delivery(err.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut request = hyper::Request::post(path)
        .header(http::header::HOST, host.as_str())
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::USER_AGENT, "rampart-webhook/1");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(bytes::Bytes::copy_from_slice(body)))
        .map_err(|err| WebhookError::InvalidUrl(err.to_string()))?;
    let response = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|err| WebhookError::InvalidUrl(err.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(crate::net::tls_config())
            .connect(name, stream)
            .await
            .map_err(|err| WebhookError::Delivery(format!("TLS with {host}: {err}")))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(tls))
                .await
                .map_err(delivery_error)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(delivery_error)?
    } else {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
                .map_err(delivery_error)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(delivery_error)?
    };
    let status = response.status().as_u16();
    // Drain (bounded by the timeout around this call) so the connection ends cleanly.
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// The name the webhook's signing secret is sealed under.
const SECRET_NAME: &str = "approval-webhook";

/// Deliveries by tenant and outcome (`delivered`, `refused`, `failed`).
type Deliveries = std::collections::BTreeMap<(TenantId, &'static str), u64>;

/// Each tenant's approval webhook: its URL (on the tenant record), its
/// signing secret (sealed apart) and what became of deliveries.
#[derive(Clone)]
pub struct Webhooks {
    executor: Executor,
    tenants: Tenants,
    /// tenant → sealed signing secret.
    secrets: Tree,
    deliveries: std::sync::Arc<std::sync::Mutex<Deliveries>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Webhooks in `space`, over the tenants' records.
    pub fn open(
        space: &Keyspace,
        executor: Executor,
        tenants: Tenants,
    ) -> Result<Self, ControlError> {
        Ok(Webhooks {
            executor,
            tenants,
            secrets: space.open_tree("api-webhook-secrets")?,
            deliveries: std::sync::Arc::default(),
        })
    }

    /// Sets `tenant`'s approval webhook. The URL must be http(s) with a
    /// host, the secret 16 to 1024 bytes; a host that resolves (the way
    /// delivery resolves it) to an internal address is refused unless
    /// `may_reach_internal` (an admin: the webhook is a request the server
    /// makes), and a name that does not resolve is refused.
    pub async fn set(
        &self,
        tenant: &TenantId,
        url: &str,
        secret: String,
        may_reach_internal: bool,
        actor: &str,
    ) -> Result<WebhookConfig, ControlError> {
        let located = |field: &'static str| move |source| ControlError::Webhook { field, source };
        let (_, host, port, _) = parse_url(url).map_err(located("url"))?;
        if secret.len() < 16 || secret.len() > 1_024 {
            return Err(located("secret")(WebhookError::Secret));
        }
        let addresses = resolve(&host, port).await.map_err(located("url"))?;
        let internal = addresses.iter().any(|ip| crate::net::is_internal(*ip));
        if internal && !may_reach_internal {
            return Err(ControlError::WebhookInternal(host));
        }
        let sealed = self.tenants.secret_box().seal(
            tenant,
            "_webhook",
            SECRET_NAME,
            &crate::tenant::Secret::new(secret),
        )?;
        let mut record = self.tenants.get(tenant)?;
        self.secrets.insert(tenant.as_str(), sealed)?;
        self.secrets.flush()?;
        let config = WebhookConfig {
            url: url.to_owned(),
            allow_private: internal,
        };
        record.approval_webhook = Some(config.clone());
        self.tenants.put(&record)?;
        audit_change(
            &self.executor,
            tenant,
            actor,
            serde_json::json!({"approval_webhook": url}),
        )?;
        Ok(config)
    }

    /// `tenant`'s webhook and its delivery counts by outcome.
    pub fn get(
        &self,
        tenant: &TenantId,
    ) -> Result<(WebhookConfig, std::collections::BTreeMap<&'static str, u64>), ControlError> {
        let record = self.tenants.get(tenant)?;
        let config = record.approval_webhook.ok_or(ControlError::NoWebhook)?;
        let deliveries = lock(&self.deliveries)
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, outcome), count)| (*outcome, *count))
            .collect();
        Ok((config, deliveries))
    }

    /// Removes `tenant`'s webhook and its secret.
    pub fn delete(&self, tenant: &TenantId, actor: &str) -> Result<(), ControlError> {
        let mut record = self.tenants.get(tenant)?;
        if record.approval_webhook.take().is_none() {
            return Err(ControlError::NoWebhook);
        }
        self.tenants.put(&record)?;
        self.secrets.remove(tenant.as_str())?;
        self.secrets.flush()?;
        audit_change(
            &self.executor,
            tenant,
            actor,
            serde_json::json!({"approval_webhook": null}),
        )
    }

    /// Delivers one approval request to its tenant's webhook, if it has
    /// one (retried; the outcome is logged and counted, never an error of
    /// the run). Wire it to [`Executor::notify_approvals`].
    pub async fn announce(&self, approval: Approval) {
        let tenant = approval.tenant.clone();
        let Ok(record) = self.tenants.get(&tenant) else {
            return;
        };
        let Some(config) = record.approval_webhook else {
            return;
        };
        let secret = match self.secrets.get(tenant.as_str()) {
            Ok(Some(sealed)) => {
                match self
                    .tenants
                    .secret_box()
                    .unseal(&tenant, "_webhook", SECRET_NAME, &sealed)
                {
                    Ok(secret) => secret,
                    Err(err) => {
                        tracing::error!(%tenant, "approval webhook secret: {err}");
                        return;
                    }
                }
            }
            _ => return,
        };
        let outcome = match deliver(&config, secret.expose().as_bytes(), &approval).await {
            Ok(status) if status < 300 => "delivered",
            Ok(status) => {
                tracing::warn!(%tenant, approval = %approval.id, status, "approval webhook refused the delivery");
                "refused"
            }
            Err(err) => {
                tracing::warn!(%tenant, approval = %approval.id, "approval webhook: {err}");
                "failed"
            }
        };
        *lock(&self.deliveries).entry((tenant, outcome)).or_default() += 1;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_time_and_body() {
        let one = sign(b"secret", 1_700_000_000, b"{}");
        assert!(one.starts_with("v1=") && one.len() == 67, "{one}");
        assert_ne!(one, sign(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(one, sign(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(one, sign(b"other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn only_http_urls_with_a_host() {
        assert!(parse_url("https://hooks.example/x").is_ok());
        for bad in ["ftp://x/", "file:///etc/passwd", "/relative", "http://"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
