//! What day it is, and when the next one starts: one clock for the whole
//! service, so that the risk questions' "today" and the watches' midnight
//! are the same day (and a test can turn it).

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::domain::date::Date;

pub(crate) trait Clock: Send + Sync {
    fn today(&self) -> Date;
    /// Resolves when the day changes.
    fn next_day(&self) -> BoxFuture<'_, ()>;
}

/// The UTC calendar.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn today(&self) -> Date {
        chrono::Utc::now().date_naive()
    }

    fn next_day(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let now = chrono::Utc::now();
            let midnight = (now.date_naive() + chrono::TimeDelta::days(1))
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc();
            let wait = (midnight - now).to_std().unwrap_or_default();
            // A moment past midnight, so that `today` has moved.
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
        })
    }
}
