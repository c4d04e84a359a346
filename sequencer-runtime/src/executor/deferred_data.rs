//! A deferred run's data as the executor receives it: its envelope read from its task run (opened when sealed),
//! its payload (from the envelope, or from the old `<prefix>deferred` row it was moved from), checked against its
//! handler's type, and the tries it is allowed; and the end of a failed try that leaves it to its queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::place;
use crate::events::Event;
use crate::executor::{Env, TaskData};
use crate::handlers::{envelope_of, DeferredHandler};
use crate::ledger::error::LedgerError;
use crate::ledger::runs::{Finish, Status};
use crate::registry::OperationDef;
use crate::report::Outcome;
use crate::result::{describe, Error};
use crate::task_def::{TaskDef, TaskKeys};

/// The bound on the tries of a run whose data cannot be read: none from it (the run is claimed whatever its
/// count, and its try fails at once with the reason, never retried).
const UNREADABLE: u32 = u32::MAX;

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
        // `max_attempts` bounds the run's tries counted across its claims (the claim adds one to its `attempts`
        // each time), so a handler that kills its process runs at most `max_attempts` times, across crashes too.
        // Data that cannot be read fails the try that finds it, whatever the count.
        let data = |args: Result<String, String>, tries: u32| TaskData {
            args: args.map(Arc::from).map_err(Arc::from),
            keys: TaskKeys::default(),
            tries: Some(tries),
            handler: Some(handler.call.clone()),
        };
        let Some(stored) = self.ledger.task_args(name, run).await? else {
            let why = format!("`{name}` run {run} has no stored payload");
            return Ok(data(Err(why), UNREADABLE));
        };
        // Sealed whenever a key is configured: plain text is then refused, never run.
        let json = match self
            .keys
            .open_at(&stored, &place::task_args(name, run), true)
        {
            Ok(json) => json,
            Err(e) => {
                let why = format!("cannot open the payload of `{name}` run {run}: {e}");
                return Ok(data(Err(why), UNREADABLE));
            }
        };
        let Some(envelope) = envelope_of(&json) else {
            let why = format!("the stored data of `{name}` run {run} is not a deferred payload");
            return Ok(data(Err(why), UNREADABLE));
        };
        let tries = envelope.max_attempts.max(1);
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
                Err(why) => data(Err(why), UNREADABLE),
            },
        )
    }
}

impl Env {
    /// Ends a failed try of a run whose tries are taken from its queue (a deferred run) with tries left: the run
    /// goes back to `pending` with the try's error (its `attempts` kept, counted on by its next claim), and its job
    /// is put back on the queue by its worker, due after `delay`. The process does not wait for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn retry_later(
        &self,
        def: &'static OperationDef,
        run: i64,
        token: &str,
        started: Instant,
        attempt: u32,
        delay: Duration,
        error: &Error,
    ) -> Result<Outcome, LedgerError> {
        let message = describe(error);
        let stored = self.stored_text(def, run, &message);
        let end = Finish {
            token,
            name: def.meta.name,
            run,
            status: Status::Pending,
            duration: started.elapsed(),
            skip_reason: None,
            error: Some(&stored),
        };
        if !self.ledger.finish_on_pool(&end).await? {
            return Ok(self.lost_claim(def, ""));
        }
        let _ = self.events.send(Event::OperationRetrying {
            via: self.via,
            name: def.meta.name.to_owned(),
            attempt,
            delay_ms: delay.as_millis() as u64,
            error: message.clone(),
        });
        Ok(Outcome::Retrying {
            error: message,
            retry_in_ms: delay.as_millis().min(u128::from(u64::MAX)) as u64,
        })
    }
}
