//! Shared by the backend suites: which databases to run on, and per-test table prefixes.

use std::time::Duration;

use sequencer::sqlx;

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
    let required = std::env::var("SEQUENCER_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
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

pub fn prefix() -> String {
    format!("t{}_", fastrand::u32(..))
}
