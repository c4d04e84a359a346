//! What a caller chooses: the options of `process` and `work`, rate limits, rollback targets, the strategy, and
//! the defaults.

use std::time::Duration;

use sequencer_core::Timestamp;

/// How long a claim holds without a heartbeat, unless set: the builder's [`lease`](crate::SequencerBuilder::lease)
/// for operations, and [`WorkOptions::lease`] for a worker's jobs and the operations it runs (one setting drives
/// both, so that a job is never rescued while its operation's claim is alive).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The default ledger: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sequencer.db";

/// Operations run at once by the parallel orchestrators unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What to run: the options of `process`, for [`Sequencer::process`](crate::Sequencer::process) and [`Sequencer::preview`](crate::Sequencer::preview). Start from
/// `ProcessOptions::default()` (every pending operation, as `process` without flags).
///
/// ```
/// use sequencer::{ProcessOptions, Timestamp};
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", tags = ["billing"])]
///     async fn create_invoices(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     #[operation(timestamp = "2024_02_01_000000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sequencer::SequencerError> {
/// # let ledger = sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry())).await?;
/// # let seq = &ledger.sequencer;
/// // `process --tags billing --to 2024_01_31_235959 --dry-run`:
/// let opts = ProcessOptions {
///     tags: vec!["billing".into()],
///     to: Some("2024_01_31_235959".parse::<Timestamp>().unwrap()),
///     dry_run: true,
///     ..ProcessOptions::default()
/// };
/// assert_eq!(seq.process(&opts).await?.planned, ["2024_01_15_120000_create_invoices"]);
///
/// // `process --repeat`: completed operations run again, as new runs.
/// seq.process(&ProcessOptions::default()).await?;
/// let again = seq.process(&ProcessOptions { repeat: true, ..ProcessOptions::default() }).await?;
/// assert_eq!(again.planned.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Plan only.
    pub dry_run: bool,
    /// Only operations at or after this timestamp.
    pub from: Option<Timestamp>,
    /// Only operations at or before this timestamp.
    pub to: Option<Timestamp>,
    /// Only operations with one of these tags.
    pub tags: Vec<String>,
    /// Run completed operations again (new runs); refuses operations that never ran.
    pub repeat: bool,
    /// Hold the global lock for the whole run.
    pub isolate: bool,
    /// With `isolate`, what to do when another process holds the lock (`--wait[=DURATION]`): by default fail
    /// at once with [`SequencerError::LockHeld`](crate::SequencerError::LockHeld).
    pub lock_wait: LockWait,
    /// How many operations the parallel orchestrators run at once (default [`DEFAULT_CONCURRENCY`]).
    pub concurrency: Option<usize>,
    /// Only operations with `execute_at` / `delay` (the `scheduled` command).
    pub only_scheduled: bool,
    /// Only these operations (ledger names), when not empty.
    pub only: Vec<String>,
    /// Only operations whose timestamp, as a number, is at most this migration version (`migrate`).
    pub up_to_version: Option<i64>,
    /// Emit no `NoPendingOperations` event when nothing is due (`migrate` runs many small steps).
    pub quiet: bool,
    /// Run `asynchronous` operations in this process instead of queueing them (`--sync`).
    pub sync: bool,
    /// Queue every due operation for the workers (`--async`).
    pub queue_all: bool,
    /// Run every due operation on the workers, in the orchestrator's order, and wait for each (`--dispatch`):
    /// dependencies, concurrency and failure policies hold as in-process.
    pub dispatch: bool,
    /// When an operation fails, roll back the Rollbackable operations this run completed, in reverse
    /// (`--rollback-on-failure`; the sequential and scheduled orchestrators). Off by default: a default never
    /// undoes work on its own. The transactional batch always rolls back.
    pub rollback_on_failure: bool,
    /// Wait for the workers to end the operations this run queues (as `migrate` does before each migration:
    /// what was planned before a migration must have completed before it is applied).
    pub await_queued: bool,
}

