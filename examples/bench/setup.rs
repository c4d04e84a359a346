//! What the figures share: the error type, scratch directories, database URLs and sequencers.

use std::time::Duration;

use sequencer::sqlx::{self, Connection, Executor};
use sequencer::{Outcome, Registry, RunReport, Sequencer};

pub(crate) type AnyError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sequencer-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A SQLite file on tmpfs when the machine has one (the "in-memory" ledger), else in the temp dir.
pub(crate) fn memory_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = shm.join(format!("sequencer-bench-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            return dir;
        }
    }
    scratch_dir()
}

pub(crate) fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    let file = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    format!("sqlite://{}", file.display())
}

pub(crate) async fn reachable(url: &str) -> bool {
    sqlx::any::install_default_drivers();
    matches!(
        tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

/// The table prefix of one kind of this process's tables on a server database: `bench<pid>_<kind>`, so that two
/// benches sharing a server (as several builds on one machine do) never drop or drain each other's tables.
pub(crate) fn bench_prefix(kind: &str) -> String {
    format!("bench{}_{kind}", std::process::id())
}

/// The kinds of tables the bench makes: the ledger row's, its floor's, the queue's and the wake-up probes'.
const KINDS: [&str; 4] = ["", "floor_", "q_", "w_"];

/// Drops this process's bench tables of a server database.
pub(crate) async fn drop_bench_tables(url: &str) -> Result<(), AnyError> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    for t in sequencer::ledger::TABLES {
        for kind in KINDS {
            let p = bench_prefix(kind);
            conn.execute(format!("DROP TABLE IF EXISTS {p}{t}").as_str())
                .await?;
        }
    }
    Ok(())
}

pub(crate) async fn sequencer(
    url: &str,
    prefix: &str,
    registry: Registry,
) -> Result<Sequencer, AnyError> {
    Ok(Sequencer::builder()
        .registry(registry)
        .database(url)
        .table_prefix(prefix)
        // Nine sequencers at once in the queue rows: stay under PostgreSQL's default 100 connections.
        .max_connections(10)
        .build()
        .await?)
}

pub(crate) fn completed(report: &RunReport) -> usize {
    report.count(|o| matches!(o, Outcome::Completed { .. }))
}

/// The CPU time (user + system, seconds) of this process, or with `children` of its children that have been
/// waited for (cargo and the rustc it ran). `None` where `/proc` does not tell.
pub(crate) fn cpu_secs(children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name in parentheses, starting at field 3: utime and stime are fields 14 and 15,
    // cutime and cstime 16 and 17, in clock ticks of 1/100 s (USER_HZ on Linux).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let first = if children { 13 } else { 11 };
    let ticks: u64 =
        fields.get(first)?.parse::<u64>().ok()? + fields.get(first + 1)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The CPU time (user + system, seconds) of every process of the database server named by `url` (PostgreSQL's
/// `postgres` processes, MariaDB's `mariadbd`), read from `/proc`: the server's share of a figure, beside this
/// process's own ([`cpu_secs`]), those of its connections that ended included. `None` where `/proc` does not tell
/// or no such process is seen.
pub(crate) fn server_cpu_secs(url: &str) -> Option<f64> {
    let names: &[&str] = if url.starts_with("postgres") {
        &["postgres"]
    } else {
        &["mariadbd", "mysqld"]
    };
    let mut ticks = 0u64;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !names.contains(&stat.get(open + 1..close).unwrap_or_default()) {
            continue;
        }
        let fields: Vec<&str> = stat
            .get(close + 1..)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        // utime, stime, cutime, cstime: fields 14–17 (11–14 after the name). The children's part counts the
        // backends that ended and were waited for (PostgreSQL's postmaster waits for each connection's).
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(u), Some(s), Some(cu), Some(cs)) = (field(11), field(12), field(13), field(14))
        {
            ticks += u + s + cu + cs;
            seen = true;
        }
    }
    seen.then_some(ticks as f64 / 100.0)
}
