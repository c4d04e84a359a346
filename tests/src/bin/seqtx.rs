//! The transaction suite's application binary: `sequencer::cli` over [`sequencer_tests::tx_ops`], with its
//! tables prefixed by `SEQTEST_PREFIX`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "seqtx_".into());
    let builder = sequencer::Sequencer::builder()
        .registry(sequencer_tests::tx_ops::ops::registry())
        .table_prefix(format!("{prefix}seq_"));
    sequencer::cli::run_with(builder)
}
