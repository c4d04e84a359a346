//! What the ledger says: `status` (one [`StatusEntry`] per operation), `preview` and `graph`.

use std::collections::HashMap;

use sequencer_core::Timestamp;
use serde::Serialize;

use crate::crypto::{place, Keyring};
use crate::error::SequencerError;
use crate::ledger::jobs::OpenJob;
use crate::ledger::runs::{LedgerRow, Status};
use crate::options::ProcessOptions;
use crate::outline::Outline;
use crate::registry::OperationDef;
use crate::render::{analyze_among, render, GraphFormat};
use crate::sequencer::listing::{etas, EtaBasis};
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
    /// Its latest run (0 when it never ran; `--repeat` adds runs).
    pub run: i64,
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
    /// Estimated time left of a running operation: at the rate of the last minutes, else from an earlier run's
    /// duration, else at its rate since it started (see [`estimate_eta`](crate::estimate_eta)).
    pub eta_ms: Option<i64>,
    /// How `eta_ms` was estimated.
    pub eta_basis: Option<EtaBasis>,
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
    pub(crate) fn new(
        def: Option<&OperationDef>,
        row: Option<LedgerRow>,
        keys: &Keyring,
        eta: Option<(i64, EtaBasis)>,
    ) -> StatusEntry {
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
        let mut entry = StatusEntry {
            name,
            timestamp,
            status: Status::Pending,
            run: 0,
            batch: None,
            attempts: 0,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            skip_reason: None,
            edited: false,
            orphaned: def.is_none(),
            progress_done: None,
            progress_total: None,
            eta_ms: eta.map(|(ms, _)| ms),
            eta_basis: eta.map(|(_, basis)| basis),
            paused: false,
            pause_requested: false,
            throttled: false,
            throttled_ms: None,
            tags,
            job: None,
        };
        if let Some(row) = row {
            entry.record(def, row, keys);
        }
        entry
    }

    /// Fills in what the operation's latest ledger row `r` says (`def`: its definition, none when orphaned),
    /// taking the row's values rather than copying them.
    fn record(&mut self, def: Option<&OperationDef>, r: LedgerRow, keys: &Keyring) {
        let running = r.status == Status::Running;
        self.edited = def.is_some_and(|def| {
            r.status == Status::Completed
                && r.checksum
                    .as_deref()
                    .is_some_and(|c| c != format!("{:016x}", def.meta.checksum))
        });
        self.error = r
            .last_error
            .as_deref()
            .map(|e| keys.show_at(e, &place::last_error(&r.name, r.run)));
        self.status = r.status;
        self.run = r.run;
        self.batch = r.batch;
        self.attempts = r.attempts;
        self.started_at = r.started_at;
        self.finished_at = r.finished_at;
        self.duration_ms = r.duration_ms;
        self.skip_reason = r.skip_reason;
        self.progress_done = r.progress_done;
        self.progress_total = r.progress_total;
        self.paused = running && r.pause_requested == 2;
        self.pause_requested = running && r.pause_requested == 1;
        self.throttled = running && r.throttled_since.is_some();
        self.throttled_ms = r.throttled_ms;
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
    /// The last recorded duration of each due operation that has one, in milliseconds (at least 1).
    pub last_durations: HashMap<String, u64>,
}

impl Sequencer {
    /// What `process` would run, grouped in waves, with the critical path (weighted by each operation's last
    /// recorded duration where known). Runs nothing.
    ///
    /// Without `repeat` it reads the ledger once, as an [`Outline`] (the runs that still need something and
    /// which operations were recorded; never the completed rows), for the plan and the durations both.
    pub async fn preview(&self, opts: &ProcessOptions) -> Result<Preview, SequencerError> {
        let dry_run = ProcessOptions {
            dry_run: true,
            ..opts.clone()
        };
        let (planned, durations) = if dry_run.repeat {
            // `--repeat` plans the completed operations: the plan and the durations read every latest run.
            let (report, inputs) = tokio::join!(self.process(&dry_run), self.graph_inputs());
            (report?.planned, inputs?.1)
        } else {
            self.check_guards()?;
            let outline = self.outline().await?;
            let report = self.plan_share(&dry_run, false, Some(&outline)).await?;
            let durations: HashMap<String, u64> = outline
                .open_runs()
                .filter_map(|r| Some((r.name.clone(), u64::try_from(r.duration_ms?).ok()?.max(1))))
                .collect();
            (report.planned, durations)
        };
        let ops = self.inner.registry.operations();
        // The graph of what would run: the operations that ran already are met dependencies, not part of it.
        let due: std::collections::HashSet<&str> = planned.iter().map(String::as_str).collect();
        let view = analyze_among(&self.inner.registry, &durations, |i| {
            due.contains(ops[i].meta.name)
        })?;
        let name = |i: usize| ops[i].meta.name.to_owned();
        let waves = view
            .waves
            .iter()
            .map(|w| w.iter().map(|&i| name(i)).collect())
            .collect();
        let last_durations = planned
            .iter()
            .filter_map(|n| Some((n.clone(), *durations.get(n)?)))
            .collect();
        Ok(Preview {
            critical_path: view.critical_path.iter().map(|&i| name(i)).collect(),
            critical_weight: view.critical_weight,
            total_work: view.total_work,
            planned,
            waves,
            last_durations,
        })
    }

