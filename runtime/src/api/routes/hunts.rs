//! Scheduled hunts: put, list, run now, and the scheduler's pass.

#[allow(unused_imports)]
use crate::api::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct NewHunt {
    plugin: String,
    schedule: String,
    #[serde(default)]
    params: Value,
}

pub(in crate::api) async fn put_hunt(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
    Body(body): Body<NewHunt>,
) -> Result<Json<Value>, ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ApiError::bad_request(
            "hunt names are 1-64 characters of [a-z0-9-]",
        ));
    }
    hunts::parse_schedule(&body.schedule).map_err(|detail| ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_schedule".to_owned(),
        detail,
        location: Some(json!({"field": "schedule"})),
        retry_after: None,
    })?;
    match state.executor.plugin(&tenant, &body.plugin) {
        Some(plugin) if plugin.manifest().kind == crate::manifest::PluginKind::Hunt => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "plugin {} is not a hunt",
                body.plugin
            )));
        }
        None => return Err(ApiError::bad_request(format!("no plugin {}", body.plugin))),
    }
    let hunt_key = key(&[tenant.as_str(), &name]);
    // Re-registering keeps the watermark: events are still scanned once.
    let previous: Option<Value> = state
        .hunts
        .get(&hunt_key)
        .map_err(storage_err)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut record = previous
        .as_ref()
        .and_then(|p| serde_json::from_value::<hunts::HuntRecord>(p["record"].clone()).ok())
        .unwrap_or(hunts::HuntRecord {
            tenant: tenant.clone(),
            name: name.clone(),
            plugin: body.plugin.clone(),
            schedule: body.schedule.clone(),
            params: Value::Null,
            watermark: 0,
            last_run: None,
            last_scanned: 0,
            last_findings: 0,
            last_error: None,
        });
    record.plugin = body.plugin;
    record.schedule = body.schedule;
    record.params = if body.params.is_null() {
        json!({})
    } else {
        body.params
    };
    let registered = previous
        .as_ref()
        .and_then(|p| p["registered"].as_i64())
        .unwrap_or_else(crate::executor::now_ms);
    state
        .hunts
        .insert(
            hunt_key,
            serde_json::to_vec(&json!({"record": record, "registered": registered}))
                .map_err(ApiError::internal)?,
        )
        .map_err(storage_err)?;
    state.hunts.flush().map_err(storage_err)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"hunt": name, "schedule": record.schedule, "plugin": record.plugin}),
    )?;
    Ok(Json(json!(record)))
}

pub(in crate::api) async fn list_hunts(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let mut prefix = tenant.as_str().as_bytes().to_vec();
    prefix.push(0);
    let list: Vec<Value> = state
        .hunts
        .scan_prefix(&prefix)
        .values()
        .filter_map(Result::ok)
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| v["record"].clone())
        .collect();
    Ok(Json(json!({"hunts": list})))
}

impl AppState {
    /// Runs hunt `name` of `tenant` now and stores its new watermark.
    pub(in crate::api) async fn fire_hunt(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(hunts::HuntRecord, Vec<String>), ApiError> {
        let hunt_key = key(&[tenant.as_str(), name]);
        // One run of a hunt at a time (a scheduled and a manual one must not
        // read the same watermark); other hunts go on.
        let lock = self
            .hunt_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(hunt_key.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let stored: Value = self
            .hunts
            .get(&hunt_key)
            .map_err(storage_err)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::not_found(format!("no hunt {name}")))?;
        let mut record: hunts::HuntRecord =
            serde_json::from_value(stored["record"].clone()).map_err(ApiError::internal)?;
        let now = crate::executor::now_ms();
        let outcome = hunts::run_hunt(&self.executor, &self.events, &mut record, now).await;
        let alerts = match outcome {
            Ok(alerts) => alerts,
            Err(err) => {
                // A failing hunt keeps its watermark (the events are rescanned
                // next time) but records why; it is retried at the next point.
                record.last_run = Some(now);
                record.last_error = Some(err.detail.clone());
                Vec::new()
            }
        };
        self.hunts
            .insert(
                hunt_key,
                serde_json::to_vec(&json!({"record": record, "registered": stored["registered"]}))
                    .map_err(ApiError::internal)?,
            )
            .map_err(storage_err)?;
        self.hunts.flush().map_err(storage_err)?;
        Ok((record, alerts))
    }

    /// Fires every hunt whose schedule point has passed.
    pub async fn run_due_hunts(&self) -> Result<usize, ApiError> {
        let now = crate::executor::now_ms();
        let mut due = Vec::new();
        for entry in self.hunts.iter() {
            let (_, bytes) = entry.map_err(storage_err)?;
            let Ok(stored) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let Ok(record) = serde_json::from_value::<hunts::HuntRecord>(stored["record"].clone())
            else {
                continue;
            };
            if hunts::due(&record, stored["registered"].as_i64().unwrap_or(now), now) {
                due.push((record.tenant, record.name));
            }
        }
        let mut by_tenant: BTreeMap<TenantId, Vec<String>> = BTreeMap::new();
        for (tenant, name) in due {
            by_tenant.entry(tenant).or_default().push(name);
        }
        let mut started = 0;
        for (tenant, names) in by_tenant {
            // A tenant still busy with earlier hunts catches up at a later tick.
            if !self
                .hunting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(tenant.clone())
            {
                continue;
            }
            started += names.len();
            let state = self.clone();
            tokio::spawn(async move {
                for name in names {
                    if let Err(err) = state.fire_hunt(&tenant, &name).await {
                        tracing::warn!(%tenant, hunt = %name, "scheduled hunt failed: {}", err.detail);
                    }
                }
                state
                    .hunting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&tenant);
            });
        }
        Ok(started)
    }
}

pub(in crate::api) async fn run_hunt_now(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (record, alerts) = state.fire_hunt(&tenant, &name).await?;
    Ok(Json(json!({"hunt": record, "alerts": alerts})))
}
