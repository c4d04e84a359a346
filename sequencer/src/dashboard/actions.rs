//! The actions: a confirmation page (`GET`) and the action itself (`POST`), which passes
//! [`authorize`](super::security::authorize) before anything else.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::pages::{entry_of, ACTIONS};
use super::security::{authorize, refused_unless_enabled, Refusal};
use super::{base, home, segment, view, Shared};
use crate::ledger::{AuditEntry, Status};
use crate::{Cascade, ProcessOptions, RollbackTarget, StatusEntry};

/// One operation's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Retry,
    Cancel,
    Rollback,
    Complete,
    Skip,
    Forget,
}

impl Action {
    pub(crate) fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "retry" => Action::Retry,
            "cancel" => Action::Cancel,
            "rollback" => Action::Rollback,
            "complete" => Action::Complete,
            "skip" => Action::Skip,
            "forget" => Action::Forget,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Rollback => "rollback",
            Action::Complete => "complete",
            Action::Skip => "skip",
            Action::Forget => "forget",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        ACTIONS
            .iter()
            .find(|(a, _)| *a == self.name())
            .map_or("", |(_, l)| l)
    }

    /// What it does, in the confirmation.
    pub(crate) fn explain(self) -> &'static str {
        match self {
            Action::Retry => "Runs the failed (or interrupted, or stale) operation again, now, in this process.",
            Action::Cancel => "Asks the running operation to stop at its next checkpoint; it is recorded interrupted.",
            Action::Rollback => "Runs the operation's rollback. Refused if completed operations depend on it.",
            Action::Complete => "Records the operation completed without running it.",
            Action::Skip => "Records the operation skipped without running it.",
            Action::Forget => "Deletes the operation's rows from the ledger: the next `process` runs it again.",
        }
    }
}

/// The fields of an action's form: `token`; for the audit log `actor` and `reason`; `expected`, the status the
/// page showed, and `version`, the row as it was drawn (an action on a view that went stale is refused); a bulk
/// action's `op` (each `NAME VERSION`) and filters.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) token: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) reason: Option<String>,
    /// The operation's status on the page the action was taken from.
    pub(crate) expected: Option<String>,
    /// The operation's [`version`] on the page the action was taken from.
    pub(crate) version: Option<String>,
    /// A bulk action's operations, each `NAME VERSION` as drawn.
    pub(crate) ops: Vec<String>,
    /// A bulk action's filters, as drawn.
    pub(crate) status: String,
    pub(crate) tag: String,
    pub(crate) q: String,
}

impl Fields {
    pub(crate) fn parse(body: &[u8]) -> Fields {
        let mut out = Fields::default();
        let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default();
        for (k, v) in pairs {
            let v = Some(v).filter(|v| !v.trim().is_empty());
            match k.as_str() {
                "token" => out.token = v,
                "actor" => out.actor = v.map(|a| a.chars().take(255).collect()),
                "reason" => out.reason = v,
                "expected" => out.expected = v,
                "version" => out.version = v,
                "op" => out.ops.extend(v),
                "status" => out.status = v.unwrap_or_default(),
                "tag" => out.tag = v.unwrap_or_default(),
                "q" => out.q = v.unwrap_or_default(),
                _ => {}
            }
        }
        out
    }

    pub(crate) fn actor(&self) -> &str {
        self.actor.as_deref().unwrap_or("dashboard")
    }
}

/// An operation's row as drawn: its status, tries, start and end. Any change to the row (another operator acted,
/// a worker ran or finished it, it was retried and failed again) changes it.
pub(crate) fn version(e: &StatusEntry) -> String {
    format!(
        "{}:{}:{}:{}",
        e.status.as_str(),
        e.attempts,
        e.started_at.unwrap_or(0),
        e.finished_at.unwrap_or(0)
    )
}

/// The status of an operation's latest run and its [`version`].
async fn status_of(state: &Shared, name: &str) -> Option<(String, String)> {
    let e = entry_of(state, name).await.ok()??;
    Some((e.status.as_str().to_owned(), version(&e)))
}

