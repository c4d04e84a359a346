//! Generates `work_ops`: many `asynchronous` operations for the worker suites (half of them idempotent). Each
//! logs its name to `<SEQTEST_PREFIX>work_log`, then sleeps `SEQTEST_SLEEP_MS`.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
