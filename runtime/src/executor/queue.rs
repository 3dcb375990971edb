//! The work queue seam lives in `rampart-core` (a queue backend needs no
//! engine); re-exported here at the path the executor's callers know.
pub use rampart_core::queue::*;
