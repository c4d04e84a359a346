#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
    }

    // No data argument.
    #[task]
    async fn no_data(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    // Data by reference.
    #[task]
    async fn by_ref(_ctx: &Ctx, _args: &Reprice) -> Result<()> {
        Ok(())
    }

    // Not async, and no return type.
    #[task]
    fn blocking(_ctx: &Ctx, _args: Reprice) {}
}

fn main() {}
