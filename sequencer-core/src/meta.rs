//! Operation metadata: everything `#[operation(...)]` says about an operation, as `const` data.
//!
//! The macro turns each attribute into one [`OperationMeta`] in the generated registry; the runtime reads it.
//! Every field has a meaning even where the runtime behaviour lands later, so no attribute is ever lost.

use std::time::Duration;

use crate::timestamp::Timestamp;

/// What `#[operation(...)]` declared about one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperationMeta {
    /// The ledger name, unique in a registry: `name = "..."`, or `<timestamp>_<fn name>`.
    pub name: &'static str,
    /// The order key.
    pub timestamp: Timestamp,
    /// The Rust function that runs the operation (`handle` in the directory form).
    pub fn_name: &'static str,
    /// `module_path!()` where the operation was declared.
    pub module_path: &'static str,
    /// Where the operation was declared.
    pub source: SourceLocation,
    /// A checksum of the operation's source tokens; the ledger keeps the one that ran, so edits can be flagged.
    pub checksum: u64,
    /// `depends_on = [...]`: what must have run first, beyond timestamp order.
    pub depends_on: &'static [Dependency],
    /// `rollback = f`: the operation can be undone.
    pub rollbackable: bool,
    /// `allowed_to_fail`: a failure is recorded but does not fail the run.
    pub allowed_to_fail: bool,
    /// `retries`, `backoff`, `retry_until`, `max_exceptions`.
    pub retry: RetryPolicy,
    /// `timeout = "2m"`.
    pub timeout: Option<Duration>,
    /// `fail_on_timeout`: a timeout fails the operation instead of being retried.
    pub fail_on_timeout: bool,
    /// `estimate = "5m"`: how long a run is expected to take, until the ledger has recorded one. The
    /// dependency-graph orchestrator starts the ready operation with the longest estimated remaining work first.
    pub estimate: Option<Duration>,
    /// `execute_at = ...` or `delay = ...`.
    pub schedule: Option<Schedule>,
    /// `asynchronous`: dispatched to the durable queue and run by `work` processes.
    pub asynchronous: bool,
    /// `queue = "name"`: the queue of an asynchronous operation.
    pub queue: Option<&'static str>,
    /// `unique = "key"` with optional `unique_for`.
    pub unique: Option<Unique>,
    /// `middleware = [...]`, in the order declared.
    pub middleware: &'static [Middleware],
    /// `tags = [...]`.
    pub tags: &'static [&'static str],
    /// Which lifecycle hooks (`before`, `after`, `failed`) are set.
    pub hooks: Hooks,
    /// `transaction`: the operation's writes commit together with its ledger row.
    pub transaction: bool,
    /// `encrypted`: queued payload and recorded context are encrypted at rest.
    pub encrypted: bool,
    /// `environments = [...]`: the operation runs only in these environments (empty: in all).
    pub environments: &'static [&'static str],
    /// `should_run = f`: a condition decides at run time whether the operation runs.
    pub conditional: bool,
    /// `idempotent`: safe to run again after an interruption.
    pub idempotent: bool,
}

impl OperationMeta {
    /// Metadata with every key at its default: for operations built at run time rather than by the macro
    /// (generated registries, benchmarks). Set the fields that differ with struct update syntax.
    ///
    /// ```
    /// use sequencer_core::{OperationMeta, Timestamp};
    ///
    /// let ts = Timestamp::from_version(20240115120000).unwrap();
    /// let meta = OperationMeta { idempotent: true, ..OperationMeta::new("2024_01_15_120000_backfill", ts) };
    /// assert_eq!(meta.retry.tries, 1);
    /// assert!(meta.depends_on.is_empty());
    /// ```
    pub const fn new(name: &'static str, timestamp: Timestamp) -> OperationMeta {
        OperationMeta {
            name,
            timestamp,
            fn_name: "",
            module_path: "",
            source: SourceLocation { file: "", line: 0 },
            checksum: 0,
            depends_on: &[],
            rollbackable: false,
            allowed_to_fail: false,
            retry: RetryPolicy::ONCE,
            timeout: None,
            fail_on_timeout: false,
            estimate: None,
            schedule: None,
            asynchronous: false,
            queue: None,
            unique: None,
            middleware: &[],
            tags: &[],
            hooks: Hooks {
                before: false,
                after: false,
                failed: false,
            },
            transaction: false,
            encrypted: false,
            environments: &[],
            conditional: false,
            idempotent: false,
        }
    }

    /// Whether a run found `interrupted` (its process died mid-run) may be claimed and run again without a
    /// person: the operation is `idempotent`, or its `retries` leave it more than one try. Otherwise the run waits
    /// for `retry` or `mark`.
    ///
    /// ```
    /// use sequencer_core::{OperationMeta, Timestamp};
    ///
    /// let meta = OperationMeta::new("2024_01_15_120000_backfill", Timestamp::from_version(20240115120000).unwrap());
    /// assert!(!meta.runs_again_after_interruption());
    /// assert!(OperationMeta { idempotent: true, ..meta }.runs_again_after_interruption());
    /// ```
    pub const fn runs_again_after_interruption(&self) -> bool {
        self.idempotent || self.retry.tries > 1
    }
}

/// Where an operation was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLocation {
    /// The source file, as `file!()` gives it.
    pub file: &'static str,
    /// The 1-based line of the function.
    pub line: u32,
}

