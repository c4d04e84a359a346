//! Bulk actions over the operations list's filter ("retry every failed operation tagged billing"): a
//! confirmation (`GET /bulk/{action}?status=..&tag=..&q=..`) listing the operations it applies to, at most
//! [`CAP`], each with its version as drawn; the action (`POST`), authorised as every action is, then taken on each
//! listed operation that still matches the filter and has not changed since, with one audit entry each.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::actions::{apply, authorized, version, Action, Fields};
use super::list::Filters;
use super::pages::failure;
use super::security::refused_unless_enabled;
use super::view::{self, badge};
use super::{base, home, segment, Shared};
use crate::ledger::Status;
use crate::{SequencerError, StatusEntry};

/// At most this many operations are acted on by one bulk action.
pub(crate) const CAP: usize = 100;

/// Pages of the list one bulk action looks through for operations it applies to.
const PAGES: usize = 5;

/// The bulk actions: path segment and label.
pub(crate) const BULK: [(&str, &str); 3] = [
    ("retry", "Retry"),
    ("cancel", "Cancel"),
    ("skip", "Mark skipped"),
];

/// Whether the action applies to an operation in this status.
fn applies(action: Action, status: Status) -> bool {
    match action {
        Action::Retry => matches!(status, Status::Failed | Status::Interrupted | Status::Stale),
        Action::Cancel => status == Status::Running,
        Action::Skip => matches!(
            status,
            Status::Pending | Status::Failed | Status::Interrupted
        ),
        _ => false,
    }
}

fn bulk_action(s: &str) -> Option<Action> {
    BULK.iter()
        .any(|(a, _)| *a == s)
        .then(|| Action::parse(s))
        .flatten()
}

/// The operations matching `filters` the action applies to, at most [`CAP`], and whether there are more.
async fn targets(
    state: &Shared,
    action: Action,
    filters: &Filters,
) -> Result<(Vec<StatusEntry>, bool), SequencerError> {
    let mut out = Vec::new();
    let mut query = filters.query(super::list::PAGE);
    query.after = None;
    for _ in 0..PAGES {
        let page = state.seq.status_page(&query).await?;
        for e in page.entries {
            if applies(action, e.status) {
                if out.len() == CAP {
                    return Ok((out, true));
                }
                out.push(e);
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok((out, false)),
        }
    }
    Ok((out, true))
}

fn not_bulk(base: &str) -> Response {
    view::message(
        base,
        StatusCode::NOT_FOUND,
        "Not found",
        "No such bulk action.",
    )
}

/// `GET /bulk/{action}`: the operations the action would apply to, and a confirmation.
pub(crate) async fn confirm(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path(action): Path<String>,
    Query(filters): Query<Filters>,
) -> Response {
    let base = base(&original, &uri);
    let Some(action) = bulk_action(&action) else {
        return not_bulk(&base);
    };
    if let Some(refusal) = refused_unless_enabled(&state.opts, &base) {
        return refusal;
    }
    if !filters.any() {
        return view::message(&base, StatusCode::BAD_REQUEST, "No filter",
            "A bulk action applies to a filter: choose a status, a tag or a text on the operations page first.");
    }
    let (ops, more) = match targets(&state, action, &filters).await {
        Ok(t) => t,
        Err(e) => return failure(&base, &e),
    };
    let path = format!("{base}/bulk/{}", action.name());
    let title = format!("{} every matching operation?", action.label());
    let body = html! {
        h1 { (title) }
        p { (action.explain()) }
        p { "Filter: "
            @if !filters.status.is_empty() { "status " strong { (filters.status) } " " }
            @if !filters.tag.is_empty() { "tag " strong { (filters.tag) } " " }
            @if !filters.q.is_empty() { "text " strong { (filters.q) } }
        }
        @if ops.is_empty() { p.muted { "No matching operation can be " (action.name()) "-ed now." } }
        @else {
            p { strong { (ops.len()) } " operation(s)"
                @if more { ", the first " (CAP) " of more (at most " (CAP) " at a time)" } " — those that changed \
                since this page was drawn are left alone:" }
            form.confirm method="post" action=(path) {
                input type="hidden" name="status" value=(filters.status);
                input type="hidden" name="tag" value=(filters.tag);
                input type="hidden" name="q" value=(filters.q);
                table { tbody { @for e in &ops { tr {
                    td { input type="hidden" name="op" value={ (e.name) " " (version(e)) };
                         a href={ (base) "/op/" (segment(&e.name)) } { (e.name) } }
                    td { (badge(e.status)) } td { (e.attempts) " tries" }
                } } } }
                p { label { "Token " input type="password" name="token" autocomplete="off" required; } }
                p { label { "Your name " input type="text" name="actor" maxlength="255"; } }
                p { label { "Reason " input type="text" name="reason"; } }
                button type="submit" { (action.label()) " " (ops.len()) }
                " "
                a href={ (home(&base)) "?" (filters.query_string()) } { "Cancel" }
            }
        }
    };
    view::page(&base, &title, body).into_response()
}

/// `POST /bulk/{action}`: authorised first; then each listed operation that still matches the filter is acted on
/// unless it changed since it was drawn. A page with each one's outcome: `200` when every one was done, `409`
/// otherwise.
pub(crate) async fn act(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = base(&original, &uri);
    let Some(action) = bulk_action(&action) else {
        return not_bulk(&base);
    };
    let fields = match authorized(&state, &base, action.name(), &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return *refusal,
    };
    let filters = Filters {
        status: fields.status.clone(),
        tag: fields.tag.clone(),
        q: fields.q.clone(),
        ..Filters::default()
    };
    if !filters.any() || fields.ops.is_empty() {
        return view::message(
            &base,
            StatusCode::BAD_REQUEST,
            "Not done",
            "A bulk action needs a filter and the operations its confirmation listed.",
        );
    }
    // The operations the filter matches now: a listed one that no longer matches is left alone.
    let matching: HashMap<String, StatusEntry> = match targets(&state, action, &filters).await {
        Ok((ops, _)) => ops.into_iter().map(|e| (e.name.clone(), e)).collect(),
        Err(e) => return failure(&base, &e),
    };
    let mut outcomes: Vec<(String, Result<(), String>)> = Vec::new();
    for op in fields.ops.iter().take(CAP) {
        let (name, drawn) = op.split_once(' ').unwrap_or((op.as_str(), ""));
        if !matching.contains_key(name) {
            outcomes.push((
                name.to_owned(),
                Err(
                    "it no longer matches the filter (or the action does not apply to it now)"
                        .to_owned(),
                ),
            ));
            continue;
        }
        let one = Fields {
            token: None,
            actor: fields.actor.clone(),
            reason: fields.reason.clone(),
            expected: None,
            version: Some(drawn.to_owned()),
            ..Fields::default()
        };
        let result = apply(&state, action, name, &one).await.map(drop);
        outcomes.push((name.to_owned(), result));
    }
    let done = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let code = if done == outcomes.len() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let title = format!("{}: {done} of {} done", action.label(), outcomes.len());
    let body = html! {
        h1 { (title) }
        table { tbody { @for (name, r) in &outcomes { tr {
            td { a href={ (base) "/op/" (segment(name)) } { (name) } }
            td { @match r { Ok(()) => "done", Err(e) => span.message { "not done: " (e) } } }
        } } } }
        p { a href={ (home(&base)) "?" (filters.query_string()) } { "Back to the operations" } }
    };
    (code, view::page(&base, &title, body)).into_response()
}
