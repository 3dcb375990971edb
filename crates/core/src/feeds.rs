//! Threat-intel feed parsers that fill the `intel` index.
//!
//! Only the ipsum format so far (`IP<TAB>count`, `#` comments; count = how
//! many block lists list the IP).

use crate::model::{Entity, EntityKind, IndicatorMatch};

/// Why a feed could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A line is not `IP<whitespace>count`.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Parses an ipsum feed into indicators named `feed`. Confidence grows with
/// the number of lists (1 list → 30, 3 → 60, 6 or more → 90).
pub fn parse_ipsum(feed: &str, text: &str) -> Result<Vec<(Entity, IndicatorMatch)>, FeedError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(address), Some(count)) = (fields.next(), fields.next()) else {
            return Err(FeedError::BadLine {
                line: index + 1,
                reason: "expected `IP<TAB>count`".to_owned(),
            });
        };
        let ip: std::net::IpAddr = address.parse().map_err(|_| FeedError::BadLine {
            line: index + 1,
            reason: format!("`{address}` is not an IP address"),
        })?;
        let count: u8 = count.parse().map_err(|_| FeedError::BadLine {
            line: index + 1,
            reason: format!("`{count}` is not a count"),
        })?;
        let confidence = match count {
            0 => continue,
            1 => 30,
            2 => 45,
            3..=5 => 60,
            _ => 90,
        };
        out.push((
            Entity {
                kind: EntityKind::Ip,
                value: ip.to_string(),
            },
            IndicatorMatch {
                indicator: ip.to_string(),
                feed: feed.to_owned(),
                family: None,
                campaign: None,
                confidence,
                references: vec!["https://github.com/stamparm/ipsum".to_owned()],
                references_total: 1,
                techniques: Vec::new(),
                first_seen: None,
                last_seen: None,
            },
        ));
    }
    Ok(out)
}

/// `203.0.113.7:443` → `203.0.113.7`; `[2001:db8::1]:443` → `2001:db8::1`.
pub fn strip_port(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => value,
    }
}
