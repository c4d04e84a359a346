//! Middleware by name (issue 17): `middleware = [audit, rate_limited("api", 60/min)]` runs the layer registered
//! as `audit` around that operation's attempts only, inside the layers every operation runs through; a name no
//! layer is registered under is an error of `build()` that lists the registered ones and suggests the closest.

mod common;

use std::sync::{Arc, Mutex};

use common::{backends, prefix};
use sequencer::{BoxFuture, Ctx, Layer, Next, Result, SequencerError};

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_12_02_000000", middleware = [audit, rate_limited("api", 60/min), timing])]
    pub async fn audited(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_12_02_000001")]
    pub async fn plain(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

/// Records `<its name> <operation>` for each attempt it wraps.
struct Record(&'static str, Arc<Mutex<Vec<String>>>);

impl Layer for Record {
    fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let op = ctx.operation().fn_name;
            self.1.lock().unwrap().push(format!("{} {op}", self.0));
            next.run(ctx).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_layer_wraps_only_the_operations_that_list_it_in_their_order() {
    for b in backends().await {
        let p = prefix();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let builder = common::builder(&b, &p, ops::registry())
            .named_layer("timing", Record("timing", seen.clone()))
            .layer(Record("every", seen.clone()))
            .named_layer("audit", Record("audit", seen.clone()))
            .named_layer("unused", Record("unused", seen.clone()));
        let seq = common::build(&b, builder).await;
        let report = seq.execute_all().await.expect("process");
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "every audited",
                "audit audited",
                "timing audited",
                "every plain"
            ],
            "{}: every operation's layer outermost, then the named ones in the listed order, on `audited` only",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test]
async fn an_unknown_layer_name_is_an_error_at_start_up_naming_the_registered_ones() {
    let b = backends().await.remove(0);
    let p = prefix();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = common::builder(&b, &p, ops::registry())
        .named_layer("audits", Record("audits", seen.clone()))
        .named_layer("timing", Record("timing", seen.clone()));
    let Err(SequencerError::Usage(e)) = builder.build().await else {
        panic!("`audit` is not registered: build must fail");
    };
    assert!(
        e.contains("`2024_12_02_000000_audited` uses the middleware `audit`, but no layer is registered by that name")
            && e.contains(".named_layer(\"audit\", layer)")
            && e.contains("the registered ones are `audits`, `timing`")
            && e.contains("did you mean `audits`?"),
        "{e}"
    );
    let none = common::builder(&b, &p, ops::registry()).build().await;
    let Err(SequencerError::Usage(e)) = none else {
        panic!("no layer registered: build must fail");
    };
    assert!(e.contains("no layer is registered by name"), "{e}");
    assert!(seen.lock().unwrap().is_empty());
}
