//! The findings over a workspace: functions over [`MAX_FUNCTION_LINES`], files over
//! [`MAX_FILE_LINES`] (test code not counted), circles of module uses inside a crate, and
//! files embedded (`include_str!`, `include_bytes!`) from outside the crate's folder, which
//! `cargo package` leaves out.

use std::path::Path;

use crate::graph::{circles, levels, uses};
use crate::lex::{Kind, lex};
use crate::tree::{Tree, crate_trees};

/// Longest function allowed, in lines from `fn` to its closing brace.
pub const MAX_FUNCTION_LINES: usize = 120;

/// Longest file allowed, in lines outside test code.
pub const MAX_FILE_LINES: usize = 800;

/// One thing over a limit, or one circle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A function longer than [`MAX_FUNCTION_LINES`].
    LongFunction {
        /// Its file, relative to the workspace.
        file: String,
        /// `name` or `Type::name`.
        name: String,
        /// Line of its `fn`.
        line: usize,
        /// Its length in lines.
        lines: usize,
    },
    /// A file longer than [`MAX_FILE_LINES`] outside test code.
    LongFile {
        /// The file, relative to the workspace.
        file: String,
        /// Its lines outside test code.
        lines: usize,
    },
    /// Modules of one crate that use each other in a circle.
    Circle {
        /// The crate (and binary) name.
        krate: String,
        /// The modules, sorted.
        modules: Vec<String>,
        /// One line of evidence per use among them: `a -> b: file:line path`.
        evidence: Vec<String>,
    },
    /// A file embedded from outside the crate's folder.
    OutsideEmbed {
        /// The embedding source file, relative to the workspace.
        file: String,
        /// Line of the macro.
        line: usize,
        /// The path as written.
        path: String,
    },
}

impl Finding {
    /// The allow-list entry that names this finding.
    pub fn key(&self) -> String {
        match self {
            Finding::LongFunction { file, name, .. } => format!("function {file} {name}"),
            Finding::LongFile { file, .. } => format!("file {file}"),
            Finding::Circle { krate, modules, .. } => {
                format!("circle {krate}: {}", modules.join(" "))
            }
            Finding::OutsideEmbed { file, path, .. } => format!("embed {file} {path}"),
        }
    }

    /// What is wrong, in one line.
    pub fn describe(&self) -> String {
        match self {
            Finding::LongFunction {
                file,
                name,
                line,
                lines,
            } => format!(
                "function `{name}` ({file}:{line}) is {lines} lines (limit {MAX_FUNCTION_LINES})"
            ),
            Finding::LongFile { file, lines } => {
                format!("file {file} is {lines} lines outside tests (limit {MAX_FILE_LINES})")
            }
            Finding::Circle { krate, modules, .. } => {
                format!(
                    "modules of {krate} use each other in a circle: {}",
                    modules.join(", ")
                )
            }
            Finding::OutsideEmbed { file, line, path } => format!(
                "{file}:{line} embeds {path}, outside its crate's folder (a packaged crate has \
                 only its own files: move the file into the crate)"
            ),
        }
    }
}

/// What the check found in the crates under `workspace/crates`, and how much it read.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The findings, in crate and file order.
    pub findings: Vec<Finding>,
    /// Crate roots read.
    pub roots: usize,
    /// Files read (a file shared by two roots counted twice).
    pub files: usize,
    /// Every function measured: (lines, `file:line name`).
    pub functions: Vec<(usize, String)>,
    /// Declared modules whose file was not found (`file: mod name`).
    pub missing: Vec<String>,
    /// Each crate root's modules in dependency order: (crate, levels of module names).
    pub order: Vec<(String, Vec<Vec<String>>)>,
}

