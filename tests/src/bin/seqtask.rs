//! The tasks suite's worker binary: `sequencer::cli` over [`sequencer_tests::task_ops`], its tables prefixed by
//! `SEQTEST_PREFIX`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "task_".into());
    sequencer::cli::run_with(sequencer_tests::task_ops::builder(&prefix))
}
