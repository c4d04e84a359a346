#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", execute_at = due)]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    fn due() -> u64 {
        0
    }
}

fn main() {}
