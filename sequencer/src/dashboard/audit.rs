//! `GET /audit`: the ledger's audit log, newest first.

use axum::extract::{OriginalUri, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::pages::failure;
use super::view::{self, time};
use super::{base, segment, Shared};

/// How many actions the page shows.
const SHOWN: i64 = 200;

/// `GET /audit`.
pub(crate) async fn page(State(state): State<Shared>, original: OriginalUri, uri: Uri) -> Response {
    let base = base(&original, &uri);
    let log = match state.seq.ledger().audit_log(SHOWN).await {
        Ok(l) => l,
        Err(e) => return failure(&base, &e.into()),
    };
    let body = html! {
        h1 { "Audit log" }
        p.muted { "Every action taken through the dashboard, newest first (the latest " (SHOWN) ")." }
        table.audit {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Outcome" }
                th { "Before" } th { "After" } th { "Reason" } th { "Detail" } } }
            tbody { @for a in &log { tr {
                td { (time(a.created_at)) } td { (a.actor) } td { (a.action) }
                td { @if let Some(t) = &a.target {
                    @if a.action == "retry_task" { a href={ (base) "/tasks?task=" (segment(t)) } { (t) } }
                    @else if a.action == super::batch_cancel::CANCEL_BATCH { a href={ (base) "/batch/" (segment(t)) } { "batch " (t) } }
                    @else { a href={ (base) "/op/" (segment(t)) } { (t) } }
                } }
                td { (a.outcome) }
                td { @if let Some(s) = &a.before { (s) } } td { @if let Some(s) = &a.after { (s) } }
                td { @if let Some(r) = &a.reason { (r) } } td { @if let Some(d) = &a.detail { (d) } }
            } } }
        }
        @if log.is_empty() { p.muted { "No action yet." } }
    };
    view::page(&base, "Audit log", body).into_response()
}
