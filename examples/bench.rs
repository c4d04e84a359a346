//! The performance table: every figure beside a baseline measured in the same run, on the same machine.
//!
//! ```sh
//! cargo run --release --example bench -- --quick     # under two minutes: smaller sizes, one repetition
//! cargo run --release --example bench                 # the full run, the table in the README
//! cargo run --release --example bench -- --only 1,3   # some rows only (1 ledger … 6 memory)
//! ```
//!
//! 1. Ledger throughput: no-op operations run one at a time, against a raw sqlx floor doing the same two writes
//!    per operation (claim the row, mark it completed) on the same kind of database.
//! 2. DAG makespan: seeded random DAGs run by the `graph` orchestrator, against the critical path, against
//!    `max(CP, W/p)` when bounded, and against level-by-level "waves" (an [`Orchestrator`] written here).
//! 3. Scheduling overhead: fan-out and chain of no-op operations on a ledger in memory (SQLite on tmpfs),
//!    against a plain tokio ready-queue doing the same two writes per operation, and without any writes.
//! 4. Queue throughput and wake-up latency of `work` processes' loops on PostgreSQL.
//! 5. Macro cost: incremental debug build of the generated 1,000 / 2,000 / 4,000-operation crate
//!    (`tests/scale`), minus the same crate with no operations.
//! 6. Peak memory (VmHWM) of a process holding a 100,000-operation registry, its plan, and `status`.
//!
//! PostgreSQL rows use `SEQUENCER_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! are skipped, saying so, when it is unreachable. Tables are prefixed `bench_` and dropped afterwards.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use sequencer::orchestrator::{Due, Run};
use sequencer::sqlx::{self, Connection, Executor};
use sequencer::{
    BoxFuture, Ctx, Dependency, DependencyGraph, OperationDef, OperationMeta, Orchestrator,
    OutcomeKind, ProcessOptions, Registry, RunReport, Sequencer, SequencerError, Sequential,
    Timestamp, WorkOptions,
};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------------------
// Operations built at run time.

/// How long each operation of the DAG runs sleep, by ledger name.
static DURATIONS: LazyLock<RwLock<HashMap<&'static str, Duration>>> =
    LazyLock::new(Default::default);
/// When each queued operation started, by ledger name (wake-up latency).
static STARTS: LazyLock<Mutex<HashMap<&'static str, Instant>>> = LazyLock::new(Default::default);

fn noop(_ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async { Ok(()) })
}

fn sleeper(ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    let d = DURATIONS
        .read()
        .ok()
        .and_then(|m| m.get(ctx.operation().name).copied())
        .unwrap_or_default();
    Box::pin(async move {
        tokio::time::sleep(d).await;
        Ok(())
    })
}

fn stamp(ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    if let Ok(mut m) = STARTS.lock() {
        m.insert(ctx.operation().name, Instant::now());
    }
    Box::pin(async { Ok(()) })
}

/// A registry of `deps.len()` operations; operation `i` depends on the operations `deps[i]`.
fn registry(
    tag: &str,
    deps: &[Vec<usize>],
    handler: sequencer::Handler,
    asynchronous: bool,
) -> Result<Registry, AnyError> {
    let names: Vec<&'static str> = (0..deps.len())
        .map(|i| &*Box::leak(format!("{tag}_{i:06}").into_boxed_str()))
        .collect();
    let mut builder = Registry::builder();
    for (i, d) in deps.iter().enumerate() {
        let depends_on: Vec<Dependency> =
            d.iter().map(|&j| Dependency::Operation(names[j])).collect();
        let timestamp = Timestamp::from_unix_seconds(1_704_067_200 + i as i64)
            .ok_or("timestamp out of range")?;
        let def = OperationDef {
            meta: OperationMeta {
                depends_on: Box::leak(depends_on.into_boxed_slice()),
                asynchronous,
                ..OperationMeta::new(names[i], timestamp)
            },
            handler,
            rollback: None,
            before: None,
            after: None,
            failed: None,
            should_run: None,
            execute_at: None,
        };
        builder = builder.operation(Box::leak(Box::new(def)));
    }
    Ok(builder.build()?)
}

