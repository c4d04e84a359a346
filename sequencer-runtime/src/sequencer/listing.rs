//! `status` a page at a time ([`Sequencer::status_page`]): the registry's operations and the ledger's rows in
//! `(timestamp, name)` order after a cursor, filtered by status, tag and text in the ledger's statement, each
//! page bounded however large the ledger; and the ETA of a running operation (one function for `status`, the
//! pages and the metrics).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::SequencerError;
use crate::ledger::listing::{ProgressSample, RowsPage, NAMES_PER_STATEMENT};
use crate::ledger::runs::{LedgerRow, Status};
use crate::ledger::{now_ms, Ledger};
use crate::registry::OperationDef;
use crate::sequencer::status::StatusEntry;
use crate::sequencer::Sequencer;

/// How far back progress samples count for the recent rate.
pub const ETA_WINDOW_MS: i64 = 5 * 60 * 1000;

/// At most this many operations of one tag are looked at for one page (the page ends there, with a cursor).
const TAG_WINDOW: usize = 1_000;

/// At most this many statements look for operations the ledger has no row of, for one page, each over a stretch
/// of [`CHECKED_AT_ONCE`] operations of the registry.
const UNRECORDED_CHECKS: usize = 5;

/// See [`UNRECORDED_CHECKS`].
const CHECKED_AT_ONCE: usize = 1_000;

/// How an ETA was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EtaBasis {
    /// The rate of the progress samples of the last minutes ([`ETA_WINDOW_MS`]).
    RecentRate,
    /// How long an earlier run of the same operation took.
    EarlierRuns,
    /// The rate since the run started (no recent samples, no earlier run).
    SinceStart,
}

impl EtaBasis {
    /// A few words for it.
    pub fn describe(self) -> &'static str {
        match self {
            EtaBasis::RecentRate => "at the rate of the last minutes",
            EtaBasis::EarlierRuns => "from an earlier run's duration",
            EtaBasis::SinceStart => "at the average rate since it started",
        }
    }
}

/// The time left of a running operation, and how it was estimated: at the rate of its progress samples since
/// `now - ETA_WINDOW_MS` (at least two, a second apart), else from how long an earlier run took (`earlier_ms`),
/// else at its average rate since it started. None when it is not running, or nothing is known; none too when
/// the recent samples show no progress (a stalled run has no ETA).
pub fn estimate_eta(
    row: &LedgerRow,
    samples: &[ProgressSample],
    earlier_ms: Option<i64>,
    now: i64,
) -> Option<(i64, EtaBasis)> {
    if row.status != Status::Running {
        return None;
    }
    let progress = match (row.progress_done, row.progress_total) {
        (Some(done), Some(total)) if total > 0 && done <= total => Some((done, total)),
        _ => None,
    };
    let recent: Vec<&ProgressSample> = samples
        .iter()
        .filter(|s| s.at >= now - ETA_WINDOW_MS)
        .collect();
    if let (Some((done, total)), Some(first), Some(last)) =
        (progress, recent.first(), recent.last())
    {
        let span = last.at - first.at;
        if span >= 1_000 && first.total == last.total {
            let moved = last.done - first.done;
            if moved <= 0 {
                return None;
            }
            let left = (total - done).max(0) as i128;
            return Some((
                (left * span as i128 / moved as i128) as i64,
                EtaBasis::RecentRate,
            ));
        }
    }
    if let Some(earlier) = earlier_ms {
        if let Some((done, total)) = progress {
            let left = earlier as i128 * (total - done) as i128 / total as i128;
            return Some((left as i64, EtaBasis::EarlierRuns));
        }
        let elapsed = now - row.started_at?;
        return (elapsed < earlier).then_some((earlier - elapsed, EtaBasis::EarlierRuns));
    }
    let (done, total) = progress?;
    if done <= 0 {
        return None;
    }
    let elapsed = now - row.started_at?;
    Some((elapsed * (total - done) / done, EtaBasis::SinceStart))
}

