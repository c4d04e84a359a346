//! A deferred run's data as the executor receives it: its envelope read from its task run (opened when sealed),
//! its payload (from the envelope, or from the old `<prefix>deferred` row it was moved from), checked against its
//! handler's type, and the tries it has left.

use std::sync::Arc;

use crate::crypto::place;
use crate::executor::{Env, TaskData};
use crate::handlers::{envelope_of, tries_left, DeferredHandler};
use crate::ledger::error::LedgerError;
use crate::ledger::runs::Status;
use crate::task_def::{TaskDef, TaskKeys};

impl Env {
    /// Reads a deferred run's data. Data that cannot be read (a missing or wrong key, plain text where a key
    /// requires it sealed, a payload that does not fit the handler) is carried as the reason, with one try: the
    /// run fails with it through the executor, never retried, and is kept for a person.
    pub(crate) async fn deferred_data(
        &self,
        def: &TaskDef,
        handler: &DeferredHandler,
        run: i64,
    ) -> Result<TaskData, LedgerError> {
        let name = def.name();
        // Tries a run whose process died used count: a handler that kills its process runs at most
        // `max_attempts` times, across crashes too.
        let used = match self.ledger.row_of(name, run).await? {
            Some(r) if r.status == Status::Interrupted => r.attempts,
            _ => 0,
        };
        let data = |args: Result<String, String>, tries: u32| TaskData {
            args: args.map(Arc::from).map_err(Arc::from),
            keys: TaskKeys::default(),
            tries: Some(tries),
            handler: Some(handler.call.clone()),
        };
        let Some(stored) = self.ledger.task_args(name, run).await? else {
            let why = format!("`{name}` run {run} has no stored payload");
            return Ok(data(Err(why), tries_left(1, used)));
        };
        // Sealed whenever a key is configured: plain text is then refused, never run.
        let json = match self
            .keys
            .open_at(&stored, &place::task_args(name, run), true)
        {
            Ok(json) => json,
            Err(e) => {
                let why = format!("cannot open the payload of `{name}` run {run}: {e}");
                return Ok(data(Err(why), tries_left(1, used)));
            }
        };
        let Some(envelope) = envelope_of(&json) else {
            let why = format!("the stored data of `{name}` run {run} is not a deferred payload");
            return Ok(data(Err(why), tries_left(1, used)));
        };
        let tries = tries_left(envelope.max_attempts, used);
        let payload = match envelope.deferred_id {
            None => Ok(envelope.payload),
            // Moved from the old table: the payload stays in its row there, sealed for that row.
            Some(id) => match self.ledger.deferred_row(id).await? {
                None => Err(format!("the deferred row {id} it was moved from is gone")),
                Some(row) => self
                    .keys
                    .open_at(&row.payload, &place::deferred(id, "payload"), true)
                    .map_err(|e| format!("cannot open the payload of `{}`: {e}", row.handler))
                    .and_then(|p| {
                        serde_json::from_str::<serde_json::Value>(&p)
                            .map_err(|e| format!("malformed payload (not JSON): {e}"))
                    }),
            },
        };
        Ok(
            match payload.and_then(|p| {
                handler
                    .check(&p)
                    .map(|()| p.to_string())
                    .map_err(|e| format!("malformed payload for `{name}`: {e}"))
            }) {
                Ok(payload) => data(Ok(payload), tries),
                Err(why) => data(Err(why), tries.min(1)),
            },
        )
    }
}
