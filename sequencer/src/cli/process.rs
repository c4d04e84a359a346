//! The commands that run operations: `process`, `execute`, `retry`, `migrate` and `scheduled`.

use std::process::ExitCode;

use super::args::ProcessArgs;
use super::output::{exit_of, live, print_json, print_outcome, println, summary};
use crate::{Outcome, ProcessOptions, Sequencer, SequencerError};

/// `process`: every pending operation, in order (or what would run, with `--dry-run`).
pub(super) async fn process(seq: &Sequencer, p: ProcessArgs) -> Result<ExitCode, SequencerError> {
    let seq = match p
        .orchestrator
        .as_deref()
        .and_then(crate::orchestrator::by_name)
    {
        Some(o) => seq.using_arc(o),
        None => seq.clone(),
    };
    let seq = &seq;
    let lock_wait = p.lock_wait();
    let opts = ProcessOptions {
        concurrency: p.concurrency.map(usize::from),
        dry_run: p.dry_run,
        from: p.from,
        to: p.to,
        tags: p.tags,
        repeat: p.repeat,
        isolate: p.isolate,
        lock_wait,
        sync: p.sync,
        queue_all: p.queue_all,
        dispatch: p.dispatch,
        rollback_on_failure: p.rollback_on_failure,
        ..ProcessOptions::default()
    };
    if seq.runs_with_migrations() && !p.dry_run {
        eprintln!(
            "note: this application runs its operations during `migrate` (the {} strategy), in order between the schema migrations: `process` leaves those to `migrate` and runs only the others",
            seq.strategy().name()
        );
    }
    let waiting = say_lock_waits(seq);
    let report = if p.json || p.dry_run {
        seq.process(&opts).await
    } else {
        live(seq, seq.process(&opts)).await
    };
    waiting.abort();
    let report = report?;
    if p.json {
        print_json(serde_json::to_string_pretty(&report));
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

/// Says on stderr, with `--isolate --wait`, who holds the isolation lock and that this process waits for it (the
/// report's stdout, JSON too, stays what it was).
fn say_lock_waits(seq: &Sequencer) -> tokio::task::JoinHandle<()> {
    let mut events = seq.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(crate::Event::WaitingForLock {
                    holder,
                    at_most_secs,
                }) => {
                    let holder = holder.map_or_else(
                        || "another process".to_owned(),
                        |h| format!("the process {h}"),
                    );
                    let limit = at_most_secs.map_or_else(
                        || "until it is free (Ctrl-C stops)".to_owned(),
                        |s| format!("for at most {s} s"),
                    );
                    eprintln!("{holder} holds the isolation lock; waiting for it {limit}…");
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// `execute NAME`: one operation now, recorded or (`--no-record`) not.
pub(super) async fn execute(
    seq: &Sequencer,
    name: &str,
    no_record: bool,
) -> Result<ExitCode, SequencerError> {
    if no_record {
        let outcome = seq.execute_unrecorded(name).await?;
        print_outcome(name, &outcome);
        return Ok(ExitCode::from(u8::from(matches!(
            outcome,
            Outcome::Failed { .. }
        ))));
    }
    let report = live(seq, seq.execute(name)).await?;
    summary(&report);
    Ok(exit_of(&report))
}

/// `retry NAME`: a failed or interrupted operation again.
pub(super) async fn retry(seq: &Sequencer, name: &str) -> Result<ExitCode, SequencerError> {
    let report = live(seq, seq.retry(name)).await?;
    summary(&report);
    Ok(exit_of(&report))
}

/// `migrate`: the schema migrations, with operations between them under the migration strategy.
pub(super) async fn migrate(seq: &Sequencer) -> Result<ExitCode, SequencerError> {
    let report = live(seq, seq.migrate()).await?;
    for run in &report.runs {
        summary(run);
    }
    if let Some((version, error)) = &report.failed_migration {
        eprintln!("error: migration {version} failed: {error}");
        eprintln!("nothing after it ran; the migrations and operations before it stay recorded");
    }
    if let Some((version, why)) = &report.stopped_before {
        eprintln!("error: migration {version} was not applied: the operations planned before it must complete first: {why}");
        eprintln!("nothing after it ran; fix them (`status`, `errors`, `retry NAME`), then run `migrate` again to continue from there");
    }
    Ok(ExitCode::from(u8::from(!report.succeeded())))
}

/// `scheduled [--watch]`: the due `execute_at` / `delay` operations, once or until Ctrl-C.
pub(super) async fn scheduled(seq: &Sequencer, watch: bool) -> Result<ExitCode, SequencerError> {
    let seq = seq.using(crate::Scheduled);
    let opts = ProcessOptions {
        only_scheduled: true,
        ..ProcessOptions::default()
    };
    let mut worst = ExitCode::SUCCESS;
    loop {
        let report = live(&seq, seq.process(&opts)).await?;
        summary(&report);
        zones(&seq, &report);
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

/// Beside the UTC due time `summary` prints, the time zone of each operation scheduled at a time of day in one,
/// and the due time on that zone's clock.
fn zones(seq: &Sequencer, report: &crate::RunReport) {
    for (name, at) in &report.scheduled {
        let Ok(def) = seq.find(name) else { continue };
        if let Some(crate::Schedule::TimeOfDayIn {
            hour,
            minute,
            second,
            zone,
        }) = def.meta.schedule
        {
            let local = sequencer_core::format_in_zone(*at, zone).unwrap_or_default();
            let secs = if second > 0 {
                format!(":{second:02}")
            } else {
                String::new()
            };
            println!("    ({name} runs at {hour:02}:{minute:02}{secs} {zone}: {local})");
        }
    }
}