/// One entry of `depends_on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// Another operation, by ledger name.
    Operation(&'static str),
    /// A schema migration, by version (`migration(20240115120000)`).
    Migration(i64),
}

/// How often and how patiently an operation is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, at least 1 (`retries = 5` means five tries).
    pub tries: u32,
    /// Wait between tries.
    pub backoff: Backoff,
    /// Stop retrying once this long has passed since the first try.
    pub retry_until: Option<Duration>,
    /// Fail once this many tries have ended in an error (timeouts included), even with tries left.
    pub max_exceptions: Option<u32>,
}

impl RetryPolicy {
    /// One try, no backoff: the policy of an operation without retry keys.
    pub const ONCE: RetryPolicy = RetryPolicy {
        tries: 1,
        backoff: Backoff::None,
        retry_until: None,
        max_exceptions: None,
    };

    /// The wait before try number `next_try` (2 for the first retry). A list repeats its last entry.
    pub fn delay_before(&self, next_try: u32) -> Duration {
        match self.backoff {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(d) => d,
            Backoff::List(list) => {
                let i = next_try.saturating_sub(2) as usize;
                list.get(i)
                    .or(list.last())
                    .copied()
                    .unwrap_or(Duration::ZERO)
            }
        }
    }
}

/// The wait between tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// Retry at once.
    None,
    /// `backoff = 30` or `backoff = "30s"`: the same wait before every retry.
    Fixed(Duration),
    /// `backoff = [1, 5, 10]`: the n-th retry waits the n-th entry; later retries wait the last.
    List(&'static [Duration]),
}

/// When a scheduled operation is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// `execute_at = "02:00"`: the next time the UTC clock shows this time of day.
    TimeOfDay {
        /// Hour, 0–23.
        hour: u8,
        /// Minute, 0–59.
        minute: u8,
        /// Second, 0–59.
        second: u8,
    },
    /// `execute_at = "02:00 Europe/Berlin"`: the next time the wall clock of this IANA time zone shows this time
    /// of day. A time the clocks skip (spring forward) is due when the gap ends; a time they show twice (fall
    /// back) at its first occurrence (see [`next_time_of_day_in`](crate::next_time_of_day_in)).
    TimeOfDayIn {
        /// Hour, 0–23.
        hour: u8,
        /// Minute, 0–59.
        minute: u8,
        /// Second, 0–59.
        second: u8,
        /// The IANA time zone, e.g. `Europe/Berlin`.
        zone: &'static str,
    },
    /// `execute_at = "2026-12-01T02:00:00Z"`: a fixed instant, as Unix seconds.
    At(i64),
    /// `execute_at = fn_name`: a function computes the due time at run time.
    Computed,
    /// `delay = "10m"`: this long after the run that schedules it.
    Delay(Duration),
}

/// `unique = "key"`, `unique_for = "1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unique {
    /// At most one run holds this key at a time.
    pub key: &'static str,
    /// How long the key is held at most; it is released when the run ends (one hour when unset).
    pub hold_for: Option<Duration>,
}

/// One entry of `middleware = [...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Middleware {
    /// `rate_limited("name")` or `rate_limited("name", 60/min)`.
    RateLimited {
        /// The limiter's name; its limit is defined on the builder unless given here.
        limiter: &'static str,
        /// `(count, per)`: at most `count` starts per `per`.
        limit: Option<(u32, Duration)>,
    },
    /// `without_overlapping("key").release_after("60s").expire_after("180s")`.
    WithoutOverlapping {
        /// The lock key.
        key: &'static str,
        /// Wait this long before trying again when the key is held.
        release_after: Option<Duration>,
        /// The lock expires after this long even if its holder never releases it.
        expire_after: Option<Duration>,
    },
    /// `throttle_exceptions(10, "5m").backoff("5s").by("import-users")`.
    ThrottleExceptions {
        /// Errors allowed within `window` before the operation is throttled.
        max: u32,
        /// The window the errors are counted in.
        window: Duration,
        /// Wait between tries while throttled.
        backoff: Option<Duration>,
        /// The throttle key shared by operations (default: the operation's name).
        by: Option<&'static str>,
    },
    /// `audit`: the `Layer` registered on the builder under this name (`.named_layer("audit", Audit)`), run
    /// around this operation's attempts only; an unknown name is an error at start-up.
    Named(&'static str),
}

/// Which lifecycle hooks are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `before = f`.
    pub before: bool,
    /// `after = f`.
    pub after: bool,
    /// `failed = f`.
    pub failed: bool,
}

/// 64-bit FNV-1a: the checksum of an operation's source tokens. Stable across compilers and platforms.
pub const fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_list_repeats_its_last_entry() {
        const LIST: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(5)];
        let p = RetryPolicy {
            tries: 5,
            backoff: Backoff::List(LIST),
            ..RetryPolicy::ONCE
        };
        assert_eq!(p.delay_before(2), Duration::from_secs(1));
        assert_eq!(p.delay_before(3), Duration::from_secs(5));
        assert_eq!(p.delay_before(4), Duration::from_secs(5));
        assert_eq!(RetryPolicy::ONCE.delay_before(2), Duration::ZERO);
    }

    #[test]
    fn checksum_differs_on_edit() {
        assert_ne!(checksum(b"fn a() {}"), checksum(b"fn a() { }x"));
        assert_eq!(checksum(b"abc"), checksum(b"abc"));
    }
}
