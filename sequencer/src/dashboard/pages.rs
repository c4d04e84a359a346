//! The pages: the operations (filtered by the URL's query), and one operation.

use std::collections::HashMap;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::view::{self, badge, duration, progress, time, MASKED};
use super::{base, home, segment, Shared};
use crate::ledger::Status;
use crate::{OperationDef, SequencerError, StatusEntry};

/// The operations page's filters, from the URL (so a view can be bookmarked and shared).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    /// A status (`failed`), or nothing for all.
    #[serde(default)]
    status: String,
    /// A tag.
    #[serde(default)]
    tag: String,
    /// Text the name, or the last error, contains (case-insensitive).
    #[serde(default)]
    q: String,
    /// What an action just did (a fixed code, shown as a fixed sentence).
    #[serde(default)]
    done: String,
    /// Which page of the matching operations, from 0 ([`PAGE`] a page).
    #[serde(default)]
    page: usize,
}

/// Operations a page of the operations list shows.
const PAGE: usize = 200;

impl Filters {
    /// The list's URL for another page, with the same filters.
    fn page_url(&self, base: &str, page: usize) -> String {
        let query = serde_urlencoded::to_string([
            ("status", self.status.as_str()),
            ("tag", self.tag.as_str()),
            ("q", self.q.as_str()),
            ("page", page.to_string().as_str()),
        ])
        .unwrap_or_default();
        format!("{}?{query}", super::home(base))
    }
}

impl Filters {
    fn keep(&self, e: &StatusEntry, masked: bool) -> bool {
        if !self.status.is_empty() && e.status.as_str() != self.status {
            return false;
        }
        if !self.tag.is_empty() && !e.tags.contains(&self.tag) {
            return false;
        }
        let q = self.q.trim().to_lowercase();
        if q.is_empty() {
            return true;
        }
        e.name.to_lowercase().contains(&q)
            || (!masked
                && e.error
                    .as_deref()
                    .is_some_and(|err| err.to_lowercase().contains(&q)))
    }
}

/// The sentence for an action's `done` code.
pub(crate) fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "retry" => "Retry started: the operation runs again now.",
        "cancel" => "Cancel requested: the operation stops at its next checkpoint.",
        "rollback" => "Rolled back.",
        "complete" => "Marked completed.",
        "skip" => "Marked skipped.",
        "process" => "Processing started: pending operations run now.",
        "forget" => "Forgotten: the next `process` runs it again.",
        _ => return None,
    })
}

/// Whether the operation of this ledger name is `encrypted` (its errors and checkpoints are never shown).
pub(crate) fn encrypted(state: &Shared, name: &str) -> bool {
    state
        .seq
        .registry()
        .get(name)
        .is_some_and(|d| d.meta.encrypted)
}

/// `GET /`: every operation, filtered.
pub(crate) async fn operations(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Query(filters): Query<Filters>,
) -> Response {
    let base = base(&original, &uri);
    let entries = match state.seq.status().await {
        Ok(e) => e,
        Err(e) => return failure(&base, &e),
    };
    let mut counts: HashMap<Status, usize> = HashMap::new();
    let mut tags: Vec<&str> = Vec::new();
    for e in &entries {
        *counts.entry(e.status).or_default() += 1;
        for t in &e.tags {
            if !tags.contains(&t.as_str()) {
                tags.push(t);
            }
        }
    }
    tags.sort_unstable();
    let matching: Vec<&StatusEntry> = entries
        .iter()
        .filter(|e| filters.keep(e, encrypted(&state, &e.name)))
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let page = filters.page.min(pages - 1);
    let shown =
        &matching[(page * PAGE).min(matching.len())..((page + 1) * PAGE).min(matching.len())];
    let actions = state.opts.actions_enabled();
    let body = html! {
        h1 { "Operations" }
        @if let Some(n) = notice(&filters.done) { p.notice { (n) } }
        p.summary {
            @for &s in Status::ALL {
                @if let Some(n) = counts.get(&s) {
                    a href={ (home(&base)) "?status=" (s.as_str()) } { (badge(s)) " " (n) } " "
                }
            }
            @if actions { a.button href={ (base) "/process" } { "Run pending…" } }
            @else { span.muted { "read-only" } }
        }
        form.filters method="get" action={ (home(&base)) } {
            label { "Status " select name="status" {
                option value="" { "any" }
                @for &s in Status::ALL {
                    option value=(s.as_str()) selected[filters.status == s.as_str()] { (s.as_str()) }
                }
            } }
            label { "Tag " select name="tag" {
                option value="" { "any" }
                @for t in &tags { option value=(t) selected[filters.tag == *t] { (t) } }
            } }
            label { "Text " input type="search" name="q" value=(filters.q); }
            button type="submit" { "Filter" }
        }
        table.ops {
            thead { tr {
                th { "Operation" } th { "Status" } th { "Batch" } th { "Attempts" } th { "Started" }
                th { "Duration" } th { "Tags" } th { "Progress" } th { "Last error" }
            } }
            tbody {
                @for e in shown { (row(&base, e, encrypted(&state, &e.name))) }
            }
        }
        @if shown.is_empty() { p.muted { "No operation matches." } }
        @if pages > 1 {
            p.pages {
                "Page " (page + 1) " of " (pages) " (" (matching.len()) " operations) "
                @if page > 0 { a href=(filters.page_url(&base, page - 1)) { "← previous" } " " }
                @if page + 1 < pages { a href=(filters.page_url(&base, page + 1)) { "next →" } }
            }
        }
    };
    view::page(&base, "Operations", body).into_response()
}

