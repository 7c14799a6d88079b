//! Hand-written SQL that each connection prepares once. diesel caches a statement by its text
//! unless it is marked unsafe to cache, which `sql_query`, every `UPDATE` and every `IN` list
//! of its query builder always are; these statements bind every value, and every list as one
//! value (an array on PostgreSQL, JSON text on SQLite), so their text never depends on the
//! batch.

use std::borrow::Cow;
use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::connection::Connection;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A value bound to a [`Prepared`] statement.
trait Bound<DB: Backend> {
    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>;
}

/// A value of SQL type `ST`.
struct Typed<ST, T> {
    value: T,
    sql_type: PhantomData<ST>,
}

impl<DB, ST, T> Bound<DB> for Typed<ST, T>
where
    DB: Backend + HasSqlType<ST>,
    T: ToSql<ST, DB>,
{
    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.value)
    }
}

/// A statement with placeholders `$1`, `$2`, … each used once, in order, and their values;
/// each becomes the backend's own placeholder.
pub(crate) struct Prepared<'a, DB: Backend> {
    sql: Cow<'a, str>,
    binds: Vec<Box<dyn Bound<DB> + 'a>>,
}

impl<'a, DB: Backend> Prepared<'a, DB> {
    /// The statement `sql`, its values to follow with [`Prepared::bind`].
    pub(crate) fn new(sql: impl Into<Cow<'a, str>>) -> Self {
        Prepared {
            sql: sql.into(),
            binds: Vec::new(),
        }
    }

    /// `{head}unnest($1, …, $columns){tail}`: rows bound one array per column (PostgreSQL).
    #[cfg(feature = "postgres")]
    pub(crate) fn unnest(head: &str, columns: usize, tail: &str) -> Self {
        let arrays: Vec<String> = (1..=columns).map(|n| format!("${n}")).collect();
        Self::new(format!("{head}unnest({}){tail}", arrays.join(", ")))
    }

    /// Binds the next placeholder to `value`, of SQL type `ST`.
    pub(crate) fn bind<ST, T>(mut self, value: T) -> Self
    where
        DB: HasSqlType<ST>,
        ST: 'a,
        T: ToSql<ST, DB> + 'a,
    {
        self.binds.push(Box::new(Typed {
            value,
            sql_type: PhantomData::<ST>,
        }));
        self
    }
}

/// Where the first `$N` placeholder of `sql` starts and ends, and its number.
fn next_placeholder(sql: &str) -> Option<(usize, usize, usize)> {
    let bytes = sql.as_bytes();
    (0..bytes.len()).find_map(|at| {
        if bytes[at] != b'$' {
            return None;
        }
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let number = sql[at + 1..at + 1 + digits].parse().ok()?;
        Some((at, at + 1 + digits, number))
    })
}

/// The numbers of the `$N` placeholders in `sql`, in order of appearance.
fn placeholders(mut sql: &str) -> Vec<usize> {
    let mut numbers = Vec::new();
    while let Some((_, end, number)) = next_placeholder(sql) {
        numbers.push(number);
        sql = &sql[end..];
    }
    numbers
}

impl<DB: Backend> QueryFragment<DB> for Prepared<'_, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if placeholders(&self.sql) != (1..=self.binds.len()).collect::<Vec<_>>() {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "expected placeholders $1 to ${} each once, in order: {}",
                    self.binds.len(),
                    self.sql
                )
                .into(),
            ));
        }
        // diesel writes each bind's `$N` itself, numbering them in order as the text does.
        let mut rest: &str = &self.sql;
        for bind in &self.binds {
            let (start, end) =
                next_placeholder(rest).map_or((rest.len(), rest.len()), |p| (p.0, p.1));
            out.push_sql(&rest[..start]);
            rest = &rest[end..];
            bind.bind(&mut out)?;
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<DB: Backend> QueryId for Prepared<'_, DB> {
    type QueryId = ();
    // Cached by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> Query for Prepared<'_, DB> {
    type SqlType = Untyped;
}

impl<C: Connection> RunQueryDsl<C> for Prepared<'_, C::Backend> {}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_read_in_order() {
        assert_eq!(
            placeholders("SELECT $1, $2 FROM t WHERE x = ANY($3)"),
            [1, 2, 3]
        );
        assert_eq!(placeholders("SELECT '$' || $1"), [1]);
        assert_eq!(
            Prepared::<diesel::pg::Pg>::unnest("INSERT INTO t SELECT * FROM ", 3, " RETURNING id")
                .sql,
            "INSERT INTO t SELECT * FROM unnest($1, $2, $3) RETURNING id"
        );
    }
}
