#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
    }

    #[task(queu = "billing", retries = "three")]
    async fn reprice(_ctx: &Ctx, _args: Reprice) -> Result<()> {
        Ok(())
    }
}

fn main() {}
