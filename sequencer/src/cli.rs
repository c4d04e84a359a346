//! The command line of the application's own binary: `fn main() -> ExitCode { sequencer::cli::run(ops::registry()) }`.
//!
//! Exit codes: 0 ok, 1 an operation failed, 2 usage or configuration error (the message says how to fix it),
//! 3 the isolation lock is held by another process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use crate::ledger::Status;

/// Writes to stdout and carries on when it is closed (`status | head`): the command still finishes its work and
/// records it, where `std`'s `println!` would panic half-way.
macro_rules! println {
    () => {
        write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// [`println!`]'s counterpart of `print!`.
macro_rules! print {
    ($($arg:tt)*) => {
        write_out(format_args!($($arg)*))
    };
}

fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(args);
}
use crate::{
    OutcomeKind, ProcessOptions, Registry, RollbackTarget, RunReport, Sequencer, SequencerBuilder,
    SequencerError, Timestamp,
};

/// Run, inspect and undo one-time operations.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Ledger database URL [default: $SEQUENCER_DATABASE_URL, then sqlite://sequencer.db]
    #[arg(long, global = true, env = "SEQUENCER_DATABASE_URL")]
    database: Option<String>,
    /// Environment matched against `environments = [...]` [default: $SEQUENCER_ENV]
    #[arg(long = "env", global = true, env = "SEQUENCER_ENV")]
    environment: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Show every operation and its latest run.
    Status {
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
    /// Write a new operation file for the directory form.
    Make(MakeArgs),
    /// Run the due `execute_at` / `delay` operations (recording the others as scheduled).
    Scheduled {
        /// Keep running: wake at the next due time (and at least every minute), until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Apply the schema migrations; under the migration strategy, run operations between them.
    Migrate,
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
        /// Seconds a claimed job is held without a heartbeat; a dead worker's jobs return to the queue after this.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        lease: u64,
    },
    /// Run the due deferred operations.
    ProcessDeferred {
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Draw the dependency graph with waves, the critical path and each operation's status.
    Graph {
        /// text, dot (Graphviz) or mermaid.
        #[arg(long, default_value = "text", value_parser = clap::builder::PossibleValuesParser::new(["text", "dot", "mermaid"]))]
        format: String,
    },
}

#[derive(Debug, Args)]
struct ProcessArgs {
    /// Show what would run, and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only operations at or after this timestamp (YYYY_MM_DD_HHMMSS).
    #[arg(long, value_parser = parse_ts)]
    from: Option<Timestamp>,
    /// Only operations at or before this timestamp.
    #[arg(long, value_parser = parse_ts)]
    to: Option<Timestamp>,
    /// Only operations with one of these tags.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Run completed operations again (new ledger rows).
    #[arg(long)]
    repeat: bool,
    /// Hold a global lock for the whole run; exit 3 if another process holds it.
    #[arg(long)]
    isolate: bool,
    /// Who runs it, recorded in the ledger.
    #[arg(long)]
    actor: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// How to run them: sequential, batch, transactional, allowed-to-fail, graph, scheduled [default: the
    /// application's, else sequential]
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::orchestrator::NAMES))]
    orchestrator: Option<String>,
    /// Run `asynchronous` operations here instead of queueing them for workers.
    #[arg(long, conflicts_with = "queue_all")]
    sync: bool,
    /// Queue every due operation for the workers (`work`).
    #[arg(long = "async", id = "queue_all")]
    queue_all: bool,
    /// Run every due operation on the workers in the orchestrator's order (dependencies, concurrency and failure
    /// handling as here), and wait for them.
    #[arg(long, conflicts_with_all = ["sync", "queue_all"])]
    dispatch: bool,
    /// Operations run at once by the parallel orchestrators.
    #[arg(long, default_value_t = crate::DEFAULT_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

#[derive(Debug, Args)]
struct MakeArgs {
    /// The operation's name, snake_case.
    name: String,
    /// The operations directory.
    #[arg(long, default_value = "operations")]
    dir: PathBuf,
    /// Add a `rollback` function.
    #[arg(long)]
    rollback: bool,
    /// Retry it (3 tries, backoff 1, 5 s).
    #[arg(long)]
    retryable: bool,
    /// Run it in a transaction committed with its ledger row.
    #[arg(long)]
    transaction: bool,
    /// Operations it depends on (names of other files, without timestamp).
    #[arg(long, value_delimiter = ',')]
    dependencies: Vec<String>,
}

