//! # Rampart plugin SDK
//!
//! Write Rampart plugins in Rust: implement one trait for your plugin's kind
//! ([`Enricher`], [`Scorer`], [`Responder`] or [`Hunt`]), call the matching
//! export macro, and build for `wasm32-wasip2`. The result is a WebAssembly
//! component that the Rampart runtime loads into its sandbox.
//!
//! The host capabilities are plain modules: [`log`], [`kv`], [`memory`],
//! [`intel`], [`context`], [`config`] and [`http`]. Each is a capability that your
//! plugin's manifest must request and the tenant must grant.
//!
//! ## An enricher
//!
//! ```no_run
//! use rampart_sdk::{Alert, Enricher, Enrichment, EntityKind, PluginError, Verdict, intel};
//!
//! struct IntelOnly;
//!
//! impl Enricher for IntelOnly {
//!     fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError> {
//!         Ok(alert
//!             .entities_of(EntityKind::Ip)
//!             .filter_map(|ip| {
//!                 let hits = intel::lookup(ip);
//!                 let best = hits.iter().map(|hit| hit.confidence).max()?;
//!                 Some(Enrichment::new(ip.clone(), Verdict::Malicious, best))
//!             })
//!             .collect())
//!     }
//! }
//!
//! rampart_sdk::export_enricher!(IntelOnly);
//! ```
//!
//! ## A scorer
//!
//! ```no_run
//! use rampart_sdk::{Alert, Enrichment, PluginError, Score, Scorer, Verdict};
//!
//! struct WorstVerdict;
//!
//! impl Scorer for WorstVerdict {
//!     fn score(_alert: Alert, found: Vec<Enrichment>) -> Result<Score, PluginError> {
//!         let malicious = found.iter().any(|e| e.verdict == Verdict::Malicious);
//!         Ok(if malicious {
//!             Score::new(90, 80).reason("an entity is known malicious")
//!         } else {
//!             Score::new(10, 50).reason("nothing known against the entities")
//!         })
//!     }
//! }
//!
//! rampart_sdk::export_scorer!(WorstVerdict);
//! ```
//!
//! ## A responder
//!
//! ```no_run
//! use rampart_sdk::{ActionRequest, ActionResult, PluginError, Responder, kv};
//!
//! struct Blocklist;
//!
//! impl Responder for Blocklist {
//!     fn respond(request: ActionRequest, dry_run: bool) -> Result<ActionResult, PluginError> {
//!         let key = format!("block/{}", request.target.value);
//!         if dry_run {
//!             return Ok(ActionResult::planned(format!("would add {key}")));
//!         }
//!         let added = kv::compare_and_swap(&key, None, Some(b"1"))?;
//!         Ok(if added {
//!             ActionResult::executed(format!("added {key}"))
//!         } else {
//!             ActionResult::already_in_state(format!("{key} already present"))
//!         })
//!     }
//! }
//!
//! rampart_sdk::export_responder!(Blocklist);
//! ```
//!
//! ## A hunt
//!
//! ```no_run
//! use rampart_sdk::{Event, Finding, Hunt, PluginError, Severity};
//!
//! struct Counter {
//!     seen: u64,
//! }
//!
//! impl Hunt for Counter {
//!     fn open(_params: &str) -> Result<Self, PluginError> {
//!         Ok(Counter { seen: 0 })
//!     }
//!     fn push(&mut self, events: Vec<Event>) -> Result<Vec<Finding>, PluginError> {
//!         self.seen += events.len() as u64;
//!         Ok(Vec::new())
//!     }
//!     fn close(self) -> Result<Vec<Finding>, PluginError> {
//!         Ok(vec![Finding::new("count", format!("{} events", self.seen), Severity::Info, 0)])
//!     }
//! }
//!
//! rampart_sdk::export_hunt!(Counter);
//! ```
#![deny(missing_docs)]

extern crate self as rampart_sdk;

include!(concat!(env!("OUT_DIR"), "/wit_contract.rs"));

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Bindings of the host interfaces, generated from the contract.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    __rampart_generate!(
        world: "host",
        additional_derives: [PartialEq],
    );
}

pub mod config;
pub mod context;
pub mod http;
pub mod intel;
pub mod kv;
pub mod log;
pub mod memory;
pub mod net;
mod types;

#[doc(hidden)]
pub mod __private;

pub use types::*;

/// An enricher adds what it knows about an alert's entities.
pub trait Enricher {
    /// Returns one enrichment per entity the plugin has something to say about.
    fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError>;
}

/// A scorer turns an alert and its enrichments into a risk score.
pub trait Scorer {
    /// Scores `alert` given what enrichers found.
    fn score(alert: Alert, enrichments: Vec<Enrichment>) -> Result<Score, PluginError>;
}

/// A responder changes the world: blocks, isolates, suspends.
pub trait Responder {
    /// Brings `request.target` into the requested state. With `dry_run` it must
    /// change nothing and return [`ActionResult::planned`]. It must be
    /// idempotent on `request.idempotency_key`.
    fn respond(request: ActionRequest, dry_run: bool) -> Result<ActionResult, PluginError>;
}

