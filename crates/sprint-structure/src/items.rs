//! What the structure check needs of one source file, test code left out: its functions
//! and their lengths, the modules it declares, the names it defines, its `use` paths and the
//! other paths it writes that may lead to a module of the crate.

use std::collections::BTreeSet;

use crate::lex::{Kind, Token, lex};

/// A function (free, associated or nested) and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// `Type::name` inside an `impl` or `trait` block, else `name`.
    pub name: String,
    /// Line of the `fn` keyword.
    pub line: usize,
    /// Lines from the `fn` keyword to the closing brace, both included.
    pub lines: usize,
}

/// One path of a `use` declaration, its groups expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsePath {
    /// The segments (`crate`, `super`, `self`, module and item names); a glob ends before `*`.
    pub segments: Vec<String>,
    /// The name it brings into scope (the last segment or its `as` name); `None` for a glob.
    pub name: Option<String>,
    /// Line of the declaration.
    pub line: usize,
}

/// A path written in code (outside `use`): its leading identifiers and its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRef {
    /// The identifiers joined by `::`, up to the first that is not followed by `::`
    /// (included).
    pub segments: Vec<String>,
    /// Line of the first segment.
    pub line: usize,
}

/// The structure of one file, test code (items under `#[cfg(test)]` or `#[test]`) left out.
#[derive(Clone, Debug, Default)]
pub struct FileItems {
    /// Functions outside test code.
    pub functions: Vec<Function>,
    /// Modules declared with `mod name;` outside test code.
    pub modules: Vec<String>,
    /// Names of the items defined at the top level of the file.
    pub defined: BTreeSet<String>,
    /// `use` paths outside test code.
    pub uses: Vec<UsePath>,
    /// Other paths outside test code.
    pub paths: Vec<PathRef>,
    /// Lines of the file.
    pub lines: usize,
    /// Lines inside test items (attribute to closing brace or semicolon).
    pub test_lines: usize,
}

/// Keywords that define a named item.
const ITEM_KEYWORDS: [&str; 9] = [
    "struct", "enum", "trait", "type", "fn", "const", "static", "union", "mod",
];

/// Reads one file's source.
pub fn file_items(src: &str) -> FileItems {
    let toks = lex(src);
    let close = matching(&toks);
    let mut out = FileItems {
        lines: src.lines().count(),
        ..FileItems::default()
    };
    let mut walk = Walk {
        toks: &toks,
        close: &close,
        out: &mut out,
        owners: Vec::new(),
    };
    walk.run();
    out
}

/// For each opening `{`, `(` or `[`, the index of its closing token (`usize::MAX` when
/// unbalanced); other entries unused.
fn matching(toks: &[Token]) -> Vec<usize> {
    let mut close = vec![usize::MAX; toks.len()];
    let mut stack = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct('{' | '(' | '[') => stack.push(i),
            Kind::Punct('}' | ')' | ']') => {
                if let Some(o) = stack.pop() {
                    close[o] = i;
                }
            }
            _ => {}
        }
    }
    close
}

struct Walk<'a> {
    toks: &'a [Token],
    close: &'a [usize],
    out: &'a mut FileItems,
    /// Enclosing `impl` / `trait` blocks: (index of the closing brace, type name).
    owners: Vec<(usize, String)>,
}