/// A seeded random DAG: each operation depends on 0–4 earlier ones (2 on average).
fn random_dag(n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let mut d: Vec<usize> = if i == 0 {
                Vec::new()
            } else {
                (0..rng.usize(0..=4)).map(|_| rng.usize(0..i)).collect()
            };
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// The table.

struct Row {
    row: &'static str,
    figure: String,
    ours: String,
    baseline: String,
    ratio: String,
    goal: String,
    met: &'static str,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

struct Table(Vec<Row>);

impl Table {
    fn push(&mut self, row: Row) {
        eprintln!(
            "  {} | {} | {} | {} | {} | {}",
            row.figure, row.ours, row.baseline, row.ratio, row.goal, row.met
        );
        self.0.push(row);
    }

    fn skip(&mut self, row: &'static str, figure: &str, why: &str) {
        self.push(Row {
            row,
            figure: figure.to_owned(),
            ours: format!("skipped: {why}"),
            baseline: String::new(),
            ratio: String::new(),
            goal: String::new(),
            met: "",
        });
    }

    fn print(&self) {
        println!("| # | figure | sequencer | baseline (same run) | ratio | goal | |");
        println!("|---|---|---|---|---|---|---|");
        for r in &self.0 {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.row, r.figure, r.ours, r.baseline, r.ratio, r.goal, r.met
            );
        }
    }
}

struct Opts {
    quick: bool,
    only: Vec<u32>,
    postgres: String,
}

impl Opts {
    fn wants(&self, row: u32) -> bool {
        self.only.is_empty() || self.only.contains(&row)
    }
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sequencer-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A SQLite file on tmpfs when the machine has one (the "in-memory" ledger), else in the temp dir.
fn memory_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = shm.join(format!("sequencer-bench-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            return dir;
        }
    }
    scratch_dir()
}

fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    let file = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    format!("sqlite://{}", file.display())
}

