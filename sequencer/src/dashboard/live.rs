//! `GET /events`: server-sent events, one every second, with the status and progress of every operation, for
//! the script to update the operations page without a reload.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;

use super::view::duration;
use super::Shared;

/// How often the stream sends.
const EVERY: Duration = Duration::from_secs(1);

/// `GET /events`: `data:` lines, each a JSON array of `{name, status, done, total, eta}`.
pub(crate) async fn events(
    State(state): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(EVERY).await;
        }
        let data = match state.seq.status().await {
            Ok(entries) => {
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
                serde_json::Value::Array(list).to_string()
            }
            Err(_) => "[]".to_owned(),
        };
        Some((
            Ok(Event::default().event("status").data(data)),
            (state, false),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