impl Walk<'_> {
    fn ident(&self, i: usize) -> Option<&str> {
        self.toks.get(i).and_then(Token::ident)
    }

    fn run(&mut self) {
        let mut depth = 0usize;
        let mut i = 0;
        while i < self.toks.len() {
            self.owners.retain(|(end, _)| *end > i);
            let t = &self.toks[i];
            if t.is('#') {
                i = self.attribute(i);
                continue;
            }
            match &t.kind {
                Kind::Punct('{') => depth += 1,
                Kind::Punct('}') => depth = depth.saturating_sub(1),
                Kind::Ident(w) => match w.as_str() {
                    "fn" => self.function(i),
                    "impl" | "trait" => self.owner(i),
                    "use" => {
                        i = self.use_decl(i);
                        continue;
                    }
                    "mod" if self.toks.get(i + 2).is_some_and(|t| t.is(';')) => {
                        if let Some(name) = self.ident(i + 1) {
                            self.out.modules.push(name.to_string());
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
            if depth == 0 {
                self.definition(i);
            }
            self.path(i);
            i += 1;
        }
    }

    /// An attribute at `i` (`#[...]` or `#![...]`): when it marks test code, the item it
    /// applies to is skipped. Returns the index to go on from.
    fn attribute(&mut self, i: usize) -> usize {
        let inner = self.toks.get(i + 1).is_some_and(|t| t.is('!'));
        let open = if inner { i + 2 } else { i + 1 };
        if !self.toks.get(open).is_some_and(|t| t.is('[')) {
            return i + 1;
        }
        let end = self.close[open];
        if end == usize::MAX {
            return self.toks.len();
        }
        let words: Vec<&str> = self.toks[open + 1..end]
            .iter()
            .filter_map(Token::ident)
            .collect();
        let test = words == ["test"]
            || (words.first() == Some(&"cfg")
                && words.contains(&"test")
                && !words.contains(&"not"));
        if !test {
            return end + 1;
        }
        let item_end = if inner {
            self.toks.len() - 1
        } else {
            self.item_end(end + 1)
        };
        let last_line = self.toks[item_end.min(self.toks.len() - 1)].line;
        self.out.test_lines += last_line + 1 - self.toks[i].line;
        item_end + 1
    }

    /// The index of the last token of the item (or statement) starting at `i`: its `;` or
    /// the closing brace of its first block, other attributes included.
    fn item_end(&self, mut i: usize) -> usize {
        while i < self.toks.len() {
            let t = &self.toks[i];
            if t.is(';') {
                return i;
            }
            if t.is('{') || t.is('(') || t.is('[') {
                let end = self.close[i];
                if end == usize::MAX {
                    return self.toks.len() - 1;
                }
                if t.is('{') {
                    return end;
                }
                i = end;
            }
            i += 1;
        }
        self.toks.len() - 1
    }

    /// `fn name ... { ... }` at `i`: recorded with its length.
    fn function(&mut self, i: usize) {
        let Some(name) = self.ident(i + 1) else {
            return; // a function pointer type
        };
        let mut j = i + 2;
        while j < self.toks.len() {
            let t = &self.toks[j];
            if t.is(';') {
                return; // no body
            }
            if t.is('{') {
                break;
            }
            if (t.is('(') || t.is('[')) && self.close[j] != usize::MAX {
                j = self.close[j];
            }
            j += 1;
        }
        let Some(&end) = self.close.get(j).filter(|e| **e != usize::MAX) else {
            return;
        };
        let name = match self.owners.last() {
            Some((_, owner)) => format!("{owner}::{name}"),
            None => name.to_string(),
        };
        let line = self.toks[i].line;
        self.out.functions.push(Function {
            name,
            line,
            lines: self.toks[end].line + 1 - line,
        });
    }

    /// An `impl` or `trait` block at `i` (not `impl Trait` in a type): its type or trait
    /// name names the functions inside.
    fn owner(&mut self, i: usize) {
        let item = i == 0
            || matches!(&self.toks[i - 1].kind, Kind::Punct('}' | ';' | '{' | ']'))
            || matches!(self.ident(i - 1), Some("unsafe" | "pub" | "default"))
            || self.toks[i - 1].is(')');
        if !item {
            return;
        }
        let mut j = i + 1;
        let mut angle = 0i32;
        let mut name = None;
        while j < self.toks.len() {
            let t = &self.toks[j];
            match &t.kind {
                Kind::Punct('<') => angle += 1,
                Kind::Punct('>') if !self.toks[j - 1].is('-') => angle -= 1,
                Kind::Punct('{') if angle == 0 => break,
                Kind::Punct(';') if angle == 0 => return,
                Kind::Ident(w) if angle == 0 && w == "where" => {
                    while j < self.toks.len() && !self.toks[j].is('{') {
                        j += 1;
                    }
                    break;
                }
                Kind::Ident(w) if angle == 0 && !matches!(w.as_str(), "for" | "dyn" | "unsafe") => {
                    name = Some(w.clone());
                }
                _ => {}
            }
            j += 1;
        }
        if let (Some(name), Some(&end)) = (name, self.close.get(j)) {
            if self.toks[i].ident() == Some("trait") {
                let trait_name = self.ident(i + 1).unwrap_or(&name).to_string();
                self.owners.push((end, trait_name));
            } else {
                self.owners.push((end, name));
            }
        }
    }

    /// A top-level item definition at `i`: its name recorded.
    fn definition(&mut self, i: usize) {
        let Some(w) = self.ident(i) else { return };
        if !ITEM_KEYWORDS.contains(&w) {
            return;
        }
        if let Some(name) = self.ident(i + 1)
            && !ITEM_KEYWORDS.contains(&name)
        {
            self.out.defined.insert(name.to_string());
        }
    }

    /// A path starting at `i` (an identifier followed by `::`, not itself after `::` or `$`).
    fn path(&mut self, i: usize) {
        let Some(first) = self.ident(i) else { return };
        if self.toks.get(i + 1).map(|t| &t.kind) != Some(&Kind::PathSep) {
            return;
        }
        if i > 0 && (self.toks[i - 1].kind == Kind::PathSep || self.toks[i - 1].is('$')) {
            return;
        }
        let mut segments = vec![first.to_string()];
        let mut j = i + 1;
        while self.toks.get(j).map(|t| &t.kind) == Some(&Kind::PathSep) {
            match self.ident(j + 1) {
                Some(s) => segments.push(s.to_string()),
                None => break,
            }
            j += 2;
        }
        self.out.paths.push(PathRef {
            segments,
            line: self.toks[i].line,
        });
    }

    /// A `use` declaration at `i`: its paths recorded. Returns the index after its `;`.
    fn use_decl(&mut self, i: usize) -> usize {
        let mut end = i + 1;
        while end < self.toks.len() && !self.toks[end].is(';') {
            end += 1;
        }
        let line = self.toks[i].line;
        let mut paths = Vec::new();
        use_tree(&self.toks[i + 1..end.min(self.toks.len())], &[], &mut paths);
        for (segments, name) in paths {
            self.out.uses.push(UsePath {
                segments,
                name,
                line,
            });
        }
        end + 1
    }
}

/// Expands a use tree (`a::b::{c, d::e as f, g::*}`) after `prefix` into (segments, name).
fn use_tree(toks: &[Token], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut segments = prefix.to_vec();
    let mut i = 0;
    if toks.first().map(|t| &t.kind) == Some(&Kind::PathSep) {
        return; // `::name`: an external crate
    }
    while i < toks.len() {
        let t = &toks[i];
        match &t.kind {
            Kind::Ident(w) if w == "as" => {
                let alias = toks.get(i + 1).and_then(Token::ident).map(String::from);
                push_use(segments, alias, out);
                return;
            }
            Kind::Ident(w) => segments.push(w.clone()),
            Kind::PathSep => {}
            Kind::Punct('*') => {
                out.push((segments, None));
                return;
            }
            Kind::Punct('{') => {
                for part in split_group(&toks[i + 1..]) {
                    use_tree(part, &segments, out);
                }
                return;
            }
            _ => {}
        }
        i += 1;
    }
    let name = segments.last().cloned();
    push_use(segments, name, out);
}

/// Records a use path; `a::self` stands for `a`.
fn push_use(
    mut segments: Vec<String>,
    name: Option<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut name = name;
    if segments.last().is_some_and(|s| s == "self") && segments.len() > 1 {
        segments.pop();
        if name.as_deref() == Some("self") {
            name = segments.last().cloned();
        }
    }
    if !segments.is_empty() {
        out.push((segments, name));
    }
}

/// The comma-separated parts of a `{...}` group whose tokens start after the `{`.
fn split_group(toks: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.is('{') {
            depth += 1;
        } else if t.is('}') {
            if depth == 0 {
                parts.push(&toks[start..i]);
                return parts;
            }
            depth -= 1;
        } else if t.is(',') && depth == 0 {
            parts.push(&toks[start..i]);
            start = i + 1;
        }
    }
    parts.push(&toks[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"//! doc
use crate::a::{self, b::C as D, e::*};
use super::f;
mod g;
#[cfg(test)]
mod tests;

pub struct S;

impl<T> Tr for S<T> where T: Copy {
    fn method(&self) -> impl Iterator<Item = u8> {
        crate::h::i(1);
        std::iter::empty()
    }
}

pub fn long() {
    let x = 1;
}

#[cfg(test)]
mod t {
    fn hidden() { crate::z::q(); }
}
"#;

    #[test]
    fn functions_modules_uses_and_paths() {
        let f = file_items(SRC);
        let fns: Vec<_> = f
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.lines))
            .collect();
        assert_eq!(fns, [("S::method", 4), ("long", 3)]);
        assert_eq!(f.modules, ["g"]);
        assert!(f.defined.contains("S") && f.defined.contains("long") && f.defined.contains("g"));
        let uses: Vec<_> = f
            .uses
            .iter()
            .map(|u| (u.segments.join("::"), u.name.clone()))
            .collect();
        assert_eq!(
            uses,
            [
                ("crate::a".to_string(), Some("a".to_string())),
                ("crate::a::b::C".to_string(), Some("D".to_string())),
                ("crate::a::e".to_string(), None),
                ("super::f".to_string(), Some("f".to_string())),
            ]
        );
        let paths: Vec<_> = f.paths.iter().map(|p| p.segments.join("::")).collect();
        assert_eq!(paths, ["crate::h::i", "std::iter::empty"]);
        assert_eq!(f.test_lines, 2 + 4);
        assert_eq!(f.lines, SRC.lines().count());
    }
}
