#[derive(Debug, PartialEq)]
pub enum WildcardToken {
    Star,
    QuestionMark,
    Pattern(String),
}

/// Tokenize a string into a list of WildcardTokens
/// This method also takes care of converting escape sequences (backslashes) into the actual characters
/// See: https://github.com/SigmaHQ/sigma-specification/blob/main/specification/sigma-rules-specification.md#escaping
/// Therefore, it is crucial to use this method on a raw string provided in the Sigma rule
pub(crate) fn tokenize(s: &str, lowercase: bool) -> Vec<WildcardToken> {
    let mut result = vec![];
    let mut buffer = String::new();

    let mut escape_mode = false;

    for char in s.chars() {
        match char {
            '*' => {
                if escape_mode {
                    buffer.push('*');
                    escape_mode = false;
                    continue;
                }

                if !buffer.is_empty() {
                    result.push(WildcardToken::Pattern(buffer.clone()));
                    buffer.clear();
                }
                if let Some(WildcardToken::Star) = result.last() {
                    // Ignore multiple consecutive stars
                } else {
                    result.push(WildcardToken::Star)
                }
            }
            '?' => {
                if escape_mode {
                    buffer.push('?');
                    escape_mode = false;
                    continue;
                }

                if !buffer.is_empty() {
                    result.push(WildcardToken::Pattern(buffer.clone()));
                    buffer.clear();
                }

                result.push(WildcardToken::QuestionMark)
            }
            '\\' => {
                if !escape_mode {
                    escape_mode = true;
                } else {
                    buffer.push('\\');
                    escape_mode = false;
                }
            }
            _ => {
                if escape_mode {
                    buffer.push('\\');
                    escape_mode = false;
                }
                if lowercase {
                    buffer.extend(char.to_lowercase())
                } else {
                    buffer.push(char)
                }
            }
        }
    }
    if escape_mode {
        buffer.push('\\');
    }
    if !buffer.is_empty() {
        result.push(WildcardToken::Pattern(buffer));
    }

    result
}

/// Matches `haystack` against `tokens` (Rampart patch: the published
/// matcher walks a lower-casing char iterator and compares a sliding
/// `Vec<char>` window at every position, quadratic in the value length and
/// the main cost of `contains` rules on long command lines; this one
/// lower-cases the value once and finds literal runs with `memchr`).
///
/// A `*` followed by a literal tries that literal's occurrences leftmost
/// first; when another `*` follows the literal, the leftmost occurrence is
/// the only one worth trying (whatever a later one could match, the
/// leftmost leaves at least as much haystack), so the common `*a*b*` is
/// linear.
fn match_str(tokens: &[WildcardToken], haystack: &str) -> bool {
    match tokens.split_first() {
        None => haystack.is_empty(),
        Some((WildcardToken::Pattern(p), rest)) => {
            let p = p.as_str();
            haystack.starts_with(p) && match_str(rest, &haystack[p.len()..])
        }
        Some((WildcardToken::QuestionMark, rest)) => {
            let mut chars = haystack.chars();
            chars.next().is_some() && match_str(rest, chars.as_str())
        }
        Some((WildcardToken::Star, rest)) => match rest.split_first() {
            None => true,
            Some((WildcardToken::Pattern(p), after)) => {
                let p = p.as_str();
                if after.is_empty() {
                    return haystack.ends_with(p);
                }
                let mut from = 0;
                while let Some(at) = find(&haystack.as_bytes()[from..], p.as_bytes()) {
                    let end = from + at + p.len();
                    if match_str(after, &haystack[end..]) {
                        return true;
                    }
                    if matches!(after.first(), Some(WildcardToken::Star)) {
                        return false;
                    }
                    // The next occurrence starts after this one's first char.
                    let step = haystack[from + at..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    from += at + step;
                }
                false
            }
            Some(_) => haystack
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(haystack.len()))
                .any(|i| match_str(rest, &haystack[i..])),
        },
    }
}

/// The first occurrence of `needle` in `haystack`: a SIMD scan for its
/// first byte, then a compare. Sigma literals are short and values a few
/// hundred bytes, where building a `memmem::Finder` per call costs more
/// than the search.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, _)) = needle.split_first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(at) = memchr::memchr(first, &haystack[from..]) {
        let start = from + at;
        if haystack[start..].starts_with(needle) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

