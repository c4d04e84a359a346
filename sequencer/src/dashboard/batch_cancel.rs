//! Cancelling a recorded batch or chain from its page: `GET /batch/{id}/cancel` asks for confirmation (and the
//! token), `POST /batch/{id}/cancel` cancels it once [`authorize`] passed, as a member's `ctx.batch().cancel()`
//! does: members not started yet are recorded skipped ("batch cancelled") when their turn comes, running ones
//! see [`cancelled()`](crate::BatchHandle::cancelled) turn true, `then` does not run and `finally` still does.
//! Refused on a stale view (the batch's state changed since the confirmation was drawn) and audit-logged as
//! `cancel_batch`.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::actions::{audit, authorized, confirmation};
use super::batches::batch_state;
use super::pages::failure;
use super::security::refused_unless_enabled;
use super::{base, view, Shared};
use crate::ledger::{AuditEntry, BatchId};

/// The action's name in the audit log and the metrics.
pub(crate) const CANCEL_BATCH: &str = "cancel_batch";

/// A batch's id from the path.
fn id_of(id: &str) -> Option<BatchId> {
    id.trim().parse::<i64>().ok().map(BatchId)
}

/// The page saying a batch's id is a number.
fn not_a_number(base: &str) -> Response {
    view::message(
        base,
        StatusCode::NOT_FOUND,
        "Not found",
        "A batch's id is a number.",
    )
}

fn not_found(base: &str, id: BatchId) -> Response {
    view::message(
        base,
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("No batch has the id {}.", id.0),
    )
}

/// `GET /batch/{id}/cancel`: asks for confirmation (and the token), with the batch's state as drawn.
pub(crate) async fn confirm(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let base = base(&original, &uri);
    if let Some(refusal) = refused_unless_enabled(&state.opts, &base) {
        return refusal;
    }
    let Some(id) = id_of(&id) else {
        return not_a_number(&base);
    };
    let b = match state.seq.ledger().batch_info(id).await {
        Ok(Some(b)) => b,
        Ok(None) => return not_found(&base, id),
        Err(e) => return failure(&base, &e.into()),
    };
    let drawn = batch_state(&b).to_owned();
    let expected = (drawn.clone(), drawn);
    confirmation(
        &base,
        &format!("{base}/batch/{}/cancel", id.0),
        &format!("Cancel {} {}?", b.kind, id.0),
        "Cancels the batch: members not started yet are recorded skipped (\"batch cancelled\") when their turn \
         comes and their operations stay pending; running members see `ctx.batch().cancelled()` turn true. Its \
         `then` callback does not run; `finally` still does.",
        "Cancel the batch",
        Some(&expected),
    )
}

/// `POST /batch/{id}/cancel`: the cancellation, once authorised; `303` to the batch's page when done.
pub(crate) async fn cancel(
    State(state): State<Shared>,
    original: OriginalUri,
    uri: Uri,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = base(&original, &uri);
    let fields = match authorized(&state, &base, CANCEL_BATCH, &headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return *refusal,
    };
    let Some(id) = id_of(&id) else {
        return not_a_number(&base);
    };
    let ledger = state.seq.ledger();
    let before = match ledger.batch_info(id).await {
        Ok(Some(b)) => batch_state(&b),
        Ok(None) => return not_found(&base, id),
        Err(e) => return failure(&base, &e.into()),
    };
    let drawn = fields.version.as_deref().or(fields.expected.as_deref());
    let result = match drawn {
        Some(d) if d != before => Err(format!(
            "batch {} is {before}, no longer {d} as on the page you acted from: look again, then decide",
            id.0
        )),
        _ if before != "running" => Err(format!(
            "batch {} is {before}: nothing to cancel",
            id.0
        )),
        _ => match ledger.cancel_batch(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("batch {} was cancelled already", id.0)),
            Err(e) => Err(e.to_string()),
        },
    };
    let after = match ledger.batch_info(id).await {
        Ok(Some(b)) => Some(batch_state(&b)),
        _ => None,
    };
    let target = id.0.to_string();
    let logged = audit(
        &state,
        AuditEntry {
            actor: fields.actor(),
            action: CANCEL_BATCH,
            target: Some(&target),
            outcome: if result.is_ok() { "ok" } else { "error" },
            before: Some(before),
            after,
            reason: fields.reason.as_deref(),
            detail: result.as_ref().err().map(String::as_str),
        },
    )
    .await;
    let outcome = result.and(logged);
    state.count_action(CANCEL_BATCH, if outcome.is_ok() { "ok" } else { "error" });
    match outcome {
        Ok(()) => Redirect::to(&format!("{base}/batch/{}?done=cancel", id.0)).into_response(),
        Err(text) => view::message(&base, StatusCode::CONFLICT, "Not done", &text),
    }
}
