//! `rampart:plugin/config`: the calling plugin's own settings and secrets,
//! from its tenant's grant. No other plugin's keys are reachable.

use crate::bindings::config::Host;
use crate::sandbox::state::HostState;

impl Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.plugin.grant.settings.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        self.plugin.grant.settings.keys().cloned().collect()
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.plugin
            .grant
            .secrets
            .get(&name)
            .map(|secret| secret.expose().to_owned())
    }
}
