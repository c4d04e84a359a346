#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024-01-15 12:00")]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
