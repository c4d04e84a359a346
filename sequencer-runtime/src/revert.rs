//! `migrate revert`: undoes applied schema migrations with sqlx's down migrations, newest first, and before each
//! rolls back the completed operations that ran after it under the chronological rule (those whose timestamp is
//! at or after its version, those that `depends_on` it, and their completed dependents).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sequencer_core::Dependency;
use serde::Serialize;
use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};

use crate::error::SequencerError;
use crate::ledger::{LedgerRow, Status};
use crate::options::{Cascade, LockWait};
use crate::sequencer::Sequencer;

/// What [`Sequencer::revert_migrations`] reverts (`migrate revert [--to V] [--force-operations] [--dry-run]`).
#[derive(Debug, Clone, Default)]
pub struct RevertOptions {
    /// Revert every applied migration newer than this version, which stays applied (it must be applied; `0`
    /// reverts them all). `None`: the newest applied migration only.
    pub to: Option<i64>,
    /// An operation to roll back that has no rollback does not refuse the revert: it is recorded
    /// [`stale`](Status::Stale) (not undone, for a person to decide) instead.
    pub force_operations: bool,
    /// Only plan: [`RevertReport::plan`] says what would be undone, and nothing changes.
    pub dry_run: bool,
}

/// One migration to revert, and the operations undone just before it.
#[derive(Debug, Clone, Serialize)]
pub struct RevertStep {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// The completed operations undone before it, in order (dependents first, newest first): each rolled back,
    /// except those in `stale`.
    pub operations: Vec<String>,
    /// Those of `operations` without a rollback, recorded `stale` (only with
    /// [`RevertOptions::force_operations`]; without it they refuse the revert).
    pub stale: Vec<String>,
}

/// What [`Sequencer::revert_migrations`] did (or, with [`RevertOptions::dry_run`], would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RevertReport {
    /// The migrations to revert, newest first, each with the operations undone before it.
    pub plan: Vec<RevertStep>,
    /// Nothing was changed: `plan` is what would be done.
    pub dry_run: bool,
    /// The operations rolled back, in order (recorded `rolled_back`).
    pub rolled_back: Vec<String>,
    /// The operations without a rollback recorded `stale`, in order: not undone.
    pub stale: Vec<String>,
    /// The migrations reverted, newest first: `(version, description)`.
    pub reverted: Vec<(i64, String)>,
    /// The rollback that failed, with its error: nothing after it was undone (its migration stays applied).
    pub failed_rollback: Option<(String, String)>,
    /// The down migration that failed, with its error: nothing after it was undone.
    pub failed_migration: Option<(i64, String)>,
}

impl RevertReport {
    /// Whether everything planned was undone (operations recorded `stale` count as done: they were asked for).
    pub fn succeeded(&self) -> bool {
        self.failed_rollback.is_none() && self.failed_migration.is_none()
    }
}

fn migrate_err(e: MigrateError) -> SequencerError {
    SequencerError::Usage(format!("migrations: {e}"))
}

impl Sequencer {
    /// Reverts applied schema migrations with the down migrations of the builder's migrator (sqlx's reversible
    /// migrations, `V_description.up.sql` / `V_description.down.sql`), newest first: the newest applied one, or
    /// with [`RevertOptions::to`] every one newer than that version. Before reverting version `V` it rolls back,
    /// dependents and newest first, the completed operations that ran after `V` was applied under the
    /// chronological rule: those whose timestamp is at or after `V`, those that `depends_on = [migration(V)]`,
    /// and the completed operations that depend on those (directly or not).
    ///
    /// Refused before anything is undone ([`SequencerError::Usage`]): a dirty or edited migration, a `to` that is
    /// not applied (the message lists the applied versions), a migration without a down migration (naming the
    /// missing file), and an operation to undo that has no rollback, unless
    /// [`RevertOptions::force_operations`] records it `stale` instead. A rollback or a down migration that fails
    /// stops the revert there ([`RevertReport::succeeded`] is `false`). It holds the isolation lock throughout,
    /// as `migrate` does.
    pub async fn revert_migrations(
        &self,
        opts: &RevertOptions,
    ) -> Result<RevertReport, SequencerError> {
        let migrator: Arc<Migrator> = self.migrator().ok_or_else(|| {
            SequencerError::Usage(
                "no migrations: add `.migrations(\"migrations\")` (a directory of sqlx migrations) to the builder".into(),
            )
        })?;
        self.check_guards()?;
        let lock = self.isolation_lock(LockWait::Forever).await?;
        self.holding(lock, self.revert_isolated(migrator, opts))
            .await?
    }

