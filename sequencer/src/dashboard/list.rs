//! `GET /`: the operations, a page at a time ([`Sequencer::status_page`](crate::Sequencer::status_page)): filters
//! by status, tag and text in the URL and in the ledger's statement, a cursor ("next") instead of page numbers,
//! and counts by status cached for [`COUNTS_FOR`] instead of counted on every refresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{OriginalUri, Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::pages::{failure, notice};
use super::view::{self, badge, duration, progress, time, MASKED};
use super::{base, home, segment, Shared};
use crate::ledger::{now_ms, Status};
use crate::{SequencerError, StatusEntry, StatusPage, StatusQuery};

/// Operations a page of the list shows.
pub(crate) const PAGE: usize = 200;

/// How long counts by status are reused before they are counted again (in the background).
pub(crate) const COUNTS_FOR: Duration = Duration::from_secs(15);

/// The list's filters and cursor, from the URL (so a view can be bookmarked and shared).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Filters {
    /// A status (`failed`), or nothing for all.
    #[serde(default)]
    pub(crate) status: String,
    /// A tag.
    #[serde(default)]
    pub(crate) tag: String,
    /// Text the name, or the last error, contains (case-insensitive).
    #[serde(default)]
    pub(crate) q: String,
    /// What an action just did (a fixed code, shown as a fixed sentence).
    #[serde(default)]
    pub(crate) done: String,
    /// The cursor: `TIMESTAMP.NAME` of the last operation of the page before.
    #[serde(default)]
    pub(crate) after: String,
}

impl Filters {
    /// The status filter, or why it is not one.
    pub(crate) fn status(&self) -> Result<Option<Status>, String> {
        match self.status.trim() {
            "" => Ok(None),
            s => s
                .parse()
                .map(Some)
                .map_err(|_| format!("`{s}` is not a status: showing every status.")),
        }
    }

    /// The query of the ledger for these filters, `limit` operations.
    pub(crate) fn query(&self, limit: usize) -> StatusQuery {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        StatusQuery {
            status: self.status().ok().flatten(),
            tag: some(&self.tag),
            names: None,
            text: some(&self.q),
            after: self
                .after
                .split_once('.')
                .and_then(|(t, n)| Some((t.parse().ok()?, n.to_owned()))),
            limit,
        }
    }

    /// The filters as a query string (no cursor, no notice).
    pub(crate) fn query_string(&self) -> String {
        serde_urlencoded::to_string([
            ("status", self.status.as_str()),
            ("tag", self.tag.as_str()),
            ("q", self.q.as_str()),
        ])
        .unwrap_or_default()
    }

    /// The list's URL from the cursor `next`, with the same filters.
    fn next_url(&self, base: &str, next: &(i64, String)) -> String {
        let after = format!("{}.{}", next.0, next.1);
        let cursor = serde_urlencoded::to_string([("after", after.as_str())]).unwrap_or_default();
        format!("{}?{}&{cursor}", home(base), self.query_string())
    }

    /// Whether any filter is set (what a bulk action applies to).
    pub(crate) fn any(&self) -> bool {
        !(self.status.trim().is_empty() && self.tag.trim().is_empty() && self.q.trim().is_empty())
    }
}

/// Operations by the status of their latest run, counted at `at`.
pub(crate) struct Counts {
    pub(crate) at: Instant,
    pub(crate) at_ms: i64,
    pub(crate) by_status: HashMap<Status, usize>,
}

/// Counts every operation by status: the ledger's latest runs, and the registry's operations it has no row of
/// (pending). Reads the whole operations table: cached ([`counts`]).
async fn count(state: &Shared) -> Result<Counts, SequencerError> {
    let latest = state.seq.ledger().latest_statuses().await?;
    let mut by_status: HashMap<Status, usize> = HashMap::new();
    for s in latest.values() {
        *by_status.entry(*s).or_default() += 1;
    }
    let unrecorded = state
        .seq
        .registry()
        .operations()
        .iter()
        .filter(|d| !latest.contains_key(d.meta.name))
        .count();
    if unrecorded > 0 {
        *by_status.entry(Status::Pending).or_default() += unrecorded;
    }
    Ok(Counts {
        at: Instant::now(),
        at_ms: now_ms(),
        by_status,
    })
}