pub(crate) fn match_tokenized(tokens: &[WildcardToken], haystack: &str, lowercase: bool) -> bool {
    if !lowercase {
        return match_str(tokens, haystack);
    }
    if haystack.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        let lowered = if haystack.is_ascii() {
            haystack.to_ascii_lowercase()
        } else {
            haystack.to_lowercase()
        };
        match_str(tokens, &lowered)
    } else {
        match_str(tokens, haystack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn wildcard_match(pattern: &str, haystack: &str) -> bool {
        let tokens = tokenize(pattern, false);
        match_tokenized(&tokens, haystack, false)
    }

    #[test]
    fn test_tokenize() {
        assert_eq!(tokenize("", false), vec![]);
        assert_eq!(
            tokenize("a*b", false),
            vec![
                WildcardToken::Pattern("a".into()),
                WildcardToken::Star,
                WildcardToken::Pattern("b".into()),
            ]
        );
        assert_eq!(
            tokenize("A*B", false),
            vec![
                WildcardToken::Pattern("A".into()),
                WildcardToken::Star,
                WildcardToken::Pattern("B".into()),
            ]
        );
        assert_eq!(
            tokenize("A*B", true),
            vec![
                WildcardToken::Pattern("a".into()),
                WildcardToken::Star,
                WildcardToken::Pattern("b".into()),
            ]
        );
        assert_eq!(
            tokenize("a?b", false),
            vec![
                WildcardToken::Pattern("a".into()),
                WildcardToken::QuestionMark,
                WildcardToken::Pattern("b".into()),
            ]
        );
        assert_eq!(
            tokenize("a\\*b", false),
            vec![WildcardToken::Pattern("a*b".into())]
        );
        assert_eq!(
            tokenize("a\\?b", false),
            vec![WildcardToken::Pattern("a?b".into()),]
        );
        assert_eq!(
            tokenize("a\\b", false),
            vec![WildcardToken::Pattern("a\\b".into()),]
        );

        //https://github.com/SigmaHQ/sigma-specification/blob/main/specification/sigma-rules-specification.md#escaping
        assert_eq!(
            tokenize(r"a\b", false),
            vec![WildcardToken::Pattern("a\\b".into()),]
        );
        assert_eq!(
            tokenize(r"a\\b", false),
            vec![WildcardToken::Pattern("a\\b".into()),]
        );
        assert_eq!(
            tokenize(r"a\\\b", false),
            vec![WildcardToken::Pattern("a\\\\b".into()),]
        );
        assert_eq!(
            tokenize(r"a\\\*b", false),
            vec![WildcardToken::Pattern("a\\*b".into()),]
        );
        assert_eq!(
            tokenize(r"a\\\\b", false),
            vec![WildcardToken::Pattern("a\\\\b".into()),]
        );

        assert_eq!(
            tokenize(r"hello***?world", false),
            vec![
                WildcardToken::Pattern("hello".chars().collect()),
                WildcardToken::Star,
                WildcardToken::QuestionMark,
                WildcardToken::Pattern("world".chars().collect()),
            ]
        );
    }

    #[test]
    fn test_wildcard_match() {
        assert!(wildcard_match("ab", "ab"));
        assert!(!wildcard_match("ab", "ac"));
        assert!(!wildcard_match("ab", "abc"));
        assert!(!wildcard_match("abc", "ab"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("a?c", "a🔥c"));
        assert!(!wildcard_match("a?c", "a🔥🔥c"));
        assert!(!wildcard_match("a??c", "abc"));
        assert!(!wildcard_match("a?c?", "abc"));
        assert!(wildcard_match("ab?", "abc"));
        assert!(!wildcard_match("ab?", "abcd"));
        assert!(wildcard_match("a*", "a"));
        assert!(wildcard_match("a*", "acb"));
        assert!(wildcard_match("a*b", "ab"));
        assert!(!wildcard_match("a*?b", "ab"));
        assert!(wildcard_match("a*?b", "acb"));
        assert!(wildcard_match("a*b", "ads🔥🔥fggb"));
        assert!(wildcard_match("foo*bar", "foobar"));
        assert!(wildcard_match("foo*bar", "foobarbar"));
        assert!(wildcard_match("foo*bar*fizz", "foobarbarfizzfizz"));
        assert!(!wildcard_match("foo*bar*fizz", "foobarbarfizznope"));
        assert!(wildcard_match(r"hello\*??world", "hello*myworld"));
        assert!(wildcard_match(
            r"C:\\*\\*.exe",
            r"C:\Windows\System32\calc.exe"
        ));
        assert!(!wildcard_match(r"C:\\*\\*.exe", r"C:\test.exe"));
    }

    // Additional tests inspired by
    // https://github.com/cassaundra/wildflower/blob/main/tests/tests.rs

    #[test]
    fn test_simple_match() {
        assert!(wildcard_match("", ""));
        assert!(wildcard_match("a", "a"));
        assert!(wildcard_match("🔥", "🔥"));
        assert!(wildcard_match("abc", "abc"));

        assert!(!wildcard_match("a", ""));
        assert!(!wildcard_match("", "a"));
        assert!(!wildcard_match("abc", "xyz"));
        assert!(!wildcard_match("abc", "a"));
        assert!(!wildcard_match("abc", "ab"));
        assert!(!wildcard_match("abc", "abx"));
    }

    #[test]
    fn test_question_mark() {
        assert!(wildcard_match("?", "x"));
        assert!(wildcard_match("??", "xz"));
        assert!(wildcard_match("??", "🔥🔥"));
        assert!(wildcard_match("a?", "ab"));
        assert!(wildcard_match("hel???", "hello🔥"));
        assert!(wildcard_match("a?aa", "abaa"));
        assert!(wildcard_match("?a?a?", "baaax"));

        assert!(!wildcard_match("?", ""));
        assert!(!wildcard_match("?", "ab"));
        assert!(!wildcard_match("??", "a"));
        assert!(!wildcard_match("??", "🔥"));
        assert!(!wildcard_match("x?", "yx"));
        assert!(!wildcard_match("z?", "z"));
        assert!(!wildcard_match("abc???", "abcxy"));
        assert!(!wildcard_match("a?aa", "aaa"));
        assert!(!wildcard_match("?a?a?", "abcde"));
    }

    #[test]
    fn test_single_star() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "♡"));
        assert!(wildcard_match("*", "a"));
        assert!(wildcard_match("*", "abcdef"));
    }

    #[test]
    fn test_multiple_stars() {
        assert!(wildcard_match("***", ""));
        assert!(wildcard_match("***", "a"));
        assert!(wildcard_match("***", "abcdef"));
    }

    #[test]
    fn test_leading_star() {
        assert!(wildcard_match("*a", "a"));
        assert!(wildcard_match("*fast", "breakfast"));

        assert!(!wildcard_match("*a", "ab"));
        assert!(!wildcard_match("*fast", "break"));
    }

    #[test]
    fn test_trailing_star() {
        assert!(wildcard_match("a*", "a"));
        assert!(wildcard_match("break*", "breakfast"));
        assert!(wildcard_match("break\\**", "break*fast"));

        assert!(!wildcard_match("a*", "ba"));
        assert!(!wildcard_match("break*", "fast"));
        assert!(!wildcard_match("break\\**", "breakfast"));
    }

    #[test]
    fn test_inner_star() {
        assert!(wildcard_match("a*b", "ab"));
        assert!(wildcard_match("a*b", "aXb"));
        assert!(wildcard_match("a*b", "aXYZb"));

        assert!(!wildcard_match("a*b", "aX"));
        assert!(!wildcard_match("a*b", "Xb"));
    }

    #[test]
    fn test_mixed_stars() {
        assert!(wildcard_match("*a*b", "ab"));
        assert!(wildcard_match("*a*b", "Xab"));
        assert!(wildcard_match("*a*b", "aXb"));
        assert!(wildcard_match("*a*b", "XaYb"));

        assert!(!wildcard_match("*a*b", "a"));
        assert!(!wildcard_match("*a*b", "b"));

        assert!(wildcard_match("a*b*", "ab"));
        assert!(wildcard_match("a*b*", "abX"));
        assert!(wildcard_match("a*b*", "aXb"));
        assert!(wildcard_match("a*b*", "aXbY"));

        assert!(!wildcard_match("a*b*", "a"));
        assert!(!wildcard_match("a*b*", "b"));

        assert!(wildcard_match("*a*b*", "ab"));
        assert!(wildcard_match("*a*b*", "Xab"));
        assert!(wildcard_match("*a*b*", "aXb"));
        assert!(wildcard_match("*a*b*", "XaYb"));
        assert!(wildcard_match("*a*b*", "abX"));
        assert!(wildcard_match("*a*b*", "XabY"));
        assert!(wildcard_match("*a*b*", "XaYbZ"));

        assert!(!wildcard_match("*a*b*", "a"));
        assert!(!wildcard_match("*a*b*", "b"));

        assert!(wildcard_match("a*X*b", "aXb"));
        assert!(wildcard_match("a*X*b", "aYXb"));
        assert!(wildcard_match("a*X*b", "aXYb"));
        assert!(wildcard_match("a*X*b", "aYXYb"));

        assert!(!wildcard_match("a*X*b", "ab"));
        assert!(!wildcard_match("a*X*b", "aX"));
        assert!(!wildcard_match("a*X*b", "Yb"));
        assert!(!wildcard_match("a*X*b", "aYb"));
        assert!(!wildcard_match("a*X*b", "aZYZb"));
    }

    #[test]
    fn test_mixed_wildcards() {
        assert!(wildcard_match("?*", "h"));
        assert!(wildcard_match("?*", "hi!"));
        assert!(wildcard_match("h?ll*!", "hello world!"));
        assert!(wildcard_match("h?ll*!", "hollow!"));
        assert!(wildcard_match("h?ll*!", "hell!"));
        assert!(wildcard_match("??*", "ab"));
        assert!(wildcard_match("??*", "abc"));
        assert!(wildcard_match("??*", "abcd"));

        assert!(!wildcard_match("?*", ""));
        assert!(!wildcard_match("h?ll*!", "hllo world!"));
        assert!(!wildcard_match("h?ll*!", "hell"));
        assert!(!wildcard_match("??*", "a"));
    }

    #[test]
    fn test_escapes() {
        assert!(wildcard_match(r"\\", r"\"));
        assert!(wildcard_match(r"\\\\", r"\\"));
        assert!(wildcard_match(r"\?", r"?"));
        assert!(wildcard_match(r"\*", r"*"));
        assert!(wildcard_match(r"a\bc", r"a\bc"));
        assert!(wildcard_match(r"\?\*\a", "?*\\a"));
        assert!(wildcard_match(r"h?\?", "hi?"));
        assert!(wildcard_match(r"\??????", "? okay"));
        assert!(wildcard_match(r"\**", "*.*"));
    }

    #[test]
    fn test_whitespace() {
        assert!(wildcard_match("\n", "\n"));
        assert!(wildcard_match("?", "\n"));
        assert!(wildcard_match("\t*\n", "\t\t\n"));
        assert!(!wildcard_match(" ", "\n"));
        assert!(!wildcard_match(" ", "\t"));
    }

    #[test]
    fn test_extra() {
        assert!(!wildcard_match("??*?!?", "hello!"));
        assert!(!wildcard_match("hel*???!?**+", "hello!"));
        assert!(!wildcard_match("?*??ll*??*w\n", "hello!"));
        assert!(!wildcard_match("??*``*", r"``\ȣ?"));
    }

    #[test]
    fn rampart_matcher_backtracks_where_it_must() {
        let m = |pattern: &str, haystack: &str| {
            match_tokenized(&tokenize(pattern, true), haystack, true)
        };
        assert!(m("*a?c", "abxaxc"), "second `a` is the one");
        assert!(m("*\\powershell.exe", "C:\\Windows\\PowerShell.EXE\\powershell.exe"));
        assert!(!m("*\\powershell.exe", "C:\\powershell.exe.bak"));
        assert!(m("* -enc *", "powershell.exe -NoP -ENC SQBFAFgA"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxcxxbxxaxx"));
        assert!(m("ab*", "ABCD") && !m("ab*", "xABCD"));
        assert!(m("*ünïcödé*", "Some ÜNÏCÖDÉ text"));
        assert!(m("a?", "aß") && !m("a?", "a") && !m("a?", "abc"));
        assert!(m("*", "") && m("**", "x") && !m("?", ""));
        assert!(m("*aa", "aaa"), "overlapping occurrences");
        assert!(!match_tokenized(&tokenize("*ABC*", false), "xabcx", false), "cased");
    }
}
