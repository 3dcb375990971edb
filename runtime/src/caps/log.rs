//! `rampart:plugin/log`: plugin log lines go to `tracing`, tagged with tenant
//! and plugin, capped per call so a plugin cannot flood the host's logs.

use crate::bindings::log::{Host, Level};
use crate::sandbox::state::HostState;

/// Most lines one call may log; later lines are counted and dropped.
pub const MAX_LINES_PER_CALL: u32 = 1_000;
/// Longest line kept, in bytes; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 4_096;

/// Per-call log accounting.
#[derive(Debug, Default)]
pub struct LogBudget {
    /// Lines written.
    pub written: u32,
    /// Lines dropped over the cap.
    pub dropped: u64,
}

fn cut(message: &str) -> &str {
    if message.len() <= MAX_LINE_BYTES {
        return message;
    }
    let mut end = MAX_LINE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Host for HostState {
    fn write(&mut self, level: Level, message: String) {
        if self.log.written >= MAX_LINES_PER_CALL {
            self.log.dropped += 1;
            return;
        }
        self.log.written += 1;
        let tenant = self.plugin.tenant.as_str();
        let plugin = self.plugin.name.as_str();
        let message = cut(&message);
        match level {
            Level::Trace => tracing::trace!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Info => tracing::info!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Error => tracing::error!(target: "rampart::plugin", tenant, plugin, "{message}"),
        }
    }
}
