//! The ledger backend's own pool and transaction, on every backend: a `transaction` operation reads and writes
//! column types sqlx's `Any` driver cannot decode (`TIMESTAMPTZ`, `NUMERIC`, `UUID`, `JSONB`; MariaDB's
//! `DATETIME`, `DECIMAL`, `JSON`; SQLite's dates, blobs and JSON text) through `ctx.postgres_tx()`,
//! `ctx.mysql_tx()` or `ctx.sqlite_tx()`; its writes and checkpoint commit with its `completed` row, or, when it
//! fails, roll back with it. Asking for another backend, or for a transaction of the other kind, is refused.

mod common;

use sequencer::ledger::{NativePool, Status};
use sequencer::sqlx;
use sequencer::sqlx::types::chrono::{DateTime, TimeZone, Utc};
use sequencer::sqlx::types::{Json, Uuid};
use sequencer::Sequencer;

use common::{backends, prefix, Backend};

/// What the operations write to: `{prefix}typed`, and whether to fail after writing.
pub struct Native {
    pub table: String,
    pub fail: bool,
}

fn native(ctx: &sequencer::Ctx) -> sequencer::Result<&Native> {
    ctx.state::<Native>()
        .ok_or_else(|| sequencer::Error::msg("no Native state"))
}

/// The seed row's values; the operations write row 2 from them (a day later, twice the amount, the next id, the
/// document wrapped).
fn seed_at() -> DateTime<Utc> {
    Utc.timestamp_opt(1_705_320_000, 123_456_000)
        .single()
        .expect("a valid time")
}
const SEED_ID: u128 = 0x6f1c_8a44_0b7e_4c1d_9a8e_1f2a_3b4c_5d6e;
fn seed_doc() -> serde_json::Value {
    serde_json::json!({"plan": "pro", "seats": 3})
}
fn written_doc() -> serde_json::Value {
    serde_json::json!({"from": seed_doc(), "copied": true})
}

#[sequencer::operations]
mod pg_ops {
    use sequencer::prelude::*;
    use sequencer::sqlx;
    use sequencer::sqlx::types::chrono::{DateTime, Utc};
    use sequencer::sqlx::types::{Decimal, Json, Uuid};
    use std::time::Duration;

    type Typed = (DateTime<Utc>, Decimal, Uuid, Json<serde_json::Value>);

    #[operation(timestamp = "2024_10_01_000000", transaction)]
    pub async fn copy_typed(ctx: &Ctx) -> Result<()> {
        let k = super::native(ctx)?;
        let select = format!("SELECT at, amount, id, doc FROM {} WHERE n = 1", k.table);
        // The native pool decodes them too (outside the transaction).
        let on_pool: Typed = sqlx::query_as(&select).fetch_one(ctx.postgres()?).await?;
        {
            let mut tx = ctx.postgres_tx().await?;
            let (at, amount, id, doc): Typed = sqlx::query_as(&select).fetch_one(&mut **tx).await?;
            anyhow::ensure!(
                on_pool == (at, amount, id, doc.clone()),
                "the pool and the transaction disagree"
            );
            sqlx::query(&format!(
                "INSERT INTO {} (n, at, amount, id, doc) VALUES (2, $1, $2, $3, $4)",
                k.table
            ))
            .bind(at + Duration::from_secs(86_400))
            .bind(amount * Decimal::from(2))
            .bind(Uuid::from_u128(id.as_u128() + 1))
            .bind(Json(serde_json::json!({"from": doc.0, "copied": true})))
            .execute(&mut **tx)
            .await?;
        }
        ctx.progress(1, 1).await?;
        ctx.checkpoint(&2).await?; // through the same transaction
        if k.fail {
            return Err(Error::msg("failed after writing"));
        }
        Ok(())
    }
}

#[sequencer::operations]
mod my_ops {
    use sequencer::prelude::*;
    use sequencer::sqlx;
    use sequencer::sqlx::types::chrono::{DateTime, Utc};
    use sequencer::sqlx::types::{Decimal, Json, Uuid};
    use std::time::Duration;

    type Typed = (DateTime<Utc>, Decimal, Uuid, Json<serde_json::Value>);

