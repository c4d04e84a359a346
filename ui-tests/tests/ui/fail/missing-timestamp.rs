#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(retries = 3)]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
