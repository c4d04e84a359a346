#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    async fn helper(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_01_15_120001", depends_on = [helper])]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