/// The ETAs of the running rows among `rows`, by name: two statements, whatever their number.
pub(crate) async fn etas<'r>(
    ledger: &Ledger,
    rows: impl Iterator<Item = &'r LedgerRow>,
) -> Result<HashMap<String, (i64, EtaBasis)>, SequencerError> {
    let running: Vec<&LedgerRow> = rows.filter(|r| r.status == Status::Running).collect();
    if running.is_empty() {
        return Ok(HashMap::new());
    }
    let now = now_ms();
    let runs: Vec<(&str, i64)> = running.iter().map(|r| (r.name.as_str(), r.run)).collect();
    let samples = ledger.progress_samples(&runs, now - ETA_WINDOW_MS).await?;
    let earlier_runs: Vec<(&str, i64)> = runs.iter().copied().filter(|(_, run)| *run > 0).collect();
    let earlier = if earlier_runs.is_empty() {
        HashMap::new()
    } else {
        ledger.earlier_durations(&earlier_runs).await?
    };
    let mut out = HashMap::new();
    for r in running {
        let s = samples
            .get(&(r.name.clone(), r.run))
            .map_or(&[][..], Vec::as_slice);
        if let Some(eta) = estimate_eta(r, s, earlier.get(&r.name).copied(), now) {
            out.insert(r.name.clone(), eta);
        }
    }
    Ok(out)
}

/// Which operations a page of [`Sequencer::status_page`] lists.
#[derive(Debug, Clone, Default)]
pub struct StatusQuery {
    /// Only operations whose latest run is in this status (`pending` includes those the ledger has no row of).
    pub status: Option<Status>,
    /// Only operations with this tag.
    pub tag: Option<String>,
    /// Only these operations (ledger names; at most a thousand are looked at).
    pub names: Option<Vec<String>>,
    /// Only operations whose name, or last error, contains this text, case-insensitive (the errors of
    /// `encrypted` operations are not searched).
    pub text: Option<String>,
    /// Only operations after this cursor ([`StatusPage::next`] of the page before).
    pub after: Option<(i64, String)>,
    /// At most this many (1 to 1,000).
    pub limit: usize,
}

/// A page of operations: see [`Sequencer::status_page`].
#[derive(Debug, Clone)]
pub struct StatusPage {
    /// The operations, in `(timestamp, name)` order.
    pub entries: Vec<StatusEntry>,
    /// The cursor of the next page (`(timestamp version, ledger name)` of the last operation looked at), when
    /// there may be more; pass it as [`StatusQuery::after`].
    pub next: Option<(i64, String)>,
}

/// An operation's place in the list.
type Key<'a> = (i64, &'a str);

fn key_of(def: &OperationDef) -> Key<'static> {
    (def.meta.timestamp.version() as i64, def.meta.name)
}