async fn reachable(url: &str) -> bool {
    sqlx::any::install_default_drivers();
    matches!(
        tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

/// Drops the `bench_` tables of a server database.
async fn drop_bench_tables(url: &str) -> Result<(), AnyError> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    for t in sequencer::ledger::TABLES {
        for p in ["bench_", "bench_floor_", "bench_q_", "bench_w_"] {
            conn.execute(format!("DROP TABLE IF EXISTS {p}{t}").as_str())
                .await?;
        }
    }
    Ok(())
}

async fn sequencer(url: &str, prefix: &str, registry: Registry) -> Result<Sequencer, AnyError> {
    Ok(Sequencer::builder()
        .registry(registry)
        .database(url)
        .table_prefix(prefix)
        // Nine sequencers at once in the queue rows: stay under PostgreSQL's default 100 connections.
        .max_connections(10)
        .build()
        .await?)
}

fn completed(report: &RunReport) -> usize {
    report.count(|o| matches!(o, OutcomeKind::Completed { .. }))
}

// ---------------------------------------------------------------------------------------------------------
// 1. Ledger throughput.

/// Runs `n` no-op operations one at a time; operations per second.
async fn ledger_run(url: &str, prefix: &str, n: usize) -> Result<f64, AnyError> {
    let deps = vec![Vec::new(); n];
    let seq = sequencer(url, prefix, registry("l", &deps, noop, false)?).await?;
    let started = Instant::now();
    let report = seq
        .using(Sequential)
        .process(&ProcessOptions::default())
        .await?;
    let secs = started.elapsed().as_secs_f64();
    if completed(&report) != n {
        return Err(format!("{} of {n} operations completed", completed(&report)).into());
    }
    Ok(n as f64 / secs)
}

/// The floor: the same rows, claimed and completed by two plain sqlx statements per operation on a pool of
/// one connection (no Any driver, no scheduler, no events, no heartbeat task).
async fn ledger_floor(url: &str, prefix: &str, n: usize) -> Result<f64, AnyError> {
    // The ledger creates the table and the pending rows, as `process` would.
    let names: Vec<String> = (0..n).map(|i| format!("l_{i:06}")).collect();
    let ledger = sequencer::ledger::Ledger::connect(url, prefix).await?;
    let pending: Vec<(&str, i64)> = names
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as i64))
        .collect();
    ledger.insert_pending(&pending).await?;
    ledger.pool().close().await;
    let table = format!("{prefix}operations");
    let pid = i64::from(std::process::id());
    // The same two statements on either backend; only the placeholders differ.
    let claim = format!("UPDATE {table} SET status = 'running', batch = 1, attempts = 1, started_at = ?, lease_until = ?, host = 'bench', pid = ? WHERE name = ? AND run = 0 AND status = 'pending'");
    let finish = format!("UPDATE {table} SET status = 'completed', finished_at = ?, duration_ms = 0, lease_until = NULL WHERE name = ? AND run = 0 AND status = 'running' AND host = 'bench' AND pid = ?");
    let elapsed = if url.starts_with("sqlite:") {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        use std::str::FromStr;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::from_str(url)?
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal),
            )
            .await?;
        two_writes_per_op(&pool, &claim, &finish, &names, pid, |r| r.rows_affected()).await?
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let (claim, finish) = (
            sequencer::ledger::number_placeholders(&claim),
            sequencer::ledger::number_placeholders(&finish),
        );
        two_writes_per_op(&pool, &claim, &finish, &names, pid, |r| r.rows_affected()).await?
    };
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Claims and completes each operation with one statement each, one operation after the other; the time taken.
async fn two_writes_per_op<DB>(
    pool: &sqlx::Pool<DB>,
    claim: &str,
    finish: &str,
    names: &[String],
    pid: i64,
    rows_affected: fn(&DB::QueryResult) -> u64,
) -> Result<Duration, AnyError>
where
    DB: sqlx::Database,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let started = Instant::now();
    for name in names {
        let t = now();
        let c = sqlx::query(claim)
            .bind(t)
            .bind(t + 30_000)
            .bind(pid)
            .bind(name.as_str())
            .execute(pool)
            .await?;
        assert_eq!(rows_affected(&c), 1, "floor claim");
        sqlx::query(finish)
            .bind(now())
            .bind(name.as_str())
            .bind(pid)
            .execute(pool)
            .await?;
    }
    Ok(started.elapsed())
}

