//! One operation's page: its runs, errors, checkpoint, progress history, what it waits on, its neighbours.

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::list::Filters;
use super::view::{self, badge, duration, progress, time, MASKED};
use super::{base, segment, Shared};
use crate::ledger::Status;
use crate::{OperationDef, SequencerError, StatusEntry, StatusQuery};

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

/// The entries of some operations (their latest runs), bounded whatever the ledger's size.
pub(crate) async fn entries_of(
    state: &Shared,
    names: &[String],
) -> Result<Vec<StatusEntry>, SequencerError> {
    let page = state
        .seq
        .status_page(&StatusQuery {
            names: Some(names.to_vec()),
            limit: names.len().max(1),
            ..StatusQuery::default()
        })
        .await?;
    Ok(page.entries)
}

/// The entry of one operation (by ledger name or a name `find` resolves).
pub(crate) async fn entry_of(
    state: &Shared,
    name: &str,
) -> Result<Option<StatusEntry>, SequencerError> {
    let name = state.seq.find(name).map_or(name, |d| d.meta.name);
    Ok(entries_of(state, &[name.to_owned()])
        .await?
        .into_iter()
        .find(|e| e.name == name))
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
    let def = seq.registry().get(name);
    let name = def.map_or(name, |d| d.meta.name);
    let (deps, dependents) = neighbours(seq.registry(), name);
    let mut names = vec![name.to_owned()];
    names.extend(deps.iter().chain(&dependents).cloned());
    let entries = entries_of(state, &names).await?;
    let Some(entry) = entries.iter().find(|e| e.name == name) else {
        return Ok(None);
    };
    let masked = def.is_some_and(|d| d.meta.encrypted);
    let ledger = seq.ledger();
    let names = [name];
    let latest = ledger
        .latest_rows_page(&crate::ledger::RowsPage {
            names: Some(&names),
            limit: 1,
            ..Default::default()
        })
        .await?
        .pop();
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
    let diagnosis = super::diagnosis::diagnose(state, entry, latest.as_ref(), &errors).await?;
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
        @if entry.status == Status::Running { p { (progress(entry.progress_done, entry.progress_total, entry.eta_ms))
            @if let Some(b) = entry.eta_basis { " " span.muted { "(" (b.describe()) ")" } } } }
        (diagnosis)
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