fn row(base: &str, e: &StatusEntry, masked: bool) -> Markup {
    html! {
        tr data-op=(e.name) {
            td { a href={ (base) "/op/" (segment(&e.name)) } { (e.name) }
                 @if e.orphaned { " " span.muted { "(not in the registry)" } }
                 @if e.edited { " " span.muted { "(edited since it ran)" } } }
            td.status { (badge(e.status)) }
            td { @if let Some(b) = e.batch { (b) } }
            td { (e.attempts) }
            td { @if let Some(t) = e.started_at { (time(t)) } }
            td { @if let Some(d) = e.duration_ms { (duration(d)) } }
            td { @for t in &e.tags { span.tag { (t) } " " } }
            td.prog { (progress(e.progress_done, e.progress_total, e.eta_ms)) }
            td.error { @if let Some(err) = &e.error {
                @if masked { (MASKED) } @else { (first_line(err)) }
            } }
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(140) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

/// `GET /op/{name}`: one operation, every run, its errors with their causes, its checkpoint, its dependencies
/// and its dependents.
pub(crate) async fn operation(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path(name): Path<String>,
    Query(filters): Query<Filters>,
) -> Response {
    let base = base(&original, &uri);
    match operation_body(&state, &base, &name, &filters).await {
        Ok(Some(body)) => view::page(&base, &name, body).into_response(),
        Ok(None) => view::message(
            &base,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("No operation is named `{name}`."),
        ),
        Err(e) => failure(&base, &e),
    }
}

async fn operation_body(
    state: &Shared,
    base: &str,
    name: &str,
    filters: &Filters,
) -> Result<Option<Markup>, SequencerError> {
    let seq = &state.seq;
    let entries = seq.status().await?;
    let def = seq.registry().get(name);
    let name = def.map_or(name, |d| d.meta.name);
    let Some(entry) = entries.iter().find(|e| e.name == name) else {
        return Ok(None);
    };
    let masked = def.is_some_and(|d| d.meta.encrypted);
    let ledger = seq.ledger();
    let latest = ledger.rows().await?.into_iter().find(|r| r.name == name);
    let mut runs = Vec::new();
    if let Some(latest) = &latest {
        for run in (0..=latest.run).rev() {
            if let Some(r) = ledger.row_of(name, run).await? {
                runs.push(r);
            }
        }
    }
    let checkpoint = match &latest {
        Some(r) if !masked => ledger.last_checkpoint(name, r.run).await?,
        Some(_) => Some(MASKED.to_owned()),
        None => None,
    };
    let errors = seq.errors(Some(name)).await?;
    let status_of = |n: &str| entries.iter().find(|e| e.name == n).map(|e| e.status);
    let (deps, dependents) = neighbours(seq.registry(), name);
    let actions = state.opts.actions_enabled();
    let path = format!("{base}/op/{}", segment(name));
    Ok(Some(html! {
        h1 { (name) " " (badge(entry.status)) }
        @if let Some(n) = notice(&filters.done) { p.notice { (n) } }
        @if actions {
            p.actions {
                @for (action, label) in ACTIONS {
                    @if offered(action, entry.status, def.is_some_and(|d| d.meta.rollbackable)) {
                        a.button href={ (path) "/" (action) } { (label) "…" } " "
                    }
                }
            }
        } @else { p.muted { "Read-only: actions need SEQUENCER_DASHBOARD_TOKEN where the dashboard runs." } }
        @if entry.status == Status::Running { p { (progress(entry.progress_done, entry.progress_total, entry.eta_ms)) } }
        @if let Some(def) = def { (meta(def)) }
        h2 { "Runs" }
        table { thead { tr { th { "Run" } th { "Status" } th { "Batch" } th { "Attempts" } th { "Started" }
            th { "Finished" } th { "Duration" } th { "Host / pid" } th { "Actor" } th { "Note" } } }
          tbody { @for r in &runs { tr {
            td { (r.run) } td { (badge(r.status)) } td { @if let Some(b) = r.batch { (b) } } td { (r.attempts) }
            td { @if let Some(t) = r.started_at { (time(t)) } } td { @if let Some(t) = r.finished_at { (time(t)) } }
            td { @if let Some(d) = r.duration_ms { (duration(d)) } }
            td { @if let Some(h) = &r.host { (h) } @if let Some(p) = r.pid { " / " (p) } }
            td { @if let Some(a) = &r.actor { (a) } }
            td { @if let Some(s) = &r.skip_reason { (s) } @if r.cancel_requested { " cancel requested" }
                 @if let Some(e) = &r.last_error { pre.error { @if masked { (MASKED) } @else { (e) } } } }
          } } } }
        @if runs.is_empty() { p.muted { "It never ran." } }
        h2 { "Errors" }
        @if errors.is_empty() { p.muted { "None recorded." } }
        @for e in &errors {
            div.err {
                p { "Run " (e.run) ", attempt " (e.attempt) ", " (time(e.created_at)) }
                @if masked { pre.error { (MASKED) } } @else {
                    pre.error { (e.message) }
                    @if !e.chain.is_empty() && e.chain != e.message {
                        p.muted { "Caused by:" } pre.chain { (e.chain) }
                    }
                }
            }
        }
        h2 { "Checkpoint" }
        @match &checkpoint { Some(c) => pre.checkpoint { (c) }, None => p.muted { "None." } }
        h2 { "Depends on" }
        (links(base, &deps, &status_of))
        h2 { "Dependents" }
        (links(base, &dependents, &status_of))
    }))
}

/// The actions of the operation page: path segment and label.
pub(crate) const ACTIONS: [(&str, &str); 6] = [
    ("retry", "Retry"),
    ("cancel", "Cancel"),
    ("rollback", "Roll back"),
    ("complete", "Mark completed"),
    ("skip", "Mark skipped"),
    ("forget", "Forget"),
];

/// Whether the operation page offers an action for an operation in this status (the action itself checks again).
fn offered(action: &str, status: Status, rollbackable: bool) -> bool {
    let busy = matches!(status, Status::Running | Status::RollingBack);
    match action {
        "retry" => matches!(status, Status::Failed | Status::Interrupted | Status::Stale),
        "cancel" => status == Status::Running,
        "rollback" => {
            rollbackable && matches!(status, Status::Completed | Status::RollbackInterrupted)
        }
        "complete" => !busy && status != Status::Completed,
        "skip" => !busy && status != Status::Skipped,
        _ => !busy && status != Status::Pending,
    }
}

fn meta(def: &OperationDef) -> Markup {
    let m = &def.meta;
    html! {
        table.meta { tbody {
            tr { th { "Timestamp" } td { (m.timestamp) } }
            tr { th { "Function" } td { (m.module_path) "::" (m.fn_name) " (" (m.source.file) ":" (m.source.line) ")" } }
            @if !m.tags.is_empty() { tr { th { "Tags" } td { @for t in m.tags { span.tag { (t) } " " } } } }
            tr { th { "Tries" } td { (m.retry.tries) } }
            @if m.asynchronous { tr { th { "Queue" } td { (m.queue.unwrap_or(crate::DEFAULT_QUEUE)) } } }
            tr { th { "Flags" } td {
                @if m.rollbackable { "rollback " } @if m.idempotent { "idempotent " }
                @if m.transaction { "transaction " } @if m.encrypted { "encrypted " }
                @if m.allowed_to_fail { "allowed-to-fail " }
            } }
        } }
    }
}

fn links(base: &str, names: &[String], status_of: &dyn Fn(&str) -> Option<Status>) -> Markup {
    html! {
        @if names.is_empty() { p.muted { "None." } }
        ul { @for n in names { li {
            a href={ (base) "/op/" (segment(n)) } { (n) } " "
            @if let Some(s) = status_of(n) { (badge(s)) }
        } } }
    }
}

/// The operations `name` depends on, and those that depend on it.
fn neighbours(registry: &crate::Registry, name: &str) -> (Vec<String>, Vec<String>) {
    let Ok(plan) = registry.plan() else {
        return (Vec::new(), Vec::new());
    };
    let ops = registry.operations();
    let Some(me) = ops.iter().position(|d| d.meta.name == name) else {
        return (Vec::new(), Vec::new());
    };
    let deps = plan.deps[me]
        .iter()
        .map(|&i| ops[i].meta.name.to_owned())
        .collect();
    let dependents = plan
        .deps
        .iter()
        .enumerate()
        .filter(|(_, ds)| ds.contains(&me))
        .map(|(i, _)| ops[i].meta.name.to_owned())
        .collect();
    (deps, dependents)
}

/// A ledger error as a 500 page.
pub(crate) fn failure(base: &str, e: &SequencerError) -> Response {
    view::message(
        base,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The ledger could not be read",
        &e.to_string(),
    )
}
