//! Operations that get stuck in blocking code (`std::thread::sleep`, which their `timeout` cannot abort) when
//! `SEQTEST_STUCK` names them, for the hard-timeout suite.

#[sequencer::operations]
pub mod ops {
    use std::time::Duration;

    use sequencer::prelude::*;

    /// Blocks its thread for ten minutes when `SEQTEST_STUCK` names `which`.
    fn maybe_stuck(which: &str) {
        if std::env::var("SEQTEST_STUCK").is_ok_and(|v| v == which) {
            std::thread::sleep(Duration::from_secs(600));
        }
    }

    #[operation(timestamp = "2024_10_01_000000", timeout = "1s")]
    pub async fn stuck(_ctx: &Ctx) -> Result<()> {
        maybe_stuck("stuck");
        Ok(())
    }

    #[operation(timestamp = "2024_10_01_000001")]
    pub async fn after_stuck(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_10_01_000002", timeout = "1s", asynchronous)]
    pub async fn stuck_on_worker(_ctx: &Ctx) -> Result<()> {
        maybe_stuck("stuck_on_worker");
        Ok(())
    }
}
