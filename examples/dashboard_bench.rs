//! How fast the dashboard's pages are with a large ledger: a registry of 100,000 operations (every third tagged
//! `billing`) and a ledger with a row for each (most completed, 1% failed with an error, a few running with
//! progress), 10,000 task runs, 1,000 batches and 10,000 members of one of them, on SQLite and on PostgreSQL (and
//! MariaDB when one answers); then the median time of several requests of each page — the batches (newest, deep),
//! one batch's members, the tasks (all, filtered), the graph, the plan, and the operations page (the first page, a
//! page deep in the list, a status filter, a tag filter, a text filter) — over HTTP, as a browser asks for it.
//!
//! ```sh
//! cargo run --release --example dashboard_bench                 # 100,000 rows
//! cargo run --release --example dashboard_bench -- --rows 10000 --requests 5
//! ```
//!
//! PostgreSQL is `SEQUENCER_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), MariaDB
//! `SEQUENCER_BENCH_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`); each is skipped, saying so, when it
//! does not answer. Tables are prefixed `dash_bench_` and dropped afterwards.

use std::time::{Duration, Instant};

use sequencer::dashboard::{self, axum, DashboardOptions};
use sequencer::sqlx::{self, Connection, Executor};
use sequencer::{BoxFuture, Ctx, OperationDef, OperationMeta, Registry, Sequencer, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

const PREFIX: &str = "dash_bench_";

fn noop(_ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async { Ok(()) })
}

fn registry(n: usize) -> Result<Registry, AnyError> {
    let mut b = Registry::builder();
    for i in 0..n {
        let name: &'static str = Box::leak(format!("backfill_{i:06}").into_boxed_str());
        let ts = Timestamp::from_unix_seconds(1_704_067_200 + i as i64)
            .ok_or("timestamp out of range")?;
        let tags: &'static [&'static str] = if i % 3 == 0 { &["billing"] } else { &[] };
        let meta = OperationMeta {
            tags,
            ..OperationMeta::new(name, ts)
        };
        b = b.operation(Box::leak(Box::new(OperationDef::new(meta, noop))));
    }
    Ok(b.build()?)
}

/// Fills the ledger: a pending row for every operation, then most completed, every 97th failed, every
/// 9,973rd running with progress.
async fn fill(seq: &Sequencer) -> Result<(), AnyError> {
    let ledger = seq.ledger();
    let rows: Vec<(&str, i64)> = seq
        .registry()
        .operations()
        .iter()
        .map(|d| (d.meta.name, d.meta.timestamp.version() as i64))
        .collect();
    ledger.insert_pending(&rows).await?;
    let ops = format!("{PREFIX}operations");
    let statements = [
        format!("UPDATE {ops} SET status = 'completed', attempts = 1, batch = 1, started_at = 1735689600000, finished_at = 1735689601500, duration_ms = 1500"),
        format!("UPDATE {ops} SET status = 'failed', last_error = 'timeout talking to the billing API' WHERE op_timestamp % 97 = 0"),
        format!("UPDATE {ops} SET status = 'running', finished_at = NULL, duration_ms = NULL, progress_done = 40, progress_total = 100 WHERE op_timestamp % 9973 = 0"),
    ];
    for s in statements {
        ledger.pool().execute(s.as_str()).await?;
    }
    // Task runs, batches and a batch's members, each a tenth (or a hundredth) of the operations, written from
    // them in one statement each: 10,000 runs of the task `reprice` (every 50th failed; a run's number is its
    // operation's timestamp, unique), 1,000 batches, and 10,000 members of the first batch.
    let (batches, members) = (
        format!("{PREFIX}job_batches"),
        format!("{PREFIX}batch_members"),
    );
    let more = [
        format!("INSERT INTO {ops} (name, run, op_timestamp, status, attempts, started_at, finished_at, duration_ms, args) \
                 SELECT 'reprice', op_timestamp, 0, 'completed', 1, 1735689600000, 1735689600200, 200, '{{\"customer_id\": 42}}' \
                 FROM {ops} WHERE op_timestamp % 10 = 0"),
        format!("UPDATE {ops} SET status = 'failed', last_error = 'card declined' WHERE op_timestamp = 0 AND run % 50 = 0"),
        format!("INSERT INTO {batches} (kind, name, queue, in_process, total, pending, failed, skipped, allow_failures, \
                 then_callback, catch_callback, finally_callback, created_at, finished_at) \
                 SELECT 'batch', name, 'default', 0, 10000, 0, 3, 0, 1, 'notify', NULL, 'cleanup', 1735689600000, 1735689700000 \
                 FROM {ops} WHERE op_timestamp % 100 = 0 AND op_timestamp > 0"),
        format!("INSERT INTO {members} (batch_id, position, name, run, state, ended_at) \
                 SELECT (SELECT MIN(id) FROM {batches}), op_timestamp, name, 0, 'completed', 1735689700000 \
                 FROM {ops} WHERE op_timestamp % 10 = 0 AND op_timestamp > 0"),
    ];
    for s in more {
        ledger.pool().execute(s.as_str()).await?;
    }
    Ok(())
}

