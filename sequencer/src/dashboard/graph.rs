//! `GET /graph`: the dependency graph as an SVG drawn here: one column per wave, the critical path in red,
//! each operation coloured by status and linked to its page. A registry too large to draw is drawn in part: the
//! operations that still need something.

use std::collections::HashMap;

use axum::extract::{OriginalUri, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::pages::failure;
use super::{base, segment, view, Shared};
use crate::ledger::Status;
use crate::render::analyze_among;

const COLUMN: i64 = 250;
const ROW: i64 = 46;
const WIDTH: i64 = 220;
const HEIGHT: i64 = 30;
const MARGIN: i64 = 10;

/// The most operations the graph draws: beyond, it draws those not ended well (see [`drawn`]).
pub(crate) const GRAPH_NODES: usize = 500;

/// Whether an operation in this status is drawn when the registry is too large to draw whole: what still needs
/// something (pending, failed, running, interrupted …), not what completed, was skipped or was rolled back.
fn open(status: Status) -> bool {
    !matches!(
        status,
        Status::Completed | Status::Skipped | Status::RolledBack
    )
}

/// `GET /graph`: reads the status and duration of each operation's latest run (two columns, not whole rows);
/// a registry of more than [`GRAPH_NODES`] operations is drawn in part.
pub(crate) async fn page(State(state): State<Shared>, original: OriginalUri, uri: Uri) -> Response {
    let base = base(&original, &uri);
    let outlines = match state.seq.ledger().latest_outlines().await {
        Ok(o) => o,
        Err(e) => return failure(&base, &e.into()),
    };
    let statuses: HashMap<&str, Status> = outlines
        .iter()
        .map(|(n, (s, _))| (n.as_str(), *s))
        .collect();
    let durations: HashMap<String, u64> = outlines
        .iter()
        .filter_map(|(n, (_, ms))| Some((n.clone(), u64::try_from((*ms)?).ok()?.max(1))))
        .collect();
    let registry = state.seq.registry();
    let ops = registry.operations();
    let status_of = |i: usize| {
        statuses
            .get(ops[i].meta.name)
            .copied()
            .unwrap_or(Status::Pending)
    };
    let whole = ops.len() <= GRAPH_NODES;
    let drawn = drawn(ops.len(), |i| open(status_of(i)));
    let view = match analyze_among(registry, &durations, |i| whole || drawn.contains(&i)) {
        Ok(v) => v,
        Err(e) => return failure(&base, &crate::SequencerError::Usage(e.to_string())),
    };
    let body = html! {
        h1 { "Dependency graph" }
        @if !whole {
            p.notice {
                (ops.len()) " operations are too many to draw: these are the first " (view.order.len())
                " of those not completed, skipped or rolled back (dependencies on the others are met). "
                "The whole graph: " code { "graph --format dot" } "."
            }
        }
        p.muted {
            (view.waves.len()) " wave(s); critical path of " (view.critical_path.len()) " operation(s)"
            @if view.all_durations_known() { ", " (view::duration(view.critical_weight as i64)) " at the last recorded durations" }
            "."
        }
        (svg(&base, registry, &view, &statuses))
    };
    view::page(&base, "Graph", body).into_response()
}

/// The operations drawn when the registry is too large: the first [`GRAPH_NODES`] (in registry order) that
/// `open` accepts.
fn drawn(n: usize, open: impl Fn(usize) -> bool) -> std::collections::HashSet<usize> {
    (0..n).filter(|&i| open(i)).take(GRAPH_NODES).collect()
}

fn svg(
    base: &str,
    registry: &crate::Registry,
    view: &crate::render::GraphView,
    statuses: &HashMap<&str, Status>,
) -> Markup {
    let ops = registry.operations();
    let mut at: HashMap<usize, (i64, i64)> = HashMap::new();
    let mut tallest = 0;
    for (w, wave) in view.waves.iter().enumerate() {
        for (r, &i) in wave.iter().enumerate() {
            at.insert(i, (MARGIN + w as i64 * COLUMN, MARGIN + r as i64 * ROW));
        }
        tallest = tallest.max(wave.len() as i64);
    }
    let width = MARGIN * 2 + (view.waves.len() as i64).max(1) * COLUMN;
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
                @let status = statuses.get(name).copied().unwrap_or(Status::Pending);
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
