//! The ledger's own schema, as data: each version's statements, applied once per database and recorded in
//! `<prefix>schema_versions`.

use std::time::Duration;

use sqlx::Executor;

use super::connection::{now_ms, Ledger, TABLES};
use super::dialect::Dialect;
use super::error::{q, LedgerError};

/// One version of the ledger's schema. An applied version is never edited: a change is a new version at the end.
struct Migration {
    version: i64,
    /// Applied in order. `{operations}` (any of [`TABLES`] in braces) is that table with the prefix; `{id}`, `{exact}`,
    /// `{options}` and `{jobs_key}` are in the backend's words (see [`expand`]).
    statements: &'static [Statement],
}

/// A statement of a migration, and the backends it runs on.
enum Statement {
    /// Every backend.
    All(&'static str),
    /// Every backend but MySQL / MariaDB.
    NotMySql(&'static str),
    /// PostgreSQL only.
    Postgres(&'static str),
    /// Every backend but PostgreSQL.
    NotPostgres(&'static str),
    /// MySQL / MariaDB only.
    MySql(&'static str),
}

use Statement::{All, MySql, NotMySql, NotPostgres, Postgres};

/// MySQL's exact collations, preferred first: byte-exact and without padding (`'a' <> 'a '`). MariaDB's
/// `utf8mb4_nopad_bin` first: a MariaDB that knows MySQL's name too may take it for its padded `utf8mb4_bin`.
/// A server that has neither (MySQL before 8.0.17) gets `utf8mb4_bin`: exact, but padded ([`exact_collation`]).
const EXACT_COLLATIONS: [&str; 2] = ["utf8mb4_nopad_bin", "utf8mb4_0900_bin"];

/// The collation MySQL / MariaDB column definitions take in [`expand`]'s `{exact}` on this server.
async fn exact_collation(conn: &mut sqlx::AnyConnection) -> Result<String, LedgerError> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
         WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the server's collations"))?;
    Ok(EXACT_COLLATIONS
        .iter()
        .find(|c| found.iter().any(|f| f.eq_ignore_ascii_case(c)))
        .map_or("utf8mb4_bin", |c| c)
        .to_owned())
}

/// The table recording which versions were applied, created before any of them.
const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS {schema_versions} (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL){options}";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        statements: &[
            All("CREATE TABLE IF NOT EXISTS {operations} (
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                op_timestamp BIGINT NOT NULL,
                batch BIGINT NULL,
                status VARCHAR(16) NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                started_at BIGINT NULL,
                finished_at BIGINT NULL,
                duration_ms BIGINT NULL,
                lease_until BIGINT NULL,
                host VARCHAR(255) NULL,
                pid BIGINT NULL,
                actor VARCHAR(255) NULL,
                checksum VARCHAR(16) NULL,
                skip_reason TEXT NULL,
                last_error TEXT NULL,
                PRIMARY KEY (name, run)
            ){options}"),
            All("CREATE TABLE IF NOT EXISTS {errors} (
                {id},
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                attempt BIGINT NOT NULL,
                message TEXT NOT NULL,
                chain TEXT NOT NULL,
                created_at BIGINT NOT NULL
            ){options}"),
            All("CREATE TABLE IF NOT EXISTS {batches} (
                {id},
                started_at BIGINT NOT NULL,
                host VARCHAR(255) NOT NULL,
                pid BIGINT NOT NULL,
                actor VARCHAR(255) NULL
            ){options}"),
            All("CREATE TABLE IF NOT EXISTS {locks} (
                name VARCHAR(191) NOT NULL PRIMARY KEY,
                owner VARCHAR(255) NOT NULL,
                expires_at BIGINT NOT NULL
            ){options}"),
        ],
    },
    Migration {
        version: 2,
        statements: &[All(
            "ALTER TABLE {operations} ADD COLUMN due_at BIGINT NULL",
        )],
    },
    Migration {
        version: 3,
        statements: &[
            All("CREATE TABLE IF NOT EXISTS {rate_limits} (
                name VARCHAR(191) NOT NULL,
                window_start BIGINT NOT NULL,
                hits BIGINT NOT NULL,
                PRIMARY KEY (name, window_start)
            ){options}"),
            All("CREATE TABLE IF NOT EXISTS {throttles} (
                name VARCHAR(191) NOT NULL PRIMARY KEY,
                failures BIGINT NOT NULL,
                window_start BIGINT NOT NULL,
                open_until BIGINT NOT NULL
            ){options}"),
        ],
    },
    Migration {
        version: 4,
        statements: &[
            All("ALTER TABLE {operations} ADD COLUMN progress_done BIGINT NULL"),
            All("ALTER TABLE {operations} ADD COLUMN progress_total BIGINT NULL"),
            All("ALTER TABLE {operations} ADD COLUMN checkpoint TEXT NULL"),
            All("ALTER TABLE {operations} ADD COLUMN cancel_requested BIGINT NULL"),
            All("CREATE TABLE IF NOT EXISTS {deferred} (
                {id},
                handler VARCHAR(191) NOT NULL,
                payload TEXT NOT NULL,
                due_at BIGINT NOT NULL,
                attempts BIGINT NOT NULL,
                max_attempts BIGINT NOT NULL,
                status VARCHAR(16) NOT NULL,
                last_error TEXT NULL,
                locked_until BIGINT NULL,
                created_at BIGINT NOT NULL
            ){options}"),
        ],
    },
    Migration {
        version: 5,
        statements: &[
            All("CREATE TABLE IF NOT EXISTS {jobs} (
                {id},
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                queue VARCHAR(64) NOT NULL,
                status VARCHAR(16) NOT NULL,
                available_at BIGINT NOT NULL,
                lease_until BIGINT NULL,
                worker VARCHAR(255) NULL,
                attempts BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                finished_at BIGINT NULL,
                last_error TEXT NULL,
                UNIQUE (name, run){jobs_key}
            ){options}"),
            // MySQL has no `CREATE INDEX IF NOT EXISTS`: its index is `{jobs_key}`, in the table.
            NotMySql(
                "CREATE INDEX IF NOT EXISTS {jobs}_ready ON {jobs} (queue, status, available_at)",
            ),
        ],
    },
    Migration {
        version: 6,
        // Every claim carries a random token; fast recovery of a dead claimer needs its pid namespace too.
        statements: &[
            All("ALTER TABLE {operations} ADD COLUMN claim_token VARCHAR(32) NULL"),
            All("ALTER TABLE {operations} ADD COLUMN host_ns VARCHAR(64) NULL"),
            All("ALTER TABLE {deferred} ADD COLUMN claim_token VARCHAR(32) NULL"),
            // A `transaction` operation's checkpoint commits with its work, in a table of its own: the row its
            // heartbeat renews is never locked by the operation's transaction.
            All("CREATE TABLE IF NOT EXISTS {checkpoints} (
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                checkpoint TEXT NULL,
                PRIMARY KEY (name, run)
            ){options}"),
            All("INSERT INTO {checkpoints} (name, run, checkpoint) \
                 SELECT name, run, checkpoint FROM {operations} WHERE checkpoint IS NOT NULL"),
            // What recovery scans: claims by status and lease.
            All("CREATE INDEX {operations}_claims ON {operations} (status, lease_until)"),
        ],
    },
    Migration {
        version: 7,
        // A job queued before the operations it must follow have ended waits as `blocked`, naming them.
        statements: &[All("ALTER TABLE {jobs} ADD COLUMN blocked_by TEXT NULL")],
    },
    Migration {
        version: 8,
        // The append-only log of what people did by hand through the dashboard.
        statements: &[All("CREATE TABLE IF NOT EXISTS {audit} (
                {id},
                created_at BIGINT NOT NULL,
                actor VARCHAR(255) NOT NULL,
                action VARCHAR(32) NOT NULL,
                target VARCHAR(191) NULL,
                outcome VARCHAR(16) NOT NULL,
                before_status VARCHAR(16) NULL,
                after_status VARCHAR(16) NULL,
                reason TEXT NULL,
                detail TEXT NULL
            ){options}")],
    },
    Migration {
        version: 9,
        // Long runs (issue 17): each run's log lines (`ctx.log`), `pause NAME` (1 asked, 2 holding at a
        // checkpoint) and the time a `throttle_on` condition held the run back.
        statements: &[
            All("CREATE TABLE IF NOT EXISTS {logs} (
                {id},
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                at BIGINT NOT NULL,
                line TEXT NOT NULL
            ){options}"),
            All("CREATE INDEX {logs}_run ON {logs} (name, run, id)"),
            All("ALTER TABLE {operations} ADD COLUMN pause_requested BIGINT NULL"),
            All("ALTER TABLE {operations} ADD COLUMN throttled_since BIGINT NULL"),
            All("ALTER TABLE {operations} ADD COLUMN throttled_ms BIGINT NULL"),
        ],
    },
    Migration {
        version: 10,
        // Typed tasks (issue 16): a task run is a row of the operations table, one per dispatch, carrying its
        // arguments (JSON, sealed when the task is `encrypted`). One-time operations keep `args` NULL: that is
        // how every reader of the plan tells them apart.
        statements: &[All("ALTER TABLE {operations} ADD COLUMN args TEXT NULL")],
    },
    Migration {
        version: 11,
        // Recorded batches and chains (issue 16): one row per batch with its counters and named callbacks, one
        // per member run; on the workers a member's job carries its batch's id.
        statements: &[
            All("CREATE TABLE IF NOT EXISTS {job_batches} (
                {id},
                kind VARCHAR(8) NOT NULL,
                name VARCHAR(191) NULL,
                queue VARCHAR(64) NULL,
                in_process BIGINT NOT NULL,
                total BIGINT NOT NULL,
                pending BIGINT NOT NULL,
                failed BIGINT NOT NULL,
                skipped BIGINT NOT NULL,
                allow_failures BIGINT NOT NULL,
                then_callback VARCHAR(191) NULL,
                catch_callback VARCHAR(191) NULL,
                finally_callback VARCHAR(191) NULL,
                created_at BIGINT NOT NULL,
                cancelled_at BIGINT NULL,
                caught_at BIGINT NULL,
                failed_member VARCHAR(191) NULL,
                finished_at BIGINT NULL,
                callback_error TEXT NULL
            ){options}"),
            All("CREATE TABLE IF NOT EXISTS {batch_members} (
                batch_id BIGINT NOT NULL,
                position BIGINT NOT NULL,
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                state VARCHAR(16) NOT NULL,
                reason TEXT NULL,
                ended_at BIGINT NULL,
                PRIMARY KEY (batch_id, name, run)
            ){options}"),
            All("ALTER TABLE {jobs} ADD COLUMN batch_id BIGINT NULL"),
        ],
    },
    Migration {
        version: 13,
        // The dashboard at scale (issue 18): its operations list reads one page in `(timestamp, name)` order, all
        // of them or those of one status, through these indexes (names in byte order: PostgreSQL's "C"
        // collation, which the list's cursor compares with); each run's progress over time, sampled every
        // few seconds (the ETA from the recent rate, the progress history); when a checkpoint was written.
        statements: &[
            Postgres(
                r#"CREATE INDEX {operations}_listing ON {operations} (op_timestamp, name COLLATE "C")"#,
            ),
            Postgres(
                r#"CREATE INDEX {operations}_by_status ON {operations} (status, op_timestamp, name COLLATE "C")"#,
            ),
            NotPostgres("CREATE INDEX {operations}_listing ON {operations} (op_timestamp, name)"),
            NotPostgres(
                "CREATE INDEX {operations}_by_status ON {operations} (status, op_timestamp, name)",
            ),
            All("CREATE TABLE IF NOT EXISTS {progress_samples} (
                {id},
                name VARCHAR(191) NOT NULL,
                run BIGINT NOT NULL,
                at BIGINT NOT NULL,
                done BIGINT NOT NULL,
                total BIGINT NOT NULL
            ){options}"),
            All("CREATE INDEX {progress_samples}_run ON {progress_samples} (name, run, at)"),
            All("ALTER TABLE {checkpoints} ADD COLUMN written_at BIGINT NULL"),
        ],
    },
    Migration {
        version: 14,
        // Deferred operations are task runs (issue 16): a row of the old deferred table moved into one says which
        // run it became. A batch's callbacks are claimed under a lease, so that another worker runs them again
        // when their claimer dies mid-callback: the callbacks done so far, the claim, and when every callback due
        // was done. Batches that had ended before count as settled (their callbacks were started, as before), and
        // a catch already started as done: an upgrade runs no callback twice.
        statements: &[
            All("ALTER TABLE {deferred} ADD COLUMN task_run BIGINT NULL"),
            All("ALTER TABLE {job_batches} ADD COLUMN callbacks_done VARCHAR(64) NULL"),
            All("ALTER TABLE {job_batches} ADD COLUMN callback_token VARCHAR(32) NULL"),
            All("ALTER TABLE {job_batches} ADD COLUMN callback_lease_until BIGINT NULL"),
            All("ALTER TABLE {job_batches} ADD COLUMN callbacks_settled_at BIGINT NULL"),
            All("UPDATE {job_batches} SET callbacks_settled_at = finished_at WHERE finished_at IS NOT NULL"),
            All("UPDATE {job_batches} SET callbacks_done = 'catch' WHERE caught_at IS NOT NULL AND finished_at IS NULL"),
            All("CREATE INDEX {job_batches}_callbacks ON {job_batches} (callbacks_settled_at)"),
            // Each idle worker looks for rows left to move about once a second: by status, not a full scan.
            All("CREATE INDEX {deferred}_by_status ON {deferred} (status)"),
        ],
    },
    Migration {
        version: 15,
        // The dashboard's batch page (issue 18) reads a batch's members a page at a time, in order.
        statements: &[All(
            "CREATE INDEX {batch_members}_position ON {batch_members} (batch_id, position)",
        )],
    },
    Migration {
        version: 16,
        // Keys and names compare exactly as written (MySQL / MariaDB). Their columns took the server's default
        // collation: case- and accent-insensitive, and padded with spaces, so that `customer:Bob`, `customer:bob`
        // and `customer:bob ` were one `unique` key (a task dropped as the duplicate it was not), `Charge` and
        // `charge` one task. `{exact}` is a binary collation without padding ([`EXACT_COLLATIONS`]), the
        // semantics of SQLite and of PostgreSQL's "C" order the dashboard's cursors compare with. A binary
        // collation is stricter than the one it replaces: no two rows become one, nothing is truncated, indexes
        // keep their lengths. Tables added later declare their key and name columns with `{exact}`.
        statements: &[
            MySql("ALTER TABLE {operations} MODIFY name VARCHAR(191){exact} NOT NULL, \
                   MODIFY claim_token VARCHAR(32){exact} NULL"),
            MySql("ALTER TABLE {errors} MODIFY name VARCHAR(191){exact} NOT NULL"),
            MySql("ALTER TABLE {locks} MODIFY name VARCHAR(191){exact} NOT NULL, \
                   MODIFY owner VARCHAR(255){exact} NOT NULL"),
            MySql("ALTER TABLE {rate_limits} MODIFY name VARCHAR(191){exact} NOT NULL"),
            MySql("ALTER TABLE {throttles} MODIFY name VARCHAR(191){exact} NOT NULL"),
            MySql("ALTER TABLE {deferred} MODIFY handler VARCHAR(191){exact} NOT NULL, \
                   MODIFY claim_token VARCHAR(32){exact} NULL"),
            MySql("ALTER TABLE {jobs} MODIFY name VARCHAR(191){exact} NOT NULL, \
                   MODIFY queue VARCHAR(64){exact} NOT NULL, MODIFY worker VARCHAR(255){exact} NULL, \
                   MODIFY blocked_by TEXT{exact} NULL"),
            MySql("ALTER TABLE {checkpoints} MODIFY name VARCHAR(191){exact} NOT NULL"),
            MySql("ALTER TABLE {audit} MODIFY target VARCHAR(191){exact} NULL"),
            MySql("ALTER TABLE {logs} MODIFY name VARCHAR(191){exact} NOT NULL"),
            MySql("ALTER TABLE {job_batches} MODIFY name VARCHAR(191){exact} NULL, \
                   MODIFY queue VARCHAR(64){exact} NULL, MODIFY then_callback VARCHAR(191){exact} NULL, \
                   MODIFY catch_callback VARCHAR(191){exact} NULL, \
                   MODIFY finally_callback VARCHAR(191){exact} NULL, \
                   MODIFY failed_member VARCHAR(191){exact} NULL, \
                   MODIFY callback_token VARCHAR(32){exact} NULL"),
            MySql("ALTER TABLE {batch_members} MODIFY name VARCHAR(191){exact} NOT NULL"),
            MySql("ALTER TABLE {progress_samples} MODIFY name VARCHAR(191){exact} NOT NULL"),
        ],
    },
    Migration {
        version: 17,
        // A take reads the queue in its order, `available_at, id`, and stops after the jobs it takes (issue 19):
        // PostgreSQL's index ended at `available_at`, so each take sorted every queued job by `id` first (3 ms a
        // take with 10,000 queued). SQLite's and InnoDB's indexes end with the row's key already.
        statements: &[
            Postgres("CREATE INDEX IF NOT EXISTS {jobs}_take ON {jobs} (queue, status, available_at, id)"),
            Postgres("DROP INDEX IF EXISTS {jobs}_ready"),
        ],
    },
];

/// A migration's statement for this backend and table prefix: `{table}` → `<prefix>table`, and the backend's
/// words for `{id}` (the auto-increment key), `{options}` (MySQL's table options), `{jobs_key}` (MySQL's
/// index of the queue, declared in the table) and `{exact}` (MySQL's character set and `collation` of a column
/// compared exactly; nothing elsewhere, where text compares exactly already).
fn expand(statement: &str, dialect: Dialect, prefix: &str, collation: &str) -> String {
    let mysql = dialect == Dialect::MySql;
    let id = match dialect {
        Dialect::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT",
        Dialect::Postgres => "id BIGSERIAL PRIMARY KEY",
        Dialect::MySql => "id BIGINT AUTO_INCREMENT PRIMARY KEY",
    };
    let options = if mysql {
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    } else {
        ""
    };
    let jobs_key = if mysql {
        ",\n                KEY queue_ready (queue, status, available_at)"
    } else {
        ""
    };
    let exact = if mysql {
        format!(" CHARACTER SET utf8mb4 COLLATE {collation}")
    } else {
        String::new()
    };
    let mut s = statement
        .replace("{exact}", &exact)
        .replace("{id}", id)
        .replace("{options}", options)
        .replace("{jobs_key}", jobs_key);
    for table in TABLES {
        s = s.replace(&format!("{{{table}}}"), &format!("{prefix}{table}"));
    }
    debug_assert!(!s.contains('{'), "a marker left in `{s}`");
    s
}

/// Every version's statements for this backend and table prefix (and MySQL's exact `collation`), in order.
fn migrations<'a>(
    dialect: Dialect,
    prefix: &'a str,
    collation: &'a str,
) -> impl Iterator<Item = (i64, Vec<String>)> + 'a {
    MIGRATIONS.iter().map(move |m| {
        let statements = m.statements.iter().filter_map(|s| match s {
            All(s) => Some(s),
            NotMySql(s) => (dialect != Dialect::MySql).then_some(s),
            Postgres(s) => (dialect == Dialect::Postgres).then_some(s),
            NotPostgres(s) => (dialect != Dialect::Postgres).then_some(s),
            MySql(s) => (dialect == Dialect::MySql).then_some(s),
        });
        (
            m.version,
            statements
                .map(|s| expand(s, dialect, prefix, collation))
                .collect(),
        )
    })
}

