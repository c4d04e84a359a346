//! Generates `work_ops`: many `asynchronous` operations for the worker suites (half of them idempotent). Each
//! logs its name to `<SEQTEST_PREFIX>work_log`, then sleeps `SEQTEST_SLEEP_MS`.
//!
//! Also copies every ```rust block of the README and the guides (`sequencer/docs/`) to
//! `$OUT_DIR/guides/<file>_<n>.rs` (`n` counts from 1 in each file), so that `tests/guides.rs` runs the very code
//! a reader sees.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    guides();
    let n = 1000;
    let mut out =
        String::from("#[sequencer::operations]\npub mod ops {\n    use sequencer::prelude::*;\n");
    for i in 0..n {
        let idem = if i % 2 == 0 { ", idempotent" } else { "" };
        let (m, s) = (i / 60, i % 60);
        writeln!(
            out,
            "    #[operation(timestamp = \"2024_09_01_00{m:02}{s:02}\", asynchronous{idem})]"
        )
        .unwrap();
        writeln!(
            out,
            "    pub async fn w_{i}(ctx: &Ctx) -> Result<()> {{ super::work(ctx).await }}"
        )
        .unwrap();
    }
    out.push_str("}\n");
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("work_ops.rs");
    std::fs::write(path, out).unwrap();
}

/// Writes each ```rust block of `README.md` and `sequencer/docs/*.md` to `$OUT_DIR/guides/<file stem>_<n>.rs`.
fn guides() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("guides");
    std::fs::create_dir_all(&out).unwrap();
    let docs = root.join("sequencer").join("docs");
    println!("cargo:rerun-if-changed={}", docs.display());
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut block: Option<String> = None;
        let mut n = 0;
        for line in text.lines() {
            match &mut block {
                None if line.starts_with("```rust") => block = Some(String::new()),
                None => {}
                Some(_) if line.trim_end() == "```" => {
                    n += 1;
                    let code = block.take().unwrap();
                    std::fs::write(out.join(format!("{stem}_{n}.rs")), code).unwrap();
                }
                Some(code) => {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
}
