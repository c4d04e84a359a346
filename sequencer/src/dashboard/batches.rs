//! `GET /batches`: the recorded batches and chains, newest first, a page at a time (a cursor on the id), each with
//! its progress (`n of m done`), failures and its callbacks' state; `GET /batch/{id}`: one batch and its members
//! in order, a page at a time, each linked to its operation or task run.

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::pages::failure;
use super::view::{self, progress, state_badge, time};
use super::{base, segment, Shared};
use crate::ledger::{BatchId, BatchInfo, BatchMemberRow};
use crate::SequencerError;

/// Batches a page of the list shows.
pub(crate) const BATCHES_PAGE: usize = 50;

/// Members a page of a batch shows.
pub(crate) const MEMBERS_PAGE: usize = 200;

/// The cursor of a page, from the URL.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Cursor {
    /// Batches: only those with a smaller id. Members: only those at a later position.
    #[serde(default)]
    after: String,
    /// The action just taken (`cancel`), for its notice.
    #[serde(default)]
    done: String,
}

impl Cursor {
    fn value(&self) -> Option<i64> {
        self.after.trim().parse().ok()
    }
}

/// `GET /batches`.
pub(crate) async fn list(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Query(cursor): Query<Cursor>,
) -> Response {
    let base = base(&original, &uri);
    let before = cursor.value().map(BatchId);
    let mut page = match state
        .seq
        .ledger()
        .batches_page(before, BATCHES_PAGE + 1)
        .await
    {
        Ok(p) => p,
        Err(e) => return failure(&base, &e.into()),
    };
    let more = page.len() > BATCHES_PAGE;
    page.truncate(BATCHES_PAGE);
    let next = page.last().filter(|_| more).map(|b| b.id.0);
    let body = html! {
        h1 { "Batches and chains" }
        p.muted { "Recorded with " code { "seq.batch(..)" } " and " code { "seq.chain(..)" } ", newest first." }
        table.batches {
            thead { tr { th { "Batch" } th { "Name" } th { "State" } th { "Progress" } th { "Failed" }
                th { "Skipped" } th { "Callbacks" } th { "Created" } th { "Finished" } } }
            tbody { @for b in &page { tr data-batch=(b.id.0) {
                td { a href={ (base) "/batch/" (b.id.0) } { (b.kind) " " (b.id.0) } }
                td { @if let Some(n) = &b.name { (n) } }
                td { (state_badge(batch_state(b))) }
                td.prog { (done_of(b)) " " (progress(Some(b.done()), Some(b.total), None)) }
                td { (b.failed) } td { (b.skipped) }
                td { (callbacks(b)) }
                td { (time(b.created_at)) }
                td { @if let Some(t) = b.finished_at { (time(t)) } }
            } } }
        }
        @if page.is_empty() { p.muted { "No batch recorded" @if before.is_some() { " before this one" } "." } }
        p.pages {
            @if before.is_some() { a href={ (base) "/batches" } { "← newest" } " " }
            @if let Some(n) = next { a.next href={ (base) "/batches?after=" (n) } { "older →" } }
        }
    };
    view::page(&base, "Batches", body).into_response()
}

/// `GET /batch/{id}`.
pub(crate) async fn one(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path(id): Path<String>,
    Query(cursor): Query<Cursor>,
) -> Response {
    let base = base(&original, &uri);
    let Ok(id) = id.trim().parse::<i64>() else {
        return view::message(
            &base,
            StatusCode::NOT_FOUND,
            "Not found",
            "A batch's id is a number.",
        );
    };
    match batch_body(&state, &base, BatchId(id), &cursor).await {
        Ok(Some(body)) => view::page(&base, &format!("Batch {id}"), body).into_response(),
        Ok(None) => view::message(
            &base,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("No batch has the id {id}."),
        ),
        Err(e) => failure(&base, &e),
    }
}

