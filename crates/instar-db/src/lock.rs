//! Waiting for a lock: one backoff for every engine.

use std::time::{Duration, Instant};

use crate::Error;

/// The wait for one lock: tries are spaced from 10 ms up to 250 ms, until `timeout`.
pub(crate) struct Wait {
    start: Instant,
    pause: Duration,
    timeout: Duration,
    announced: bool,
}

impl Wait {
    pub(crate) fn new(timeout: Duration) -> Wait {
        Wait {
            start: Instant::now(),
            pause: Duration::from_millis(10),
            timeout,
            announced: false,
        }
    }

    /// How long it has waited.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// After a failed try: the timeout error once it has passed (zero: at once),
    /// otherwise sleeps before the next try. Calls `waiting` before the first sleep.
    pub(crate) async fn again(
        &mut self,
        name: &str,
        waiting: &mut impl FnMut(),
    ) -> Result<(), Error> {
        if self.start.elapsed() >= self.timeout {
            return Err(Error::LockTimeout {
                lock: name.into(),
                waited_secs: self.start.elapsed().as_secs_f64(),
            });
        }
        if !self.announced {
            waiting();
            self.announced = true;
        }
        let left = self.timeout.saturating_sub(self.start.elapsed());
        tokio::time::sleep(self.pause.min(left)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(250));
        Ok(())
    }
}
