//! The transaction suite's application binary: `sequencer::cli` over [`sequencer_tests::tx_ops`], with its
//! tables prefixed by `SEQTEST_PREFIX`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "seqtx_".into());
    let mut builder = sequencer::Sequencer::builder()
        .registry(sequencer_tests::tx_ops::ops::registry())
        .table_prefix(format!("{prefix}seq_"));
    // `SEQTEST_LEASE_MS`: a short lease, for the tests of claims held through a long transaction.
    if let Some(ms) = std::env::var("SEQTEST_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.lease(std::time::Duration::from_millis(ms));
    }
    sequencer::cli::run_with(builder)
}
