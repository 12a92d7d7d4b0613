//! Column types whose stored form differs between the backends, so that one SQL text binds and
//! reads them on either: PostgreSQL's native `uuid` and `timestamptz`; on SQLite, UUIDs as
//! hyphenated TEXT and times as INTEGER microseconds since the Unix epoch (exact, and ordered
//! like the PostgreSQL timestamps) — not the 16-byte BLOB and RFC 3339 text sqlx would write.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

/// A `uuid` column (TEXT on SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub Uuid);

/// A `timestamptz` column (INTEGER microseconds on SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub DateTime<Utc>);

impl From<Id> for Uuid {
    fn from(id: Id) -> Self {
        id.0
    }
}

impl From<Time> for DateTime<Utc> {
    fn from(time: Time) -> Self {
        time.0
    }
}

/// Implements `Type`, `Encode` and `Decode` of `$wrapper` on `$db` through `$stored`, the
/// type the column holds there, with the conversions `$to` and `$from`.
macro_rules! stored_as {
    ($wrapper:ty, $db:ty, $stored:ty, $to:expr, $from:expr) => {
        impl Type<$db> for $wrapper {
            fn type_info() -> <$db as Database>::TypeInfo {
                <$stored as Type<$db>>::type_info()
            }

            fn compatible(ty: &<$db as Database>::TypeInfo) -> bool {
                <$stored as Type<$db>>::compatible(ty)
            }
        }

        impl Encode<'_, $db> for $wrapper {
            fn encode_by_ref(&self, buf: &mut <$db as Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
                let to: fn(&$wrapper) -> $stored = $to;
                Encode::<$db>::encode(to(self), buf)
            }
        }

        impl<'r> Decode<'r, $db> for $wrapper {
            fn decode(value: <$db as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let from: fn($stored) -> Result<$wrapper, BoxDynError> = $from;
                from(<$stored as Decode<'r, $db>>::decode(value)?)
            }
        }
    };
}

stored_as!(Id, Postgres, Uuid, |id| id.0, |id| Ok(Id(id)));
stored_as!(Id, Sqlite, Hyphenated, |id| id.0.hyphenated(), |id| Ok(Id(
    id.into_uuid()
)));
stored_as!(Time, Postgres, DateTime<Utc>, |at| at.0, |at| Ok(Time(at)));
stored_as!(Time, Sqlite, i64, |at| at.0.timestamp_micros(), |micros| {
    DateTime::from_timestamp_micros(micros)
        .map(Time)
        .ok_or_else(|| format!("{micros} µs is out of range").into())
});
