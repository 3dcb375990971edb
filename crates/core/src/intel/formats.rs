//! Feed formats: each reader turns a file into normalised indicators and
//! their metadata, and counts what it skipped and why (a line that is not
//! an indicator is skipped, never fatal).
//!
//! | format | input | metadata |
//! |---|---|---|
//! | `ipsum` | `IP<TAB>count` lines | confidence by count of lists: 1 → 30, 2 → 45, 3-5 → 60, 6+ → 90 |
//! | `maltrail` | trail files: a `.tar.gz` of `trails/static/**`, a directory, or one `.txt` | family = file name (`njrat-1.txt` → `njrat`), references from `# Reference:`; confidence by folder: malware 90, malicious 75, suspicious 40, mass scanners 20 |
//! | `hashes` | `HASH;comment` or bare hashes | family = the comment (before ` - `, URLs left out); URLs in the comment are references; no label for a bare hash; confidence 80 |
//! | `eset` | ESET malware-ioc `samples.sha256` / `.sha1` / `.md5` (bare hashes, one campaign per directory) | campaign and family = the campaign's directory (`agrius/samples.sha256` → `agrius`); confidence 80 |
//! | `loki` | signature-base `iocs/c2-iocs.txt` and `hash-iocs.txt` ([`super::loki`]) | a C2 block's `# header` is the family of its C2s, a hash's comment its family; URLs in either are references; confidence 80 |
//! | `misp` | a MISP event (`{"Event": …}` or `{"response": [{"Event": …}]}`, [`super::misp`]) | campaign = the event's `info`; family from its threat-actor / malpedia galaxy tags; ATT&CK ids from attack-pattern tags; `link` attributes are references; confidence from the threat level |
//! | `stix` | a STIX 2.1 bundle | indicators with `[ipv4-addr|ipv6-addr|domain-name|url:value = '…']` or `[file:hashes.X = '…']` (alone or OR-ed); family/campaign from `indicates` relationships; confidence from the object (default 70); ATT&CK ids and URLs from external references |

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

use super::{Indicator, IndicatorMeta, normalize_url};

/// A feed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// stamparm/ipsum.
    Ipsum,
    /// stamparm/maltrail static trails.
    Maltrail,
    /// Hash lists.
    Hashes,
    /// ESET malware-ioc sample hash lists.
    Eset,
    /// LOKI / signature-base IOC files.
    Loki,
    /// MISP event JSON.
    Misp,
    /// STIX 2.1 bundle.
    Stix,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ipsum" => Ok(Format::Ipsum),
            "maltrail" => Ok(Format::Maltrail),
            "hashes" => Ok(Format::Hashes),
            "eset" => Ok(Format::Eset),
            "loki" => Ok(Format::Loki),
            "misp" => Ok(Format::Misp),
            "stix" | "stix2" | "stix21" => Ok(Format::Stix),
            other => Err(format!(
                "unknown feed format `{other}`: ipsum, maltrail, hashes, eset, loki, misp or stix"
            )),
        }
    }
}

/// Why a feed file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading failed.
    #[error("{path}: {detail}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
}

/// What a reader produced.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Metadata, indexed by the ids in `indicators`.
    pub metas: Vec<IndicatorMeta>,
    /// Indicators with their metadata id.
    pub indicators: Vec<(Indicator, u32)>,
    /// Lines or objects skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
}

impl Parsed {
    pub(super) fn meta(&mut self, meta: IndicatorMeta) -> u32 {
        self.metas.push(meta);
        u32::try_from(self.metas.len() - 1).unwrap_or(u32::MAX)
    }

    pub(super) fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    /// Adds another file's results.
    pub fn extend(&mut self, other: Parsed) {
        let base = u32::try_from(self.metas.len()).unwrap_or(u32::MAX);
        self.metas.extend(other.metas);
        self.indicators
            .extend(other.indicators.into_iter().map(|(i, m)| (i, m + base)));
        for (reason, count) in other.skipped {
            *self.skipped.entry(reason).or_default() += count;
        }
    }
}

