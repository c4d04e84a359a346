//! 4. Queue throughput and wake-up latency of `work` processes' loops on PostgreSQL.

use std::time::{Duration, Instant};

use sequencer::{ProcessOptions, WorkOptions};

use crate::ops::{noop, registry, stamp, STARTS};
use crate::opts::Opts;
use crate::setup::{drop_bench_tables, reachable, sequencer, AnyError};
use crate::table::{verdict, Row, Table};

pub(crate) async fn row_queue(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    if !reachable(&opts.postgres).await {
        table.skip("4", "queue throughput, PostgreSQL", "server unreachable");
        return Ok(());
    }
    let url = opts.postgres.clone();
    let jobs = if opts.quick { 2_000 } else { 10_000 };
    let probes = if opts.quick { 100 } else { 300 };
    for workers in [1usize, 4, 8] {
        drop_bench_tables(&url).await?;
        let deps = vec![Vec::new(); jobs];
        let reg = registry(&format!("q{workers}"), &deps, noop, true)?;
        let seq = sequencer(&url, "bench_q_", reg.clone()).await?;
        let queued = seq.process(&ProcessOptions::default()).await?.queued.len();
        if queued != jobs {
            return Err(format!("{queued} of {jobs} queued").into());
        }
        // Free the queueing pool's connections: eight workers of 12 fill PostgreSQL's default 100.
        seq.ledger().pool().close().await;
        let mut fleet = Vec::new();
        for _ in 0..workers {
            fleet.push(sequencer(&url, "bench_q_", reg.clone()).await?);
        }
        let work = WorkOptions {
            until_idle: true,
            ..Default::default()
        };
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in fleet {
            let work = work.clone();
            tasks.spawn(async move { w.work(&work, Default::default()).await });
        }
        let mut done = 0;
        while let Some(r) = tasks.join_next().await {
            done += r??.completed;
        }
        let secs = started.elapsed().as_secs_f64();
        if done != jobs {
            return Err(format!("{done} of {jobs} jobs completed").into());
        }
        // Wake-up: idle workers, one job at a time; enqueue → the operation's first line.
        let lat = wake_up(&url, workers, probes).await?;
        let pct = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        let rate = jobs as f64 / secs;
        table.push(Row {
            row: "4",
            figure: format!("queue, PostgreSQL, {workers} worker(s) × 8, {jobs} no-op jobs"),
            ours: format!(
                "{rate:.0} jobs/s; wake-up p50 {:.1} ms, p99 {:.1} ms",
                pct(0.5),
                pct(0.99)
            ),
            baseline: String::new(),
            ratio: String::new(),
            goal: if workers == 4 {
                "≥ 10,000 jobs/s; p50 ≤ 10 ms".into()
            } else {
                "p50 ≤ 10 ms".into()
            },
            met: verdict((workers != 4 || rate >= 10_000.0) && pct(0.5) <= 10.0),
        });
    }
    drop_bench_tables(&url).await?;
    Ok(())
}

/// Enqueues `probes` operations one at a time to `workers` idle workers; sorted enqueue-to-start latencies.
async fn wake_up(url: &str, workers: usize, probes: usize) -> Result<Vec<Duration>, AnyError> {
    let deps = vec![Vec::new(); probes];
    let reg = registry(&format!("w{workers}"), &deps, stamp, true)?;
    let seq = sequencer(url, "bench_w_", reg.clone()).await?;
    let stop = sequencer::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let w = sequencer(url, "bench_w_", reg.clone()).await?;
        let stop = stop.clone();
        tasks.spawn(async move { w.work(&WorkOptions::default(), stop).await });
    }
    // Let the workers reach their idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Vec::new();
    for def in reg.operations() {
        let name = def.meta.name;
        let t0 = Instant::now();
        seq.enqueue(name).await?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if let Some(t) = STARTS.lock().ok().and_then(|m| m.get(name).copied()) {
                lat.push(t.saturating_duration_since(t0));
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not start within 10 s").into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Idle again before the next probe.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    lat.sort();
    Ok(lat)
}
