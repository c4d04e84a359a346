//! Every key of `#[task]`, and a typed dispatch.

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
        pub tenant: String,
    }

    #[task(
        name = "reprice-customer",
        queue = "billing",
        retries = 3,
        backoff = [1, 5],
        retry_until = "1h",
        max_exceptions = 2,
        timeout = "30s",
        fail_on_timeout,
        unique = customer_key,
        unique_for = "2h",
        without_overlapping = tenant_key,
        rate_limit_key = tenant_key,
        middleware = [rate_limited("api", 60/min)],
        tags = tags_of,
        before = prepare,
        after = finish,
        failed = alert,
        should_run = enabled,
        throttle_on = lagging,
        transaction,
        encrypted,
        environments = ["production"],
        idempotent,
    )]
    pub async fn reprice(_ctx: &Ctx, _args: Reprice) -> Result<()> {
        Ok(())
    }

    #[task(unique = "one-at-a-time", tags = ["billing"])]
    pub async fn fixed(_ctx: &Ctx, _args: i64) -> Result<()> {
        Ok(())
    }

    fn customer_key(args: &Reprice) -> String {
        args.customer_id.to_string()
    }

    fn tenant_key(args: &Reprice) -> &str {
        &args.tenant
    }

    fn tags_of(args: &Reprice) -> Vec<String> {
        vec![format!("tenant:{}", args.tenant)]
    }

    async fn prepare(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn finish(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn alert(_ctx: &Ctx, _error: &Error) -> Result<()> {
        Ok(())
    }

    async fn enabled(_ctx: &Ctx) -> bool {
        true
    }

    async fn lagging(_ctx: &Ctx) -> bool {
        false
    }
}

#[allow(dead_code)]
async fn dispatch(seq: &sequencer::Sequencer) -> Result<(), sequencer::SequencerError> {
    let args = ops::Reprice { customer_id: 1, tenant: "acme".into() };
    let _run: Option<sequencer::TaskRun> = seq
        .dispatch::<ops::reprice>(args)
        .delay(std::time::Duration::from_secs(10))
        .on_queue("billing-slow")
        .await?;
    let _outcome = seq.dispatch_sync::<ops::fixed>(42).await?;
    Ok(())
}

fn main() {
    use sequencer::Task;
    let registry = ops::registry();
    let task = registry.task("reprice-customer").expect("registered");
    assert_eq!(task.op.meta.retry.tries, 3);
    assert_eq!(ops::reprice::NAME, "reprice-customer");
    let keys = (task.keys)(r#"{"customer_id": 4, "tenant": "acme"}"#).expect("keys");
    assert_eq!(keys.unique.as_deref(), Some("4"));
    assert_eq!(keys.overlap.as_deref(), Some("acme"));
    assert_eq!(keys.rate.as_deref(), Some("acme"));
    assert_eq!(keys.tags, ["tenant:acme"]);
    let fixed = registry.task("fixed").expect("registered");
    assert_eq!((fixed.keys)("42").expect("keys").unique.as_deref(), Some("one-at-a-time"));
}
