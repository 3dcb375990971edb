//! A call's sandbox: admission against the tenant's quota, the store
//! with its limits, fuel, deadline and capabilities linked for this call;
//! and what happens when the call ends (stats, metrics, trap
//! classification, redaction of what the plugin returned).

#[allow(unused_imports)]
use super::*;

impl Plugin {
    /// A fresh sandbox: waits (up to the call's deadline) for one of the
    /// tenant's slots, then for its share of CPU.
    pub(super) async fn sandbox(&self, context: &CallContext) -> Result<Sandbox, PluginError> {
        let runtime = &self.inner.runtime;
        let mut limits = self.inner.limits;
        if let Some(timeout) = context.timeout {
            limits.timeout = limits.timeout.min(timeout);
        }
        let admission = self.admit(limits)?;
        let limits = admission.limits;
        let tenant = &self.inner.identity.tenant;
        let slot = match runtime.shares.slot(tenant, limits.timeout).await {
            Ok(slot) => slot,
            Err(err) => {
                self.count("unavailable", &CallStats::default());
                return Err(PluginError::Unavailable(err.to_string()));
            }
        };
        let cpu = share::CpuGate::new(runtime.shares.tenant(tenant).cpu.clone());
        let grant = &self.inner.identity.grant;
        let stderr = MemoryOutputPipe::new(crate::caps::wasi::STDERR_CAPACITY);
        let random = crate::caps::wasi::CountingRng::default();
        let random_bytes = random.counter();
        let started = Instant::now();
        let state = HostState {
            wasi: crate::caps::wasi::deny_all(
                stderr.clone(),
                random,
                runtime.engine.config().max_random_bytes,
            ),
            table: wasmtime::component::ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            http: if context.dry_run {
                HttpPolicy::deny_all(runtime.http_limits)
            } else {
                self.inner.identity.http.for_call()
            },
            limiter: CallLimiter::new(limits.memory_bytes),
            plugin: self.inner.identity.clone(),
            kv: KvAccess {
                store: if context.dry_run {
                    Arc::new(crate::store::MemoryStore::default())
                } else {
                    runtime.store.clone()
                },
                namespace: KvNamespace {
                    tenant: self.inner.identity.tenant.clone(),
                    plugin: self.inner.manifest.name.clone(),
                },
                quota: grant.kv_quota_bytes,
            },
            log: LogBudget::default(),
            stderr,
            deadline: started + limits.timeout,
            host_calls: 0,
            host_fuel_exhausted: false,
            host_bytes: 0,
            random_bytes,
            cpu: cpu.clone(),
            wants_pool: pool::wants_pool_flag(),
        };
        let mut store = Store::new(runtime.engine.wasmtime(), state);
        store.limiter(|state| &mut state.limiter);
        // Fuel: set_fuel only fails when fuel is not enabled, which the
        // engine always enables.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            let state = context.data();
            if Instant::now() >= state.deadline {
                state.cpu.release();
                Ok(UpdateDeadline::Interrupt)
            } else {
                // A call that runs a tick is not a short one: off the
                // caller's runtime with it (pool.rs).
                state
                    .wants_pool
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                // Still in time: hand the tenant's CPU share round (and the
                // executor a turn), then carry on.
                Ok(UpdateDeadline::YieldCustom(1, state.cpu.next_turn()))
            }
        });
        let config = runtime.engine.config();
        let host_call_fuel = config.host_call_fuel;
        let byte_fuel = config.host_byte_fuel;
        store.call_hook(move |mut context, hook| {
            match hook {
                CallHook::CallingHost => {
                    let fuel = context.get_fuel()?;
                    if fuel < host_call_fuel {
                        context.data_mut().host_fuel_exhausted = true;
                        return Err(wasmtime::Error::msg("out of fuel in host call"));
                    }
                    context.set_fuel(fuel - host_call_fuel)?;
                    // Host work runs on the call's CPU share; where the host
                    // waits (io_gate), it gives the share back.
                    context.data_mut().host_calls += 1;
                }
                CallHook::ReturningFromHost => {
                    let state = context.data_mut();
                    let bytes = state.host_bytes
                        + state
                            .random_bytes
                            .swap(0, std::sync::atomic::Ordering::Relaxed);
                    state.host_bytes = 0;
                    let owed = bytes.saturating_mul(byte_fuel);
                    if owed > 0 {
                        let fuel = context.get_fuel()?;
                        if fuel < owed {
                            context.data_mut().host_fuel_exhausted = true;
                            let _ = context.set_fuel(0);
                            return Err(wasmtime::Error::msg("out of fuel in host call"));
                        }
                        context.set_fuel(fuel - owed)?;
                    }
                }
                _ => {}
            }
            Ok(())
        });
        // Queue for the tenant's CPU share before any guest code runs (the
        // wait counts against the call's deadline).
        let cpu_wait = if cpu.try_take() {
            Ok(())
        } else {
            tokio::time::timeout(limits.timeout, cpu.take()).await
        };
        if cpu_wait.is_err() {
            self.count("deadline", &CallStats::default());
            return Err(PluginError::Deadline {
                limit_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        Ok(Sandbox {
            store,
            started,
            fuel_budget: limits.fuel,
            limits,
            fuel_cut_by_quota: admission.fuel_cut_by_quota,
            _slot: slot,
        })
    }

    /// The tenant's quota applied to a call's limits (or its refusal).
    pub(super) fn admit(&self, limits: Limits) -> Result<quota::Admission, PluginError> {
        let admitted = self
            .inner
            .runtime
            .quotas
            .admit(&self.inner.identity.tenant, limits);
        if admitted.is_err() {
            self.count("quota_exceeded", &CallStats::default());
        }
        admitted
    }

    /// Counts a finished call and charges its fuel to the tenant's quota.
    pub(super) fn count(&self, outcome: &'static str, stats: &CallStats) {
        let runtime = &self.inner.runtime;
        runtime
            .quotas
            .charge(&self.inner.identity.tenant, stats.fuel);
        let mut calls = runtime
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        calls
            .entry((
                self.inner.identity.tenant.clone(),
                self.inner.manifest.name.clone(),
                outcome,
            ))
            .or_default()
            .record(stats);
    }

    /// Turns the outcome of a call into its value or a precise error.
    pub(super) fn finish<T, U>(
        &self,
        sandbox: &mut Sandbox,
        outcome: Result<wasmtime::Result<Result<T, wit::PluginError>>, tokio::time::error::Elapsed>,
        convert: impl FnOnce(T) -> Result<U, OutputViolation>,
    ) -> Result<Called<U>, PluginError> {
        let elapsed = sandbox.started.elapsed();
        let state = sandbox.store.data();
        // Between calls (a hunt session idles) the call holds no CPU share.
        state.cpu.release();
        state
            .log
            .summarise(&state.plugin.tenant, &state.plugin.name);
        state
            .http
            .summarise_denials(&state.plugin.tenant, &state.plugin.name);
        let stats = CallStats {
            duration: elapsed,
            fuel: sandbox
                .fuel_budget
                .saturating_sub(sandbox.store.get_fuel().unwrap_or(0)),
            peak_memory_bytes: state.limiter.peak_memory as u64,
            host_calls: state.host_calls,
        };
        let deadline = || PluginError::Deadline {
            limit_ms: u64::try_from(sandbox.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        };
        let identity = state.plugin.clone();
        let result = match outcome {
            Err(_elapsed) => Err(deadline()),
            Ok(Err(err)) => Err(self.classify_trap(sandbox, &err, deadline)),
            Ok(Ok(Err(guest))) => Err(match state.http.denial() {
                Some(detail) => PluginError::CapabilityDenied { detail },
                None => PluginError::Guest(guest.into()),
            }),
            Ok(Ok(Ok(value))) => {
                convert(value)
                    .map(|value| Called { value, stats })
                    .map_err(|violation| PluginError::InvalidOutput {
                        detail: violation.0,
                    })
            }
        };
        // Nothing a plugin said leaves with a secret of its grant in it.
        let result = result.map_err(|err| identity.redactor.error(err));
        let outcome: &'static str = match &result {
            Ok(_) => "ok",
            Err(PluginError::Guest(_)) => "guest",
            Err(PluginError::Trap { .. }) => "trap",
            Err(PluginError::OutOfFuel { .. }) => "out_of_fuel",
            Err(PluginError::Deadline { .. }) => "deadline",
            Err(PluginError::OutOfMemory { .. }) => "out_of_memory",
            Err(PluginError::CapabilityDenied { .. }) => "capability_denied",
            Err(PluginError::InvalidOutput { .. }) => "invalid_output",
            Err(PluginError::WrongKind { .. }) => "wrong_kind",
            Err(PluginError::Unavailable(_)) => "unavailable",
            Err(PluginError::QuotaExceeded { .. }) => "quota_exceeded",
            Err(PluginError::SessionBudget { .. }) => "session_budget",
        };
        self.count(outcome, &stats);
        let span_result = match &result {
            Ok(_) => "ok".to_owned(),
            Err(err) => err.to_string(),
        };
        tracing::debug!(
            tenant = %self.inner.identity.tenant,
            plugin = %self.inner.manifest.name,
            duration_us = stats.duration.as_micros() as u64,
            fuel = stats.fuel,
            peak_memory = stats.peak_memory_bytes,
            host_calls = stats.host_calls,
            result = %span_result,
            "plugin call"
        );
        result
    }

    pub(super) fn classify_trap(
        &self,
        sandbox: &Sandbox,
        err: &wasmtime::Error,
        deadline: impl Fn() -> PluginError,
    ) -> PluginError {
        let state = sandbox.store.data();
        let out_of_fuel = || {
            if sandbox.fuel_cut_by_quota {
                PluginError::QuotaExceeded {
                    detail: format!(
                        "tenant {} ran out of its fuel quota for this minute",
                        self.inner.identity.tenant
                    ),
                    retry_after_ms: 60_000,
                }
            } else {
                PluginError::OutOfFuel {
                    budget: sandbox.fuel_budget,
                }
            }
        };
        if state.host_fuel_exhausted {
            return out_of_fuel();
        }
        if let Some(trap) = err.downcast_ref::<Trap>() {
            match trap {
                Trap::Interrupt => return deadline(),
                Trap::OutOfFuel => return out_of_fuel(),
                _ => {}
            }
            if state.limiter.memory_refused {
                return PluginError::OutOfMemory {
                    limit_bytes: sandbox.limits.memory_bytes,
                };
            }
            let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
            // Keep what the guest said (a panic's location and message), not
            // Rust's "note: run with RUST_BACKTRACE" hint.
            let said: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with("note:"))
                .collect();
            let message = (!said.is_empty()).then(|| {
                let mut text = said[said.len().saturating_sub(2)..].join(" ");
                text.truncate(text.floor_char_boundary(500));
                text
            });
            return PluginError::Trap {
                code: trap.to_string(),
                message,
            };
        }
        if state.limiter.memory_refused {
            return PluginError::OutOfMemory {
                limit_bytes: sandbox.limits.memory_bytes,
            };
        }
        if let Some(detail) = state.http.denial() {
            return PluginError::CapabilityDenied { detail };
        }
        if sandbox.started.elapsed() >= sandbox.limits.timeout {
            return deadline();
        }
        let text = format!("{err:#}");
        if text.contains("resource limit") || text.contains("instance") && text.contains("limit") {
            return PluginError::Unavailable(text);
        }
        PluginError::Trap {
            code: "host error".to_owned(),
            message: Some(text),
        }
    }
}
