//! A small Rust lexer: identifiers, `::`, punctuation and literals with their lines. It
//! tells comments, strings (raw ones included), character literals and lifetimes apart, so
//! that a brace or a path inside them is not mistaken for code.

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword (a raw identifier without its `r#`).
    Ident(String),
    /// `::`.
    PathSep,
    /// Any other punctuation character.
    Punct(char),
    /// A plain string literal `"..."`: its text between the quotes, escapes kept as written.
    Str(String),
    /// Any other literal (raw, byte and C strings, characters, numbers), or a lifetime.
    Literal,
}

/// A token and the line (from 1) it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: Kind,
    /// Line of its first character, from 1.
    pub line: usize,
}

impl Token {
    /// The identifier, if the token is one.
    pub fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ident(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the token is the punctuation `c`.
    pub fn is(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
}

/// The tokens of `src`, comments dropped.
pub fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let mut lx = Lexer {
        c: &c,
        i: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while lx.i < c.len() {
        let line = lx.line;
        if let Some(kind) = lx.next_kind() {
            out.push(Token { kind, line });
        }
    }
    out
}

struct Lexer<'a> {
    c: &'a [char],
    i: usize,
    line: usize,
}

impl Lexer<'_> {
    fn at(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    /// Moves one character on, counting lines.
    fn bump(&mut self) {
        if self.c[self.i] == '\n' {
            self.line += 1;
        }
        self.i += 1;
    }

    /// The next token's kind, or `None` for whitespace and comments.
    fn next_kind(&mut self) -> Option<Kind> {
        let ch = self.c[self.i];
        if ch.is_whitespace() {
            self.bump();
            return None;
        }
        if ch == '/' && self.at(1) == Some('/') {
            while self.i < self.c.len() && self.c[self.i] != '\n' {
                self.i += 1;
            }
            return None;
        }
        if ch == '/' && self.at(1) == Some('*') {
            self.block_comment();
            return None;
        }
        if self.c[self.i] == '"' {
            let start = self.i + 1;
            self.string();
            let end = self.i.saturating_sub(1).max(start);
            return Some(Kind::Str(self.c[start..end].iter().collect()));
        }
        if self.raw_string() || self.string() || self.char_or_lifetime() {
            return Some(Kind::Literal);
        }
        if ch.is_alphabetic() || ch == '_' {
            return Some(Kind::Ident(self.word()));
        }
        if ch.is_ascii_digit() {
            self.number();
            return Some(Kind::Literal);
        }
        if ch == ':' && self.at(1) == Some(':') {
            self.i += 2;
            return Some(Kind::PathSep);
        }
        self.bump();
        Some(Kind::Punct(ch))
    }

    /// `/* ... */`, nested ones included.
    fn block_comment(&mut self) {
        let mut depth = 0;
        while self.i < self.c.len() {
            if self.c[self.i] == '/' && self.at(1) == Some('*') {
                depth += 1;
                self.i += 2;
            } else if self.c[self.i] == '*' && self.at(1) == Some('/') {
                depth -= 1;
                self.i += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    /// `r"..."`, `r#"..."#`, `br"..."`, `cr#"..."#`: consumed if one starts here.
    fn raw_string(&mut self) -> bool {
        let mut j = self.i;
        if matches!(self.c[j], 'b' | 'c') && self.c.get(j + 1) == Some(&'r') {
            j += 1;
        }
        if self.c[j] != 'r' {
            return false;
        }
        let mut k = j + 1;
        while self.c.get(k) == Some(&'#') {
            k += 1;
        }
        if self.c.get(k) != Some(&'"') {
            return false;
        }
        let hashes = k - j - 1;
        self.i = k + 1;
        while self.i < self.c.len() {
            if self.c[self.i] == '"' && (1..=hashes).all(|h| self.c.get(self.i + h) == Some(&'#')) {
                self.i += 1 + hashes;
                return true;
            }
            self.bump();
        }
        true
    }

    /// `"..."`, `b"..."`, `c"..."`: consumed if one starts here.
    fn string(&mut self) -> bool {
        let ch = self.c[self.i];
        let quote = if ch == '"' {
            self.i
        } else if matches!(ch, 'b' | 'c') && self.at(1) == Some('"') {
            self.i + 1
        } else {
            return false;
        };
        self.i = quote + 1;
        while self.i < self.c.len() {
            match self.c[self.i] {
                '\\' => {
                    self.i += 1;
                    if self.i < self.c.len() {
                        self.bump();
                    }
                }
                '"' => {
                    self.i += 1;
                    return true;
                }
                _ => self.bump(),
            }
        }
        true
    }

    /// `'x'`, `'\n'`, `b'x'` or a lifetime / label `'a`: consumed if one starts here.
    fn char_or_lifetime(&mut self) -> bool {
        let q = if self.c[self.i] == '\'' {
            self.i
        } else if self.c[self.i] == 'b' && self.at(1) == Some('\'') {
            self.i + 1
        } else {
            return false;
        };
        let next = self.c.get(q + 1).copied();
        if next == Some('\\') {
            // An escape: the closing quote comes after the escaped character.
            self.i = q + 3;
            while self.i < self.c.len() && self.c[self.i] != '\'' {
                self.i += 1;
            }
            self.i += 1;
        } else if self.c.get(q + 2) == Some(&'\'') {
            self.i = q + 3;
        } else {
            // A lifetime or a label.
            self.i = q + 1;
            while self.i < self.c.len()
                && (self.c[self.i].is_alphanumeric() || self.c[self.i] == '_')
            {
                self.i += 1;
            }
        }
        true
    }

    /// An identifier or keyword; `r#name` gives `name`.
    fn word(&mut self) -> String {
        if self.c[self.i] == 'r' && self.at(1) == Some('#') {
            self.i += 2;
        }
        let start = self.i;
        while self.i < self.c.len() && (self.c[self.i].is_alphanumeric() || self.c[self.i] == '_') {
            self.i += 1;
        }
        self.c[start..self.i].iter().collect()
    }

    /// `12`, `0x1f_u8`, `1.5e3`; a `.` is part of the number only before a digit (`1..2`,
    /// `1.max(2)` are not).
    fn number(&mut self) {
        while self.i < self.c.len() {
            let ch = self.c[self.i];
            let fraction = ch == '.' && self.at(1).is_some_and(|d| d.is_ascii_digit());
            if ch.is_alphanumeric() || ch == '_' || fraction {
                self.i += 1;
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        lex(src)
            .iter()
            .filter_map(|t| t.ident().map(String::from))
            .collect()
    }

    #[test]
    fn comments_strings_and_chars_hide_their_contents() {
        let src =
            "a // b {\n/* c /* d */ { */ e \"f { \\\" g\" r#\"h \" { \"# 'i' '{' '\\'' b'}' j";
        assert_eq!(idents(src), ["a", "e", "j"]);
        let braces = lex(src).iter().filter(|t| t.is('{') || t.is('}')).count();
        assert_eq!(braces, 0);
    }

    #[test]
    fn lifetimes_paths_raw_identifiers_and_lines() {
        let toks = lex("fn f<'a>(x: &'a str) {\n  crate::m::r#type(1..2, 1.5)\n}");
        let ids: Vec<_> = toks.iter().filter_map(|t| t.ident()).collect();
        assert_eq!(ids, ["fn", "f", "x", "str", "crate", "m", "type"]);
        assert_eq!(toks.iter().filter(|t| t.kind == Kind::PathSep).count(), 2);
        assert_eq!(toks.last().unwrap().line, 3);
        let dots = toks.iter().filter(|t| t.is('.')).count();
        assert_eq!(
            dots, 2,
            "`1..2` is two numbers around `..`, `1.5` one number"
        );
    }

    #[test]
    fn plain_strings_keep_their_text() {
        let toks = lex(r#"include_str!("../a.toml") b"x" "q\"r""#);
        assert_eq!(toks[3].kind, Kind::Str("../a.toml".into()));
        assert_eq!(toks[5].kind, Kind::Literal);
        assert_eq!(toks[6].kind, Kind::Str("q\\\"r".into()));
    }

    #[test]
    fn multi_line_strings_count_their_lines() {
        let toks = lex("\"a\nb\"\nr#\"c\nd\"#\nx");
        assert_eq!(toks.last().unwrap().line, 5);
    }
}
