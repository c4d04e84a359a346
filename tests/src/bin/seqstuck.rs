//! The hard-timeout suite's application binary: `sequencer::cli` over [`sequencer_tests::stuck_ops`], with its
//! tables prefixed by `SEQTEST_PREFIX` and the hard-timeout grace from `SEQTEST_GRACE_MS`.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "stuck_".into());
    let mut builder = sequencer::Sequencer::builder()
        .registry(sequencer_tests::stuck_ops::ops::registry())
        .table_prefix(format!("{prefix}seq_"));
    if let Some(ms) = std::env::var("SEQTEST_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.hard_timeout_grace(Duration::from_millis(ms));
    }
    sequencer::cli::run_with(builder)
}
