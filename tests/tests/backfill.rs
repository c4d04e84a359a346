//! The long backfill of issue 17 on PostgreSQL, driving the backfill example's binary as operators do: 100,000
//! rows in batches of 1,000, paused and resumed from the CLI, throttled by its `throttle_on` condition, killed
//! with SIGKILL and retried: every row handled exactly once, `status NAME` showing progress, an ETA and the
//! throttle while it runs, its log lines kept with the run. The same for a 100,000-row CSV file, resumed by row.
//! Skipped without a PostgreSQL server (unless `SEQUENCER_REQUIRE_SERVERS=1`).

mod common;

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{backends, Backend};
use sequencer::sqlx;

const ROWS: i64 = 100_000;
const NAME: &str = "backfill_rows";
const LEDGER_NAME: &str = "2024_09_01_000000_backfill_rows";

/// The example's binary, on the backend, with its tables prefixed `p`.
fn backfill(b: &Backend, p: &str, args: &[&str]) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_backfill"), &b.url, p, args);
    c.env("DATABASE_URL", &b.url)
        .env("BACKFILL_PREFIX", p)
        .env("BACKFILL_BATCH_DELAY_MS", "60");
    c
}

fn run(b: &Backend, p: &str, args: &[&str]) -> Output {
    backfill(b, p, args).output().expect("run the example")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn postgres() -> Option<Backend> {
    backends()
        .await
        .into_iter()
        .find(|b| b.name == "PostgreSQL")
}

/// `(status, progress_done)` of the operation's latest run.
async fn progress(pool: &sqlx::AnyPool, p: &str, name: &str) -> (String, i64) {
    let q = format!(
        "SELECT status, progress_done FROM {p}seq_operations WHERE name = '{name}' ORDER BY run DESC"
    );
    // No ledger yet (the child has not connected): nothing to show.
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as(&q).fetch_optional(pool).await.ok().flatten();
    row.map_or((String::new(), 0), |(s, d)| (s, d.unwrap_or(0)))
}

/// Waits until `ok` holds of the run's progress, the child still running.
async fn wait_progress(
    pool: &sqlx::AnyPool,
    p: &str,
    name: &str,
    child: &mut Child,
    what: &str,
    ok: impl Fn(&str, i64) -> bool,
) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, done) = progress(pool, p, name).await;
        if ok(&status, done) {
            return done;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "the run ended before {what} ({status}, {done} done)"
        );
        assert!(
            Instant::now() < deadline,
            "never {what} ({status}, {done} done)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `status NAME` prints `what`, the child still running; returns what it printed.
fn wait_status(b: &Backend, p: &str, name: &str, child: &mut Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = text(&run(b, p, &["status", name]));
        if out.contains(what) {
            return out;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "the run ended before `status {name}` showed `{what}`: {out}"
        );
        assert!(
            Instant::now() < deadline,
            "`status {name}` never showed `{what}`: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The child's peak resident memory (VmHWM), KiB.
fn peak_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `(rows, rows handled other than once)` of a table with a `handled` counter.
async fn handled(pool: &sqlx::AnyPool, table: &str) -> (i64, i64) {
    sqlx::query_as(&format!(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE handled <> 1) FROM {table}"
    ))
    .fetch_one(pool)
    .await
    .expect("count the rows")
}

/// Kills the run with SIGKILL, then `process` finds it interrupted and `retry` finishes it.
fn kill_and_retry(
    b: &Backend,
    p: &str,
    child: &mut Child,
    name: &str,
    ledger_name: &str,
    tag: &str,
) {
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let out = text(&run(b, p, &["process", "--tags", tag]));
    assert!(
        out.contains(&format!("interrupted: {ledger_name}")),
        "the next process sees the killed run interrupted: {out}"
    );
    let out = run(b, p, &["retry", name]);
    assert!(out.status.success(), "retry: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_paused_throttled_killed_and_retried_handles_every_row_once() {
    let Some(b) = postgres().await else {
        return;
    };
    let p = common::prefix();
    let pool = common::pool(&b).await;
    let rows = ROWS.to_string();
    let out = run(&b, &p, &["seed", "--rows", &rows]);
    assert!(out.status.success(), "seed: {}", text(&out));

    let mut child = backfill(&b, &p, &["process", "--tags", "rows"])
        .spawn()
        .expect("spawn process");
    wait_progress(&pool, &p, LEDGER_NAME, &mut child, "running", |s, d| {
        s == "running" && d >= 2_000
    })
    .await;

    // `pause` from the CLI: the run holds at its next checkpoint, and its progress stops there.
    let out = run(&b, &p, &["pause", NAME]);
    assert!(out.status.success(), "pause: {}", text(&out));
    let shown = wait_status(&b, &p, NAME, &mut child, "paused ");
    let held = progress(&pool, &p, LEDGER_NAME).await.1;
    let q = format!("SELECT COALESCE(SUM(handled), 0) FROM {p}rows WHERE handled > 0");
    let held_rows: i64 = sqlx::query_scalar(&q).fetch_one(&pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        progress(&pool, &p, LEDGER_NAME).await.1,
        held,
        "no progress while paused: {shown}"
    );
    let still: i64 = sqlx::query_scalar(&q).fetch_one(&pool).await.unwrap();
    assert_eq!(still, held_rows, "no row handled while paused");

    // `resume`: it goes on.
    let out = run(&b, &p, &["resume", NAME]);
    assert!(out.status.success(), "resume: {}", text(&out));
    wait_progress(&pool, &p, LEDGER_NAME, &mut child, "resumed", |_, d| {
        d > held
    })
    .await;

    // The throttle on for 2 s: `status NAME` shows it, with the progress and an ETA.
    let out = run(&b, &p, &["throttle", "2s"]);
    assert!(out.status.success(), "throttle: {}", text(&out));
    let shown = wait_status(&b, &p, NAME, &mut child, "throttled now");
    assert!(
        shown.contains(&format!("/{ROWS}, ETA ")),
        "progress and an ETA while it runs: {shown}"
    );
    // Off again: it goes on, then is killed mid-run.
    let throttled_at = progress(&pool, &p, LEDGER_NAME).await.1;
    let at = wait_progress(&pool, &p, LEDGER_NAME, &mut child, "unthrottled", |_, d| {
        d > throttled_at
    })
    .await;
    let shown = text(&run(&b, &p, &["status", NAME]));
    assert!(
        shown.contains("throttled ") && shown.contains(" s in all"),
        "{shown}"
    );
    let peak = peak_kib(&child);
    assert!(at < ROWS, "killed mid-run: {at} of {ROWS}");
    kill_and_retry(&b, &p, &mut child, NAME, LEDGER_NAME, "rows");

    assert_eq!(
        handled(&pool, &format!("{p}rows")).await,
        (ROWS, 0),
        "every row handled exactly once"
    );
    let q = format!("SELECT COUNT(*) FROM {p}rows WHERE doubled IS DISTINCT FROM amount * 2");
    let wrong: i64 = sqlx::query_scalar(&q).fetch_one(&pool).await.unwrap();
    assert_eq!(wrong, 0);
    assert_eq!(
        progress(&pool, &p, LEDGER_NAME).await,
        ("completed".to_owned(), ROWS)
    );

    // The run's log lines, both attempts', kept with it.
    let logs = text(&run(&b, &p, &["logs", NAME]));
    assert!(
        logs.contains(": 100000 rows, starting after id 0 (0 done)"),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains(": 100000 rows, starting after id ")
                && !l.contains("starting after id 0 (")),
        "the retry's line, resuming after the last committed batch: {logs}"
    );
    assert!(logs.contains("done: 100000 rows"), "{logs}");
    println!(
        "backfill of {ROWS} rows: the process's peak memory before it was killed at {at} rows: {:.1} MiB",
        peak as f64 / 1024.0
    );
    common::drop_tables(&pool, &p, &["rows", "backfill_throttle"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_killed_mid_way_resumes_by_row_and_imports_each_row_once() {
    let Some(b) = postgres().await else {
        return;
    };
    let p = common::prefix();
    let pool = common::pool(&b).await;
    let file = std::env::temp_dir().join(format!("sequencer-csv-{p}.csv"));
    let path = file.to_string_lossy().into_owned();
    let rows = ROWS.to_string();
    let out = run(&b, &p, &["write-csv", &path, "--rows", &rows]);
    assert!(out.status.success(), "write-csv: {}", text(&out));
    let name = "2024_09_01_000001_import_csv";

    let mut child = backfill(&b, &p, &["process", "--tags", "csv"])
        .env("BACKFILL_CSV", &file)
        .spawn()
        .expect("spawn process");
    let at = wait_progress(&pool, &p, name, &mut child, "running", |s, d| {
        s == "running" && d >= 10_000
    })
    .await;
    let shown = text(&run(&b, &p, &["status", "import_csv"]));
    assert!(
        shown.contains(&format!("/{ROWS}")),
        "progress by rows: {shown}"
    );
    let peak = peak_kib(&child);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let before = handled(&pool, &format!("{p}imported")).await;
    assert!(
        before.0 >= at && before.0 < ROWS,
        "killed mid-way: {before:?}"
    );
    assert_eq!(before.1, 0);

    let out = backfill(&b, &p, &["process", "--tags", "csv"])
        .env("BACKFILL_CSV", &file)
        .output()
        .unwrap();
    assert!(
        text(&out).contains(&format!("interrupted: {name}")),
        "{}",
        text(&out)
    );
    let out = backfill(&b, &p, &["retry", "import_csv"])
        .env("BACKFILL_CSV", &file)
        .env("BACKFILL_BATCH_DELAY_MS", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "retry: {}", text(&out));
    assert_eq!(
        handled(&pool, &format!("{p}imported")).await,
        (ROWS, 0),
        "every row imported exactly once"
    );
    let q = format!("SELECT COUNT(*) FROM {p}imported WHERE email <> 'user' || id || '@example.com' OR amount <> id % 1000");
    let wrong: i64 = sqlx::query_scalar(&q).fetch_one(&pool).await.unwrap();
    assert_eq!(wrong, 0, "each row as in the file");
    let logs = text(&run(&b, &p, &["logs", "import_csv"]));
    assert!(
        logs.contains(&format!("after row {}", before.0)),
        "the retry resumed after the last committed row: {logs}"
    );
    assert!(logs.contains("imported 100000 rows"), "{logs}");
    println!(
        "CSV import of {ROWS} rows: the process's peak memory before it was killed at {} rows: {:.1} MiB",
        before.0,
        peak as f64 / 1024.0
    );
    let _ = std::fs::remove_file(&file);
    common::drop_tables(&pool, &p, &["imported"]).await;
}