fn read_error(path: &Path, detail: impl std::fmt::Display) -> FormatError {
    FormatError::Read {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Reads `path` (a file or, for maltrail, a directory) in `format`.
/// `progress` is told how many bytes were read so far.
pub fn read(
    format: Format,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Parsed, FormatError> {
    match format {
        Format::Maltrail if path.is_dir() => {
            let mut parsed = Parsed::default();
            let mut read_bytes = 0u64;
            visit_dir(path, &mut |file| {
                if file.extension().is_some_and(|e| e == "txt") {
                    let text = std::fs::read_to_string(file).map_err(|e| read_error(file, e))?;
                    read_bytes += text.len() as u64;
                    progress(read_bytes);
                    parsed.extend(maltrail_file(&file.to_string_lossy(), &text));
                }
                Ok(())
            })?;
            Ok(parsed)
        }
        Format::Maltrail
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".tar.gz")) =>
        {
            let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
            maltrail_archive(file, progress).map_err(|e| read_error(path, e))
        }
        _ => {
            let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
            progress(bytes.len() as u64);
            let text = String::from_utf8_lossy(&bytes);
            Ok(match format {
                Format::Ipsum => ipsum(&text),
                Format::Maltrail => maltrail_file(&path.to_string_lossy(), &text),
                Format::Hashes => hashes(&text, None),
                Format::Eset => {
                    let campaign = path
                        .parent()
                        .and_then(Path::file_name)
                        .map(|n| n.to_string_lossy().into_owned());
                    hashes(&text, campaign)
                }
                Format::Loki => super::loki::read(&text),
                Format::Misp => super::misp::read(&text),
                Format::Stix => stix(&text),
            })
        }
    }
}

/// Reads an uploaded feed: `bytes` in `format` (maltrail: a `.tar.gz`
/// part, recognised by its gzip magic, or one trail file named `label`).
pub fn read_bytes(format: Format, label: &str, bytes: &[u8]) -> Result<Parsed, FormatError> {
    if format == Format::Maltrail && bytes.starts_with(&[0x1f, 0x8b]) {
        return maltrail_archive(bytes, &mut |_| {}).map_err(|e| FormatError::Read {
            path: label.to_owned(),
            detail: e.to_string(),
        });
    }
    let text = String::from_utf8_lossy(bytes);
    Ok(match format {
        Format::Ipsum => ipsum(&text),
        Format::Maltrail => maltrail_file(label, &text),
        Format::Hashes => hashes(&text, None),
        // An upload has no directory: the label names the campaign.
        Format::Eset => hashes(&text, Some(label.to_owned())),
        Format::Loki => super::loki::read(&text),
        Format::Misp => super::misp::read(&text),
        Format::Stix => stix(&text),
    })
}

/// Every `.txt` trail in a gzip-compressed tar.
fn maltrail_archive(reader: impl Read, progress: &mut dyn FnMut(u64)) -> std::io::Result<Parsed> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut parsed = Parsed::default();
    let mut read_bytes = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.ends_with(".txt") {
            continue;
        }
        let mut text = String::new();
        if entry.read_to_string(&mut text).is_err() {
            parsed.skip("trail file that is not UTF-8");
            continue;
        }
        read_bytes += text.len() as u64;
        progress(read_bytes);
        parsed.extend(maltrail_file(&name, &text));
    }
    Ok(parsed)
}

fn visit_dir(
    dir: &Path,
    visit: &mut dyn FnMut(&Path) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| read_error(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            visit_dir(&path, visit)?;
        } else {
            visit(&path)?;
        }
    }
    Ok(())
}