    async fn revert_isolated(
        &self,
        migrator: Arc<Migrator>,
        opts: &RevertOptions,
    ) -> Result<RevertReport, SequencerError> {
        let mut conn = self
            .ledger()
            .pool()
            .acquire()
            .await
            .map_err(|e| SequencerError::Usage(format!("migrations: cannot connect: {e}")))?;
        conn.ensure_migrations_table().await.map_err(migrate_err)?;
        conn.lock().await.map_err(migrate_err)?;
        let result = self.revert_locked(&migrator, opts, &mut conn).await;
        conn.unlock().await.map_err(migrate_err)?;
        result
    }

    async fn revert_locked(
        &self,
        migrator: &Migrator,
        opts: &RevertOptions,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<RevertReport, SequencerError> {
        if let Some(v) = conn.dirty_version().await.map_err(migrate_err)? {
            return Err(SequencerError::Usage(format!("migration {v} is partially applied (dirty): fix the schema by hand, then delete its row from _sqlx_migrations")));
        }
        let applied = conn.list_applied_migrations().await.map_err(migrate_err)?;
        let mut versions: Vec<i64> = applied.iter().map(|a| a.version).collect();
        versions.sort_unstable();
        let targets: Vec<i64> = match opts.to {
            None => versions.last().copied().into_iter().collect(),
            Some(to) if to == 0 || versions.contains(&to) => {
                versions.iter().rev().copied().filter(|v| *v > to).collect()
            }
            Some(to) => {
                let listed: Vec<String> = versions.iter().map(i64::to_string).collect();
                return Err(SequencerError::Usage(if listed.is_empty() {
                    format!("`--to {to}`: no migration is applied, nothing to revert")
                } else {
                    format!(
                        "`--to {to}`: migration {to} is not applied; give one of the applied versions ({}), or 0 to revert them all",
                        listed.join(", ")
                    )
                }));
            }
        };
        let mut downs: Vec<&Migration> = Vec::new();
        for v in &targets {
            let up = migrator
                .iter()
                .find(|m| m.version == *v && m.migration_type.is_up_migration());
            let down = migrator
                .iter()
                .find(|m| m.version == *v && m.migration_type.is_down_migration());
            let checksum = applied
                .iter()
                .find(|a| a.version == *v)
                .map(|a| &a.checksum);
            match (up, down) {
                (Some(up), _) if Some(&up.checksum) != checksum => {
                    return Err(SequencerError::Usage(format!(
                        "migration {v} ({}) was edited after it was applied; restore it before reverting it",
                        up.description
                    )))
                }
                (_, Some(down)) => downs.push(down),
                (Some(up), None) => {
                    let file = format!("{v}_{}", up.description.replace(' ', "_"));
                    return Err(SequencerError::Usage(format!(
                        "migration {v} ({}) cannot be reverted: `{file}.down.sql` is missing (a reversible migration is a pair, `{file}.up.sql` and `{file}.down.sql`); nothing was reverted",
                        up.description
                    )));
                }
                (None, None) => {
                    return Err(SequencerError::Usage(format!(
                        "migration {v} is applied but not in the migrations directory, so it has no down migration; nothing was reverted"
                    )))
                }
            }
        }
        let env = self.env();
        env.ledger.recover_interrupted(&env.owner).await?;
        let (plan, runs) = self.revert_plan(&downs).await?;
        let blocked: Vec<String> = plan
            .iter()
            .flat_map(|s| {
                s.stale
                    .iter()
                    .map(move |n| format!("`{n}` (to undo before reverting {})", s.version))
            })
            .collect();
        if !blocked.is_empty() && !opts.force_operations {
            return Err(SequencerError::Usage(format!(
                "not reverted: completed operations that ran after the migration have no rollback: {}; add `rollback = fn` to them, or `--force-operations` to record them `stale` (not undone) and revert anyway; nothing was undone",
                blocked.join(", ")
            )));
        }
        let mut report = RevertReport {
            plan,
            dry_run: opts.dry_run,
            ..RevertReport::default()
        };
        if opts.dry_run {
            return Ok(report);
        }
        for (step, down) in report.plan.clone().iter().zip(downs) {
            for name in &step.operations {
                let run = runs.get(name).copied().unwrap_or(0);
                if let Err(e) = self.undo_for_revert(step, name, run, &mut report).await? {
                    report.failed_rollback = Some((name.clone(), e));
                    return Ok(report);
                }
            }
            if let Err(e) = conn.revert(down).await {
                report.failed_migration = Some((step.version, e.to_string()));
                return Ok(report);
            }
            report
                .reverted
                .push((step.version, step.description.clone()));
        }
        Ok(report)
    }

    /// Rolls back one operation of a revert step, or records it `stale` when it has no rollback: `Err` with why
    /// when that did not happen.
    async fn undo_for_revert(
        &self,
        step: &RevertStep,
        name: &str,
        run: i64,
        report: &mut RevertReport,
    ) -> Result<Result<(), String>, SequencerError> {
        let env = &crate::executor::Env {
            via: crate::events::Via::Rollback,
            ..self.env().clone()
        };
        if step.stale.iter().any(|s| s == name) {
            let note = format!(
                "stale: schema migration {} was reverted with `--force-operations` and it has no rollback; `retry {name}` runs it again, `mark {name} --completed` records it as it is",
                step.version
            );
            let set = env
                .ledger
                .set_status(name, run, Status::Completed, Status::Stale, Some(&note))
                .await?;
            if !set {
                return Ok(Err(
                    "changed while the revert ran; nothing after it was undone".into(),
                ));
            }
            report.stale.push(name.to_owned());
            return Ok(Ok(()));
        }
        let Some(def) = self.registry().get(name) else {
            return Ok(Err("orphaned: no longer in the registry".into()));
        };
        let undone = env.roll_back(def, run).await?;
        if undone.is_ok() {
            report.rolled_back.push(name.to_owned());
        }
        Ok(undone)
    }

    /// The steps of a revert, newest migration first, each with the completed operations to undo before it, and
    /// the run of each of those operations.
    async fn revert_plan(
        &self,
        downs: &[&Migration],
    ) -> Result<(Vec<RevertStep>, HashMap<String, i64>), SequencerError> {
        let registry = self.registry();
        let position: HashMap<&str, usize> = registry
            .ordered()?
            .iter()
            .enumerate()
            .map(|(i, d)| (d.meta.name, i))
            .collect();
        let completed: Vec<LedgerRow> = self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .filter(|r| r.status == Status::Completed)
            .collect();
        let needs = |name: &str, version: i64| {
            registry.get(name).is_some_and(|d| {
                d.meta
                    .depends_on
                    .iter()
                    .any(|dep| matches!(dep, Dependency::Migration(v) if *v == version))
            })
        };
        let mut taken: HashSet<String> = HashSet::new();
        let mut runs = HashMap::new();
        let mut plan = Vec::new();
        for m in downs {
            let seeds: Vec<LedgerRow> = completed
                .iter()
                .filter(|r| !taken.contains(&r.name))
                .filter(|r| r.timestamp >= m.version || needs(&r.name, m.version))
                .cloned()
                .collect();
            let (mut rows, _) = self.with_dependents(seeds, Cascade::Force).await?;
            rows.retain(|r| taken.insert(r.name.clone()));
            // Dependents before what they depend on, newest first: the plan order, reversed (orphans first).
            rows.sort_by_key(|r| {
                std::cmp::Reverse(position.get(r.name.as_str()).copied().unwrap_or(usize::MAX))
            });
            let stale = rows
                .iter()
                .filter(|r| registry.get(&r.name).is_none_or(|d| !d.meta.rollbackable))
                .map(|r| r.name.clone())
                .collect();
            runs.extend(rows.iter().map(|r| (r.name.clone(), r.run)));
            plan.push(RevertStep {
                version: m.version,
                description: m.description.to_string(),
                operations: rows.into_iter().map(|r| r.name).collect(),
                stale,
            });
        }
        Ok((plan, runs))
    }
}
