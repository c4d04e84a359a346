//! The command line's arguments: the clap types, and the parsers of their values.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::{AppInfo, LockWait, Timestamp};

/// The command line with the application's name, version and description ([`AppInfo`]), else the binary's name
/// (from `argv0`) and the sequencer version it was built with.
pub(super) fn command(app: Option<&AppInfo>, argv0: Option<&std::ffi::OsStr>) -> clap::Command {
    let cli = Cli::command();
    match app {
        Some(app) => {
            let cli = cli
                .name(app.name.clone())
                .display_name(app.name.clone())
                .version(app.version.clone());
            match app.about.trim() {
                "" => cli,
                about => cli.about(about.to_owned()),
            }
        }
        None => {
            let name = argv0
                .and_then(|a| std::path::Path::new(a).file_stem())
                .map_or_else(
                    || "sequencer".to_owned(),
                    |s| s.to_string_lossy().into_owned(),
                );
            cli.name(name.clone()).display_name(name).version(concat!(
                "(sequencer ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
        }
    }
}

/// Run, inspect and undo one-time operations.
#[derive(Debug, Parser)]
#[command(long_about = None)]
pub(super) struct Cli {
    /// Ledger database URL [default: $SEQUENCER_DATABASE_URL, then sqlite://sequencer.db]
    #[arg(long, global = true, env = "SEQUENCER_DATABASE_URL")]
    pub(super) database: Option<String>,
    /// Environment matched against `environments = [...]` [default: $SEQUENCER_ENV]
    #[arg(long = "env", global = true, env = "SEQUENCER_ENV")]
    pub(super) environment: Option<String>,
    /// When operations run: `command` (`process` runs them), `migration` (`migrate` runs them between the schema
    /// migrations) or `hybrid` (`migrate` runs those tagged `with_migrations`) [default: $SEQUENCER_STRATEGY, then
    /// the application's]
    #[arg(long, global = true, env = "SEQUENCER_STRATEGY", value_parser = ["command", "migration", "hybrid"])]
    pub(super) strategy: Option<String>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Run every pending operation, in order.
    Process(ProcessArgs),
    /// Run one operation now.
    Execute {
        /// Ledger name (or function name) of the operation.
        name: String,
        /// Run it without recording anything in the ledger.
        #[arg(long)]
        no_record: bool,
    },
    /// Show every operation and its latest run; with NAME, that operation's run and its last log lines.
    Status {
        /// Only this operation, with its run's last log lines.
        name: Option<String>,
        /// Only pending operations.
        #[arg(long, group = "only")]
        pending: bool,
        /// Only failed (and interrupted) operations.
        #[arg(long, group = "only")]
        failed: bool,
        /// Only completed operations.
        #[arg(long, group = "only")]
        completed: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo completed operations, latest first.
    #[command(group(clap::ArgGroup::new("target").required(true)))]
    Rollback {
        /// Every operation of this batch.
        #[arg(long, group = "target")]
        batch: Option<i64>,
        /// The last N completed operations.
        #[arg(long, group = "target")]
        step: Option<usize>,
        /// One operation.
        #[arg(long, group = "target")]
        op: Option<String>,
        /// Roll back the completed operations that depend on the ones undone too, dependents first (without it,
        /// such dependents refuse the rollback).
        #[arg(long)]
        cascade: bool,
        /// With `--cascade`: a dependent without a rollback does not stop the cascade; it is recorded `stale`
        /// (listed by `status`, never run by `process`) for a person to decide.
        #[arg(long, requires = "cascade")]
        force: bool,
    },
    /// Run a failed or interrupted operation again.
    Retry {
        /// The operation.
        name: String,
    },
    /// Record an operation as completed or skipped by hand.
    #[command(group(clap::ArgGroup::new("to").required(true)))]
    Mark {
        /// The operation.
        name: String,
        /// Mark it completed.
        #[arg(long, group = "to")]
        completed: bool,
        /// Mark it skipped.
        #[arg(long, group = "to")]
        skipped: bool,
    },
    /// Ask a running operation to stop at its next checkpoint (it is recorded interrupted; `retry` resumes it).
    Cancel {
        /// The operation.
        name: String,
    },
    /// Ask a running operation to hold at its next checkpoint, until `resume NAME` (unlike `cancel`, the run goes
    /// on from there).
    Pause {
        /// The operation.
        name: String,
    },
    /// Let a paused operation go on.
    Resume {
        /// The operation.
        name: String,
    },
    /// Show the log lines (`ctx.log`) of an operation's latest run.
    Logs {
        /// The operation.
        name: String,
        /// Keep printing new lines until the run ends (or Ctrl-C).
        #[arg(long, short)]
        follow: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Seal, each for its row, the values stored in plain text before SEQUENCER_KEY was set (or sealed by an
    /// older version): deferred payloads and errors, and the checkpoints and errors of `encrypted` operations.
    Reseal,
    /// Delete an operation's rows from the ledger, so that it runs again.
    Forget {
        /// The operation (or an orphaned ledger name).
        name: String,
    },
    /// Show recorded errors with their causes.
    Errors {
        /// Only this operation's.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new operation file for the directory form (`--inline`: print the function to paste instead).
    Make(MakeArgs),
    /// Run the due `execute_at` / `delay` operations (recording the others as scheduled).
    Scheduled {
        /// Keep running: wake at the next due time (and at least every minute), until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Apply the schema migrations; under the migration strategy, run operations between them.
    Migrate {
        /// `revert`: undo applied migrations instead.
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Run queued operations (and deferred ones) until stopped with Ctrl-C or SIGTERM.
    Work {
        /// The queue to serve.
        #[arg(long, default_value = crate::DEFAULT_QUEUE)]
        queue: String,
        /// Jobs run at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// Stop once the queue is empty.
        #[arg(long)]
        until_idle: bool,
        /// Seconds running jobs may take to finish after a stop signal.
        #[arg(long, default_value_t = 30)]
        grace: u64,
        /// Seconds a claimed job, and the claim of the operation it runs, is held without a heartbeat; a dead
        /// worker's jobs return to the queue after this.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        lease: u64,
        /// Completions acknowledged in one transaction at most.
        #[arg(long, default_value_t = crate::DEFAULT_ACK_BATCH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
        ack_batch: usize,
        /// How long a completion may wait to be acknowledged with others: `5ms`, `1s`.
        #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
        ack_interval: std::time::Duration,
        /// Serve `GET /metrics` (Prometheus text format) on this address while working, e.g. 127.0.0.1:9187.
        #[cfg(feature = "dashboard")]
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Delete ended jobs (done or failed) and ended deferred operations (completed or failed) older than a duration.
    Prune {
        /// How old an ended row must be to go: `90d`, `12h`, `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
    /// Run the due deferred operations.
    ProcessDeferred {
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Serve the web dashboard (and `/metrics`); actions need $SEQUENCER_DASHBOARD_TOKEN.
    #[cfg(feature = "dashboard")]
    Serve {
        /// Address to listen on; one other than loopback needs $SEQUENCER_DASHBOARD_TOKEN.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Refuse every action, even with the token.
        #[arg(long)]
        read_only: bool,
    },
    /// Draw the dependency graph with waves, the critical path and each operation's status.
    Graph {
        /// text, dot (Graphviz) or mermaid.
        #[arg(long, default_value = "text", value_parser = clap::builder::PossibleValuesParser::new(["text", "dot", "mermaid"]))]
        format: String,
    },
}

/// What `migrate` does besides applying.
#[derive(Debug, Subcommand)]
pub(super) enum MigrateAction {
    /// Revert the newest applied migration (or, with `--to V`, every one newer than V) with its down migration,
    /// rolling back first, newest first, the completed operations that ran after it.
    Revert {
        /// Revert every applied migration newer than this version, which stays applied (0: all of them).
        #[arg(long)]
        to: Option<i64>,
        /// Record an operation to undo that has no rollback `stale` (not undone) instead of refusing the revert.
        #[arg(long)]
        force_operations: bool,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub(super) struct ProcessArgs {
    /// Show what would run, and run nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Only operations at or after this timestamp (YYYY_MM_DD_HHMMSS).
    #[arg(long, value_parser = parse_ts)]
    pub(super) from: Option<Timestamp>,
    /// Only operations at or before this timestamp.
    #[arg(long, value_parser = parse_ts)]
    pub(super) to: Option<Timestamp>,
    /// Only operations with one of these tags.
    #[arg(long, value_delimiter = ',')]
    pub(super) tags: Vec<String>,
    /// Run completed operations again (new ledger rows).
    #[arg(long)]
    pub(super) repeat: bool,
    /// Hold a global lock for the whole run; exit 3 if another process holds it.
    #[arg(long)]
    pub(super) isolate: bool,
    /// With `--isolate`: wait for the lock instead of exiting 3; `--wait=30s` waits at most that long.
    #[arg(long, requires = "isolate", num_args = 0..=1, require_equals = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(super) wait: Option<Option<std::time::Duration>>,
    /// Who runs it, recorded in the ledger.
    #[arg(long)]
    pub(super) actor: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// How to run them: sequential, batch, transactional, allowed-to-fail, graph, scheduled [default: the
    /// application's, else sequential]
    #[arg(long, env = "SEQUENCER_ORCHESTRATOR", value_parser = clap::builder::PossibleValuesParser::new(crate::orchestrator::NAMES))]
    pub(super) orchestrator: Option<String>,
    /// Run `asynchronous` operations here instead of queueing them for workers.
    #[arg(long, conflicts_with = "queue_all")]
    pub(super) sync: bool,
    /// Queue every due operation for the workers (`work`).
    #[arg(long = "async", id = "queue_all")]
    pub(super) queue_all: bool,
    /// Run every due operation on the workers in the orchestrator's order (dependencies, concurrency and failure
    /// handling as here), and wait for them.
    #[arg(long, conflicts_with_all = ["sync", "queue_all"])]
    pub(super) dispatch: bool,
    /// When an operation fails, roll back (in reverse) the operations this run completed that have a rollback
    /// (sequential and scheduled; the transactional orchestrator always does). Off by default.
    #[arg(long)]
    pub(super) rollback_on_failure: bool,
    /// Operations run at once by the parallel orchestrators [default: $SEQUENCER_CONCURRENCY, then the
    /// application's, then 8]
    #[arg(long, env = "SEQUENCER_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) concurrency: Option<u16>,
}

#[derive(Debug, Args)]
pub(super) struct MakeArgs {
    /// The operation's name, snake_case.
    pub(super) name: String,
    /// The operations directory.
    #[arg(long, default_value = "operations")]
    pub(super) dir: PathBuf,
    /// Print the function to paste into an inline `#[sequencer::operations] mod` (with a fresh timestamp)
    /// instead of writing a file.
    #[arg(long, conflicts_with = "dir")]
    pub(super) inline: bool,
    /// Add a `rollback` function.
    #[arg(long)]
    pub(super) rollback: bool,
    /// Retry it (3 tries, backoff 1, 5 s).
    #[arg(long)]
    pub(super) retryable: bool,
    /// Run it in a transaction committed with its ledger row.
    #[arg(long)]
    pub(super) transaction: bool,
    /// Operations it depends on (names of other files, without timestamp).
    #[arg(long, value_delimiter = ',')]
    pub(super) dependencies: Vec<String>,
}

impl ProcessArgs {
    /// What `--wait` asks for.
    pub(super) fn lock_wait(&self) -> LockWait {
        match self.wait {
            None => LockWait::No,
            Some(None) => LockWait::Forever,
            Some(Some(d)) => LockWait::AtMost(d),
        }
    }
}

fn parse_ts(s: &str) -> Result<Timestamp, String> {
    s.parse().map_err(|e: crate::TimestampError| e.to_string())
}
