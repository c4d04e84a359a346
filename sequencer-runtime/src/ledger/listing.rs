//! Reading the operations table a page at a time (the dashboard's operations list): the latest run of each
//! operation in `(timestamp, name)` order after a cursor, its filters (status, names, text) inside the statement
//! and its length bounded by `LIMIT`, so that a page costs the same at 100 rows as at 100,000; which of some
//! names have rows; the latest runs' statuses; a run's progress samples and earlier runs' durations.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::connection::Ledger;
use super::dialect::{parsed, Dialect};
use super::error::{q, LedgerError};
use super::runs::{row, LedgerRow, Status, ROW_COLUMNS};

/// How many names one `IN (..)` list binds (every backend takes far more; statements stay short).
pub const NAMES_PER_STATEMENT: usize = 500;

/// How long a page's statement may run (PostgreSQL, MySQL 8) before the database stops it.
const PAGE_TIMEOUT_MS: u64 = 5_000;

/// One page of the latest runs: see [`Ledger::latest_rows_page`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RowsPage<'a> {
    /// Only rows after this `(timestamp, name)` key (names compared byte by byte on every backend).
    pub after: Option<(i64, &'a str)>,
    /// Only rows at or before this key.
    pub until: Option<(i64, &'a str)>,
    /// Only latest runs in this status.
    pub status: Option<Status>,
    /// Only these operations (at most [`NAMES_PER_STATEMENT`]).
    pub names: Option<&'a [&'a str]>,
    /// Only rows whose name, or last error, contains this text (case-insensitive).
    pub text: Option<&'a str>,
    /// Operations whose errors the text must not search (`encrypted` ones).
    pub errors_hidden: &'a [&'a str],
    /// At most this many rows.
    pub limit: usize,
}

/// A progress sample: how far a run was at a time (the database's clock, Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSample {
    /// When.
    pub at: i64,
    /// `ctx.progress(done, _)`.
    pub done: i64,
    /// `ctx.progress(_, total)`.
    pub total: i64,
}

/// `name` compared byte by byte: the order Rust's `str` has, whatever the column's collation.
fn by_bytes(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => column.to_owned(),
        Dialect::Postgres => format!("{column} COLLATE \"C\""),
        Dialect::MySql => format!("{column} COLLATE utf8mb4_bin"),
    }
}

