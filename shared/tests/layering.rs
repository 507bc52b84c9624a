//! The crate's modules form a one-way stack (issue 14): no module reaches,
//! through `crate::` paths, one that reaches back. Read from the sources:
//! every `crate::<module>` in a module's files is an edge (a submodule's
//! files count as its parent's, `store/redis.rs` as `store`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut visit = |module: String, text: String| {
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    };
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "rs") {
                    visit(name.clone(), std::fs::read_to_string(file).unwrap());
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
    // The wire contract is a leaf a client crate could use: events and ids only.
    let protocol = &graph["protocol"];
    assert!(protocol.iter().all(|d| d == "event" || d == "ids"), "protocol depends on {protocol:?}");
    for plain in ["ids", "time", "ssrf"] {
        assert!(graph[plain].is_empty(), "{plain} depends on {:?}", graph[plain]);
    }
    println!("bottom up: {order:?}");
}
