//! Every statement the ledger runs, per backend, in one place so the SQL can be reviewed.
//!
//! Statements are written with `?` placeholders; PostgreSQL's `$n` are derived from them.

use super::Dialect;

/// The ledger's statements for one backend and table prefix, built once at start-up.
#[derive(Debug, Clone)]
pub struct Sql {
    pub dialect: Dialect,
    /// `INSERT INTO operations (...) VALUES ` of [`Sql::insert_pending_many`].
    pub insert_pending_head: String,
    pub schema: Vec<(i64, Vec<String>)>,
    pub create_version_table: String,
    pub versions: String,
    pub record_version: String,
    pub rows: String,
    pub row_of: String,
    pub claim: String,
    pub insert_running: String,
    pub new_batch: String,
    pub attempt: String,
    pub heartbeat: String,
    pub finish: String,
    pub record_error: String,
    pub expire_leases: String,
    pub interrupt_one: String,
    pub set_status: String,
    pub schedule: String,
    pub forget: String,
    pub forget_errors: String,
    pub forget_jobs: String,
    pub errors_all: String,
    pub errors_of: String,
    pub lock_sqlite: String,
    pub lock_expire: String,
    pub lock_insert: String,
    pub window_insert: String,
    pub window_hit: String,
    pub throttle_insert: String,
    pub throttle_failure: String,
    pub throttle_open: String,
    pub throttle_state: String,
    pub progress: String,
    pub checkpoint_write: String,
    pub checkpoint_read: String,
    pub cancel_request: String,
    pub cancel_state: String,
    pub defer: String,
    pub deferred_due: String,
    pub deferred_claim: String,
    pub deferred_end: String,
    pub deferred_renew: String,
    pub deferred_all: String,
    pub deferred_one: String,
    pub job_requeue: String,
    pub job_insert: String,
    pub job_rescue: String,
    pub job_select: String,
    pub job_take: String,
    pub job_take_returning: String,
    pub job_heartbeat: String,
    pub job_end: String,
    pub job_end_notify: String,
    pub job_counts: String,
    pub job_status: String,
    pub unlock_sqlite: String,
    pub renew_lock_sqlite: String,
}

const ROW_COLUMNS: &str =
    "name, run, op_timestamp, batch, status, attempts, started_at, finished_at, duration_ms, \
                           lease_until, host, pid, actor, checksum, skip_reason, last_error, due_at, \
                           progress_done, progress_total, cancel_requested";