impl Ledger {
    /// Applies the schema versions this database lacks.
    pub(super) async fn migrate(&self) -> Result<(), LedgerError> {
        // Serialize the ledger's own migrations between processes starting together: an advisory lock
        // (PostgreSQL) or `GET_LOCK` (MySQL / MariaDB) on one held connection; SQLite serializes its writers.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(q("migrate the ledger tables"))?;
        let key = format!("{}schema", self.prefix);
        let lock_id = sequencer_core::meta::checksum(key.as_bytes()) as i64;
        match self.dialect {
            Dialect::Postgres => {
                sqlx::query(&self.dialect.sql("SELECT pg_advisory_lock(?)"))
                    .bind(lock_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(q("lock the ledger schema"))?;
            }
            Dialect::MySql => {
                sqlx::query(&self.dialect.sql("SELECT GET_LOCK(?, 60)"))
                    .bind(key.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(q("lock the ledger schema"))?;
            }
            Dialect::Sqlite => {}
        }
        let result = self.migrate_on(&mut conn).await;
        let unlock = match self.dialect {
            Dialect::Postgres => sqlx::query(&self.dialect.sql("SELECT pg_advisory_unlock(?)"))
                .bind(lock_id)
                .execute(&mut *conn)
                .await
                .map(drop),
            Dialect::MySql => sqlx::query(&self.dialect.sql("SELECT RELEASE_LOCK(?)"))
                .bind(key.as_str())
                .execute(&mut *conn)
                .await
                .map(drop),
            Dialect::Sqlite => Ok(()),
        };
        result?;
        unlock.map_err(q("unlock the ledger schema"))
    }

    async fn migrate_on(&self, conn: &mut sqlx::AnyConnection) -> Result<(), LedgerError> {
        let create = self
            .dialect
            .sql(expand(VERSIONS_TABLE, self.dialect, &self.prefix, ""));
        conn.execute(create.as_str())
            .await
            .map_err(q("create the schema version table"))?;
        let versions = self.table("schema_versions");
        let read_versions = self.dialect.sql(format!("SELECT version FROM {versions}"));
        let applied: Vec<i64> = sqlx::query_scalar(&read_versions)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read schema versions"))?;
        // A version's statements and its record commit together where DDL is transactional (PostgreSQL, SQLite):
        // a version that fails half-way leaves nothing behind, and is applied whole by the next start. (MySQL and
        // MariaDB commit each DDL statement on its own.)
        let transactional = self.dialect != Dialect::MySql;
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            _ => "BEGIN",
        };
        let record = self.dialect.insert_ignore(format!(
            "INSERT INTO {versions} (version, applied_at) VALUES (?, ?)"
        ));
        let collation = match self.dialect {
            Dialect::MySql
                if migrations(self.dialect, &self.prefix, "")
                    .any(|(version, _)| !applied.contains(&version)) =>
            {
                exact_collation(conn).await?
            }
            _ => String::new(),
        };
        'versions: for (version, statements) in migrations(self.dialect, &self.prefix, &collation) {
            if applied.contains(&version) {
                continue;
            }
            if transactional {
                if let Err(e) = conn.execute(begin).await {
                    // SQLite: another process holds the write lock, applying this version perhaps.
                    if applied_meanwhile(conn, &read_versions, version).await? {
                        continue 'versions;
                    }
                    return Err(q("begin a schema version")(e));
                }
            }
            for s in statements {
                if let Err(e) = conn.execute(self.dialect.sql(s).as_str()).await {
                    if transactional {
                        conn.execute("ROLLBACK")
                            .await
                            .map_err(q("roll back a schema version"))?;
                    }
                    // On SQLite another process may be applying this version at the same moment: wait for it.
                    if applied_meanwhile(conn, &read_versions, version).await? {
                        continue 'versions;
                    }
                    return Err(q("migrate the ledger tables")(e));
                }
            }
            let recorded = sqlx::query(&record)
                .bind(version)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(q("record a schema version"));
            if let Err(e) = recorded {
                if transactional {
                    let _ = conn.execute("ROLLBACK").await;
                }
                return Err(e);
            }
            if transactional {
                conn.execute("COMMIT")
                    .await
                    .map_err(q("commit a schema version"))?;
            }
        }
        Ok(())
    }
}

