//! The approval webhook: set, get, delete, and announcing an approval.

#[allow(unused_imports)]
use crate::api::*;

impl AppState {
    /// Delivers one approval request to its tenant's webhook, if any.
    pub(in crate::api) async fn announce(&self, approval: crate::executor::approvals::Approval) {
        let tenant = approval.tenant.clone();
        let Ok(record) = self.tenant(&tenant) else {
            return;
        };
        let Some(config) = record.approval_webhook else {
            return;
        };
        let secret = match self.webhook_secrets.get(tenant.as_str()) {
            Ok(Some(sealed)) => {
                match self.control.tenants().secret_box().unseal(
                    &tenant,
                    "_webhook",
                    WEBHOOK_SECRET_NAME,
                    &sealed,
                ) {
                    Ok(secret) => secret,
                    Err(err) => {
                        tracing::error!(%tenant, "approval webhook secret: {err}");
                        return;
                    }
                }
            }
            _ => return,
        };
        let outcome = match webhooks::deliver(&config, secret.expose().as_bytes(), &approval).await
        {
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
        *self
            .webhook_deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((tenant, outcome))
            .or_default() += 1;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct NewWebhook {
    url: String,
    /// Signing secret (write-only): at least 16 bytes.
    secret: String,
}

pub(in crate::api) async fn put_webhook(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Body(body): Body<NewWebhook>,
) -> Result<Json<Value>, ApiError> {
    let located = |field: &str, detail: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_webhook".to_owned(),
        detail,
        location: Some(json!({"field": field})),
        retry_after: None,
    };
    let (_, host, port, _) =
        webhooks::parse_url(&body.url).map_err(|err| located("url", err.to_string()))?;
    if body.secret.len() < 16 || body.secret.len() > 1_024 {
        return Err(located(
            "secret",
            "the signing secret is 16 to 1024 bytes".to_owned(),
        ));
    }
    // Like private ranges in grants: only an admin may point the server at
    // an internal address (the webhook is a request the server makes).
    // Resolved the way delivery resolves it; a name that does not resolve
    // is refused (delivery could not reach it, and it might later resolve
    // anywhere).
    let addresses = webhooks::resolve(&host, port)
        .await
        .map_err(|err| located("url", err.to_string()))?;
    let internal = addresses.iter().any(|ip| crate::net::is_internal(*ip));
    let is_admin = principal.token.role == Role::Admin;
    if internal && !is_admin {
        return Err(ApiError::forbidden(format!(
            "{host} is an internal address; only an admin may set such a webhook"
        )));
    }
    let sealed = state
        .control
        .tenants()
        .secret_box()
        .seal(
            &tenant,
            "_webhook",
            WEBHOOK_SECRET_NAME,
            &crate::tenant::Secret::new(body.secret),
        )
        .map_err(ApiError::internal)?;
    state
        .webhook_secrets
        .insert(tenant.as_str(), sealed)
        .map_err(storage_err)?;
    state.webhook_secrets.flush().map_err(storage_err)?;
    let mut record = state.tenant(&tenant)?;
    record.approval_webhook = Some(webhooks::WebhookConfig {
        url: body.url.clone(),
        allow_private: internal && is_admin,
    });
    state.put_tenant(&record)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"approval_webhook": body.url}),
    )?;
    Ok(Json(json!({"url": body.url})))
}

pub(in crate::api) async fn get_webhook(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
) -> Result<Json<Value>, ApiError> {
    let record = state.tenant(&tenant)?;
    let deliveries: BTreeMap<&str, u64> = state
        .webhook_deliveries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|((t, _), _)| *t == tenant)
        .map(|((_, outcome), count)| (*outcome, *count))
        .collect();
    match record.approval_webhook {
        Some(config) => Ok(Json(json!({"url": config.url, "deliveries": deliveries}))),
        None => Err(ApiError::not_found("no approval webhook")),
    }
}

pub(in crate::api) async fn delete_webhook(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
) -> Result<Response, ApiError> {
    let mut record = state.tenant(&tenant)?;
    if record.approval_webhook.take().is_none() {
        return Err(ApiError::not_found("no approval webhook"));
    }
    state.put_tenant(&record)?;
    state
        .webhook_secrets
        .remove(tenant.as_str())
        .map_err(storage_err)?;
    state.webhook_secrets.flush().map_err(storage_err)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"approval_webhook": null}),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
