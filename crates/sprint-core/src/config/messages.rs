//! Error-message helpers shared by the configuration's sections.

/// `s` on one line: its words joined by single spaces.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
