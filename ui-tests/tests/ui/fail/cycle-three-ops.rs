#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", depends_on = [c])]
    async fn a(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_01_15_120001", depends_on = [a])]
    async fn b(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_01_15_120002", depends_on = [b])]
    async fn c(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
