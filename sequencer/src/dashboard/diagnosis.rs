//! What a run waits on, on its operation's page: its lease and the age of its heartbeat, of its last checkpoint
//! and of its last progress, its next try, and the throttle, pause, lock or dependency that holds it — with a
//! verdict when it looks stuck. And its progress history, drawn as a line.

use maud::{html, Markup};

use super::view::{duration, time};
use super::Shared;
use crate::ledger::{now_ms, ErrorRecord, LedgerRow, ProgressSample, Status};
use crate::{SequencerError, StatusEntry};

/// No checkpoint or progress for this long, while the lease is renewed: the run may wait on something.
const QUIET_MS: i64 = 5 * 60 * 1000;

/// An age, or a time to come, in words.
fn ago(at: i64, now: i64) -> String {
    if at <= now {
        format!("{} ago", duration(now - at))
    } else {
        format!("in {}", duration(at - now))
    }
}

/// The diagnosis of the operation's latest run (nothing for an operation that never ran).
pub(crate) async fn diagnose(
    state: &Shared,
    entry: &StatusEntry,
    latest: Option<&LedgerRow>,
    errors: &[ErrorRecord],
) -> Result<Markup, SequencerError> {
    let Some(row) = latest else {
        return Ok(html! {});
    };
    let seq = &state.seq;
    let ledger = seq.ledger();
    let now = now_ms();
    let samples = ledger
        .progress_samples(&[(row.name.as_str(), row.run)], 0)
        .await?
        .remove(&(row.name.clone(), row.run))
        .unwrap_or_default();
    let active = matches!(row.status, Status::Running | Status::RollingBack);
    let checkpoint_at = ledger.checkpoint_written_at(&row.name, row.run).await?;
    let holder = ledger.isolation_holder().await?;
    let job = ledger.job_status(&row.name, row.run).await?;
    let blocked_by = match job {
        Some(crate::ledger::JobStatus::Blocked) => ledger.blocked_by(&row.name, row.run).await?,
        _ => Vec::new(),
    };
    let lease_ms = seq.lease().as_millis() as i64;
    let heartbeat = row
        .lease_until
        .filter(|_| active)
        .map(|until| until - lease_ms);
    let expired = active && row.lease_until.is_some_and(|u| u < now);
    let last_progress = samples.last().map(|s| s.at);
    let quiet_since = checkpoint_at.max(last_progress).or(row.started_at);
    let quiet = active && !expired && quiet_since.is_some_and(|t| now - t > QUIET_MS);
    // Waiting between tries: the current try ended in an error the ledger recorded.
    let def = seq.registry().get(&row.name);
    let next_try = match (def, errors.last()) {
        (Some(def), Some(e))
            if row.status == Status::Running
                && e.run == row.run
                && e.attempt == row.attempts
                && (row.attempts as u32) < def.meta.retry.tries =>
        {
            let wait = def.meta.retry.delay_before(row.attempts as u32 + 1);
            Some((row.attempts + 1, e.created_at + wait.as_millis() as i64))
        }
        _ => None,
    };
    let tries = def.map_or(1, |d| d.meta.retry.tries);
    Ok(html! {
        h2 { "Diagnosis" }
        @if expired {
            p.message { "Looks stuck: its lease ran out " (ago(row.lease_until.unwrap_or(now), now))
                ". Its process is gone or hung; the next `process` (or a worker) recovers it as interrupted." }
        } @else if quiet {
            p.message { "No checkpoint and no progress for " (duration(now - quiet_since.unwrap_or(now)))
                ", though its process still renews its lease: it may wait on something (a lock, a slow query, an API)." }
        }
        table.meta { tbody {
            tr { th { "Run" } td { (row.run) ", try " (row.attempts) " of " (tries) } }
            @if let (Some(host), true) = (&row.host, active) {
                tr { th { "Held by" } td { (host) @if let Some(pid) = row.pid { " (pid " (pid) ")" } } }
            }
            @if let Some(until) = row.lease_until.filter(|_| active) {
                tr { th { "Lease" } td { @if expired { strong { "expired " (ago(until, now)) } } @else { "expires " (ago(until, now)) } } }
            }
            @if let Some(beat) = heartbeat {
                tr { th { "Last heartbeat" } td { "≈ " (ago(beat, now)) " "
                    span.muted { "(a lease of " (duration(lease_ms)) ", as this process is configured)" } } }
            }
            tr { th { "Last checkpoint" } td { @match checkpoint_at {
                Some(at) => { (ago(at, now)) " (" (time(at)) ")" },
                None => span.muted { "none" },
            } } }
            tr { th { "Last progress" } td { @match samples.last() {
                Some(s) => { (s.done) "/" (s.total) ", " (ago(s.at, now)) },
                None => span.muted { "none reported" },
            } } }
            @if let Some((n, at)) = next_try {
                tr { th { "Next try" } td { "try " (n) " " (ago(at, now)) " (after its backoff)" } }
            }
            @if entry.throttled {
                tr { th { "Throttled" } td { "its throttle_on condition holds it back"
                    @if let Some(since) = row.throttled_since { " since " (ago(since, now)) } } }
            }
            @if let Some(ms) = row.throttled_ms.filter(|ms| *ms > 0) {
                tr { th { "Time throttled" } td { (duration(ms)) " this run" } }
            }
            @if entry.paused { tr { th { "Paused" } td { "holding at a checkpoint until resumed (resume NAME)" } } }
            @if entry.pause_requested { tr { th { "Pause" } td { "asked: it holds at its next checkpoint" } } }
            @if row.cancel_requested && active { tr { th { "Cancel" } td { "asked: it stops at its next checkpoint" } } }
            @if let Some(job) = job { tr { th { "Job" } td { (job.as_str())
                @if !blocked_by.is_empty() { ": waits for " (blocked_by.join(", ")) } } } }
            @if let Some(h) = &holder { tr { th { "Isolation lock" } td { "held by " (h) " (a `process --isolate` runs)" } } }
        } }
        @if samples.len() > 1 { h2 { "Progress history" } (history(&samples)) }
    })
}

/// The run's progress samples as a line: done / total over time.
fn history(samples: &[ProgressSample]) -> Markup {
    let (w, h) = (480.0_f64, 80.0_f64);
    let (first, last) = (samples[0].at, samples[samples.len() - 1].at);
    let span = (last - first).max(1) as f64;
    let points: Vec<String> = samples
        .iter()
        .map(|s| {
            let x = (s.at - first) as f64 / span * w;
            let ratio = if s.total > 0 {
                s.done as f64 / s.total as f64
            } else {
                0.0
            };
            format!("{x:.1},{:.1}", h - ratio.clamp(0.0, 1.0) * h)
        })
        .collect();
    html! {
        svg.history width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" {
            title { "Progress from " (time(first)) " to " (time(last)) }
            polyline points=(points.join(" ")) {}
        }
        p.muted { (samples.len()) " samples, " (time(first)) " – " (time(last)) }
    }
}