    #[operation(timestamp = "2024_10_01_000000", transaction)]
    pub async fn copy_typed(ctx: &Ctx) -> Result<()> {
        let k = super::native(ctx)?;
        let select = format!("SELECT at, amount, id, doc FROM {} WHERE n = 1", k.table);
        let on_pool: Typed = sqlx::query_as(&select).fetch_one(ctx.mysql()?).await?;
        {
            let mut tx = ctx.mysql_tx().await?;
            let (at, amount, id, doc): Typed = sqlx::query_as(&select).fetch_one(&mut **tx).await?;
            anyhow::ensure!(
                on_pool == (at, amount, id, doc.clone()),
                "the pool and the transaction disagree"
            );
            sqlx::query(&format!(
                "INSERT INTO {} (n, at, amount, id, doc) VALUES (2, ?, ?, ?, ?)",
                k.table
            ))
            .bind(at + Duration::from_secs(86_400))
            .bind(amount * Decimal::from(2))
            .bind(Uuid::from_u128(id.as_u128() + 1))
            .bind(Json(serde_json::json!({"from": doc.0, "copied": true})))
            .execute(&mut **tx)
            .await?;
        }
        ctx.progress(1, 1).await?;
        ctx.checkpoint(&2).await?;
        if k.fail {
            return Err(Error::msg("failed after writing"));
        }
        Ok(())
    }
}

#[sequencer::operations]
mod lite_ops {
    use sequencer::prelude::*;
    use sequencer::sqlx;
    use sequencer::sqlx::types::chrono::{DateTime, Utc};
    use sequencer::sqlx::types::{Json, Uuid};
    use std::time::Duration;

    type Typed = (DateTime<Utc>, Uuid, Json<serde_json::Value>);

    #[operation(timestamp = "2024_10_01_000000", transaction)]
    pub async fn copy_typed(ctx: &Ctx) -> Result<()> {
        let k = super::native(ctx)?;
        let select = format!("SELECT at, id, doc FROM {} WHERE n = 1", k.table);
        let on_pool: Typed = sqlx::query_as(&select).fetch_one(ctx.sqlite()?).await?;
        {
            let mut tx = ctx.sqlite_tx().await?;
            let (at, id, doc): Typed = sqlx::query_as(&select).fetch_one(&mut **tx).await?;
            anyhow::ensure!(
                on_pool == (at, id, doc.clone()),
                "the pool and the transaction disagree"
            );
            sqlx::query(&format!(
                "INSERT INTO {} (n, at, id, doc) VALUES (2, ?, ?, ?)",
                k.table
            ))
            .bind(at + Duration::from_secs(86_400))
            .bind(Uuid::from_u128(id.as_u128() + 1))
            .bind(Json(serde_json::json!({"from": doc.0, "copied": true})))
            .execute(&mut **tx)
            .await?;
        }
        // On SQLite both go through the transaction, which holds the single write lock.
        ctx.progress(1, 1).await?;
        ctx.checkpoint(&2).await?;
        if k.fail {
            return Err(Error::msg("failed after writing"));
        }
        Ok(())
    }
}

/// Operations that ask for what their ledger cannot give.
#[sequencer::operations]
mod refused {
    use sequencer::prelude::*;

    /// Begins its transaction as `sqlx::Any`, then asks for the backend's own.
    #[operation(timestamp = "2024_10_02_000000", transaction)]
    pub async fn both_kinds(ctx: &Ctx) -> Result<()> {
        drop(ctx.tx().await?);
        if ctx.postgres().is_ok() {
            drop(ctx.postgres_tx().await?);
        } else if ctx.mysql().is_ok() {
            drop(ctx.mysql_tx().await?);
        } else {
            drop(ctx.sqlite_tx().await?);
        }
        Ok(())
    }

    /// Asks for another backend's pool.
    #[operation(timestamp = "2024_10_02_000001")]
    pub async fn other_pool(ctx: &Ctx) -> Result<()> {
        match ctx.sqlite() {
            Ok(_) => drop(ctx.postgres()?),
            Err(_) => drop(ctx.sqlite()?),
        }
        Ok(())
    }

    /// Asks for another backend's transaction.
    #[operation(timestamp = "2024_10_02_000002", transaction)]
    pub async fn other_tx(ctx: &Ctx) -> Result<()> {
        match ctx.mysql() {
            Ok(_) => drop(ctx.postgres_tx().await?),
            Err(_) => drop(ctx.mysql_tx().await?),
        }
        Ok(())
    }
}

/// A `transaction` operation that never asks for its transaction.
#[sequencer::operations]
mod untouched {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_10_03_000000", transaction)]
    pub async fn no_tx(ctx: &Ctx) -> Result<()> {
        ctx.progress(1, 1).await?;
        ctx.checkpoint(&1).await?;
        Ok(())
    }
}

const COPY: &str = "2024_10_01_000000_copy_typed";