/// Parses a hunt's parameters (the `params` of [`Hunt::open`]): a JSON
/// object, or nothing (empty text) for the defaults. Bad JSON is an
/// `invalid input` error that says where.
pub fn hunt_params(params: &str) -> Result<serde_json::Value, PluginError> {
    if params.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(params).map_err(|err| PluginError::invalid_input(format!("params: {err}")))
}

/// A hunt scans telemetry in batches within one session.
pub trait Hunt: Sized + 'static {
    /// Starts a session; `params` is the hunt's JSON parameters.
    fn open(params: &str) -> Result<Self, PluginError>;
    /// Scans one batch of events, returning the findings it produced.
    fn push(&mut self, events: Vec<Event>) -> Result<Vec<Finding>, PluginError>;
    /// Ends the session, returning findings that need the whole stream.
    fn close(self) -> Result<Vec<Finding>, PluginError>;
}

/// Generates the bindings of one plugin world, reusing this SDK's host types.
#[doc(hidden)]
#[macro_export]
macro_rules! __rampart_world {
    ($world:literal) => {
        $crate::__rampart_generate!(
            world: $world,
            with: {
                "rampart:plugin/types@0.1.0": ::rampart_sdk::bindings::rampart::plugin::types,
                "rampart:plugin/log@0.1.0": ::rampart_sdk::bindings::rampart::plugin::log,
                "rampart:plugin/kv@0.1.0": ::rampart_sdk::bindings::rampart::plugin::kv,
                "rampart:plugin/memory@0.1.0": ::rampart_sdk::bindings::rampart::plugin::memory,
                "rampart:plugin/intel@0.1.0": ::rampart_sdk::bindings::rampart::plugin::intel,
                "rampart:plugin/config@0.1.0": ::rampart_sdk::bindings::rampart::plugin::config,
                "rampart:plugin/context@0.1.0": ::rampart_sdk::bindings::rampart::plugin::context,
            },
        );
    };
}

/// Exports a type implementing [`Enricher`] as this component's enricher.
#[macro_export]
macro_rules! export_enricher {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unused, clippy::all)]
        mod __rampart_enricher {
            $crate::__rampart_world!("enricher");
        }
        const _: () = {
            struct Adapter;
            impl __rampart_enricher::exports::rampart::plugin::enrich::Guest for Adapter {
                fn enrich(
                    alert: $crate::Alert,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Enrichment>, $crate::PluginError> {
                    <$plugin as $crate::Enricher>::enrich(alert)
                }
            }
            __rampart_enricher::export!(Adapter with_types_in __rampart_enricher);
        };
    };
}

/// Exports a type implementing [`Scorer`] as this component's scorer.
#[macro_export]
macro_rules! export_scorer {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unused, clippy::all)]
        mod __rampart_scorer {
            $crate::__rampart_world!("scorer");
        }
        const _: () = {
            struct Adapter;
            impl __rampart_scorer::exports::rampart::plugin::score::Guest for Adapter {
                fn score(
                    alert: $crate::Alert,
                    enrichments: ::std::vec::Vec<$crate::Enrichment>,
                ) -> ::core::result::Result<$crate::Score, $crate::PluginError> {
                    <$plugin as $crate::Scorer>::score(alert, enrichments)
                }
            }
    __rampart_scorer::export!(Adapter with_types_in __rampart_scorer);
        };
    };
}

/// Exports a type implementing [`Responder`] as this component's responder.
#[macro_export]
macro_rules! export_responder {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unused, clippy::all)]
        mod __rampart_responder {
            $crate::__rampart_world!("responder");
        }
        const _: () = {
            struct Adapter;
            impl __rampart_responder::exports::rampart::plugin::respond::Guest for Adapter {
                fn respond(
                    request: $crate::ActionRequest,
                    dry_run: bool,
                ) -> ::core::result::Result<$crate::ActionResult, $crate::PluginError> {
                    <$plugin as $crate::Responder>::respond(request, dry_run)
                }
            }
    __rampart_responder::export!(Adapter with_types_in __rampart_responder);
        };
    };
}

/// Exports a type implementing [`Hunt`] as this component's hunt.
#[macro_export]
macro_rules! export_hunt {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unused, clippy::all)]
        mod __rampart_hunt {
            $crate::__rampart_world!("hunt");
        }
        const _: () = {
            use __rampart_hunt::exports::rampart::plugin::hunting;
            struct Adapter;
            struct SessionState($crate::__private::HuntCell<$plugin>);
            impl hunting::Guest for Adapter {
                type Session = SessionState;
            }
            impl hunting::GuestSession for SessionState {
                fn open(
                    params: ::std::string::String,
                ) -> ::core::result::Result<hunting::Session, $crate::PluginError> {
                    let state = $crate::__private::HuntCell::open(&params)?;
                    Ok(hunting::Session::new(SessionState(state)))
                }
                fn push(
                    &self,
                    events: ::std::vec::Vec<$crate::Event>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Finding>, $crate::PluginError>
                {
                    self.0.push(events)
                }
                fn close(
                    this: hunting::Session,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Finding>, $crate::PluginError>
                {
                    this.into_inner::<SessionState>().0.close()
                }
            }
    __rampart_hunt::export!(Adapter with_types_in __rampart_hunt);
        };
    };
}
