//! `GET /events`: server-sent events, one every second, with the status and progress of the running operations
//! and of those that stopped running since the event before, for the script to update the operations page
//! without a reload. Each event reads the running operations through the ledger's status index (at most
//! [`RUNNING`]), never the whole table.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;

use super::pages::entries_of;
use super::view::duration;
use super::Shared;
use crate::ledger::Status;
use crate::{SequencerError, StatusEntry, StatusQuery};

/// How often the stream sends.
const EVERY: Duration = Duration::from_secs(1);

/// At most this many running operations are sent.
const RUNNING: usize = 500;

/// The running operations, and those of `before` that are no longer running.
async fn changes(
    state: &Shared,
    before: &HashSet<String>,
) -> Result<(Vec<StatusEntry>, HashSet<String>), SequencerError> {
    let page = state
        .seq
        .status_page(&StatusQuery {
            status: Some(Status::Running),
            limit: RUNNING,
            ..StatusQuery::default()
        })
        .await?;
    let now: HashSet<String> = page.entries.iter().map(|e| e.name.clone()).collect();
    let ended: Vec<String> = before.difference(&now).cloned().collect();
    let mut entries = page.entries;
    if !ended.is_empty() {
        entries.extend(entries_of(state, &ended).await?);
    }
    Ok((entries, now))
}

/// `GET /events`: `data:` lines, each a JSON array of `{name, status, done, total, eta}`.
pub(crate) async fn events(
    State(state): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let start = (state, true, HashSet::new());
    let stream = stream::unfold(start, |(state, first, before)| async move {
        if !first {
            tokio::time::sleep(EVERY).await;
        }
        let (data, running) = match changes(&state, &before).await {
            Ok((entries, running)) => {
                let list: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        json!({
                            "name": e.name,
                            "status": e.status.as_str(),
                            "done": e.progress_done,
                            "total": e.progress_total,
                            "eta": e.eta_ms.map(duration),
                        })
                    })
                    .collect();
                (serde_json::Value::Array(list).to_string(), running)
            }
            Err(_) => ("[]".to_owned(), before),
        };
        Some((
            Ok(Event::default().event("status").data(data)),
            (state, false, running),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
