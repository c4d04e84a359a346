//! A long backfill on PostgreSQL, as operators run one: 1,000,000 rows in batches of 1,000 by keyset, each batch
//! committed with its checkpoint (a kill at any moment loses nothing and repeats nothing), progress with an ETA,
//! log lines kept with the run, a `throttle_on` condition that backs the run off while the database is busy, and
//! `pause` / `resume` from the CLI. A second operation imports a CSV file the same way, resumable by row.
//!
//! ```sh
//! export DATABASE_URL=postgres://postgres@127.0.0.1/test
//! cargo run --release --example backfill                     # the benchmark: 1,000,000 rows (`--rows 100000`)
//! cargo run --release --example backfill -- csv-bench        # the CSV import: 100,000 rows (`--rows N`)
//!
//! cargo run --example backfill -- seed --rows 100000         # or by hand: a table to backfill,
//! cargo run --example backfill -- process --tags rows &       # the run,
//! cargo run --example backfill -- pause backfill_rows        # held at its next checkpoint,
//! cargo run --example backfill -- status backfill_rows       # progress, ETA, `paused`, its log lines,
//! cargo run --example backfill -- resume backfill_rows
//! cargo run --example backfill -- throttle 3s                # `throttle_on` holds it back for 3 s
//! kill -9 %1; cargo run --example backfill -- process --tags rows   # interrupted: `retry` resumes it
//! cargo run --example backfill -- retry backfill_rows
//! ```
//!
//! `BACKFILL_PREFIX` prefixes every table (default `bf_`); `BACKFILL_BATCH_DELAY_MS` slows each batch down (for
//! watching it); `BACKFILL_CSV` names the file `import_csv` reads.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sequencer::sqlx;

#[path = "support/peak.rs"]
mod peak;
use peak::peak_kib;

#[sequencer::operations]
mod ops {
    use std::time::Duration;

    use sequencer::prelude::*;
    use sequencer::sqlx;

    /// Rows per batch.
    pub const BATCH: i64 = 1_000;

    /// The prefix of every table (`BACKFILL_PREFIX`, default `bf_`).
    pub fn prefix() -> String {
        std::env::var("BACKFILL_PREFIX").unwrap_or_else(|_| "bf_".into())
    }

    /// `BACKFILL_BATCH_DELAY_MS`: a pause after each batch, to watch a run (0 by default).
    async fn batch_delay() {
        let ms: u64 = std::env::var("BACKFILL_BATCH_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// The database is "busy" while `<prefix>backfill_throttle` holds a row whose `until_ms` is still ahead
    /// (set by `throttle 3s`): a stand-in for replication lag or load. Checked at every checkpoint.
    async fn database_busy(ctx: &Ctx) -> bool {
        let Ok(pg) = ctx.postgres() else {
            return false;
        };
        let sql = format!(
            "SELECT COUNT(*) FROM {}backfill_throttle WHERE until_ms > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            prefix()
        );
        // No table yet, or the database unreachable: not throttled (the batch itself then says why).
        sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(pg)
            .await
            .is_ok_and(|n| n > 0)
    }

    /// Doubles `amount` into `doubled` for every row, once: each batch's update and the checkpoint after it
    /// commit in one transaction.
    #[operation(timestamp = "2024_09_01_000000", tags = ["rows"], throttle_on = database_busy)]
    pub async fn backfill_rows(ctx: &Ctx) -> Result<()> {
        let pg = ctx.postgres()?;
        let p = prefix();
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}rows"))
            .fetch_one(pg)
            .await?;
        // Where the run stands: the last id handled, and how many rows that is.
        let (mut last_id, mut done): (i64, i64) = ctx.last_checkpoint().await?.unwrap_or((0, 0));
        ctx.log(format!(
            "attempt {}: {total} rows, starting after id {last_id} ({done} done)",
            ctx.attempt(),
        ))
        .await?;
        // One batch: the next 1,000 ids after the cursor, updated, and only their count and last id returned.
        let batch = format!(
            "WITH batch AS (SELECT id FROM {p}rows WHERE id > $1 ORDER BY id LIMIT $2), \
             done AS (UPDATE {p}rows r SET doubled = r.amount * 2, handled = r.handled + 1 \
                      FROM batch WHERE r.id = batch.id RETURNING r.id) \
             SELECT COUNT(*), MAX(id) FROM done"
        );
        let mut batches = 0u64;
        loop {
            let mut tx = pg.begin().await?;
            let (n, last): (i64, Option<i64>) = sqlx::query_as(&batch)
                .bind(last_id)
                .bind(BATCH)
                .fetch_one(&mut *tx)
                .await?;
            let Some(last) = last else {
                break;
            };
            (last_id, done) = (last, done + n);
            ctx.commit_with_checkpoint(tx, &(last_id, done)).await?;
            ctx.progress(done as u64, total as u64).await?;
            batches += 1;
            if batches.is_multiple_of(100) {
                ctx.log(format!("{done} of {total} rows, up to id {last_id}"))
                    .await?;
            }
            batch_delay().await;
        }
        ctx.log(format!("done: {done} rows")).await?;
        Ok(())
    }

    /// Imports the CSV file `BACKFILL_CSV` (`id,email,amount`) into `<prefix>imported`, each row exactly once:
    /// each batch's inserts and the checkpoint after them commit together.
    #[operation(timestamp = "2024_09_01_000001", tags = ["csv"])]
    pub async fn import_csv(ctx: &Ctx) -> Result<()> {
        let path = std::env::var("BACKFILL_CSV")
            .map_err(|_| Error::msg("set BACKFILL_CSV to the file to import"))?;
        let pg = ctx.postgres()?;
        let p = prefix();
        let upsert = format!(
            "INSERT INTO {p}imported (id, email, amount, handled) \
             SELECT * , 1 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) \
             ON CONFLICT (id) DO UPDATE SET handled = {p}imported.handled + 1"
        );
        let mut rows = ctx.csv::<(i64, String, i64)>(&path).open().await?;
        ctx.log(format!("{} rows in {path}", rows.rows_total()))
            .await?;
        while let Some(batch) = rows.next_batch()? {
            let mut ids = Vec::with_capacity(batch.len());
            let mut emails = Vec::with_capacity(batch.len());
            let mut amounts = Vec::with_capacity(batch.len());
            for (id, email, amount) in batch {
                ids.push(id);
                emails.push(email);
                amounts.push(amount);
            }
            let mut tx = pg.begin().await?;
            sqlx::query(&upsert)
                .bind(ids)
                .bind(emails)
                .bind(amounts)
                .execute(&mut *tx)
                .await?;
            rows.commit(tx).await?;
            batch_delay().await;
        }
        ctx.log(format!("imported {} rows", rows.rows_done()))
            .await?;
        Ok(())
    }
}

/// `DATABASE_URL`, default `postgres://postgres@127.0.0.1/test`.
fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into())
}

