//! Threat-intel feeds persisted in the keyspace: a feed is stored once (not
//! per tenant) as its metadata and one line per indicator, subscriptions per
//! tenant; the in-memory index (`crate::intel`) is built from them on first
//! use and kept in step with every import.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::intel::{FeedIndex, Indicator, IndicatorMeta, IntelIndex, formats};
use crate::store::{Keyspace, SpaceError, Tree};
use crate::tenant::TenantId;

/// What importing a feed did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Feed name.
    pub feed: String,
    /// Format read.
    pub format: formats::Format,
    /// Indicators in the index after import (duplicates folded).
    pub imported: usize,
    /// Indicators by type.
    pub by_type: BTreeMap<String, usize>,
    /// Skipped lines or objects, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Import time, Unix ms.
    pub imported_at: i64,
}

/// Feeds and subscriptions persisted in the keyspace, indexed in memory.
///
/// A feed is stored once (not per tenant) as its metadata and one line per
/// indicator; the index is built when the store is first asked.
#[derive(Clone)]
pub struct PersistentIntel {
    feeds: Tree,
    subscriptions: Tree,
    index: Arc<std::sync::OnceLock<IntelIndex>>,
}

impl std::fmt::Debug for PersistentIntel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentIntel").finish_non_exhaustive()
    }
}

/// Why the intel store failed.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    /// The database failed.
    #[error("intel store: {0}")]
    Store(String),
    /// A name is not acceptable.
    #[error("feed names are 1-64 characters of [a-z0-9_-]: `{0}`")]
    InvalidName(String),
    /// The feed has no indicators.
    #[error("feed `{feed}` has no indicators ({skipped} line(s) skipped)")]
    Empty {
        /// Feed.
        feed: String,
        /// Skipped.
        skipped: usize,
    },
    /// A subscription names an unknown feed.
    #[error("no feed `{0}`")]
    UnknownFeed(String),
}

fn store_err(err: impl std::fmt::Display) -> IntelError {
    IntelError::Store(err.to_string())
}

fn type_code(indicator: &Indicator) -> (&'static str, String) {
    match indicator {
        Indicator::Ip(ip) => ("ip", ip.to_string()),
        Indicator::IpPort(ip, port) => ("ip_port", format!("{ip}\t{port}")),
        Indicator::Cidr(net) => ("cidr", net.to_string()),
        Indicator::Domain(d) => ("domain", d.clone()),
        Indicator::DomainSuffix(d) => ("domain_suffix", d.clone()),
        Indicator::Url(u) => ("url", u.clone()),
        Indicator::UrlPath(p) => ("url_path", p.clone()),
        Indicator::Hash(h) => ("hash", h.clone()),
    }
}

fn decode_line(line: &str) -> Option<(Indicator, u32)> {
    let mut fields = line.split('\t');
    let kind = fields.next()?;
    let meta: u32 = fields.next()?.parse().ok()?;
    let value = fields.next()?;
    let indicator = match kind {
        "ip" => Indicator::Ip(value.parse().ok()?),
        "ip_port" => Indicator::IpPort(value.parse().ok()?, fields.next()?.parse().ok()?),
        "cidr" => Indicator::Cidr(value.parse().ok()?),
        "domain" => Indicator::Domain(value.to_owned()),
        "domain_suffix" => Indicator::DomainSuffix(value.to_owned()),
        "url" => Indicator::Url(value.to_owned()),
        "url_path" => Indicator::UrlPath(value.to_owned()),
        "hash" => Indicator::Hash(value.to_owned()),
        _ => return None,
    };
    Some((indicator, meta))
}

/// A stored feed (its metadata line, then one indicator per line) indexed.
fn restore_feed(name: &str, bytes: &[u8]) -> Option<FeedIndex> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let Some(metas) = lines
        .next()
        .and_then(|l| serde_json::from_str::<Vec<IndicatorMeta>>(l).ok())
    else {
        tracing::error!(feed = %name, "stored feed is unreadable; skipped");
        return None;
    };
    Some(FeedIndex::build(name, metas, lines.filter_map(decode_line)))
}

