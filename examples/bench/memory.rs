//! 6. Peak memory (VmHWM) of a process holding a 100,000-operation registry, its plan, and `status`.

use std::collections::HashMap;

use crate::ops::{noop, random_dag, registry};
use crate::peak::peak_kib;
use crate::setup::{scratch_dir, sequencer, sqlite_url, AnyError};
use crate::table::{verdict, Row, Samples, Table, REPS};

/// In a child process (so that peaks are its own): `registry`, `plan` or `status` of `n` operations.
pub(crate) async fn child_memory(stage: &str, n: usize) -> Result<(), AnyError> {
    let before = peak_kib();
    let reg = registry("m", &random_dag(n, 7), noop, false)?;
    match stage {
        "registry" => {}
        "plan" => {
            let plan = reg.plan()?;
            assert_eq!(plan.order.len(), n);
        }
        _ => {
            let url = sqlite_url(&scratch_dir(), "memory");
            let seq = sequencer(&url, "", reg.clone()).await?;
            let rows: Vec<(&str, i64)> =
                reg.operations().iter().map(|d| (d.meta.name, 0)).collect();
            seq.ledger().insert_pending(&rows).await?;
            let status = seq.status().await?;
            assert_eq!(status.len(), n);
        }
    }
    println!("{} {}", before, peak_kib());
    Ok(())
}

/// The peak (VmHWM) and the start of a child process running `stage` on `n` operations, KiB.
fn child_peak(exe: &std::path::Path, stage: &str, n: usize) -> Result<(u64, u64), AnyError> {
    let out = std::process::Command::new(exe)
        .args(["--child-memory", stage, &n.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "memory child `{stage}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<u64>().ok());
    Ok((it.next().unwrap_or(0), it.next().unwrap_or(0)))
}

/// The goal: `status` over 100,000 ledger rows, registry included, peaks at 150 MiB at the most.
const STATUS_GOAL_MIB: f64 = 150.0;

pub(crate) fn row_memory(table: &mut Table) -> Result<(), AnyError> {
    let n = 100_000;
    let exe = std::env::current_exe()?;
    let stages = ["registry", "plan", "status"];
    let mib = |k: u64| k as f64 / 1024.0;
    // Each stage REPS times, taking turns: MiB at the peak, and at the start.
    let mut peaks: HashMap<&str, Samples> = HashMap::new();
    let mut starts = Samples::default();
    for _ in 0..REPS {
        for stage in stages {
            let (start, peak) = child_peak(&exe, stage, n)?;
            peaks.entry(stage).or_default().push(mib(peak));
            starts.push(mib(start));
        }
    }
    let reg = peaks["registry"].median();
    for stage in ["plan", "status"] {
        let peak = &peaks[stage];
        let goal = (stage == "status").then_some(STATUS_GOAL_MIB);
        table.push(Row {
            row: "6",
            figure: format!("peak memory, {n}-op registry + {stage}"),
            ours: format!(
                "{} peak (+{:.1} MiB over the registry)",
                peak.show(1, "MiB"),
                (peak.median() - reg).max(0.0)
            ),
            baseline: format!(
                "process start {:.1} MiB; registry {}",
                starts.median(),
                peaks["registry"].show(1, "MiB")
            ),
            ratio: String::new(),
            goal: goal.map_or("report".into(), |g| format!("≤ {g:.0} MiB")),
            met: goal.map_or("", |g| verdict(peak.median() <= g)),
        });
    }
    Ok(())
}
