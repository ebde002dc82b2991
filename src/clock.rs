//! The one clock of the gateway, injected wherever time matters.
//!
//! Rate limits (through governor), token validity, grant validity windows and
//! event timestamps all read this clock, so tests move time forward instead of
//! sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::nanos::Nanos;
use time::OffsetDateTime;

/// Wall-clock and monotonic time, real or manual.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Source>,
}

#[derive(Debug)]
enum Source {
    System {
        origin: Instant,
    },
    Manual {
        start_unix_nanos: i128,
        elapsed_nanos: AtomicU64,
    },
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self {
            inner: Arc::new(Source::System {
                origin: Instant::now(),
            }),
        }
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: OffsetDateTime) -> Self {
        Self {
            inner: Arc::new(Source::Manual {
                start_unix_nanos: start.unix_timestamp_nanos(),
                elapsed_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Source::Manual { elapsed_nanos, .. } = &*self.inner {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            elapsed_nanos.fetch_add(by, Ordering::AcqRel);
        }
    }

    /// The current time in UTC.
    pub fn now_utc(&self) -> OffsetDateTime {
        match &*self.inner {
            Source::System { .. } => OffsetDateTime::now_utc(),
            Source::Manual {
                start_unix_nanos,
                elapsed_nanos,
            } => {
                let nanos = start_unix_nanos + i128::from(elapsed_nanos.load(Ordering::Acquire));
                OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            }
        }
    }

    /// Seconds since the Unix epoch, as JWT claims count them.
    pub fn unix_secs(&self) -> i64 {
        self.now_utc().unix_timestamp()
    }

    /// Milliseconds since the Unix epoch, as audit events record them.
    pub fn unix_millis(&self) -> i64 {
        i64::try_from(self.now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }
}

impl governor::clock::Clock for Clock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &*self.inner {
            Source::System { origin } => {
                Nanos::from(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
            }
            Source::Manual { elapsed_nanos, .. } => {
                Nanos::from(elapsed_nanos.load(Ordering::Acquire))
            }
        }
    }
}

impl governor::clock::ReasonablyRealtime for Clock {}
