//! 1. Ledger throughput: no-op operations run one at a time, against a raw sqlx floor doing the same two
//!    writes per operation on the same kind of database.

use std::time::{Duration, Instant};

use sequencer::sqlx;
use sequencer::{ProcessOptions, Sequential};

use crate::ops::{noop, registry};
use crate::opts::Opts;
use crate::setup::{
    bench_prefix, completed, cpu_secs, drop_bench_tables, reachable, scratch_dir, sequencer,
    sqlite_url, AnyError,
};
use crate::table::{verdict, Row, Samples, Table, REPS, REPS_CHEAP};

/// Runs `n` no-op operations one at a time; operations per second.
pub(crate) async fn ledger_run(url: &str, prefix: &str, n: usize) -> Result<f64, AnyError> {
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
pub(crate) async fn ledger_floor(url: &str, prefix: &str, n: usize) -> Result<f64, AnyError> {
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

/// One side of row 1: operations per second, and the CPU time this process spent per operation meanwhile (on a
/// loaded machine the throughput follows the CPU time, as the other builds take the cores).
#[derive(Default)]
struct Figures {
    rate: Samples,
    cpu: Samples,
}

pub(crate) async fn row_ledger(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    // `--quick`: PostgreSQL commits are 10 to 20 times slower than SQLite's on a loaded machine (about 100 a
    // second with a load of 15 on 2 cores), so it runs fewer operations to stay within the quick run's time.
    let (n_sqlite, n_postgres) = if opts.quick {
        (2_000, 300)
    } else {
        (10_000, 10_000)
    };
    let dir = scratch_dir();
    let mut targets = vec![("SQLite file (WAL)", sqlite_url(&dir, "ledger"), n_sqlite)];
    if reachable(&opts.postgres).await {
        targets.push(("PostgreSQL", opts.postgres.clone(), n_postgres));
    } else {
        table.skip("1", "ledger throughput, PostgreSQL", "server unreachable");
    }
    for (what, url, n) in targets {
        // Ours and the floor take turns, so that a load that comes and goes weighs on both.
        let (mut ours, mut floor) = (Figures::default(), Figures::default());
        let sqlite = url.starts_with("sqlite:");
        for rep in 0..if sqlite { REPS_CHEAP } else { REPS } {
            if !sqlite {
                drop_bench_tables(&url).await?;
            }
            let (run_url, floor_url) = if sqlite {
                (
                    sqlite_url(&dir, &format!("ledger{rep}")),
                    sqlite_url(&dir, &format!("floor{rep}")),
                )
            } else {
                (url.clone(), url.clone())
            };
            // Who goes first alternates, so that neither always meets a cold cache or a warm one.
            for ours_now in [rep.is_multiple_of(2), !rep.is_multiple_of(2)] {
                let cpu = cpu_secs(false);
                let (rate, samples) = if ours_now {
                    (ledger_run(&run_url, &bench_prefix(""), n).await?, &mut ours)
                } else {
                    let prefix = bench_prefix("floor_");
                    (ledger_floor(&floor_url, &prefix, n).await?, &mut floor)
                };
                samples.rate.push(rate);
                if let Some(secs) = cpu.zip(cpu_secs(false)).map(|(a, b)| b - a) {
                    samples.cpu.push(secs * 1e6 / n as f64);
                }
            }
            if !sqlite {
                drop_bench_tables(&url).await?;
            }
        }
        let ratios = ours.rate.paired_ratios(&floor.rate);
        let ratio = ratios.median();
        table.push(Row {
            row: "1",
            figure: format!("ledger throughput, {n} no-op ops, sequential, {what}"),
            ours: format!(
                "{}; CPU {}",
                ours.rate.show(0, "ops/s"),
                ours.cpu.show(0, "µs/op")
            ),
            baseline: format!(
                "{} raw sqlx, 2 writes/op; CPU {}",
                floor.rate.show(0, "ops/s"),
                floor.cpu.show(0, "µs/op")
            ),
            ratio: ratios.show_ratio(),
            goal: "≥ 0.70".into(),
            met: verdict(ratio >= 0.7),
        });
    }
    Ok(())
}
