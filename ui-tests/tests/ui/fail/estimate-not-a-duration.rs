#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", estimate = "soon")]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