fn parse_ts(s: &str) -> Result<Timestamp, String> {
    s.parse().map_err(|e: crate::TimestampError| e.to_string())
}

/// Runs the CLI over a registry and returns the exit code: `fn main() -> ExitCode { sequencer::cli::run(ops::registry()) }`.
/// The arguments come from the process; see [`run_with`] for an example with settings, and [`run_from`] for
/// explicit arguments.
pub fn run(registry: Registry) -> ExitCode {
    run_with(Sequencer::builder().registry(registry))
}

/// Runs the CLI over a configured builder (state, guards, table prefix …); `--database` and `--env` override it.
///
/// ```
/// use std::process::ExitCode;
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// fn builder() -> sequencer::SequencerBuilder {
///     sequencer::Sequencer::builder()
///         .registry(ops::registry())
///         .orchestrator(sequencer::DependencyGraph)
///         .table_prefix("app_seq_")
/// }
///
/// # mod real { use super::*;
/// fn main() -> ExitCode {
///     sequencer::cli::run_with(builder()) // `sequencer::cli::run(ops::registry())` without the settings
/// }
/// # }
/// # fn main() {
/// // In a test, `run_from` takes the arguments (the first is the program name):
/// # let db = std::env::temp_dir().join(format!("sequencer-doc-cli-{}.db", std::process::id()));
/// # let db = format!("sqlite://{}", db.display());
/// let code = sequencer::cli::run_from(builder(), ["my-app", "--database", db.as_str(), "process"]);
/// assert_eq!(code, ExitCode::SUCCESS);
/// let code = sequencer::cli::run_from(builder(), ["my-app", "--database", db.as_str(), "retry", "nope"]);
/// assert_eq!(code, ExitCode::from(2)); // an unknown operation is a usage error
/// # for suffix in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{suffix}", &db["sqlite://".len()..])); }
/// # }
/// ```
pub fn run_with(builder: SequencerBuilder) -> ExitCode {
    run_from(builder, std::env::args_os())
}

/// [`run_with`] over explicit arguments (the first is the program name).
pub fn run_from<I, T>(builder: SequencerBuilder, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(main(builder, cli))
}

async fn main(mut builder: SequencerBuilder, cli: Cli) -> ExitCode {
    if let Command::Make(args) = &cli.command {
        return make(args);
    }
    if let Some(url) = &cli.database {
        builder = builder.database(url.clone());
    }
    if let Some(env) = &cli.environment {
        builder = builder.environment(env.clone());
    }
    if let Command::Process(p) = &cli.command {
        if let Some(actor) = &p.actor {
            builder = builder.actor(actor.clone());
        }
    }
    if let Command::Work { lease, .. } = &cli.command {
        // A worker's claims on operations expire as fast as its claims on jobs.
        builder = builder.lease(std::time::Duration::from_secs((*lease).max(1)));
    }
    let seq = match builder.build().await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match command(&seq, cli.command).await {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &SequencerError) -> ExitCode {
    eprintln!("error: {e}");
    let mut shown = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let line = s.to_string();
        // sqlx repeats its cause in its own message: print each text once.
        if !shown.contains(&line) {
            eprintln!("  caused by: {line}");
        }
        shown = line;
        source = s.source();
    }
    if let SequencerError::Ledger(crate::ledger::LedgerError::Connect { .. }) = e {
        eprintln!("hint: check that the database is running and the URL is right (--database or SEQUENCER_DATABASE_URL)");
    }
    ExitCode::from(match e {
        SequencerError::LockHeld => 3,
        _ => 2,
    })
}

