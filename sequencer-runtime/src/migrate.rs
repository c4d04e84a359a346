//! `migrate`, by the execution strategy: `command` (the default: `migrate` only migrates, `process` runs
//! operations) or `migration` (chronological: before applying each schema migration `V`, `migrate` runs every pending
//! operation whose timestamp is before `V` and waits for it to complete; then it applies `V`; after the last one it
//! runs the rest).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use sqlx::migrate::{Migrate, Migrator};

use crate::error::SequencerError;
use crate::events::Event;
use crate::ledger::Status;
use crate::options::ProcessOptions;
use crate::report::RunReport;
use crate::sequencer::Sequencer;
use crate::strategy::Strategy;

/// What `migrate` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateReport {
    /// Migrations applied, in order: `(version, description)`.
    pub applied: Vec<(i64, String)>,
    /// The migration that failed, with its error; nothing after it ran.
    pub failed_migration: Option<(i64, String)>,
    /// The migration not applied because operations planned before it did not complete, with why; nothing after
    /// it ran. A later `migrate` continues from there once they have.
    pub stopped_before: Option<(i64, String)>,
    /// Each run of operations, in order (after a migration, then the rest).
    pub runs: Vec<RunReport>,
}

impl MigrateReport {
    /// Whether every migration applied and every operation that ran ended well.
    pub fn succeeded(&self) -> bool {
        self.failed_migration.is_none()
            && self.stopped_before.is_none()
            && self.runs.iter().all(RunReport::succeeded)
    }
}

/// The versions applied so far, read again (each migration adds one).
async fn applied_now(conn: &mut sqlx::AnyConnection) -> Result<HashSet<i64>, SequencerError> {
    Ok(conn
        .list_applied_migrations()
        .await
        .map_err(|e| SequencerError::Usage(format!("migrations: {e}")))?
        .into_iter()
        .map(|m| m.version)
        .collect())
}

impl Sequencer {
    /// Applies the pending schema migrations of the builder's `migrator`, one at a time. Under the migration
    /// strategy, before applying version `V` it runs every pending operation whose timestamp is before `V` (an
    /// operation that `depends_on = [migration(V)]` waits for `V` whatever its timestamp) and applies `V` only once
    /// they have completed; after the last migration it runs the rest. An operation that fails (or does not
    /// complete) stops the migrations after it ([`MigrateReport::stopped_before`]); a later `migrate` continues.
    pub async fn migrate(&self) -> Result<MigrateReport, SequencerError> {
        let migrator: Arc<Migrator> = self.migrator().ok_or_else(|| {
            SequencerError::Usage(
                "no migrations: add `.migrations(\"migrations\")` (a directory of sqlx migrations) to the builder".into(),
            )
        })?;
        self.check_guards()?;
        // The same lock as `process --isolate`, on every backend (sqlx's migration lock is a no-op on SQLite):
        // `migrate` and `process` never interleave on one ledger. Another `migrate` waits for this one.
        let lock = self
            .isolation_lock(crate::options::LockWait::Forever)
            .await?;
        self.holding(lock, self.migrate_isolated(migrator)).await?
    }

