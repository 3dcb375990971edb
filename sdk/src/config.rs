//! The plugin's settings and secrets (capability `config`).

use crate::PluginError;
use crate::bindings::rampart::plugin::config as raw;

/// The setting `key`, if set.
pub fn get(key: &str) -> Option<String> {
    raw::get(key)
}

/// The setting `key`, or a `misconfigured` error naming it.
pub fn require(key: &str) -> Result<String, PluginError> {
    get(key).ok_or_else(|| PluginError::misconfigured(format!("setting `{key}` is not set")))
}

/// The names of all settings.
pub fn keys() -> Vec<String> {
    raw::keys()
}

/// The secret `name`, if the tenant gave this plugin one. Never log it.
pub fn secret(name: &str) -> Option<String> {
    raw::secret(name)
}
