//! What the ledger says: `status` (one [`StatusEntry`] per operation), `preview` and `graph`.

use std::collections::HashMap;

use sequencer_core::Timestamp;
use serde::Serialize;

use crate::crypto::{place, Keyring};
use crate::error::SequencerError;
use crate::ledger::jobs::OpenJob;
use crate::ledger::now_ms;
use crate::ledger::runs::{LedgerRow, Status};
use crate::options::ProcessOptions;
use crate::registry::OperationDef;
use crate::render::{analyze_among, render, GraphFormat};
use crate::sequencer::Sequencer;

/// One operation in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    /// Ledger name.
    pub name: String,
    /// Timestamp, `YYYY_MM_DD_HHMMSS`.
    pub timestamp: String,
    /// Status (`pending` when the ledger has no row yet).
    pub status: Status,
    /// Batch.
    pub batch: Option<i64>,
    /// Tries.
    pub attempts: i64,
    /// Start, Unix milliseconds.
    pub started_at: Option<i64>,
    /// End, Unix milliseconds.
    pub finished_at: Option<i64>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Last error.
    pub error: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// Its source changed after it completed.
    pub edited: bool,
    /// In the ledger but no longer in the registry.
    pub orphaned: bool,
    /// Progress reported with `ctx.progress(done, total)`.
    pub progress_done: Option<i64>,
    /// See `progress_done`.
    pub progress_total: Option<i64>,
    /// Estimated time left of a running operation: from its recent rate of progress (its reports of the last
    /// 30 seconds or so), else from its average rate since it started.
    pub eta_ms: Option<i64>,
    /// `pause NAME` holds it at a checkpoint (it shows as `paused`).
    pub paused: bool,
    /// `pause NAME` asked it to hold at its next checkpoint, which it has not reached yet.
    pub pause_requested: bool,
    /// Its `throttle_on` condition holds it back now.
    pub throttled: bool,
    /// How long its `throttle_on` condition held this run back, milliseconds.
    pub throttled_ms: Option<i64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Its job on the workers' queue, while it has one that has not ended (blocked, queued or running).
    pub job: Option<OpenJob>,
}

impl StatusEntry {
    /// The entry of an operation (`def`; none for an orphaned row) from its latest ledger row (none: it never
    /// ran). Recorded errors are opened for display.
    fn new(def: Option<&OperationDef>, row: Option<LedgerRow>, keys: &Keyring) -> StatusEntry {
        let eta_ms = row.as_ref().and_then(eta);
        let edited = match (def, &row) {
            (Some(def), Some(r)) => {
                let checksum = format!("{:016x}", def.meta.checksum);
                r.status == Status::Completed
                    && r.checksum.as_deref().is_some_and(|c| c != checksum)
            }
            _ => false,
        };
        let (name, timestamp, tags) = match (def, &row) {
            (Some(def), _) => (
                def.meta.name.to_owned(),
                def.meta.timestamp.to_string(),
                def.meta.tags.iter().map(|t| (*t).to_owned()).collect(),
            ),
            (None, Some(r)) => (
                r.name.clone(),
                Timestamp::from_version(r.timestamp as u64)
                    .map_or_else(|_| r.timestamp.to_string(), |t| t.to_string()),
                Vec::new(),
            ),
            (None, None) => (String::new(), String::new(), Vec::new()),
        };
        let r = row.as_ref();
        StatusEntry {
            name,
            timestamp,
            status: r.map_or(Status::Pending, |r| r.status),
            batch: r.and_then(|r| r.batch),
            attempts: r.map_or(0, |r| r.attempts),
            started_at: r.and_then(|r| r.started_at),
            finished_at: r.and_then(|r| r.finished_at),
            duration_ms: r.and_then(|r| r.duration_ms),
            error: r.and_then(|r| {
                let e = r.last_error.as_deref()?;
                Some(keys.show_at(e, &place::last_error(&r.name, r.run)))
            }),
            skip_reason: r.and_then(|r| r.skip_reason.clone()),
            edited,
            orphaned: def.is_none(),
            progress_done: r.and_then(|r| r.progress_done),
            progress_total: r.and_then(|r| r.progress_total),
            eta_ms,
            paused: r.is_some_and(|r| r.status == Status::Running && r.pause_requested == 2),
            pause_requested: r
                .is_some_and(|r| r.status == Status::Running && r.pause_requested == 1),
            throttled: r
                .is_some_and(|r| r.status == Status::Running && r.throttled_since.is_some()),
            throttled_ms: r.and_then(|r| r.throttled_ms),
            tags,
            job: None,
        }
    }
}

/// What a run would do: see [`Sequencer::preview`].
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The due operations, in plan order.
    pub planned: Vec<String>,
    /// The due operations grouped by wave (an operation's wave is one more than its deepest due dependency's;
    /// dependencies that ran already are met).
    pub waves: Vec<Vec<String>>,
    /// The heaviest chain of dependencies among the due operations, first operation first.
    pub critical_path: Vec<String>,
    /// Its weight: milliseconds where every duration is known, else operations count 1 each.
    pub critical_weight: u64,
    /// The weight of the due operations.
    pub total_work: u64,
}

