//! `GET /tasks`: the typed tasks' runs (rows of the operations table carrying their arguments), counted by task
//! and state, and listed a page at a time (task and state filters in the URL, a cursor), their arguments escaped,
//! and never shown for an `encrypted` task; `GET /task/{name}/{run}`: one run; `GET`/`POST
//! /task/{name}/{run}/retry`: the confirmed retry of a failed or interrupted run, through the same checks as every
//! action (the token, same origin, not read-only, a view that has not gone stale) and recorded in the audit log.
//! Deferred operations are task runs (`deferred:NAME`) and listed with them; the rows older versions left in
//! `<p>deferred` are counted by state.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::actions::{audit, authorized, confirmation};
use super::pages::failure;
use super::security::refused_unless_enabled;
use super::view::{self, badge, duration, time};
use super::{base, segment, Shared};
use crate::ledger::{AuditEntry, LedgerRow, Status, TaskRunRow, TaskRunsPage};
use crate::SequencerError;

/// Task runs a page of the list shows.
pub(crate) const RUNS_PAGE: usize = 100;

/// What an `encrypted` task shows instead of its arguments and errors.
pub(crate) const MASKED_ARGS: &str = "[encrypted task: not shown]";

/// The audit log's name of the action.
const RETRY: &str = "retry_task";

/// The list's filters and cursor, from the URL.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TaskFilters {
    /// A task's ledger name, or nothing for every task.
    #[serde(default)]
    task: String,
    /// A status, or nothing for every status.
    #[serde(default)]
    status: String,
    /// The cursor: `RUN.TASK` of the last run of the page before.
    #[serde(default)]
    after: String,
    /// What an action just did (a fixed code, shown as a fixed sentence).
    #[serde(default)]
    done: String,
}

impl TaskFilters {
    fn task(&self) -> Option<&str> {
        Some(self.task.trim()).filter(|t| !t.is_empty())
    }

    fn status(&self) -> Result<Option<Status>, String> {
        match self.status.trim() {
            "" => Ok(None),
            s => s
                .parse()
                .map(Some)
                .map_err(|_| format!("`{s}` is not a status: showing every status.")),
        }
    }

    fn after(&self) -> Option<(&str, i64)> {
        let (run, task) = self.after.split_once('.')?;
        Some((task, run.parse().ok()?))
    }

    /// The filters as a query string (no cursor, no notice).
    fn query_string(&self) -> String {
        serde_urlencoded::to_string([("task", self.task.trim()), ("status", self.status.trim())])
            .unwrap_or_default()
    }
}

/// Whether a task's arguments and errors are hidden: the task is `encrypted`, or the value is sealed.
fn masked(state: &Shared, task: &str, value: &str) -> bool {
    state
        .seq
        .registry()
        .task(task)
        .is_some_and(|t| t.op.meta.encrypted)
        || crate::crypto::is_sealed(value)
}

/// A value of a task run as shown: masked, or cut to `max` characters.
fn shown(state: &Shared, task: &str, value: &str, max: usize) -> String {
    if masked(state, task, value) {
        return MASKED_ARGS.to_owned();
    }
    match value.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &value[..i]),
        None => value.to_owned(),
    }
}

/// A task run's row as drawn: any change (another operator retried it, a worker ran it) changes it.
fn version(r: &LedgerRow) -> String {
    format!(
        "{}:{}:{}:{}",
        r.status.as_str(),
        r.attempts,
        r.started_at.unwrap_or(0),
        r.finished_at.unwrap_or(0)
    )
}

/// Whether a run in this status can be retried (`Sequencer::retry_task` takes these).
fn retryable(status: Status) -> bool {
    matches!(status, Status::Failed | Status::Interrupted)
}

fn run_path(base: &str, name: &str, run: i64) -> String {
    format!("{base}/task/{}/{run}", segment(name))
}

/// `GET /tasks`.
pub(crate) async fn list(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Query(filters): Query<TaskFilters>,
) -> Response {
    let base = base(&original, &uri);
    match list_body(&state, &base, &filters).await {
        Ok(body) => view::page(&base, "Tasks", body).into_response(),
        Err(e) => failure(&base, &e),
    }
}

