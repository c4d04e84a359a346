//! 6. Peak memory (VmHWM) of a process holding a 100,000-operation registry, its plan, and `status`.

use std::collections::HashMap;

use crate::ops::{noop, random_dag, registry};
use crate::setup::{scratch_dir, sequencer, sqlite_url, AnyError};
use crate::table::{Row, Table};

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

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

pub(crate) fn row_memory(table: &mut Table) -> Result<(), AnyError> {
    let n = 100_000;
    let exe = std::env::current_exe()?;
    let mut peaks = HashMap::new();
    for stage in ["registry", "plan", "status"] {
        let out = std::process::Command::new(&exe)
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
        let (start, peak) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        peaks.insert(stage, (start, peak));
    }
    let mb = |k: u64| k as f64 / 1024.0;
    let (start, reg) = peaks["registry"];
    for stage in ["plan", "status"] {
        let (_, peak) = peaks[stage];
        table.push(Row {
            row: "6",
            figure: format!("peak memory, {n}-op registry + {stage}"),
            ours: format!(
                "{:.1} MiB peak (+{:.1} MiB over the registry)",
                mb(peak),
                mb(peak.saturating_sub(reg))
            ),
            baseline: format!(
                "process start {:.1} MiB; registry {:.1} MiB",
                mb(start),
                mb(reg)
            ),
            ratio: String::new(),
            goal: "report".into(),
            met: "",
        });
    }
    Ok(())
}
