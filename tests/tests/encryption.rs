//! Encryption at rest on every backend: the recorded context of an `encrypted` operation and deferred payloads
//! are sealed; a missing or wrong key is a clear error (the row kept), and old keys open data after a rotation.

mod common;

use std::time::SystemTime;

use base64::Engine;
use common::{backends, prefix, Backend};
use sequencer::crypto::Keyring;
use sequencer::{BoxFuture, Ctx, Sequencer, SequencerError};
use sequencer_tests::enc_ops::ops;

fn key(b: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([b; 32])
}

fn greet(_ctx: &Ctx, name: String) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async move {
        anyhow::ensure!(name == "ada", "wrong payload {name}");
        Ok(())
    })
}

async fn sequencer(b: &Backend, p: &str, keys: Keyring) -> Result<Sequencer, SequencerError> {
    common::builder(b, p, ops::registry())
        .encryption_keys(keys)
        .deferred("greet", greet)
        .deferred_retry_delay(std::time::Duration::ZERO)
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_keys_rotate() {
    for b in backends().await {
        let p = prefix();
        let missing = sequencer(&b, &p, Keyring::default())
            .await
            .err()
            .expect("no key");
        assert!(
            missing
                .to_string()
                .contains("is `encrypted`, but no key is configured: set SEQUENCER_KEY"),
            "{missing}"
        );

        let k1 = || Keyring::new(Some(&key(1)), []).unwrap();
        let seq = sequencer(&b, &p, k1()).await.unwrap();
        seq.execute_all().await.unwrap();
        // In the database: sealed. Through the API: readable.
        let pool = seq.ledger().pool();
        let raw: Vec<String> = sequencer::sqlx::query_scalar(&format!(
            "SELECT CAST(message AS CHAR(2000)) FROM {p}seq_errors"
        ))
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        let dump = format!("{raw:?} {:?}", seq.ledger().rows().await.unwrap());
        assert!(
            !dump.contains("sk_live_123"),
            "{}: a secret is stored in the clear: {dump}",
            b.name
        );
        assert!(dump.contains("enc:v2:"), "{}: {dump}", b.name);
        let errors = seq.errors(Some("e_secret")).await.unwrap();
        assert!(
            errors[0]
                .message
                .contains("the API rejected token sk_live_123"),
            "{}: {errors:?}",
            b.name
        );
        let status = seq.status().await.unwrap();
        assert!(
            status[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("sk_live_123")),
            "{}",
            b.name
        );
        let checkpoint = seq
            .ledger()
            .last_checkpoint("2024_10_01_000000_e_secret", 0)
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(
            checkpoint.starts_with("enc:v2:"),
            "{}: the checkpoint is sealed too: {checkpoint}",
            b.name
        );

        // Deferred payloads: sealed with k1, then the key rotates.
        seq.defer("greet", &"ada".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        seq.defer("greet", &"ada".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        // Runs of the task `deferred:greet`, their payload in their data.
        for run in [1, 2] {
            let stored = seq
                .ledger()
                .task_args("deferred:greet", run)
                .await
                .unwrap()
                .unwrap_or_default();
            assert!(stored.starts_with("enc:v2:"), "{}: {stored}", b.name);
        }
        // Only the new key: a clear error, the row kept.
        let only_new = sequencer(&b, &p, Keyring::new(Some(&key(2)), []).unwrap())
            .await
            .unwrap();
        let report = only_new.process_deferred(Some(1)).await.unwrap();
        assert_eq!(report.failed.len(), 1, "{}: {report:?}", b.name);
        assert!(
            report.failed[0].1.contains(
                "which is not configured: set it as SEQUENCER_KEY, or add it to SEQUENCER_OLD_KEYS"
            ),
            "{}",
            b.name
        );
        // The new key with the old one kept: it opens.
        let rotated = sequencer(
            &b,
            &p,
            Keyring::new(Some(&key(2)), [key(1).as_str()]).unwrap(),
        )
        .await
        .unwrap();
        let report = rotated.process_deferred(None).await.unwrap();
        assert_eq!(
            (report.completed, report.failed.len()),
            (1, 0),
            "{}: {report:?}",
            b.name
        );
        let greet = rotated.task_status().await.unwrap();
        let greet = greet.iter().find(|t| t.name == "deferred:greet").unwrap();
        assert_eq!(
            (greet.failed, greet.completed),
            (1, 1),
            "{}: the unreadable run is kept: {greet}",
            b.name
        );
        common::drop_tables(pool, &p, &[]).await;
    }
}

/// Every text value of every ledger table of prefix `p`, as stored.
async fn dump_ledger(pool: &sequencer::sqlx::AnyPool, p: &str) -> String {
    use sequencer::sqlx::{Column, Row};
    let mut out = String::new();
    for t in sequencer::ledger::TABLES {
        let rows = sequencer::sqlx::query(&format!("SELECT * FROM {p}seq_{t}"))
            .fetch_all(pool)
            .await
            .unwrap_or_default();
        for r in &rows {
            for c in r.columns() {
                // MariaDB hands TEXT columns over as bytes.
                let text = match r.try_get::<Option<String>, _>(c.ordinal()) {
                    Ok(v) => v,
                    Err(_) => r
                        .try_get::<Option<Vec<u8>>, _>(c.ordinal())
                        .ok()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).into_owned()),
                };
                if let Some(v) = text {
                    out.push_str(&format!("{t}.{}={v}\n", c.name()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_stored_in_the_clear_and_sealed_values_stay_with_their_row() {
    for b in backends().await {
        let p = prefix();
        let keys = || Keyring::new(Some(&key(7)), []).unwrap();
        let seq = sequencer(&b, &p, keys()).await.unwrap();
        // The encrypted operation fails on a worker: its error reaches the operations row, the errors table and
        // the job; its checkpoint the checkpoints table.
        let queued = seq
            .process(&sequencer::ProcessOptions {
                queue_all: true,
                ..sequencer::ProcessOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(queued.queued.len(), 1, "{}", b.name);
        let work = sequencer::WorkOptions {
            until_idle: true,
            ..sequencer::WorkOptions::default()
        };
        let done = seq
            .work(&work, sequencer::CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(done.failed, 1, "{}: {done:?}", b.name);
        // A deferred handler fails with the payload in its error.
        seq.defer("greet", &"sk_live_123".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        let report = seq.process_deferred(None).await.unwrap();
        assert_eq!(report.failed.len(), 1, "{}: {report:?}", b.name);

        let dump = dump_ledger(seq.ledger().pool(), &p).await;
        assert!(
            dump.contains("jobs.last_error=enc:v2:") && dump.contains("operations.args=enc:v2:"),
            "{}: {dump}",
            b.name
        );
        assert!(
            !dump.contains("sk_live_123"),
            "{}: a secret is stored in the clear:\n{dump}",
            b.name
        );
        let errors = seq.errors(Some("e_secret")).await.unwrap();
        assert!(errors[0].message.contains("sk_live_123"), "{}", b.name);

        // Two sealed payloads swapped between rows open nowhere: each is bound to its row.
        seq.defer("greet", &"ada".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        seq.defer("greet", &"bob".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        let pool = seq.ledger().pool();
        // Runs 2 and 3 of the task `deferred:greet` (run 1 failed above).
        let args = |run| seq.ledger().task_args("deferred:greet", run);
        let (a, bob) = (
            args(2).await.unwrap().unwrap(),
            args(3).await.unwrap().unwrap(),
        );
        for (run, stored) in [(2, &bob), (3, &a)] {
            sequencer::sqlx::query(&format!(
                "UPDATE {p}seq_operations SET args = '{stored}' WHERE name = 'deferred:greet' AND run = {run}"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
        let report = seq.process_deferred(None).await.unwrap();
        assert_eq!(report.failed.len(), 2, "{}: {report:?}", b.name);
        assert!(
            report
                .failed
                .iter()
                .all(|(_, e)| e.contains("belongs to another row")),
            "{}: {report:?}",
            b.name
        );

        // A payload stored in plain text with a key set is refused, not run; `reseal` seals it for its row.
        seq.ledger()
            .defer("greet", |_| "\"ada\"".to_owned(), 0, 1)
            .await
            .unwrap();
        let report = seq.process_deferred(None).await.unwrap();
        assert!(
            report
                .failed
                .iter()
                .any(|(_, e)| e.contains("run `reseal` once")),
            "{}: {report:?}",
            b.name
        );
        let pending_plain = seq
            .ledger()
            .defer("greet", |_| "\"ada\"".to_owned(), 0, 1)
            .await
            .unwrap();
        assert!(seq.reseal().await.unwrap() >= 1, "{}", b.name);
        let resealed = seq
            .ledger()
            .deferred_row(pending_plain)
            .await
            .unwrap()
            .unwrap();
        assert!(resealed.payload.starts_with("enc:v2:"), "{}", b.name);
        let report = seq.process_deferred(None).await.unwrap();
        assert_eq!(report.completed, 1, "{}: {report:?}", b.name);
        common::drop_tables(pool, &p, &[]).await;
    }
}

/// Deferred runs recorded before a key was set (their data and their error in plain text) are sealed by
/// `reseal`, each for its run; a run so sealed then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_seals_deferred_runs_recorded_before_a_key_was_set() {
    for b in backends().await {
        let p = prefix();
        let plain = common::builder(&b, &p, sequencer_tests::ledger_ops::ops::registry())
            .deferred("greet", greet)
            .build()
            .await
            .unwrap();
        // Run 1 fails (its error in plain text); run 2 waits.
        plain
            .defer("greet", &"bob".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        assert_eq!(
            plain.process_deferred(None).await.unwrap().failed.len(),
            1,
            "{}",
            b.name
        );
        plain
            .defer("greet", &"ada".to_owned(), SystemTime::now(), 1)
            .await
            .unwrap();
        let keyed = sequencer(&b, &p, Keyring::new(Some(&key(3)), []).unwrap())
            .await
            .unwrap();
        assert!(keyed.reseal().await.unwrap() >= 3, "{}", b.name);
        for run in [1, 2] {
            let args = keyed
                .ledger()
                .task_args("deferred:greet", run)
                .await
                .unwrap()
                .unwrap_or_default();
            assert!(args.starts_with("enc:v2:"), "{}: run {run}: {args}", b.name);
        }
        let failed = keyed
            .ledger()
            .row_of("deferred:greet", 1)
            .await
            .unwrap()
            .unwrap();
        assert!(
            failed
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("enc:v2:")),
            "{}: {failed:?}",
            b.name
        );
        let report = keyed.process_deferred(None).await.unwrap();
        assert_eq!(
            (report.completed, report.failed.len()),
            (1, 0),
            "{}: {report:?}",
            b.name
        );
        common::drop_tables(keyed.ledger().pool(), &p, &[]).await;
    }
}
