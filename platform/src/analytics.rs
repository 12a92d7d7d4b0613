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
/// The widths, in buckets, of the units a rollup keeps a figure for: a quarter hour, a UTC day
/// and 30 UTC days, each unit starting at a multiple of its width. Each width divides the next,
/// so any range of buckets is exactly a union of units ([`cover`]), and a figure wanted only in
/// total (not per day) over a year is read from ~230 units instead of 35,040 buckets.
pub const SPANS: [i64; 3] = [1, 96, 96 * 30];

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

    /// The buckets the range covers, `[first, end)` (see [`DayRange::instants`]).
    pub fn buckets(&self) -> (i64, i64) {
        let (from, to) = self.instants();
        (bucket_of(from), bucket_of(to))
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
    bucket_sql_on(db.is_postgres(), column, stored)
}

/// [`bucket_sql`] on PostgreSQL (`postgres`) or SQLite, for a transaction's connection.
pub fn bucket_sql_on(postgres: bool, column: &str, stored: SqliteTime) -> String {
    match (postgres, stored) {
        (true, _) => format!("CAST(floor(extract(epoch FROM {column}) / {BUCKET_SECONDS}) AS bigint)"),
        (false, SqliteTime::Micros) => format!("({column} / {})", BUCKET_SECONDS * 1_000_000),
        // The first 19 characters are the UTC date and time to the second.
        (false, SqliteTime::Text) => {
            format!("(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) / {BUCKET_SECONDS})")
        }
    }
}

/// The 15-minute UTC bucket of `at`, numbered as [`bucket_sql`] numbers them.
pub fn bucket_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(BUCKET_SECONDS)
}

/// The units (`(span, start)`, one per width of [`SPANS`]) that contain `bucket`: a rollup
/// adds a change to each of them.
pub fn units_of(bucket: i64) -> [(i64, i64); SPANS.len()] {
    SPANS.map(|span| (span, bucket - bucket.rem_euclid(span)))
}

