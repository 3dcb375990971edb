//! The calls of each plugin kind, each run on the call pool (see
//! [`pool`](super::pool)): the HTTP server's async workers never run guest
//! code or the host work a guest causes.

use super::hunt_session::HuntSession;
use super::{CallContext, Called, KindPre, OutputItemCaps, Plugin, PluginError, output};
use crate::bindings::types as wit;
use crate::model::{
    ActionRequest, ActionResult, Alert, Enrichment, Finding, OutputViolation, Score,
};

impl Plugin {
    fn check_output_size(&self, bytes: usize) -> Result<(), OutputViolation> {
        let max = self.inner.runtime.engine.config().max_output_bytes;
        if bytes > max {
            return Err(OutputViolation(format!(
                "output is {bytes} bytes, more than the {max} allowed"
            )));
        }
        Ok(())
    }

    /// `output` with the grant's secret values scrubbed.
    pub(crate) fn redacted<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        output: T,
    ) -> Result<T, OutputViolation> {
        self.inner
            .identity
            .redactor
            .output(output)
            .map_err(OutputViolation)
    }

    pub(crate) fn pool(&self) -> &super::pool::CallPool {
        &self.inner.runtime.pool
    }

    fn item_caps(&self) -> &OutputItemCaps {
        &self.inner.runtime.engine.config().output_items
    }

    /// Converts a hunt's findings: counts, bytes, then each finding.
    pub(crate) fn convert_findings(
        &self,
        findings: Vec<wit::Finding>,
    ) -> Result<Vec<Finding>, OutputViolation> {
        output::check_findings(&findings, self.item_caps())?;
        self.check_output_size(findings.iter().map(output::finding_size).sum())?;
        let mut json = output::JsonBudget::new(self.item_caps());
        findings
            .into_iter()
            .enumerate()
            .map(|(index, finding)| {
                let finding = crate::convert::finding_from_guest(index, finding)?;
                json.charge(&finding.detail)?;
                self.redacted(finding)
            })
            .collect()
    }

    /// Runs the enricher on `alert`.
    #[tracing::instrument(skip_all, fields(plugin = %self.inner.manifest.name, tenant = %self.inner.identity.tenant))]
    pub async fn enrich(
        &self,
        alert: &Alert,
        context: &CallContext,
    ) -> Result<Called<Vec<Enrichment>>, PluginError> {
        let (plugin, input, context) = (self.clone(), wit::Alert::from(alert), context.clone());
        self.pool()
            .run(async move { plugin.enrich_here(input, &context).await })
            .await?
    }

    async fn enrich_here(
        &self,
        input: wit::Alert,
        context: &CallContext,
    ) -> Result<Called<Vec<Enrichment>>, PluginError> {
        let KindPre::Enricher(pre) = &self.inner.pre else {
            return Err(self.wrong_kind("enrich"));
        };
        let mut sandbox = self.sandbox(context).await?;
        let timeout = sandbox.limits.timeout;
        let store = &mut sandbox.store;
        let outcome = tokio::time::timeout(timeout, async {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .rampart_plugin_enrich()
                .call_enrich(&mut *store, &input)
                .await
        })
        .await;
        self.finish(&mut sandbox, outcome, |found: Vec<wit::Enrichment>| {
            output::check_enrichments(&found, self.item_caps())?;
            self.check_output_size(found.iter().map(output::enrichment_size).sum())?;
            let mut json = output::JsonBudget::new(self.item_caps());
            found
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    let item = crate::convert::enrichment_from_guest(index, item)?;
                    json.charge(&item.data)?;
                    self.redacted(item)
                })
                .collect()
        })
    }

    /// Runs the scorer on `alert` and what enrichers found.
    #[tracing::instrument(skip_all, fields(plugin = %self.inner.manifest.name, tenant = %self.inner.identity.tenant))]
    pub async fn score(
        &self,
        alert: &Alert,
        enrichments: &[Enrichment],
        context: &CallContext,
    ) -> Result<Called<Score>, PluginError> {
        let plugin = self.clone();
        let input = wit::Alert::from(alert);
        let found: Vec<wit::Enrichment> = enrichments.iter().map(Into::into).collect();
        let context = context.clone();
        self.pool()
            .run(async move { plugin.score_here(input, found, &context).await })
            .await?
    }

    async fn score_here(
        &self,
        input: wit::Alert,
        found: Vec<wit::Enrichment>,
        context: &CallContext,
    ) -> Result<Called<Score>, PluginError> {
        let KindPre::Scorer(pre) = &self.inner.pre else {
            return Err(self.wrong_kind("score"));
        };
        let mut sandbox = self.sandbox(context).await?;
        let timeout = sandbox.limits.timeout;
        let store = &mut sandbox.store;
        let outcome = tokio::time::timeout(timeout, async {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .rampart_plugin_score()
                .call_score(&mut *store, &input, &found)
                .await
        })
        .await;
        self.finish(&mut sandbox, outcome, |score: wit::Score| {
            output::check_reasons(&score.reasons, self.item_caps())?;
            self.check_output_size(score.reasons.iter().map(String::len).sum())?;
            self.redacted(crate::convert::score_from_guest(score)?)
        })
    }

    /// Runs the responder. With `dry_run` it must only plan, and the host
    /// refuses its outbound HTTP whatever it does.
    #[tracing::instrument(skip_all, fields(plugin = %self.inner.manifest.name, tenant = %self.inner.identity.tenant))]
    pub async fn respond(
        &self,
        request: &ActionRequest,
        dry_run: bool,
        context: &CallContext,
    ) -> Result<Called<ActionResult>, PluginError> {
        let plugin = self.clone();
        let input = wit::ActionRequest::from(request);
        let mut context = context.clone();
        context.dry_run |= dry_run;
        self.pool()
            .run(async move { plugin.respond_here(input, dry_run, &context).await })
            .await?
    }

    async fn respond_here(
        &self,
        input: wit::ActionRequest,
        dry_run: bool,
        context: &CallContext,
    ) -> Result<Called<ActionResult>, PluginError> {
        let KindPre::Responder(pre) = &self.inner.pre else {
            return Err(self.wrong_kind("respond"));
        };
        let mut sandbox = self.sandbox(context).await?;
        let timeout = sandbox.limits.timeout;
        let store = &mut sandbox.store;
        let outcome = tokio::time::timeout(timeout, async {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .rampart_plugin_respond()
                .call_respond(&mut *store, &input, dry_run)
                .await
        })
        .await;
        self.finish(&mut sandbox, outcome, |result: wit::ActionResult| {
            self.check_output_size(result.summary.len() + result.data.len())?;
            let result = crate::convert::action_result_from_guest(result, dry_run)?;
            output::JsonBudget::new(self.item_caps()).charge(&result.data)?;
            self.redacted(result)
        })
    }

    /// Opens a hunt session with `params` (JSON). The session keeps one
    /// sandbox for its lifetime; each push and the close get the plugin's
    /// fuel budget and deadline afresh, within the session's whole budget
    /// (`max_session_time`, `max_session_fuel`).
    #[tracing::instrument(skip_all, fields(plugin = %self.inner.manifest.name, tenant = %self.inner.identity.tenant))]
    pub async fn open_hunt(&self, params: &serde_json::Value) -> Result<HuntSession, PluginError> {
        self.open_hunt_with(params, &CallContext::default()).await
    }

    /// [`Plugin::open_hunt`] with a call context (dry run, tighter deadline).
    pub async fn open_hunt_with(
        &self,
        params: &serde_json::Value,
        context: &CallContext,
    ) -> Result<HuntSession, PluginError> {
        let (plugin, params, context) = (self.clone(), params.to_string(), context.clone());
        self.pool()
            .run(async move { plugin.open_hunt_here(params, &context).await })
            .await?
    }

    async fn open_hunt_here(
        &self,
        params: String,
        context: &CallContext,
    ) -> Result<HuntSession, PluginError> {
        let KindPre::Hunt(pre) = &self.inner.pre else {
            return Err(self.wrong_kind("open_hunt"));
        };
        let mut sandbox = self.sandbox(context).await?;
        let timeout = sandbox.limits.timeout;
        let store = &mut sandbox.store;
        let outcome = tokio::time::timeout(timeout, async {
            let instance = pre.instantiate_async(&mut *store).await?;
            let opened = instance
                .rampart_plugin_hunting()
                .session()
                .call_open(&mut *store, &params)
                .await?;
            Ok(opened.map(|session| (instance, session)))
        })
        .await;
        let opened = self.finish(&mut sandbox, outcome, Ok)?;
        let (instance, session) = opened.value;
        Ok(HuntSession::new(
            self.clone(),
            sandbox,
            instance,
            session,
            opened.stats,
        ))
    }
}
