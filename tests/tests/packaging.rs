//! What the published packages carry: each library crate holds the files it ships (the licence texts, and for the
//! facade its README and guides), as copies of the repository's own, kept identical here.
//!
//! Cargo packages only the files inside a crate's directory, and a symlink is not a file on every checkout, so
//! the copies are plain files. `SEQUENCER_BLESS=1 cargo test -p sequencer-tests --test packaging` rewrites
//! them from the repository's files.

use std::path::{Path, PathBuf};

/// The crates published to a registry (the others are `publish = false`).
const LIBRARIES: [&str; 4] = [
    "sequencer-core",
    "sequencer-macros",
    "sequencer-runtime",
    "sequencer",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The facade's README: the repository's, with its links made relative to `sequencer/`.
fn facade_readme(readme: &str) -> String {
    readme
        .replace("](sequencer/docs/", "](docs/")
        .replace("](examples/", "](../examples/")
}

/// Compares `copy` with `expected`, or writes it under `SEQUENCER_BLESS=1`; returns a problem, if any.
fn check_copy(copy: &Path, expected: &str) -> Option<String> {
    if std::env::var_os("SEQUENCER_BLESS").is_some() {
        std::fs::write(copy, expected).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        return None;
    }
    match std::fs::read_to_string(copy) {
        Ok(text) if text == expected => None,
        Ok(_) => Some(format!("{} differs from its original", copy.display())),
        Err(e) => Some(format!("{}: {e}", copy.display())),
    }
}

#[test]
fn every_library_crate_ships_both_licence_texts() {
    let mut problems = Vec::new();
    for name in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let original = read(&root().join(name));
        assert!(original.len() > 1000, "{name} is a licence text");
        for krate in LIBRARIES {
            problems.extend(check_copy(&root().join(krate).join(name), &original));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(SEQUENCER_BLESS=1 copies them again)",
        problems.join("\n")
    );
}

#[test]
fn the_facade_ships_the_readme_with_its_links_made_relative_to_it() {
    let readme = read(&root().join("README.md"));
    let copy = facade_readme(&readme);
    assert_ne!(copy, readme, "the README links to the guides");
    if let Some(problem) = check_copy(&root().join("sequencer/README.md"), &copy) {
        panic!("{problem}\n(SEQUENCER_BLESS=1 copies it again)");
    }
    // Every relative link of the copy resolves from `sequencer/`.
    let mut broken = Vec::new();
    for link in copy.split("](").skip(1) {
        let target = link.split([')', '#']).next().unwrap_or_default();
        if !target.is_empty()
            && !target.starts_with("http")
            && !root().join("sequencer").join(target).exists()
        {
            broken.push(target.to_string());
        }
    }
    assert!(
        broken.is_empty(),
        "broken links in sequencer/README.md: {broken:?}"
    );
}

#[test]
fn the_guides_live_in_the_facade_that_includes_them() {
    let lib = read(&root().join("sequencer/src/lib.rs"));
    let includes: Vec<&str> = lib
        .split("include_str!(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(includes.len() >= 10, "{includes:?}");
    for path in includes {
        assert!(
            !path.starts_with("../../"),
            "sequencer/src/lib.rs includes {path}, outside its package"
        );
        assert!(
            root().join("sequencer/src").join(path).is_file(),
            "{path} does not exist"
        );
    }
}

#[test]
fn every_manifest_states_licence_msrv_lints_and_docs_rs_and_no_address() {
    let workspace = read(&root().join("Cargo.toml"));
    assert!(
        workspace.contains("license = \"MIT OR Apache-2.0\""),
        "the workspace states the licence"
    );
    assert!(
        workspace.contains("[workspace.lints.clippy]\nincompatible_msrv = \"deny\""),
        "clippy rejects what the declared rust-version lacks"
    );
    let members = [
        "sequencer-core",
        "sequencer-macros",
        "sequencer-runtime",
        "sequencer",
        "tests",
        "tests/scale",
        "ui-tests",
        "examples",
    ];
    for member in members {
        let manifest = read(&root().join(member).join("Cargo.toml"));
        assert!(
            manifest.contains("license.workspace = true"),
            "{member}/Cargo.toml does not state the licence"
        );
        assert!(
            manifest.contains("rust-version.workspace = true")
                && manifest.contains("[lints]\nworkspace = true"),
            "{member}/Cargo.toml: clippy checks its code against the workspace's rust-version"
        );
        assert_eq!(
            manifest.contains("[package.metadata.docs.rs]\nall-features = true"),
            LIBRARIES.contains(&member),
            "{member}/Cargo.toml: docs.rs documents every feature of the library crates"
        );
        assert_eq!(
            manifest.contains("publish = false"),
            !LIBRARIES.contains(&member),
            "{member}/Cargo.toml: only the library crates are published"
        );
    }
    for manifest in std::iter::once(workspace).chain(
        members
            .iter()
            .map(|member| read(&root().join(member).join("Cargo.toml"))),
    ) {
        for key in ["repository", "homepage", "documentation"] {
            assert!(
                !manifest.lines().any(|l| l.trim_start().starts_with(key)),
                "a manifest names a {key}, and there is none yet"
            );
        }
    }
}

/// The drivers a build of the facade resolves with these features: the sqlx driver crates and SQLite's C library
/// in `cargo tree` (the features an application asks for, nothing from the rest of the workspace).
fn drivers_with(features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut args = vec!["tree", "--offline", "-p", "sequencer", "-e", "normal"];
    args.extend(["--prefix", "none", "--format", "{p}"]);
    let joined = features.join(",");
    if !features.is_empty() {
        args.extend(["--no-default-features", "--features", &joined]);
    }
    let out = std::process::Command::new(cargo)
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cargo tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut drivers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| {
            [
                "sqlx-sqlite",
                "sqlx-postgres",
                "sqlx-mysql",
                "libsqlite3-sys",
            ]
            .contains(p)
        })
        .map(str::to_owned)
        .collect();
    drivers.sort();
    drivers.dedup();
    drivers
}

#[test]
fn an_application_compiles_only_the_drivers_it_enables() {
    assert_eq!(
        drivers_with(&[]),
        ["libsqlite3-sys", "sqlx-sqlite"],
        "the default: SQLite"
    );
    assert_eq!(
        drivers_with(&["cli", "postgres"]),
        ["sqlx-postgres"],
        "PostgreSQL only"
    );
    assert_eq!(
        drivers_with(&["dashboard", "mysql"]),
        ["sqlx-mysql"],
        "MySQL / MariaDB only"
    );
    assert_eq!(
        drivers_with(&["cli", "sqlite", "postgres", "mysql"]),
        [
            "libsqlite3-sys",
            "sqlx-mysql",
            "sqlx-postgres",
            "sqlx-sqlite"
        ]
    );
}