/// Whether another process records `version` applied within about five seconds.
async fn applied_meanwhile(
    conn: &mut sqlx::AnyConnection,
    read_versions: &str,
    version: i64,
) -> Result<bool, LedgerError> {
    for _ in 0..50 {
        let now: Vec<i64> = sqlx::query_scalar(read_versions)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read schema versions"))?;
        if now.contains(&version) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::{migrations, Dialect};

    #[test]
    fn every_marker_is_expanded_on_every_backend() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let all: Vec<(i64, Vec<String>)> =
                migrations(dialect, "p_", "utf8mb4_nopad_bin").collect();
            let versions: Vec<i64> = all.iter().map(|(v, _)| *v).collect();
            assert_eq!(
                versions,
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17]
            );
            // The take's index, on PostgreSQL only (the others' indexes end with the key already).
            let take = all
                .iter()
                .find(|(v, _)| *v == 17)
                .map(|(_, s)| s.join("\n"))
                .unwrap_or_default();
            assert_eq!(
                take.contains("CREATE INDEX IF NOT EXISTS p_jobs_take ON p_jobs (queue, status, available_at, id)"),
                dialect == Dialect::Postgres,
                "{take}"
            );
            let exact = all
                .iter()
                .find(|(v, _)| *v == 16)
                .map(|(_, s)| s.join("\n"))
                .unwrap_or_default();
            assert_eq!(
                exact.matches("ALTER TABLE p_").count(),
                if dialect == Dialect::MySql { 13 } else { 0 },
                "{exact}"
            );
            assert_eq!(
                exact
                    .matches(" CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
                    .count(),
                if dialect == Dialect::MySql { 25 } else { 0 },
                "{exact}"
            );
            let jobs = all[4].1.join("\n");
            assert!(
                jobs.contains("CREATE TABLE IF NOT EXISTS p_jobs ("),
                "{jobs}"
            );
            assert_eq!(
                jobs.contains("CREATE INDEX IF NOT EXISTS p_jobs_ready ON p_jobs"),
                dialect != Dialect::MySql,
                "{jobs}"
            );
            assert_eq!(jobs.contains("KEY queue_ready"), dialect == Dialect::MySql);
            let listing = all
                .iter()
                .find(|(v, _)| *v == 13)
                .map(|(_, s)| s.join("\n"))
                .unwrap_or_default();
            assert_eq!(
                listing.contains(r#"name COLLATE "C""#),
                dialect == Dialect::Postgres,
                "{listing}"
            );
            assert_eq!(listing.matches("CREATE INDEX p_operations_").count(), 2);
        }
    }
}
