//! Which module of a crate uses which, and the circles among them. A module uses another
//! when one of its `use` declarations or paths (`crate::`, `super::`, `self::`, a child's
//! name) leads to an item defined there; re-exports are followed to the module that defines
//! the item, so a parent that only re-exports does not stand between its children.

use std::collections::BTreeMap;

use crate::tree::Tree;

/// An edge's evidence: the line and the path that make `from` use `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    /// The using module.
    pub from: usize,
    /// The used module.
    pub to: usize,
    /// Line in `from`'s file.
    pub line: usize,
    /// The path as written.
    pub path: String,
}

/// Re-exports followed at most this deep (a guard against `use` loops).
const MAX_DEPTH: usize = 8;

/// Every module-to-module use of the tree, the first evidence of each edge.
pub fn uses(t: &Tree) -> Vec<Use> {
    let mut first: BTreeMap<(usize, usize), Use> = BTreeMap::new();
    for (m, module) in t.modules.iter().enumerate() {
        let items = &module.items;
        let refs = items
            .uses
            .iter()
            .map(|u| (&u.segments, u.line))
            .chain(items.paths.iter().map(|p| (&p.segments, p.line)));
        for (segments, line) in refs {
            let Some(to) = resolve(t, m, segments, 0) else {
                continue;
            };
            if to != m {
                first.entry((m, to)).or_insert_with(|| Use {
                    from: m,
                    to,
                    line,
                    path: segments.join("::"),
                });
            }
        }
    }
    first.into_values().collect()
}

/// The module that defines what `segments` (written in module `from`) names, if it is in
/// this crate.
pub fn resolve(t: &Tree, from: usize, segments: &[String], depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH || segments.is_empty() {
        return None;
    }
    let (mut cur, rest) = match segments[0].as_str() {
        "crate" => (0, &segments[1..]),
        "self" => (from, &segments[1..]),
        "super" => {
            let mut cur = from;
            let mut k = 0;
            while segments.get(k).is_some_and(|s| s == "super") {
                cur = t.modules[cur].parent?;
                k += 1;
            }
            (cur, &segments[k..])
        }
        s if t.modules[from].children.contains_key(s) => (from, segments),
        _ => return None,
    };
    for seg in rest {
        if let Some(&c) = t.modules[cur].children.get(seg) {
            cur = c;
            continue;
        }
        return home(t, cur, seg, depth);
    }
    Some(cur)
}

/// The module that defines item `name` as seen from module `m`: `m` itself, or where a
/// `use` of `m` leads (`None`: another crate).
fn home(t: &Tree, m: usize, name: &str, depth: usize) -> Option<usize> {
    let items = &t.modules[m].items;
    if items.defined.contains(name) {
        return Some(m);
    }
    if let Some(u) = items.uses.iter().find(|u| u.name.as_deref() == Some(name)) {
        return resolve(t, m, &u.segments, depth + 1);
    }
    for glob in items.uses.iter().filter(|u| u.name.is_none()) {
        let Some(g) = resolve(t, m, &glob.segments, depth + 1) else {
            continue;
        };
        let gi = &t.modules[g].items;
        if gi.defined.contains(name) || gi.uses.iter().any(|u| u.name.as_deref() == Some(name)) {
            return home(t, g, name, depth + 1);
        }
    }
    Some(m)
}

/// The circles: groups of two or more modules each reachable from every other (strongly
/// connected components), each sorted, in order of their first module.
pub fn circles(n: usize, edges: &[Use]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for e in edges {
        adj[e.from].push(e.to);
    }
    let mut st = Tarjan {
        adj: &adj,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if st.index[v].is_none() {
            st.visit(v);
        }
    }
    let mut out: Vec<Vec<usize>> = st.out.into_iter().filter(|c| c.len() > 1).collect();
    for c in &mut out {
        c.sort_unstable();
    }
    out.sort();
    out
}

/// The modules in dependency order, by level: level 0 uses no other module, level `k` only
/// modules of lower levels (a circle's modules share a level). Each level sorted.
pub fn levels(n: usize, edges: &[Use]) -> Vec<Vec<usize>> {
    // A circle counts as one node: every module of it gets the circle's level.
    let mut group: Vec<usize> = (0..n).collect();
    for c in circles(n, edges) {
        for &m in &c {
            group[m] = c[0];
        }
    }
    let mut level = vec![0usize; n];
    // Longest path from the leaves; n rounds suffice on the condensed graph.
    for _ in 0..n {
        let mut changed = false;
        for e in edges {
            let (a, b) = (group[e.from], group[e.to]);
            if a != b && level[a] < level[b] + 1 {
                level[a] = level[b] + 1;
                changed = true;
            }
        }
        for m in 0..n {
            let l = level[group[m]];
            if level[m] != l {
                level[m] = l;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = level.iter().copied().max().map_or(0, |d| d + 1);
    let mut out = vec![Vec::new(); depth];
    for (m, &l) in level.iter().enumerate() {
        out[l].push(m);
    }
    out
}

struct Tarjan<'a> {
    adj: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    out: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.adj[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            self.out.push(comp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: usize, to: usize) -> Use {
        Use {
            from,
            to,
            line: 1,
            path: String::new(),
        }
    }

    #[test]
    fn circles_are_the_strongly_connected_groups() {
        // 0 -> 1 -> 2 -> 0 is a circle; 3 -> 4 -> 3 another; 5 only uses 0.
        let e = [
            edge(0, 1),
            edge(1, 2),
            edge(2, 0),
            edge(3, 4),
            edge(4, 3),
            edge(5, 0),
        ];
        assert_eq!(circles(6, &e), [vec![0, 1, 2], vec![3, 4]]);
        assert!(circles(3, &[edge(0, 1), edge(1, 2)]).is_empty());
    }

    #[test]
    fn levels_put_each_module_above_what_it_uses() {
        // 0 uses 1 and 2, 1 uses 2; 3 and 4 use each other and 0.
        let e = [
            edge(0, 1),
            edge(0, 2),
            edge(1, 2),
            edge(3, 4),
            edge(4, 3),
            edge(4, 0),
        ];
        assert_eq!(levels(5, &e), [vec![2], vec![1], vec![0], vec![3, 4]]);
    }
}