/// Reads every crate of the workspace at `workspace`.
pub fn check(workspace: &Path) -> std::io::Result<Outcome> {
    let mut dirs: Vec<_> = std::fs::read_dir(workspace.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    let mut out = Outcome::default();
    let mut seen_files = std::collections::BTreeSet::new();
    for dir in dirs {
        outside_embeds(workspace, &dir, &dir, &mut out.findings)?;
        for t in crate_trees(&dir)? {
            out.roots += 1;
            for m in &t.modules {
                out.files += 1;
                if seen_files.insert(m.file.clone()) {
                    lengths(workspace, m, &mut out);
                }
            }
            for (file, name) in &t.missing {
                out.missing
                    .push(format!("{}: mod {name}", relative(workspace, file)));
            }
            circle_findings(workspace, &t, &mut out.findings);
            let names = |level: Vec<usize>| level.into_iter().map(|m| t.module_name(m)).collect();
            let edges = uses(&t);
            let order = levels(t.modules.len(), &edges)
                .into_iter()
                .map(names)
                .collect();
            out.order.push((t.name.clone(), order));
        }
    }
    Ok(out)
}

/// The `include_str!` / `include_bytes!` of every `.rs` file under `dir` (build output and
/// hidden folders skipped) whose path leaves `krate`, the crate's folder.
fn outside_embeds(
    workspace: &Path,
    krate: &Path,
    dir: &Path,
    out: &mut Vec<Finding>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                outside_embeds(workspace, krate, &p, out)?;
            }
            continue;
        }
        if !name.ends_with(".rs") {
            continue;
        }
        let toks = lex(&std::fs::read_to_string(&p)?);
        for w in toks.windows(4) {
            let Kind::Str(path) = &w[3].kind else {
                continue;
            };
            let embed = matches!(w[0].ident(), Some("include_str" | "include_bytes"));
            if embed && w[1].is('!') && w[2].is('(') && !inside(krate, &p, path) {
                out.push(Finding::OutsideEmbed {
                    file: relative(workspace, &p),
                    line: w[0].line,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Whether `path`, written in `file` (relative to its folder), stays inside `krate`.
fn inside(krate: &Path, file: &Path, path: &str) -> bool {
    let mut at: Vec<std::path::Component> = file.parent().unwrap_or(krate).components().collect();
    for c in Path::new(path).components() {
        match c {
            std::path::Component::ParentDir => {
                at.pop();
            }
            std::path::Component::CurDir => {}
            std::path::Component::Normal(_) => at.push(c),
            // An absolute path is outside whatever it names.
            _ => return false,
        }
    }
    let at: std::path::PathBuf = at.iter().collect();
    at.starts_with(krate)
}

/// The long functions and the length of one module's file.
fn lengths(workspace: &Path, m: &crate::tree::Module, out: &mut Outcome) {
    let file = relative(workspace, &m.file);
    for f in &m.items.functions {
        out.functions
            .push((f.lines, format!("{file}:{} {}", f.line, f.name)));
        if f.lines > MAX_FUNCTION_LINES {
            out.findings.push(Finding::LongFunction {
                file: file.clone(),
                name: f.name.clone(),
                line: f.line,
                lines: f.lines,
            });
        }
    }
    let lines = m.items.lines - m.items.test_lines.min(m.items.lines);
    if lines > MAX_FILE_LINES {
        out.findings.push(Finding::LongFile { file, lines });
    }
}

/// The circles of one crate root, with the uses that close them.
fn circle_findings(workspace: &Path, t: &Tree, out: &mut Vec<Finding>) {
    let edges = uses(t);
    for c in circles(t.modules.len(), &edges) {
        let mut modules: Vec<String> = c.iter().map(|&m| t.module_name(m)).collect();
        modules.sort();
        let evidence = edges
            .iter()
            .filter(|e| c.contains(&e.from) && c.contains(&e.to))
            .map(|e| {
                format!(
                    "{} -> {}: {}:{} `{}`",
                    t.module_name(e.from),
                    t.module_name(e.to),
                    relative(workspace, &t.modules[e.from].file),
                    e.line,
                    e.path
                )
            })
            .collect();
        out.push(Finding::Circle {
            krate: t.name.clone(),
            modules,
            evidence,
        });
    }
}

/// `path` relative to the workspace, with `/` separators.
fn relative(workspace: &Path, path: &Path) -> String {
    let p = path.strip_prefix(workspace).unwrap_or(path);
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path under the workspace, text) into a fresh folder.
    fn workspace(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("structure-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        root
    }

    #[test]
    fn circles_through_uses_and_paths_but_not_through_re_exports() {
        let long_body = "    let x = 1;\n".repeat(MAX_FUNCTION_LINES);
        let a = format!(
            "use crate::b::B;\npub struct A;\npub fn long() {{\n{long_body}}}\n#[cfg(test)]\nmod tests {{\n    fn t() {{ crate::c::C; }}\n}}\n"
        );
        let root = workspace(
            "circle",
            &[
                ("crates/x/Cargo.toml", "[package]\n"),
                // lib only re-exports: not in a circle with the modules it re-exports.
                (
                    "crates/x/src/lib.rs",
                    "mod a;\nmod b;\nmod c;\npub use a::A;\npub use b::B;\n",
                ),
                ("crates/x/src/a.rs", &a),
                // b uses a through the crate root's re-export, c through a path in code.
                (
                    "crates/x/src/b.rs",
                    "use crate::A;\npub struct B;\nfn f() { super::c::g(); }\n",
                ),
                // c uses b: a, b, c form one circle; a's test code does not count.
                ("crates/x/src/c.rs", "pub fn g() { let _ = crate::b::B; }\n"),
                // Embeds: one inside the crate, one outside (in a test file too).
                (
                    "crates/x/tests/t.rs",
                    "const A: &str = include_str!(\"../data/a.txt\");\nconst B: &[u8] = include_bytes!(\"../../../b.bin\");\n",
                ),
            ],
        );
        let out = check(&root).unwrap();
        let _ = std::fs::remove_dir_all(&root);
        let keys: Vec<String> = out.findings.iter().map(Finding::key).collect();
        assert_eq!(
            keys,
            [
                "embed crates/x/tests/t.rs ../../../b.bin",
                "function crates/x/src/a.rs long",
                "circle x: a b c"
            ],
            "{:#?}",
            out.findings
        );
        assert_eq!(out.order[0].1, [vec!["a", "b", "c"], vec!["crate"]]);
    }
}
