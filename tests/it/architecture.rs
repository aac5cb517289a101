//! ARCHITECTURE.md stays true: its module table's "uses" column is what the code imports,
//! no module is in a dependency cycle (nor are the files of one module among themselves),
//! and no source file is long without saying why at its top.
//!
//! The imports are read from the source as text: every `crate::a::b` path (in `use` lines,
//! `use crate::{a, b}` groups and inline paths) and every `super::x` path, outside test code
//! (`#[cfg(test)] mod tests` and `tests.rs` files). `pub use` and `mod` lines are the shape
//! of a module, not a dependency, and do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file longer than this says why at its top (a line containing this marker).
const LONG_FILE: usize = 700;
const LONG_FILE_MARKER: &str = "Why this file is long";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/` with its module path (`["kpi", "compute"]`); `lib.rs` and
/// `main.rs` are the crate root (`[]`).
fn source_files() -> Vec<(Vec<String>, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).expect("under src");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let last = parts.pop().expect("a file name");
            let stem = last.trim_end_matches(".rs");
            if !matches!(stem, "mod" | "lib" | "main") {
                parts.push(stem.to_owned());
            }
            (parts, path)
        })
        .collect()
}

/// The file's text without its test code.
fn production_code(path: &Path, text: &str) -> Option<String> {
    if path.file_name().is_some_and(|n| n == "tests.rs") || path.iter().any(|p| p == "tests") {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines.get(i + 1).is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            end = i;
            break;
        }
    }
    let kept: Vec<&str> = lines[..end]
        .iter()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("//")
                || t.starts_with("pub use ")
                || t.starts_with("pub(crate) use ")
                || t.starts_with("mod ")
                || t.starts_with("pub mod "))
        })
        .copied()
        .collect();
    Some(kept.join("\n"))
}

/// The identifier path starting at `text[at..]` (`a::b::c`), or its `{a, b::c}` group's paths.
fn paths_at(text: &str, at: usize) -> Vec<Vec<String>> {
    let rest = &text[at..];
    if let Some(group) = rest.strip_prefix('{') {
        let close = group.find('}').unwrap_or(group.len());
        return group[..close]
            .split(',')
            .map(|p| p.trim().split("::").map(ident).filter(|s| !s.is_empty()).collect::<Vec<_>>())
            .filter(|p| !p.is_empty())
            .collect();
    }
    let mut path = Vec::new();
    let mut cursor = rest;
    loop {
        let id = ident(cursor);
        if id.is_empty() {
            break;
        }
        cursor = &cursor[id.len()..];
        path.push(id);
        match cursor.strip_prefix("::") {
            Some(next) => cursor = next,
            None => break,
        }
    }
    vec![path]
}

fn ident(s: &str) -> String {
    s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The modules (by path) the code of module `me` refers to, each as the longest known prefix.
fn references(me: &[String], code: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let resolve = |base: Vec<String>, tail: Vec<String>| {
        let mut full = base;
        full.extend(tail);
        (1..=full.len()).rev().map(|n| full[..n].to_vec()).find(|p| known.contains(p))
    };
    for (prefix, base) in [("crate::", Vec::new()), ("super::", me[..me.len().saturating_sub(1)].to_vec())] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(prefix) {
            let at = from + pos;
            from = at + prefix.len();
            // `crate::` inside a longer name (`salespulse::crate::`) does not occur; a
            // preceding identifier character would make it a different token.
            if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for tail in paths_at(code, from) {
                if let Some(target) = resolve(base.clone(), tail)
                    && target != me
                {
                    out.insert(target);
                }
            }
        }
    }
    out
}

struct Graph {
    /// Module path -> the modules it refers to.
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph() -> Graph {
    let files = source_files();
    let known: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).filter(|m| !m.is_empty()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, path) in &files {
        if module.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("a readable source file");
        let Some(code) = production_code(path, &text) else { continue };
        edges.entry(module.clone()).or_default().extend(references(module, &code, &known));
    }
    Graph { edges }
}

/// The strongly connected components with more than one member.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Reachability is enough at this size: a and b are in one cycle when each reaches the other.
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = edges.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (a, ra) in &reaches {
        let comp: Vec<String> = reaches
            .iter()
            .filter(|(b, rb)| ra.contains(**b) && rb.contains(*a) || *b == a && ra.contains(*a))
            .map(|(b, _)| (*b).clone())
            .collect();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

/// Top-level module -> top-level modules it uses.
fn top_level(graph: &Graph) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &graph.edges {
        let entry = out.entry(from[0].clone()).or_default();
        for to in tos {
            if to[0] != from[0] {
                entry.insert(to[0].clone());
            }
        }
    }
    out
}

#[test]
fn no_module_is_in_a_dependency_cycle() {
    let graph = graph();
    let top = top_level(&graph);
    assert_eq!(cycles(&top), Vec::<Vec<String>>::new(), "modules in a cycle (crate-level): {top:#?}");
    // Within one module, its files (siblings under one parent) form no cycle either.
    let mut parents: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, tos) in &graph.edges {
        let (parent, name) = from.split_at(from.len() - 1);
        let siblings = parents.entry(parent.to_vec()).or_default();
        let entry = siblings.entry(name[0].clone()).or_default();
        for to in tos {
            if to.len() > parent.len() && to[..parent.len()] == *parent && to[parent.len()] != name[0] {
                entry.insert(to[parent.len()].clone());
            }
        }
    }
    for (parent, siblings) in &parents {
        assert_eq!(
            cycles(siblings),
            Vec::<Vec<String>>::new(),
            "files of module {} in a cycle: {siblings:#?}",
            parent.join("::")
        );
    }
}

/// ARCHITECTURE.md's table: module -> its "uses" column as module names.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `module` | its job | uses |
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let module = cells[1].trim_matches('`').to_owned();
        // Remarks in parentheses (`schedule (the clock, in cached)`) are not module names.
        let mut uses_cell = String::new();
        let mut depth = 0;
        for c in cells[cells.len() - 2].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => uses_cell.push(c),
                _ => {}
            }
        }
        let uses_cell = uses_cell.trim();
        let mut uses = BTreeSet::new();
        if uses_cell != "nothing internal" {
            for item in uses_cell.split(',') {
                let name = ident(item);
                assert!(!name.is_empty(), "ARCHITECTURE.md: `{module}` uses {uses_cell:?}: name modules, one by one");
                uses.insert(name);
            }
        }
        out.insert(module, uses);
    }
    out
}

