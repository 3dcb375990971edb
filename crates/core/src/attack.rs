//! MITRE ATT&CK Enterprise: technique → tactics, in one table
//! (`crates/core/attack/tactics.tsv`, also compiled into the `risk-scorer`
//! plugin), and the release it comes from.
//!
//! The table is v18.1 (the release in `../shared/data/mitre_attack`). Rules
//! written against a later release carry ids it does not know (SigmaHQ's
//! T1685 and T1686 families, and the `stealth` / `defense-impairment`
//! tactics); those ids are passed on as they are, but nothing stamps them
//! with a release that does not contain them: [`release_of`] answers
//! `None` for them. A finding keeps its rule's own tactic tags, so its
//! tactic is known even when its technique id is not.
//!
//! © 2025 The MITRE Corporation. This work is reproduced and distributed
//! with the permission of The MITRE Corporation (`attack/LICENSE.txt`).

/// The ATT&CK release of [`TABLE`].
pub const RELEASE: &str = "18.1";

/// Technique id, a tab, its tactics (`;`-separated), one per line; `#`
/// lines are comments.
pub const TABLE: &str = include_str!("../attack/tactics.tsv");

/// The tactics of technique `id` (`T1003.001`; case and an `attack.` prefix
/// are ignored), if the table knows it.
pub fn tactics_of(id: &str) -> Option<Vec<&'static str>> {
    let id = id.trim().trim_start_matches("attack.").to_ascii_uppercase();
    TABLE
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (technique, tactics) = line.split_once('\t')?;
            (technique == id).then(|| tactics.split(';').map(str::trim).collect())
        })
}

/// The release to stamp on technique `id`: [`RELEASE`] when it is in the
/// table, else `None`.
pub fn release_of(id: &str) -> Option<&'static str> {
    tactics_of(id).map(|_| RELEASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_its_release_and_nothing_later() {
        assert_eq!(tactics_of("T1003.001"), Some(vec!["credential-access"]));
        assert_eq!(tactics_of("attack.t1486"), Some(vec!["impact"]));
        assert_eq!(release_of("T1059.001"), Some("18.1"));
        // SigmaHQ's rules of a later release.
        assert_eq!(release_of("T1685.001"), None);
        assert_eq!(release_of("T1689"), None);
    }
}
