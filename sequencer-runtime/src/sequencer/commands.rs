//! The commands on one operation or a few: `execute`, `retry`, `mark`, `forget`, `rollback`, `cancel`,
//! `errors`, and the conditional and query forms.

use std::collections::HashMap;

use sequencer_core::Dependency;

use crate::crypto::{place, Keyring};
use crate::error::SequencerError;
use crate::events::Via;
use crate::ledger::error_log::ErrorRecord;
use crate::ledger::runs::{LedgerRow, Status};
use crate::options::{Cascade, RollbackTarget};
use crate::plan::Due;
use crate::registry::OperationDef;
use crate::report::{Outcome, RunReport};
use crate::sequencer::process::applied_migrations;
use crate::sequencer::Sequencer;

impl Sequencer {
    /// Runs one operation now, in this process (an `asynchronous` one too: it is not queued), recording it in a
    /// new batch. An operation whose dependencies (`depends_on` operations and migrations) have not completed is
    /// refused, saying which, and so is a completed one ([`SequencerError::Usage`]); an unknown name is
    /// [`SequencerError::UnknownOperation`] with a suggestion.
    pub async fn execute(&self, name: &str) -> Result<RunReport, SequencerError> {
        self.execute_via(name, Via::Execute).await
    }

    async fn execute_via(&self, name: &str, via: Via) -> Result<RunReport, SequencerError> {
        let def = self.find(name)?;
        self.check_guards()?;
        let env = &crate::executor::Env {
            via,
            ..self.inner.env.clone()
        };
        env.ledger.recover_interrupted(&env.owner).await?;
        let rows = env.ledger.rows().await?;
        self.check_dependencies(def, &rows).await?;
        let row = rows.into_iter().find(|r| r.name == def.meta.name);
        if row.is_none() {
            env.ledger
                .insert_pending(&[(def.meta.name, def.meta.timestamp.version() as i64)])
                .await?;
        }
        match row.as_ref().map(|r| r.status) {
            Some(Status::Completed) => {
                return Err(SequencerError::Usage(format!(
                "`{}` has completed already; `process --repeat --from {} --to {}` runs it again",
                def.meta.name, def.meta.timestamp, def.meta.timestamp
            )))
            }
            Some(Status::Running) => {
                return Err(SequencerError::Usage(format!(
                    "`{}` is running in another process",
                    def.meta.name
                )))
            }
            Some(Status::RollingBack) => {
                return Err(SequencerError::Usage(format!(
                    "`{}` is being rolled back by another process; wait for it",
                    def.meta.name
                )))
            }
            Some(Status::RollbackInterrupted) => return Err(rollback_interrupted(def.meta.name)),
            Some(Status::Interrupted) => {
                env.ledger
                    .set_status(
                        def.meta.name,
                        row.as_ref().map_or(0, |r| r.run),
                        Status::Interrupted,
                        Status::Pending,
                        None,
                    )
                    .await?;
            }
            _ => {}
        }
        let batch = env.ledger.new_batch(&env.owner).await?;
        // Asked for by name, a scheduled operation runs now.
        let scheduled = row.as_ref().is_some_and(|r| r.status == Status::Scheduled);
        let run = row.map_or(0, |r| r.run);
        let outcome = env
            .run(&Due::new(def, run, false, scheduled), batch)
            .await?;
        Ok(RunReport {
            batch: Some(batch),
            planned: vec![def.meta.name.to_owned()],
            results: vec![(def.meta.name.to_owned(), outcome)],
            ..RunReport::default()
        })
    }

