#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
    }

    #[task(unique = customer_kye, without_overlapping = tenant_key, tags = 42)]
    async fn reprice(_ctx: &Ctx, _args: Reprice) -> Result<()> {
        Ok(())
    }

    fn customer_key(args: &Reprice) -> String {
        args.customer_id.to_string()
    }

    async fn tenant_key(args: &Reprice) -> String {
        args.customer_id.to_string()
    }
}

fn main() {}
