#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", throttle_on = "replicas_lagging")]
    async fn backfill(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn replicas_lagging(_ctx: &Ctx) -> bool {
        false
    }
}

fn main() {}