/// ipsum: `IP<TAB>count`.
pub fn ipsum(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut by_count: HashMap<u8, u32> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let ip = fields.next().and_then(|f| f.parse::<IpAddr>().ok());
        let count = fields.next().and_then(|f| f.parse::<u8>().ok());
        let (Some(ip), Some(count)) = (ip, count) else {
            parsed.skip("line is not `IP<TAB>count`");
            continue;
        };
        let confidence = match count {
            0 => {
                parsed.skip("listed by no list (count 0)");
                continue;
            }
            1 => 30,
            2 => 45,
            3..=5 => 60,
            _ => 90,
        };
        let meta = match by_count.get(&count) {
            Some(id) => *id,
            None => {
                let id = parsed.meta(IndicatorMeta {
                    family: None,
                    campaign: None,
                    confidence,
                    references: vec![format!("ipsum: listed by {count} block list(s)")],
                    techniques: Vec::new(),
                });
                by_count.insert(count, id);
                id
            }
        };
        parsed.indicators.push((Indicator::Ip(ip), meta));
    }
    parsed
}

/// One indicator as written in a trail or C2 list.
pub fn classify(raw: &str) -> Result<Indicator, &'static str> {
    let value = raw.trim();
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(Indicator::Ip(ip));
    }
    if let Ok(net) = value.parse::<IpNet>() {
        return Ok(Indicator::Cidr(net.trunc()));
    }
    if let Ok(addr) = value.parse::<std::net::SocketAddr>() {
        return Ok(Indicator::IpPort(addr.ip(), addr.port()));
    }
    if value.starts_with('/') {
        return Ok(Indicator::UrlPath(value.to_owned()));
    }
    if value.contains('/') || value.contains("://") {
        return normalize_url(value)
            .map(Indicator::Url)
            .ok_or("URL without a host");
    }
    // maltrail's `.cu.cc`: any name under that suffix.
    let (suffix, value) = match value.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let domain = value.trim_end_matches('.').to_ascii_lowercase();
    // A suffix may be one label (`.onion`); a domain has two or more.
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && (suffix || domain.contains('.'))
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if valid && suffix {
        Ok(Indicator::DomainSuffix(domain))
    } else if valid {
        Ok(Indicator::Domain(domain))
    } else {
        Err("not an IP, CIDR, ip:port, URL or domain")
    }
}

/// One maltrail trail file; `name` is its path (for family and category).
pub fn maltrail_file(name: &str, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let path = Path::new(name);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // njrat-1.txt continues njrat.txt.
    let family = match stem.rsplit_once('-') {
        Some((base, n)) if !base.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => stem.clone(),
    };
    let category = path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let confidence = match category.as_str() {
        "malware" => 90,
        "malicious" => 75,
        "suspicious" => 40,
        _ if stem.starts_with("mass_scanner") => 20,
        _ => 50,
    };
    // A trail file is groups: `# Reference:` lines, then the indicators
    // they are about. Each group is one entry with its own references, so
    // a match carries the reports about its indicator, not the file's
    // thousands (cobaltstrike-1.txt has 10,122 groups).
    let mut references: Vec<String> = Vec::new();
    let mut group: Option<u32> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(reference) = line.strip_prefix("# Reference:") {
            if group.is_some() {
                references.clear();
                group = None;
            }
            references.push(reference.trim().to_owned());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Some trails carry a trailing comment.
        let value = line.split_whitespace().next().unwrap_or_default();
        match classify(value) {
            Ok(indicator) => {
                let meta = *group.get_or_insert_with(|| {
                    parsed.meta(IndicatorMeta {
                        family: (!stem.starts_with("mass_scanner")).then(|| family.clone()),
                        campaign: None,
                        confidence,
                        references: references.clone(),
                        techniques: Vec::new(),
                    })
                });
                parsed.indicators.push((indicator, meta));
            }
            Err(reason) => parsed.skip(reason),
        }
    }
    parsed
}