fn builder() -> sequencer::SequencerBuilder {
    sequencer::Sequencer::builder()
        .registry(ops::registry())
        .database(database_url())
        .table_prefix(format!("{}seq_", ops::prefix()))
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// `--rows N` among `args`, else `default`.
fn rows_arg(args: &[String], default: i64) -> Result<i64, AnyError> {
    match args.iter().position(|a| a == "--rows") {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or("`--rows` takes a number")?
            .replace('_', "")
            .parse()?),
        None => Ok(default),
    }
}

async fn connect() -> Result<sqlx::PgPool, AnyError> {
    let url = database_url();
    sqlx::PgPool::connect(&url)
        .await
        .map_err(|e| format!("cannot reach PostgreSQL at {url} (set DATABASE_URL): {e}").into())
}

/// `seed --rows N`: a fresh table of N rows to backfill, and the throttle's table.
async fn seed(pg: &sqlx::PgPool, rows: i64) -> Result<(), AnyError> {
    let p = ops::prefix();
    for sql in [
        format!("DROP TABLE IF EXISTS {p}rows"),
        format!("CREATE TABLE {p}rows (id BIGINT PRIMARY KEY, amount BIGINT NOT NULL, doubled BIGINT NULL, handled INT NOT NULL DEFAULT 0)"),
        format!("CREATE TABLE IF NOT EXISTS {p}backfill_throttle (until_ms BIGINT NOT NULL)"),
        format!("DELETE FROM {p}backfill_throttle"),
    ] {
        sqlx::query(&sql).execute(pg).await?;
    }
    sqlx::query(&format!(
        "INSERT INTO {p}rows (id, amount) SELECT g, g % 1000 FROM generate_series(1, $1::BIGINT) g"
    ))
    .bind(rows)
    .execute(pg)
    .await?;
    sqlx::query(&format!("ANALYZE {p}rows")).execute(pg).await?;
    Ok(())
}

/// `write-csv PATH --rows N`: a CSV file of N rows (`id,email,amount`), and a fresh table to import it into.
async fn write_csv(pg: &sqlx::PgPool, path: &str, rows: i64) -> Result<(), AnyError> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,email,amount")?;
    for id in 1..=rows {
        writeln!(out, "{id},user{id}@example.com,{}", id % 1000)?;
    }
    out.flush()?;
    let p = ops::prefix();
    for sql in [
        format!("DROP TABLE IF EXISTS {p}imported"),
        format!("CREATE TABLE {p}imported (id BIGINT PRIMARY KEY, email TEXT NOT NULL, amount BIGINT NOT NULL, handled INT NOT NULL)"),
    ] {
        sqlx::query(&sql).execute(pg).await?;
    }
    Ok(())
}

/// `throttle 3s`: `throttle_on` returns true for that long.
async fn throttle(pg: &sqlx::PgPool, secs: f64) -> Result<(), AnyError> {
    let p = ops::prefix();
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {p}backfill_throttle (until_ms BIGINT NOT NULL)"
    ))
    .execute(pg)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {p}backfill_throttle (until_ms) VALUES ((EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $1)"
    ))
    .bind((secs * 1000.0) as i64)
    .execute(pg)
    .await?;
    Ok(())
}

