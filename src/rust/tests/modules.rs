//! The core's modules depend on each other without cycles: each one can be
//! read, tested and changed knowing only those below it. A module's
//! dependencies are the `crate::<module>` paths its files name (unit tests
//! left out); the bindings' files count as modules of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the modules it names.
fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel: Vec<String> = path
                .strip_prefix(src)
                .unwrap()
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let name = match rel.as_slice() {
                [lib] if lib == "lib" => continue,
                [b, m] if b == "bindings" => format!("bindings::{m}"),
                [top, ..] => top.clone(),
                [] => continue,
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let set = deps.entry(name.clone()).or_default();
            for (prefix, bindings) in [("crate::", false), ("super::", true)] {
                for part in text.split(prefix).skip(1) {
                    let word: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    let rest = &part[word.len()..];
                    let dep = if word == "bindings" || (bindings && name.starts_with("bindings::")) {
                        // bindings::x, or super::x inside bindings
                        let sub = if word == "bindings" { rest.trim_start_matches("::") } else { part };
                        let m: String = sub.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        if sub[m.len()..].starts_with("::") { format!("bindings::{m}") } else { "bindings::mod".into() }
                    } else if bindings {
                        continue; // super:: outside bindings: a submodule's parent, the same module
                    } else {
                        word
                    };
                    if dep != name && !dep.is_empty() {
                        set.insert(dep);
                    }
                }
            }
        }
    }
    deps
}

/// A cycle through `start`, if there is one.
fn cycle(deps: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in deps.get(last).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if deps.contains_key(next) && seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let deps = dependencies(&src);
    assert!(deps.len() > 20, "{:?}", deps.keys());
    assert!(deps["worker"].contains("heartbeat") && deps["bindings::job"].contains("engine"));
    let cycles: Vec<Vec<String>> = deps.keys().filter_map(|m| cycle(&deps, m)).collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:?}");
    // the check finds what it looks for
    let mut with_cycle = deps.clone();
    with_cycle.get_mut("protocol").unwrap().insert("worker".into());
    assert!(cycle(&with_cycle, "protocol").is_some());
}
