//! Shared by the backend suites: which databases to run on, and per-test table prefixes.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use sequencer::ledger::LedgerRow;
use sequencer::sqlx;
use sequencer::{Registry, Sequencer, SequencerBuilder};

pub mod batch;
pub mod http;
pub mod work;

/// A database to run a suite on.
pub struct Backend {
    /// Its name, in messages.
    pub name: &'static str,
    /// Its URL.
    pub url: String,
}

/// The backends to test; SQLite always, servers when reachable (or required).
pub async fn backends() -> Vec<Backend> {
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("sequencer-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{}.db", fastrand::u64(..)));
    let mut out = vec![Backend {
        name: "SQLite",
        url: format!("sqlite://{}", file.display()),
    }];
    let required = servers_required();
    let servers = [
        (
            "PostgreSQL",
            std::env::var("SEQUENCER_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        ),
        (
            "MariaDB",
            std::env::var("SEQUENCER_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        ),
    ];
    for (name, url) in servers {
        let reachable = tokio::time::timeout(
            Duration::from_secs(5),
            <sqlx::AnyConnection as sqlx::Connection>::connect(&url),
        )
        .await;
        match reachable {
            Ok(Ok(_)) => out.push(Backend { name, url }),
            Ok(Err(e)) if required => panic!("the {name} suite cannot reach {url}: {e}"),
            Err(_) if required => panic!("the {name} suite cannot reach {url}: timed out"),
            _ => {
                // Written to the stream itself, not through `eprintln!`, so that the test harness shows it.
                let msg = format!("skipped the {name} suite: {url} is not reachable (set SEQUENCER_REQUIRE_SERVERS=1 to make this an error)\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
            }
        }
    }
    out
}

/// A throw-away SQLite ledger, for tests whose subject is not the backend, and its file (remove it with
/// [`remove_sqlite`]).
pub fn sqlite_file() -> (Backend, std::path::PathBuf) {
    sqlx::any::install_default_drivers();
    let file = std::env::temp_dir().join(format!("sequencer-test-{}.db", fastrand::u64(..)));
    let b = Backend {
        name: "SQLite",
        url: format!("sqlite://{}", file.display()),
    };
    (b, file)
}

/// Removes a SQLite file made by [`sqlite_file`], with its `-wal` and `-shm` companions.
pub fn remove_sqlite(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// Whether every suite must run for real (`SEQUENCER_REQUIRE_SERVERS=1`, as `.ci/run` sets): servers, and the
/// tools the fault tests use (`faketime`, `unshare`).
pub fn servers_required() -> bool {
    std::env::var("SEQUENCER_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

pub fn prefix() -> String {
    format!("t{}_", fastrand::u32(..))
}

/// Drops the tables a suite made: the ledger's (prefixed `{p}seq_`) and `extra` ones (prefixed `{p}`).
pub async fn drop_tables(pool: &sqlx::AnyPool, p: &str, extra: &[&str]) {
    let names = sequencer::ledger::TABLES
        .iter()
        .map(|t| format!("{p}seq_{t}"))
        .chain(extra.iter().map(|t| format!("{p}{t}")));
    for t in names {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
            .execute(pool)
            .await;
    }
}

/// A sequencer over `registry` on the backend, its ledger tables prefixed `{p}seq_` (as [`drop_tables`] expects);
/// the suite adds its own settings, then calls [`build`].
pub fn builder(b: &Backend, p: &str, registry: Registry) -> SequencerBuilder {
    Sequencer::builder()
        .registry(registry)
        .database(b.url.clone())
        .table_prefix(format!("{p}seq_"))
}

/// Builds a sequencer; a failure panics, naming the backend.
pub async fn build(b: &Backend, builder: SequencerBuilder) -> Sequencer {
    builder
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", b.name))
}

/// Drops the tables of a sequencer made by [`builder`] with prefix `p`, and the suite's `extra` ones.
pub async fn cleanup(seq: &Sequencer, p: &str, extra: &[&str]) {
    drop_tables(seq.ledger().pool(), p, extra).await;
}

/// The ledger's rows by function name (the ledger name without its `YYYY_MM_DD_HHMMSS_` timestamp).
pub async fn rows(seq: &Sequencer) -> HashMap<String, LedgerRow> {
    seq.ledger()
        .rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name.split_at(18).1.to_owned(), r))
        .collect()
}

/// A pool on the backend's database (creating the SQLite file), for suites that drive the CLI's processes.
pub async fn pool(b: &Backend) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if b.name == "SQLite" {
        format!("{}?mode=rwc", b.url)
    } else {
        b.url.clone()
    };
    sqlx::AnyPool::connect(&url).await.expect("pool")
}

/// A run of one of the test binaries (`env!("CARGO_BIN_EXE_…")`) on a database, with table prefix `p`
/// (`SEQTEST_PREFIX`), its output piped.
pub fn command(exe: &str, url: &str, p: &str, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.args(args)
        .env("SEQUENCER_DATABASE_URL", url)
        .env("SEQTEST_PREFIX", p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `command` (a test binary's, see [`command`]) to its end and asserts that it succeeded; a failure names the
/// backend and shows what the command printed. Its output.
pub fn run_ok(b: &Backend, command: &mut Command) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{}: cannot run {command:?}: {e}", b.name));
    assert!(
        out.status.success(),
        "{}: {command:?} ended with {}\nstdout:\n{}\nstderr:\n{}",
        b.name,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh, empty database on the backend (a new file on SQLite, `CREATE DATABASE` on the servers), for suites
/// that touch database-wide state such as `_sqlx_migrations`. Drop it with [`drop_database`].
pub async fn fresh_database(b: &Backend) -> (String, Option<String>) {
    if b.name == "SQLite" {
        let dir = std::env::temp_dir().join(format!("sequencer-fresh-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        return (
            format!("sqlite://{}", dir.join("db.sqlite").display()),
            None,
        );
    }
    let name = format!("seqfresh_{}", fastrand::u32(..));
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url)
        .await
        .expect("server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = b
        .url
        .rsplit_once('/')
        .map_or(b.url.as_str(), |(base, _)| base);
    (format!("{base}/{name}"), Some(name))
}

/// Drops a database made by [`fresh_database`].
pub async fn drop_database(b: &Backend, name: Option<String>) {
    let Some(name) = name else { return };
    if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await {
        let force = if b.name == "PostgreSQL" {
            " WITH (FORCE)"
        } else {
            ""
        };
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}{force}"))
            .execute(&mut conn)
            .await;
    }
}
