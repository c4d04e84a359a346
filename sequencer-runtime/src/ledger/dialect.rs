//! The backends, and the one way a ledger statement is built: written once with `?` placeholders, and numbered
//! `$1`, `$2`, … for PostgreSQL when it is built ([`Dialect::sql`]), so no statement can miss its numbering.

use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::Row;

/// The database behind a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: embedded, single host.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL 8 or MariaDB 10.6+.
    MySql,
}

impl Dialect {
    /// The backend of a URL.
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            _ => None,
        }
    }

    /// Whether this build has the backend's driver (its cargo feature: `sqlite`, `postgres`, `mysql`).
    pub fn compiled(self) -> bool {
        match self {
            Dialect::Sqlite => cfg!(feature = "sqlite"),
            Dialect::Postgres => cfg!(feature = "postgres"),
            Dialect::MySql => cfg!(feature = "mysql"),
        }
    }

    /// The cargo feature that compiles the backend's driver.
    pub fn feature(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    /// What to do about a backend this build lacks, for messages.
    pub(crate) fn missing_feature(self) -> String {
        format!(
            "this build of sequencer has no {} driver: enable the `{}` feature of the `sequencer` dependency \
             (`sequencer = {{ version = \"…\", features = [\"{}\"] }}`) and build again",
            self.name(),
            self.feature(),
            self.feature()
        )
    }

    /// The backend's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL / MariaDB",
        }
    }

    /// A statement written with `?` placeholders, as this backend takes it: PostgreSQL's are numbered. Every
    /// statement the ledger runs is built here, whole (after its parts are joined), right where it runs.
    pub(crate) fn sql(self, statement: impl Into<String>) -> String {
        let statement = statement.into();
        match self {
            Dialect::Postgres => number_placeholders(&statement),
            Dialect::Sqlite | Dialect::MySql => statement,
        }
    }

    /// The database's clock, in Unix milliseconds, as an SQL expression. Every lease, lock expiry, due time and
    /// recorded time is computed with it, in the statement that writes or compares it, so that hosts whose clocks
    /// disagree never misjudge each other's claims. (SQLite is embedded: its clock is the host's.)
    pub(crate) fn now(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        }
    }

    /// [`Dialect::now`] read once per statement, for a comparison an index can serve: PostgreSQL's clock is
    /// volatile, so a column compared with it directly is filtered row by row after the index scan (a take read
    /// and sorted the whole queue); as an uncorrelated subquery it is one value, the scan's bound.
    pub(crate) fn now_once(self) -> String {
        match self {
            Dialect::Postgres => format!("(SELECT {})", self.now()),
            Dialect::Sqlite | Dialect::MySql => self.now().to_owned(),
        }
    }

    /// An `INSERT` that leaves rows whose key exists alone, in the backend's words; built by [`Dialect::sql`].
    pub(crate) fn insert_ignore(self, insert: impl Into<String>) -> String {
        let insert = insert.into();
        self.sql(match self {
            Dialect::Sqlite => insert.replacen("INSERT", "INSERT OR IGNORE", 1),
            Dialect::Postgres => format!("{insert} ON CONFLICT DO NOTHING"),
            Dialect::MySql => insert.replacen("INSERT", "INSERT IGNORE", 1),
        })
    }
}

/// `?` → `$1`, `$2`, …: SQL written once with `?` placeholders, for PostgreSQL (the ledger writes its statements
/// so; so may operations that run the same SQL on every backend through `ctx.pool()`). Every `?` is replaced,
/// so keep them out of string literals.
///
/// ```
/// use sequencer::ledger::number_placeholders;
///
/// assert_eq!(number_placeholders("UPDATE t SET a = ? WHERE id = ?"), "UPDATE t SET a = $1 WHERE id = $2");
/// ```
pub fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A TEXT column. Through sqlx's `Any` driver MySQL / MariaDB report TEXT as a blob type, so that case is read
/// as bytes (always UTF-8: the ledger only writes strings).
pub(super) fn text(r: &AnyRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    match r.try_get::<Option<String>, _>(i) {
        Ok(v) => Ok(v),
        Err(_) => Ok(r
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())),
    }
}

/// `as_str`, `Display` and `FromStr` of an enum the ledger stores by name (a status), from one list of its
/// names, so that what is written and what is read back cannot drift apart.
macro_rules! stored_by_name {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal,)+ }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)+];

            /// The name stored in the ledger.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " `{}`"), other)),
                }
            }
        }
    };
}
pub(super) use stored_by_name;

/// A column holding one of our names (a status), read back as its type.
pub(super) fn parsed<T: FromStr<Err = String>>(r: &AnyRow, i: usize) -> Result<T, sqlx::Error> {
    r.try_get::<String, _>(i)?
        .parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn only_postgres_numbers_placeholders() {
        let s = || String::from("UPDATE t SET a = ? WHERE id = ?");
        assert_eq!(Dialect::Sqlite.sql(s()), s());
        assert_eq!(Dialect::MySql.sql(s()), s());
        assert_eq!(
            Dialect::Postgres.sql(s()),
            "UPDATE t SET a = $1 WHERE id = $2"
        );
    }

    #[test]
    fn a_statement_built_from_parts_is_numbered_whole() {
        let values = ["(?, ?)"; 3].join(", ");
        assert_eq!(
            Dialect::Postgres.insert_ignore(format!("INSERT INTO t (a, b) VALUES {values}")),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            Dialect::Sqlite.insert_ignore("INSERT INTO t (a) VALUES (?)"),
            "INSERT OR IGNORE INTO t (a) VALUES (?)"
        );
        assert_eq!(
            Dialect::MySql.insert_ignore("INSERT INTO t (a) VALUES (?)"),
            "INSERT IGNORE INTO t (a) VALUES (?)"
        );
    }
}
