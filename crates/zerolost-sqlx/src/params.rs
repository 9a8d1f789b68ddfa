//! Typed parameters and columns that every driver binds and reads the same way, so the
//! stores are written once over [`Driver`](crate::driver::Driver) without repeating sqlx's
//! per-type bounds at each use.

use sqlx::error::BoxDynError;
use sqlx::{Arguments, ColumnIndex, Decode, Encode, Row, Type};
use uuid::Uuid;

/// One bound parameter of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A message id or token.
    Uuid(Uuid),
    /// A BIGINT: epoch milliseconds, durations, limits.
    Int(i64),
    /// An INT: attempts.
    Int32(i32),
    /// A SMALLINT: status and state codes.
    Int16(i16),
    /// Text.
    Text(&'a str),
    /// Nullable text.
    OptText(Option<&'a str>),
    /// A BLOB / BYTEA.
    Bytes(&'a [u8]),
    /// An id list, bound as the driver's id filter wants it
    /// ([`Driver::bind_ids`](crate::driver::Driver::bind_ids)).
    Ids(&'a [Uuid]),
}

/// Arguments that take every [`Param`] but an id list.
pub trait Params: Arguments {
    /// Appends one scalar parameter.
    fn push(&mut self, param: Param<'_>) -> Result<(), BoxDynError>;
}

impl<A: Arguments> Params for A
where
    Uuid: for<'q> Encode<'q, A::Database> + Type<A::Database>,
    i64: for<'q> Encode<'q, A::Database> + Type<A::Database>,
    i32: for<'q> Encode<'q, A::Database> + Type<A::Database>,
    i16: for<'q> Encode<'q, A::Database> + Type<A::Database>,
    for<'s> &'s str: Encode<'s, A::Database> + Type<A::Database>,
    for<'s> Option<&'s str>: Encode<'s, A::Database> + Type<A::Database>,
    for<'s> &'s [u8]: Encode<'s, A::Database> + Type<A::Database>,
{
    fn push(&mut self, param: Param<'_>) -> Result<(), BoxDynError> {
        match param {
            Param::Uuid(v) => self.add(v),
            Param::Int(v) => self.add(v),
            Param::Int32(v) => self.add(v),
            Param::Int16(v) => self.add(v),
            Param::Text(v) => self.add(v),
            Param::OptText(v) => self.add(v),
            Param::Bytes(v) => self.add(v),
            Param::Ids(_) => Err("an id list is bound by the driver".into()),
        }
    }
}

/// Rows whose columns read as the stores' types, by column name.
pub trait Columns: Row {
    /// A UUID column.
    fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error>;
    /// A BIGINT column.
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    /// A nullable BIGINT column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    /// An INT column.
    fn int32(&self, column: &str) -> Result<i32, sqlx::Error>;
    /// A SMALLINT column.
    fn int16(&self, column: &str) -> Result<i16, sqlx::Error>;
    /// A text column.
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    /// A BLOB / BYTEA column.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R: Row> Columns for R
where
    for<'c> &'c str: ColumnIndex<R>,
    Uuid: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i32: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i16: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn uuid(&self, column: &str) -> Result<Uuid, sqlx::Error> {
        self.try_get(column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }
    fn int32(&self, column: &str) -> Result<i32, sqlx::Error> {
        self.try_get(column)
    }
    fn int16(&self, column: &str) -> Result<i16, sqlx::Error> {
        self.try_get(column)
    }
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }
}
