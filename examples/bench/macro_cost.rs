//! 5. Macro cost: incremental debug build of the generated 1,000 / 2,000 / 4,000-operation crate
//!    (`tests/scale`), minus the same crate with no operations; the median of `REPS` rebuilds, with the CPU time
//!    rustc spent beside the wall time (the machine may be shared).

use std::time::Instant;

use crate::opts::Opts;
use crate::setup::{cpu_secs, AnyError};
use crate::table::{verdict, Row, Samples, Table, REPS};

/// One build of the generated crate: its wall time and CPU time in seconds.
fn cargo_build_scale(
    root: &std::path::Path,
    ops: usize,
    plain: bool,
) -> Result<(f64, Option<f64>), AnyError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cpu = cpu_secs(true);
    let started = Instant::now();
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", "sequencer-scale"])
        .env("SEQUENCER_SCALE_OPS", ops.to_string())
        .env("SEQUENCER_SCALE_PLAIN", if plain { "1" } else { "0" })
        .status()?;
    let wall = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("building tests/scale with {ops} operations failed").into());
    }
    let cpu = cpu
        .zip(cpu_secs(true))
        .map(|(before, after)| after - before);
    Ok((wall, cpu))
}

/// The incremental rebuilds of the generated crate after touching its source: wall and CPU seconds of each.
struct Rebuilds {
    wall: Samples,
    cpu: Option<Samples>,
}

impl Rebuilds {
    /// Each sample minus the median of `base`, per 1,000 operations of `ops`.
    fn added(&self, base: &Rebuilds, ops: usize) -> (Samples, Option<Samples>) {
        let per = |s: &Samples, b: &Samples| {
            let mut out = Samples::default();
            for v in s.values() {
                out.push((v - b.median()).max(0.0) / (ops as f64 / 1_000.0));
            }
            out
        };
        let cpu = self
            .cpu
            .as_ref()
            .zip(base.cpu.as_ref())
            .map(|(c, b)| per(c, b));
        (per(&self.wall, &base.wall), cpu)
    }
}

fn rebuild(
    root: &std::path::Path,
    ops: usize,
    plain: bool,
    reps: usize,
) -> Result<Rebuilds, AnyError> {
    cargo_build_scale(root, ops, plain)?;
    let lib = root.join("tests/scale/src/lib.rs");
    let (mut wall, mut cpu) = (Samples::default(), Some(Samples::default()));
    for _ in 0..reps {
        std::fs::File::options()
            .append(true)
            .open(&lib)?
            .set_modified(std::time::SystemTime::now())?;
        let (w, c) = cargo_build_scale(root, ops, plain)?;
        wall.push(w);
        match (c, cpu.as_mut()) {
            (Some(c), Some(samples)) => samples.push(c),
            _ => cpu = None,
        }
    }
    Ok(Rebuilds { wall, cpu })
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
    let reps = if opts.quick { 1 } else { REPS };
    let empty = rebuild(&root, 0, false, reps)?;
    let mut first = None;
    // `--quick`: the 500-operation crate only (each size is two builds of the generated crate, the first from
    // scratch); the full run checks the rate stays linear from 1,000 to 4,000.
    let sizes: &[usize] = if opts.quick {
        &[500]
    } else {
        &[1_000, 2_000, 4_000]
    };
    for &ops in sizes {
        let (ours, ours_cpu) = rebuild(&root, ops, false, reps)?.added(&empty, ops);
        // The same async fns in a hand-written table of (name, boxed handler), without the macros.
        let (plain, plain_cpu) = rebuild(&root, ops, true, reps)?.added(&empty, ops);
        let per_k = ours.median();
        let rate = per_k / *first.get_or_insert(per_k);
        let table_ratio = per_k / plain.median().max(1e-9);
        let cpu = |s: Option<Samples>| {
            s.map_or_else(String::new, |s| format!("; CPU {}", s.show(2, "s")))
        };
        table.push(Row {
            row: "5",
            figure: format!("macro cost, {ops} generated ops, incremental debug build"),
            ours: format!("{} per 1,000{}", ours.show(2, "s"), cpu(ours_cpu)),
            baseline: format!(
                "same async fns in a hand-written table: {} per 1,000{}; crate with no ops: {}",
                plain.show(2, "s"),
                cpu(plain_cpu),
                empty.wall.show(2, "s")
            ),
            ratio: format!("{table_ratio:.2} × the table; {rate:.2} × the 1,000-op rate"),
            goal: "≤ 0.50 s per 1,000, linear, ≤ 2.5 × the table".into(),
            met: verdict(per_k <= 0.5 && rate <= 1.25 && table_ratio <= 2.5),
        });
    }
    // Leave the crate as the test suite builds it (`--quick` leaves that build to the next test run).
    if !opts.quick {
        cargo_build_scale(&root, 2_000, false)?;
    }
    Ok(())
}
