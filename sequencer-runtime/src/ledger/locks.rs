//! The locks, rate_limits and throttles tables: named locks (`unique`, `without_overlapping`), fixed-window
//! rate limits, `throttle_exceptions`, and the global `--isolate` lock.

use std::borrow::Cow;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::connection::{now_ms, process_alive, Ledger, Owner};
use super::dialect::Dialect;
use super::error::{q, LedgerError};

/// How long a SQLite lock row lives without renewal.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// The longest key (in characters) the locks, rate_limits and throttles tables store as written: their `name`
/// columns' width on PostgreSQL and MySQL / MariaDB.
pub const KEY_COLUMN_CHARS: usize = 191;

/// How many characters of a longer key its stored form keeps, before its hash.
const KEY_PREFIX_CHARS: usize = 100;

/// A key as the ledger stores it: as written when it fits its column, else its first 100
/// characters, `~sha256:` and the SHA-256 of the whole key in hex (172 characters). The same on every backend,
/// so that a long key is never cut to the column's width (MySQL's `INSERT IGNORE` truncates silently, and two
/// keys sharing their first 191 characters became one: a run dropped as a duplicate it was not), nor refused
/// (PostgreSQL: a run not dispatched at all).
pub fn stored_key(key: &str) -> Cow<'_, str> {
    match key.char_indices().nth(KEY_COLUMN_CHARS) {
        None => Cow::Borrowed(key),
        Some(_) => {
            let cut = key
                .char_indices()
                .nth(KEY_PREFIX_CHARS)
                .map_or(key.len(), |(i, _)| i);
            let hash = Sha256::digest(key.as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            Cow::Owned(format!("{}~sha256:{hex}", &key[..cut]))
        }
    }
}

impl Ledger {
    /// The rows of the locks, rate_limits and throttles tables that `name` keys: the one place a name becomes its
    /// stored form ([`stored_key`]), so that every statement on those rows binds that form, never the name as
    /// written.
    fn keyed<'a>(&'a self, name: &'a str) -> Keyed<'a> {
        Keyed {
            ledger: self,
            key: stored_key(name),
        }
    }

