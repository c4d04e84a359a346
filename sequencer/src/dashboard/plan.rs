//! `GET /plan`: what `process` would run now, without running anything: its waves in order, the critical path,
//! the time predicted from each operation's last recorded duration, and which operations have no rollback.

use std::collections::HashMap;

use axum::extract::{OriginalUri, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::pages::failure;
use super::view::{self, duration};
use super::{base, segment, Shared};
use crate::ProcessOptions;

/// `GET /plan`.
pub(crate) async fn page(State(state): State<Shared>, original: OriginalUri, uri: Uri) -> Response {
    let base = base(&original, &uri);
    let seq = &state.seq;
    let (preview, entries) = match (
        seq.preview(&ProcessOptions::default()).await,
        seq.status().await,
    ) {
        (Ok(p), Ok(e)) => (p, e),
        (Err(e), _) | (_, Err(e)) => return failure(&base, &e),
    };
    let last: HashMap<&str, i64> = entries
        .iter()
        .filter_map(|e| Some((e.name.as_str(), e.duration_ms?)))
        .collect();
    let known = preview
        .planned
        .iter()
        .all(|n| last.contains_key(n.as_str()));
    let no_rollback = |n: &str| seq.registry().get(n).is_some_and(|d| !d.meta.rollbackable);
    let body = html! {
        h1 { "Plan" }
        @if preview.planned.is_empty() { p.muted { "Nothing is due: `process` would run nothing now." } }
        @else {
            p {
                (preview.planned.len()) " operation(s) due, in " (preview.waves.len()) " wave(s). "
                @if known {
                    "Predicted from their last recorded durations: " (duration(preview.total_work as i64))
                    " one after the other, " (duration(preview.critical_weight as i64)) " at best in parallel (the critical path)."
                } @else { "Some never ran, so no time is predicted." }
            }
            table { thead { tr { th { "#" } th { "Wave" } th { "Operation" } th { "Last duration" } th { "Critical path" } th { "Rollback" } } }
              tbody {
                @for (i, name) in preview.planned.iter().enumerate() { tr {
                    td { (i + 1) }
                    td { @if let Some(w) = preview.waves.iter().position(|w| w.contains(name)) { (w + 1) } }
                    td { a href={ (base) "/op/" (segment(name)) } { (name) } }
                    td { @if let Some(d) = last.get(name.as_str()) { (duration(*d)) } }
                    td { @if preview.critical_path.contains(name) { "yes" } }
                    td { @if no_rollback(name) { strong { "none" } } @else { "yes" } }
                } }
              }
            }
        }
    };
    view::page(&base, "Plan", body).into_response()
}
