//! Crash points: named places in the platform's work where a process can be made to die on
//! purpose, so the fault suite proves what a crash exactly there does, a place no SIGKILL from
//! outside can be timed to hit. Dying is `std::process::abort`: no unwinding, no shutdown, no
//! flush, as abrupt as SIGKILL.
//!
//! Armed only by the environment: `ORDERMESH_CRASH_AT=<point>` dies the first time `<point>` is
//! reached, `<point>@<n>` the n-th time. Unset (always, outside the fault suite), a crash point
//! is one read of an initialised `OnceLock`.
//!
//! The points:
//! - [`OUTBOX_AFTER_ACK`]: the relay published a batch and the broker acknowledged it, and the
//!   rows are not yet marked sent. The restarted relay publishes them again.
//! - [`CONSUMER_AFTER_COMMIT`]: a consumer committed an event's effects (and its inbox row) and
//!   has not yet acknowledged the delivery. The broker delivers it again.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const OUTBOX_AFTER_ACK: &str = "outbox-after-ack";
pub const CONSUMER_AFTER_COMMIT: &str = "consumer-after-commit";

/// The variable that arms a crash point.
pub const ENV: &str = "ORDERMESH_CRASH_AT";

struct Armed {
    point: String,
    /// Times the point may still be passed before the process dies.
    passes_left: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Dies here if this is the armed point and its time has come.
pub fn point(name: &str) {
    let Some(armed) = ARMED.get_or_init(|| parse(std::env::var(ENV).ok().as_deref())) else {
        return;
    };
    if armed.point == name && armed.passes_left.fetch_sub(1, Ordering::SeqCst) == 1 {
        // Straight to stderr (the log file): the logger may buffer, and nothing runs after this.
        eprintln!("crash point {name}: aborting on purpose ({ENV})");
        std::process::abort();
    }
}

fn parse(value: Option<&str>) -> Option<Armed> {
    let value = value?.trim();
    if value.is_empty() {
        return None;
    }
    let (point, nth) = match value.split_once('@') {
        Some((point, nth)) => (point, nth.parse().ok().filter(|n| *n > 0).unwrap_or(1)),
        None => (value, 1),
    };
    Some(Armed {
        point: point.to_owned(),
        passes_left: AtomicU64::new(nth),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_point_is_armed_for_its_nth_pass() {
        assert!(parse(None).is_none());
        assert!(parse(Some(" ")).is_none());
        let first = parse(Some("outbox-after-ack")).unwrap();
        assert_eq!(first.point, "outbox-after-ack");
        assert_eq!(first.passes_left.into_inner(), 1);
        let tenth = parse(Some("consumer-after-commit@10")).unwrap();
        assert_eq!(tenth.point, "consumer-after-commit");
        assert_eq!(tenth.passes_left.into_inner(), 10);
        // A count that is not a positive number is the first pass, not never.
        assert_eq!(parse(Some("x@0")).unwrap().passes_left.into_inner(), 1);
        assert_eq!(parse(Some("x@many")).unwrap().passes_left.into_inner(), 1);
    }
}
