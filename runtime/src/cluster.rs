//! Several nodes over one shared store and one shared work queue: who this
//! node is, and leases — time-bound ownership of a name kept in the store,
//! so that work one node must do alone (a run, the hunt scheduler, approval
//! expiry) has one owner across the cluster and passes to another node when
//! its owner dies.
//!
//! A lease is a compare-and-swap on one key of the `leases` tree holding
//! `<until ms>\0<node id>`. A node takes a free or expired lease, renews its
//! own, and never takes one another node holds unexpired. Nodes compare
//! wall-clock milliseconds, so their clocks must agree to well within a
//! lease's time to live (NTP on every node; the TTLs below are seconds).

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Keyspace, SpaceError, Tree};
use rampart_core::queue::WorkQueue;

/// How long a run's lease lasts without renewal; a worker renews it every
/// third of that while it works. A node killed mid-run holds its runs at
/// most this long.
pub const RUN_LEASE: Duration = Duration::from_secs(10);

/// How long the lease of a cluster-wide timer (hunt scheduler, approval
/// expiry) lasts; its holder renews it every second.
pub const TIMER_LEASE: Duration = Duration::from_secs(10);

/// This node: its id (in logs, metrics and audit records) and the queue it
/// shares with the other nodes.
#[derive(Clone)]
pub struct Node {
    /// The node id.
    pub id: String,
    /// The work queue (shared with the other nodes when it says so).
    pub queue: Arc<dyn WorkQueue>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("shared", &self.queue.shared())
            .finish()
    }
}

/// Whether `id` may name a node: 1–64 of `[A-Za-z0-9._-]`.
pub fn node_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 64 {
        return Some(format!(
            "a node id is 1 to 64 characters, `{id}` is {}",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "a node id is letters, digits, `.`, `_` and `-`; `{id}` has {bad:?}"
        ));
    }
    None
}

/// Leases held by this node in the shared store.
#[derive(Clone, Debug)]
pub struct Leases {
    tree: Tree,
    node: String,
}

/// Who holds a lease and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The node.
    pub node: String,
    /// Until (ms since the epoch).
    pub until: i64,
}

fn decode(bytes: &[u8]) -> Option<Holder> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (until, node) = text.split_once('\0')?;
    Some(Holder {
        node: node.to_owned(),
        until: until.parse().ok()?,
    })
}

impl Leases {
    /// The leases of `space`, taken in the name of `node`.
    pub fn open(space: &Keyspace, node: &str) -> Result<Self, SpaceError> {
        Ok(Leases {
            tree: space.open_tree("leases")?,
            node: node.to_owned(),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Takes `name` for `ttl`, or renews it if this node holds it. `false`
    /// when another node holds it and its time is not up.
    pub fn take(&self, name: &str, ttl: Duration) -> Result<bool, SpaceError> {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut current = self.tree.get(name)?;
        loop {
            let now = crate::model::now_ms();
            if let Some(holder) = current.as_deref().and_then(decode)
                && holder.node != self.node
                && holder.until > now
            {
                return Ok(false);
            }
            let new = format!("{}\0{}", now.saturating_add(ttl), self.node);
            match self
                .tree
                .compare_and_swap(name, current.as_deref(), Some(new.as_bytes()))?
            {
                Ok(()) => return Ok(true),
                Err(conflict) => current = conflict.current,
            }
        }
    }

    /// Gives `name` up if this node holds it (another node's lease stays).
    pub fn release(&self, name: &str) -> Result<(), SpaceError> {
        let Some(current) = self.tree.get(name)? else {
            return Ok(());
        };
        if decode(&current).is_some_and(|holder| holder.node == self.node) {
            // A conflict means another node took it meanwhile: theirs now.
            let _ = self
                .tree
                .compare_and_swap(name, Some(&current), None::<&[u8]>)?;
        }
        Ok(())
    }

    /// Who holds `name`, if anyone does and its time is not up.
    pub fn holder(&self, name: &str) -> Result<Option<Holder>, SpaceError> {
        let now = crate::model::now_ms();
        Ok(self
            .tree
            .get(name)?
            .as_deref()
            .and_then(decode)
            .filter(|holder| holder.until > now))
    }
}

/// The lease name of a run.
pub fn run_lease(tenant: &str, run: &str) -> String {
    format!("run\0{tenant}\0{run}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Keyspace {
        crate::store::MemoryStore::default().space().clone()
    }

    #[test]
    fn a_lease_has_one_holder_until_it_expires_or_is_released() {
        let space = space();
        let a = Leases::open(&space, "a").unwrap_or_else(|e| panic!("{e}"));
        let b = Leases::open(&space, "b").unwrap_or_else(|e| panic!("{e}"));
        let ttl = Duration::from_millis(200);
        assert!(a.take("hunts", ttl).unwrap_or(false));
        assert!(!b.take("hunts", ttl).unwrap_or(true), "held by a");
        assert!(a.take("hunts", ttl).unwrap_or(false), "a renews its own");
        b.release("hunts").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.holder("hunts").ok().flatten().map(|h| h.node),
            Some("a".into())
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(b.take("hunts", ttl).unwrap_or(false), "expired: b takes it");
        a.release("hunts").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b.holder("hunts").ok().flatten().map(|h| h.node),
            Some("b".into())
        );
        b.release("hunts").unwrap_or_else(|e| panic!("{e}"));
        assert!(a.take("hunts", ttl).unwrap_or(false), "released: free");
    }

    #[test]
    fn concurrent_takers_get_one_lease() {
        let space = space();
        for round in 0..40 {
            let name = format!("run-{round}");
            let winners: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..12)
                    .map(|i| {
                        let leases = Leases::open(&space, &format!("n{i}"))
                            .unwrap_or_else(|e| panic!("{e}"));
                        let name = name.clone();
                        scope.spawn(move || leases.take(&name, RUN_LEASE).unwrap_or(false))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| usize::from(h.join().unwrap_or(false)))
                    .sum()
            });
            assert_eq!(winners, 1, "round {round}");
        }
    }
}