impl Sequencer {
    /// A page of `status`: the operations of the registry and the ledger matching `query`, in `(timestamp,
    /// name)` order after its cursor. The filters run in the ledger's statements and each page does bounded work:
    /// one statement for the ledger's rows (through the `_listing` or `_by_status` index), a few for the
    /// registry's operations the ledger has no row of yet, two for the ETAs; a page may end early (with a
    /// cursor) where a tag has more than a thousand operations or many operations were checked without a match.
    pub async fn status_page(&self, query: &StatusQuery) -> Result<StatusPage, SequencerError> {
        let limit = query.limit.clamp(1, 1_000);
        let ledger = self.ledger();
        let ops = self.inner.registry.operations();
        let after: Option<Key<'_>> = query.after.as_ref().map(|(t, n)| (*t, n.as_str()));
        let text = query
            .text
            .as_deref()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty());
        let after_cursor = |k: &Key<'_>| after.is_none_or(|a| *k > a);
        // The last key this page may show: the end of a tag's window, of the ledger's page, of the checks.
        let mut until: Option<Key<'_>> = None;
        let mut more = false;
        let named: Option<HashSet<&str>> = query
            .names
            .as_ref()
            .map(|n| n.iter().take(TAG_WINDOW).map(String::as_str).collect());
        let wanted = |d: &OperationDef| {
            query
                .tag
                .as_deref()
                .is_none_or(|t| d.meta.tags.contains(&t))
                && named.as_ref().is_none_or(|n| n.contains(d.meta.name))
        };
        // With a tag, the ledger is asked about the tagged operations only (orphaned rows have no tags), a
        // window of them at a time; with names, about those names.
        let tagged: Option<Vec<&str>> = match (query.tag.as_deref(), &named) {
            (Some(_), _) => {
                let mut keys: Vec<Key<'static>> = ops
                    .iter()
                    .filter(|d| wanted(d))
                    .map(|d| key_of(d))
                    .filter(after_cursor)
                    .collect();
                keys.sort_unstable();
                if keys.len() > TAG_WINDOW {
                    until = Some(keys[TAG_WINDOW - 1]);
                    keys.truncate(TAG_WINDOW);
                    more = true;
                }
                Some(keys.into_iter().map(|(_, n)| n).collect())
            }
            (None, Some(named)) => Some(named.iter().copied().collect()),
            (None, None) => None,
        };
        let hidden: Vec<&str> = ops
            .iter()
            .filter(|d| d.meta.encrypted)
            .map(|d| d.meta.name)
            .collect();
        let mut rows: Vec<LedgerRow> = Vec::new();
        for names in tagged.as_deref().map_or(vec![None], |t| {
            t.chunks(NAMES_PER_STATEMENT).map(Some).collect()
        }) {
            let page = RowsPage {
                after,
                until,
                status: query.status,
                names,
                text: text.as_deref(),
                errors_hidden: &hidden,
                limit: limit + 1,
            };
            rows.extend(ledger.latest_rows_page(&page).await?);
        }
        rows.sort_by(|a, b| (a.timestamp, a.name.as_str()).cmp(&(b.timestamp, b.name.as_str())));
        if rows.len() > limit {
            rows.truncate(limit);
            more = true;
            if let Some(last) = rows.last().map(|r| (r.timestamp, r.name.as_str())) {
                until = Some(until.map_or(last, |u| u.min(last)));
            }
        }
        let rows_until = until.map(|(t, n)| (t, n.to_owned()));
        // The registry's operations the ledger has no row of: pending, listed in their place.
        let mut unrecorded: Vec<(Key<'static>, &'static OperationDef)> = Vec::new();
        if matches!(query.status, None | Some(Status::Pending)) {
            let until_key = rows_until.as_ref().map(|(t, n)| (*t, n.as_str()));
            let mut candidates: Vec<(Key<'static>, &'static OperationDef)> = ops
                .iter()
                .filter(|d| wanted(d))
                .filter(|d| {
                    text.as_deref()
                        .is_none_or(|t| d.meta.name.to_lowercase().contains(t))
                })
                .map(|d| (key_of(d), *d))
                .filter(|(k, _)| after_cursor(k) && until_key.is_none_or(|u| *k <= u))
                .collect();
            candidates.sort_unstable_by_key(|(k, _)| *k);
            let dense = query.tag.is_none() && named.is_none() && text.is_none();
            for (checked, chunk) in candidates.chunks(CHECKED_AT_ONCE).enumerate() {
                if checked == UNRECORDED_CHECKS || unrecorded.len() > limit {
                    let last_checked = candidates[checked * CHECKED_AT_ONCE - 1].0;
                    until = Some(until.map_or(last_checked, |u| u.min(last_checked)));
                    more = true;
                    break;
                }
                let recorded = match (chunk.first(), chunk.last()) {
                    // Every operation of the registry is a candidate: one range of the index.
                    (Some((from, _)), Some((to, _))) if dense => {
                        ledger.names_between(*from, *to).await?
                    }
                    // A few, spread out: by name.
                    _ => {
                        let names: Vec<&str> = chunk.iter().map(|(_, d)| d.meta.name).collect();
                        ledger.recorded_among(&names).await?
                    }
                };
                unrecorded.extend(
                    chunk
                        .iter()
                        .filter(|(_, d)| !recorded.contains(d.meta.name)),
                );
            }
        }
        // Merged in order, up to the page's end.
        let in_page = |k: Key<'_>| until.is_none_or(|u| k <= u);
        let recorded_names: HashSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let mut merged: Vec<(Key<'_>, Option<usize>, Option<&'static OperationDef>)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.timestamp, r.name.as_str()), Some(i), None))
            .filter(|(k, _, _)| in_page(*k))
            .collect();
        merged.extend(
            unrecorded
                .iter()
                .filter(|(k, d)| in_page(*k) && !recorded_names.contains(d.meta.name))
                .map(|(k, d)| (*k, None, Some(*d))),
        );
        merged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if merged.len() > limit {
            merged.truncate(limit);
            more = true;
        }
        let next = if more {
            merged
                .last()
                .map(|(k, _, _)| *k)
                .or(until)
                .map(|(t, n)| (t, n.to_owned()))
        } else {
            None
        };
        // The definitions of the rows shown, in one pass over the registry.
        let wanted: HashSet<&str> = merged
            .iter()
            .filter(|(_, i, _)| i.is_some())
            .map(|(k, _, _)| k.1)
            .collect();
        let defs: HashMap<&str, &'static OperationDef> = ops
            .iter()
            .filter(|d| wanted.contains(d.meta.name))
            .map(|d| (d.meta.name, *d))
            .collect();
        let shown_rows: Vec<&LedgerRow> = merged
            .iter()
            .filter_map(|(_, i, _)| i.map(|i| &rows[i]))
            .collect();
        let mut etas = etas(ledger, shown_rows.iter().copied()).await?;
        let keys = &self.inner.env.keys;
        let entries = merged
            .iter()
            .map(|(k, i, def)| match (i, def) {
                (Some(i), _) => {
                    let row = rows[*i].clone();
                    let eta = etas.remove(&row.name);
                    StatusEntry::new(defs.get(k.1).copied(), Some(row), keys, eta)
                }
                (None, def) => StatusEntry::new(*def, None, keys, None),
            })
            .collect();
        Ok(StatusPage { entries, next })
    }
}