async fn row_ledger(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    let n = if opts.quick { 2_000 } else { 10_000 };
    let dir = scratch_dir();
    let mut targets = vec![("SQLite file (WAL)", sqlite_url(&dir, "ledger"))];
    if reachable(&opts.postgres).await {
        targets.push(("PostgreSQL", opts.postgres.clone()));
    } else {
        table.skip("1", "ledger throughput, PostgreSQL", "server unreachable");
    }
    for (what, url) in targets {
        if !url.starts_with("sqlite:") {
            drop_bench_tables(&url).await?;
        }
        let ours = ledger_run(&url, "bench_", n).await?;
        let floor_url = if url.starts_with("sqlite:") {
            sqlite_url(&dir, "floor")
        } else {
            url.clone()
        };
        let floor = ledger_floor(&floor_url, "bench_floor_", n).await?;
        if !url.starts_with("sqlite:") {
            drop_bench_tables(&url).await?;
        }
        let ratio = ours / floor;
        table.push(Row {
            row: "1",
            figure: format!("ledger throughput, {n} no-op ops, sequential, {what}"),
            ours: format!("{ours:.0} ops/s"),
            baseline: format!("{floor:.0} ops/s raw sqlx, 2 writes/op"),
            ratio: format!("{ratio:.2}"),
            goal: "≥ 0.70".into(),
            met: verdict(ratio >= 0.7),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// 2. DAG makespan.

/// Level-by-level scheduling, as a reference: every operation of a level must end before the next level
/// starts; at most `concurrency` at once within a level.
struct Waves;

impl Orchestrator for Waves {
    fn name(&self) -> &'static str {
        "waves"
    }

    fn orchestrate<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<RunReport, SequencerError>> {
        Box::pin(async move {
            let due = run.due();
            let index: HashMap<&str, usize> = due
                .iter()
                .enumerate()
                .map(|(i, d)| (d.def().meta.name, i))
                .collect();
            // Plan order puts every dependency first, so one pass computes the levels.
            let mut level = vec![0usize; due.len()];
            for (i, d) in due.iter().enumerate() {
                for dep in d.def().meta.depends_on {
                    if let Dependency::Operation(name) = dep {
                        if let Some(&j) = index.get(name) {
                            level[i] = level[i].max(level[j] + 1);
                        }
                    }
                }
            }
            let levels = level.iter().max().map_or(0, |m| m + 1);
            let mut report = RunReport::default();
            for l in 0..levels {
                let wave: Vec<Due> = due
                    .iter()
                    .zip(&level)
                    .filter(|(_, &x)| x == l)
                    .map(|(d, _)| *d)
                    .collect();
                let gate = Arc::new(tokio::sync::Semaphore::new(run.concurrency()));
                let mut tasks = tokio::task::JoinSet::new();
                for d in wave {
                    let (run, gate) = (run.clone(), gate.clone());
                    tasks.spawn(async move {
                        let _permit = gate.acquire_owned().await;
                        (d.def().meta.name, run.execute(&d).await)
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    let (name, outcome) =
                        joined.map_err(|e| SequencerError::Usage(e.to_string()))?;
                    let kind = match outcome? {
                        sequencer::Outcome::Completed { duration } => OutcomeKind::Completed {
                            duration_ms: duration.as_millis() as u64,
                        },
                        other => OutcomeKind::Failed {
                            error: format!("{other:?}"),
                            allowed_to_fail: false,
                        },
                    };
                    report.results.push((name.to_owned(), kind));
                }
            }
            Ok(report)
        })
    }
}

struct Dag {
    deps: Vec<Vec<usize>>,
    ms: Vec<u64>,
}

impl Dag {
    fn new(n: usize, seed: u64, heavy: bool) -> Dag {
        let deps = random_dag(n, seed);
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let ms = (0..n)
            .map(|_| {
                if heavy {
                    // Pareto (α = 1.2) from 10 ms, capped at 2 s: most short, a few very long.
                    let u = rng.f64().max(1e-9);
                    (10.0 / u.powf(1.0 / 1.2)).min(2_000.0) as u64
                } else {
                    rng.u64(10..=100)
                }
            })
            .collect();
        Dag { deps, ms }
    }

    fn critical_path(&self) -> u64 {
        let mut finish = vec![0u64; self.ms.len()];
        for i in 0..self.ms.len() {
            let start = self.deps[i].iter().map(|&j| finish[j]).max().unwrap_or(0);
            finish[i] = start + self.ms[i];
        }
        finish.into_iter().max().unwrap_or(0)
    }

    fn work(&self) -> u64 {
        self.ms.iter().sum()
    }
}

/// Runs the DAG on a fresh SQLite ledger with the orchestrator; the makespan in milliseconds.
async fn makespan(
    dag: &Dag,
    tag: &str,
    orchestrator: Arc<dyn Orchestrator>,
    concurrency: usize,
) -> Result<f64, AnyError> {
    let reg = registry(tag, &dag.deps, sleeper, false)?;
    if let Ok(mut m) = DURATIONS.write() {
        for (def, ms) in reg.operations().iter().zip(&dag.ms) {
            m.insert(def.meta.name, Duration::from_millis(*ms));
        }
    }
    let url = sqlite_url(&scratch_dir(), tag);
    let seq = sequencer(&url, "", reg).await?.using_arc(orchestrator);
    let opts = ProcessOptions {
        concurrency: Some(concurrency),
        ..Default::default()
    };
    let started = Instant::now();
    let report = seq.process(&opts).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if completed(&report) != dag.ms.len() {
        return Err(format!(
            "{tag}: {} of {} completed",
            completed(&report),
            dag.ms.len()
        )
        .into());
    }
    Ok(ms)
}

async fn row_dag(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    let sizes: &[usize] = if opts.quick { &[100] } else { &[200, 1_000] };
    for &n in sizes {
        for heavy in [false, true] {
            let dag = Dag::new(n, 42 + n as u64, heavy);
            let (cp, w) = (dag.critical_path() as f64, dag.work() as f64);
            let shape = format!(
                "{n} ops, {} ms, CP {:.2} s, W {:.1} s",
                if heavy {
                    "Pareto 10–2000"
                } else {
                    "10–100"
                },
                cp / 1e3,
                w / 1e3
            );
            for p in [None, Some(16), Some(4)] {
                let conc = p.unwrap_or(n);
                let bound = match p {
                    None => cp,
                    Some(p) => cp.max(w / p as f64),
                };
                let tag = format!("d{n}{}{conc}", if heavy { "h" } else { "u" });
                let ours =
                    makespan(&dag, &format!("{tag}g"), Arc::new(DependencyGraph), conc).await?;
                let waves = makespan(&dag, &format!("{tag}w"), Arc::new(Waves), conc).await?;
                let (r, rw) = (ours / bound, waves / bound);
                // Unbounded, the floor tokio's 1 ms timer leaves: the same sleeps, no ledger, no scheduler.
                let bare = match p {
                    None => {
                        let ms = Arc::new(dag.ms.clone());
                        let t = ready_queue(&dag.deps, move |i| {
                            let d = Duration::from_millis(ms[i]);
                            async move {
                                tokio::time::sleep(d).await;
                                Ok(())
                            }
                        })
                        .await?;
                        let t = t.as_secs_f64() * 1e3;
                        format!(
                            "; tokio ready-queue, same sleeps, no ledger: {:.2} s = {:.3}",
                            t / 1e3,
                            t / bound
                        )
                    }
                    Some(_) => String::new(),
                };
                let goal = if p.is_none() { 1.02 } else { 1.05 };
                table.push(Row {
                    row: "2",
                    figure: format!(
                        "DAG makespan, {shape}, {}",
                        match p {
                            None => "unbounded: / CP".to_owned(),
                            Some(p) => format!("p = {p}: / max(CP, W/p)"),
                        }
                    ),
                    ours: format!("{:.2} s = {r:.3}", ours / 1e3),
                    baseline: format!("waves {:.2} s = {rw:.3}{bare}", waves / 1e3),
                    ratio: format!("{:.2} × faster than waves", waves / ours),
                    goal: format!("≤ {goal:.2}"),
                    met: verdict(r <= goal),
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// 3. Scheduling overhead.

/// A plain tokio ready-queue: spawn every operation whose in-degree reaches zero; `write` is what each does.
async fn ready_queue<F, Fut>(deps: &[Vec<usize>], write: F) -> Result<Duration, AnyError>
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

async fn row_scheduling(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
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
    for (shape, deps) in shapes {
        // sequencer: the graph orchestrator, unbounded, on SQLite in memory (tmpfs).
        let url = sqlite_url(&dir, &format!("s{shape}"));
        let seq = sequencer(&url, "", registry("s", &deps, noop, false)?).await?;
        let started = Instant::now();
        let report = seq
            .using(DependencyGraph)
            .process(&ProcessOptions {
                concurrency: Some(n),
                ..Default::default()
            })
            .await?;
        let ours = started.elapsed();
        if completed(&report) != n {
            return Err(format!("{shape}: {} of {n} completed", completed(&report)).into());
        }
        // Baseline with the same two writes per operation, on a pool like the ledger's.
        let floor_url = sqlite_url(&dir, &format!("b{shape}"));
        let ledger = sequencer::ledger::Ledger::connect(&floor_url, "").await?;
        let names: Vec<String> = (0..n).map(|i| format!("s_{i:06}")).collect();
        let pending: Vec<(&str, i64)> = names.iter().map(|s| (s.as_str(), 0)).collect();
        let setup = Instant::now();
        ledger.insert_pending(&pending).await?;
        let insert = setup.elapsed();
        let pool = ledger.pool().clone();
        let names = Arc::new(names);
        let base = ready_queue(&deps, move |i| {
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
        // And with no writes at all: the scheduling floor.
        let bare = ready_queue(&deps, |_| async { Ok(()) }).await?;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        let ratio = per(ours) / per(base);
        table.push(Row {
            row: "3",
            figure: format!("scheduling, {n} no-op ops, {shape}, SQLite in memory (tmpfs)"),
            ours: format!("{:.1} µs/op", per(ours)),
            baseline: format!(
                "tokio ready-queue + same 2 writes: {:.1} µs/op; no writes: {:.2} µs/op",
                per(base),
                per(bare)
            ),
            ratio: format!("{ratio:.2}"),
            goal: "≤ 1.50".into(),
            met: verdict(ratio <= 1.5),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// 4. Queue throughput and wake-up latency on PostgreSQL.

async fn row_queue(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
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

// ---------------------------------------------------------------------------------------------------------
// 5. Macro cost.

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

fn row_macro(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
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

// ---------------------------------------------------------------------------------------------------------
// 6. Peak memory.

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
async fn child_memory(stage: &str, n: usize) -> Result<(), AnyError> {
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

fn row_memory(table: &mut Table) -> Result<(), AnyError> {
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

// ---------------------------------------------------------------------------------------------------------

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        quick: false,
        only: Vec::new(),
        postgres: std::env::var("SEQUENCER_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--only" => {
                let list = args.next().ok_or("--only needs a list such as 1,3")?;
                for v in list.split(',') {
                    opts.only.push(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("--only: `{v}` is not a row number (1–6)"))?,
                    );
                }
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: bench [--quick] [--only 1,2,...]"
                ))
            }
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.get(1).map(String::as_str) == Some("--child-memory") {
        let stage = args.get(2).cloned().unwrap_or_default();
        let n = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(100_000);
        return match runtime.block_on(child_memory(&stage, n)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut table = Table(Vec::new());
    let result: Result<(), AnyError> = runtime.block_on(async {
        if opts.wants(1) {
            eprintln!("1. ledger throughput");
            row_ledger(&opts, &mut table).await?;
        }
        if opts.wants(2) {
            eprintln!("2. DAG makespan");
            row_dag(&opts, &mut table).await?;
        }
        if opts.wants(3) {
            eprintln!("3. scheduling overhead");
            row_scheduling(&opts, &mut table).await?;
        }
        if opts.wants(4) {
            eprintln!("4. queue throughput");
            row_queue(&opts, &mut table).await?;
        }
        Ok(())
    });
    let result = result.and_then(|()| {
        if opts.wants(5) {
            eprintln!("5. macro cost");
            row_macro(&opts, &mut table)?;
        }
        if opts.wants(6) {
            eprintln!("6. peak memory");
            row_memory(&mut table)?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(scratch_dir());
    let _ = std::fs::remove_dir_all(memory_dir());
    println!();
    table.print();
    println!(
        "\n{} cores, {} — {:.0} s{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH,
        started.elapsed().as_secs_f64(),
        if opts.quick { " (--quick)" } else { "" }
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
