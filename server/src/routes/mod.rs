//! The HTTP handlers, one module per resource.

pub(crate) mod alerts;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod findings;
pub(crate) mod hunts;
pub(crate) mod metrics;
pub(crate) mod playbooks;
pub(crate) mod plugins;
pub(crate) mod runs;
pub(crate) mod tenants;
pub(crate) mod webhooks;