    /// Takes a named lock (`unique`, `without_overlapping`) until `expires_at` unless a live holder has it.
    pub async fn try_named_lock(
        &self,
        name: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, LedgerError> {
        self.keyed(name).take_lock(owner, hold).await
    }

    /// Releases a named lock held by `owner`.
    pub async fn release_named_lock(&self, name: &str, owner: &str) -> Result<(), LedgerError> {
        self.keyed(name).release_lock(owner).await
    }

    /// Deletes the lock row `name` if `owner` holds it: the end of a named lock and of SQLite's isolation lock.
    async fn delete_lock_row(
        &self,
        name: &str,
        owner: &str,
        what: &'static str,
    ) -> Result<(), LedgerError> {
        let locks = self.table("locks");
        let sql = self
            .dialect
            .sql(format!("DELETE FROM {locks} WHERE name = ? AND owner = ?"));
        sqlx::query(&sql)
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(q(what))?;
        Ok(())
    }

    /// Counts one start against a fixed-window rate limit. `false` when the window is full.
    pub async fn rate_limit_hit(
        &self,
        name: &str,
        window_start: i64,
        limit: u32,
    ) -> Result<bool, LedgerError> {
        self.keyed(name).rate_limit_hit(window_start, limit).await
    }

    /// Until when (Unix milliseconds) a `throttle_exceptions` key is closed; 0 when open.
    pub async fn throttle_until(&self, name: &str) -> Result<i64, LedgerError> {
        self.keyed(name).throttle_until().await
    }

    /// Records a failure against a `throttle_exceptions` key: `max` failures within `window_ms` close it for
    /// `window_ms`.
    pub async fn throttle_failure(
        &self,
        name: &str,
        max: u32,
        window_ms: i64,
    ) -> Result<(), LedgerError> {
        self.keyed(name).throttle_failure(max, window_ms).await
    }

    /// Takes the global `--isolate` lock: an advisory lock (PostgreSQL), `GET_LOCK` (MySQL / MariaDB) or a lock
    /// row (SQLite). `None` when another process holds it.
    pub async fn try_lock(&self, owner: &Owner) -> Result<Option<IsolationLock>, LedgerError> {
        let key = format!("{}isolate", self.prefix);
        let who = format!("{}:{}", owner.host, owner.pid);
        match self.dialect {
            Dialect::Postgres => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(q("take the isolation lock"))?;
                let id = sequencer_core::meta::checksum(key.as_bytes()) as i64;
                let sql = self.dialect.sql("SELECT pg_try_advisory_lock(?)");
                let got: bool = sqlx::query_scalar(&sql)
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(q("take the isolation lock"))?;
                if !got {
                    return Ok(None);
                }
                self.record_isolation_holder(&key, &who).await?;
                Ok(Some(IsolationLock {
                    ledger: self.clone(),
                    conn: Some(conn),
                    key,
                    owner: who,
                }))
            }
            Dialect::MySql => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(q("take the isolation lock"))?;
                let sql = self.dialect.sql("SELECT GET_LOCK(?, 0)");
                let got: Option<i64> = sqlx::query_scalar(&sql)
                    .bind(key.as_str())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(q("take the isolation lock"))?;
                if got != Some(1) {
                    return Ok(None);
                }
                self.record_isolation_holder(&key, &who).await?;
                Ok(Some(IsolationLock {
                    ledger: self.clone(),
                    conn: Some(conn),
                    key,
                    owner: who,
                }))
            }
            Dialect::Sqlite => {
                let now = now_ms();
                // A holder on this host whose process died leaves a stale row: take it over.
                let locks = self.table("locks");
                let sql = self
                    .dialect
                    .sql(format!("SELECT owner FROM {locks} WHERE name = ?"));
                let stale: Option<String> = sqlx::query_scalar(&sql)
                    .bind(key.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(q("take the isolation lock"))?;
                let expire_now = stale
                    .as_deref()
                    .and_then(|o| o.rsplit_once(':'))
                    .is_some_and(|(h, p)| {
                        h == owner.host
                            && p.parse::<i64>()
                                .is_ok_and(|p| p != owner.pid && !process_alive(p))
                    });
                let threshold = if expire_now { i64::MAX } else { now };
                let sql = self.dialect.sql(format!(
                    "INSERT INTO {locks} (name, owner, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                     WHERE {locks}.expires_at < ?"
                ));
                let done = sqlx::query(&sql)
                    .bind(key.as_str())
                    .bind(who.as_str())
                    .bind(now + LOCK_TTL.as_millis() as i64)
                    .bind(threshold)
                    .execute(&self.pool)
                    .await
                    .map_err(q("take the isolation lock"))?;
                Ok((done.rows_affected() == 1).then(|| IsolationLock {
                    ledger: self.clone(),
                    conn: None,
                    key,
                    owner: who,
                }))
            }
        }
    }

    /// Who holds the `--isolate` lock, as `HOST (pid N)`: read from its lock row (SQLite) or the row its holder
    /// writes beside the server lock. `None` when no row says (a holder that has just taken it).
    pub async fn isolation_holder(&self) -> Result<Option<String>, LedgerError> {
        let locks = self.table("locks");
        let sql = self
            .dialect
            .sql(format!("SELECT owner FROM {locks} WHERE name = ?"));
        let owner: Option<String> = sqlx::query_scalar(&sql)
            .bind(format!("{}isolate", self.prefix))
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read who holds the isolation lock"))?;
        Ok(owner.map(|o| match o.rsplit_once(':') {
            Some((host, pid)) => format!("{host} (pid {pid})"),
            None => o,
        }))
    }

    /// On servers, where the lock itself is the database's, a row in the locks table says who holds it (its
    /// `expires_at` is the time it was taken; the row is only read, by [`Ledger::isolation_holder`]). A holder
    /// that died left its row behind: this replaces it.
    async fn record_isolation_holder(&self, key: &str, who: &str) -> Result<(), LedgerError> {
        let locks = self.table("locks");
        let delete = self
            .dialect
            .sql(format!("DELETE FROM {locks} WHERE name = ?"));
        sqlx::query(&delete)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(q("record who holds the isolation lock"))?;
        let insert = self.dialect.sql(format!(
            "INSERT INTO {locks} (name, owner, expires_at) VALUES (?, ?, ?)"
        ));
        sqlx::query(&insert)
            .bind(key)
            .bind(who)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("record who holds the isolation lock"))?;
        Ok(())
    }
}

