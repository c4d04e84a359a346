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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_starts_the_longest_recorded_work_first() {
    for b in backends().await {
        let p = prefix();
        let seq = graph(&b, &p, plain::registry()).await;
        let first = seq.process(&one_at_a_time(false)).await.unwrap();
        assert!(first.succeeded(), "{}: {first:?}", b.name);
        // Nothing recorded yet: the longest chain of dependents goes first.
        assert_eq!(
            start_order(&seq).await,
            ["short_head", "long_alone", "short_tail"],
            "{}",
            b.name
        );
        let second = seq.process(&one_at_a_time(true)).await.unwrap();
        assert!(second.succeeded(), "{}: {second:?}", b.name);
        // Recorded: ~200 ms alone outweighs the ~10 ms chain.
        assert_eq!(
            start_order(&seq).await,
            ["long_alone", "short_head", "short_tail"],
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_orders_the_first_run() {
    for b in backends().await {
        let p = prefix();
        let seq = graph(&b, &p, estimated::registry()).await;
        let report = seq.process(&one_at_a_time(false)).await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            start_order(&seq).await,
            ["long_alone", "short_head", "short_tail"],
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}