    /// Refuses to run an operation by name before its dependencies: every operation it `depends_on` must have
    /// completed (or been skipped) and every schema migration it names must be applied.
    async fn check_dependencies(
        &self,
        def: &'static OperationDef,
        rows: &[LedgerRow],
    ) -> Result<(), SequencerError> {
        let latest: HashMap<&str, &LedgerRow> = rows.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut unmet = Vec::new();
        // The first operation to run before this one, for the hint.
        let mut first = None;
        let mut migrations = None;
        for dep in def.meta.depends_on {
            match dep {
                Dependency::Operation(d) => {
                    match latest.get(d).map(|r| r.status) {
                        Some(Status::Completed | Status::Skipped) => continue,
                        Some(other) => unmet.push(format!("`{d}` (it is {other})")),
                        None => unmet.push(format!("`{d}` (it never ran)")),
                    }
                    first.get_or_insert(*d);
                }
                Dependency::Migration(v) => {
                    if migrations.is_none() {
                        migrations = Some(applied_migrations(self.inner.env.ledger.pool()).await);
                    }
                    if migrations.as_ref().is_some_and(|m| !m.contains(v)) {
                        unmet.push(format!(
                            "schema migration {v} (not applied; `migrate` applies it)"
                        ));
                    }
                }
            }
        }
        if unmet.is_empty() {
            return Ok(());
        }
        Err(SequencerError::Usage(format!(
            "`{}` depends on {}, which has not completed; run it first{}, or run them in order with `process`",
            def.meta.name,
            unmet.join(", "),
            first.map(|d| format!(" (`execute {d}`)")).unwrap_or_default()
        )))
    }

    /// Runs one operation without touching the ledger (`execute NAME --no-record`).
    pub async fn execute_unrecorded(&self, name: &str) -> Result<Outcome, SequencerError> {
        let def = self.find(name)?;
        self.check_guards()?;
        Ok(self.inner.env.run_unrecorded(def).await)
    }

    /// Marks a failed, interrupted or stale operation pending and runs it now.
    pub async fn retry(&self, name: &str) -> Result<RunReport, SequencerError> {
        let def = self.find(name)?;
        let env = &self.inner.env;
        env.ledger.recover_interrupted(&env.owner).await?;
        let rows = env.ledger.rows().await?;
        let row = rows.iter().find(|r| r.name == def.meta.name).cloned();
        match row {
            Some(r)
                if matches!(
                    r.status,
                    Status::Failed | Status::Interrupted | Status::Stale
                ) =>
            {
                // Refuse before touching the row: a refused retry leaves it as it was.
                self.check_dependencies(def, &rows).await?;
                env.ledger
                    .set_status(&r.name, r.run, r.status, Status::Pending, None)
                    .await?;
                self.execute_via(def.meta.name, Via::Retry).await
            }
            Some(r) if r.status == Status::RollbackInterrupted => {
                Err(rollback_interrupted(&r.name))
            }
            Some(r) => Err(SequencerError::Usage(format!(
                "`{}` is {}, not failed, interrupted or stale: nothing to retry",
                r.name, r.status
            ))),
            None => Err(SequencerError::Usage(format!(
                "`{}` never ran: `process` or `execute` runs it",
                def.meta.name
            ))),
        }
    }

    /// Sets an operation's status by hand (`completed` or `skipped`), for one a human has dealt with.
    pub async fn mark(&self, name: &str, to: Status) -> Result<(), SequencerError> {
        if !matches!(to, Status::Completed | Status::Skipped) {
            return Err(SequencerError::Usage(
                "an operation can be marked `completed` or `skipped`".into(),
            ));
        }
        let def = self.find(name)?;
        let env = &self.inner.env;
        let row = env
            .ledger
            .rows()
            .await?
            .into_iter()
            .find(|r| r.name == def.meta.name);
        let row = match row {
            Some(r) => r,
            None => {
                env.ledger
                    .insert_pending(&[(def.meta.name, def.meta.timestamp.version() as i64)])
                    .await?;
                env.ledger
                    .rows()
                    .await?
                    .into_iter()
                    .find(|r| r.name == def.meta.name)
                    .ok_or_else(|| {
                        SequencerError::Usage("the ledger lost a row it just wrote".into())
                    })?
            }
        };
        if matches!(row.status, Status::Running | Status::RollingBack) {
            return Err(SequencerError::Usage(format!(
                "`{}` is {}; wait for it or for its lease to expire",
                row.name, row.status
            )));
        }
        let reason = format!("marked {to} by hand");
        env.ledger
            .set_status(
                &row.name,
                row.run,
                row.status,
                to,
                (to == Status::Skipped).then_some(reason.as_str()),
            )
            .await?;
        // Queued operations waiting for this one go to the workers now.
        env.ledger.unblock_jobs_after(&row.name).await?;
        Ok(())
    }

