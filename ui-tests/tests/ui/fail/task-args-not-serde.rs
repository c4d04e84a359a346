#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    pub struct Reprice {
        pub customer_id: i64,
    }

    #[task]
    async fn reprice(_ctx: &Ctx, _args: Reprice) -> Result<()> {
        Ok(())
    }
}

fn main() {}
