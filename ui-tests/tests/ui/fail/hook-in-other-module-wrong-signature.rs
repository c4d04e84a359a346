mod hooks {
    use sequencer::prelude::*;

    pub async fn prepare(_ctx: &Ctx, _dry_run: bool) -> Result<()> {
        Ok(())
    }
}

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", before = super::hooks::prepare)]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
