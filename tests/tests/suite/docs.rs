//! What the documentation names exists: ARCHITECTURE.md walks the code
//! file by file, and a file moved without the walk leaves a newcomer at a
//! dead end (issue 30, point 5).

use std::path::Path;

/// Every `` `dir/…/file.ext` `` the text names, under the repository's top folders.
fn named_paths(text: &str) -> Vec<String> {
    const TOP: &[&str] = &["shared/", "local/", "functions/", "clients/", "infra/", "tests/", "bench/", "scripts/"];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| TOP.iter().any(|t| s.starts_with(t)))
        .filter(|s| s.rsplit('/').next().is_some_and(|f| f.contains('.')) && !s.contains(' ') && !s.contains('*'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let named = named_paths(&text);
    assert!(named.len() > 20, "the walks name files: {named:?}");
    let missing: Vec<&String> = named.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md names files that do not exist: {missing:?}");
    assert_eq!(named_paths("`shared/src/gone.rs` and `a b` and `local/src/x/`"), ["shared/src/gone.rs"]);
}
