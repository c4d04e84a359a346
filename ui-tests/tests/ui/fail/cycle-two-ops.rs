#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", depends_on = [backfill_orders])]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_01_15_120001", depends_on = [create_users])]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
