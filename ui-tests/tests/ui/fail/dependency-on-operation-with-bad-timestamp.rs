#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_02_30_120000")]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_03_01_120000", depends_on = [create_users])]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