/// The ledger's tables and the example's, dropped: each benchmark starts afresh.
async fn drop_all(pg: &sqlx::PgPool) -> Result<(), AnyError> {
    let p = ops::prefix();
    let ledger = sequencer::ledger::TABLES
        .iter()
        .map(|t| format!("{p}seq_{t}"));
    for t in ledger.chain(["rows", "backfill_throttle", "imported"].map(|t| format!("{p}{t}"))) {
        sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
            .execute(pg)
            .await?;
    }
    Ok(())
}

/// Runs the operations tagged `tag` in this process and prints the figures; `throttle_at` (a fraction of the
/// rows) turns the throttle on for 3 s once progress passes it.
async fn bench(
    pg: &sqlx::PgPool,
    tag: &str,
    rows: i64,
    throttle_at: Option<f64>,
) -> Result<(), AnyError> {
    let seq = builder().build().await?;
    let name = match tag {
        "rows" => "2024_09_01_000000_backfill_rows",
        _ => "2024_09_01_000001_import_csv",
    };
    let watcher = throttle_at.map(|at| {
        let (seq, pg) = (seq.clone(), pg.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(status) = seq.status().await else {
                    continue;
                };
                let done = status
                    .iter()
                    .find(|e| e.name == name)
                    .and_then(|e| e.progress_done)
                    .unwrap_or(0);
                if done as f64 >= at * rows as f64 {
                    let _ = throttle(&pg, 3.0).await;
                    println!("throttled for 3 s at {done} rows");
                    return;
                }
            }
        })
    });
    let started = Instant::now();
    let report = seq
        .process(&sequencer::ProcessOptions {
            tags: vec![tag.to_owned()],
            ..Default::default()
        })
        .await?;
    let elapsed = started.elapsed();
    if let Some(w) = watcher {
        w.abort();
    }
    if !report.succeeded() {
        return Err(format!("the run failed: {report:?}").into());
    }
    let (table, what) = match tag {
        "rows" => ("rows", "backfilled"),
        _ => ("imported", "imported"),
    };
    let p = ops::prefix();
    let (handled, wrong): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE handled <> 1) FROM {p}{table}"
    ))
    .fetch_one(pg)
    .await?;
    let entry = seq.status().await?.into_iter().find(|e| e.name == name);
    let throttled_ms = entry.and_then(|e| e.throttled_ms).unwrap_or(0);
    let working = elapsed.as_secs_f64() - throttled_ms as f64 / 1000.0;
    println!(
        "{what} {handled} rows in {:.2} s ({} ms of it throttled): {:.0} rows/s; {wrong} rows handled other than once; peak memory (VmHWM) {:.1} MiB",
        elapsed.as_secs_f64(),
        throttled_ms,
        handled as f64 / working.max(0.001),
        peak_kib() as f64 / 1024.0
    );
    if handled != rows || wrong != 0 {
        return Err(format!("expected {rows} rows handled once each").into());
    }
    Ok(())
}

async fn tool(args: &[String]) -> Result<(), AnyError> {
    let pg = connect().await?;
    match args.first().map(String::as_str) {
        Some("seed") => seed(&pg, rows_arg(args, 1_000_000)?).await,
        Some("write-csv") => {
            let path = args.get(1).ok_or("`write-csv PATH --rows N`")?;
            write_csv(&pg, path, rows_arg(args, 100_000)?).await
        }
        Some("throttle") => {
            let d = args.get(1).ok_or("`throttle 3s`")?;
            let secs: f64 = d.trim_end_matches('s').parse()?;
            throttle(&pg, secs).await
        }
        Some("csv-bench") => {
            let rows = rows_arg(args, 100_000)?;
            drop_all(&pg).await?;
            let path = std::env::temp_dir().join(format!("backfill-{}.csv", std::process::id()));
            let path_str = path.to_string_lossy().into_owned();
            write_csv(&pg, &path_str, rows).await?;
            let size = std::fs::metadata(&path)?.len();
            println!(
                "{rows} rows in a {:.1} MiB CSV file",
                size as f64 / 1_048_576.0
            );
            std::env::set_var("BACKFILL_CSV", &path);
            let result = bench(&pg, "csv", rows, None).await;
            let _ = std::fs::remove_file(&path);
            result
        }
        _ => {
            let rows = rows_arg(args, 1_000_000)?;
            drop_all(&pg).await?;
            let started = Instant::now();
            seed(&pg, rows).await?;
            println!(
                "seeded {rows} rows in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            bench(&pg, "rows", rows, Some(0.4)).await
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ours = args.first().is_none_or(|a| {
        ["seed", "write-csv", "throttle", "csv-bench", "--rows"].contains(&a.as_str())
    });
    if !ours {
        // Everything else is the CLI: `process`, `status NAME`, `pause NAME`, `logs NAME`, …
        return sequencer::cli::run_with(builder());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tool(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
