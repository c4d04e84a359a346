//! The ledger suites' application binary: `sequencer::cli` over [`sequencer_tests::ledger_ops`], configured from
//! the environment (`SEQTEST_PREFIX`, `SEQTEST_SLEEP_MS`, `SEQTEST_FAIL_D`, `SEQTEST_LEASE_MS`, `SEQUENCER_DATABASE_URL`).

use std::process::ExitCode;

use sequencer_tests::ledger_ops::{ops, Knobs};

fn main() -> ExitCode {
    let knobs = Knobs::from_env();
    let prefix = format!("{}seq_", knobs.prefix);
    let mut builder = sequencer::Sequencer::builder()
        .app(sequencer::app_info!())
        .registry(ops::registry())
        .table_prefix(prefix)
        .state(knobs)
        .deferred("abort", sequencer_tests::ledger_ops::abort);
    // `SEQTEST_LEASE_MS`: a short lease, for the tests of expired claims.
    if let Some(ms) = std::env::var("SEQTEST_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.lease(std::time::Duration::from_millis(ms));
    }
    sequencer::cli::run_with(builder)
}