/// What `process` with [`isolate`](ProcessOptions::isolate) does when another process holds the isolation lock.
/// While it waits it sends [`Event::WaitingForLock`](crate::Event::WaitingForLock) once, and
/// [`Sequencer::cancel`](crate::Sequencer::cancel) ends the wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once (`process --isolate`).
    #[default]
    No,
    /// Wait until the lock is free (`--wait`).
    Forever,
    /// Wait at most this long, then fail (`--wait=30s`).
    AtMost(Duration),
}

/// The application's own name, version and description, which the CLI's `--help` and `--version` show. Set it
/// with [`SequencerBuilder::app`](crate::SequencerBuilder::app), from the application's `Cargo.toml` with
/// `sequencer::app_info!()`; without it they show the binary's file name and the sequencer version it was built
/// with.
///
/// ```
/// use sequencer::AppInfo;
///
/// let info = AppInfo::new("inventory", "3.1.4").about("Inventory's one-time operations.");
/// assert_eq!((info.name.as_str(), info.version.as_str()), ("inventory", "3.1.4"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppInfo {
    /// Its name: `inventory 3.1.4` in `--version`, and the program in `--help`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line on what it is, at the top of `--help` (the CLI's own line when empty).
    pub about: String,
}

impl AppInfo {
    /// An application's name and version.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> AppInfo {
        AppInfo {
            name: name.into(),
            version: version.into(),
            about: String::new(),
        }
    }

    /// Its description.
    pub fn about(mut self, about: impl Into<String>) -> AppInfo {
        self.about = about.into();
        self
    }
}

/// A rate: at most `count` starts per `per`, for [`SequencerBuilder::rate_limiter`](crate::SequencerBuilder::rate_limiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Starts allowed per window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Limit {
    /// `count` starts per second.
    pub fn per_second(count: u32) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(1),
        }
    }

    /// `count` starts per minute.
    pub fn per_minute(count: u32) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// `count` starts per hour.
    pub fn per_hour(count: u32) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(3600),
        }
    }
}

/// Which operations `rollback` undoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// Every operation completed in this batch.
    Batch(i64),
    /// The last N completed operations.
    Step(usize),
    /// One operation.
    Op(String),
}

/// What `rollback` does when completed operations depend (directly or not) on one it undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cascade {
    /// Refuse, naming them; nothing is undone (the default).
    #[default]
    Refuse,
    /// Roll them back first, dependents before what they depend on, each recorded (`--cascade`). A dependent
    /// without a rollback stops the cascade before anything is undone.
    Dependents,
    /// As [`Cascade::Dependents`], but a dependent without a rollback is recorded
    /// [`stale`](crate::ledger::Status::Stale) (it needs a person, and `process` never runs it), never left
    /// `completed` over undone work (`--cascade --force`).
    Force,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkOptions {
    /// The queue it serves (`queue = "name"` on the operation; `default` otherwise).
    pub queue: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Stop once the queue is empty (for tests and one-off drains) instead of waiting for more.
    pub until_idle: bool,
    /// How long a claimed job, and the claim of the operation it runs, is held without a heartbeat (default
    /// [`DEFAULT_LEASE`]).
    pub lease: Duration,
    /// On shutdown, how long running jobs may take to finish before they are cancelled.
    pub grace: Duration,
    /// At most this many completions are acknowledged in one transaction (default [`DEFAULT_ACK_BATCH`]): see
    /// [`WorkOptions::ack_interval`].
    pub ack_batch: usize,
    /// How long a completion may wait to be acknowledged with others (default [`DEFAULT_ACK_INTERVAL`]). A worker
    /// writes the `completed` rows of the runs whose functions returned, and the end of their jobs, in one
    /// transaction: when `ack_batch` of them wait, when the oldest has waited this long, or at once when no job of
    /// the worker is running. Until then each run stays `running` under its renewed lease; a worker that dies
    /// before acknowledging leaves it to recovery, as a death mid-run does.
    pub ack_interval: Duration,
}

