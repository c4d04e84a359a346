//! `GET /plan`: what `process` would run now, without running anything: its waves in order, the critical path,
//! the time predicted from each operation's last recorded duration, and which operations have no rollback.

use std::collections::{HashMap, HashSet};

use axum::extract::{OriginalUri, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::pages::failure;
use super::view::{self, duration};
use super::{base, segment, Shared};
use crate::ProcessOptions;

/// The most operations the plan's table lists.
pub(crate) const PLAN_ROWS: usize = 1_000;

/// `GET /plan`: `process --dry-run`'s plan and the due operations' last durations, from one read of the ledger
/// (its [`Outline`](crate::Outline): the runs that still need something, and which operations were recorded).
pub(crate) async fn page(State(state): State<Shared>, original: OriginalUri, uri: Uri) -> Response {
    let base = base(&original, &uri);
    let seq = &state.seq;
    let opts = ProcessOptions::default();
    let preview = match seq.preview(&opts).await {
        Ok(p) => p,
        Err(e) => return failure(&base, &e),
    };
    let last = &preview.last_durations;
    let known = preview.planned.iter().all(|n| last.contains_key(n));
    // A look-up per listed operation, not a pass over the registry.
    let registry = seq.registry();
    let no_rollback: HashSet<&str> = preview
        .planned
        .iter()
        .take(PLAN_ROWS)
        .filter(|n| registry.get(n).is_some_and(|d| !d.meta.rollbackable))
        .map(String::as_str)
        .collect();
    let wave_of: HashMap<&str, usize> = preview
        .waves
        .iter()
        .enumerate()
        .flat_map(|(w, names)| names.iter().map(move |n| (n.as_str(), w)))
        .collect();
    let critical: HashSet<&str> = preview.critical_path.iter().map(String::as_str).collect();
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
            @if preview.planned.len() > PLAN_ROWS {
                p.notice { "The first " (PLAN_ROWS) " are listed; " code { "process --dry-run" } " lists them all." }
            }
            table { thead { tr { th { "#" } th { "Wave" } th { "Operation" } th { "Last duration" } th { "Critical path" } th { "Rollback" } } }
              tbody {
                @for (i, name) in preview.planned.iter().take(PLAN_ROWS).enumerate() { tr {
                    td { (i + 1) }
                    td { @if let Some(w) = wave_of.get(name.as_str()) { (w + 1) } }
                    td { a href={ (base) "/op/" (segment(name)) } { (name) } }
                    td { @if let Some(d) = last.get(name) { (duration(*d as i64)) } }
                    td { @if critical.contains(name.as_str()) { "yes" } }
                    td { @if no_rollback.contains(name.as_str()) { strong { "none" } } @else { "yes" } }
                } }
              }
            }
        }
    };
    view::page(&base, "Plan", body).into_response()
}
