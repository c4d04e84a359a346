#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Refund {
        pub order_id: i64,
    }

    #[task(queue = "billing")]
    pub async fn reprice(_ctx: &Ctx, _args: Reprice) -> Result<()> {
        Ok(())
    }
}

async fn dispatch(seq: &sequencer::Sequencer) {
    // A `Refund` is not the data of `reprice`.
    let _ = seq.dispatch::<ops::reprice>(ops::Refund { order_id: 1 }).await;
}

fn main() {
    let _ = dispatch;
}
