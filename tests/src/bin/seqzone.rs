//! The time-zone suite's application binary: `sequencer::cli` over an operation due at a time of day in
//! Europe/Berlin, with its tables prefixed by `SEQTEST_PREFIX`.

use std::process::ExitCode;

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_12_01_000000", execute_at = "02:30 Europe/Berlin")]
    pub async fn nightly_berlin(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "zone_".into());
    let builder = sequencer::Sequencer::builder()
        .registry(ops::registry())
        .table_prefix(format!("{prefix}seq_"));
    sequencer::cli::run_with(builder)
}
