//! The actions: a confirmation page (`GET`) and the action itself (`POST`), which passes
//! [`authorize`](super::security::authorize) before anything else.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::pages::ACTIONS;
use super::security::{authorize, Refusal};
use super::{base, home, segment, view, Shared};
use crate::ledger::Status;
use crate::{Cascade, ProcessOptions, RollbackTarget};

/// One operation's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Cancel,
    Rollback,
    Complete,
    Skip,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "retry" => Action::Retry,
            "cancel" => Action::Cancel,
            "rollback" => Action::Rollback,
            "complete" => Action::Complete,
            "skip" => Action::Skip,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Rollback => "rollback",
            Action::Complete => "complete",
            Action::Skip => "skip",
        }
    }

    fn label(self) -> &'static str {
        ACTIONS
            .iter()
            .find(|(a, _)| *a == self.name())
            .map_or("", |(_, l)| l)
    }

    /// What it does, in the confirmation.
    fn explain(self) -> &'static str {
        match self {
            Action::Retry => "Runs the failed (or interrupted, or stale) operation again, now, in this process.",
            Action::Cancel => "Asks the running operation to stop at its next checkpoint; it is recorded interrupted.",
            Action::Rollback => "Runs the operation's rollback. Refused if completed operations depend on it.",
            Action::Complete => "Records the operation completed without running it.",
            Action::Skip => "Records the operation skipped without running it.",
        }
    }
}

/// The `token` field of a form body.
fn form_token(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

fn refused(state: &Shared, base: &str, action: &'static str, r: Refusal) -> Response {
    state.count_action(action, "refused");
    view::message(base, r.status(), "Refused", r.message())
}

fn confirmation(base: &str, path: &str, title: &str, explain: &str, button: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p { (explain) }
        form.confirm method="post" action=(path) {
            label { "Token " input type="password" name="token" autocomplete="off" required; }
            " "
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
    if state.opts.read_only {
        return view::message(
            &base,
            StatusCode::FORBIDDEN,
            "Refused",
            Refusal::ReadOnly.message(),
        );
    }
    if !state.opts.has_token() {
        let r = Refusal::NoTokenConfigured;
        return view::message(&base, r.status(), "Refused", r.message());
    }
    let path = format!("{base}/op/{}/{}", segment(&name), action.name());
    let title = format!("{} {name}?", action.label());
    confirmation(&base, &path, &title, action.explain(), action.label())
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
    if let Err(r) = authorize(&state.opts, &headers, form_token(&body).as_deref()) {
        return refused(&state, &base, action.name(), r);
    }
    match run(&state, action, &name).await {
        Ok(name) => {
            state.count_action(action.name(), "ok");
            let to = format!("{base}/op/{}?done={}", segment(&name), action.name());
            Redirect::to(&to).into_response()
        }
        Err(text) => {
            state.count_action(action.name(), "error");
            view::message(&base, StatusCode::CONFLICT, "Not done", &text)
        }
    }
}

/// Takes the action; returns the operation's ledger name, or why it was not done.
async fn run(state: &Shared, action: Action, name: &str) -> Result<String, String> {
    let seq = &state.seq;
    let def = seq.find(name).map_err(|e| e.to_string())?;
    let name = def.meta.name;
    match action {
        Action::Retry => {
            // Checked here so that the refusal is shown; the retry itself runs on after the response.
            let status = seq
                .status()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|e| e.name == name)
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
    if let Some(r) = (!state.opts.actions_enabled()).then_some(if state.opts.read_only {
        Refusal::ReadOnly
    } else {
        Refusal::NoTokenConfigured
    }) {
        return view::message(&base, r.status(), "Refused", r.message());
    }
    let path = format!("{base}/process");
    confirmation(
        &base,
        &path,
        "Run every pending operation?",
        "Runs `process` here, with the application's orchestrator: every due operation, in order.",
        "Run pending",
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
    if let Err(r) = authorize(&state.opts, &headers, form_token(&body).as_deref()) {
        return refused(&state, &base, "process", r);
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
