//! The plugin's private key-value store (capability `kv`).
//!
//! Keys live in a namespace the host picks (tenant + plugin), so no key can
//! reach another plugin's data; the namespace's total size is capped.

use crate::bindings::rampart::plugin::kv as raw;
use crate::{KvError, PluginError};

/// Returns the value under `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    raw::get(key)
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    raw::set(key, value)
}

/// Removes `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    raw::delete(key)
}

/// Lists up to `limit` keys starting with `prefix`, after `after`.
pub fn list_keys(prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, KvError> {
    raw::list_keys(prefix, after, limit)
}

/// Replaces `key`'s value with `new` if it currently equals `expected`
/// (`None` = absent; a `new` of `None` deletes). Returns whether it swapped.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, KvError> {
    raw::compare_and_swap(key, expected, new)
}

/// Reads a JSON value stored with [`set_json`].
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, PluginError> {
    match get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            PluginError::new(crate::ErrorKind::Internal, format!("kv {key}: {err}"))
        }),
        None => Ok(None),
    }
}

/// Stores `value` as JSON under `key`.
pub fn set_json<T: serde::Serialize>(key: &str, value: &T) -> Result<(), PluginError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|err| PluginError::new(crate::ErrorKind::Internal, format!("kv {key}: {err}")))?;
    Ok(set(key, &bytes)?)
}