/// A named lock's, rate limit's or throttle's rows, by the stored form of its name (made only by
/// [`Ledger::keyed`]): the statements on them bind `key` and nothing else for a name.
struct Keyed<'a> {
    ledger: &'a Ledger,
    key: Cow<'a, str>,
}

impl Keyed<'_> {
    /// See [`Ledger::try_named_lock`].
    async fn take_lock(&self, owner: &str, hold: Duration) -> Result<bool, LedgerError> {
        let (ledger, name) = (self.ledger, self.key.as_ref());
        // Drop an expired holder, then insert; the primary key makes the insert the atomic step. Both by the
        // database's clock.
        let (locks, now) = (ledger.table("locks"), ledger.dialect.now());
        let expire = ledger.dialect.sql(format!(
            "DELETE FROM {locks} WHERE name = ? AND expires_at < {now}"
        ));
        sqlx::query(&expire)
            .bind(name)
            .execute(&ledger.pool)
            .await
            .map_err(q("expire a lock"))?;
        let insert = ledger.dialect.insert_ignore(format!(
            "INSERT INTO {locks} (name, owner, expires_at) VALUES (?, ?, {now} + ?)"
        ));
        let done = sqlx::query(&insert)
            .bind(name)
            .bind(owner)
            .bind(hold.as_millis() as i64)
            .execute(&ledger.pool)
            .await
            .map_err(q("take a lock"))?;
        Ok(done.rows_affected() == 1)
    }

    /// See [`Ledger::release_named_lock`].
    async fn release_lock(&self, owner: &str) -> Result<(), LedgerError> {
        self.ledger
            .delete_lock_row(&self.key, owner, "release a lock")
            .await
    }

    /// See [`Ledger::rate_limit_hit`].
    async fn rate_limit_hit(&self, window_start: i64, limit: u32) -> Result<bool, LedgerError> {
        let (ledger, name) = (self.ledger, self.key.as_ref());
        let rate_limits = ledger.table("rate_limits");
        let open = ledger.dialect.insert_ignore(format!(
            "INSERT INTO {rate_limits} (name, window_start, hits) VALUES (?, ?, 0)"
        ));
        sqlx::query(&open)
            .bind(name)
            .bind(window_start)
            .execute(&ledger.pool)
            .await
            .map_err(q("open a rate-limit window"))?;
        let hit = ledger.dialect.sql(format!(
            "UPDATE {rate_limits} SET hits = hits + 1 WHERE name = ? AND window_start = ? AND hits < ?"
        ));
        let done = sqlx::query(&hit)
            .bind(name)
            .bind(window_start)
            .bind(i64::from(limit))
            .execute(&ledger.pool)
            .await
            .map_err(q("count against a rate limit"))?;
        Ok(done.rows_affected() == 1)
    }

    /// See [`Ledger::throttle_until`].
    async fn throttle_until(&self) -> Result<i64, LedgerError> {
        let (ledger, name) = (self.ledger, self.key.as_ref());
        let throttles = ledger.table("throttles");
        let sql = ledger
            .dialect
            .sql(format!("SELECT open_until FROM {throttles} WHERE name = ?"));
        let until: Option<i64> = sqlx::query_scalar(&sql)
            .bind(name)
            .fetch_optional(&ledger.pool)
            .await
            .map_err(q("read a throttle"))?;
        Ok(until.unwrap_or(0))
    }

    /// See [`Ledger::throttle_failure`].
    async fn throttle_failure(&self, max: u32, window_ms: i64) -> Result<(), LedgerError> {
        let (ledger, name) = (self.ledger, self.key.as_ref());
        let throttles = ledger.table("throttles");
        let insert = ledger.dialect.insert_ignore(format!(
            "INSERT INTO {throttles} (name, failures, window_start, open_until) VALUES (?, 0, ?, 0)"
        ));
        let now = ledger.db_now().await?;
        sqlx::query(&insert)
            .bind(name)
            .bind(now)
            .execute(&ledger.pool)
            .await
            .map_err(q("record a throttled failure"))?;
        let failure = ledger.dialect.sql(format!(
            "UPDATE {throttles} SET failures = CASE WHEN window_start < ? THEN 1 ELSE failures + 1 END, \
             window_start = CASE WHEN window_start < ? THEN ? ELSE window_start END WHERE name = ?"
        ));
        let window_start = now - window_ms;
        sqlx::query(&failure)
            .bind(window_start)
            .bind(window_start)
            .bind(now)
            .bind(name)
            .execute(&ledger.pool)
            .await
            .map_err(q("record a throttled failure"))?;
        let close = ledger.dialect.sql(format!(
            "UPDATE {throttles} SET open_until = ?, failures = 0, window_start = ? WHERE name = ? AND failures >= ?"
        ));
        sqlx::query(&close)
            .bind(now + window_ms)
            .bind(now)
            .bind(name)
            .bind(i64::from(max))
            .execute(&ledger.pool)
            .await
            .map_err(q("close a throttle"))?;
        Ok(())
    }
}

