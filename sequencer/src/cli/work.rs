//! The commands of worker processes: `work` and `process-deferred`.

use std::process::ExitCode;

use super::output::{live, println};
use crate::{CancellationToken, Sequencer, SequencerError, WorkOptions};

/// `work`: queued operations (and deferred ones) until stopped with Ctrl-C or SIGTERM.
pub(super) async fn work(seq: &Sequencer, opts: WorkOptions) -> Result<ExitCode, SequencerError> {
    if seq.ledger().dialect() == crate::ledger::Dialect::Sqlite {
        eprintln!("note: the SQLite ledger is single-host: workers on this machine share it, workers on other machines cannot");
    }
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

/// `process-deferred [--limit N]`: the due deferred operations.
pub(super) async fn process_deferred(
    seq: &Sequencer,
    limit: Option<usize>,
) -> Result<ExitCode, SequencerError> {
    let report = seq.process_deferred(limit).await?;
    if report.moved > 0 {
        println!(
            "Moved {} deferred operation(s) of an older version into task runs.",
            report.moved
        );
    }
    println!(
        "Deferred: {} completed, {} skipped, {} waiting on the queue, {} failed.",
        report.completed,
        report.skipped,
        report.retrying,
        report.failed.len() + report.rows_failed.len()
    );
    for (run, error) in &report.failed {
        println!("  FAILED run {run}: {error}");
    }
    for (id, error) in &report.rows_failed {
        println!("  FAILED old row #{id}: {error}");
    }
    for (id, why) in &report.not_moved {
        println!("  NOT MOVED old row #{id} (left pending): {why}");
    }
    let failed = !report.failed.is_empty() || !report.rows_failed.is_empty();
    Ok(ExitCode::from(u8::from(failed)))
}

fn tokio_util_token() -> CancellationToken {
    CancellationToken::new()
}

/// Ctrl-C, or SIGTERM on Unix.
pub(super) async fn wait_for_stop_signal() {
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
