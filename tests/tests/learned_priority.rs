//! The dependency-graph orchestrator's priority learns: with one slot, the ready operation with the longest
//! expected remaining work starts first, counting recorded durations (a second run) and `estimate = ".."` keys;
//! with neither it falls back to the longest chain of dependents.

mod common;

use common::{backends, prefix, rows, Backend};
use sequencer::{DependencyGraph, ProcessOptions, Registry, Sequencer};

#[sequencer::operations]
mod plain {
    use sequencer::prelude::*;
    use std::time::Duration;

    #[operation(timestamp = "2024_03_01_000001")]
    async fn long_alone(_ctx: &Ctx) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }

    #[operation(timestamp = "2024_03_01_000002")]
    async fn short_head(_ctx: &Ctx) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    }

    #[operation(timestamp = "2024_03_01_000003", depends_on = [short_head])]
    async fn short_tail(_ctx: &Ctx) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    }
}

#[sequencer::operations]
mod estimated {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_03_01_000001", estimate = "10m")]
    async fn long_alone(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_03_01_000002", estimate = "1s")]
    async fn short_head(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_03_01_000003", depends_on = [short_head])]
    async fn short_tail(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

/// One operation at a time, along the graph.
fn one_at_a_time(repeat: bool) -> ProcessOptions {
    ProcessOptions {
        concurrency: Some(1),
        repeat,
        ..ProcessOptions::default()
    }
}

/// The operations by start time (ledger rows, the latest run of each).
async fn start_order(seq: &Sequencer) -> Vec<String> {
    let mut started: Vec<(i64, String)> = rows(seq)
        .await
        .into_values()
        .map(|r| (r.started_at.unwrap_or(i64::MAX), r.name))
        .collect();
    started.sort();
    started
        .into_iter()
        .map(|(_, name)| name.split_at(18).1.to_owned())
        .collect()
}

async fn graph(b: &Backend, p: &str, registry: Registry) -> Sequencer {
    common::build(b, common::builder(b, p, registry))
        .await
        .using(DependencyGraph)
}

/// Runs the registry's operations once per entry of `runs` (`--repeat` after the first), one at a time along the
/// graph, and checks each run's start order, on every backend.
async fn runs_start_in_order(registry: fn() -> Registry, runs: &[[&str; 3]]) {
    for b in backends().await {
        let p = prefix();
        let seq = graph(&b, &p, registry()).await;
        for (i, expected) in runs.iter().enumerate() {
            let report = seq.process(&one_at_a_time(i > 0)).await.unwrap();
            assert!(report.succeeded(), "{} run {i}: {report:?}", b.name);
            assert_eq!(start_order(&seq).await, expected, "{} run {i}", b.name);
        }
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_starts_the_longest_recorded_work_first() {
    runs_start_in_order(
        plain::registry,
        &[
            // Nothing recorded yet: the longest chain of dependents goes first.
            ["short_head", "long_alone", "short_tail"],
            // Recorded: ~200 ms alone outweighs the ~10 ms chain.
            ["long_alone", "short_head", "short_tail"],
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_orders_the_first_run() {
    runs_start_in_order(
        estimated::registry,
        &[["long_alone", "short_head", "short_tail"]],
    )
    .await;
}
