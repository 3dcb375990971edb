//! Named crash points for crash tests.
//!
//! When the environment variable `RAMPART_CRASH_AT` names a point, the
//! process announces `CRASHPOINT <name>` on stderr when it reaches it and
//! then stops there until the test kills it with SIGKILL. Points:
//! `before-intent` (a responder action is decided, its intent not written),
//! `after-call` (the plugin acted, its result is not recorded), `mid-audit`
//! (an audit record is written but not flushed), `after-accept` (an alert
//! was acknowledged, its runs have not started), `after-decision` (an
//! approval's decision is durable, its continuation not yet queued).
//! `name:N` stops at the
//! N-th time the point is reached.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Stops here if `RAMPART_CRASH_AT` names `point` (and this is the N-th hit).
pub fn reached(point: &str) {
    let target = TARGET.get_or_init(|| {
        let text = std::env::var("RAMPART_CRASH_AT").ok()?;
        let (name, nth) = text
            .split_once(':')
            .map_or((text.as_str(), 1), |(n, k)| (n, k.parse().unwrap_or(1)));
        Some((name.to_owned(), nth))
    });
    let Some((name, nth)) = target else { return };
    if name != point {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        eprintln!("CRASHPOINT {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
