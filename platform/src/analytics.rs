//! What the services' analytics share: a range of whole days in a time zone, checked once, and
//! the one way both databases group rows by time.
//!
//! Rows are grouped by 15-minute UTC buckets in SQL (the same arithmetic on both backends), and
//! the buckets are given their local day here, with the time-zone database: every time zone's
//! offset is a whole number of quarter hours, so a bucket never straddles a local midnight, and
//! SQLite needs no time-zone support of its own.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use ordermesh_proto::common;

use crate::db::Database;
use crate::{ServiceError, Violations};

/// The longest range a service answers for (the BFF allows less, `BFF_ANALYTICS_MAX_DAYS`).
pub const MAX_DAYS: i64 = 3660;
/// Width of the grouping buckets.
pub const BUCKET_SECONDS: i64 = 900;

/// Whole days `start..=end` in `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub zone: Tz,
}

impl DayRange {
    /// Checks `range` (field `field`): dates as `YYYY-MM-DD`, `end` not before `start` and at
    /// most `max_days` after it, an IANA time zone (empty: UTC).
    pub fn parse(range: Option<&common::DateRange>, field: &str, max_days: i64) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let Some(range) = range else {
            v.add(field, "is required");
            return Err(v.into_result().expect_err("a violation"));
        };
        let date = |v: &mut Violations, name: &str, raw: &str| {
            // chrono also reads `2026-1-1`; the contract is `YYYY-MM-DD`.
            let parsed = (raw.len() == 10)
                .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
                .flatten();
            v.check(parsed.is_some(), format!("{field}.{name}"), "must be a date YYYY-MM-DD");
            parsed
        };
        let start = date(&mut v, "start_date", &range.start_date);
        let end = date(&mut v, "end_date", &range.end_date);
        let zone = if range.time_zone.is_empty() {
            Some(Tz::UTC)
        } else {
            range.time_zone.parse::<Tz>().ok()
        };
        v.check(
            zone.is_some(),
            format!("{field}.time_zone"),
            "must be an IANA time zone such as Europe/Berlin",
        );
        if let (Some(start), Some(end)) = (start, end) {
            let days = (end - start).num_days();
            v.check(days >= 0, format!("{field}.end_date"), "must not be before start_date");
            v.check(
                days < max_days,
                format!("{field}.end_date"),
                format!("must be at most {max_days} days from start_date"),
            );
        }
        v.into_result()?;
        Ok(Self {
            start: start.expect("checked"),
            end: end.expect("checked"),
            zone: zone.expect("checked"),
        })
    }

    /// The instants the range covers: the start of its first day, inclusive, to the start of
    /// the day after its last, exclusive.
    pub fn instants(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.midnight(self.start), self.midnight(self.end + Duration::days(1)))
    }

    /// The first instant of `day` in the zone (a day whose midnight a clock change skips starts
    /// when the clocks do).
    fn midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        let local = day.and_time(NaiveTime::MIN);
        match self.zone.from_local_datetime(&local).earliest() {
            Some(at) => at.with_timezone(&Utc),
            None => {
                let later = local + Duration::hours(1);
                self.zone
                    .from_local_datetime(&later)
                    .earliest()
                    .map(|at| at.with_timezone(&Utc))
                    .unwrap_or_else(|| Utc.from_utc_datetime(&local))
            }
        }
    }

    /// The local day of a bucket (as [`bucket_sql`] numbers them).
    pub fn day_of_bucket(&self, bucket: i64) -> NaiveDate {
        let at = DateTime::from_timestamp(bucket * BUCKET_SECONDS, 0).unwrap_or_default();
        at.with_timezone(&self.zone).date_naive()
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take_while(|day| *day <= self.end)
    }
}

/// How a time column is kept on SQLite (on PostgreSQL it is always a `timestamptz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteTime {
    /// sqlx's text form of a UTC time (`2026-01-31 12:00:00.123456+00:00`).
    Text,
    /// Microseconds since the epoch ([`crate::db::columns::Time`]).
    Micros,
}

/// The SQL expression numbering the 15-minute UTC bucket of time column `column` on `db`.
pub fn bucket_sql(db: &Database, column: &str, stored: SqliteTime) -> String {
    match (db.is_postgres(), stored) {
        (true, _) => format!("CAST(floor(extract(epoch FROM {column}) / {BUCKET_SECONDS}) AS bigint)"),
        (false, SqliteTime::Micros) => format!("({column} / {})", BUCKET_SECONDS * 1_000_000),
        // The first 19 characters are the UTC date and time to the second.
        (false, SqliteTime::Text) => {
            format!("(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) / {BUCKET_SECONDS})")
        }
    }
}

/// `YYYY-MM-DD`.
pub fn date_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str, zone: &str) -> Result<DayRange, ServiceError> {
        let range = common::DateRange {
            start_date: start.into(),
            end_date: end.into(),
            time_zone: zone.into(),
        };
        DayRange::parse(Some(&range), "range", 366)
    }

    #[test]
    fn a_range_is_whole_local_days() {
        let berlin = range("2026-03-28", "2026-03-29", "Europe/Berlin").unwrap();
        let (from, to) = berlin.instants();
        assert_eq!(from.to_rfc3339(), "2026-03-27T23:00:00+00:00");
        // The clocks go forward on the 29th: that day has 23 hours.
        assert_eq!(to.to_rfc3339(), "2026-03-29T22:00:00+00:00");
        assert_eq!(berlin.days().count(), 2);
        let bucket = from.timestamp() / BUCKET_SECONDS;
        assert_eq!(berlin.day_of_bucket(bucket), berlin.start);
        assert_eq!(berlin.day_of_bucket(bucket - 1), berlin.start.pred_opt().unwrap());
        let kathmandu = range("2026-01-01", "2026-01-01", "Asia/Kathmandu").unwrap();
        assert_eq!(
            kathmandu.instants().0.timestamp() % BUCKET_SECONDS,
            0,
            "+05:45 is whole quarters"
        );
        assert_eq!(range("2026-01-01", "2026-01-01", "").unwrap().zone, Tz::UTC);
    }

    #[test]
    fn bad_ranges_name_their_fields() {
        for (start, end, zone, field) in [
            ("2026-1-1", "2026-01-02", "UTC", "range.start_date"),
            ("2026-01-02", "2026-01-01", "UTC", "range.end_date"),
            ("2026-01-01", "2027-06-01", "UTC", "range.end_date"),
            ("2026-01-01", "2026-01-02", "Mars/Olympus", "range.time_zone"),
        ] {
            let Err(ServiceError::InvalidArgument(violations)) = range(start, end, zone) else {
                panic!("{start}..{end} {zone} accepted")
            };
            assert_eq!(violations[0].field, field);
        }
        assert!(DayRange::parse(None, "range", 366).is_err());
    }
}
