mod other {
    pub struct Helper;
}

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120001", depends_on = [super::other::Helper])]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
