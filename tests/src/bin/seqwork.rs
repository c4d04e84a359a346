//! The worker suites' application binary: `sequencer::cli` over [`sequencer_tests::work_ops`], its tables
//! prefixed by `SEQTEST_PREFIX`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "work_".into());
    sequencer::cli::run_with(sequencer_tests::work_ops::builder(&prefix))
}