    async fn migrate_isolated(
        &self,
        migrator: Arc<Migrator>,
    ) -> Result<MigrateReport, SequencerError> {
        let strategy = self.strategy().clone();
        let pool = self.ledger().pool().clone();
        let err =
            |e: sqlx::migrate::MigrateError| SequencerError::Usage(format!("migrations: {e}"));
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| SequencerError::Usage(format!("migrations: cannot connect: {e}")))?;
        conn.ensure_migrations_table().await.map_err(err)?;
        // sqlx's own migration lock: two `migrate` at once never apply the same migration twice.
        conn.lock().await.map_err(err)?;
        let result = self.migrate_locked(&migrator, &strategy, &mut conn).await;
        conn.unlock().await.map_err(err)?;
        drop(conn);
        result
    }

    /// The operations planned at or before version `up_to` that have not completed (or been skipped), with why,
    /// leaving out those that wait for a schema migration not applied yet.
    async fn unfinished_before(
        &self,
        up_to: i64,
        applied: &HashSet<i64>,
    ) -> Result<Vec<String>, SequencerError> {
        let rows: std::collections::HashMap<String, crate::ledger::LedgerRow> = self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut unfinished = Vec::new();
        for def in self.registry().ordered()? {
            let meta = &def.meta;
            if meta.timestamp.version() as i64 > up_to
                || !self.strategy().get().with_migrations(meta)
            {
                continue;
            }
            let waits_for_migration = meta.depends_on.iter().any(
                |d| matches!(d, sequencer_core::Dependency::Migration(v) if !applied.contains(v)),
            );
            let status = rows.get(meta.name).map(|r| r.status);
            match status {
                Some(Status::Completed | Status::Skipped) => {}
                _ if waits_for_migration => {}
                // Scheduled for later: it was never meant to run before this migration.
                Some(Status::Scheduled) => {}
                Some(s) => unfinished.push(format!("`{}` is {s}", meta.name)),
                None => unfinished.push(format!("`{}` has not run", meta.name)),
            }
        }
        Ok(unfinished)
    }

    async fn migrate_locked(
        &self,
        migrator: &Migrator,
        strategy: &Strategy,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<MigrateReport, SequencerError> {
        let err =
            |e: sqlx::migrate::MigrateError| SequencerError::Usage(format!("migrations: {e}"));
        if let Some(v) = conn.dirty_version().await.map_err(err)? {
            return Err(SequencerError::Usage(format!("migration {v} is partially applied (dirty): fix the schema by hand, then delete its row from _sqlx_migrations")));
        }
        let applied_list = conn.list_applied_migrations().await.map_err(err)?;
        for a in &applied_list {
            if let Some(m) = migrator
                .iter()
                .find(|m| m.version == a.version && m.migration_type.is_up_migration())
            {
                if m.checksum != a.checksum {
                    return Err(SequencerError::Usage(format!(
                        "migration {} ({}) was edited after it was applied; restore it and add a new migration instead",
                        m.version, m.description
                    )));
                }
            }
        }
        let applied: HashSet<i64> = applied_list.into_iter().map(|m| m.version).collect();
        let mut pending: Vec<_> = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .collect();
        pending.sort_by_key(|m| m.version);
        let emit = |e: Event| {
            let _ = self.events().send(e);
        };
        let mut report = MigrateReport::default();
        // Whether `migrate` runs any operation, and its options for them.
        let interleave = self.runs_with_migrations();
        let strategy = strategy.get();
        // The migration strategy's options for each run of operations: `force_sync` runs asynchronous ones here;
        // without it they go to the workers, and `migrate` waits for them.
        let round = |up_to: Option<i64>| ProcessOptions {
            up_to_version: up_to,
            quiet: true,
            sync: strategy.forces_sync(),
            await_queued: up_to.is_some(),
            ..ProcessOptions::default()
        };
        if pending.is_empty() {
            emit(Event::NoPendingMigrations);
            if interleave && strategy.run_on_no_pending_migrations() {
                let run = self.process_share(&round(None), true).await?;
                if !run.planned.is_empty() || !run.queued.is_empty() {
                    report.runs.push(run);
                }
            }
            return Ok(report);
        }
        emit(Event::MigrationsStarted {
            count: pending.len(),
        });
        for m in pending {
            if interleave {
                // Chronological order: what was written before this migration runs before it.
                let before = m.version.saturating_sub(1);
                let run = self.process_share(&round(Some(before)), true).await?;
                let failed = !run.succeeded();
                if !run.planned.is_empty() || !run.queued.is_empty() {
                    report.runs.push(run);
                }
                let unfinished = if failed {
                    vec!["an operation planned before it failed".to_owned()]
                } else {
                    self.unfinished_before(before, &applied_now(conn).await?)
                        .await?
                };
                if !unfinished.is_empty() {
                    report.stopped_before = Some((m.version, unfinished.join("; ")));
                    emit(Event::MigrationsEnded {
                        applied: report.applied.len(),
                    });
                    return Ok(report);
                }
            }
            emit(Event::MigrationStarted {
                version: m.version,
                description: m.description.to_string(),
            });
            if let Err(e) = conn.apply(m).await {
                report.failed_migration = Some((m.version, e.to_string()));
                emit(Event::MigrationsEnded {
                    applied: report.applied.len(),
                });
                return Ok(report);
            }
            report.applied.push((m.version, m.description.to_string()));
            emit(Event::MigrationEnded {
                version: m.version,
                description: m.description.to_string(),
            });
        }
        emit(Event::MigrationsEnded {
            applied: report.applied.len(),
        });
        if interleave {
            let rest = self.process_share(&round(None), true).await?;
            if !rest.planned.is_empty() || !rest.queued.is_empty() {
                report.runs.push(rest);
            }
        }
        Ok(report)
    }
}
