//! Hunt sessions: one sandbox for a whole hunt (open, pushes, close).
//!
//! Each push and the close get the plugin's per-call fuel and deadline
//! afresh, but the session as a whole has a budget too
//! ([`EngineConfig::max_session_time`](crate::EngineConfig) and
//! `max_session_fuel`, from `open` on): a push is given at most what is
//! left of it, and one that runs out of the session's budget ends with
//! [`PluginError::SessionBudget`]. Without it, a session fed batch after
//! batch ran 19.7 s and 88.6e9 fuel against per-call limits of 5 s and 20e9.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;

use super::{CallStats, Called, Plugin, PluginError, Sandbox};
use crate::bindings::{hunt, types as wit};
use crate::model::{Event, Finding};

/// An open hunt session: push event batches, then close. Every push and
/// the close run on the call pool, like every other call.
pub struct HuntSession {
    plugin: Plugin,
    core: Option<SessionCore>,
}

/// The session's sandbox and accounting, moved to the call pool and back
/// for each push.
struct SessionCore {
    plugin: Plugin,
    sandbox: Sandbox,
    instance: hunt::Hunt,
    session: Option<ResourceAny>,
    stats: CallStats,
    opened: Instant,
    fuel_used: u64,
    /// What the current push was cut to by the session's budget.
    cut: Option<&'static str>,
}

impl std::fmt::Debug for HuntSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuntSession")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

fn ended() -> PluginError {
    PluginError::Unavailable("hunt session already ended".to_owned())
}

impl HuntSession {
    pub(super) fn new(
        plugin: Plugin,
        sandbox: Sandbox,
        instance: hunt::Hunt,
        session: ResourceAny,
        stats: CallStats,
    ) -> Self {
        HuntSession {
            plugin: plugin.clone(),
            core: Some(SessionCore::new(plugin, sandbox, instance, session, stats)),
        }
    }

    /// What opening the session cost.
    pub fn open_stats(&self) -> CallStats {
        self.core
            .as_ref()
            .map_or_else(CallStats::default, |core| core.stats)
    }

    /// Scans one batch. After any failure the session is dead.
    pub async fn push(&mut self, events: &[Event]) -> Result<Called<Vec<Finding>>, PluginError> {
        let mut core = self.core.take().ok_or_else(ended)?;
        let batch: Vec<wit::Event> = events.iter().map(Into::into).collect();
        let (core, result) = self
            .plugin
            .pool()
            .run(async move {
                let result = core.push(batch).await;
                (core, result)
            })
            .await?;
        if result.is_ok() {
            self.core = Some(core);
        }
        result
    }

    /// Ends the session and returns its final findings.
    pub async fn close(mut self) -> Result<Called<Vec<Finding>>, PluginError> {
        let core = self.core.take().ok_or_else(ended)?;
        self.plugin.pool().run(core.close()).await?
    }
}

impl SessionCore {
    fn new(
        plugin: Plugin,
        sandbox: Sandbox,
        instance: hunt::Hunt,
        session: ResourceAny,
        stats: CallStats,
    ) -> Self {
        SessionCore {
            opened: sandbox.started,
            fuel_used: stats.fuel,
            plugin,
            sandbox,
            instance,
            session: Some(session),
            stats,
            cut: None,
        }
    }