impl Sql {
    pub fn new(dialect: Dialect, prefix: &str) -> Sql {
        let ops = format!("{prefix}operations");
        let errors = format!("{prefix}errors");
        let batches = format!("{prefix}batches");
        let locks = format!("{prefix}locks");
        let versions = format!("{prefix}schema_versions");
        let id = match dialect {
            Dialect::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "id BIGSERIAL PRIMARY KEY",
            Dialect::MySql => "id BIGINT AUTO_INCREMENT PRIMARY KEY",
        };
        let table_suffix = if dialect == Dialect::MySql {
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        } else {
            ""
        };
        let v1 = vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {ops} (
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
                ){table_suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {errors} (
                    {id},
                    name VARCHAR(191) NOT NULL,
                    run BIGINT NOT NULL,
                    attempt BIGINT NOT NULL,
                    message TEXT NOT NULL,
                    chain TEXT NOT NULL,
                    created_at BIGINT NOT NULL
                ){table_suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {batches} (
                    {id},
                    started_at BIGINT NOT NULL,
                    host VARCHAR(255) NOT NULL,
                    pid BIGINT NOT NULL,
                    actor VARCHAR(255) NULL
                ){table_suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {locks} (
                    name VARCHAR(191) NOT NULL PRIMARY KEY,
                    owner VARCHAR(255) NOT NULL,
                    expires_at BIGINT NOT NULL
                ){table_suffix}"
            ),
        ];
        let jobs_index = if dialect == Dialect::MySql {
            String::from(
                ",\n                                KEY queue_ready (queue, status, available_at)",
            )
        } else {
            String::new()
        };
        let ignore = |insert: &str| insert_ignore(dialect, insert);
        let sql = Sql {
            dialect,
            insert_pending_head: format!(
                "INSERT INTO {ops} (name, run, op_timestamp, status, attempts) VALUES "
            ),
            schema: vec![
                (1, v1),
                (2, vec![format!("ALTER TABLE {ops} ADD COLUMN due_at BIGINT NULL")]),
                (
                    3,
                    vec![
                        format!(
                            "CREATE TABLE IF NOT EXISTS {prefix}rate_limits (
                                name VARCHAR(191) NOT NULL,
                                window_start BIGINT NOT NULL,
                                hits BIGINT NOT NULL,
                                PRIMARY KEY (name, window_start)
                            ){table_suffix}"
                        ),
                        format!(
                            "CREATE TABLE IF NOT EXISTS {prefix}throttles (
                                name VARCHAR(191) NOT NULL PRIMARY KEY,
                                failures BIGINT NOT NULL,
                                window_start BIGINT NOT NULL,
                                open_until BIGINT NOT NULL
                            ){table_suffix}"
                        ),
                    ],
                ),
                (
                    4,
                    vec![
                        format!("ALTER TABLE {ops} ADD COLUMN progress_done BIGINT NULL"),
                        format!("ALTER TABLE {ops} ADD COLUMN progress_total BIGINT NULL"),
                        format!("ALTER TABLE {ops} ADD COLUMN checkpoint TEXT NULL"),
                        format!("ALTER TABLE {ops} ADD COLUMN cancel_requested BIGINT NULL"),
                        format!(
                            "CREATE TABLE IF NOT EXISTS {prefix}deferred (
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
                            ){table_suffix}"
                        ),
                    ],
                ),
                (5, {
                    let mut v = vec![format!(
                        "CREATE TABLE IF NOT EXISTS {prefix}jobs (
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
                            UNIQUE (name, run){jobs_index}
                        ){table_suffix}"
                    )];
                    if dialect != Dialect::MySql {
                        v.push(format!("CREATE INDEX IF NOT EXISTS {prefix}jobs_ready ON {prefix}jobs (queue, status, available_at)"));
                    }
                    v
                }),
            ],
            create_version_table: format!(
                "CREATE TABLE IF NOT EXISTS {versions} (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL){table_suffix}"
            ),
            versions: format!("SELECT version FROM {versions}"),
            record_version: ignore(&format!("INSERT INTO {versions} (version, applied_at) VALUES (?, ?)")),
            // The latest run of every operation.
            rows: format!(
                "SELECT {ROW_COLUMNS} FROM {ops} o WHERE run = (SELECT MAX(run) FROM {ops} i WHERE i.name = o.name) ORDER BY op_timestamp, name"
            ),
            row_of: format!("SELECT {ROW_COLUMNS} FROM {ops} WHERE name = ? AND run = ?"),
            // The claim: one atomic statement; whoever changes the row owns the operation.
            claim: format!(
                "UPDATE {ops} SET checkpoint = CASE WHEN status = 'rolled_back' THEN NULL ELSE checkpoint END, \
                 progress_done = CASE WHEN status = 'rolled_back' THEN NULL ELSE progress_done END, \
                 status = 'running', batch = ?, attempts = 1, started_at = ?, finished_at = NULL, \
                 duration_ms = NULL, lease_until = ?, host = ?, pid = ?, actor = ?, checksum = ?, skip_reason = NULL, cancel_requested = NULL, \
                 last_error = NULL WHERE name = ? AND run = ? AND status IN ('pending', 'failed', 'rolled_back', ?, ?)"
            ),
            // `--repeat`: a new run of a completed operation; the primary key makes it atomic.
            insert_running: ignore(&format!(
                "INSERT INTO {ops} (name, run, op_timestamp, batch, status, attempts, started_at, lease_until, host, pid, actor, checksum) \
                 VALUES (?, ?, ?, ?, 'running', 1, ?, ?, ?, ?, ?, ?)"
            )),
            new_batch: match dialect {
                Dialect::MySql => format!("INSERT INTO {batches} (started_at, host, pid, actor) VALUES (?, ?, ?, ?)"),
                _ => format!("INSERT INTO {batches} (started_at, host, pid, actor) VALUES (?, ?, ?, ?) RETURNING id"),
            },
            // Writes of a running operation name its owner: once another process has recovered the row after an
            // expired lease, they change nothing.
            attempt: format!(
                "UPDATE {ops} SET attempts = ?, lease_until = ? WHERE name = ? AND run = ? AND status = 'running' AND host = ? AND pid = ?"
            ),
            heartbeat: format!(
                "UPDATE {ops} SET lease_until = ? WHERE name = ? AND run = ? AND status = 'running' AND host = ? AND pid = ?"
            ),
            finish: format!(
                "UPDATE {ops} SET status = ?, finished_at = ?, duration_ms = ?, lease_until = NULL, skip_reason = ?, last_error = ? \
                 WHERE name = ? AND run = ? AND status = 'running' AND host = ? AND pid = ?"
            ),
            record_error: format!(
                "INSERT INTO {errors} (name, run, attempt, message, chain, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            expire_leases: format!(
                "UPDATE {ops} SET status = 'interrupted', finished_at = ?, last_error = ? WHERE status = 'running' AND lease_until < ?"
            ),
            interrupt_one: format!(
                "UPDATE {ops} SET status = 'interrupted', finished_at = ?, last_error = ? \
                 WHERE name = ? AND run = ? AND status = 'running' AND host = ? AND pid = ?"
            ),
            set_status: format!(
                "UPDATE {ops} SET status = ?, finished_at = ?, skip_reason = ?, lease_until = NULL WHERE name = ? AND run = ? AND status = ?"
            ),
            forget: format!("DELETE FROM {ops} WHERE name = ?"),
            forget_errors: format!("DELETE FROM {errors} WHERE name = ?"),
            // A running job is left to its worker; its operation row is gone, so it ends as not run.
            forget_jobs: format!("DELETE FROM {prefix}jobs WHERE name = ? AND status <> 'running'"),
            schedule: format!("UPDATE {ops} SET status = 'scheduled', due_at = ? WHERE name = ? AND run = ? AND status = 'pending'"),
            errors_all: format!("SELECT name, run, attempt, message, chain, created_at FROM {errors} ORDER BY id"),
            errors_of: format!("SELECT name, run, attempt, message, chain, created_at FROM {errors} WHERE name = ? ORDER BY id"),
            lock_sqlite: format!(
                "INSERT INTO {locks} (name, owner, expires_at) VALUES (?, ?, ?) \
                 ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE {locks}.expires_at < ?"
            ),
            unlock_sqlite: format!("DELETE FROM {locks} WHERE name = ? AND owner = ?"),
            // Named locks of `unique` and `without_overlapping`: drop an expired holder, then insert; the primary
            // key makes the insert the atomic step.
            lock_expire: format!("DELETE FROM {locks} WHERE name = ? AND expires_at < ?"),
            lock_insert: ignore(&format!("INSERT INTO {locks} (name, owner, expires_at) VALUES (?, ?, ?)")),
            window_insert: ignore(&format!("INSERT INTO {prefix}rate_limits (name, window_start, hits) VALUES (?, ?, 0)")),
            window_hit: format!("UPDATE {prefix}rate_limits SET hits = hits + 1 WHERE name = ? AND window_start = ? AND hits < ?"),
            throttle_insert: ignore(&format!("INSERT INTO {prefix}throttles (name, failures, window_start, open_until) VALUES (?, 0, ?, 0)")),
            throttle_failure: format!(
                "UPDATE {prefix}throttles SET failures = CASE WHEN window_start < ? THEN 1 ELSE failures + 1 END, \
                 window_start = CASE WHEN window_start < ? THEN ? ELSE window_start END WHERE name = ?"
            ),
            throttle_open: format!("UPDATE {prefix}throttles SET open_until = ?, failures = 0, window_start = ? WHERE name = ? AND failures >= ?"),
            throttle_state: format!("SELECT open_until FROM {prefix}throttles WHERE name = ?"),
            progress: format!("UPDATE {ops} SET progress_done = ?, progress_total = ? WHERE name = ? AND run = ?"),
            checkpoint_write: format!("UPDATE {ops} SET checkpoint = ? WHERE name = ? AND run = ?"),
            checkpoint_read: format!("SELECT checkpoint FROM {ops} WHERE name = ? AND run = ?"),
            cancel_request: format!("UPDATE {ops} SET cancel_requested = 1 WHERE name = ? AND status = 'running'"),
            cancel_state: format!("SELECT cancel_requested FROM {ops} WHERE name = ? AND run = ?"),
            defer: format!(
                "INSERT INTO {prefix}deferred (handler, payload, due_at, attempts, max_attempts, status, created_at) VALUES (?, ?, ?, 0, ?, 'pending', ?)"
            ),
            deferred_due: format!(
                "SELECT id FROM {prefix}deferred WHERE (status = 'pending' AND due_at <= ?) OR (status = 'running' AND locked_until < ?) ORDER BY due_at, id"
            ),
            deferred_claim: format!(
                "UPDATE {prefix}deferred SET status = 'running', attempts = attempts + 1, locked_until = ? \
                 WHERE id = ? AND ((status = 'pending' AND due_at <= ?) OR (status = 'running' AND locked_until < ?))"
            ),
            deferred_renew: format!(
                "UPDATE {prefix}deferred SET locked_until = ? WHERE id = ? AND status = 'running'"
            ),
            deferred_end: format!("UPDATE {prefix}deferred SET status = ?, due_at = ?, last_error = ?, locked_until = NULL WHERE id = ?"),
            job_requeue: format!(
                "UPDATE {prefix}jobs SET status = 'queued', available_at = ?, attempts = 0, worker = NULL, lease_until = NULL, last_error = NULL \
                 WHERE name = ? AND run = ? AND status IN ('done', 'failed')"
            ),
            job_insert: ignore(&format!(
                "INSERT INTO {prefix}jobs (name, run, queue, status, available_at, attempts, created_at) VALUES (?, ?, ?, 'queued', ?, 0, ?)"
            )),
            job_rescue: format!("UPDATE {prefix}jobs SET status = 'queued', worker = NULL, lease_until = NULL WHERE status = 'running' AND lease_until < ?"),
            // PostgreSQL, MySQL 8 and MariaDB 10.6+: workers skip the rows another worker has locked.
            job_select: format!(
                "SELECT id, name, run FROM {prefix}jobs WHERE queue = ? AND status = 'queued' AND available_at <= ? ORDER BY available_at, id LIMIT {{limit}} FOR UPDATE SKIP LOCKED"
            ),
            job_take: format!("UPDATE {prefix}jobs SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ?"),
            // One statement claims a batch: SQLite has one writer at a time, PostgreSQL skips rows other workers
            // hold. (MariaDB has no `UPDATE ... RETURNING`: it selects, then updates, in one transaction.)
            job_take_returning: format!(
                "UPDATE {prefix}jobs SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM {prefix}jobs WHERE queue = ? AND status = 'queued' AND available_at <= ? ORDER BY available_at, id LIMIT {{limit}}{}) \
                 RETURNING id, name, run",
                if dialect == Dialect::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" }
            ),
            job_heartbeat: format!("UPDATE {prefix}jobs SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'"),
            job_end: format!("UPDATE {prefix}jobs SET status = ?, finished_at = ?, lease_until = NULL, last_error = ? WHERE id = ? AND worker = ?"),
            // PostgreSQL: end the job and tell the waiting dispatchers in one statement (one commit).
            job_end_notify: format!(
                "WITH ended AS (UPDATE {prefix}jobs SET status = ?, finished_at = ?, lease_until = NULL, last_error = ? WHERE id = ? AND worker = ?) \
                 SELECT pg_notify(?, ?)"
            ),
            job_status: format!("SELECT status FROM {prefix}jobs WHERE name = ? AND run = ?"),
            job_counts: format!("SELECT status, COUNT(*) FROM {prefix}jobs WHERE queue = ? GROUP BY status"),
            deferred_one: format!(
                "SELECT id, handler, payload, due_at, attempts, max_attempts, status, last_error FROM {prefix}deferred WHERE id = ?"
            ),
            deferred_all: format!(
                "SELECT id, handler, payload, due_at, attempts, max_attempts, status, last_error FROM {prefix}deferred ORDER BY id"
            ),
            renew_lock_sqlite: format!("UPDATE {locks} SET expires_at = ? WHERE name = ? AND owner = ?"),
        };
        if dialect == Dialect::Postgres {
            sql.numbered()
        } else {
            sql
        }
    }

    /// PostgreSQL numbers its placeholders.
    fn numbered(mut self) -> Sql {
        for s in [
            &mut self.record_version,
            &mut self.claim,
            &mut self.insert_running,
            &mut self.new_batch,
            &mut self.attempt,
            &mut self.heartbeat,
            &mut self.finish,
            &mut self.record_error,
            &mut self.expire_leases,
            &mut self.interrupt_one,
            &mut self.set_status,
            &mut self.forget,
            &mut self.forget_errors,
            &mut self.forget_jobs,
            &mut self.schedule,
            &mut self.lock_expire,
            &mut self.lock_insert,
            &mut self.window_insert,
            &mut self.window_hit,
            &mut self.throttle_insert,
            &mut self.throttle_failure,
            &mut self.throttle_open,
            &mut self.throttle_state,
            &mut self.progress,
            &mut self.checkpoint_write,
            &mut self.checkpoint_read,
            &mut self.cancel_request,
            &mut self.cancel_state,
            &mut self.defer,
            &mut self.deferred_due,
            &mut self.deferred_claim,
            &mut self.deferred_end,
            &mut self.deferred_renew,
            &mut self.deferred_one,
            &mut self.job_requeue,
            &mut self.job_insert,
            &mut self.job_rescue,
            &mut self.job_select,
            &mut self.job_take,
            &mut self.job_heartbeat,
            &mut self.job_end,
            &mut self.job_end_notify,
            &mut self.job_take_returning,
            &mut self.job_counts,
            &mut self.job_status,
            &mut self.row_of,
            &mut self.unlock_sqlite,
            &mut self.errors_of,
        ] {
            *s = number_placeholders(s);
        }
        self
    }
}