impl Sequencer {
    /// What `process` would run, grouped in waves, with the critical path (weighted by each operation's last
    /// recorded duration where known). Runs nothing.
    pub async fn preview(&self, opts: &ProcessOptions) -> Result<Preview, SequencerError> {
        let planned = self
            .process(&ProcessOptions {
                dry_run: true,
                ..opts.clone()
            })
            .await?
            .planned;
        let (_, durations) = self.graph_inputs().await?;
        let ops = self.inner.registry.operations();
        // The graph of what would run: the operations that ran already are met dependencies, not part of it.
        let view = analyze_among(&self.inner.registry, &durations, |i| {
            planned.iter().any(|p| p == ops[i].meta.name)
        })?;
        let name = |i: usize| ops[i].meta.name.to_owned();
        let waves = view
            .waves
            .iter()
            .map(|w| w.iter().map(|&i| name(i)).collect())
            .collect();
        Ok(Preview {
            critical_path: view.critical_path.iter().map(|&i| name(i)).collect(),
            critical_weight: view.critical_weight,
            total_work: view.total_work,
            planned,
            waves,
        })
    }

    /// The dependency graph with each operation's status: `text`, `dot` (Graphviz) or `mermaid`.
    pub async fn graph(&self, format: GraphFormat) -> Result<String, SequencerError> {
        let (statuses, durations) = self.graph_inputs().await?;
        Ok(render(&self.inner.registry, &statuses, &durations, format)?)
    }

    async fn graph_inputs(
        &self,
    ) -> Result<(HashMap<String, Status>, HashMap<String, u64>), SequencerError> {
        let status = self.status().await?;
        let statuses = status.iter().map(|e| (e.name.clone(), e.status)).collect();
        let durations = status
            .iter()
            .filter_map(|e| Some((e.name.clone(), u64::try_from(e.duration_ms?).ok()?.max(1))))
            .collect();
        Ok((statuses, durations))
    }

    /// Every operation of the registry with its latest run, then orphaned ledger rows.
    pub async fn status(&self) -> Result<Vec<StatusEntry>, SequencerError> {
        let mut rows: HashMap<String, LedgerRow> = self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let keys = &self.inner.env.keys;
        let mut jobs = self.ledger().open_jobs().await?;
        let mut out = Vec::new();
        for def in self.inner.registry.ordered()? {
            let row = rows.remove(def.meta.name);
            let run = row.as_ref().map_or(0, |r| r.run);
            let mut entry = StatusEntry::new(Some(def), row, keys);
            entry.job = jobs.remove(def.meta.name).filter(|j| j.run == run);
            out.push(entry);
        }
        let mut orphans: Vec<LedgerRow> = rows.into_values().collect();
        orphans.sort_by(|a, b| (a.timestamp, &a.name).cmp(&(b.timestamp, &b.name)));
        out.extend(
            orphans
                .into_iter()
                .map(|r| StatusEntry::new(None, Some(r), keys)),
        );
        Ok(out)
    }
}

/// Time left of a running operation: at its recent rate (its last progress reports, see
/// [`Ctx::progress`](crate::Ctx::progress)) where known, else at its average rate since it started.
fn eta(r: &LedgerRow) -> Option<i64> {
    let (done, total, started) = (r.progress_done?, r.progress_total?, r.started_at?);
    if r.status != Status::Running || done <= 0 || total < done {
        return None;
    }
    if let Some(per_hour) = r.progress_rate.filter(|r| *r > 0) {
        return Some((total - done).saturating_mul(3_600_000) / per_hour);
    }
    let elapsed = now_ms() - started;
    Some(elapsed * (total - done) / done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(done: i64, started_ago_ms: i64, rate: Option<i64>) -> LedgerRow {
        let mut r = crate::plan::tests::row("op", Status::Running, None);
        r.started_at = Some(now_ms() - started_ago_ms);
        (r.progress_done, r.progress_total) = (Some(done), Some(1_000));
        r.progress_rate = rate;
        r
    }

    #[test]
    fn the_eta_follows_the_recent_rate_not_the_average_since_the_start() {
        // 500 of 1,000 done in 500 s: 500 s left at the average rate, but at the recent 3,600 an hour (1 a
        // second) 500 s too; at 36,000 an hour (10 a second) 50 s.
        assert_eq!(eta(&running(500, 500_000, Some(36_000))), Some(50_000));
        assert_eq!(eta(&running(500, 500_000, Some(3_600))), Some(500_000));
        // No recent rate yet: the average since the start.
        let average = eta(&running(500, 500_000, None)).unwrap_or(0);
        assert!((499_000..=501_000).contains(&average), "{average}");
        assert_eq!(
            eta(&running(0, 500_000, Some(36_000))),
            None,
            "nothing done yet"
        );
    }
}
