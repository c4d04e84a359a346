#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", should_run = is_needed)]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn is_needed(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