    fn budget_error(&self, what: &'static str) -> PluginError {
        let config = self.plugin.inner.runtime.engine.config();
        let (limit, used) = match what {
            "time" => (
                u64::try_from(config.max_session_time.as_millis()).unwrap_or(u64::MAX),
                u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX),
            ),
            _ => (config.max_session_fuel, self.fuel_used),
        };
        PluginError::SessionBudget { what, limit, used }
    }

    /// Gives the next push or close a fresh deadline and fuel budget,
    /// within what is left of the tenant's fuel quota and of the session's
    /// own budget; queues for the tenant's CPU share.
    async fn rearm(&mut self) -> Result<(), PluginError> {
        let config = self.plugin.inner.runtime.engine.config();
        let time_left = config
            .max_session_time
            .saturating_sub(self.opened.elapsed());
        let fuel_left = config.max_session_fuel.saturating_sub(self.fuel_used);
        if time_left.is_zero() {
            return Err(self.budget_error("time"));
        }
        if fuel_left == 0 {
            return Err(self.budget_error("fuel"));
        }
        let admission = self.plugin.admit(self.plugin.inner.limits)?;
        let mut timeout = self.sandbox.limits.timeout;
        let mut fuel = admission.limits.fuel;
        self.cut = None;
        if time_left < timeout {
            timeout = time_left;
            self.cut = Some("time");
        }
        if fuel_left < fuel {
            fuel = fuel_left;
            self.cut = Some("fuel");
        }
        self.sandbox.started = Instant::now();
        self.sandbox.store.data_mut().deadline = self.sandbox.started + timeout;
        self.sandbox.store.data_mut().wants_pool = super::pool::wants_pool_flag();
        self.sandbox.fuel_budget = fuel;
        self.sandbox.fuel_cut_by_quota = admission.fuel_cut_by_quota && self.cut.is_none();
        let _ = self.sandbox.store.set_fuel(fuel);
        let gate = self.sandbox.store.data().cpu.clone();
        if tokio::time::timeout(timeout, gate.take()).await.is_err() {
            return Err(PluginError::Deadline {
                limit_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                elapsed_ms: u64::try_from(self.sandbox.started.elapsed().as_millis())
                    .unwrap_or(u64::MAX),
            });
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        self.sandbox
            .store
            .data()
            .deadline
            .saturating_duration_since(self.sandbox.started)
    }

    /// Books what a push cost against the session; turns running out of
    /// a budget the session cut into a session-budget error.
    fn settle(
        &mut self,
        result: Result<Called<Vec<Finding>>, PluginError>,
    ) -> Result<Called<Vec<Finding>>, PluginError> {
        let spent = self
            .sandbox
            .fuel_budget
            .saturating_sub(self.sandbox.store.get_fuel().unwrap_or(0));
        self.fuel_used = self.fuel_used.saturating_add(spent);
        match (&result, self.cut) {
            (Err(PluginError::Deadline { .. }), Some("time")) => Err(self.budget_error("time")),
            (Err(PluginError::OutOfFuel { .. }), Some("fuel")) => Err(self.budget_error("fuel")),
            _ => result,
        }
    }

    async fn push(&mut self, batch: Vec<wit::Event>) -> Result<Called<Vec<Finding>>, PluginError> {
        let Some(session) = self.session else {
            return Err(ended());
        };
        if let Err(err) = self.rearm().await {
            self.session = None;
            return Err(err);
        }
        let timeout = self.timeout();
        let store = &mut self.sandbox.store;
        let guest = self.instance.rampart_plugin_hunting().session();
        let outcome =
            tokio::time::timeout(timeout, guest.call_push(&mut *store, session, &batch)).await;
        let plugin = self.plugin.clone();
        let result = plugin.finish(&mut self.sandbox, outcome, |findings: Vec<wit::Finding>| {
            plugin.convert_findings(findings)
        });
        let result = self.settle(result);
        if result.is_err() {
            self.session = None;
        }
        result
    }

    async fn close(mut self) -> Result<Called<Vec<Finding>>, PluginError> {
        let Some(session) = self.session.take() else {
            return Err(ended());
        };
        self.rearm().await?;
        let timeout = self.timeout();
        let store = &mut self.sandbox.store;
        let guest = self.instance.rampart_plugin_hunting().session();
        let outcome = tokio::time::timeout(timeout, guest.call_close(&mut *store, session)).await;
        let plugin = self.plugin.clone();
        let result = plugin.finish(&mut self.sandbox, outcome, |findings: Vec<wit::Finding>| {
            plugin.convert_findings(findings)
        });
        self.settle(result)
    }
}
