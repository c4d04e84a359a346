//! 3. Scheduling overhead: fan-out and chain of no-op operations on a ledger in memory (SQLite on tmpfs),
//!    against a plain tokio ready-queue doing the same two writes per operation, and without any writes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequencer::sqlx;
use sequencer::{DependencyGraph, ProcessOptions};

use crate::ops::{noop, registry};
use crate::opts::Opts;
use crate::setup::{completed, memory_dir, sequencer, sqlite_url, AnyError};
use crate::table::{verdict, Row, Samples, Table, REPS_CHEAP};

/// A plain tokio ready-queue: spawn every operation whose in-degree reaches zero; `write` is what each does.
pub(crate) async fn ready_queue<F, Fut>(deps: &[Vec<usize>], write: F) -> Result<Duration, AnyError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), AnyError>> + Send + 'static,
{
    let n = deps.len();
    let mut children = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            children[j].push(i);
        }
    }
    struct Graph<F> {
        children: Vec<Vec<usize>>,
        indegree: Vec<AtomicUsize>,
        left: AtomicUsize,
        done: tokio::sync::Notify,
        write: F,
    }
    fn spawn<F, Fut>(g: Arc<Graph<F>>, i: usize)
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), AnyError>> + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(e) = (g.write)(i).await {
                eprintln!("baseline operation {i}: {e}");
            }
            for &c in &g.children[i] {
                if g.indegree[c].fetch_sub(1, Ordering::AcqRel) == 1 {
                    spawn(g.clone(), c);
                }
            }
            if g.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                g.done.notify_one();
            }
        });
    }
    let g = Arc::new(Graph {
        indegree: deps.iter().map(|d| AtomicUsize::new(d.len())).collect(),
        children,
        left: AtomicUsize::new(n),
        done: tokio::sync::Notify::new(),
        write,
    });
    let started = Instant::now();
    let done = g.done.notified();
    for (i, d) in deps.iter().enumerate() {
        if d.is_empty() {
            spawn(g.clone(), i);
        }
    }
    done.await;
    Ok(started.elapsed())
}

pub(crate) async fn row_scheduling(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    let n = if opts.quick { 2_000 } else { 10_000 };
    let dir = memory_dir();
    let shapes: [(&str, Vec<Vec<usize>>); 2] = [
        (
            "fan-out",
            (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![0] })
                .collect(),
        ),
        (
            "chain",
            (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect(),
        ),
    ];
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    for (shape, deps) in shapes {
        // Ours, the baseline and the floor take turns, so that a load that comes and goes weighs on all three.
        let (mut ours, mut base, mut bare) =
            (Samples::default(), Samples::default(), Samples::default());
        for rep in 0..REPS_CHEAP {
            let (o, b, f) = scheduling_once(&Case {
                dir: &dir,
                shape,
                deps: &deps,
                n,
                rep,
            })
            .await?;
            ours.push(per(o));
            base.push(per(b));
            bare.push(per(f));
        }
        let ratios = ours.paired_ratios(&base);
        let ratio = ratios.median();
        table.push(Row {
            row: "3",
            figure: format!("scheduling, {n} no-op ops, {shape}, SQLite in memory (tmpfs)"),
            ours: ours.show(1, "µs/op"),
            baseline: format!(
                "tokio ready-queue + same 2 writes: {}; no writes: {}",
                base.show(1, "µs/op"),
                bare.show(2, "µs/op")
            ),
            ratio: ratios.show_ratio(),
            goal: "≤ 1.50".into(),
            met: verdict(ratio <= 1.5),
        });
    }
    Ok(())
}

/// One repetition of one shape: where its databases go, the graph and its size.
#[derive(Clone, Copy)]
struct Case<'a> {
    dir: &'a std::path::Path,
    shape: &'a str,
    deps: &'a [Vec<usize>],
    n: usize,
    rep: usize,
}

/// One repetition of a shape: ours (the graph orchestrator), the tokio ready-queue with the same two writes per
/// operation, and with no writes. Ours and the baseline swap places on odd repetitions.
async fn scheduling_once(c: &Case<'_>) -> Result<(Duration, Duration, Duration), AnyError> {
    let (ours, base) = if c.rep.is_multiple_of(2) {
        let ours = orchestrated(c).await?;
        (ours, ready_queue_writes(c).await?)
    } else {
        let base = ready_queue_writes(c).await?;
        (orchestrated(c).await?, base)
    };
    // And with no writes at all: the scheduling floor.
    let bare = ready_queue(c.deps, |_| async { Ok(()) }).await?;
    Ok((ours, base, bare))
}

/// sequencer: the graph orchestrator, unbounded, on SQLite in memory (tmpfs).
async fn orchestrated(c: &Case<'_>) -> Result<Duration, AnyError> {
    let url = sqlite_url(c.dir, &format!("s{}{}", c.shape, c.rep));
    let seq = sequencer(&url, "", registry("s", c.deps, noop, false)?).await?;
    let started = Instant::now();
    let report = seq
        .using(DependencyGraph)
        .process(&ProcessOptions {
            concurrency: Some(c.n),
            ..Default::default()
        })
        .await?;
    let ours = started.elapsed();
    if completed(&report) != c.n {
        return Err(format!("{}: {} of {} completed", c.shape, completed(&report), c.n).into());
    }
    Ok(ours)
}

/// The baseline: a tokio ready-queue with the same two writes per operation, on a pool like the ledger's.
async fn ready_queue_writes(c: &Case<'_>) -> Result<Duration, AnyError> {
    let (dir, shape, deps, n, rep) = (c.dir, c.shape, c.deps, c.n, c.rep);
    let floor_url = sqlite_url(dir, &format!("b{shape}{rep}"));
    let ledger = sequencer::ledger::Ledger::connect(&floor_url, "").await?;
    let names: Vec<String> = (0..n).map(|i| format!("s_{i:06}")).collect();
    let pending: Vec<(&str, i64)> = names.iter().map(|s| (s.as_str(), 0)).collect();
    let setup = Instant::now();
    ledger.insert_pending(&pending).await?;
    let insert = setup.elapsed();
    let pool = ledger.pool().clone();
    let names = Arc::new(names);
    let base = ready_queue(deps, move |i| {
            let (pool, names) = (pool.clone(), names.clone());
            async move {
                let claim = "UPDATE operations SET status = 'running', batch = 1, attempts = 1, started_at = ?, lease_until = ?, host = 'bench', pid = 1 WHERE name = ? AND run = 0 AND status = 'pending'";
                let finish = "UPDATE operations SET status = 'completed', finished_at = ?, duration_ms = 0, lease_until = NULL WHERE name = ? AND run = 0 AND status = 'running' AND host = 'bench' AND pid = 1";
                sqlx::query(claim).bind(1_i64).bind(2_i64).bind(&names[i]).execute(&pool).await?;
                sqlx::query(finish).bind(3_i64).bind(&names[i]).execute(&pool).await?;
                Ok(())
            }
        })
        .await?
            + insert;
    Ok(base)
}
