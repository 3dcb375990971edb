//! The HTTP handlers, one module per resource.

pub(in crate::api) mod alerts;
pub(in crate::api) mod approvals;
pub(in crate::api) mod audit;
pub(in crate::api) mod findings;
pub(in crate::api) mod hunts;
pub(in crate::api) mod metrics;
pub(in crate::api) mod playbooks;
pub(in crate::api) mod plugins;
pub(in crate::api) mod runs;
pub(in crate::api) mod tenants;
pub(in crate::api) mod webhooks;
