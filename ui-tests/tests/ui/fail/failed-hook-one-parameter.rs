#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", failed = notify)]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn notify(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