fn valid_feed_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl PersistentIntel {
    /// Opens the intel trees of `space`.
    pub fn open(space: &Keyspace) -> Result<Self, SpaceError> {
        Ok(Self::from_trees(
            space.open_tree("intel-feeds")?,
            space.open_tree("intel-subscriptions")?,
        ))
    }

    /// Over trees already open.
    pub fn from_trees(feeds: Tree, subscriptions: Tree) -> Self {
        PersistentIntel {
            feeds,
            subscriptions,
            index: Arc::default(),
        }
    }

    /// The in-memory index (built from the database on first use).
    pub fn index(&self) -> &IntelIndex {
        self.index.get_or_init(|| {
            let index = IntelIndex::default();
            for (name, bytes) in self.feeds.iter().filter_map(Result::ok) {
                let name = String::from_utf8_lossy(&name).into_owned();
                if let Some(feed) = restore_feed(&name, &bytes) {
                    index.put_feed(feed);
                }
            }
            for (tenant, bytes) in self.subscriptions.iter().filter_map(Result::ok) {
                let Ok(tenant) = TenantId::new(String::from_utf8_lossy(&tenant).into_owned())
                else {
                    continue;
                };
                if let Ok(feeds) = serde_json::from_slice::<BTreeSet<String>>(&bytes) {
                    index.subscribe(&tenant, feeds);
                }
            }
            index
        })
    }

    /// An index of only the feeds `tenant` subscribes to, built now from
    /// the database (a one-off lookup need not build every feed; the
    /// shared [`PersistentIntel::index`] is left as it is).
    pub fn index_of(&self, tenant: &TenantId) -> Result<IntelIndex, IntelError> {
        let index = IntelIndex::default();
        let Some(bytes) = self
            .subscriptions
            .get(tenant.as_str().as_bytes())
            .map_err(store_err)?
        else {
            return Ok(index);
        };
        let feeds: BTreeSet<String> = serde_json::from_slice(&bytes).map_err(store_err)?;
        for name in &feeds {
            if let Some(stored) = self.feeds.get(name.as_bytes()).map_err(store_err)?
                && let Some(feed) = restore_feed(name, &stored)
            {
                index.put_feed(feed);
            }
        }
        index.subscribe(tenant, feeds);
        Ok(index)
    }

    /// Stores and indexes feed `name`, replacing an older import, or with
    /// `append` adding to it (a feed uploaded in parts).
    pub fn import(
        &self,
        name: &str,
        format: formats::Format,
        parsed: formats::Parsed,
        append: bool,
    ) -> Result<ImportSummary, IntelError> {
        if !valid_feed_name(name) {
            return Err(IntelError::InvalidName(name.to_owned()));
        }
        let parsed = match self.feeds.get(name.as_bytes()).map_err(store_err)? {
            Some(stored) if append => {
                let text = String::from_utf8_lossy(&stored);
                let mut lines = text.lines();
                let mut merged = formats::Parsed {
                    metas: lines
                        .next()
                        .and_then(|l| serde_json::from_str(l).ok())
                        .unwrap_or_default(),
                    indicators: lines.filter_map(decode_line).collect(),
                    skipped: BTreeMap::new(),
                };
                merged.extend(parsed);
                merged
            }
            _ => parsed,
        };
        if parsed.indicators.is_empty() {
            return Err(IntelError::Empty {
                feed: name.to_owned(),
                skipped: parsed.skipped.values().sum(),
            });
        }
        let mut text = serde_json::to_string(&parsed.metas).map_err(store_err)?;
        text.push('\n');
        let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
        // Report each distinct indicator once, as the index keeps it.
        for (indicator, meta) in &parsed.indicators {
            let (kind, value) = type_code(indicator);
            *by_type.entry(kind.to_owned()).or_default() += 1;
            use std::fmt::Write as _;
            let _ = writeln!(text, "{kind}\t{meta}\t{value}");
        }
        let index = FeedIndex::build(name, parsed.metas, parsed.indicators);
        self.feeds
            .insert(name.as_bytes(), text.as_bytes())
            .map_err(store_err)?;
        self.feeds.flush().map_err(store_err)?;
        let summary = ImportSummary {
            feed: name.to_owned(),
            format,
            imported: index.len(),
            by_type,
            skipped: parsed.skipped,
            imported_at: crate::model::now_ms(),
        };
        self.index().put_feed(index);
        Ok(summary)
    }

    /// Sets the feeds `tenant` sees (each must exist).
    pub fn subscribe(&self, tenant: &TenantId, feeds: BTreeSet<String>) -> Result<(), IntelError> {
        let known: BTreeSet<String> = self.index().feeds().into_iter().map(|(n, _)| n).collect();
        if let Some(unknown) = feeds.iter().find(|f| !known.contains(*f)) {
            return Err(IntelError::UnknownFeed(unknown.clone()));
        }
        self.subscriptions
            .insert(
                tenant.as_str().as_bytes(),
                serde_json::to_vec(&feeds).map_err(store_err)?,
            )
            .map_err(store_err)?;
        self.subscriptions.flush().map_err(store_err)?;
        self.index().subscribe(tenant, feeds);
        Ok(())
    }
}
