//! "Did you mean" suggestions for unknown names.

/// The candidate closest to `unknown` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != unknown)
        .map(|c| (levenshtein(unknown, c), c))
        .filter(|&(d, c)| {
            d <= limit
                || unknown.len() > 3 && c.starts_with(&unknown[..unknown.len() - 1])
                || unknown.len() > 2 && (c.starts_with(unknown) || c.ends_with(unknown))
                || c.len() > 2 && (unknown.starts_with(c) || unknown.ends_with(c))
        })
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

/// Edit distance between two strings, counted in chars.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("retires", ["retries", "timeout", "tags"]),
            Some("retries")
        );
        assert_eq!(
            did_you_mean("create_user", ["create_users", "drop_users"]),
            Some("create_users")
        );
        assert_eq!(did_you_mean("zzz", ["retries", "timeout"]), None);
        assert_eq!(
            did_you_mean("2024_01_15_120000_nope", ["2024_01_15_120000_create_users"]),
            None
        );
        assert_eq!(
            did_you_mean("create_users", ["2024_01_15_120000_create_users"]),
            Some("2024_01_15_120000_create_users")
        );
        assert_eq!(
            did_you_mean("retry", ["retries", "timeout"]),
            Some("retries")
        );
        assert_eq!(
            did_you_mean("rate_limit", ["rate_limited", "without_overlapping"]),
            Some("rate_limited")
        );
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