    /// Each operation's latest run as far as a plan needs it, read without the completed rows: the latest runs
    /// that are neither completed nor skipped (through the `_by_status` index) and the names the ledger has (one
    /// narrow column, streamed into a flag per operation). What a dry run plans from, and what the dashboard's
    /// graph draws a large registry from.
    pub async fn outline(&self) -> Result<Outline, SequencerError> {
        let ledger = self.ledger();
        let mut outline = Outline::empty(&self.inner.registry);
        let (open, names) = tokio::join!(
            ledger.open_latest_runs(),
            ledger.each_recorded_name(|n| outline.record(n))
        );
        names?;
        Ok(outline.with_open(open?))
    }

    /// The dependency graph with each operation's status: `text`, `dot` (Graphviz) or `mermaid`.
    pub async fn graph(&self, format: GraphFormat) -> Result<String, SequencerError> {
        let (statuses, durations) = self.graph_inputs().await?;
        Ok(render(&self.inner.registry, &statuses, &durations, format)?)
    }

    async fn graph_inputs(
        &self,
    ) -> Result<(HashMap<String, Status>, HashMap<String, u64>), SequencerError> {
        // Two columns of each operation's latest run, not whole rows with their ETAs and jobs.
        let outlines = self.ledger().latest_outlines().await?;
        let durations = outlines
            .iter()
            .filter_map(|(n, (_, ms))| Some((n.clone(), u64::try_from((*ms)?).ok()?.max(1))))
            .collect();
        let statuses = outlines.into_iter().map(|(n, (s, _))| (n, s)).collect();
        Ok((statuses, durations))
    }

    /// Every operation of the registry with its latest run, in plan order, then orphaned ledger rows.
    ///
    /// The entries are made first, each as if its operation never ran, and the ledger's rows are streamed into
    /// them one at a time: the ledger is held once, as the entries, never also as rows read whole or a map of
    /// them (`status` over 100,000 rows).
    pub async fn status(&self) -> Result<Vec<StatusEntry>, SequencerError> {
        let keys = &self.inner.env.keys;
        let ordered = self.inner.registry.ordered()?;
        let place: HashMap<&str, usize> = ordered
            .iter()
            .enumerate()
            .map(|(i, d)| (d.meta.name, i))
            .collect();
        let mut out: Vec<StatusEntry> = ordered
            .iter()
            .map(|d| StatusEntry::new(Some(d), None, keys, None))
            .collect();
        let mut orphans: Vec<LedgerRow> = Vec::new();
        // The running rows, for their ETAs (few: copies are cheap).
        let mut running: Vec<LedgerRow> = Vec::new();
        self.ledger()
            .each_row(|row| {
                if row.status == Status::Running {
                    running.push(row.clone());
                }
                match place.get(row.name.as_str()) {
                    Some(&i) => out[i].record(Some(ordered[i]), row, keys),
                    None => orphans.push(row),
                }
            })
            .await?;
        drop(place);
        let registered = out.len();
        orphans.sort_by(|a, b| (a.timestamp, &a.name).cmp(&(b.timestamp, &b.name)));
        out.reserve_exact(orphans.len());
        out.extend(
            orphans
                .into_iter()
                .map(|r| StatusEntry::new(None, Some(r), keys, None)),
        );
        let mut etas = etas(self.ledger(), running.iter()).await?;
        let mut jobs = self.ledger().open_jobs().await?;
        if etas.is_empty() && jobs.is_empty() {
            return Ok(out);
        }
        for (i, entry) in out.iter_mut().enumerate() {
            if let Some((ms, basis)) = etas.remove(&entry.name) {
                entry.eta_ms = Some(ms);
                entry.eta_basis = Some(basis);
            }
            // Only the registry's operations show their job.
            if i < registered {
                entry.job = jobs.remove(&entry.name).filter(|j| j.run == entry.run);
            }
        }
        Ok(out)
    }
}
