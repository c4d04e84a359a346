//! The command line of the application's own binary: `fn main() -> ExitCode { sequencer::cli::run(ops::registry()) }`.
//!
//! Exit codes: 0 ok, 1 an operation failed, 2 usage or configuration error (the message says how to fix it),
//! 3 the isolation lock is held by another process, 4 an operation was cancelled, 5 an operation hit its hard
//! timeout (see [`crate::SequencerBuilder::hard_timeout_grace`]).

use std::process::ExitCode;

use clap::FromArgMatches;

use self::args::{Cli, Command};
use crate::{Registry, Sequencer, SequencerBuilder, SequencerError, WorkOptions};

mod args;
mod inspect;
mod make;
mod manage;
mod output;
mod process;
#[cfg(feature = "dashboard")]
mod serve;
mod work;

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
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let parsed = args::command(builder.app_info(), args.first().map(|a| a.as_os_str()))
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
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
        return make::make(args);
    }
    if let Some(url) = &cli.database {
        builder = builder.database(url.clone());
    }
    if let Some(env) = &cli.environment {
        builder = builder.environment(env.clone());
    }
    // `--strategy` / `SEQUENCER_STRATEGY` over the application's; the application's migration options are kept.
    if let Some(name) = cli.strategy.as_deref() {
        if builder.configured_strategy().name() != name {
            builder = match name {
                "migration" => builder.strategy(crate::Strategy::migration()),
                "hybrid" => builder.strategy(crate::Strategy::hybrid()),
                _ => builder.strategy(crate::Strategy::command()),
            };
        }
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
    // A stuck operation (blocking code its timeout cannot abort) ends the process for its supervisor to restart.
    if builder.configured_hard_timeout_grace().is_none() {
        builder = builder.hard_timeout_grace(crate::DEFAULT_HARD_TIMEOUT_GRACE);
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
        SequencerError::LockHeld { .. } => 3,
        _ => 2,
    })
}

/// Runs a command other than `make` on the built sequencer.
async fn command(seq: &Sequencer, command: Command) -> Result<ExitCode, SequencerError> {
    match command {
        Command::Process(p) => process::process(seq, p).await,
        Command::Execute { name, no_record } => process::execute(seq, &name, no_record).await,
        Command::Status {
            name: Some(name),
            json,
            ..
        } => inspect::status_of(seq, &name, json).await,
        Command::Status {
            name: None,
            pending,
            failed,
            completed,
            json,
        } => inspect::status(seq, pending, failed, completed, json).await,
        Command::Pause { name } => manage::pause(seq, &name).await,
        Command::Resume { name } => manage::resume(seq, &name).await,
        Command::Logs { name, follow, json } => inspect::logs(seq, &name, follow, json).await,
        Command::Rollback {
            batch,
            step,
            op,
            cascade,
            force,
        } => {
            let cascade = match (cascade, force) {
                (_, true) => crate::Cascade::Force,
                (true, false) => crate::Cascade::Dependents,
                (false, false) => crate::Cascade::Refuse,
            };
            manage::rollback(seq, batch, step, op, cascade).await
        }
        Command::Retry { name } => process::retry(seq, &name).await,
        Command::Mark {
            name, completed, ..
        } => manage::mark(seq, &name, completed).await,
        Command::Cancel { name } => manage::cancel(seq, &name).await,
        Command::Forget { name } => manage::forget(seq, &name).await,
        Command::Reseal => manage::reseal(seq).await,
        Command::Prune { older_than } => manage::prune(seq, older_than).await,
        Command::Errors { name, json } => inspect::errors(seq, name.as_deref(), json).await,
        Command::Make(_) => Ok(ExitCode::SUCCESS),
        Command::Work {
            queue,
            concurrency,
            until_idle,
            grace,
            lease,
            ack_batch,
            ack_interval,
            #[cfg(feature = "dashboard")]
            metrics,
        } => {
            #[cfg(feature = "dashboard")]
            if let Some(addr) = metrics {
                serve::metrics(seq, addr).await?;
            }
            let opts = WorkOptions {
                queue,
                concurrency: usize::from(concurrency),
                until_idle,
                grace: std::time::Duration::from_secs(grace),
                lease: std::time::Duration::from_secs(lease),
                ack_batch,
                ack_interval,
            };
            work::work(seq, opts).await
        }
        Command::ProcessDeferred { limit } => work::process_deferred(seq, limit).await,
        Command::Migrate { action: None } => process::migrate(seq).await,
        Command::Migrate {
            action:
                Some(args::MigrateAction::Revert {
                    to,
                    force_operations,
                    dry_run,
                }),
        } => {
            let opts = crate::RevertOptions {
                to,
                force_operations,
                dry_run,
            };
            manage::revert(seq, &opts).await
        }
        Command::Scheduled { watch } => process::scheduled(seq, watch).await,
        Command::Graph { format } => inspect::graph(seq, &format).await,
        #[cfg(feature = "dashboard")]
        Command::Serve { bind, read_only } => serve::serve(seq, bind, read_only).await,
    }
}
