//! A crate's module tree as its files spell it: from a root (`src/lib.rs`, `src/main.rs`,
//! `src/bin/*.rs`) through its `mod name;` declarations to `name.rs` or `name/mod.rs`.
//! Modules declared only for tests are not part of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::items::{FileItems, file_items};

/// One file module.
#[derive(Clone, Debug)]
pub struct Module {
    /// Its path in the crate (`[]` for the root, `["run", "ctx"]` for `run::ctx`).
    pub path: Vec<String>,
    /// Its file.
    pub file: PathBuf,
    /// What the file holds.
    pub items: FileItems,
    /// Its child modules by name (indices into [`Tree::modules`]).
    pub children: BTreeMap<String, usize>,
    /// Its parent (`None` for the root).
    pub parent: Option<usize>,
}

/// The modules of one crate root; the root first.
#[derive(Clone, Debug)]
pub struct Tree {
    /// `crate-name` or `crate-name (bin NAME)`.
    pub name: String,
    /// The modules, the root at index 0.
    pub modules: Vec<Module>,
    /// Declared modules whose file was not found: (declaring file, name).
    pub missing: Vec<(PathBuf, String)>,
}

impl Tree {
    /// The display name of module `m` (`crate` for the root).
    pub fn module_name(&self, m: usize) -> String {
        let p = &self.modules[m].path;
        if p.is_empty() {
            "crate".to_string()
        } else {
            p.join("::")
        }
    }
}

/// The module trees of the crate in `dir` (`crates/NAME`): its library and its binaries.
pub fn crate_trees(dir: &Path) -> std::io::Result<Vec<Tree>> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let src = dir.join("src");
    let mut roots: Vec<(String, PathBuf)> = Vec::new();
    if src.join("lib.rs").is_file() {
        roots.push((name.clone(), src.join("lib.rs")));
    }
    if src.join("main.rs").is_file() {
        roots.push((format!("{name} (main)"), src.join("main.rs")));
    }
    if let Ok(rd) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        bins.sort();
        for b in bins {
            let stem = b
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            roots.push((format!("{name} (bin {stem})"), b));
        }
    }
    roots.into_iter().map(|(n, root)| tree(n, &root)).collect()
}

/// The tree whose root file is `root`.
fn tree(name: String, root: &Path) -> std::io::Result<Tree> {
    let mut t = Tree {
        name,
        modules: Vec::new(),
        missing: Vec::new(),
    };
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    add(&mut t, root, Vec::new(), None, &dir)?;
    Ok(t)
}

/// Adds the module in `file` (children looked for in `dir`) and, recursively, its children.
fn add(
    t: &mut Tree,
    file: &Path,
    path: Vec<String>,
    parent: Option<usize>,
    dir: &Path,
) -> std::io::Result<usize> {
    let items = file_items(&std::fs::read_to_string(file)?);
    let children = items.modules.clone();
    let m = t.modules.len();
    t.modules.push(Module {
        path: path.clone(),
        file: file.to_path_buf(),
        items,
        children: BTreeMap::new(),
        parent,
    });
    for child in children {
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let (child_file, child_dir) = if flat.is_file() {
            (flat, dir.join(&child))
        } else if nested.is_file() {
            (nested, dir.join(&child))
        } else {
            t.missing.push((file.to_path_buf(), child));
            continue;
        };
        let mut child_path = path.clone();
        child_path.push(child.clone());
        let c = add(t, &child_file, child_path, Some(m), &child_dir)?;
        t.modules[m].children.insert(child, c);
    }
    Ok(m)
}