async fn batch_body(
    state: &Shared,
    base: &str,
    id: BatchId,
    cursor: &Cursor,
) -> Result<Option<Markup>, SequencerError> {
    let after = cursor.value();
    let ledger = state.seq.ledger();
    let Some(b) = ledger.batch_info(id).await? else {
        return Ok(None);
    };
    let mut members = ledger
        .batch_members_page(id, after, MEMBERS_PAGE + 1)
        .await?;
    let more = members.len() > MEMBERS_PAGE;
    members.truncate(MEMBERS_PAGE);
    let runs: Vec<(&str, i64)> = members.iter().map(|m| (m.name.as_str(), m.run)).collect();
    let tasks = ledger.task_runs_among(&runs).await?;
    let next = members.last().filter(|_| more).map(|m| m.position);
    let masked = |m: &BatchMemberRow| state.index.encrypted.contains(m.name.as_str());
    let actions = state.opts.actions_enabled();
    Ok(Some(html! {
        h1 { (b.kind) " " (b.id.0) @if let Some(n) = &b.name { " " (n) } " " (state_badge(batch_state(&b))) }
        @if cursor.done == "cancel" { p.notice { "Cancelled: members not started yet will not start; running ones see it." } }
        @if actions && batch_state(&b) == "running" {
            p.actions { a.button href={ (base) "/batch/" (b.id.0) "/cancel" } { "Cancel the batch…" } }
        } @else if !actions { p.muted { "Read-only: actions need SEQUENCER_DASHBOARD_TOKEN where the dashboard runs." } }
        p { (done_of(&b)) " " (progress(Some(b.done()), Some(b.total), None)) }
        table.meta { tbody {
            tr { th { "Failed" } td { (b.failed) } }
            tr { th { "Skipped" } td { (b.skipped) } }
            tr { th { "Still to end" } td { (b.pending) } }
            tr { th { "Queue" } td { @match &b.queue { Some(q) => (q), None => "each member's own" }
                @if b.in_process { " (run in the process that dispatched it)" } } }
            tr { th { "Failures" } td { @if b.allow_failures { "allowed: they do not cancel the batch" }
                @else { "the first one cancels the batch" } } }
            tr { th { "Created" } td { (time(b.created_at)) } }
            @if let Some(t) = b.cancelled_at { tr { th { "Cancelled" } td { (time(t)) } } }
            @if let Some(t) = b.finished_at { tr { th { "Finished" } td { (time(t)) } } }
            tr { th { "Callbacks" } td { (callbacks(&b)) } }
        } }
        @if let Some(e) = &b.callback_error { h2 { "Callback errors" } pre.error { (e) } }
        h2 { "Members" }
        table.members {
            thead { tr { th { "#" } th { "Member" } th { "Run" } th { "State" } th { "Ended" } th { "Note" } } }
            tbody { @for m in &members { tr data-member=(m.position) {
                td { (m.position + 1) }
                td { (member_link(base, m, tasks.contains(&(m.name.clone(), m.run)))) }
                td { (m.run) }
                td { (state_badge(m.state.as_str())) }
                td { @if let Some(t) = m.ended_at { (time(t)) } }
                td { @if let Some(r) = &m.reason { @if masked(m) { (view::MASKED) } @else { (r) } } }
            } } }
        }
        @if members.is_empty() { p.muted { "No member" @if after.is_some() { " after this one" } "." } }
        p.pages {
            @if after.is_some() { a href={ (base) "/batch/" (id.0) } { "← first members" } " " }
            @if let Some(n) = next { a.next href={ (base) "/batch/" (id.0) "?after=" (n) } { "next →" } }
        }
    }))
}

/// A member linked to its task run's page, or its operation's.
fn member_link(base: &str, m: &BatchMemberRow, task: bool) -> Markup {
    if task {
        html! { a href={ (base) "/task/" (segment(&m.name)) "/" (m.run) } { (m.name) } " " span.muted { "(task)" } }
    } else {
        html! { a href={ (base) "/op/" (segment(&m.name)) } { (m.name) } }
    }
}

/// `running`; once cancelled (by `cancel()`, the dashboard, or its first failure) `cancelled`; once every member
/// ended `completed`, or `failed` when members failed.
pub(crate) fn batch_state(b: &BatchInfo) -> &'static str {
    match (b.cancelled_at, b.finished_at) {
        (Some(_), _) => "cancelled",
        (None, Some(_)) if b.failed > 0 => "failed",
        (None, Some(_)) => "completed",
        (None, None) => "running",
    }
}

/// `640 of 1000 done`.
fn done_of(b: &BatchInfo) -> Markup {
    html! { span.done { (b.done()) " of " (b.total) " done" } }
}

/// Each callback with its state: `then` and `finally` start once every member ended, `catch` on the first
/// failure.
fn callbacks(b: &BatchInfo) -> Markup {
    html! {
        @if b.then.is_none() && b.catch.is_none() && b.finally.is_none() { span.muted { "none" } }
        @if let Some(t) = &b.then {
            div { "then " code { (t) } ": "
                @match (b.finished_at, b.cancelled_at) {
                    (Some(at), None) if b.failed == 0 || b.allow_failures => { "started " (time(at)) }
                    (Some(_), _) | (None, Some(_)) => { span.muted { "not run (the batch was cancelled, or a member failed)" } }
                    (None, None) => { span.muted { "waits for every member" } }
                }
            }
        }
        @if let Some(c) = &b.catch {
            div { "catch " code { (c) } ": "
                @match b.caught_at {
                    Some(at) => { "started " (time(at))
                        @if let Some(m) = &b.failed_member { " (" (m) " failed)" } }
                    None => { span.muted { "no failure caught" } }
                }
            }
        }
        @if let Some(f) = &b.finally {
            div { "finally " code { (f) } ": "
                @match b.finished_at { Some(at) => { "started " (time(at)) }, None => { span.muted { "waits for every member" } } }
            }
        }
        @if b.callback_error.is_some() { div { strong { "a callback failed" } } }
    }
}
