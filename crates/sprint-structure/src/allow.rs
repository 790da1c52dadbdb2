//! The allow-list: findings known and accepted for now (printed as warnings, so that only
//! new ones fail), and files exempt from the file length as data tables.
//!
//! One entry a line, as [`crate::check::Finding::key`] prints it; `#` starts a comment:
//!
//! ```text
//! function crates/NAME/src/FILE.rs Type::name
//! file crates/NAME/src/FILE.rs
//! circle CRATE: module_a module_b
//! embed crates/NAME/src/FILE.rs ../../../PATH
//! table crates/NAME/src/FILE.rs   # a data table: no file length limit
//! ```

use std::collections::BTreeSet;

use crate::check::Finding;

/// The entries of an allow-list file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Accepted findings, by key.
    pub known: BTreeSet<String>,
    /// Files exempt from the file length limit (data tables).
    pub tables: BTreeSet<String>,
}

/// Findings sorted against an allow-list.
#[derive(Clone, Debug, Default)]
pub struct Sorted {
    /// Findings the allow-list names: warnings.
    pub allowed: Vec<Finding>,
    /// Findings it does not name: errors.
    pub new: Vec<Finding>,
    /// Entries that name no finding any more (the thing was fixed): errors, so that the
    /// list only shrinks.
    pub stale: Vec<String>,
}

impl AllowList {
    /// Reads the text of an allow-list; an unknown entry kind is an error naming its line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut list = AllowList::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let entry = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match entry.split(' ').next() {
                Some("table") => {
                    list.tables.insert(entry["table ".len()..].to_string());
                }
                Some("function" | "file" | "circle" | "embed") => {
                    list.known.insert(entry);
                }
                _ => return Err(format!("line {}: unknown entry `{line}`", n + 1)),
            }
        }
        Ok(list)
    }

    /// Splits `findings` into allowed and new ones, and finds the stale entries.
    pub fn sort(&self, findings: Vec<Finding>) -> Sorted {
        let mut out = Sorted::default();
        let mut used = BTreeSet::new();
        for f in findings {
            if let Finding::LongFile { file, .. } = &f
                && self.tables.contains(file)
            {
                continue;
            }
            let key = f.key();
            if self.known.contains(&key) {
                used.insert(key);
                out.allowed.push(f);
            } else {
                out.new.push(f);
            }
        }
        out.stale = self.known.difference(&used).cloned().collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_findings_warn_new_ones_fail_fixed_ones_are_stale() {
        let list = AllowList::parse(
            "# comment\nfunction a.rs  f   # long\nfile b.rs\ntable c.rs\nfile gone.rs\n",
        )
        .unwrap();
        let f = |name: &str| Finding::LongFunction {
            file: "a.rs".into(),
            name: name.into(),
            line: 1,
            lines: 200,
        };
        let file = |file: &str| Finding::LongFile {
            file: file.into(),
            lines: 900,
        };
        let sorted = list.sort(vec![f("f"), f("g"), file("b.rs"), file("c.rs")]);
        assert_eq!(sorted.allowed, [f("f"), file("b.rs")]);
        assert_eq!(sorted.new, [f("g")]);
        assert_eq!(sorted.stale, ["file gone.rs"]);
        assert!(AllowList::parse("fn x").is_err());
    }
}
