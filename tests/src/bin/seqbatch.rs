//! The batch suite's application binary: `sequencer::cli` over [`sequencer_tests::batch_ops`], its tables prefixed
//! by `SEQTEST_PREFIX`. With `SEQBATCH_DISPATCH=1` it dispatches a batch of `b_0` … `b_7` to the workers, prints
//! its id and exits at once.

use std::process::ExitCode;

fn main() -> ExitCode {
    let prefix = std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "batch_".into());
    let builder = sequencer_tests::batch_ops::builder(&prefix);
    if std::env::var("SEQBATCH_DISPATCH").is_ok_and(|v| v == "1") {
        return dispatch(builder);
    }
    sequencer::cli::run_with(builder)
}

fn dispatch(builder: sequencer::SequencerBuilder) -> ExitCode {
    let Ok(url) = std::env::var("SEQUENCER_DATABASE_URL") else {
        eprintln!("set SEQUENCER_DATABASE_URL");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let dispatched = runtime.block_on(async {
        let seq = builder.database(url).build().await?;
        let members = (0..8).map(|i| format!("b_{i}"));
        seq.batch(members)
            .name("dispatched")
            .then("then")
            .finally("finally")
            .dispatch()
            .await
    });
    match dispatched {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
