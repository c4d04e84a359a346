//! Encryption at rest on every backend: the recorded context of an `encrypted` operation and deferred payloads
//! are sealed; a missing or wrong key is a clear error (the row kept), and old keys open data after a rotation.

mod common;

use std::time::SystemTime;

use base64::Engine;
use common::{backends, prefix, Backend};
use sequencer::crypto::Keyring;
use sequencer::ledger::DeferredStatus;
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
        assert!(dump.contains("enc:v1:"), "{}: {dump}", b.name);
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
            checkpoint.starts_with("enc:v1:"),
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
        let stored = seq.ledger().deferred().await.unwrap();
        assert!(
            stored.iter().all(|d| d.payload.starts_with("enc:v1:")),
            "{}",
            b.name
        );
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
        let rows = rotated.ledger().deferred().await.unwrap();
        assert_eq!(
            rows.iter()
                .filter(|r| r.status == DeferredStatus::Failed)
                .count(),
            1,
            "{}: the unreadable row is kept",
            b.name
        );
        common::drop_tables(pool, &p, &[]).await;
    }
}
