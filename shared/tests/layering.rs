//! The crate's modules form a one-way stack (issue 14): no module reaches,
//! through `crate::` paths, one that reaches back. Read from the sources:
//! every `crate::<module>` in a module's files is an edge (a submodule's
//! files, however deep, count as its parent's: `store/redis/connections.rs`
//! as `store`), and so is every `crate::<Item>` that `lib.rs` re-exports
//! from a module (`crate::Context` is `context`'s). The layout `lib.rs`
//! describes lists the modules in an order the stack allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn lib_rs() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap()
}

/// `pub use module::Item;` in `lib.rs`: Item -> module.
fn re_exports() -> BTreeMap<String, String> {
    lib_rs()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub use ")?.strip_suffix(';'))
        .filter_map(|path| {
            let (module, item) = path.split_once("::")?;
            Some((item.rsplit("::").next()?.to_owned(), module.to_owned()))
        })
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let re_exported = re_exports();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut visit = |module: String, text: String| {
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // An item re-exported at the crate's root is its module's.
            let name = match name.chars().next() {
                Some(c) if c.is_ascii_uppercase() => match re_exported.get(&name) {
                    Some(module) => module.clone(),
                    None => panic!("crate::{name} in {module}: not a module, nor an item lib.rs re-exports"),
                },
                _ => name,
            };
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    };
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            // Every file below a module's folder, however deep
            // (`store/redis/connections.rs` is `store`'s).
            let mut dirs = vec![path];
            while let Some(dir) = dirs.pop() {
                for file in std::fs::read_dir(&dir).unwrap() {
                    let file = file.unwrap().path();
                    if file.is_dir() {
                        dirs.push(file);
                    } else if file.extension().is_some_and(|e| e == "rs") {
                        visit(name.clone(), std::fs::read_to_string(file).unwrap());
                    }
                }
            }
        } else if name != "lib" && path.extension().is_some_and(|e| e == "rs") {
            visit(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    graph
}

#[test]
fn modules_form_a_one_way_stack() {
    let graph = graph();
    // Kahn: repeatedly take the modules whose dependencies are all taken.
    let mut order: Vec<String> = Vec::new();
    let mut left: BTreeMap<String, BTreeSet<String>> = graph.clone();
    while !left.is_empty() {
        let ready: Vec<String> =
            left.iter().filter(|(_, deps)| deps.iter().all(|d| order.contains(d))).map(|(m, _)| m.clone()).collect();
        assert!(!ready.is_empty(), "a cycle among {:?} (placed so far, bottom up: {order:?})", left);
        for m in ready {
            left.remove(&m);
            order.push(m);
        }
    }
    // The wire contract is a leaf a client crate could use: events, ids and channel names only.
    let protocol = &graph["protocol"];
    assert!(
        protocol.iter().all(|d| matches!(d.as_str(), "event" | "ids" | "channel")),
        "protocol depends on {protocol:?}"
    );
    for plain in ["channel", "time", "ssrf"] {
        assert!(graph[plain].is_empty(), "{plain} depends on {:?}", graph[plain]);
    }
    // Ids name channels a token grants, and nothing else.
    assert!(graph["ids"].iter().all(|d| d == "channel"), "ids depends on {:?}", graph["ids"]);
    println!("bottom up: {order:?}");
}

/// The layout in `lib.rs`'s documentation names each module after those
/// it uses (its first mention counts), so it reads bottom up as the stack
/// does; every module is in it.
#[test]
fn the_layout_lib_rs_describes_is_in_the_stacks_order() {
    let graph = graph();
    let lib = lib_rs();
    let mut listed: Vec<String> = Vec::new();
    for line in lib.lines().filter(|l| l.starts_with("//!")) {
        for (i, _) in line.match_indices("[`") {
            let name: String = line[i + 2..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if graph.contains_key(&name) && !listed.contains(&name) {
                listed.push(name);
            }
        }
    }
    for module in graph.keys() {
        assert!(listed.contains(module), "lib.rs's layout does not name {module}");
    }
    for (at, module) in listed.iter().enumerate() {
        for dep in &graph[module] {
            let dep_at = listed.iter().position(|m| m == dep).unwrap_or(usize::MAX);
            assert!(dep_at < at, "lib.rs's layout names {module} before {dep}, which it uses");
        }
    }
}
