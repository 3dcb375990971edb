//! `rampart:plugin/kv`: a key-value namespace per tenant and plugin.
//!
//! The namespace comes from the host's record of who is calling, never from
//! the key, so no key — `../other/x` included — reaches another plugin's
//! data. Sizes are capped per key, per value and per namespace (quota).

use std::sync::Arc;

use super::{CallView, Caps};
use crate::bindings::kv::{Host, KvError};
use crate::store::{KvNamespace, Store, StoreError};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1_024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LIST: u32 = 1_000;

/// Where a call's kv operations go.
pub struct KvAccess {
    /// The backing store.
    pub store: Arc<dyn Store>,
    /// The caller's namespace.
    pub namespace: KvNamespace,
    /// The namespace's quota in bytes.
    pub quota: u64,
}

/// The capability's view: the call's kv access besides the [`CallView`].
pub trait KvView: CallView {
    /// Where this call's kv operations go.
    fn kv(&self) -> &KvAccess;
}

fn convert(err: StoreError) -> KvError {
    match err {
        StoreError::QuotaExceeded { quota } => KvError::QuotaExceeded(quota),
        StoreError::Backend(message) => KvError::Store(message),
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge(MAX_KEY_BYTES as u64));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::TooLarge(MAX_VALUE_BYTES as u64));
    }
    Ok(())
}

impl<T: KvView> Host for Caps<'_, T> {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        check_key(&key)?;
        let value = self
            .0
            .kv()
            .store
            .kv_get(&self.0.kv().namespace, &key)
            .map_err(convert)?;
        self.0
            .charge_bytes(key.len() + value.as_ref().map_or(0, Vec::len));
        Ok(value)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.0.charge_bytes(key.len() + value.len());
        check_key(&key)?;
        check_value(&value)?;
        self.0
            .kv()
            .store
            .kv_set(&self.0.kv().namespace, &key, &value, self.0.kv().quota)
            .map_err(convert)
    }

    fn delete(&mut self, key: String) -> Result<bool, KvError> {
        check_key(&key)?;
        self.0
            .kv()
            .store
            .kv_delete(&self.0.kv().namespace, &key)
            .map_err(convert)
    }

    fn list_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        check_key(&prefix)?;
        let limit = limit.min(MAX_LIST) as usize;
        self.0
            .kv()
            .store
            .kv_list(&self.0.kv().namespace, &prefix, after.as_deref(), limit)
            .map_err(convert)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, KvError> {
        check_key(&key)?;
        if let Some(value) = &new {
            check_value(value)?;
        }
        self.0
            .kv()
            .store
            .kv_compare_and_swap(
                &self.0.kv().namespace,
                &key,
                expected.as_deref(),
                new.as_deref(),
                self.0.kv().quota,
            )
            .map_err(convert)
    }
}