async fn list_body(
    state: &Shared,
    base: &str,
    filters: &TaskFilters,
) -> Result<Markup, SequencerError> {
    let ledger = state.seq.ledger();
    let status_error = filters.status().err();
    let page = TaskRunsPage {
        task: filters.task(),
        status: filters.status().ok().flatten(),
        after: filters.after(),
        limit: RUNS_PAGE + 1,
    };
    let (mut runs, counts, deferred) = tokio::try_join!(
        ledger.task_runs_page(&page),
        ledger.task_run_counts(),
        ledger.deferred_counts(),
    )?;
    let more = runs.len() > RUNS_PAGE;
    runs.truncate(RUNS_PAGE);
    let next = runs
        .last()
        .filter(|_| more)
        .map(|r| format!("{}.{}", r.row.run, r.row.name));
    let mut names: Vec<&str> = state
        .seq
        .registry()
        .tasks()
        .iter()
        .map(|t| t.name())
        .collect();
    names.extend(counts.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let count = |task: &str, s: Status| {
        counts
            .get(task)
            .and_then(|c| c.get(&s))
            .copied()
            .unwrap_or(0)
    };
    let states = [
        Status::Pending,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Interrupted,
        Status::Skipped,
    ];
    let actions = state.opts.actions_enabled();
    let qs = filters.query_string();
    Ok(html! {
        h1 { "Tasks" }
        @if filters.done == "retry" { p.notice { "Retry queued: the run is pending again and its job is on the queue." } }
        @if let Some(e) = status_error { p.message { (e) } }
        h2 { "Runs by task" }
        @if names.is_empty() { p.muted { "No task is registered or recorded." } }
        @else {
            table.task-counts {
                thead { tr { th { "Task" } @for s in states { th { (s.as_str()) } } } }
                tbody { @for t in &names { tr data-task=(t) {
                    td { a href={ (base) "/tasks?task=" (segment(t)) } { (t) } }
                    @for s in states { td { @match count(t, s) {
                        0 => span.muted { "0" },
                        n => a href={ (base) "/tasks?task=" (segment(t)) "&status=" (s.as_str()) } { (n) },
                    } } }
                } } }
            }
        }
        h2 { "Runs" }
        form.filters method="get" action={ (base) "/tasks" } {
            label { "Task " select name="task" {
                option value="" { "any" }
                @for t in &names { option value=(t) selected[filters.task == *t] { (t) } }
            } }
            label { "Status " select name="status" {
                option value="" { "any" }
                @for s in states { option value=(s.as_str()) selected[filters.status == s.as_str()] { (s.as_str()) } }
            } }
            button type="submit" { "Filter" }
        }
        table.task-runs {
            thead { tr { th { "Task" } th { "Run" } th { "Status" } th { "Attempts" } th { "Started" }
                th { "Duration" } th { "Arguments" } th { "Last error" } th {} } }
            tbody { @for r in &runs { (run_row(state, base, r, actions)) } }
        }
        @if runs.is_empty() { p.muted { "No task run matches" @if filters.after().is_some() { " here" } "." } }
        p.pages {
            @if !filters.after.is_empty() { a href={ (base) "/tasks?" (qs) } { "← first page" } " " }
            @if let Some(n) = next {
                a.next href={ (base) "/tasks?" (qs) "&" (serde_urlencoded::to_string([("after", n.as_str())]).unwrap_or_default()) } { "next →" }
            }
        }
        h2 { "Deferred rows of older versions" }
        p.muted { "Deferred operations (" code { "defer" } ") are runs of the tasks " code { "deferred:NAME" } ", listed \
            above. These are the rows versions before that left in the old table: pending ones are moved into task \
            runs by " code { "process-deferred" } " and every " code { "work" } " process (then counted as moved). \
            Prune the ended ones with " code { "prune" } "." }
        @if deferred.is_empty() { p.muted { "None recorded." } }
        @else { p.deferred { @for (s, n) in &deferred { span.badge data-state=(s) { (s) } " " (n) " " } } }
    })
}

fn run_row(state: &Shared, base: &str, r: &TaskRunRow, actions: bool) -> Markup {
    let row = &r.row;
    let path = run_path(base, &row.name, row.run);
    html! {
        tr data-run={ (row.name) "/" (row.run) } {
            td { a href={ (base) "/tasks?task=" (segment(&row.name)) } { (row.name) } }
            td { a href=(path) { (row.run) } }
            td { (badge(row.status)) }
            td { (row.attempts) }
            td { @if let Some(t) = row.started_at { (time(t)) } }
            td { @if let Some(d) = row.duration_ms { (duration(d)) } }
            td { @if let Some(a) = &r.args { code.args { (shown(state, &row.name, a, 200)) } } }
            td.error { @if let Some(e) = &row.last_error { (shown(state, &row.name, e.lines().next().unwrap_or(""), 140)) } }
            td { @if actions && retryable(row.status) { a.button href={ (path) "/retry" } { "Retry…" } } }
        }
    }
}

/// `GET /task/{name}/{run}`.
pub(crate) async fn one(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path((name, run)): Path<(String, String)>,
    Query(filters): Query<TaskFilters>,
) -> Response {
    let base = base(&original, &uri);
    let Some(r) = task_run(&state, &name, &run).await else {
        return not_found(&base, &name, &run);
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => return failure(&base, &e),
    };
    let row = &r.row;
    let actions = state.opts.actions_enabled();
    let body = html! {
        h1 { (row.name) " run " (row.run) " " (badge(row.status)) }
        @if filters.done == "retry" { p.notice { "Retry queued: the run is pending again and its job is on the queue." } }
        @if actions && retryable(row.status) {
            p.actions { a.button href={ (run_path(&base, &row.name, row.run)) "/retry" } { "Retry…" } }
        } @else if !actions { p.muted { "Read-only: actions need SEQUENCER_DASHBOARD_TOKEN where the dashboard runs." } }
        table.meta { tbody {
            tr { th { "Task" } td { a href={ (base) "/tasks?task=" (segment(&row.name)) } { (row.name) } } }
            tr { th { "Attempts" } td { (row.attempts) } }
            @if let Some(t) = row.started_at { tr { th { "Started" } td { (time(t)) } } }
            @if let Some(t) = row.finished_at { tr { th { "Finished" } td { (time(t)) } } }
            @if let Some(d) = row.duration_ms { tr { th { "Duration" } td { (duration(d)) } } }
            @if let Some(h) = &row.host { tr { th { "Host / pid" } td { (h) @if let Some(p) = row.pid { " / " (p) } } } }
            @if let Some(s) = &row.skip_reason { tr { th { "Skipped" } td { (s) } } }
        } }
        h2 { "Arguments" }
        @match &r.args { Some(a) => pre.args { (shown(&state, &row.name, a, usize::MAX)) }, None => p.muted { "None." } }
        h2 { "Last error" }
        @match &row.last_error { Some(e) => pre.error { (shown(&state, &row.name, e, usize::MAX)) }, None => p.muted { "None." } }
    };
    view::page(&base, &format!("{name} run {run}"), body).into_response()
}

/// The run `name`/`run` with its arguments; `None` when there is no such task run.
async fn task_run(
    state: &Shared,
    name: &str,
    run: &str,
) -> Option<Result<TaskRunRow, SequencerError>> {
    let run: i64 = run.trim().parse().ok()?;
    let page = TaskRunsPage {
        task: Some(name),
        after: Some((name, run + 1)),
        limit: 1,
        ..TaskRunsPage::default()
    };
    match state.seq.ledger().task_runs_page(&page).await {
        Ok(rows) => rows
            .into_iter()
            .find(|r| r.row.name == name && r.row.run == run)
            .map(Ok),
        Err(e) => Some(Err(e.into())),
    }
}

fn not_found(base: &str, name: &str, run: &str) -> Response {
    view::message(
        base,
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("No run {run} of a task named `{name}` is recorded."),
    )
}

/// `GET /task/{name}/{run}/retry`: asks for confirmation (and the token).
pub(crate) async fn confirm_retry(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path((name, run)): Path<(String, String)>,
) -> Response {
    let base = base(&original, &uri);
    if let Some(refusal) = refused_unless_enabled(&state.opts, &base) {
        return refusal;
    }
    let r = match task_run(&state, &name, &run).await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return failure(&base, &e),
        None => return not_found(&base, &name, &run),
    };
    let expected = (r.row.status.as_str().to_owned(), version(&r.row));
    confirmation(
        &base,
        &format!("{}/retry", run_path(&base, &name, r.row.run)),
        &format!("Retry {name} run {}?", r.row.run),
        "Puts the failed (or interrupted) task run back on its queue with its recorded arguments: the workers run it again.",
        "Retry",
        Some(&expected),
    )
}

