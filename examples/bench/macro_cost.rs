//! 5. Macro cost: incremental debug build of the generated 1,000 / 2,000 / 4,000-operation crate
//!    (`tests/scale`), minus the same crate with no operations.

use std::time::{Duration, Instant};

use crate::opts::Opts;
use crate::setup::AnyError;
use crate::table::{verdict, Row, Table};

fn cargo_build_scale(
    root: &std::path::Path,
    ops: usize,
    plain: bool,
) -> Result<Duration, AnyError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", "sequencer-scale"])
        .env("SEQUENCER_SCALE_OPS", ops.to_string())
        .env("SEQUENCER_SCALE_PLAIN", if plain { "1" } else { "0" })
        .status()?;
    if !status.success() {
        return Err(format!("building tests/scale with {ops} operations failed").into());
    }
    Ok(started.elapsed())
}

/// The incremental rebuild of the generated crate after touching its source: best of `reps`.
fn rebuild(
    root: &std::path::Path,
    ops: usize,
    plain: bool,
    reps: usize,
) -> Result<Duration, AnyError> {
    cargo_build_scale(root, ops, plain)?;
    let lib = root.join("tests/scale/src/lib.rs");
    let mut best = Duration::MAX;
    for _ in 0..reps {
        std::fs::File::options()
            .append(true)
            .open(&lib)?
            .set_modified(std::time::SystemTime::now())?;
        best = best.min(cargo_build_scale(root, ops, plain)?);
    }
    Ok(best)
}

pub(crate) fn row_macro(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?
        .to_path_buf();
    if !root.join("tests/scale/Cargo.toml").is_file() {
        table.skip("5", "macro cost", "not run from the workspace");
        return Ok(());
    }
    let reps = if opts.quick { 1 } else { 3 };
    let empty = rebuild(&root, 0, false, reps)?;
    let mut per = Vec::new();
    for ops in [1_000usize, 2_000, 4_000] {
        let t = rebuild(&root, ops, false, reps)?;
        let added = t.saturating_sub(empty).as_secs_f64();
        // The same async fns in a hand-written table of (name, boxed handler), without the macros.
        let plain = rebuild(&root, ops, true, reps)?;
        let plain_added = plain.saturating_sub(empty).as_secs_f64();
        let per_k = added / (ops as f64 / 1_000.0);
        per.push(per_k);
        table.push(Row {
            row: "5",
            figure: format!("macro cost, {ops} generated ops, incremental debug build"),
            ours: format!("+{added:.2} s = {per_k:.2} s per 1,000"),
            baseline: format!(
                "same async fns in a hand-written table: +{plain_added:.2} s ({:.2} × ours); crate with no ops: {:.2} s",
                plain_added / added.max(1e-9),
                empty.as_secs_f64()
            ),
            ratio: format!("{:.2} × the 1,000-op rate", per_k / per[0]),
            goal: "≤ 0.50 s per 1,000, linear".into(),
            met: verdict(per_k <= 0.5 && per_k / per[0] <= 1.25),
        });
    }
    // Leave the crate as the test suite builds it.
    cargo_build_scale(&root, 2_000, false)?;
    Ok(())
}
