//! The OpenAPI 3.1 document, generated from the route table below (the
//! router and a test check that the two agree).

use serde_json::{Map, Value, json};

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path with `{param}` segments.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Roles that may call it (`None`: no token needed).
    pub roles: Option<&'static str>,
    /// Request body media type, if any.
    pub body: Option<&'static str>,
    /// Query parameters: (name, JSON Schema type, what it does).
    pub query: &'static [(&'static str, &'static str, &'static str)],
}

/// Every endpoint of the API.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness",
        roles: None,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/readyz",
        summary: "Readiness (state restored)",
        roles: None,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (tenant names only with an admin token)",
        roles: None,
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/openapi.json",
        summary: "This document",
        roles: None,
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants",
        summary: "Create a tenant {id, grants?}",
        roles: Some("admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants",
        summary: "List tenants",
        roles: Some("admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/grants",
        summary: "Replace grants (capabilities, HTTP allow-lists; private ranges: admin only; no secrets)",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/inventory",
        summary: "Replace the asset inventory: JSON {assets}, or CSV (text/csv) with columns hostname, ips, owner, criticality, tags, protected",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/inventory",
        summary: "The asset inventory",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/identities",
        summary: "Replace the identity directory: JSON {identities}, or CSV (text/csv) with columns user, email, display_name, department, title, privileged, mfa, groups",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/identities",
        summary: "The identity directory",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/tokens",
        summary: "Create a token {principal, role, ttl_secs?}; shown once",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/tokens/{id}/revoke",
        summary: "Revoke a token",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/plugins",
        summary: "Upload a plugin {manifest, wasm_base64}; sha256 checked, compiled, pinned by digest",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/plugins/{plugin}/secrets/{name}",
        summary: "Set a plugin secret {value}; write-only, sealed at rest",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/secrets",
        summary: "Secret names (never values)",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/playbooks/{name}",
        summary: "Create or replace a playbook (YAML); errors with line and column",
        roles: Some("admin, tenant-admin"),
        body: Some("application/yaml"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/playbooks",
        summary: "List playbooks",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/alerts",
        summary: "Ingest an alert, an OCSF Detection Finding, or an array of them; idempotent on id (409 on a changed body). Answered once accepted (durable, queued) and its runs settled: `Prefer: respond-async` answers 202 at once, `Prefer: wait=N` waits up to N s (default 30, at most 120); `settled` says which",
        roles: Some("admin, tenant-admin, ingest"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/runs",
        summary: "List runs, newest first, a page at a time: {runs, next, total?}; pass `next` as `before` for the next page (total only without filters)",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[
            (
                "status",
                "string",
                "running | waiting_approval | succeeded | failed",
            ),
            ("playbook", "string", "playbook name"),
            (
                "alert",
                "string",
                "alert id (also alerts folded into the run)",
            ),
            ("since", "integer", "created at or after, Unix ms"),
            ("until", "integer", "created before, Unix ms"),
            ("limit", "integer", "page size (default 100, at most 1000)"),
            ("before", "string", "the `next` cursor of the previous page"),
        ],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/runs/{id}",
        summary: "A run with steps, outputs and guardrail decisions (format=ocsf: an OCSF 1.8 Detection Finding)",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[("format", "string", "json (default) | ocsf")],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/alerts/{id}",
        summary: "An accepted alert as received, the runs it started and the runs it was folded into",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/ocsf/export",
        summary: "NDJSON of OCSF 1.8 Detection Findings: the tenant's runs and its hunts' findings (x-rampart-truncated says whether there was more)",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[
            (
                "since",
                "integer",
                "runs created and findings received at or after (Unix ms)",
            ),
            (
                "limit",
                "integer",
                "at most this many of each (default 1000, at most 10000)",
            ),
        ],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/detections",
        summary: "Per rule and hunt: findings, true/false positives from analyst feedback, precision, the field values false positives share and a Sigma filter to review; mutes",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[("hunt", "string", "only this hunt's rules")],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/detections/{rule}/mute",
        summary: "Mute a rule for this tenant {reason} (its findings are dropped by the hunts; audited)",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}/detections/{rule}/mute",
        summary: "Unmute a rule (audited)",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/hunts/{name}/findings",
        summary: "A page of the findings a hunt turned into alerts (format=ocsf: OCSF 1.8 Detection Findings)",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[
            ("limit", "integer", "page size (default 100, at most 500)"),
            ("after", "string", "the next of the previous page"),
            ("format", "string", "json (default) | ocsf"),
        ],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/runs/{id}/feedback",
        summary: "Label a run {label: true_positive|false_positive|benign, comment}",
        roles: Some("admin, tenant-admin, analyst"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/approvals",
        summary: "Pending approvals",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/approvals/{id}/approve",
        summary: "Approve {reason}; the approver is the token's principal. One compare-and-swap: a losing concurrent decision gets 409 with the winner. At quorum the action runs on a worker; the answer waits for it as `Prefer` asks (see alerts)",
        roles: Some("admin, tenant-admin, analyst"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/approvals/{id}/deny",
        summary: "Deny {reason}; the run continues without the action on a worker (waited for as `Prefer` asks)",
        roles: Some("admin, tenant-admin, analyst"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/audit/verify",
        summary: "Sign the head, verify the chain, return the report and the signed head",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/audit/export",
        summary: "The audit chain as JSON lines",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/measurements",
        summary: "MTTD/MTTC, approval wait, automation, dedup and false-positive shares per playbook (?baseline_until=ms)",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/events",
        summary: "Ingest telemetry events (JSON array or lines); kept for 7 days",
        roles: Some("admin, tenant-admin, ingest"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/hunts",
        summary: "Registered hunts with watermark and last run",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/hunts/{name}",
        summary: "Register a hunt {plugin, schedule (crontab), params}",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/hunts/{name}/run",
        summary: "Run a hunt now over the events since its watermark",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/quotas",
        summary: "The tenant's quotas and ingest rate",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/quotas",
        summary: "Set quotas {max_concurrent_runs?, fuel_per_minute?, memory_per_call_bytes?, ingest_per_second?}",
        roles: Some("admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/plugins/{plugin}",
        summary: "Inspect a plugin: manifest, limits, artifact source, component imports/exports, playbooks using it",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}/plugins/{plugin}",
        summary: "Delete a plugin (409 while a playbook or hunt uses it)",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/playbooks/{name}/enable",
        summary: "Let the playbook start runs again",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/tenants/{tenant}/playbooks/{name}/disable",
        summary: "Stop the playbook starting runs (runs in progress go on)",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/audit",
        summary: "Audit records by kind, run and time, oldest first, paged by after_seq",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[
            ("kind", "string", "record kind, e.g. action_executed"),
            ("run", "string", "run id"),
            ("since", "integer", "Unix ms, inclusive"),
            ("until", "integer", "Unix ms, exclusive"),
            (
                "after_seq",
                "integer",
                "only records after this sequence number",
            ),
            ("limit", "integer", "page size (default 100, at most 1000)"),
        ],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/audit/head",
        summary: "The chain head, signed now (HMAC checkpoint)",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/sinks/findings",
        summary: "Push run verdicts and hunt findings as OCSF 1.8 to a SIEM receiver {url, format: hec|opensearch|ndjson, token?} (retried, every delivery audited)",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/sinks/findings",
        summary: "The findings sink (the token is never shown)",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}/sinks/findings",
        summary: "Remove the findings sink",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/webhooks/approvals",
        summary: "Announce approval requests to {url, secret}: signed POST (X-Rampart-Signature: v1=hex HMAC-SHA256 of `<X-Rampart-Timestamp>.<body>`)",
        roles: Some("admin, tenant-admin (internal addresses: admin)"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/webhooks/approvals",
        summary: "The approval webhook's URL and delivery counts (never the secret)",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "delete",
        path: "/v1/tenants/{tenant}/webhooks/approvals",
        summary: "Remove the approval webhook and its secret",
        roles: Some("admin, tenant-admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/intel/feeds",
        summary: "Shared threat-intel feeds and their sizes",
        roles: Some("admin"),
        body: None,
        query: &[],
    },
    Route {
        method: "post",
        path: "/v1/intel/feeds/{name}",
        summary: "Import a feed file (ipsum, maltrail trail or .tar.gz part, hash list, STIX 2.1 bundle); returns imported and skipped counts",
        roles: Some("admin"),
        body: Some("application/octet-stream"),
        query: &[
            (
                "format",
                "string",
                "ipsum | maltrail | hashes | eset | loki | misp | stix",
            ),
            (
                "append",
                "boolean",
                "add to the stored feed (parts) instead of replacing it",
            ),
        ],
    },
    Route {
        method: "put",
        path: "/v1/tenants/{tenant}/intel/subscriptions",
        summary: "The feeds the tenant's plugins see {feeds: [..]}",
        roles: Some("admin, tenant-admin"),
        body: Some("application/json"),
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/intel/subscriptions",
        summary: "The feeds the tenant subscribes to",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[],
    },
    Route {
        method: "get",
        path: "/v1/tenants/{tenant}/intel/lookup",
        summary: "Look an entity up in the tenant's feeds and own indicators",
        roles: Some("admin, tenant-admin, analyst, viewer"),
        body: None,
        query: &[
            (
                "kind",
                "string",
                "ip | domain | url | file_hash | email | hostname",
            ),
            ("value", "string", "the entity"),
            (
                "references",
                "integer",
                "references per match (default 5, at most 1000); each match gives references_total",
            ),
            (
                "references_from",
                "integer",
                "references of each match to skip (the more_references link sets it)",
            ),
        ],
    },
    Route {
        method: "get",
        path: "/edl/{tenant}/{list}",
        summary: "An External Dynamic List as plain text, one entry per line (what firewalls poll); HTTP basic auth with an API token of the tenant as password",
        roles: Some("viewer, analyst, tenant-admin or admin (basic auth); not ingest"),
        body: None,
        query: &[],
    },
];

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for route in ROUTES {
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .chain(route.query.iter().map(|(name, kind, what)| {
                json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": kind}})
            }))
            .collect();
        let mut operation = json!({
            "summary": route.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"},
                "413": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"}
            }
        });
        if let Some(roles) = route.roles {
            let scheme = if roles.contains("basic auth") {
                "basic"
            } else {
                "bearer"
            };
            operation["security"] = json!([{ scheme: [] }]);
            operation["description"] = json!(format!(
                "Roles: {roles}. Another tenant's objects answer 404."
            ));
        }
        if let Some(media) = route.body {
            let schema = if media == "application/yaml" {
                json!({"$ref": "#/components/schemas/Playbook"})
            } else {
                json!({"type": "object"})
            };
            operation["requestBody"] =
                json!({"required": true, "content": {media: {"schema": schema}}});
        }
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Rampart control API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "location": {}}
                },
                "Playbook": rampart::playbook::json_schema()
            },
            "responses": {
                "Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        }
    })
}
