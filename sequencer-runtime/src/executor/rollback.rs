//! An operation's rollback, claimed (`rolling_back`, under a lease renewed while it runs) and recorded
//! `rolled_back` only once it returned.

use std::sync::Arc;

use crate::events::Event;
use crate::executor::task::{run_task, AttemptError};
use crate::executor::{Env, OpRun};
use crate::ledger::error::LedgerError;
use crate::ledger::new_claim_token;
use crate::ledger::runs::Status;
use crate::registry::OperationDef;
use crate::result::describe;

impl Env {
    /// Runs an operation's rollback and records the result. `Err` carries the rollback's error message.
    pub async fn roll_back(
        &self,
        def: &'static OperationDef,
        run: i64,
    ) -> Result<Result<(), String>, LedgerError> {
        let Some(rollback) = def.rollback else {
            return Ok(Err(format!("`{}` has no rollback", def.meta.name)));
        };
        let name = def.meta.name;
        // Claim the rollback first, under a lease renewed while it runs: of two processes rolling back the same
        // operation one runs it, no `process` runs it forward meanwhile, and a rollback whose process dies is
        // found `undo_interrupted`, never `rolled_back`.
        let token = new_claim_token();
        let mut claimed = false;
        for from in [Status::Completed, Status::RollbackInterrupted] {
            claimed = self
                .ledger
                .claim_rollback(name, run, from, self.lease, &self.owner, &token)
                .await?;
            if claimed {
                break;
            }
        }
        if !claimed {
            return Ok(Err(format!(
                "`{name}` is no longer completed: another process rolled it back or changed it"
            )));
        }
        let op = OpRun {
            run: Some(run),
            token,
            cancel: self.cancel.child_token(),
            batch: None,
            task: None,
            first: 1,
            ack: false,
        };
        let _held = self.held.hold(op.token.clone());
        let heartbeat = self.heartbeat(name, run, &op);
        let ctx = Arc::new(self.ctx(def, 1, false, &op));
        let undone = run_task(ctx.clone(), move |ctx| rollback(ctx), None, None).await;
        drop(heartbeat);
        // `rolled_back` only now that the rollback returned; a failed one leaves the operation completed.
        let to = match undone {
            Ok(()) => Status::RolledBack,
            Err(_) => Status::Completed,
        };
        if !self.ledger.end_rollback(name, run, to, &op.token).await? {
            return Ok(Err(format!(
                "the rollback of `{name}` lost its claim: its lease ran out and another process recovered it"
            )));
        }
        match undone {
            Ok(()) => {
                self.emit(Event::OperationRolledBack {
                    via: self.via,
                    name: name.to_owned(),
                });
                Ok(Ok(()))
            }
            Err(AttemptError::Failed(e) | AttemptError::TimedOut(e)) => {
                // Not undone: it stays completed, with the rollback's error recorded.
                let e = e.context(format!("rollback of `{name}` failed"));
                self.ledger
                    .record_error(def.meta.name, run, 0, &e, self.seal_for(def))
                    .await?;
                Ok(Err(describe(&e)))
            }
        }
    }
}
