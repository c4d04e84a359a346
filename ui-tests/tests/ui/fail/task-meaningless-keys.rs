#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
    }

    #[task(timestamp = "2024_01_15_120000", depends_on = [other], rollback = undo, delay = "10m")]
    async fn reprice(_ctx: &Ctx, _args: Reprice) -> Result<()> {
        Ok(())
    }
}

fn main() {}
