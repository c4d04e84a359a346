//! The commands that correct the record by hand: `rollback`, `mark`, `cancel`, `pause`, `resume`, `forget`, and
//! `migrate revert`.

use std::process::ExitCode;

use super::output::println;
use crate::ledger::Status;
use crate::{RollbackTarget, Sequencer, SequencerError};

/// `rollback --batch N | --step N | --op NAME`: undo completed operations, latest first.
pub(super) async fn rollback(
    seq: &Sequencer,
    batch: Option<i64>,
    step: Option<usize>,
    op: Option<String>,
    cascade: crate::Cascade,
) -> Result<ExitCode, SequencerError> {
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
    let report = seq.rollback_with(&target, cascade).await?;
    if report.rolled_back.is_empty() && report.rollback_failures.is_empty() {
        println!("Nothing to roll back.");
    }
    for name in &report.rolled_back {
        println!("ROLLED BACK {name}");
    }
    for name in &report.needs_attention {
        println!("STALE       {name}: it has no rollback and what it depends on was undone; `status` lists it until `retry {name}` or `mark {name} --completed`");
    }
    for (name, e) in &report.rollback_failures {
        println!("NOT UNDONE  {name}: {e}");
    }
    Ok(ExitCode::from(u8::from(
        !report.rollback_failures.is_empty(),
    )))
}

/// `mark NAME --completed | --skipped`.
pub(super) async fn mark(
    seq: &Sequencer,
    name: &str,
    completed: bool,
) -> Result<ExitCode, SequencerError> {
    let to = if completed {
        Status::Completed
    } else {
        Status::Skipped
    };
    seq.mark(name, to).await?;
    println!("Marked {name} {to}.");
    Ok(ExitCode::SUCCESS)
}

/// `cancel NAME`: ask a running operation to stop at its next checkpoint.
pub(super) async fn cancel(seq: &Sequencer, name: &str) -> Result<ExitCode, SequencerError> {
    if seq.cancel_operation(name).await? {
        println!("Asked {name} to stop at its next checkpoint.");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(SequencerError::Usage(format!(
            "`{name}` is not running: nothing to cancel"
        )))
    }
}

/// `pause NAME`: ask a running operation to hold at its next checkpoint.
pub(super) async fn pause(seq: &Sequencer, name: &str) -> Result<ExitCode, SequencerError> {
    if seq.pause_operation(name).await? {
        println!("Asked {name} to hold at its next checkpoint; `resume {name}` lets it go on.");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(SequencerError::Usage(format!(
            "`{name}` is not running: nothing to pause"
        )))
    }
}

/// `resume NAME`: let a paused operation go on.
pub(super) async fn resume(seq: &Sequencer, name: &str) -> Result<ExitCode, SequencerError> {
    if seq.resume_operation(name).await? {
        println!("Resumed {name}.");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(SequencerError::Usage(format!(
            "`{name}` is not paused: nothing to resume"
        )))
    }
}

/// `forget NAME`: delete an operation's rows, so that it runs again.
pub(super) async fn forget(seq: &Sequencer, name: &str) -> Result<ExitCode, SequencerError> {
    let n = seq.forget(name).await?;
    println!(
        "Forgot {name} ({n} ledger row{}); it runs again with the next `process`.",
        if n == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn reseal(seq: &Sequencer) -> Result<ExitCode, SequencerError> {
    let n = seq.reseal().await?;
    println!("Resealed {n} value{}.", if n == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn prune(
    seq: &Sequencer,
    older_than: std::time::Duration,
) -> Result<ExitCode, SequencerError> {
    let (jobs, deferred) = seq.prune(older_than).await?;
    println!("Pruned {jobs} ended job(s) and {deferred} ended deferred operation(s).");
    Ok(ExitCode::SUCCESS)
}

/// `migrate revert [--to V] [--force-operations] [--dry-run]`: undo schema migrations, newest first, each after
/// rolling back the operations that ran after it.
pub(super) async fn revert(
    seq: &Sequencer,
    opts: &crate::RevertOptions,
) -> Result<ExitCode, SequencerError> {
    let report = seq.revert_migrations(opts).await?;
    if report.plan.is_empty() {
        println!("Nothing to revert: no migration to revert is applied.");
        return Ok(ExitCode::SUCCESS);
    }
    if report.dry_run {
        println!(
            "Would revert {} migration(s), newest first (nothing was changed):",
            report.plan.len()
        );
        for step in &report.plan {
            println!("  {} {}", step.version, step.description);
            if step.operations.is_empty() {
                println!("    no operation to roll back");
            }
            for name in &step.operations {
                if step.stale.contains(name) {
                    println!("    record stale {name} (it has no rollback: not undone)");
                } else {
                    println!("    roll back    {name}");
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    for step in &report.plan {
        for name in &step.operations {
            if report.rolled_back.contains(name) {
                println!("ROLLED BACK {name}");
            } else if report.stale.contains(name) {
                println!("STALE       {name}: it has no rollback, so it was not undone; `status` lists it until `retry {name}` or `mark {name} --completed`");
            }
        }
        if report.reverted.iter().any(|(v, _)| *v == step.version) {
            println!("REVERTED    {} {}", step.version, step.description);
        }
    }
    if let Some((name, e)) = &report.failed_rollback {
        // The rollback's error names the operation already (`rollback of `NAME` failed: …`).
        if e.contains(name.as_str()) {
            eprintln!("error: {e}");
        } else {
            eprintln!("error: the rollback of {name} failed: {e}");
        }
    }
    if let Some((version, e)) = &report.failed_migration {
        eprintln!("error: the down migration of {version} failed: {e}");
    }
    if !report.succeeded() {
        eprintln!("the revert stopped there: what is listed above was undone, nothing after it; fix the cause, then run `migrate revert` again to continue");
        return Ok(ExitCode::from(1));
    }
    println!("Reverted {} migration(s).", report.reverted.len());
    Ok(ExitCode::SUCCESS)
}
