//! Testing your operations: run a registry against a throw-away SQLite ledger in one call, and a fake
//! dispatcher that records what your code would have run.
//!
//! ```
//! #[sequencer::operations]
//! mod ops {
//!     use sequencer::prelude::*;
//!
//!     #[operation(timestamp = "2024_01_15_120000")]
//!     async fn create_users(_ctx: &Ctx) -> Result<()> {
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let run = sequencer::testing::run(ops::registry()).await.unwrap();
//! assert!(run.report.succeeded());
//! assert_eq!(run.status_of("create_users"), Some(sequencer::ledger::Status::Completed));
//! # }
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::ledger::Status;
use crate::{
    BoxFuture, Operation, Registry, RunReport, Sequencer, SequencerBuilder, SequencerError,
    StatusEntry,
};

/// A sequencer on a SQLite ledger in a temporary directory, removed when this is dropped.
pub struct TestLedger {
    /// The sequencer.
    pub sequencer: Sequencer,
    dir: PathBuf,
}

impl Drop for TestLedger {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds `builder` (registry, state, guards …) on a throw-away SQLite ledger.
pub async fn ledger(builder: SequencerBuilder) -> Result<TestLedger, SequencerError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sequencer-testing-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| SequencerError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let sequencer = builder.database(url).build().await?;
    Ok(TestLedger { sequencer, dir })
}

/// What [`run`] did.
pub struct TestRun {
    /// The run's report.
    pub report: RunReport,
    /// Every operation's status afterwards.
    pub status: Vec<StatusEntry>,
    /// The ledger, to run more against.
    pub ledger: TestLedger,
}

impl TestRun {
    /// The status of an operation, by ledger name or function name.
    pub fn status_of(&self, name: &str) -> Option<Status> {
        self.status
            .iter()
            .find(|e| e.name == name || e.name.get(18..) == Some(name))
            .map(|e| e.status)
    }
}

/// Runs every operation of `registry` once, on a throw-away SQLite ledger, with the sequential orchestrator.
pub async fn run(registry: Registry) -> Result<TestRun, SequencerError> {
    let ledger = ledger(Sequencer::builder().registry(registry)).await?;
    let report = ledger.sequencer.execute_all().await?;
    let status = ledger.sequencer.status().await?;
    Ok(TestRun {
        report,
        status,
        ledger,
    })
}

/// Something that runs operations by name: the [`Sequencer`], or a [`FakeDispatcher`] in tests. Write your
/// application code against it to test what it dispatches without running it.
pub trait Dispatcher: Send + Sync {
    /// Runs (or records) one operation.
    fn dispatch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SequencerError>>;
}

impl Dispatcher for Sequencer {
    fn dispatch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SequencerError>> {
        Box::pin(async move { self.execute(name).await.map(drop) })
    }
}

/// Records dispatches instead of running them, with assertions.
#[derive(Default)]
pub struct FakeDispatcher {
    dispatched: Mutex<Vec<String>>,
}

impl Dispatcher for FakeDispatcher {
    fn dispatch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), SequencerError>> {
        Box::pin(async move {
            self.lock().push(name.to_owned());
            Ok(())
        })
    }
}

impl FakeDispatcher {
    /// A dispatcher that has recorded nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.dispatched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything dispatched, in order.
    pub fn dispatched(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// How often `name` (ledger or function name) was dispatched.
    pub fn times(&self, name: &str) -> usize {
        self.lock()
            .iter()
            .filter(|d| {
                *d == name || d.get(18..) == Some(name) || name.get(18..) == Some(d.as_str())
            })
            .count()
    }

    /// Panics unless the operation was dispatched at least once.
    #[track_caller]
    pub fn assert_dispatched<T: Operation>(&self) {
        self.assert_dispatched_name(T::NAME);
    }

    /// Panics unless the operation (by name) was dispatched at least once.
    #[track_caller]
    pub fn assert_dispatched_name(&self, name: &str) {
        assert!(
            self.times(name) > 0,
            "expected `{name}` to be dispatched; dispatched: {:?}",
            self.dispatched()
        );
    }

    /// Panics if the operation was dispatched.
    #[track_caller]
    pub fn assert_not_dispatched<T: Operation>(&self) {
        let n = self.times(T::NAME);
        assert!(
            n == 0,
            "expected `{}` not to be dispatched, but it was, {n} time(s)",
            T::NAME
        );
    }

    /// Panics unless the operation was dispatched exactly `times` times.
    #[track_caller]
    pub fn assert_dispatched_times<T: Operation>(&self, times: usize) {
        let n = self.times(T::NAME);
        assert!(
            n == times,
            "expected `{}` to be dispatched {times} time(s), but it was {n} time(s)",
            T::NAME
        );
    }

    /// Panics if anything was dispatched.
    #[track_caller]
    pub fn assert_nothing_dispatched(&self) {
        let all = self.dispatched();
        assert!(
            all.is_empty(),
            "expected nothing to be dispatched; dispatched: {all:?}"
        );
    }
}