/// A free-text label (a LOKI comment or header): the words before ` - `
/// without URLs as the family, the URLs as references.
pub fn split_label(label: &str) -> (Option<String>, Vec<String>) {
    let is_url = |w: &str| w.starts_with("http://") || w.starts_with("https://");
    let references: Vec<String> = label
        .split_whitespace()
        .filter(|w| is_url(w))
        .map(|w| w.trim_end_matches([',', ';', ')']).to_owned())
        .collect();
    let words: Vec<&str> = label.split_whitespace().filter(|w| !is_url(w)).collect();
    let text = words.join(" ");
    let family = text
        .split(" - ")
        .next()
        .map(|f| {
            f.trim()
                .trim_matches(|c: char| c == '-' || c == ':' || c.is_whitespace())
        })
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    (family, references)
}

/// Hash lists: `HASH;comment` or one bare hash per line. `campaign` labels
/// every hash (ESET's directory); without it a bare hash has no label and
/// a commented one its comment's ([`split_label`]).
pub fn hashes(text: &str, campaign: Option<String>) -> Parsed {
    let mut parsed = Parsed::default();
    let mut by_comment: HashMap<String, u32> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, comment) = match line.split_once(';') {
            Some((hash, comment)) => (hash.trim(), comment.trim()),
            None => (line.split_whitespace().next().unwrap_or_default(), ""),
        };
        let Some(hash) = file_hash(hash) else {
            parsed.skip("not an MD5, SHA-1 or SHA-256");
            continue;
        };
        let meta = match by_comment.get(comment) {
            Some(id) => *id,
            None => {
                let (named, references) = split_label(comment);
                let id = parsed.meta(IndicatorMeta {
                    family: named.or_else(|| campaign.clone()),
                    campaign: campaign.clone(),
                    confidence: 80,
                    references,
                    techniques: Vec::new(),
                });
                by_comment.insert(comment.to_owned(), id);
                id
            }
        };
        parsed.indicators.push((hash, meta));
    }
    parsed
}

