//! Waiting for a lock: one polling loop for every engine.

use std::time::{Duration, Instant};

use crate::Error;

/// Calls `try_once` until it returns true or `timeout` passes (zero: try once),
/// backing off from 10 ms to 250 ms; calls `waiting` once, when it first has to wait.
pub(crate) async fn poll<F>(
    name: &str,
    timeout: Duration,
    mut waiting: impl FnMut(),
    mut try_once: F,
) -> Result<Duration, Error>
where
    F: AsyncFnMut() -> Result<bool, Error>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    let mut announced = false;
    loop {
        if try_once().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(Error::LockTimeout {
                lock: name.into(),
                waited_secs: start.elapsed().as_secs_f64(),
            });
        }
        if !announced {
            waiting();
            announced = true;
        }
        tokio::time::sleep(pause.min(timeout.saturating_sub(start.elapsed()))).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