#[test]
fn architecture_md_names_what_each_module_imports() {
    let code = top_level(&graph());
    let docs = documented();
    let modules: BTreeSet<&String> = code.keys().collect();
    let rows: BTreeSet<&String> = docs.keys().collect();
    assert_eq!(rows, modules, "ARCHITECTURE.md has a row for each module of src/ and no other");
    let mut wrong = Vec::new();
    for (module, uses) in &code {
        let said = &docs[module];
        if said != uses {
            let missing: Vec<_> = uses.difference(said).collect();
            let extra: Vec<_> = said.difference(uses).collect();
            wrong.push(format!(
                "`{module}`: the code uses {missing:?} not in the table; the table names {extra:?} not used"
            ));
        }
    }
    assert!(wrong.is_empty(), "ARCHITECTURE.md's uses column is off:\n{}", wrong.join("\n"));
}

#[test]
fn long_source_files_say_why_at_their_top() {
    let mut long = Vec::new();
    for (_, path) in source_files() {
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        let lines = text.lines().count();
        let head: String = text.lines().take(30).collect::<Vec<_>>().join("\n");
        if lines > LONG_FILE && !head.contains(LONG_FILE_MARKER) {
            long.push(format!("{} ({lines} lines)", path.strip_prefix(root()).unwrap_or(&path).display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {LONG_FILE} lines without \"{LONG_FILE_MARKER}\" in their first 30 lines: {long:?}"
    );
}

#[test]
fn the_reader_finds_what_it_is_asked_for() {
    // The checker itself: a cycle is found, a group import is read, test code is skipped.
    let known: BTreeSet<Vec<String>> =
        [vec!["a".to_owned()], vec!["b".to_owned()], vec!["b".to_owned(), "c".to_owned()]].into();
    let code = production_code(
        Path::new("src/a.rs"),
        "use crate::{b::c::X, a::Y};\nfn f() { super::b::g(); }\n#[cfg(test)]\nmod tests {\n use crate::z::Q;\n}",
    )
    .expect("not a test file");
    let refs = references(&["a".to_owned()], &code, &known);
    assert_eq!(refs, [vec!["b".to_owned(), "c".to_owned()], vec!["b".to_owned()]].into());
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("a".into(), ["b".into()].into()), ("b".into(), ["a".into()].into()), ("c".into(), BTreeSet::new())].into();
    assert_eq!(cycles(&edges), vec![vec!["a".to_owned(), "b".to_owned()]]);
}
