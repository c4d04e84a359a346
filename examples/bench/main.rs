//! The performance table: every figure beside a baseline measured in the same run, on the same machine.
//!
//! ```sh
//! cargo run --release --example bench -- --quick     # under two minutes: smaller sizes, fewer lines
//! cargo run --release --example bench                 # the full run, the table in the README
//! cargo run --release --example bench -- --only 1,3   # some rows only (1 ledger … 6 memory)
//! ```
//!
//! `bench --profile-ledger run N` (or `floor N`) runs row 1's work alone, once, for `N` operations (2,000 unless
//! given) on a SQLite file on tmpfs, for an instruction count of either side:
//! `valgrind --tool=callgrind bench --profile-ledger run 2000`. Two counts at `N` and `2N` apart, divided by `N`,
//! are the instructions per operation, setup left out.
//!
//! 1. Ledger throughput: no-op operations run one at a time, against a raw sqlx floor doing the same two writes
//!    per operation (claim the row, mark it completed) on the same kind of database.
//! 2. DAG makespan: seeded random DAGs run by the `graph` orchestrator, against the critical path, against
//!    `max(CP, W/p)` when bounded, and against level-by-level "waves" (an
//!    [`Orchestrator`](sequencer::Orchestrator) written here).
//! 3. Scheduling overhead: fan-out and chain of no-op operations on a ledger in memory (SQLite on tmpfs),
//!    against a plain tokio ready-queue doing the same two writes per operation, and without any writes.
//! 4. Queue throughput and wake-up latency of `work` processes' loops on PostgreSQL, 1, 4 and 8 workers, against a
//!    floor of plain sqlx on an equivalent jobs table (a `SKIP LOCKED` claim of 8 and one batched acknowledgement
//!    per loop, no sequencer code); and the same with 4 workers on MariaDB.
//! 5. Macro cost: incremental debug build of the generated 1,000 / 2,000 / 4,000-operation crate
//!    (`tests/scale`), minus the same crate with no operations.
//! 6. Peak memory (VmHWM) of a process holding a 100,000-operation registry, its plan, and `status`.
//!
//! Rows 1, 2, 3 and 4 measure each figure and its baseline three times, taking turns, and judge "met" on the
//! medians (printed with their spread), so that a load that comes and goes weighs on both and one slow
//! repetition cannot flip a verdict. Row 2 runs each graph twice a repetition: the second run schedules from the
//! durations the first recorded.
//!
//! `--quick` keeps within about two minutes on a loaded machine: row 1 runs 300 operations on PostgreSQL, row 2
//! the heavy-tailed 100-operation graph with the waves and the bare floor (which compare but do not judge)
//! measured once, row 4 the goal's line (4 workers, PostgreSQL) on 1,000 jobs, row 5 the 500-operation crate
//! once. Each row prints how long it took.
//!
//! PostgreSQL rows use `SEQUENCER_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! are skipped, saying so, when it is unreachable; row 4's MariaDB line uses `SEQUENCER_BENCH_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`) the same way. Tables are prefixed `bench<pid>_` (two benches sharing a server
//! leave each other's tables alone) and dropped afterwards.

mod dag;
mod ledger;
mod macro_cost;
mod memory;
mod ops;
mod opts;
#[path = "../support/peak.rs"]
mod peak;
mod queue;
mod scheduling;
mod setup;
mod table;

use std::process::ExitCode;
use std::time::Instant;

use crate::opts::parse_args;
use crate::setup::{memory_dir, scratch_dir, AnyError};
use crate::table::Table;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.get(1).map(String::as_str) == Some("--child-memory") {
        let stage = args.get(2).cloned().unwrap_or_default();
        let n = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(100_000);
        return match runtime.block_on(memory::child_memory(&stage, n)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.get(1).map(String::as_str) == Some("--profile-ledger") {
        let which = args.get(2).cloned().unwrap_or_default();
        let n = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(2_000);
        let dir = memory_dir();
        let url = setup::sqlite_url(&dir, "profile");
        let r = runtime.block_on(async {
            match which.as_str() {
                "run" => ledger::ledger_run(&url, "p_", n).await,
                "floor" => ledger::ledger_floor(&url, "p_", n).await,
                other => {
                    Err(format!("--profile-ledger: `{other}` is neither run nor floor").into())
                }
            }
        });
        let _ = std::fs::remove_dir_all(memory_dir());
        return match r {
            Ok(rate) => {
                println!("{which}: {rate:.0} ops/s");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut table = Table(Vec::new());
    let result: Result<(), AnyError> = runtime.block_on(async {
        if opts.wants(1) {
            eprintln!("1. ledger throughput");
            let t = Instant::now();
            ledger::row_ledger(&opts, &mut table).await?;
            eprintln!("  (row 1: {:.0} s)", t.elapsed().as_secs_f64());
        }
        if opts.wants(2) {
            eprintln!("2. DAG makespan");
            let t = Instant::now();
            dag::row_dag(&opts, &mut table).await?;
            eprintln!("  (row 2: {:.0} s)", t.elapsed().as_secs_f64());
        }
        if opts.wants(3) {
            eprintln!("3. scheduling overhead");
            let t = Instant::now();
            scheduling::row_scheduling(&opts, &mut table).await?;
            eprintln!("  (row 3: {:.0} s)", t.elapsed().as_secs_f64());
        }
        if opts.wants(4) {
            eprintln!("4. queue throughput");
            let t = Instant::now();
            queue::row_queue(&opts, &mut table).await?;
            eprintln!("  (row 4: {:.0} s)", t.elapsed().as_secs_f64());
        }
        Ok(())
    });
    let result = result.and_then(|()| {
        if opts.wants(5) {
            eprintln!("5. macro cost");
            let t = Instant::now();
            macro_cost::row_macro(&opts, &mut table)?;
            eprintln!("  (row 5: {:.0} s)", t.elapsed().as_secs_f64());
        }
        if opts.wants(6) {
            eprintln!("6. peak memory");
            let t = Instant::now();
            memory::row_memory(&mut table)?;
            eprintln!("  (row 6: {:.0} s)", t.elapsed().as_secs_f64());
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(scratch_dir());
    let _ = std::fs::remove_dir_all(memory_dir());
    println!();
    table.print();
    println!(
        "\n{} cores, {} — {:.0} s{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH,
        started.elapsed().as_secs_f64(),
        if opts.quick { " (--quick)" } else { "" }
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            ExitCode::FAILURE
        }
    }
}
