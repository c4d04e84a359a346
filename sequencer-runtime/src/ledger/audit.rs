//! The audit table: an append-only log of the actions people took by hand (through the dashboard), each with who,
//! what, on which operation, the outcome, and the operation's status before and after.

use serde::Serialize;
use sqlx::Row;

use super::connection::Ledger;
use super::dialect::text;
use super::error::{q, LedgerError};

/// What an action writes to the audit log.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    /// Who took it, as they named themselves (the dashboard says `dashboard` when they did not).
    pub actor: &'a str,
    /// The action: `retry`, `cancel`, `rollback`, `complete`, `skip`, `forget`, `process`, `retry_task`,
    /// `cancel_batch`.
    pub action: &'a str,
    /// The operation's ledger name (a task's name for `retry_task`, a batch's id for `cancel_batch`); none for an
    /// action on every operation (`process`).
    pub target: Option<&'a str>,
    /// `ok` or `error`.
    pub outcome: &'a str,
    /// The operation's status when the action was asked.
    pub before: Option<&'a str>,
    /// Its status once the action returned (an action that runs on after the response records `started`).
    pub after: Option<&'a str>,
    /// Why, as they said.
    pub reason: Option<&'a str>,
    /// What went wrong, for an `error`.
    pub detail: Option<&'a str>,
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Its order in the log.
    pub id: i64,
    /// When, Unix milliseconds (the database's clock).
    pub created_at: i64,
    /// See [`AuditEntry::actor`].
    pub actor: String,
    /// See [`AuditEntry::action`].
    pub action: String,
    /// See [`AuditEntry::target`].
    pub target: Option<String>,
    /// See [`AuditEntry::outcome`].
    pub outcome: String,
    /// See [`AuditEntry::before`].
    pub before: Option<String>,
    /// See [`AuditEntry::after`].
    pub after: Option<String>,
    /// See [`AuditEntry::reason`].
    pub reason: Option<String>,
    /// See [`AuditEntry::detail`].
    pub detail: Option<String>,
}

impl Ledger {
    /// Appends an action to the audit log. Rows are only ever added.
    pub async fn record_action(&self, entry: &AuditEntry<'_>) -> Result<(), LedgerError> {
        let audit = self.table("audit");
        let sql = self.dialect.sql(format!(
            "INSERT INTO {audit} (created_at, actor, action, target, outcome, before_status, after_status, reason, detail) \
             VALUES ({now}, ?, ?, ?, ?, ?, ?, ?, ?)",
            now = self.dialect.now()
        ));
        sqlx::query(&sql)
            .bind(entry.actor)
            .bind(entry.action)
            .bind(entry.target)
            .bind(entry.outcome)
            .bind(entry.before)
            .bind(entry.after)
            .bind(entry.reason)
            .bind(entry.detail)
            .execute(&self.pool)
            .await
            .map_err(q("record an action in the audit log"))?;
        Ok(())
    }

    /// The latest `limit` actions of the audit log, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRecord>, LedgerError> {
        let audit = self.table("audit");
        let sql = self.dialect.sql(format!(
            "SELECT id, created_at, actor, action, target, outcome, before_status, after_status, reason, detail \
             FROM {audit} ORDER BY id DESC LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read the audit log"))?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                    before: r.try_get(6)?,
                    after: r.try_get(7)?,
                    reason: text(r, 8)?,
                    detail: text(r, 9)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("decode the audit log"))
    }
}