impl Sequencer {
    /// How long a claim of this sequencer holds without a heartbeat (the builder's
    /// [`lease`](crate::SequencerBuilder::lease)); heartbeats renew it every third of it.
    pub fn lease(&self) -> std::time::Duration {
        self.inner.env.lease
    }
}

#[cfg(test)]
mod tests {
    use super::{estimate_eta, EtaBasis, ProgressSample};
    use crate::ledger::runs::{LedgerRow, Status};

    const NOW: i64 = 1_800_000_000_000;

    /// A run started an hour ago, 100 of 1,000 done.
    fn running() -> LedgerRow {
        LedgerRow {
            name: "op".into(),
            run: 1,
            timestamp: 20240101000000,
            batch: Some(1),
            status: Status::Running,
            attempts: 1,
            started_at: Some(NOW - 3_600_000),
            finished_at: None,
            duration_ms: None,
            lease_until: Some(NOW + 30_000),
            host: None,
            pid: None,
            actor: None,
            checksum: None,
            skip_reason: None,
            last_error: None,
            due_at: None,
            progress_done: Some(100),
            progress_total: Some(1000),
            cancel_requested: false,
            pause_requested: 0,
            throttled_since: None,
            throttled_ms: None,
        }
    }

    fn sample(ago_s: i64, done: i64) -> ProgressSample {
        ProgressSample {
            at: NOW - ago_s * 1000,
            done,
            total: 1000,
        }
    }

    #[test]
    fn the_eta_follows_the_recent_rate_not_the_average_since_start() {
        // 60 items in the last two minutes (0.5 a second): 900 left is 30 minutes, where the hour's average
        // (100 an hour) would say 9 hours. A sample older than the window does not count.
        let samples = [sample(3000, 0), sample(120, 40), sample(0, 100)];
        assert_eq!(
            estimate_eta(&running(), &samples, Some(1), NOW),
            Some((1_800_000, EtaBasis::RecentRate))
        );
        // No progress over the recent samples: stalled, no ETA.
        assert_eq!(
            estimate_eta(&running(), &[sample(60, 100), sample(0, 100)], None, NOW),
            None
        );
    }

    #[test]
    fn without_recent_samples_an_earlier_run_then_the_average_since_start() {
        // An earlier run took 10 minutes: 90% left is 9 minutes.
        assert_eq!(
            estimate_eta(&running(), &[sample(0, 100)], Some(600_000), NOW),
            Some((540_000, EtaBasis::EarlierRuns))
        );
        // Nothing else known: 100 in an hour, 900 left.
        assert_eq!(
            estimate_eta(&running(), &[], None, NOW),
            Some((32_400_000, EtaBasis::SinceStart))
        );
        // Without progress, the earlier run's duration less the time so far.
        let mut blind = running();
        blind.progress_done = None;
        blind.progress_total = None;
        assert_eq!(
            estimate_eta(&blind, &[], Some(4_000_000), NOW),
            Some((400_000, EtaBasis::EarlierRuns))
        );
        assert_eq!(estimate_eta(&blind, &[], Some(1_000), NOW), None);
        let mut done = running();
        done.status = Status::Completed;
        assert_eq!(estimate_eta(&done, &[], Some(600_000), NOW), None);
    }
}
