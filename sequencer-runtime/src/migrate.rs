//! `migrate`, by the execution strategy: `command` (the default: `migrate` only migrates, `process` runs
//! operations) or `migration` (`migrate` applies the schema migrations one at a time and, after each, runs every pending
//! operation whose timestamp is at or before that migration's version; then the rest).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use sqlx::migrate::{Migrate, Migrator};

use crate::error::SequencerError;
use crate::events::Event;
use crate::options::{ProcessOptions, Strategy};
use crate::report::RunReport;
use crate::sequencer::Sequencer;

/// What `migrate` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateReport {
    /// Migrations applied, in order: `(version, description)`.
    pub applied: Vec<(i64, String)>,
    /// The migration that failed, with its error; nothing after it ran.
    pub failed_migration: Option<(i64, String)>,
    /// Each run of operations, in order (after a migration, then the rest).
    pub runs: Vec<RunReport>,
}

impl MigrateReport {
    /// Whether every migration applied and every operation that ran ended well.
    pub fn succeeded(&self) -> bool {
        self.failed_migration.is_none() && self.runs.iter().all(RunReport::succeeded)
    }
}

impl Sequencer {
    /// Applies the pending schema migrations of the builder's `migrator`, one at a time; under the migration
    /// strategy, runs after each one every pending operation whose timestamp is at or before its version (an
    /// operation that `depends_on = [migration(V)]` waits for V), then the rest.
    pub async fn migrate(&self) -> Result<MigrateReport, SequencerError> {
        let migrator: Arc<Migrator> = self.migrator().ok_or_else(|| {
            SequencerError::Usage(
                "no migrations: add `.migrations(\"migrations\")` (a directory of sqlx migrations) to the builder".into(),
            )
        })?;
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
        let interleave = matches!(strategy, Strategy::Migration(_));
        if pending.is_empty() {
            emit(Event::NoPendingMigrations);
            if let Strategy::Migration(m) = &strategy {
                if m.run_on_no_pending_migrations {
                    report
                        .runs
                        .push(self.process(&ProcessOptions::default()).await?);
                }
            }
            return Ok(report);
        }
        emit(Event::MigrationsStarted {
            count: pending.len(),
        });
        for m in pending {
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
            if interleave {
                let run = self
                    .process(&ProcessOptions {
                        up_to_version: Some(m.version),
                        quiet: true,
                        ..ProcessOptions::default()
                    })
                    .await?;
                let failed = !run.succeeded();
                if !run.planned.is_empty() {
                    report.runs.push(run);
                }
                if failed {
                    emit(Event::MigrationsEnded {
                        applied: report.applied.len(),
                    });
                    return Ok(report);
                }
            }
        }
        emit(Event::MigrationsEnded {
            applied: report.applied.len(),
        });
        if interleave {
            let rest = self
                .process(&ProcessOptions {
                    quiet: true,
                    ..ProcessOptions::default()
                })
                .await?;
            if !rest.planned.is_empty() {
                report.runs.push(rest);
            }
        }
        Ok(report)
    }
}
