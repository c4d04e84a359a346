//! The errors table: every failed attempt's error, with its whole cause chain.

use serde::Serialize;
use sqlx::Row;

use super::connection::Ledger;
use super::dialect::text;
use super::error::{q, LedgerError};
use crate::crypto::place;

/// One recorded error of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorRecord {
    /// Ledger name.
    pub name: String,
    /// Run.
    pub run: i64,
    /// Attempt (0 for a rollback's error).
    pub attempt: i64,
    /// The error's message.
    pub message: String,
    /// Every cause, outermost first, one per line.
    pub chain: String,
    /// When, Unix milliseconds.
    pub created_at: i64,
}

impl Ledger {
    /// Records one attempt's error with its whole cause chain.
    pub async fn record_error(
        &self,
        name: &str,
        run: i64,
        attempt: u32,
        error: &crate::Error,
        seal: Option<&crate::crypto::Keyring>,
    ) -> Result<(), LedgerError> {
        let errors = self.table("errors");
        let sql = self.dialect.sql(format!(
            "INSERT INTO {errors} (name, run, attempt, message, chain, created_at) VALUES (?, ?, ?, ?, ?, {now})",
            now = self.dialect.now()
        ));
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        // The recorded context of an `encrypted` operation is sealed; it is never stored in the clear.
        let stored = |text: String, column: &str| match seal {
            Some(keys) => keys
                .seal_for(&text, &place::error(name, run, attempt.into(), column))
                .unwrap_or_else(|e| format!("[not recorded: {e}]")),
            None => text,
        };
        sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .bind(attempt as i64)
            .bind(stored(error.to_string(), "message"))
            .bind(stored(chain.join("\n"), "chain"))
            .execute(&self.pool)
            .await
            .map_err(q("record an error"))?;
        Ok(())
    }

    /// Recorded errors, of one operation or of all.
    pub async fn errors(&self, name: Option<&str>) -> Result<Vec<ErrorRecord>, LedgerError> {
        let errors = self.table("errors");
        let select = format!("SELECT name, run, attempt, message, chain, created_at FROM {errors}");
        let rows = match name {
            Some(n) => {
                let sql = self
                    .dialect
                    .sql(format!("{select} WHERE name = ? ORDER BY id"));
                sqlx::query(&sql).bind(n).fetch_all(&self.pool).await
            }
            None => {
                let sql = self.dialect.sql(format!("{select} ORDER BY id"));
                sqlx::query(&sql).fetch_all(&self.pool).await
            }
        }
        .map_err(q("read errors"))?;
        rows.iter()
            .map(|r| {
                Ok(ErrorRecord {
                    name: r.try_get(0)?,
                    run: r.try_get(1)?,
                    attempt: r.try_get(2)?,
                    message: text(r, 3)?.unwrap_or_default(),
                    chain: text(r, 4)?.unwrap_or_default(),
                    created_at: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("decode an error record"))
    }
}