/// A `SELECT` of the units of one bucket as rows `(span, start)`, their values bound from
/// parameter `$first_param` on, two per unit in the order of [`units_of`].
pub fn units_sql(first_param: usize) -> String {
    (0..SPANS.len())
        .map(|i| {
            let n = first_param + 2 * i;
            format!(
                "SELECT CAST(${n} AS bigint) AS span, CAST(${} AS bigint) AS start",
                n + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The units of width `span` whose start is in `first..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitRun {
    pub span: i64,
    pub first: i64,
    pub end: i64,
}

/// The fewest units that together are exactly the buckets `first..end`: the widest units that
/// fit in the middle, narrower ones towards both edges (at most two runs per width).
pub fn cover(first: i64, end: i64) -> Vec<UnitRun> {
    let (mut lo, mut hi) = (first, end.max(first));
    let mut runs = Vec::new();
    for (level, &span) in SPANS.iter().enumerate() {
        // `lo` and `hi` are multiples of `span` here: the previous level left them so.
        let wider = SPANS.get(level + 1).map(|&next| {
            let inner_lo = lo + (next - lo.rem_euclid(next)) % next;
            (inner_lo, hi - hi.rem_euclid(next))
        });
        match wider {
            Some((inner_lo, inner_hi)) if inner_lo < inner_hi => {
                runs.push(UnitRun {
                    span,
                    first: lo,
                    end: inner_lo,
                });
                runs.push(UnitRun {
                    span,
                    first: inner_hi,
                    end: hi,
                });
                (lo, hi) = (inner_lo, inner_hi);
            }
            _ => {
                runs.push(UnitRun {
                    span,
                    first: lo,
                    end: hi,
                });
                break;
            }
        }
    }
    runs.retain(|run| run.first < run.end);
    runs
}

/// The SQL condition selecting the rollup rows (columns `span`, `start`) of the units of
/// `runs`. The bounds are integers computed here, so they are written into the text.
pub fn cover_sql(runs: &[UnitRun]) -> String {
    if runs.is_empty() {
        return "1 = 0".into();
    }
    let terms: Vec<String> = runs
        .iter()
        .map(|r| format!("(span = {} AND start >= {} AND start < {})", r.span, r.first, r.end))
        .collect();
    format!("({})", terms.join(" OR "))
}

/// `YYYY-MM-DD`.
pub fn date_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Rollup changes folded per transaction by [`fold_pending`].
pub const FOLD_BATCH: i64 = 500;

/// A rollup whose changes writes record in a table of their own (with an increasing `id`),
/// for [`fold_pending`] to add.
pub trait PendingRollup: Sync {
    /// The table of recorded changes.
    const PENDING: &'static str;
    /// Takes a batch with [`take_pending_sql`], adds it up and applies it, inside `tx`; how
    /// many changes it took.
    fn fold_batch(&self, tx: &mut crate::events::Tx) -> impl Future<Output = crate::StoreResult<u64>> + Send;
}

/// Folds the changes recorded for `rollup` until none is left, a batch per transaction. How
/// many it folded.
///
/// Writes record rather than add because a rollup's rows are few and hot (every write of a
/// quarter hour counts in the same ones): writers adding to them held their locks until commit
/// and queued up behind each other. Concurrent folds (replicas, a read that folds first) never
/// fold a change twice: a batch's rows are locked by its delete, and a fold that meets them
/// waits and finds them gone.
pub async fn fold_pending<R: PendingRollup>(db: &Database, rollup: &R) -> crate::StoreResult<u64> {
    // Idle, a look on a reader: no write transaction (on SQLite the file's one writer).
    let look = format!("SELECT id FROM {} LIMIT 1", R::PENDING);
    let any: Option<(i64,)> = crate::on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(look)).fetch_optional(pool).await?
    });
    if any.is_none() {
        return Ok(0);
    }
    let mut folded = 0;
    loop {
        let mut tx = crate::events::Tx::begin(db).await?;
        let taken = rollup.fold_batch(&mut tx).await?;
        tx.commit().await?;
        folded += taken;
        if taken < FOLD_BATCH as u64 {
            return Ok(folded);
        }
    }
}

/// The statement that takes (deletes, returning `columns`) the oldest [`FOLD_BATCH`] rows of
/// `pending`.
pub fn take_pending_sql(pending: &str, columns: &str) -> String {
    format!(
        "DELETE FROM {pending} WHERE id IN (SELECT id FROM {pending} ORDER BY id LIMIT {FOLD_BATCH}) \
         RETURNING {columns}"
    )
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

    /// Every bucket of the range is in exactly one unit of the cover, and no other bucket is.
    #[test]
    fn a_cover_is_exactly_the_range() {
        let day = SPANS[1];
        let month = SPANS[2];
        for (first, end) in [
            (0, 0),
            (5, 6),
            (3, 200),
            (day * 10 + 7, day * 400 - 3),
            (month * 5, month * 17),
            (-day * 40 - 1, day * 3 + 1),
        ] {
            let runs = cover(first, end);
            let mut covered: Vec<i64> = Vec::new();
            for run in &runs {
                assert_eq!(run.first.rem_euclid(run.span), 0, "{run:?}");
                assert_eq!(run.end.rem_euclid(run.span), 0, "{run:?}");
                let mut start = run.first;
                while start < run.end {
                    covered.extend(start..start + run.span);
                    start += run.span;
                }
            }
            covered.sort();
            assert_eq!(covered, (first..end).collect::<Vec<_>>(), "{first}..{end}: {runs:?}");
            assert!(
                runs.len() < 2 * SPANS.len(),
                "at most two runs per width, one of the widest"
            );
        }
        // A year in Berlin: 12 months' worth of units, not 35,040 buckets.
        let (first, end) = range("2025-06-01", "2026-05-31", "Europe/Berlin").unwrap().buckets();
        let units: i64 = cover(first, end).iter().map(|r| (r.end - r.first) / r.span).sum();
        assert!(units < 250, "{units}");
        assert_eq!(cover_sql(&[]), "1 = 0");
    }

    #[test]
    fn a_bucket_is_in_one_unit_of_each_width() {
        let bucket = SPANS[2] * 3 + SPANS[1] * 2 + 5;
        assert_eq!(
            units_of(bucket),
            [(1, bucket), (SPANS[1], bucket - 5), (SPANS[2], SPANS[2] * 3)]
        );
        assert_eq!(units_of(-1), [(1, -1), (SPANS[1], -SPANS[1]), (SPANS[2], -SPANS[2])]);
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:14:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(bucket_of(at), at.timestamp() / BUCKET_SECONDS);
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
