#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", execute_at = du)]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    fn due() -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH
    }
}

fn main() {}
