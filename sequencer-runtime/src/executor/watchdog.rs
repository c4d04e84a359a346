//! Hard timeouts. An operation stuck in blocking code (`std::thread::sleep`, a blocking driver call, a tight loop)
//! never reaches an `.await`: its `timeout` aborts the attempt's task, but the task goes on holding its thread.
//! When hard timeouts are on ([`SequencerBuilder::hard_timeout_grace`](crate::SequencerBuilder::hard_timeout_grace);
//! the CLI turns them on), an attempt of an operation with a `timeout` that has not *ended* within the timeout and
//! a grace period is recorded `failed` by a watchdog thread, which then ends the process with exit code
//! [`HARD_TIMEOUT_EXIT`], for its supervisor to restart it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::ledger::runs::{Finish, Status};
use crate::ledger::Ledger;

/// The exit code of a process ended by a hard timeout.
pub const HARD_TIMEOUT_EXIT: u8 = 5;

/// The grace period after an operation's `timeout` unless set with `SequencerBuilder::hard_timeout_grace`: the
/// larger of this and a tenth of the timeout.
pub const DEFAULT_HARD_TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// How long the watchdog tries to record the timed-out attempt before it exits anyway.
const RECORD_FOR: Duration = Duration::from_secs(10);

/// The grace an attempt under `timeout` gets: the larger of `grace` and a tenth of `timeout`.
pub(crate) fn grace_for(timeout: Duration, grace: Duration) -> Duration {
    grace.max(timeout / 10)
}

/// What the watchdog of one attempt records, and when.
pub(crate) struct HardTimeout {
    /// The attempt's timeout plus its grace.
    pub limit: Duration,
    /// The ledger's URL and table prefix: the watchdog connects afresh, the process's runtime may be stuck.
    pub url: String,
    pub prefix: String,
    pub name: &'static str,
    pub run: i64,
    pub attempt: u32,
    pub token: String,
    /// When the run started (its recorded duration).
    pub started: Instant,
    /// The attempt's timeout, for the message.
    pub timeout: Duration,
}

/// Armed while an attempt runs; dropped when it has ended, which stops its thread.
pub(crate) struct Watchdog {
    _ended: mpsc::Sender<()>,
}

impl Watchdog {
    /// Starts the watchdog thread of an attempt. `None` if no thread can be started (the attempt then runs
    /// without one, as without hard timeouts).
    pub(crate) fn arm(hard: HardTimeout) -> Option<Watchdog> {
        let (ended, watch) = mpsc::channel::<()>();
        let limit = hard.limit;
        std::thread::Builder::new()
            .name("sequencer-watchdog".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = watch.recv_timeout(limit) {
                    record_and_exit(&hard);
                }
            })
            .map_err(|e| tracing::warn!("no hard timeout: cannot start its thread: {e}"))
            .ok()?;
        Some(Watchdog { _ended: ended })
    }
}

/// Records the stuck attempt `failed` (on a connection of its own, on a runtime of its own) and ends the process.
fn record_and_exit(hard: &HardTimeout) -> ! {
    let grace = hard.limit.saturating_sub(hard.timeout);
    let message = format!(
        "`{}` hit its hard timeout: the attempt had not ended {} s after its {} s timeout (stuck in blocking code?); the process exits with code {HARD_TIMEOUT_EXIT} for its supervisor to restart it",
        hard.name,
        grace.as_secs_f64(),
        hard.timeout.as_secs_f64()
    );
    eprintln!("error: {message}");
    // Whatever happens while recording (a panic included), the process exits.
    let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            match tokio::time::timeout(RECORD_FOR, record(hard, &message)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the ledger did not answer".to_owned()),
            }
        })
    }));
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("error: cannot record the hard timeout: {e}"),
        Err(_) => eprintln!("error: cannot record the hard timeout: recording it panicked"),
    }
    std::process::exit(i32::from(HARD_TIMEOUT_EXIT))
}

async fn record(hard: &HardTimeout, message: &str) -> Result<(), crate::ledger::LedgerError> {
    let ledger = Ledger::connect_with(&hard.url, &hard.prefix, 1).await?;
    ledger
        .record_error(
            hard.name,
            hard.run,
            hard.attempt,
            &anyhow::anyhow!("{message}"),
            None,
        )
        .await?;
    ledger
        .finish_on_pool(&Finish {
            name: hard.name,
            run: hard.run,
            status: Status::Failed,
            duration: hard.started.elapsed(),
            skip_reason: None,
            error: Some(message),
            token: &hard.token,
        })
        .await?;
    Ok(())
}
