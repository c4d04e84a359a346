#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", execute_at = "02:00 Europe/Berln")]
    async fn nightly(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
