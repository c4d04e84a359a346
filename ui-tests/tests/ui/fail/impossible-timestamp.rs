#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_02_30_120000")]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