/// Completions acknowledged in one transaction at most, by default: see [`WorkOptions::ack_batch`].
pub const DEFAULT_ACK_BATCH: usize = 100;

/// How long a completion waits at most to be acknowledged with others, by default: see
/// [`WorkOptions::ack_interval`].
pub const DEFAULT_ACK_INTERVAL: Duration = Duration::from_millis(5);

impl Default for WorkOptions {
    fn default() -> Self {
        WorkOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            concurrency: 8,
            until_idle: false,
            lease: DEFAULT_LEASE,
            grace: Duration::from_secs(30),
            ack_batch: DEFAULT_ACK_BATCH,
            ack_interval: DEFAULT_ACK_INTERVAL,
        }
    }
}

/// The queue of operations without `queue = "..."`.
pub const DEFAULT_QUEUE: &str = "default";

/// Decides whether a run may start: hostname, environment or anything else.
pub trait Guard: Send + Sync {
    /// `Err(reason)` refuses the run.
    fn check(&self, host: &str, environment: Option<&str>) -> Result<(), String>;
}

impl<F: Fn(&str, Option<&str>) -> Result<(), String> + Send + Sync> Guard for F {
    fn check(&self, host: &str, environment: Option<&str>) -> Result<(), String> {
        self(host, environment)
    }
}

/// Only these hosts may run operations.
pub fn only_hosts(hosts: &[&str]) -> impl Guard {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    move |host: &str, _: Option<&str>| {
        if hosts.iter().any(|h| h == host) {
            Ok(())
        } else {
            Err(format!("host `{host}` is not one of {hosts:?}"))
        }
    }
}

/// Only these environments may run operations.
pub fn only_environments(envs: &[&str]) -> impl Guard {
    let envs: Vec<String> = envs.iter().map(|e| (*e).to_owned()).collect();
    move |_: &str, env: Option<&str>| match env {
        Some(e) if envs.iter().any(|x| x == e) => Ok(()),
        other => Err(format!("environment {other:?} is not one of {envs:?}")),
    }
}

/// The longest lease: a claim held for a day without a heartbeat is a mistake, not a plan.
pub const MAX_LEASE: Duration = Duration::from_secs(86_400);

/// A lease: more than zero, at most [`MAX_LEASE`].
pub(crate) fn check_lease(lease: Duration) -> Result<(), String> {
    if lease.is_zero() || lease > MAX_LEASE {
        return Err(format!(
            "a lease of {} ms: it must be more than 0 and at most a day (the default is {} s)",
            lease.as_millis(),
            DEFAULT_LEASE.as_secs()
        ));
    }
    Ok(())
}

/// A queue name: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:` (the queue column holds 64).
pub(crate) fn check_queue(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "queue name `{}`: use 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`",
            name.escape_debug()
        ))
    }
}

/// A `unique` or `without_overlapping` key: 1 to 160 characters, none a control character (the lock column
/// holds 191 with its prefix).
pub(crate) fn check_lock_key(key: &str) -> Result<(), String> {
    if (1..=160).contains(&key.chars().count()) && !key.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!(
            "lock key `{}`: use 1 to 160 characters, none of them control characters",
            key.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_reaches_sql_is_checked_first() {
        assert!(check_lease(DEFAULT_LEASE).is_ok());
        assert!(check_lease(Duration::ZERO).is_err());
        assert!(check_lease(MAX_LEASE + Duration::from_secs(1)).is_err());
        assert!(check_queue("mail.high-priority:eu_1").is_ok());
        for bad in ["", "with space", "quote'", &"q".repeat(65), "ümlaut"] {
            assert!(check_queue(bad).is_err(), "{bad}");
        }
        assert!(check_lock_key("import users / tenant 42").is_ok());
        for bad in ["", "tab\there", &"k".repeat(161)] {
            assert!(check_lock_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_worker_leases_its_jobs_as_long_as_operations_are_leased() {
        // A job leased for less than its operation's claim was rescued while the operation still ran.
        assert_eq!(WorkOptions::default().lease, DEFAULT_LEASE);
    }
}