async fn command(seq: &Sequencer, command: Command) -> Result<ExitCode, SequencerError> {
    match command {
        Command::Process(p) => {
            let seq = match p
                .orchestrator
                .as_deref()
                .and_then(crate::orchestrator::by_name)
            {
                Some(o) => seq.using_arc(o),
                None => seq.clone(),
            };
            let seq = &seq;
            let opts = ProcessOptions {
                concurrency: Some(usize::from(p.concurrency)),
                dry_run: p.dry_run,
                from: p.from,
                to: p.to,
                tags: p.tags,
                repeat: p.repeat,
                isolate: p.isolate,
                sync: p.sync,
                queue_all: p.queue_all,
                dispatch: p.dispatch,
                ..ProcessOptions::default()
            };
            if matches!(seq.strategy(), crate::Strategy::Migration(_)) && !p.dry_run {
                eprintln!("warning: this application runs its operations during `migrate` (the migration strategy); `process` is redundant there");
            }
            let report = if p.json || p.dry_run {
                seq.process(&opts).await?
            } else {
                live(seq, seq.process(&opts)).await?
            };
            if p.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else if p.dry_run {
                if report.planned.is_empty() {
                    println!("Nothing to run.");
                } else {
                    let preview = seq.preview(&opts).await?;
                    println!(
                        "Would run {} operation(s) with the {} orchestrator:",
                        preview.planned.len(),
                        seq.orchestrator_name()
                    );
                    for (i, name) in preview.planned.iter().enumerate() {
                        println!("{:>4}. {name}", i + 1);
                    }
                    for (w, names) in preview.waves.iter().enumerate() {
                        println!("  wave {w}: {}", names.join(", "));
                    }
                    println!("  critical path: {}", preview.critical_path.join(" → "));
                }
            } else {
                summary(&report);
            }
            Ok(exit_of(&report))
        }
        Command::Execute { name, no_record } => {
            if no_record {
                let outcome = seq.execute_unrecorded(&name).await?;
                print_outcome(&name, &outcome);
                return Ok(ExitCode::from(u8::from(matches!(
                    outcome,
                    OutcomeKind::Failed { .. }
                ))));
            }
            let report = live(seq, seq.execute(&name)).await?;
            summary(&report);
            Ok(exit_of(&report))
        }
        Command::Status {
            pending,
            failed,
            completed,
            json,
        } => {
            let entries: Vec<_> = seq
                .status()
                .await?
                .into_iter()
                .filter(|e| {
                    (!pending || e.status == Status::Pending)
                        && (!failed || matches!(e.status, Status::Failed | Status::Interrupted))
                        && (!completed || e.status == Status::Completed)
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).unwrap_or_default()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<12} {:<48} {:>5} {:>8} {:>10}  NOTE",
                "STATUS", "NAME", "BATCH", "ATTEMPTS", "DURATION"
            );
            for e in &entries {
                let mut notes = Vec::new();
                if e.edited {
                    notes.push("edited after it ran".to_owned());
                }
                if e.orphaned {
                    notes.push("orphaned: not in the registry (`forget` removes it)".to_owned());
                }
                if let Some(r) = &e.skip_reason {
                    notes.push(r.clone());
                }
                if let (Some(done), Some(total)) = (e.progress_done, e.progress_total) {
                    let eta = e
                        .eta_ms
                        .map(|ms| format!(", ETA {}s", (ms + 999) / 1000))
                        .unwrap_or_default();
                    notes.push(format!("progress {done}/{total}{eta}"));
                }
                if let Some(err) = &e.error {
                    notes.push(err.lines().next().unwrap_or_default().to_owned());
                }
                let batch = e.batch.map_or("-".to_owned(), |b| b.to_string());
                let duration = e.duration_ms.map_or("-".to_owned(), |d| format!("{d} ms"));
                println!(
                    "{:<12} {:<48} {:>5} {:>8} {:>10}  {}",
                    e.status.as_str(),
                    e.name,
                    batch,
                    e.attempts,
                    duration,
                    notes.join("; ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { batch, step, op } => {
            let target = match (batch, step, op) {
                (Some(b), _, _) => RollbackTarget::Batch(b),
                (_, Some(s), _) => RollbackTarget::Step(s),
                (_, _, Some(o)) => RollbackTarget::Op(o),
                _ => {
                    return Err(SequencerError::Usage(
                        "give `--batch N`, `--step N` or `--op NAME`".into(),
                    ))
                }
            };
            let report = seq.rollback(&target).await?;
            if report.rolled_back.is_empty() && report.rollback_failures.is_empty() {
                println!("Nothing to roll back.");
            }
            for name in &report.rolled_back {
                println!("ROLLED BACK {name}");
            }
            for (name, e) in &report.rollback_failures {
                println!("NOT UNDONE  {name}: {e}");
            }
            Ok(ExitCode::from(u8::from(
                !report.rollback_failures.is_empty(),
            )))
        }
        Command::Retry { name } => {
            let report = live(seq, seq.retry(&name)).await?;
            summary(&report);
            Ok(exit_of(&report))
        }
        Command::Mark {
            name, completed, ..
        } => {
            let to = if completed {
                Status::Completed
            } else {
                Status::Skipped
            };
            seq.mark(&name, to).await?;
            println!("Marked {name} {to}.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { name } => {
            if seq.cancel_operation(&name).await? {
                println!("Asked {name} to stop at its next checkpoint.");
                Ok(ExitCode::SUCCESS)
            } else {
                Err(SequencerError::Usage(format!(
                    "`{name}` is not running: nothing to cancel"
                )))
            }
        }
        Command::Forget { name } => {
            let n = seq.forget(&name).await?;
            println!(
                "Forgot {name} ({n} ledger row{}); it runs again with the next `process`.",
                if n == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Errors { name, json } => {
            let errors = seq.errors(name.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&errors).unwrap_or_default()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if errors.is_empty() {
                println!("No errors recorded.");
            }
            for e in errors {
                let what = if e.attempt == 0 {
                    "rollback".to_owned()
                } else {
                    format!("attempt {}", e.attempt)
                };
                println!("{} (run {}, {what}): {}", e.name, e.run, e.message);
                for cause in e.chain.lines().skip(1) {
                    println!("    caused by: {cause}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Make(_) => Ok(ExitCode::SUCCESS),
        Command::Work {
            queue,
            concurrency,
            until_idle,
            grace,
            lease,
        } => {
            if seq.ledger().dialect() == crate::ledger::Dialect::Sqlite {
                eprintln!("note: the SQLite ledger is single-host: workers on this machine share it, workers on other machines cannot");
            }
            let opts = crate::WorkOptions {
                queue,
                concurrency: usize::from(concurrency),
                until_idle,
                grace: std::time::Duration::from_secs(grace),
                lease: std::time::Duration::from_secs(lease),
            };
            let shutdown = tokio_util_token();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                wait_for_stop_signal().await;
                println!("Stopping: finishing running jobs (up to the grace period)…");
                stop.cancel();
            });
            let report = live(seq, seq.work(&opts, shutdown)).await?;
            println!(
                "Worker done: {} job(s), {} completed, {} failed, {} not run, {} unknown.",
                report.jobs, report.completed, report.failed, report.not_run, report.unknown
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ProcessDeferred { limit } => {
            let report = seq.process_deferred(limit).await?;
            println!(
                "Deferred: {} completed, {} to retry, {} failed.",
                report.completed,
                report.retrying,
                report.failed.len()
            );
            for (id, error) in &report.failed {
                println!("  FAILED #{id}: {error}");
            }
            Ok(ExitCode::from(u8::from(!report.failed.is_empty())))
        }
        Command::Migrate => {
            let report = live(seq, seq.migrate()).await?;
            for run in &report.runs {
                summary(run);
            }
            if let Some((version, error)) = &report.failed_migration {
                eprintln!("error: migration {version} failed: {error}");
                eprintln!(
                    "nothing after it ran; the migrations and operations before it stay recorded"
                );
            }
            Ok(ExitCode::from(u8::from(!report.succeeded())))
        }
        Command::Scheduled { watch } => {
            let seq = seq.using(crate::Scheduled);
            let opts = ProcessOptions {
                only_scheduled: true,
                ..ProcessOptions::default()
            };
            let mut worst = ExitCode::SUCCESS;
            loop {
                let report = live(&seq, seq.process(&opts)).await?;
                summary(&report);
                if !report.succeeded() {
                    worst = ExitCode::from(1);
                }
                if !watch {
                    return Ok(worst);
                }
                let now = crate::ledger::now_ms();
                let next = report.scheduled.iter().map(|(_, at)| *at).min();
                let wait = next.map_or(60_000, |at| (at - now).clamp(0, 60_000)) as u64;
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                    _ = tokio::signal::ctrl_c() => {
                        println!("Stopped watching.");
                        return Ok(worst);
                    }
                }
            }
        }
        Command::Graph { format } => {
            let format: crate::render::GraphFormat =
                format
                    .parse()
                    .map_err(|e: crate::render::UnknownGraphFormat| {
                        SequencerError::Usage(e.to_string())
                    })?;
            print!("{}", seq.graph(format).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Awaits `work`, printing each operation as it starts and ends, under a progress bar on a terminal.
async fn live<T>(seq: &Sequencer, work: impl std::future::Future<Output = T>) -> T {
    use std::io::IsTerminal;
    let mut events = seq.subscribe();
    let mut work = std::pin::pin!(work);
    let terminal = std::io::stdout().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let show = |e: crate::Event, bar: &mut Option<indicatif::ProgressBar>| {
        use crate::Event;
        match &e {
            Event::OperationsStarted { count, .. } if terminal => {
                let pb = indicatif::ProgressBar::new(*count as u64);
                let style = indicatif::ProgressStyle::with_template(
                    "[{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                pb.set_style(style);
                *bar = Some(pb);
            }
            Event::OperationStarted { name, .. } => {
                if let Some(pb) = bar {
                    pb.set_message(name.clone());
                }
            }
            Event::OperationProgress { name, done, total } => {
                if let Some(pb) = bar {
                    pb.set_message(format!("{name} {done}/{total}"));
                }
            }
            Event::OperationSucceeded { .. }
            | Event::OperationFailed { .. }
            | Event::OperationSkipped { .. } => {
                if let Some(pb) = bar {
                    pb.inc(1);
                }
            }
            Event::OperationsEnded { .. } => {
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
            }
            _ => {}
        }
        if let Some(line) = event_line(e) {
            match bar {
                Some(pb) => pb.println(line),
                None => println!("{line}"),
            }
        }
    };
    loop {
        tokio::select! {
            result = &mut work => {
                while let Ok(e) = events.try_recv() {
                    show(e, &mut bar);
                }
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
                return result;
            }
            Ok(e) = events.recv() => show(e, &mut bar),
        }
    }
}

fn event_line(e: crate::Event) -> Option<String> {
    use crate::Event;
    Some(match e {
        Event::OperationStarted { name, attempt: 1 } => format!("RUNNING     {name}"),
        Event::OperationStarted { name, attempt } => {
            format!("RUNNING     {name} (attempt {attempt})")
        }
        Event::OperationSucceeded { name, duration_ms } => {
            format!("DONE        {name} ({duration_ms} ms)")
        }
        Event::OperationRetrying {
            name,
            attempt,
            delay_ms,
            error,
        } => {
            format!("RETRYING    {name}: attempt {attempt} failed: {error}; next in {delay_ms} ms")
        }
        Event::OperationFailed {
            name,
            error,
            allowed_to_fail,
        } => {
            let note = if allowed_to_fail {
                " (allowed to fail)"
            } else {
                ""
            };
            format!("FAILED      {name}{note}: {error}")
        }
        Event::OperationSkipped { name, reason } => format!("SKIPPED     {name}: {reason}"),
        Event::OperationRolledBack { name } => format!("ROLLED BACK {name}"),
        Event::NoPendingOperations => "Nothing to run: no pending operations.".to_owned(),
        Event::MigrationsStarted { count } => format!("Migrating: {count} pending migration(s)."),
        Event::MigrationEnded {
            version,
            description,
        } => format!("MIGRATED    {version} {description}"),
        Event::MigrationsEnded { applied } => format!("Migrations done: {applied} applied."),
        Event::NoPendingMigrations => "Nothing to migrate: no pending migrations.".to_owned(),
        Event::WaitingForWorker {
            name,
            queue,
            waited_secs,
        } => format!(
            "WAITING     {name}: no worker has taken it from queue `{queue}` for {waited_secs} s; start one with `work --queue {queue}`"
        ),
        Event::OperationsStarted { .. }
        | Event::OperationsEnded { .. }
        | Event::OperationProgress { .. } => return None,
    })
}

fn print_outcome(name: &str, o: &OutcomeKind) {
    match o {
        OutcomeKind::Completed { duration_ms } => {
            println!("DONE        {name} ({duration_ms} ms, not recorded)")
        }
        OutcomeKind::Failed { error, .. } => println!("FAILED      {name}: {error}"),
        OutcomeKind::Skipped { reason } => println!("SKIPPED     {name}: {reason}"),
        OutcomeKind::NotClaimed => println!("NOT RUN     {name}"),
        OutcomeKind::Deferred { reason } => println!("NOT RUN     {name}: {reason}"),
        OutcomeKind::Cancelled { reason } => println!("CANCELLED   {name}: {reason}"),
    }
}

fn summary(r: &RunReport) {
    let completed = r.count(|o| matches!(o, OutcomeKind::Completed { .. }));
    let failed = r.count(|o| matches!(o, OutcomeKind::Failed { .. }));
    let skipped = r.count(|o| matches!(o, OutcomeKind::Skipped { .. }));
    let elsewhere = r.count(|o| matches!(o, OutcomeKind::NotClaimed));
    if let Some(b) = r.batch {
        print!("Batch {b}: ");
        println!(
            "{completed} completed, {failed} failed, {skipped} skipped{}.",
            if elsewhere > 0 {
                format!(", {elsewhere} run by another process")
            } else {
                String::new()
            }
        );
    }
    for (name, e) in &r.rollback_failures {
        println!("  rollback of {name} failed: {e}");
    }
    if !r.rolled_back.is_empty() {
        println!(
            "  rolled back after the failure: {}",
            r.rolled_back.join(", ")
        );
    }
    for (name, why) in &r.waiting {
        println!("  not run: {name}: {why}");
    }
    for (name, queue) in &r.queued {
        println!("  queued: {name} on `{queue}` (run `work` to process it)");
    }
    for (name, at) in &r.scheduled {
        println!("  scheduled: {name}, due {}", when(*at));
    }
    for name in &r.needs_attention {
        println!("  interrupted: {name}: it is neither idempotent nor retryable; `retry {name}` runs it again, `mark {name} --completed` records it done");
    }
}

fn tokio_util_token() -> crate::CancellationToken {
    crate::CancellationToken::new()
}

/// Ctrl-C, or SIGTERM on Unix.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A Unix-milliseconds time as RFC 3339 (UTC).
fn when(ms: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn exit_of(r: &RunReport) -> ExitCode {
    ExitCode::from(u8::from(!r.succeeded()))
}

fn make(args: &MakeArgs) -> ExitCode {
    let valid = args
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        eprintln!(
            "error: `{}` is not a snake_case name; try `{}`",
            args.name,
            snake(&args.name)
        );
        return ExitCode::from(2);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let Some(ts) = Timestamp::from_unix_seconds(now) else {
        eprintln!("error: the system clock is outside years 1–9999");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("error: cannot create `{}`: {e}", args.dir.display());
        return ExitCode::from(2);
    }
    let path = args.dir.join(format!("{ts}_{}.rs", args.name));
    let mut keys = Vec::new();
    if !args.dependencies.is_empty() {
        keys.push(format!("depends_on = [{}]", args.dependencies.join(", ")));
    }
    if args.retryable {
        keys.push("retries = 3, backoff = [1, 5]".to_owned());
    }
    if args.transaction {
        keys.push("transaction".to_owned());
    }
    let attr = if keys.is_empty() {
        "#[operation]".to_owned()
    } else {
        format!("#[operation({})]", keys.join(", "))
    };
    let mut src = format!(
        "use sequencer::prelude::*;\n\n/// {name}.\n{attr}\npub async fn handle(ctx: &Ctx) -> Result<()> {{\n    let _ = ctx;\n    Ok(())\n}}\n",
        name = args.name
    );
    if args.rollback {
        src.push_str("\n/// Undoes `handle`.\npub async fn rollback(ctx: &Ctx) -> Result<()> {\n    let _ = ctx;\n    Ok(())\n}\n");
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, src.as_bytes()));
    match created {
        Ok(()) => {
            println!("Created {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}
