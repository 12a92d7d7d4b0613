//! SQL shared by the stores of every service: the keyset clause of a List page and the read of
//! one row by key inside a transaction. Written once, generic over the backend.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Encode, FromRow, Postgres, QueryBuilder, Sqlite, Type};

use super::{StoreError, StoreResult};
use crate::events::Tx;

/// Which way a list is sorted by its two key columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Ascending,
    /// Newest first.
    Descending,
}

/// The sort key of a keyset-paginated list: two columns (the second unique, e.g. the id), as
/// written in its query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    columns: [&'static str; 2],
    order: SortOrder,
    byte_order: bool,
}

impl Keyset {
    pub const fn ascending(first: &'static str, second: &'static str) -> Self {
        Self {
            columns: [first, second],
            order: SortOrder::Ascending,
            byte_order: false,
        }
    }

    pub const fn descending(first: &'static str, second: &'static str) -> Self {
        Self {
            columns: [first, second],
            order: SortOrder::Descending,
            byte_order: false,
        }
    }

    /// Compares the first (text) column byte by byte on both backends: PostgreSQL's default
    /// collation may be linguistic, so it is asked for "C" (which its index must use too);
    /// SQLite's default, BINARY, already is byte order.
    pub const fn in_byte_order(self) -> Self {
        Self {
            byte_order: true,
            ..self
        }
    }

    /// Appends the rest of a page's query: ` AND (a, b) > ($n, $m) ORDER BY a, b LIMIT $k` —
    /// `<` and `DESC` when descending — with the condition only when the request continues
    /// after the key of the previous page's last row.
    pub fn push<DB, A, B>(&self, q: &mut QueryBuilder<DB>, after: Option<(A, B)>, limit: usize)
    where
        DB: sqlx::Database,
        A: for<'t> Encode<'t, DB> + Type<DB>,
        B: for<'t> Encode<'t, DB> + Type<DB>,
        i64: for<'t> Encode<'t, DB> + Type<DB>,
    {
        let [first, second] = self.columns;
        let collate = if self.byte_order && DB::NAME == "PostgreSQL" {
            " COLLATE \"C\""
        } else {
            ""
        };
        let (beyond, direction) = match self.order {
            SortOrder::Ascending => (">", ""),
            SortOrder::Descending => ("<", " DESC"),
        };
        if let Some((a, b)) = after {
            q.push(format_args!(" AND ({first}{collate}, {second}) {beyond} ("))
                .push_bind(a)
                .push(", ")
                .push_bind(b)
                .push(")");
        }
        q.push(format_args!(
            " ORDER BY {first}{collate}{direction}, {second}{direction} LIMIT "
        ))
        .push_bind(limit as i64);
    }
}

/// The row `sql` selects by its one parameter (`$1` = `key`), read in `tx` and converted to `T`;
/// `None` when there is none.
pub async fn fetch_optional_in<Row, T, K>(tx: &mut Tx, sql: String, key: K) -> StoreResult<Option<T>>
where
    Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    T: TryFrom<Row, Error = StoreError>,
    K: for<'t> Encode<'t, Postgres> + Type<Postgres> + for<'t> Encode<'t, Sqlite> + Type<Sqlite> + Send,
{
    let row: Option<Row> = crate::on_tx!(tx, |conn| {
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
    });
    row.map(T::try_from).transpose()
}
