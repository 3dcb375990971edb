//! `rampart:plugin/log`: plugin log lines go to `tracing`, tagged with tenant
//! and plugin, capped per call so a plugin cannot flood the host's logs.
//!
//! Every line a call causes counts against one budget: the plugin's own
//! lines and the host's warnings about it (a refused outbound request, a
//! failed lookup). Past the budget lines are counted, and one summary line
//! says how many were dropped when the call ends. Control characters in a
//! plugin's text are escaped, so a newline cannot forge a record in the
//! text log.

use super::{CallView, Caps};
use crate::bindings::log::{Host, Level};
use crate::tenant::TenantId;

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

impl LogBudget {
    /// Takes one line from the budget; `false` when it is spent (the line
    /// is counted as dropped).
    pub fn take(&mut self) -> bool {
        if self.written >= MAX_LINES_PER_CALL {
            self.dropped += 1;
            return false;
        }
        self.written += 1;
        true
    }

    /// One line saying how many were dropped, if any were.
    pub fn summarise(&self, tenant: &TenantId, plugin: &str) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "rampart::plugin",
                tenant = tenant.as_str(),
                plugin,
                dropped = self.dropped,
                "{} more log lines of this call dropped (budget {MAX_LINES_PER_CALL} per call)",
                self.dropped
            );
        }
    }
}

/// `message` cut to [`MAX_LINE_BYTES`] with control characters escaped
/// (`\n` → `\\n`, others as `\\u{..}`).
pub fn sanitise(message: &str) -> String {
    let mut end = message.len().min(MAX_LINE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end);
    for c in message[..end].chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A host warning about the call `view` serves, counted against its budget.
pub(super) fn host_warn(view: &mut impl CallView, message: &str) {
    if !view.log_budget().take() {
        return;
    }
    let message = sanitise(message);
    tracing::warn!(
        target: "rampart::plugin",
        tenant = view.tenant().as_str(),
        plugin = view.plugin_name(),
        "{message}"
    );
}

impl<T: CallView> Host for Caps<'_, T> {
    fn write(&mut self, level: Level, message: String) {
        self.0.charge_bytes(message.len());
        if !self.0.log_budget().take() {
            return;
        }
        let message = sanitise(&self.0.redact(&message));
        let tenant = self.0.tenant().as_str();
        let plugin = self.0.plugin_name();
        match level {
            Level::Trace => tracing::trace!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Info => tracing::info!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "rampart::plugin", tenant, plugin, "{message}"),
            Level::Error => tracing::error!(target: "rampart::plugin", tenant, plugin, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_cut() {
        assert_eq!(
            sanitise("ok\nFAKE level=ERROR\u{0}\r"),
            "ok\\nFAKE level=ERROR\\u{0}\\r"
        );
        assert_eq!(sanitise(&"é".repeat(5_000)).len(), MAX_LINE_BYTES);
        let mut budget = LogBudget::default();
        for _ in 0..MAX_LINES_PER_CALL {
            assert!(budget.take());
        }
        assert!(!budget.take());
        assert_eq!(budget.dropped, 1);
    }
}
