//! `GET /queues`: jobs per queue and state, the jobs workers hold now (who, and until when their claim holds), and
//! who holds the `--isolate` lock.

use std::collections::HashMap;

use axum::extract::{OriginalUri, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::pages::failure;
use super::view::{self, duration, time};
use super::{base, segment, Shared};
use crate::ledger::{now_ms, JobStatus};
use crate::{Sequencer, SequencerError};

/// The queues of the registry's `asynchronous` operations, `default` first.
pub(crate) fn names(seq: &Sequencer) -> Vec<&'static str> {
    let mut queues = vec![crate::DEFAULT_QUEUE];
    for d in seq.registry().operations() {
        if d.meta.asynchronous {
            let q = d.meta.queue.unwrap_or(crate::DEFAULT_QUEUE);
            if !queues.contains(&q) {
                queues.push(q);
            }
        }
    }
    queues
}

/// `GET /queues`.
pub(crate) async fn page(State(state): State<Shared>, original: OriginalUri, uri: Uri) -> Response {
    let base = base(&original, &uri);
    match body(&state, &base).await {
        Ok(body) => view::page(&base, "Queues", body).into_response(),
        Err(e) => failure(&base, &e),
    }
}

async fn body(state: &Shared, base: &str) -> Result<maud::Markup, SequencerError> {
    let ledger = state.seq.ledger();
    let mut counts: Vec<(&str, HashMap<JobStatus, i64>)> = Vec::new();
    for q in names(&state.seq) {
        counts.push((q, ledger.job_counts(q).await?));
    }
    let running = ledger.running_jobs().await?;
    let holder = ledger.isolation_holder().await?;
    let now = now_ms();
    Ok(html! {
        h1 { "Queues and workers" }
        p { "Isolation lock (" code { "process --isolate" } "): "
            @match &holder { Some(h) => { "held by " strong { (h) } }, None => { "free" } } }
        h2 { "Jobs by queue" }
        table { thead { tr { th { "Queue" } @for &s in JobStatus::ALL { th { (s.as_str()) } } } }
            tbody { @for (q, c) in &counts { tr {
                td { (q) } @for &s in JobStatus::ALL { td { (c.get(&s).copied().unwrap_or(0)) } }
            } } } }
        h2 { "Running jobs" }
        @if running.is_empty() { p.muted { "No worker holds a job." } }
        @else {
            table { thead { tr { th { "Operation" } th { "Run" } th { "Queue" } th { "Worker" } th { "Taken" }
                th { "Claim holds" } } }
              tbody { @for j in &running { tr {
                td { a href={ (base) "/op/" (segment(&j.name)) } { (j.name) } }
                td { (j.run) } td { (j.queue) } td { @if let Some(w) = &j.worker { (w) } }
                td { (j.attempts) "×" }
                td { @if let Some(until) = j.lease_until {
                    @if until >= now { "for " (duration(until - now)) " (until " (time(until)) ")" }
                    @else { strong { "expired " (duration(now - until)) " ago" } " — its worker may be dead; another worker rescues the job" }
                } }
              } } } }
        }
    })
}
