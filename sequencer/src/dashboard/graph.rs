//! `GET /graph`: the dependency graph as an SVG drawn here: one column per wave, the critical path in red,
//! each operation coloured by status and linked to its page. A registry too large to draw is drawn in part: what
//! is still to run, at most [`GRAPH_NODES`] of it, with what is left out said.

use std::collections::{HashMap, HashSet};

use axum::extract::{OriginalUri, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::pages::failure;
use super::{base, segment, view, Shared};
use crate::ledger::Status;
use crate::render::analyze_among;
use crate::LatestRun;

const COLUMN: i64 = 250;
const ROW: i64 = 46;
const WIDTH: i64 = 220;
const HEIGHT: i64 = 30;
const MARGIN: i64 = 10;

/// The most operations the graph draws: a larger registry is drawn in part (see [`page`]).
pub(crate) const GRAPH_NODES: usize = 500;

/// `GET /graph`. A registry of at most [`GRAPH_NODES`] operations is drawn whole, from the status and duration
/// of each operation's latest run (two columns). A larger one is drawn from the ledger's
/// [`Outline`](crate::Outline) (the runs that still need something, and which operations were recorded; never
/// the completed rows): the waves and critical path of what is still to run (never run, pending, failed,
/// running, rolled back …), its first [`GRAPH_NODES`] operations in execution order drawn, and the page says
/// how many are left out and how many completed.
pub(crate) async fn page(State(state): State<Shared>, original: OriginalUri, uri: Uri) -> Response {
    let base = base(&original, &uri);
    let registry = state.seq.registry();
    let ops = registry.operations();
    if ops.len() <= GRAPH_NODES {
        return whole(&state, &base).await;
    }
    let outline = match state.seq.outline().await {
        Ok(o) => o,
        Err(e) => return failure(&base, &e),
    };
    let durations: HashMap<String, u64> = outline
        .open_runs()
        .filter_map(|r| Some((r.name.clone(), u64::try_from(r.duration_ms?).ok()?.max(1))))
        .collect();
    let left = |i: usize| !matches!(outline.latest(ops[i].meta.name), LatestRun::Done);
    let view = match analyze_among(registry, &durations, left) {
        Ok(v) => v,
        Err(e) => return failure(&base, &crate::SequencerError::Usage(e.to_string())),
    };
    let drawn: HashSet<usize> = view.order.iter().copied().take(GRAPH_NODES).collect();
    let done = ops.len() - view.order.len();
    let status = |name: &str| outline.status(name);
    let body = html! {
        h1 { "Dependency graph" }
        p.notice {
            (ops.len()) " operations are too many to draw. " (done) " completed or skipped are not drawn "
            "(dependencies on them are met); " (view.order.len()) " are still to run or need attention"
            @if drawn.len() < view.order.len() {
                ": the first " (drawn.len()) " of them in execution order are drawn, the other "
                (view.order.len() - drawn.len()) " are not"
            }
            ". The whole graph: " code { "graph --format dot" } "; what would run: " a href={ (base) "/plan" } { "the plan" } "."
        }
        p.muted {
            "What is left: " (view.waves.len()) " wave(s); critical path of " (view.critical_path.len()) " operation(s)"
            @if view.all_durations_known() { ", " (view::duration(view.critical_weight as i64)) " at the last recorded durations" }
            "."
        }
        (svg(&base, registry, &view, &status, |i| drawn.contains(&i)))
    };
    view::page(&base, "Graph", body).into_response()
}

/// The whole graph of a registry small enough to draw, each operation coloured by its latest run.
async fn whole(state: &Shared, base: &str) -> Response {
    let registry = state.seq.registry();
    let outlines = match state.seq.ledger().latest_outlines().await {
        Ok(o) => o,
        Err(e) => return failure(base, &e.into()),
    };
    let durations: HashMap<String, u64> = outlines
        .iter()
        .filter_map(|(n, (_, ms))| Some((n.clone(), u64::try_from((*ms)?).ok()?.max(1))))
        .collect();
    let view = match analyze_among(registry, &durations, |_| true) {
        Ok(v) => v,
        Err(e) => return failure(base, &crate::SequencerError::Usage(e.to_string())),
    };
    let status = |name: &str| outlines.get(name).map_or(Status::Pending, |(s, _)| *s);
    let body = html! {
        h1 { "Dependency graph" }
        p.muted {
            (view.waves.len()) " wave(s); critical path of " (view.critical_path.len()) " operation(s)"
            @if view.all_durations_known() { ", " (view::duration(view.critical_weight as i64)) " at the last recorded durations" }
            "."
        }
        (svg(base, registry, &view, &status, |_| true))
    };
    view::page(base, "Graph", body).into_response()
}

/// The SVG of the analysed operations `drawn` accepts: a column per wave (waves with none drawn left out).
fn svg(
    base: &str,
    registry: &crate::Registry,
    view: &crate::render::GraphView,
    status: &dyn Fn(&str) -> Status,
    drawn: impl Fn(usize) -> bool,
) -> Markup {
    let ops = registry.operations();
    let mut at: HashMap<usize, (i64, i64)> = HashMap::new();
    let mut tallest = 0;
    let mut columns = 0;
    for wave in &view.waves {
        let mut r = 0;
        for &i in wave.iter().filter(|&&i| drawn(i)) {
            at.insert(i, (MARGIN + columns * COLUMN, MARGIN + r * ROW));
            r += 1;
        }
        if r > 0 {
            columns += 1;
        }
        tallest = tallest.max(r);
    }
    let width = MARGIN * 2 + columns.max(1) * COLUMN;
    let height = MARGIN * 2 + tallest.max(1) * ROW;
    let critical = |a: usize, b: usize| {
        view.critical_path
            .windows(2)
            .any(|w| w[0] == a && w[1] == b)
    };
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } role="img" {
            @for (i, ds) in view.deps.iter().enumerate() {
                @for &d in ds {
                    @if let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(&d), at.get(&i)) {
                        path class={ "edge" @if critical(d, i) { " critical" } }
                             d={ "M" (x1 + WIDTH) " " (y1 + HEIGHT / 2) " C" (x1 + WIDTH + 15) " " (y1 + HEIGHT / 2) " "
                                 (x2 - 15) " " (y2 + HEIGHT / 2) " " (x2) " " (y2 + HEIGHT / 2) } {}
                    }
                }
            }
            @for (&i, &(x, y)) in &at {
                @let name = ops[i].meta.name;
                @let status = status(name);
                a href={ (base) "/op/" (segment(name)) } {
                    g class={ "node s-" (status.as_str()) @if view.is_critical(i) { " critical" } } {
                        title { (name) " (" (status.as_str()) ")" }
                        rect x=(x) y=(y) width=(WIDTH) height=(HEIGHT) rx="4" {}
                        text x=(x + 8) y=(y + 19) { (short(name)) }
                    }
                }
            }
        }
    }
}

/// A name cut to fit a node.
fn short(name: &str) -> String {
    match name.char_indices().nth(30) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_owned(),
    }
}
