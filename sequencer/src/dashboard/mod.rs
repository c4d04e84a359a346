//! The operators' web dashboard (feature `dashboard`): the operations with their status and progress, a page at a
//! time (a cursor, filters in the ledger's statement: fast with 100,000 rows), one operation's runs, errors,
//! checkpoint and why it may be stuck, the dependency graph, the plan, actions (run pending, retry, cancel, roll
//! back, mark, forget; in bulk over a filter, capped) refused on a stale view, an audit log of them in the ledger,
//! the recorded batches and chains with their progress and members, the typed tasks' runs with their arguments
//! (retry a failed one), and `GET /metrics` in the Prometheus text format.
//!
//! [`router`] returns an [`axum::Router`] that an application nests under its own path and its own auth; the CLI
//! serves the same router with `serve [--bind 127.0.0.1:8080] [--read-only]`. The guide is
//! [`dashboard`](crate::guides::dashboard).
//!
//! Security: pages are server-rendered with every ledger value escaped; the only script is a file the router
//! serves (`assets/app.js`), under a strict Content-Security-Policy. Actions need the token
//! ([`DashboardOptions::token`], by default `$SEQUENCER_DASHBOARD_TOKEN`) in the `X-Sequencer-Token` header, an
//! `Authorization: Bearer` header or the `token` form field, compared in constant time; a cross-site request
//! (`Sec-Fetch-Site`, `Origin`) is refused. Without a token the dashboard is read-only, enforced by every action
//! handler. The errors and checkpoints of `encrypted` operations, and the arguments and errors of `encrypted`
//! tasks, are never shown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use axum::extract::OriginalUri;
use axum::http::Uri;
use axum::routing::get;
use axum::Router;

use crate::Sequencer;

/// The axum version the router is built with, to nest it and serve it without a version mismatch.
pub use axum;

mod actions;
mod audit;
mod batch_cancel;
mod batches;
mod bulk;
mod diagnosis;
mod graph;
mod list;
mod live;
mod metrics;
mod pages;
mod plan;
mod queues;
mod security;
mod tasks;

pub use security::bind_allowed;
mod view;

/// The environment variable [`DashboardOptions::from_env`] reads the actions' token from.
pub const TOKEN_VARIABLE: &str = "SEQUENCER_DASHBOARD_TOKEN";

/// How a dashboard router behaves: the token its actions need, and whether it is read-only.
#[derive(Clone, Default)]
pub struct DashboardOptions {
    token: Option<String>,
    read_only: bool,
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("token", &self.token.as_ref().map(|_| "[set]"))
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl DashboardOptions {
    /// The token from `$SEQUENCER_DASHBOARD_TOKEN` (an empty value counts as none), not read-only.
    pub fn from_env() -> DashboardOptions {
        DashboardOptions {
            token: std::env::var(TOKEN_VARIABLE).ok(),
            read_only: false,
        }
        .normalised()
    }

    /// The token every action must present. Without one (or with an empty one) the dashboard is read-only.
    pub fn token(mut self, token: impl Into<String>) -> DashboardOptions {
        self.token = Some(token.into());
        self.normalised()
    }

    /// Refuses every action, token or not.
    pub fn read_only(mut self, yes: bool) -> DashboardOptions {
        self.read_only = yes;
        self
    }

    /// Whether actions are possible at all: a token is set and the dashboard is not read-only.
    pub fn actions_enabled(&self) -> bool {
        !self.read_only && self.token.is_some()
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn normalised(mut self) -> DashboardOptions {
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            self.token = None;
        }
        self
    }
}

/// What every handler shares.
pub(crate) struct State {
    pub(crate) seq: Sequencer,
    pub(crate) opts: DashboardOptions,
    /// Actions taken, by `(action, outcome)`, for `/metrics`.
    pub(crate) actions: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// What the pages look up in the registry, gathered once.
    pub(crate) index: Index,
    /// The operations list's counts by status, reused for [`list::COUNTS_FOR`].
    pub(crate) counts: Mutex<Option<Arc<list::Counts>>>,
    /// A count is under way.
    pub(crate) counting: AtomicBool,
}

/// The registry's tags and `encrypted` operations (the registry does not change while the router runs).
pub(crate) struct Index {
    /// Every tag, sorted.
    pub(crate) tags: Vec<&'static str>,
    /// The ledger names of the `encrypted` operations: their errors and checkpoints are never shown.
    pub(crate) encrypted: HashSet<&'static str>,
}

impl State {
    fn new(seq: Sequencer, opts: DashboardOptions) -> State {
        let ops = seq.registry().operations();
        let mut tags: Vec<&'static str> = ops
            .iter()
            .flat_map(|d| d.meta.tags.iter().copied())
            .collect();
        tags.sort_unstable();
        tags.dedup();
        let encrypted = ops
            .iter()
            .filter(|d| d.meta.encrypted)
            .map(|d| d.meta.name)
            .collect();
        State {
            seq,
            opts,
            actions: Mutex::new(HashMap::new()),
            index: Index { tags, encrypted },
            counts: Mutex::new(None),
            counting: AtomicBool::new(false),
        }
    }

