//! Each operation's latest run as far as a plan needs it, read without the completed rows: see
//! [`Sequencer::outline`](crate::Sequencer::outline).

use std::collections::HashMap;

use crate::ledger::runs::{LedgerRow, Status};
use crate::registry::Registry;

/// The ledger as a plan or a drawing of what is left needs it: which operations of the registry were recorded,
/// and the latest runs that still need something (neither completed nor skipped), with the columns the plan
/// reads. At 100,000 operations it holds a flag per operation and the few open rows, never a row per operation.
#[derive(Debug, Clone)]
pub struct Outline {
    /// Whether the ledger has a run of the operation, by name.
    recorded: HashMap<&'static str, bool>,
    /// The open latest runs by name; `None` for one this version cannot read.
    open: HashMap<String, Option<LedgerRow>>,
}

/// An operation's latest run in an [`Outline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestRun<'a> {
    /// The ledger has no run of it: it is pending.
    Never,
    /// Its latest run is completed or skipped.
    Done,
    /// Its latest run still needs something (pending, scheduled, running, failed, rolled back, interrupted…),
    /// with the columns the plan reads (name, run, timestamp, status, start, duration, host, pid, due time).
    Open(&'a LedgerRow),
    /// Its latest run has a status this version cannot read (written by a newer one): treated as pending, as
    /// [`Ledger::rows`](crate::ledger::Ledger::rows) leaves it out.
    Unreadable,
}

impl Outline {
    /// An outline of `registry`'s operations from the names the ledger has (each name once or more; others are
    /// ignored) and its open latest runs.
    pub(crate) fn new<'n>(
        registry: &Registry,
        recorded: impl IntoIterator<Item = &'n str>,
        open: HashMap<String, Option<LedgerRow>>,
    ) -> Outline {
        Outline::of(
            registry.operations().iter().map(|d| d.meta.name),
            recorded,
            open,
        )
    }

    /// [`Outline::new`] over the operations named `names`.
    pub(crate) fn of<'n>(
        names: impl IntoIterator<Item = &'static str>,
        recorded: impl IntoIterator<Item = &'n str>,
        open: HashMap<String, Option<LedgerRow>>,
    ) -> Outline {
        let mut flags: HashMap<&'static str, bool> =
            names.into_iter().map(|n| (n, false)).collect();
        for name in recorded {
            if let Some(f) = flags.get_mut(name) {
                *f = true;
            }
        }
        Outline {
            recorded: flags,
            open,
        }
    }

    /// An outline being filled, name by name: see [`Outline::record`].
    pub(crate) fn empty(registry: &Registry) -> Outline {
        Outline::new(registry, [], HashMap::new())
    }

    /// Notes that the ledger has a run of `name` (ignored unless the registry has it).
    pub(crate) fn record(&mut self, name: &str) {
        if let Some(f) = self.recorded.get_mut(name) {
            *f = true;
        }
    }

    /// Sets the open latest runs.
    pub(crate) fn with_open(mut self, open: HashMap<String, Option<LedgerRow>>) -> Outline {
        self.open = open;
        self
    }

    /// The latest run of the operation named `name`. A name the registry does not have is [`LatestRun::Never`]
    /// unless it has an open run.
    pub fn latest(&self, name: &str) -> LatestRun<'_> {
        match self.open.get(name) {
            Some(Some(row)) => LatestRun::Open(row),
            Some(None) => LatestRun::Unreadable,
            None if self.recorded.get(name).copied().unwrap_or(false) => LatestRun::Done,
            None => LatestRun::Never,
        }
    }

    /// The status the operation's latest run shows: pending when it never ran or cannot be read, `completed`
    /// for one completed or skipped (an outline does not tell them apart).
    pub fn status(&self, name: &str) -> Status {
        match self.latest(name) {
            LatestRun::Never | LatestRun::Unreadable => Status::Pending,
            LatestRun::Done => Status::Completed,
            LatestRun::Open(r) => r.status,
        }
    }

    /// The open latest runs that can be read.
    pub fn open_runs(&self) -> impl Iterator<Item = &LedgerRow> {
        self.open.values().flatten()
    }

    /// How many of the registry's operations the ledger has a run of.
    pub fn recorded(&self) -> usize {
        self.recorded.values().filter(|&&r| r).count()
    }

    /// How many of the registry's operations are completed or skipped (recorded, and not open).
    pub fn done(&self) -> usize {
        self.recorded
            .iter()
            .filter(|(n, &r)| r && !self.open.contains_key(**n))
            .count()
    }
}
