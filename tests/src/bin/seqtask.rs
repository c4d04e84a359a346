//! The tasks suite's worker binary: `sequencer::cli` over [`sequencer_tests::task_ops`], its tables prefixed by
//! `SEQTEST_PREFIX`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "task_".into());
    let builder = sequencer::Sequencer::builder()
        .registry(sequencer_tests::task_ops::ops::registry())
        .state(sequencer_tests::task_ops::Prefix(prefix.clone()))
        .table_prefix(format!("{prefix}seq_"));
    sequencer::cli::run_with(builder)
}