/// The counts by status: counted now when there are none yet, else the cached ones, counted again in the
/// background once older than [`COUNTS_FOR`] (one count at a time).
pub(crate) async fn counts(state: &Shared) -> Result<Arc<Counts>, SequencerError> {
    let cached = state.counts.lock().ok().and_then(|c| c.clone());
    match cached {
        Some(c) => {
            if c.at.elapsed() > COUNTS_FOR
                && !state
                    .counting
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Ok(fresh) = count(&state).await {
                        if let Ok(mut slot) = state.counts.lock() {
                            *slot = Some(Arc::new(fresh));
                        }
                    }
                    state
                        .counting
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                });
            }
            Ok(c)
        }
        None => {
            let fresh = Arc::new(count(state).await?);
            if let Ok(mut slot) = state.counts.lock() {
                *slot = Some(fresh.clone());
            }
            Ok(fresh)
        }
    }
}

/// `GET /`: a page of the operations, filtered.
pub(crate) async fn operations(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Query(filters): Query<Filters>,
) -> Response {
    let base = base(&original, &uri);
    let query = filters.query(PAGE);
    let (page, counts) = match tokio::try_join!(state.seq.status_page(&query), counts(&state)) {
        Ok(both) => both,
        Err(e) => return failure(&base, &e),
    };
    view::page(
        &base,
        "Operations",
        body(&state, &base, &filters, &page, &counts),
    )
    .into_response()
}

fn body(
    state: &Shared,
    base: &str,
    filters: &Filters,
    page: &StatusPage,
    counts: &Counts,
) -> Markup {
    let actions = state.opts.actions_enabled();
    let status_error = filters.status().err();
    html! {
        h1 { "Operations" }
        @if let Some(n) = notice(&filters.done) { p.notice { (n) } }
        @if let Some(e) = status_error { p.message { (e) } }
        p.summary {
            @for &s in Status::ALL {
                @if let Some(n) = counts.by_status.get(&s) {
                    a href={ (home(base)) "?status=" (s.as_str()) } { (badge(s)) " " (n) } " "
                }
            }
            span.muted title="Counted at most every 15 seconds, not on every refresh." {
                "(counted " (time(counts.at_ms)) ")"
            }
            " "
            @if actions { a.button href={ (base) "/process" } { "Run pending…" } }
            @else { span.muted { "read-only" } }
        }
        form.filters method="get" action={ (home(base)) } {
            label { "Status " select name="status" {
                option value="" { "any" }
                @for &s in Status::ALL {
                    option value=(s.as_str()) selected[filters.status == s.as_str()] { (s.as_str()) }
                }
            } }
            label { "Tag " select name="tag" {
                option value="" { "any" }
                @for t in &state.index.tags { option value=(t) selected[filters.tag == *t] { (t) } }
            } }
            label { "Text " input type="search" name="q" value=(filters.q); }
            button type="submit" { "Filter" }
            @if actions && filters.any() {
                " "
                @for (action, label) in super::bulk::BULK {
                    a.button href={ (base) "/bulk/" (action) "?" (filters.query_string()) } { (label) " all matching…" } " "
                }
            }
        }
        table.ops {
            thead { tr {
                th { "Operation" } th { "Status" } th { "Batch" } th { "Attempts" } th { "Started" }
                th { "Duration" } th { "Tags" } th { "Progress" } th { "Last error" }
            } }
            tbody {
                @for e in &page.entries { (row(base, e, state.index.encrypted.contains(e.name.as_str()))) }
            }
        }
        @if page.entries.is_empty() { p.muted { "No operation matches" @if page.next.is_some() { " here" } "." } }
        p.pages {
            @if !filters.after.is_empty() {
                a href={ (home(base)) "?" (filters.query_string()) } { "← first page" } " "
            }
            @if let Some(next) = &page.next {
                a.next href=(filters.next_url(base, next)) { "next →" }
            }
        }
    }
}

/// One operation's row.
pub(crate) fn row(base: &str, e: &StatusEntry, masked: bool) -> Markup {
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
