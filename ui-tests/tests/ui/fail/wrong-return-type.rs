#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000")]
    async fn count_users(_ctx: &Ctx) -> Result<u32> {
        Ok(0)
    }
}

fn main() {}