/// Appends an action to the ledger's audit log; a failure to write it is reported, not hidden.
pub(crate) async fn audit(state: &Shared, entry: AuditEntry<'_>) -> Result<(), String> {
    state
        .seq
        .ledger()
        .record_action(&entry)
        .await
        .map_err(|e| format!("the action was taken, but the audit log could not be written: {e}"))
}

pub(crate) fn refused(state: &Shared, base: &str, action: &'static str, r: Refusal) -> Response {
    state.count_action(action, "refused");
    view::message(base, r.status(), "Refused", r.message())
}

/// Every action's first step (`POST`): its form's fields once the request is authorised ([`authorize`]), else
/// the refusal page, counted against `action`.
pub(crate) fn authorized(
    state: &Shared,
    base: &str,
    action: &'static str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Fields, Box<Response>> {
    let fields = Fields::parse(body);
    match authorize(&state.opts, headers, fields.token.as_deref()) {
        Ok(()) => Ok(fields),
        Err(r) => Err(Box::new(refused(state, base, action, r))),
    }
}

/// A confirmation form; `expected` is the operation's status and version as drawn, sent back so that an action on
/// a view that went stale is refused.
pub(crate) fn confirmation(
    base: &str,
    path: &str,
    title: &str,
    explain: &str,
    button: &str,
    expected: Option<&(String, String)>,
) -> Response {
    let body = html! {
        h1 { (title) }
        p { (explain) }
        @if let Some((status, _)) = expected { p { "It is " strong { (status) } " now." } }
        form.confirm method="post" action=(path) {
            @if let Some((status, version)) = expected {
                input type="hidden" name="expected" value=(status);
                input type="hidden" name="version" value=(version);
            }
            p { label { "Token " input type="password" name="token" autocomplete="off" required; } }
            p { label { "Your name " input type="text" name="actor" maxlength="255"; } }
            p { label { "Reason " input type="text" name="reason"; } }
            button type="submit" { (button) }
            " "
            a href={ (home(base)) } { "Cancel" }
        }
    };
    view::page(base, title, body).into_response()
}

/// `GET /op/{name}/{action}`: asks for confirmation (and the token).
pub(crate) async fn confirm(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let base = base(&original, &uri);
    let Some(action) = Action::parse(&action) else {
        return view::message(&base, StatusCode::NOT_FOUND, "Not found", "No such action.");
    };
    if let Some(refusal) = refused_unless_enabled(&state.opts, &base) {
        return refusal;
    }
    let path = format!("{base}/op/{}/{}", segment(&name), action.name());
    let title = format!("{} {name}?", action.label());
    let expected = status_of(&state, &name).await;
    confirmation(
        &base,
        &path,
        &title,
        action.explain(),
        action.label(),
        expected.as_ref(),
    )
}

/// `POST /op/{name}/{action}`: the action, once authorised; `303` to the operation's page when done.
pub(crate) async fn act(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = base(&original, &uri);
    let Some(action) = Action::parse(&action) else {
        return view::message(&base, StatusCode::NOT_FOUND, "Not found", "No such action.");
    };
    let fields = match authorized(&state, &base, action.name(), &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return *refusal,
    };
    match apply(&state, action, &name, &fields).await {
        Ok(name) => {
            let to = format!("{base}/op/{}?done={}", segment(&name), action.name());
            Redirect::to(&to).into_response()
        }
        Err(text) => view::message(&base, StatusCode::CONFLICT, "Not done", &text),
    }
}

