//! LOKI / signature-base IOC files (`iocs/c2-iocs.txt`, `iocs/hash-iocs.txt`).
//!
//! A C2 file is blocks: a `# comment` header, then one C2 domain or IP per
//! line; the header (its words, without URLs) is the family of the block's
//! indicators and its URLs are their references. A hash file is
//! `HASH;comment` lines, the comment (without URLs) the family and its URLs
//! the references. Both may be read by one reader: a line with `;` is a
//! hash, any other a C2. Lines of the files' own preamble (the `#` block
//! before the first blank line) label nothing; `REGEX;score` filename IOCs
//! are not indicators and are skipped.

use std::collections::HashMap;

use super::IndicatorMeta;
use super::formats::{Parsed, classify, file_hash, split_label};

/// Confidence of a signature-base indicator (hand-curated by analysts).
const CONFIDENCE: u8 = 80;

/// One LOKI IOC file.
pub fn read(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut metas: HashMap<String, u32> = HashMap::new();
    let mut meta_for = |parsed: &mut Parsed, label: &str| -> u32 {
        if let Some(id) = metas.get(label) {
            return *id;
        }
        let (family, references) = split_label(label);
        let id = parsed.meta(IndicatorMeta {
            family,
            campaign: None,
            confidence: CONFIDENCE,
            references,
            techniques: Vec::new(),
        });
        metas.insert(label.to_owned(), id);
        id
    };
    let mut header = String::new();
    let mut preamble = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            preamble = false;
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if !preamble {
                header = comment.trim().to_owned();
            }
            continue;
        }
        preamble = false;
        if let Some((value, comment)) = line.split_once(';') {
            match file_hash(value) {
                Some(hash) => {
                    let meta = meta_for(&mut parsed, comment.trim());
                    parsed.indicators.push((hash, meta));
                }
                None => parsed.skip("not an MD5, SHA-1 or SHA-256 (a filename regex?)"),
            }
            continue;
        }
        let value = line.split_whitespace().next().unwrap_or_default();
        match classify(value) {
            Ok(indicator) => {
                let meta = meta_for(&mut parsed, &header);
                parsed.indicators.push((indicator, meta));
            }
            Err(reason) => parsed.skip(reason),
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_headers_label_c2s_and_comments_label_hashes() {
        let text = "#\n# LOKI C2 IOCs\n# FORMAT\n#\n\n# FireEye Operation Snowman https://goo.gl/x1v7mT\nsuroot.com\n58.64.143.244\n\n# Turla https://r.example/t\nevil.example\n0b2d2d3a9dae37d7a5d6b7d0b2d2d3a9;Mimikatz - https://r.example/m\n^C:\\\\x.exe$;80\n";
        let parsed = read(text);
        let label = |i: usize| {
            let meta = &parsed.metas[parsed.indicators[i].1 as usize];
            (meta.family.clone(), meta.references.clone())
        };
        assert_eq!(parsed.indicators.len(), 4, "{:?}", parsed.indicators);
        assert_eq!(
            label(0),
            (
                Some("FireEye Operation Snowman".into()),
                vec!["https://goo.gl/x1v7mT".to_owned()]
            )
        );
        assert_eq!(parsed.indicators[0].1, parsed.indicators[1].1);
        assert_eq!(label(2).0.as_deref(), Some("Turla"));
        assert_eq!(
            label(3),
            (
                Some("Mimikatz".into()),
                vec!["https://r.example/m".to_owned()]
            )
        );
        assert_eq!(parsed.skipped.values().sum::<usize>(), 1);
    }
}
