//! PostgreSQL's `LISTEN/NOTIFY` for the queue: workers hear of queued (and blocked) jobs, dispatchers of ended ones.

use super::connection::Ledger;
use super::dialect::Dialect;
use super::error::{q, LedgerError};

/// A PostgreSQL connection listening for the workers' notifications: see [`Ledger::listen`].
pub struct Listener(#[cfg(feature = "postgres")] sqlx::postgres::PgListener);

/// What a worker's listener heard: see [`Listener::heard`]. Only PostgreSQL listens, so without its feature
/// nothing is heard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Heard {
    /// A notification, with its payload: a queue's name, or [`BLOCKED`].
    Payload(String),
    /// The connection was lost (and is made again): what was sent meanwhile was not heard.
    Lost,
}

/// The payload of the notification sent when a job is queued `blocked` (no queue's name has a space).
pub(crate) const BLOCKED: &str = " blocked";

impl Listener {
    /// Waits for the next notification, or for the loss of the connection (made again on the next call).
    pub(crate) async fn heard(&mut self) -> Result<Heard, LedgerError> {
        #[cfg(feature = "postgres")]
        {
            Ok(
                match self.0.try_recv().await.map_err(q("listen for jobs"))? {
                    Some(n) => Heard::Payload(n.payload().to_owned()),
                    None => Heard::Lost,
                },
            )
        }
        #[cfg(not(feature = "postgres"))]
        std::future::pending::<Result<Heard, LedgerError>>().await
    }

    /// Waits for the next notification: `Err` when the connection broke (sqlx reconnects on the next call).
    pub async fn recv(&mut self) -> Result<(), LedgerError> {
        #[cfg(feature = "postgres")]
        {
            self.0.recv().await.map_err(q("listen for jobs"))?;
            Ok(())
        }
        #[cfg(not(feature = "postgres"))]
        std::future::pending::<Result<(), LedgerError>>().await
    }
}

impl Ledger {
    /// Wakes the workers of a queue (PostgreSQL's `NOTIFY`; elsewhere they poll).
    pub(super) async fn wake_workers(&self, queue: &str) -> Result<(), LedgerError> {
        self.wake_workers_with(queue).await
    }

    /// Sends the workers `payload` (a queue's name, or [`BLOCKED`]) on PostgreSQL.
    pub(super) async fn wake_workers_with(&self, payload: &str) -> Result<(), LedgerError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(&self.dialect.sql("SELECT pg_notify(?, ?)"))
                .bind(self.notify_channel())
                .bind(payload)
                .execute(&self.pool)
                .await
                .map_err(q("wake the workers"))?;
        }
        Ok(())
    }

    /// A connection listening on `channel`: PostgreSQL's `LISTEN`; `None` on the other backends (they poll).
    pub async fn listen(&self, channel: &str) -> Result<Option<Listener>, LedgerError> {
        #[cfg(feature = "postgres")]
        if self.dialect == Dialect::Postgres {
            let mut l = sqlx::postgres::PgListener::connect(&self.url)
                .await
                .map_err(|source| LedgerError::Connect {
                    url: super::connection::redact(&self.url),
                    source,
                })?;
            l.listen(channel).await.map_err(q("listen for jobs"))?;
            return Ok(Some(Listener(l)));
        }
        let _ = channel;
        Ok(None)
    }

    /// The channel a PostgreSQL dispatcher listens on for ended jobs.
    pub fn done_channel(&self) -> String {
        format!("{}jobs_done", self.prefix)
    }

    /// The channel PostgreSQL workers listen on.
    pub fn notify_channel(&self) -> String {
        format!("{}jobs", self.prefix)
    }
}