/// An authorised action on one operation: refused when the operation changed since it was drawn (`version`,
/// else `expected`), else taken; either way recorded in the audit log and counted. The operation's ledger name,
/// or why it was not done.
pub(crate) async fn apply(
    state: &Shared,
    action: Action,
    name: &str,
    fields: &Fields,
) -> Result<String, String> {
    let before = status_of(state, name).await;
    let result = match (&fields.version, &fields.expected, &before) {
        (Some(drawn), _, Some((now, version))) if drawn != version => Err(format!(
            "`{name}` changed since the page you acted from was drawn (it is {now} now, then {}): look again, then decide",
            drawn.split(':').next().unwrap_or("")
        )),
        (None, Some(drawn), Some((now, _))) if drawn != now => Err(format!(
            "`{name}` is {now}, no longer {drawn} as on the page you acted from: look again, then decide"
        )),
        _ => run(state, action, name).await,
    };
    let after = match (&result, action) {
        (Ok(_), Action::Retry) => Some("started".to_owned()),
        _ => status_of(state, name).await.map(|(s, _)| s),
    };
    let target = state.seq.find(name).map_or(name, |d| d.meta.name);
    let logged = audit(
        state,
        AuditEntry {
            actor: fields.actor(),
            action: action.name(),
            target: Some(target),
            outcome: if result.is_ok() { "ok" } else { "error" },
            before: before.as_ref().map(|(s, _)| s.as_str()),
            after: after.as_deref(),
            reason: fields.reason.as_deref(),
            detail: result.as_ref().err().map(String::as_str),
        },
    )
    .await;
    let outcome = result.and_then(|name| logged.map(|()| name));
    state.count_action(action.name(), if outcome.is_ok() { "ok" } else { "error" });
    outcome
}

/// Takes the action; returns the operation's ledger name, or why it was not done.
async fn run(state: &Shared, action: Action, name: &str) -> Result<String, String> {
    let seq = &state.seq;
    let def = seq.find(name).map_err(|e| e.to_string())?;
    let name = def.meta.name;
    match action {
        Action::Retry => {
            // Checked here so that the refusal is shown; the retry itself runs on after the response.
            let status = entry_of(state, name)
                .await
                .map_err(|e| e.to_string())?
                .map_or(Status::Pending, |e| e.status);
            if !matches!(status, Status::Failed | Status::Interrupted | Status::Stale) {
                return Err(format!(
                    "`{name}` is {status}, not failed, interrupted or stale: nothing to retry"
                ));
            }
            let seq = seq.clone();
            tokio::spawn(async move {
                if let Err(e) = seq.retry(name).await {
                    eprintln!("dashboard: retry {name}: {e}");
                }
            });
        }
        Action::Cancel => {
            if !seq
                .cancel_operation(name)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("`{name}` is not running: nothing to cancel"));
            }
        }
        Action::Rollback => {
            let report = seq
                .rollback_with(&RollbackTarget::Op(name.to_owned()), Cascade::Refuse)
                .await
                .map_err(|e| e.to_string())?;
            if let Some((_, e)) = report.rollback_failures.first() {
                return Err(format!("the rollback of `{name}` failed: {e}"));
            }
            if report.rolled_back.is_empty() {
                return Err(format!("`{name}` has nothing to roll back"));
            }
        }
        Action::Complete => seq
            .mark(name, Status::Completed)
            .await
            .map_err(|e| e.to_string())?,
        Action::Skip => seq
            .mark(name, Status::Skipped)
            .await
            .map_err(|e| e.to_string())?,
        Action::Forget => {
            seq.forget(name).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(name.to_owned())
}

/// `GET /process`: asks for confirmation of a run of every pending operation.
pub(crate) async fn confirm_process(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
) -> Response {
    let base = base(&original, &uri);
    if let Some(refusal) = refused_unless_enabled(&state.opts, &base) {
        return refusal;
    }
    let path = format!("{base}/process");
    confirmation(
        &base,
        &path,
        "Run every pending operation?",
        "Runs `process` here, with the application's orchestrator: every due operation, in order.",
        "Run pending",
        None,
    )
}

/// `POST /process`: runs every pending operation, after the response; `303` to the operations.
pub(crate) async fn process(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = base(&original, &uri);
    let fields = match authorized(&state, &base, "process", &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return *refusal,
    };
    let entry = AuditEntry {
        actor: fields.actor(),
        action: "process",
        target: None,
        outcome: "ok",
        before: None,
        after: Some("started"),
        reason: fields.reason.as_deref(),
        detail: None,
    };
    if let Err(text) = audit(&state, entry).await {
        state.count_action("process", "error");
        return view::message(&base, StatusCode::CONFLICT, "Not done", &text);
    }
    state.count_action("process", "ok");
    let seq = state.seq.clone();
    tokio::spawn(async move {
        if let Err(e) = seq.process(&ProcessOptions::default()).await {
            eprintln!("dashboard: process: {e}");
        }
    });
    Redirect::to(&format!("{}?done=process", home(&base))).into_response()
}