/// `POST /task/{name}/{run}/retry`: the retry, once authorised; `303` to the run's page when done.
pub(crate) async fn retry(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path((name, run)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = base(&original, &uri);
    let fields = match authorized(&state, &base, RETRY, &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return *refusal,
    };
    let r = match task_run(&state, &name, &run).await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return failure(&base, &e),
        None => return not_found(&base, &name, &run),
    };
    let run = r.row.run;
    let before = r.row.status;
    let drawn = (fields.version.as_deref(), fields.expected.as_deref());
    let result = match drawn {
        (Some(v), _) if v != version(&r.row) => Err(format!(
            "run {run} of `{name}` changed since the page you acted from was drawn (it is {before} now, then {}): look again, then decide",
            v.split(':').next().unwrap_or("")
        )),
        (None, Some(s)) if s != before.as_str() => Err(format!(
            "run {run} of `{name}` is {before}, no longer {s} as on the page you acted from: look again, then decide"
        )),
        _ => match state.seq.retry_task(&name, run).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "run {run} of `{name}` is {before}, not failed or interrupted: nothing to retry"
            )),
            Err(e) => Err(e.to_string()),
        },
    };
    let after = match &result {
        Ok(()) => Some(Status::Pending.as_str()),
        Err(_) => None,
    };
    let detail = match &result {
        Ok(()) => format!("run {run}"),
        Err(e) => e.clone(),
    };
    let logged = audit(
        &state,
        AuditEntry {
            actor: fields.actor(),
            action: RETRY,
            target: Some(&name),
            outcome: if result.is_ok() { "ok" } else { "error" },
            before: Some(before.as_str()),
            after,
            reason: fields.reason.as_deref(),
            detail: Some(&detail),
        },
    )
    .await;
    let outcome = result.and(logged);
    state.count_action(RETRY, if outcome.is_ok() { "ok" } else { "error" });
    match outcome {
        Ok(()) => {
            Redirect::to(&format!("{}?done=retry", run_path(&base, &name, run))).into_response()
        }
        Err(text) => view::message(&base, StatusCode::CONFLICT, "Not done", &text),
    }
}
