#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", name = "backfill_orders")]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_01_15_120000", name = "backfill_orders")]
    async fn backfill_orders_again(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
