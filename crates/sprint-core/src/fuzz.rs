//! Text mutation for the readers' property tests (the config, trace and threshold readers
//! here, the preset, energy and statistics readers in sprint-sim): a reader must answer
//! every mutated text with a value or a named error, never a panic.

/// `text` with each `(position, token, replace_line)` edit applied in order: the token
/// `tokens[token % tokens.len()]` replaces the rest of the line at that position (moved back
/// to a char boundary) when `replace_line`, or is inserted there. `tokens` must not be empty.
pub fn mutate(text: &str, edits: &[(usize, usize, bool)], tokens: &[&str]) -> String {
    let mut s = text.to_string();
    for &(pos, tok, replace_line) in edits {
        let mut i = pos % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        let token = tokens[tok % tokens.len()];
        if replace_line {
            let end = s[i..].find('\n').map_or(s.len(), |e| i + e);
            s.replace_range(i..end, token);
        } else {
            s.insert_str(i, token);
        }
    }
    s
}