/// The `--isolate` lock; released by [`IsolationLock::release`] (or when the process dies).
pub struct IsolationLock {
    ledger: Ledger,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    key: String,
    owner: String,
}

impl IsolationLock {
    /// Keeps a SQLite lock row alive; a no-op on servers, whose locks live as long as the connection.
    pub async fn renew(&mut self) -> Result<(), LedgerError> {
        if self.conn.is_none() {
            let locks = self.ledger.table("locks");
            let sql = self.ledger.dialect.sql(format!(
                "UPDATE {locks} SET expires_at = ? WHERE name = ? AND owner = ?"
            ));
            sqlx::query(&sql)
                .bind(now_ms() + LOCK_TTL.as_millis() as i64)
                .bind(self.key.as_str())
                .bind(self.owner.as_str())
                .execute(&self.ledger.pool)
                .await
                .map_err(q("renew the isolation lock"))?;
        }
        Ok(())
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<(), LedgerError> {
        match self.conn.take() {
            Some(mut conn) => {
                let sql = self
                    .ledger
                    .dialect
                    .sql(if self.ledger.dialect == Dialect::Postgres {
                        "SELECT pg_advisory_unlock(?)"
                    } else {
                        "SELECT RELEASE_LOCK(?)"
                    });
                let query = sqlx::query(&sql);
                let query = if self.ledger.dialect == Dialect::Postgres {
                    query.bind(sequencer_core::meta::checksum(self.key.as_bytes()) as i64)
                } else {
                    query.bind(self.key.clone())
                };
                // The row saying who holds it goes first, while the lock still keeps others from writing theirs.
                self.ledger
                    .delete_lock_row(&self.key, &self.owner, "release the isolation lock")
                    .await?;
                query
                    .execute(&mut *conn)
                    .await
                    .map_err(q("release the isolation lock"))?;
            }
            None => {
                self.ledger
                    .delete_lock_row(&self.key, &self.owner, "release the isolation lock")
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{stored_key, KEY_COLUMN_CHARS};

    #[test]
    fn a_key_is_stored_as_written_up_to_the_column_and_hashed_past_it() {
        let fits = "é".repeat(KEY_COLUMN_CHARS);
        assert_eq!(stored_key(&fits), fits.as_str());
        let (a, b) = (format!("{fits}a"), format!("{fits}b"));
        let (sa, sb) = (stored_key(&a), stored_key(&b));
        assert_ne!(sa, sb, "keys sharing the column's width stay apart");
        assert_eq!(sa, stored_key(&a), "the same key, the same stored form");
        assert_eq!(sa.chars().count(), 172);
        assert!(
            sa.starts_with(&"é".repeat(100)) && sa.contains("~sha256:"),
            "{sa}"
        );
    }
}