/// An MD5, SHA-1 or SHA-256 in hex (any case, surrounding space ignored)
/// as an indicator; `None` for anything else.
pub fn file_hash(text: &str) -> Option<Indicator> {
    let hash = text.trim().to_ascii_lowercase();
    (matches!(hash.len(), 32 | 40 | 64) && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(Indicator::Hash(hash))
}

/// A STIX 2.1 bundle.
pub fn stix(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let document: Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(_) => {
            parsed.skip("not JSON");
            return parsed;
        }
    };
    let objects: Vec<Value> = match document.get("objects") {
        Some(Value::Array(objects)) => objects.clone(),
        _ => vec![document],
    };
    let by_id: HashMap<&str, &Value> = objects
        .iter()
        .filter_map(|o| Some((o.get("id")?.as_str()?, o)))
        .collect();
    // indicator id → (family, campaign) through `indicates` relationships.
    let mut named: HashMap<&str, (Option<String>, Option<String>)> = HashMap::new();
    for object in &objects {
        if object["type"] != "relationship" || object["relationship_type"] != "indicates" {
            continue;
        }
        let (Some(source), Some(target)) = (
            object["source_ref"].as_str(),
            object["target_ref"].as_str().and_then(|t| by_id.get(t)),
        ) else {
            continue;
        };
        let name = target["name"].as_str().map(str::to_owned);
        let entry = named.entry(source).or_default();
        match target["type"].as_str() {
            Some("malware") | Some("tool") => entry.0 = entry.0.take().or(name),
            Some("campaign") | Some("intrusion-set") | Some("threat-actor") => {
                entry.1 = entry.1.take().or(name);
            }
            _ => {}
        }
    }
    for object in &objects {
        if object["type"] != "indicator" {
            continue;
        }
        if object
            .get("pattern_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "stix")
        {
            parsed.skip("indicator pattern is not STIX");
            continue;
        }
        let pattern = object["pattern"].as_str().unwrap_or_default();
        let Some(values) = simple_pattern(pattern) else {
            parsed.skip("pattern other than [type:value = '…'] (OR-ed)");
            continue;
        };
        let (family, campaign) = object["id"]
            .as_str()
            .and_then(|id| named.get(id).cloned())
            .unwrap_or_default();
        let references_of = |key: &str| -> Vec<String> {
            object["external_references"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r[key].as_str().map(str::to_owned))
                .collect()
        };
        let techniques: Vec<String> = object["external_references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["source_name"] == "mitre-attack")
            .filter_map(|r| r["external_id"].as_str().map(str::to_owned))
            .collect();
        let meta = parsed.meta(IndicatorMeta {
            family: family.or_else(|| object["name"].as_str().map(str::to_owned)),
            campaign,
            confidence: object["confidence"]
                .as_u64()
                .map_or(70, |c| u8::try_from(c.min(100)).unwrap_or(100)),
            references: references_of("url"),
            techniques,
        });
        for value in values {
            match value {
                Ok(indicator) => parsed.indicators.push((indicator, meta)),
                Err(reason) => parsed.skip(reason),
            }
        }
    }
    parsed
}

/// `[ipv4-addr:value = '1.2.3.4' OR domain-name:value = 'x']` → the values;
/// `None` for anything else (AND, MATCHES, qualifiers, other objects).
fn simple_pattern(pattern: &str) -> Option<Vec<Result<Indicator, &'static str>>> {
    let inner = pattern.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    for comparison in inner.split(" OR ") {
        let (path, value) = comparison.split_once('=')?;
        let path = path.trim();
        let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        if value.contains('\'') || path.contains(' ') {
            return None;
        }
        let value = value.replace("\\\\", "\\");
        out.push(match path {
            "ipv4-addr:value" | "ipv6-addr:value" => {
                if let Ok(ip) = value.parse::<IpAddr>() {
                    Ok(Indicator::Ip(ip))
                } else if let Ok(net) = value.parse::<IpNet>() {
                    Ok(Indicator::Cidr(net.trunc()))
                } else {
                    Err("IP pattern with an invalid address")
                }
            }
            "domain-name:value" => match classify(&value) {
                Ok(domain @ Indicator::Domain(_)) => Ok(domain),
                _ => Err("domain pattern with an invalid name"),
            },
            "url:value" => normalize_url(&value)
                .map(Indicator::Url)
                .ok_or("URL pattern without a host"),
            path if path.starts_with("file:hashes.") => {
                file_hash(&value).ok_or("hash pattern with an invalid hash")
            }
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maltrail_lines_are_classified_and_attributed() {
        let text = "# Aliases: x\n# Reference: https://r.example/1\n\nevil.example\n1.2.3.4\n5.6.7.8:443\nhttp://9.9.9.1/x\nbad.example/dl.exe\n10.0.0.0/8\nnot an indicator\n.cu.cc\n/afu.php?zoneid=\n..\n";
        let parsed = maltrail_file("trails/static/malware/njrat-1.txt", text);
        assert_eq!(parsed.indicators.len(), 8, "{:?}", parsed.indicators);
        assert_eq!(
            parsed.indicators[6].0,
            Indicator::DomainSuffix("cu.cc".into())
        );
        assert_eq!(
            parsed.indicators[7].0,
            Indicator::UrlPath("/afu.php?zoneid=".into())
        );
        assert_eq!(parsed.metas[0].family.as_deref(), Some("njrat"));
        assert_eq!(parsed.metas[0].confidence, 90);
        assert_eq!(parsed.metas[0].references, ["https://r.example/1"]);
        assert_eq!(parsed.metas.len(), 1, "one group");
        assert_eq!(parsed.skipped.values().sum::<usize>(), 2);
    }

    #[test]
    fn maltrail_references_belong_to_their_group() {
        let text = "# Copyright\n\n# Reference: https://r.example/a\n# Reference: https://r.example/b\n\n1.2.3.4:443\n5.6.7.8:443\n\n# Reference: https://r.example/c\n\nevil.example\n";
        let parsed = maltrail_file("trails/static/malware/cobaltstrike-1.txt", text);
        assert_eq!(parsed.metas.len(), 2);
        let refs = |i: usize| &parsed.metas[parsed.indicators[i].1 as usize].references;
        assert_eq!(refs(0), &["https://r.example/a", "https://r.example/b"]);
        assert_eq!(parsed.indicators[0].1, parsed.indicators[1].1);
        assert_eq!(refs(2), &["https://r.example/c"]);
        assert_eq!(parsed.metas[1].family.as_deref(), Some("cobaltstrike"));
    }

    #[test]
    fn stix_simple_patterns_and_skips() {
        let bundle = r#"{"type":"bundle","objects":[
          {"type":"indicator","id":"indicator--1","pattern":"[ipv4-addr:value = '198.51.100.0/24' OR domain-name:value = 'evil.example']","pattern_type":"stix","confidence":85,
           "external_references":[{"source_name":"mitre-attack","external_id":"T1071"},{"source_name":"r","url":"https://r.example"}]},
          {"type":"indicator","id":"indicator--2","pattern":"[x509-certificate:issuer = 'CN=x' AND x509-certificate:serial_number = '1']","pattern_type":"stix"},
          {"type":"indicator","id":"indicator--3","pattern":"rule x {}","pattern_type":"yara"},
          {"type":"malware","id":"malware--1","name":"EvilBot"},
          {"type":"relationship","relationship_type":"indicates","source_ref":"indicator--1","target_ref":"malware--1"}]}"#;
        let parsed = stix(bundle);
        assert_eq!(parsed.indicators.len(), 2);
        let meta = &parsed.metas[0];
        assert_eq!(
            (meta.family.as_deref(), meta.confidence),
            (Some("EvilBot"), 85)
        );
        assert_eq!(meta.techniques, ["T1071"]);
        assert_eq!(
            parsed.skipped.values().sum::<usize>(),
            2,
            "{:?}",
            parsed.skipped
        );
    }

    #[test]
    fn hash_lists_in_both_shapes() {
        let loki = "# comment\nEE04B324F7E25B59D3412232A79D1878632D6817C3BB49500B214BF19AFA4E2C;Mozilla.exe - https://goo.gl/x\nnothex;bad\n";
        let parsed = hashes(loki, None);
        assert_eq!(parsed.indicators.len(), 1);
        assert_eq!(parsed.metas[0].family.as_deref(), Some("Mozilla.exe"));
        assert_eq!(parsed.metas[0].references, ["https://goo.gl/x"]);
        let bare = hashes("d41d8cd98f00b204e9800998ecf8427e\n", Some("agrius".into()));
        assert_eq!(bare.metas[0].campaign.as_deref(), Some("agrius"));
        // A bare list read as `hashes` takes no label from where it lies.
        let unlabelled = hashes("d41d8cd98f00b204e9800998ecf8427e\n", None);
        assert_eq!(
            (
                unlabelled.metas[0].family.clone(),
                unlabelled.metas[0].campaign.clone()
            ),
            (None, None)
        );
    }

    #[test]
    fn labels_keep_urls_out_of_the_family() {
        for (label, family, references) in [
            (
                "APT10 IOCs - Source: AlienVault OTX",
                Some("APT10 IOCs"),
                vec![],
            ),
            (
                "Fancy Bear - Lojack Double Agents - https://a.example/x",
                Some("Fancy Bear"),
                vec!["https://a.example/x"],
            ),
            (
                "Ocean Lotus Report by Tencent https://s.example/471.html (rastls.dll)",
                Some("Ocean Lotus Report by Tencent (rastls.dll)"),
                vec!["https://s.example/471.html"],
            ),
            ("https://goo.gl/x", None, vec!["https://goo.gl/x"]),
            ("", None, vec![]),
        ] {
            let (got, refs) = split_label(label);
            assert_eq!(got.as_deref(), family, "{label}");
            assert_eq!(refs, references, "{label}");
        }
    }
}