/// `GET path` on its own connection; the status code.
async fn get(port: u16, path: &str) -> Result<u16, AnyError> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// The median of `k` requests of `path`, after one to warm up.
async fn median(port: u16, path: &str, k: usize) -> Result<Duration, AnyError> {
    let status = get(port, path).await?;
    if status != 200 {
        return Err(format!("{path}: HTTP {status}").into());
    }
    let mut times = Vec::with_capacity(k);
    for _ in 0..k {
        let started = Instant::now();
        get(port, path).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[k / 2])
}

async fn drop_tables(url: &str) -> Result<(), AnyError> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    for t in sequencer::ledger::TABLES {
        conn.execute(format!("DROP TABLE IF EXISTS {PREFIX}{t}").as_str())
            .await?;
    }
    Ok(())
}

async fn bench(name: &str, url: &str, n: usize, k: usize) -> Result<(), AnyError> {
    sqlx::any::install_default_drivers();
    let reachable = url.starts_with("sqlite:")
        || matches!(
            tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(url)).await,
            Ok(Ok(_))
        );
    if !reachable {
        println!("{name}: skipped (no server at {url})");
        return Ok(());
    }
    if !url.starts_with("sqlite:") {
        drop_tables(url).await?;
    }
    let seq = Sequencer::builder()
        .registry(registry(n)?)
        .database(url)
        .table_prefix(PREFIX)
        .build()
        .await?;
    let filled = Instant::now();
    fill(&seq).await?;
    println!(
        "{name}: {n} ledger rows written in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let app = axum::Router::new().nest(
        "/ops",
        dashboard::router_with(seq.clone(), DashboardOptions::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let deep = format!(
        "/ops?after={}.backfill_{:06}",
        Timestamp::from_unix_seconds(1_704_067_200 + (n as i64) * 3 / 4)
            .ok_or("timestamp")?
            .version(),
        n * 3 / 4
    );
    let first_batch = seq
        .ledger()
        .batches_page(None, 1_000_000)
        .await?
        .last()
        .map_or(0, |b| b.id.0);
    let pages = [
        ("batches page, newest", "/ops/batches".to_owned()),
        (
            "batches page, a page 3/4 down (cursor)",
            format!("/ops/batches?after={}", first_batch + 250),
        ),
        (
            "a batch of 10,000 members, first page",
            format!("/ops/batch/{first_batch}"),
        ),
        ("a batch of 10,000 members, a page 3/4 down", {
            let at = Timestamp::from_unix_seconds(1_704_067_200 + (n as i64) * 3 / 4)
                .ok_or("timestamp")?;
            format!("/ops/batch/{first_batch}?after={}", at.version())
        }),
        ("tasks page (10,000 runs)", "/ops/tasks".to_owned()),
        (
            "tasks page, task=reprice&status=failed",
            "/ops/tasks?task=reprice&status=failed".to_owned(),
        ),
        ("graph page", "/ops/graph".to_owned()),
        ("plan page", "/ops/plan".to_owned()),
    ];
    for (what, path) in pages {
        let m = median(port, &path, k).await?;
        println!(
            "{name}: {what}: median {:.1} ms of {k}",
            m.as_secs_f64() * 1000.0
        );
    }
    for (what, path) in [
        ("first page", "/ops".to_owned()),
        ("a page 3/4 down (cursor)", deep),
        ("status=failed", "/ops?status=failed".to_owned()),
        ("tag=billing", "/ops?tag=billing".to_owned()),
        (
            "status=failed&tag=billing",
            "/ops?status=failed&tag=billing".to_owned(),
        ),
        ("text q=billing+API", "/ops?q=billing+API".to_owned()),
        ("status=pending (none)", "/ops?status=pending".to_owned()),
    ] {
        let m = median(port, &path, k).await?;
        println!(
            "{name}: operations page, {what}: median {:.1} ms of {k}",
            m.as_secs_f64() * 1000.0
        );
    }
    seq.ledger().pool().close().await;
    if !url.starts_with("sqlite:") {
        drop_tables(url).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let mut n = 100_000;
    let mut k = 9;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), value) {
            ("--rows", Some(v)) => n = v,
            ("--requests", Some(v)) => k = v,
            _ => return Err("usage: dashboard_bench [--rows N] [--requests K]".into()),
        }
    }
    let k = k.max(1);
    let dir = std::env::temp_dir().join(format!("sequencer-dash-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = format!("sqlite://{}", dir.join("ledger.db").display());
    let postgres = std::env::var("SEQUENCER_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mysql = std::env::var("SEQUENCER_BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let result = async {
        bench("SQLite", &sqlite, n, k).await?;
        bench("PostgreSQL", &postgres, n, k).await?;
        bench("MariaDB", &mysql, n, k).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
