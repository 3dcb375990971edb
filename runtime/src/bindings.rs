//! Host bindings generated from `wit/`. One `bindgen!` per world; the import
//! interfaces are generated once (world `host`) and shared by the others.
#![allow(missing_docs, clippy::all)]

pub(crate) mod host {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host",
    });
}

macro_rules! plugin_world {
    ($module:ident, $world:literal) => {
        pub(crate) mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                exports: { default: async },
                with: {
                    "rampart:plugin/types": crate::bindings::host::rampart::plugin::types,
                    "rampart:plugin/log": crate::bindings::host::rampart::plugin::log,
                    "rampart:plugin/kv": crate::bindings::host::rampart::plugin::kv,
                    "rampart:plugin/memory": crate::bindings::host::rampart::plugin::memory,
                    "rampart:plugin/intel": crate::bindings::host::rampart::plugin::intel,
                    "rampart:plugin/config": crate::bindings::host::rampart::plugin::config,
                    "rampart:plugin/context": crate::bindings::host::rampart::plugin::context,
                },
            });
        }
    };
}

plugin_world!(enricher, "enricher");
plugin_world!(scorer, "scorer");
plugin_world!(responder, "responder");
plugin_world!(hunt, "hunt");

pub(crate) use host::rampart::plugin::{config, context, intel, kv, log, memory, types};