    pub(crate) fn count_action(&self, action: &'static str, outcome: &'static str) {
        if let Ok(mut map) = self.actions.lock() {
            *map.entry((action, outcome)).or_insert(0) += 1;
        }
    }
}

pub(crate) type Shared = Arc<State>;

/// The dashboard with the token from `$SEQUENCER_DASHBOARD_TOKEN` (read-only without it): see
/// [`router_with`].
pub fn router(seq: Sequencer) -> Router {
    router_with(seq, DashboardOptions::from_env())
}

/// The dashboard's router, to serve or to nest under a path of the application
/// (`Router::new().nest("/admin/operations", router_with(seq, opts))`). Its pages link to each other under
/// whatever path it is nested at.
pub fn router_with(seq: Sequencer, opts: DashboardOptions) -> Router {
    let state: Shared = Arc::new(State::new(seq, opts));
    Router::new()
        .route("/", get(list::operations))
        .route("/op/{name}", get(pages::operation))
        .route(
            "/op/{name}/{action}",
            get(actions::confirm).post(actions::act),
        )
        .route(
            "/process",
            get(actions::confirm_process).post(actions::process),
        )
        .route("/bulk/{action}", get(bulk::confirm).post(bulk::act))
        .route("/batches", get(batches::list))
        .route("/batch/{id}", get(batches::one))
        .route(
            "/batch/{id}/cancel",
            get(batch_cancel::confirm).post(batch_cancel::cancel),
        )
        .route("/tasks", get(tasks::list))
        .route("/task/{name}/{run}", get(tasks::one))
        .route(
            "/task/{name}/{run}/retry",
            get(tasks::confirm_retry).post(tasks::retry),
        )
        .route("/graph", get(graph::page))
        .route("/audit", get(audit::page))
        .route("/queues", get(queues::page))
        .route("/plan", get(plan::page))
        .route("/events", get(live::events))
        .route("/metrics", get(metrics::metrics))
        .route("/assets/app.js", get(view::script))
        .route("/assets/app.css", get(view::style))
        .layer(axum::middleware::map_response(security::headers))
        .with_state(state)
}

/// Only `GET /metrics` (the Prometheus text format, as on the dashboard), for processes that serve metrics and
/// no pages: `work --metrics 127.0.0.1:9187`.
pub fn metrics_router(seq: Sequencer) -> Router {
    let state: Shared = Arc::new(State::new(seq, DashboardOptions::default().read_only(true)));
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::map_response(security::headers))
        .with_state(state)
}

/// The path the router is nested at (empty at the root), from the request's original URI and the URI the
/// nested router sees.
pub(crate) fn base(original: &OriginalUri, uri: &Uri) -> String {
    let full = original.0.path();
    let inner = uri.path();
    let base = if inner == "/" {
        full.trim_end_matches('/')
    } else {
        full.strip_suffix(inner).unwrap_or("")
    };
    base.to_owned()
}

/// A path segment with everything but unreserved characters percent-encoded.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The operations page's path: the nest path itself (axum serves a nested router's `/` there, without a
/// trailing slash), or `/` at the root.
pub(crate) fn home(base: &str) -> &str {
    if base.is_empty() {
        "/"
    } else {
        base
    }
}
