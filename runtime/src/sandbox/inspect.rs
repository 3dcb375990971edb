//! What a component file is: its kind, contract version, imports, exports.

use serde::Serialize;
use wasmtime::component::Component;

use crate::manifest::PluginKind;

/// Shape of a wasm file, judged from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmShape {
    /// A component (what plugins must be).
    Component,
    /// A core module (not a plugin).
    CoreModule,
    /// Not WebAssembly, or cut short before the header ends.
    NotWasm,
}

/// Judges a file by its 8-byte header.
pub fn shape(bytes: &[u8]) -> WasmShape {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => WasmShape::CoreModule,
        Some([0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00]) => WasmShape::Component,
        _ => WasmShape::NotWasm,
    }
}

/// A component's interface, as `rampart plugin inspect` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// The plugin kind its exports implement, if any.
    pub kind: Option<PluginKind>,
    /// The `rampart:plugin` version it was built against, if it names one.
    pub wit_package: Option<String>,
    /// Import names.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
}

/// The `rampart:plugin@x.y.z` versions named by `names`.
pub(crate) fn rampart_versions<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut versions: Vec<String> = names
        .filter(|name| name.starts_with("rampart:plugin/"))
        .filter_map(|name| name.split_once('@').map(|(_, version)| version.to_owned()))
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// The kind whose interface `exports` contains, if any.
pub(crate) fn kind_of<'a>(exports: impl Iterator<Item = &'a str> + Clone) -> Option<PluginKind> {
    [
        PluginKind::Enricher,
        PluginKind::Scorer,
        PluginKind::Responder,
        PluginKind::Hunt,
    ]
    .into_iter()
    .find(|kind| {
        exports.clone().any(|name| {
            name.split_once('@')
                .map_or(name, |(interface, _)| interface)
                == kind.export_interface()
        })
    })
}

/// Import and export names of a compiled component.
pub(crate) fn names(
    engine: &wasmtime::Engine,
    component: &Component,
) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    (imports, exports)
}
