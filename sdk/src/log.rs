//! Logging into the host's log pipeline (capability `log`).
//!
//! The host tags every line with tenant, plugin and run, and caps how many
//! lines one call may write.

use crate::bindings::rampart::plugin::log::{Level, write};

/// Writes a trace line.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Writes a debug line.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Writes an info line.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Writes a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Writes an error line.
pub fn error(message: &str) {
    write(Level::Error, message);
}
