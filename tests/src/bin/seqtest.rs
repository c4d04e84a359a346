//! The ledger suites' application binary: `sequencer::cli` over [`sequencer_tests::ledger_ops`], configured from
//! the environment (`SEQTEST_PREFIX`, `SEQTEST_SLEEP_MS`, `SEQTEST_FAIL_D`, `SEQUENCER_DATABASE_URL`).

use std::process::ExitCode;

use sequencer_tests::ledger_ops::{ops, Knobs};

fn main() -> ExitCode {
    let knobs = Knobs::from_env();
    let prefix = format!("{}seq_", knobs.prefix);
    sequencer::cli::run_with(
        sequencer::Sequencer::builder()
            .registry(ops::registry())
            .table_prefix(prefix)
            .state(knobs),
    )
}