impl Sql {
    /// One statement inserting `count` pending rows (rows that exist are left alone).
    pub fn insert_pending_many(&self, count: usize) -> String {
        let values = vec!["(?, 0, ?, 'pending', 0)"; count].join(", ");
        let insert = insert_ignore(
            self.dialect,
            &format!("{}{values}", self.insert_pending_head),
        );
        match self.dialect {
            Dialect::Postgres => number_placeholders(&insert),
            _ => insert,
        }
    }
}

/// An `INSERT` that leaves rows whose key exists alone, in the backend's words.
fn insert_ignore(dialect: Dialect, insert: &str) -> String {
    match dialect {
        Dialect::Sqlite => insert.replacen("INSERT", "INSERT OR IGNORE", 1),
        Dialect::Postgres => format!("{insert} ON CONFLICT DO NOTHING"),
        Dialect::MySql => insert.replacen("INSERT", "INSERT IGNORE", 1),
    }
}

/// `?` → `$1`, `$2`, …: SQL written once with `?` placeholders, for PostgreSQL (the ledger writes its statements
/// so; so may operations that run the same SQL on every backend through `ctx.pool()`). Every `?` is replaced,
/// so keep them out of string literals.
///
/// ```
/// use sequencer::ledger::number_placeholders;
///
/// assert_eq!(number_placeholders("UPDATE t SET a = ? WHERE id = ?"), "UPDATE t SET a = $1 WHERE id = $2");
/// ```
pub fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}