    /// Deletes an operation's rows from the ledger (it runs again next time). Works for orphans too.
    pub async fn forget(&self, name: &str) -> Result<u64, SequencerError> {
        let name = match self.find(name) {
            Ok(def) => def.meta.name.to_owned(),
            Err(e) => {
                // An orphaned row has no operation in the registry.
                if self.ledger().rows().await?.iter().any(|r| r.name == name) {
                    name.to_owned()
                } else {
                    return Err(e);
                }
            }
        };
        self.ledger().forget(&name).await?.ok_or_else(|| {
            SequencerError::Usage(format!(
                "`{name}` is running (or rolling back): wait for it (or for its lease to expire) before forgetting it"
            ))
        })
    }

    /// Rolls back completed operations, latest first. Each rollback is claimed (`rolling_back`, under a lease)
    /// and recorded `rolled_back` only once it returned. Named with [`RollbackTarget::Op`], an operation whose
    /// rollback was interrupted (`undo_interrupted`) has its rollback run again.
    pub async fn rollback(&self, target: &RollbackTarget) -> Result<RunReport, SequencerError> {
        self.rollback_with(target, Cascade::Refuse).await
    }

    /// [`Sequencer::rollback`], with a choice of what happens to the completed dependents (those that
    /// `depends_on` an operation undone, directly or not): refused, naming them ([`Cascade::Refuse`]); rolled back
    /// first, dependents before what they depend on ([`Cascade::Dependents`]), where a dependent without a rollback
    /// stops the cascade before anything is undone; or the same, with such dependents recorded `stale` for a
    /// person ([`Cascade::Force`]). No `completed` row is left on undone work.
    pub async fn rollback_with(
        &self,
        target: &RollbackTarget,
        cascade: Cascade,
    ) -> Result<RunReport, SequencerError> {
        self.check_guards()?;
        let env = &crate::executor::Env {
            via: Via::Rollback,
            ..self.inner.env.clone()
        };
        env.ledger.recover_interrupted(&env.owner).await?;
        let named = matches!(target, RollbackTarget::Op(_));
        let mut rows: Vec<LedgerRow> = env
            .ledger
            .rows()
            .await?
            .into_iter()
            .filter(|r| {
                r.status == Status::Completed || (named && r.status == Status::RollbackInterrupted)
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.finished_at, b.timestamp, &b.name).cmp(&(a.finished_at, a.timestamp, &a.name))
        });
        let chosen: Vec<LedgerRow> = match target {
            RollbackTarget::Batch(n) => rows.into_iter().filter(|r| r.batch == Some(*n)).collect(),
            RollbackTarget::Step(n) => rows.into_iter().take(*n).collect(),
            RollbackTarget::Op(name) => {
                let def = self.find(name)?;
                let found: Vec<LedgerRow> = rows
                    .into_iter()
                    .filter(|r| r.name == def.meta.name)
                    .collect();
                if found.is_empty() {
                    return Err(SequencerError::Usage(format!(
                        "`{}` has not completed: nothing to roll back",
                        def.meta.name
                    )));
                }
                found
            }
        };
        let (chosen, stale_on) = self.with_dependents(chosen, cascade).await?;
        let stale: std::collections::HashSet<String> = stale_on.keys().cloned().collect();
        let mut report = RunReport::default();
        for r in chosen {
            let Some(def) = self.inner.registry.get(&r.name) else {
                report
                    .rollback_failures
                    .push((r.name.clone(), "orphaned: no longer in the registry".into()));
                continue;
            };
            if !def.meta.rollbackable && stale.contains(&r.name) {
                // `--force`: recorded before what it depends on is undone, so it is never `completed` over it.
                let note = format!(
                    "stale: `{}`, which it depends on, was rolled back with `--force`; `retry {}` runs it again, `mark {} --completed` records it as it is",
                    stale_on.get(&r.name).map_or("", String::as_str),
                    r.name,
                    r.name
                );
                if env
                    .ledger
                    .set_status(
                        &r.name,
                        r.run,
                        Status::Completed,
                        Status::Stale,
                        Some(&note),
                    )
                    .await?
                {
                    report.needs_attention.push(r.name);
                } else {
                    report.rollback_failures.push((
                        r.name,
                        "changed while the rollback ran; nothing after it was undone".into(),
                    ));
                    break;
                }
                continue;
            }
            if !def.meta.rollbackable {
                report.rollback_failures.push((
                    r.name.clone(),
                    "has no rollback (add `rollback = fn` to undo it)".into(),
                ));
                continue;
            }
            match env.roll_back(def, r.run).await? {
                Ok(()) => report.rolled_back.push(r.name),
                Err(e) => report.rollback_failures.push((r.name, e)),
            }
        }
        Ok(report)
    }

    /// The rows to undo, with their completed dependents first when cascading (refused otherwise), in an order
    /// that undoes every dependent before what it depends on; and, under [`Cascade::Force`], the dependents without
    /// a rollback, to be recorded `stale`, with what they depend on.
    pub(crate) async fn with_dependents(
        &self,
        chosen: Vec<LedgerRow>,
        cascade: Cascade,
    ) -> Result<(Vec<LedgerRow>, HashMap<String, String>), SequencerError> {
        let ordered = self.inner.registry.ordered()?;
        let position: HashMap<&str, usize> = ordered
            .iter()
            .enumerate()
            .map(|(i, d)| (d.meta.name, i))
            .collect();
        let mut dependents: HashMap<&str, Vec<&'static OperationDef>> = HashMap::new();
        for d in &ordered {
            for dep in d.meta.depends_on {
                if let Dependency::Operation(on) = dep {
                    dependents.entry(*on).or_default().push(*d);
                }
            }
        }
        let rows: HashMap<String, LedgerRow> = self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut all: Vec<LedgerRow> = chosen.clone();
        let mut stack: Vec<&str> = chosen.iter().map(|r| r.name.as_str()).collect();
        let mut seen: std::collections::HashSet<String> =
            chosen.iter().map(|r| r.name.clone()).collect();
        let mut blocking: Vec<(String, String)> = Vec::new();
        while let Some(name) = stack.pop() {
            for d in dependents.get(name).into_iter().flatten() {
                let Some(row) = rows.get(d.meta.name) else {
                    continue;
                };
                let live = matches!(
                    row.status,
                    Status::Completed | Status::RollingBack | Status::RollbackInterrupted
                );
                if !live || !seen.insert(d.meta.name.to_owned()) {
                    continue;
                }
                blocking.push((d.meta.name.to_owned(), name.to_owned()));
                all.push(row.clone());
                stack.push(d.meta.name);
            }
        }
        if blocking.is_empty() {
            return Ok((chosen, HashMap::new()));
        }
        if cascade == Cascade::Refuse {
            let list: Vec<String> = blocking
                .iter()
                .map(|(d, on)| format!("`{d}` (depends on `{on}`)"))
                .collect();
            return Err(SequencerError::Usage(format!(
                "not rolled back: completed operations depend on it: {}; roll them back first, or add `--cascade` to roll them back too, dependents first",
                list.join(", ")
            )));
        }
        let cannot_undo: Vec<&(String, String)> = blocking
            .iter()
            .filter(|(d, _)| {
                self.inner
                    .registry
                    .get(d)
                    .is_none_or(|def| !def.meta.rollbackable)
            })
            .collect();
        if let (Some((d, on)), Cascade::Dependents) = (cannot_undo.first(), cascade) {
            return Err(SequencerError::Usage(format!(
                "the cascade stops at `{d}`: it depends on `{on}` and has no rollback (add `rollback = fn`), so undoing `{on}` would leave it completed over undone work; nothing was rolled back (`--force` records it `stale` instead, for a person to decide)"
            )));
        }
        // Dependents before what they depend on: latest in plan order first.
        all.sort_by_key(|r| std::cmp::Reverse(position.get(r.name.as_str()).copied()));
        let stale = cannot_undo.into_iter().cloned().collect();
        Ok((all, stale))
    }

    /// Asks a running operation (in any process) to stop at its next `ctx.checkpoint(..)`. `false` if it is not
    /// running.
    pub async fn cancel_operation(&self, name: &str) -> Result<bool, SequencerError> {
        let def = self.find(name)?;
        Ok(self.ledger().request_cancel(def.meta.name).await?)
    }

    /// Recorded errors, of one operation or of all.
    pub async fn errors(&self, name: Option<&str>) -> Result<Vec<ErrorRecord>, SequencerError> {
        let name = match name {
            Some(n) => Some(self.find(n).map(|d| d.meta.name).unwrap_or(n)),
            None => None,
        };
        let keys = &self.inner.env.keys;
        let mut errors = self.ledger().errors(name).await?;
        for e in &mut errors {
            e.message = keys.show_at(
                &e.message,
                &place::error(&e.name, e.run, e.attempt, "message"),
            );
            e.chain = keys.show_at(&e.chain, &place::error(&e.name, e.run, e.attempt, "chain"));
        }
        Ok(errors)
    }

    /// Seals, each for its row, the values that must be sealed but were stored in plain text (before a key was
    /// set) or sealed before values were bound to their row: the payloads and errors of the old deferred table, the
    /// checkpoints and last errors of `encrypted` operations, and the arguments and last errors of every run of an
    /// `encrypted` task (deferred runs included: their task is `encrypted` once a key is configured). Returns how many values it rewrote. Needs a key (`SEQUENCER_KEY`).
    pub async fn reseal(&self) -> Result<u64, SequencerError> {
        let keys = &self.inner.env.keys;
        if !keys.can_seal() {
            return Err(SequencerError::Usage(
                "`reseal` needs a key: set SEQUENCER_KEY (32 bytes, base64)".into(),
            ));
        }
        let ledger = self.ledger();
        let reseal = |stored: &str, place: &str| -> Result<Option<String>, SequencerError> {
            if !Keyring::needs_resealing(stored) {
                return Ok(None);
            }
            let plain = keys
                .open(stored)
                .map_err(|e| SequencerError::Usage(format!("cannot reseal {place}: {e}")))?;
            keys.seal_for(&plain, place)
                .map(Some)
                .map_err(|e| SequencerError::Usage(e.to_string()))
        };
        let mut count = 0;
        for row in ledger.deferred().await? {
            let payload = reseal(&row.payload, &place::deferred(row.id, "payload"))?;
            let error = match row.last_error.as_deref() {
                Some(e) => reseal(e, &place::deferred(row.id, "last_error"))?,
                None => None,
            };
            if payload.is_some() || error.is_some() {
                count += u64::from(payload.is_some()) + u64::from(error.is_some());
                let payload = payload.unwrap_or(row.payload);
                let error = error.or(row.last_error);
                ledger
                    .rewrite_deferred(row.id, &payload, error.as_deref())
                    .await?;
            }
        }
        let encrypted: Vec<&str> = self
            .inner
            .registry
            .operations()
            .iter()
            .filter(|d| d.meta.encrypted)
            .map(|d| d.meta.name)
            .collect();
        for name in &encrypted {
            for (run, stored) in ledger.checkpoints_of(name).await? {
                if let Some(sealed) = reseal(&stored, &place::checkpoint(name, run))? {
                    ledger.rewrite_checkpoint(name, run, &sealed).await?;
                    count += 1;
                }
            }
        }
        for row in ledger.rows().await? {
            let (true, Some(stored)) = (
                encrypted.contains(&row.name.as_str()),
                row.last_error.as_deref(),
            ) else {
                continue;
            };
            if let Some(sealed) = reseal(stored, &place::last_error(&row.name, row.run))? {
                ledger
                    .rewrite_last_error(&row.name, row.run, &sealed)
                    .await?;
                count += 1;
            }
        }
        // Every run of an `encrypted` task (deferred runs are, once a key is set): its arguments and last error.
        let encrypted_tasks = self.inner.registry.tasks().iter();
        for name in encrypted_tasks
            .filter(|t| t.op.meta.encrypted)
            .map(|t| t.name())
        {
            for (run, args, last_error) in ledger.task_stored(name).await? {
                if let Some(sealed) = args
                    .as_deref()
                    .map(|a| reseal(a, &place::task_args(name, run)))
                    .transpose()?
                    .flatten()
                {
                    ledger.rewrite_task_args(name, run, &sealed).await?;
                    count += 1;
                }
                if let Some(sealed) = last_error
                    .as_deref()
                    .map(|e| reseal(e, &place::last_error(name, run)))
                    .transpose()?
                    .flatten()
                {
                    ledger.rewrite_last_error(name, run, &sealed).await?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Deletes the ended jobs (`done`, `failed`) and ended deferred operations (`completed`, `failed`) older than
    /// `older_than`, by the database's clock: `(jobs, deferred)` deleted. Queued, running and pending rows stay.
    /// It also deletes the progress samples older than `older_than` of runs that are not running
    /// ([`Ledger::prune_progress_samples`](crate::ledger::Ledger::prune_progress_samples)), so that the table does
    /// not grow without bound.
    pub async fn prune(
        &self,
        older_than: std::time::Duration,
    ) -> Result<(u64, u64), SequencerError> {
        let ledger = self.ledger();
        ledger.prune_progress_samples(older_than).await?;
        Ok((
            ledger.prune_jobs(older_than).await?,
            ledger.prune_deferred(older_than).await?,
        ))
    }

    /// The same as [`Sequencer::execute`]: runs one operation now, in this process, and waits for it (an
    /// `asynchronous` operation is not queued). To hand operations to the workers, use `process` (or
    /// [`Sequencer::enqueue`]).
    pub async fn execute_sync(&self, name: &str) -> Result<RunReport, SequencerError> {
        self.execute(name).await
    }

    /// Runs the operation only when `condition` holds; `Ok(None)` otherwise.
    pub async fn execute_if(
        &self,
        condition: bool,
        name: &str,
    ) -> Result<Option<RunReport>, SequencerError> {
        if condition {
            self.execute(name).await.map(Some)
        } else {
            self.find(name)?;
            Ok(None)
        }
    }

    /// Runs the operation unless `condition` holds; `Ok(None)` otherwise.
    pub async fn execute_unless(
        &self,
        condition: bool,
        name: &str,
    ) -> Result<Option<RunReport>, SequencerError> {
        self.execute_if(!condition, name).await
    }

    /// Whether the operation's latest run completed.
    pub async fn has_executed(&self, name: &str) -> Result<bool, SequencerError> {
        Ok(self.latest_status(name).await? == Some(Status::Completed))
    }

    /// Whether the operation's latest run failed.
    pub async fn has_failed(&self, name: &str) -> Result<bool, SequencerError> {
        Ok(self.latest_status(name).await? == Some(Status::Failed))
    }

    async fn latest_status(&self, name: &str) -> Result<Option<Status>, SequencerError> {
        let def = self.find(name)?;
        Ok(self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .find(|r| r.name == def.meta.name)
            .map(|r| r.status))
    }
}

/// The refusal of an operation whose rollback was interrupted: a person decides how it ends.
fn rollback_interrupted(name: &str) -> SequencerError {
    SequencerError::Usage(format!(
        "the rollback of `{name}` was interrupted and may have undone only part of it: finish it with \
         `rollback --op {name}`, or record it as it is with `mark {name} --completed`"
    ))
}
