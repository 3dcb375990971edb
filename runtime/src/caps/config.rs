//! `rampart:plugin/config`: the calling plugin's own settings and secrets,
//! from its tenant's grant. No other plugin's keys are reachable.

use super::{CallView, Caps};
use crate::bindings::config::Host;

impl<T: CallView> Host for Caps<'_, T> {
    fn get(&mut self, key: String) -> Option<String> {
        self.0.grant().settings.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        self.0.grant().settings.keys().cloned().collect()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.0
            .grant()
            .secrets
            .get(&name)
            .map(|secret| secret.expose().to_owned())
    }
}