/// A sequencer over the backend's typed operations, on a fresh table holding the seed row.
async fn typed_sequencer(b: &Backend, p: &str, fail: bool) -> Sequencer {
    let registry = match b.name {
        "PostgreSQL" => pg_ops::registry(),
        "MariaDB" => my_ops::registry(),
        _ => lite_ops::registry(),
    };
    let table = format!("{p}typed");
    let state = Native {
        table: table.clone(),
        fail,
    };
    let seq = common::build(b, common::builder(b, p, registry).state(state)).await;
    match seq.ledger().native() {
        NativePool::Postgres(pool) => {
            sqlx::query(&format!("CREATE TABLE {table} (n BIGINT PRIMARY KEY, at TIMESTAMPTZ NOT NULL, amount NUMERIC(12, 2) NOT NULL, id UUID NOT NULL, doc JSONB NOT NULL)"))
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(&format!(
                "INSERT INTO {table} (n, at, amount, id, doc) VALUES (1, $1, $2, $3, $4)"
            ))
            .bind(seed_at())
            .bind(sqlx::types::Decimal::new(123_450, 2))
            .bind(Uuid::from_u128(SEED_ID))
            .bind(Json(seed_doc()))
            .execute(pool)
            .await
            .unwrap();
        }
        NativePool::MySql(pool) => {
            sqlx::query(&format!("CREATE TABLE {table} (n BIGINT PRIMARY KEY, at DATETIME(6) NOT NULL, amount DECIMAL(12, 2) NOT NULL, id BINARY(16) NOT NULL, doc JSON NOT NULL)"))
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(&format!(
                "INSERT INTO {table} (n, at, amount, id, doc) VALUES (1, ?, ?, ?, ?)"
            ))
            .bind(seed_at())
            .bind(sqlx::types::Decimal::new(123_450, 2))
            .bind(Uuid::from_u128(SEED_ID))
            .bind(Json(seed_doc()))
            .execute(pool)
            .await
            .unwrap();
        }
        NativePool::Sqlite(pool) => {
            sqlx::query(&format!("CREATE TABLE {table} (n INTEGER PRIMARY KEY, at DATETIME NOT NULL, id BLOB NOT NULL, doc TEXT NOT NULL)"))
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(&format!(
                "INSERT INTO {table} (n, at, id, doc) VALUES (1, ?, ?, ?)"
            ))
            .bind(seed_at())
            .bind(Uuid::from_u128(SEED_ID))
            .bind(Json(seed_doc()))
            .execute(pool)
            .await
            .unwrap();
        }
    }
    seq
}

/// Row 2 as the operation wrote it, decoded through the native pool: time, amount (none on SQLite, which has no
/// decimal type in sqlx), id, document.
type Written = (
    DateTime<Utc>,
    Option<sqlx::types::Decimal>,
    Uuid,
    serde_json::Value,
);