/// `text` as a `LIKE` pattern that finds it anywhere, lower-cased, with `!` escaping the wildcards.
fn contains_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A value bound to a page's statement.
enum Bind {
    Int(i64),
    Text(String),
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Ledger {
    /// The latest run of each operation matching `page` (task runs left out), in `(timestamp, name)` order, at most
    /// `page.limit`.
    /// The filters are in the statement; with the `_listing` and `_by_status` indexes (schema version 13) a page
    /// reads about as many rows as it returns, unless a text filter matches few.
    pub async fn latest_rows_page(
        &self,
        page: &RowsPage<'_>,
    ) -> Result<Vec<LedgerRow>, LedgerError> {
        if page.names.is_some_and(|n| n.is_empty()) {
            return Ok(Vec::new());
        }
        if self.dialect != Dialect::MySql {
            let name = by_bytes(self.dialect, "o.name");
            let order = format!(" ORDER BY o.op_timestamp, {name} LIMIT {}", page.limit);
            return self
                .fetch_page(self.page_statement(page, None, &order))
                .await;
        }
        // MySQL's index orders names by the column's collation, not byte by byte: the rows are read in timestamp
        // order through the index, the last timestamp's rows whole, and ordered here.
        let order = format!(" ORDER BY o.op_timestamp LIMIT {}", page.limit);
        let mut rows = self
            .fetch_page(self.page_statement(page, None, &order))
            .await?;
        if rows.len() == page.limit {
            if let Some(last) = rows.last().map(|r| r.timestamp) {
                rows.retain(|r| r.timestamp != last);
                let rest = self.page_statement(page, Some(last), "");
                rows.extend(self.fetch_page(rest).await?);
            }
        }
        rows.sort_by(|a, b| {
            (a.timestamp, a.name.as_bytes()).cmp(&(b.timestamp, b.name.as_bytes()))
        });
        rows.truncate(page.limit);
        Ok(rows)
    }

    /// The statement of a page (`at`: only this timestamp) and its values, `tail` (order, limit) at its end.
    fn page_statement(
        &self,
        page: &RowsPage<'_>,
        at: Option<i64>,
        tail: &str,
    ) -> (String, Vec<Bind>) {
        let ops = self.table("operations");
        let name = by_bytes(self.dialect, "o.name");
        // MySQL 8 stops the statement after the hint's time (MariaDB reads it as a comment).
        let hint = if self.dialect == Dialect::MySql {
            format!("/*+ MAX_EXECUTION_TIME({PAGE_TIMEOUT_MS}) */ ")
        } else {
            String::new()
        };
        // Task runs (rows with `args`, all at timestamp 0; no operation has that timestamp) are not operations: the
        // range on the timestamp skips them in the index before any is read. (Not `args IS NULL`: without fresh
        // statistics PostgreSQL estimates it matches few rows, and scans and sorts the whole table instead.)
        let mut sql = format!(
            "SELECT {hint}{ROW_COLUMNS} FROM {ops} o WHERE o.op_timestamp > 0 AND NOT EXISTS \
             (SELECT 1 FROM {ops} n WHERE n.name = o.name AND n.run > o.run)"
        );
        let mut binds: Vec<Bind> = Vec::new();
        if let Some((ts, after)) = page.after {
            sql.push_str(&format!(
                " AND o.op_timestamp >= ? AND (o.op_timestamp > ? OR {name} > ?)"
            ));
            binds.extend([Bind::Int(ts), Bind::Int(ts), Bind::Text(after.to_owned())]);
        }
        if let Some((ts, until)) = page.until {
            sql.push_str(&format!(
                " AND o.op_timestamp <= ? AND (o.op_timestamp < ? OR {name} <= ?)"
            ));
            binds.extend([Bind::Int(ts), Bind::Int(ts), Bind::Text(until.to_owned())]);
        }
        if let Some(ts) = at {
            sql.push_str(" AND o.op_timestamp = ?");
            binds.push(Bind::Int(ts));
        }
        if let Some(status) = page.status {
            sql.push_str(" AND o.status = ?");
            binds.push(Bind::Text(status.as_str().to_owned()));
        }
        if let Some(names) = page.names {
            sql.push_str(&format!(" AND o.name IN ({})", marks(names.len())));
            binds.extend(names.iter().map(|n| Bind::Text((*n).to_owned())));
        }
        if let Some(text) = page.text.map(str::trim).filter(|t| !t.is_empty()) {
            let pattern = contains_pattern(text);
            let hidden = if page.errors_hidden.is_empty() {
                String::new()
            } else {
                format!(" AND o.name NOT IN ({})", marks(page.errors_hidden.len()))
            };
            sql.push_str(&format!(
                " AND (LOWER(o.name) LIKE ? ESCAPE '!' OR (o.last_error IS NOT NULL AND LOWER(o.last_error) LIKE ? ESCAPE '!'{hidden}))"
            ));
            binds.extend([Bind::Text(pattern.clone()), Bind::Text(pattern)]);
            binds.extend(
                page.errors_hidden
                    .iter()
                    .map(|n| Bind::Text((*n).to_owned())),
            );
        }
        sql.push_str(tail);
        (self.dialect.sql(sql), binds)
    }

    /// Runs a page's statement, bounded in time (PostgreSQL: `statement_timeout`; MySQL 8: the hint).
    async fn fetch_page(
        &self,
        (sql, binds): (String, Vec<Bind>),
    ) -> Result<Vec<LedgerRow>, LedgerError> {
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let what =
            "read a page of the ledger (a statement is stopped after 5 s: narrow the filter)";
        let rows = if self.dialect == Dialect::Postgres {
            // A bounded statement: a text filter that matches few rows reads them all.
            let mut tx = self.pool.begin().await.map_err(q(what))?;
            let limit = self
                .dialect
                .sql(format!("SET LOCAL statement_timeout = {PAGE_TIMEOUT_MS}"));
            sqlx::query(&limit)
                .execute(&mut *tx)
                .await
                .map_err(q(what))?;
            let rows = query.fetch_all(&mut *tx).await.map_err(q(what))?;
            tx.commit().await.map_err(q(what))?;
            rows
        } else {
            query.fetch_all(&self.pool).await.map_err(q(what))?
        };
        // An unreadable row is left out, as `rows` leaves it out (a status written by a newer version, a hand edit).
        Ok(rows
            .iter()
            .filter_map(|r| {
                row(r)
                    .map_err(|e| {
                        tracing::warn!("a ledger row cannot be read and is not listed: {e}")
                    })
                    .ok()
            })
            .collect())
    }

    /// Which of `names` have a row in the ledger (any run).
    pub async fn recorded_among(&self, names: &[&str]) -> Result<HashSet<String>, LedgerError> {
        let ops = self.table("operations");
        let mut out = HashSet::new();
        for chunk in names.chunks(NAMES_PER_STATEMENT) {
            let sql = self.dialect.sql(format!(
                "SELECT DISTINCT name FROM {ops} WHERE name IN ({})",
                marks(chunk.len())
            ));
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for n in chunk {
                query = query.bind(*n);
            }
            out.extend(
                query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(q("read which operations the ledger has"))?,
            );
        }
        Ok(out)
    }

    /// The names of the ledger's rows (any run) whose `(timestamp, name)` key lies from `from` to `to`, both
    /// included: which of the registry's operations in that stretch have rows, in one range read of the
    /// `_listing` index.
    pub async fn names_between(
        &self,
        from: (i64, &str),
        to: (i64, &str),
    ) -> Result<HashSet<String>, LedgerError> {
        let ops = self.table("operations");
        let name = by_bytes(self.dialect, "name");
        let sql = self.dialect.sql(format!(
            "SELECT name FROM {ops} WHERE op_timestamp >= ? AND op_timestamp <= ? \
             AND (op_timestamp > ? OR {name} >= ?) AND (op_timestamp < ? OR {name} <= ?)"
        ));
        let names: Vec<String> = sqlx::query_scalar(&sql)
            .bind(from.0)
            .bind(to.0)
            .bind(from.0)
            .bind(from.1)
            .bind(to.0)
            .bind(to.1)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read which operations the ledger has"))?;
        Ok(names.into_iter().collect())
    }

    /// The status of every operation's latest run (task runs left out), by name: what the dashboard's counts are
    /// made of (it caches them; this reads the whole table).
    pub async fn latest_statuses(&self) -> Result<HashMap<String, Status>, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT name, status FROM {ops} o WHERE o.args IS NULL AND NOT EXISTS \
             (SELECT 1 FROM {ops} n WHERE n.name = o.name AND n.run > o.run)"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("count the ledger's operations"))?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            // A status this version cannot read is left out of the counts, as `rows` leaves its row out.
            if let (Ok(name), Ok(status)) = (r.try_get::<String, _>(0), parsed::<Status>(r, 1)) {
                out.insert(name, status);
            }
        }
        Ok(out)
    }

    /// The progress samples of runs `(name, run)` taken at or after `since` (the database's clock, Unix
    /// milliseconds), oldest first, by run.
    pub async fn progress_samples(
        &self,
        runs: &[(&str, i64)],
        since: i64,
    ) -> Result<HashMap<(String, i64), Vec<ProgressSample>>, LedgerError> {
        let samples = self.table("progress_samples");
        let mut out: HashMap<(String, i64), Vec<ProgressSample>> = HashMap::new();
        for chunk in runs.chunks(NAMES_PER_STATEMENT) {
            let which = vec!["(name = ? AND run = ?)"; chunk.len()].join(" OR ");
            let sql = self.dialect.sql(format!(
                "SELECT name, run, at, done, total FROM {samples} WHERE at >= ? AND ({which}) ORDER BY at"
            ));
            let mut query = sqlx::query(&sql).bind(since);
            for (name, run) in chunk {
                query = query.bind(*name).bind(*run);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(q("read progress samples"))?;
            for r in &rows {
                let read = || -> Result<_, sqlx::Error> {
                    let key: (String, i64) = (r.try_get(0)?, r.try_get(1)?);
                    let sample = ProgressSample {
                        at: r.try_get(2)?,
                        done: r.try_get(3)?,
                        total: r.try_get(4)?,
                    };
                    Ok((key, sample))
                };
                let (key, sample) = read().map_err(q("read progress samples"))?;
                out.entry(key).or_default().push(sample);
            }
        }
        Ok(out)
    }

    /// The duration of the latest completed run before run `before` of each of `runs` `(name, before)`, where
    /// one was recorded: how long the operation took last time.
    pub async fn earlier_durations(
        &self,
        runs: &[(&str, i64)],
    ) -> Result<HashMap<String, i64>, LedgerError> {
        let ops = self.table("operations");
        let mut out = HashMap::new();
        for chunk in runs.chunks(NAMES_PER_STATEMENT) {
            let which = vec!["(name = ? AND run < ?)"; chunk.len()].join(" OR ");
            let sql = self.dialect.sql(format!(
                "SELECT name, run, duration_ms FROM {ops} WHERE status = 'completed' AND duration_ms IS NOT NULL AND ({which}) ORDER BY run"
            ));
            let mut query = sqlx::query(&sql);
            for (name, run) in chunk {
                query = query.bind(*name).bind(*run);
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(q("read earlier runs' durations"))?;
            for r in &rows {
                let read =
                    || -> Result<(String, i64), sqlx::Error> { Ok((r.try_get(0)?, r.try_get(2)?)) };
                let (name, ms) = read().map_err(q("read earlier runs' durations"))?;
                out.insert(name, ms); // ordered by run: the latest wins
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_text_filter_escapes_the_wildcards() {
        assert_eq!(super::contains_pattern("50%_Off!"), "%50!%!_off!!%");
    }
}