async fn written(seq: &Sequencer, p: &str) -> Option<Written> {
    let table = format!("{p}typed");
    match seq.ledger().native() {
        NativePool::Postgres(pool) => {
            let row: Option<(
                DateTime<Utc>,
                sqlx::types::Decimal,
                Uuid,
                Json<serde_json::Value>,
            )> = sqlx::query_as(&format!(
                "SELECT at, amount, id, doc FROM {table} WHERE n = 2"
            ))
            .fetch_optional(pool)
            .await
            .unwrap();
            row.map(|(at, amount, id, doc)| (at, Some(amount), id, doc.0))
        }
        NativePool::MySql(pool) => {
            let row: Option<(
                DateTime<Utc>,
                sqlx::types::Decimal,
                Uuid,
                Json<serde_json::Value>,
            )> = sqlx::query_as(&format!(
                "SELECT at, amount, id, doc FROM {table} WHERE n = 2"
            ))
            .fetch_optional(pool)
            .await
            .unwrap();
            row.map(|(at, amount, id, doc)| (at, Some(amount), id, doc.0))
        }
        NativePool::Sqlite(pool) => {
            let row: Option<(DateTime<Utc>, Uuid, Json<serde_json::Value>)> =
                sqlx::query_as(&format!("SELECT at, id, doc FROM {table} WHERE n = 2"))
                    .fetch_optional(pool)
                    .await
                    .unwrap();
            row.map(|(at, id, doc)| (at, None, id, doc.0))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_writes_commit_with_the_ledger_row() {
    for b in backends().await {
        let p = prefix();
        let seq = typed_sequencer(&b, &p, false).await;
        let report = seq.execute_all().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let (at, amount, id, doc) = written(&seq, &p)
            .await
            .unwrap_or_else(|| panic!("{}: row 2 was not committed", b.name));
        assert_eq!(at, seed_at() + chrono_day(), "{}", b.name);
        if b.name != "SQLite" {
            assert_eq!(
                amount,
                Some(sqlx::types::Decimal::new(246_900, 2)),
                "{}",
                b.name
            );
        }
        assert_eq!(id, Uuid::from_u128(SEED_ID + 1), "{}", b.name);
        assert_eq!(doc, written_doc(), "{}", b.name);
        let status = seq.status().await.unwrap();
        assert_eq!(status[0].status, Status::Completed, "{}", b.name);
        assert_eq!(status[0].progress_done, Some(1), "{}", b.name);
        assert_eq!(
            seq.ledger()
                .last_checkpoint(COPY, 0)
                .await
                .unwrap()
                .as_deref(),
            Some("2"),
            "{}: the checkpoint written through the native transaction committed",
            b.name
        );
        common::cleanup(&seq, &p, &["typed"]).await;
    }
}

fn chrono_day() -> std::time::Duration {
    std::time::Duration::from_secs(86_400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_typed_transaction_leaves_nothing() {
    for b in backends().await {
        let p = prefix();
        let seq = typed_sequencer(&b, &p, true).await;
        let report = seq.execute_all().await.unwrap();
        assert!(!report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            written(&seq, &p).await,
            None,
            "{}: the failed operation's write was committed",
            b.name
        );
        let status = seq.status().await.unwrap();
        assert_eq!(status[0].status, Status::Failed, "{}", b.name);
        assert_eq!(
            seq.ledger().last_checkpoint(COPY, 0).await.unwrap(),
            None,
            "{}: the checkpoint rolled back with the write",
            b.name
        );
        common::cleanup(&seq, &p, &["typed"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_backend_or_kind_is_refused_by_name() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, refused::registry())).await;
        for op in ["both_kinds", "other_pool", "other_tx"] {
            let report = seq.execute(op).await.unwrap();
            assert!(!report.succeeded(), "{}: {op}: {report:?}", b.name);
        }
        let errors: std::collections::HashMap<String, String> = seq
            .status()
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.name.split_at(18).1.to_owned(),
                    e.error.unwrap_or_default(),
                )
            })
            .collect();
        let (own, own_name) = match b.name {
            "PostgreSQL" => ("postgres", "PostgreSQL"),
            "MariaDB" => ("mysql", "MySQL / MariaDB"),
            _ => ("sqlite", "SQLite"),
        };
        assert!(
            errors["both_kinds"].contains(&format!(
                "`ctx.{own}_tx()`: `2024_10_02_000000_both_kinds` began its transaction with `ctx.tx()`"
            )),
            "{}: {}",
            b.name,
            errors["both_kinds"]
        );
        for (op, kind) in [("other_pool", "pool"), ("other_tx", "transaction")] {
            let suffix = if kind == "pool" { "" } else { "_tx" };
            assert!(
                errors[op].contains(&format!(
                    "runs on a {own_name} ledger, whose {kind} is `ctx.{own}{suffix}()`"
                )),
                "{}: {op}: {}",
                b.name,
                errors[op]
            );
        }
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_context_has_an_in_memory_sqlite_pool_and_no_transaction() {
    let registry = lite_ops::registry();
    let def = registry.get(COPY).expect("copy_typed");
    let ctx = sequencer::Ctx::detached(&def.meta, 1, std::sync::Arc::default());
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(ctx.sqlite().expect("an in-memory SQLite pool"))
        .await
        .unwrap();
    assert_eq!(one, 1);
    let refused = ctx.postgres().map(drop).unwrap_err().to_string();
    assert!(
        refused.contains("runs on a SQLite ledger, whose pool is `ctx.sqlite()`"),
        "{refused}"
    );
    let no_tx = ctx.sqlite_tx().await.map(drop).unwrap_err().to_string();
    assert!(
        no_tx.contains("`ctx.sqlite_tx()` needs `#[operation(transaction, ...)]`"),
        "{no_tx}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_operation_that_never_asks_for_its_transaction_holds_none() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, untouched::registry())).await;
        let report = seq.execute_all().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let status = seq.status().await.unwrap();
        assert_eq!(status[0].status, Status::Completed, "{}", b.name);
        assert_eq!(status[0].progress_done, Some(1), "{}", b.name);
        assert_eq!(
            seq.ledger()
                .last_checkpoint("2024_10_03_000000_no_tx", 0)
                .await
                .unwrap()
                .as_deref(),
            Some("1"),
            "{}: the checkpoint is written on the pool",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}
