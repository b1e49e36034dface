//! Wait and seed helpers for tests (the `testing` feature): every tier
//! waits for a condition with a deadline instead of sleeping, and every
//! randomized test prints the seed that replays it. [`UnixRelay`] stands
//! in front of a unix socket a test takes away and brings back.

mod relay;

pub use relay::UnixRelay;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// A condition that did not hold within its deadline, with the last thing
/// it observed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not true after {after:?}: {last}")]
pub struct Timeout {
    pub after: Duration,
    pub last: String,
}

/// For tests whose own helpers return `Result<_, String>`.
impl From<Timeout> for String {
    fn from(t: Timeout) -> String {
        t.to_string()
    }
}

/// Polls `cond` every 50 ms until it holds or `deadline` passes; returns
/// how long it took, or the last observation on failure.
pub async fn wait_until<F, Fut, E>(deadline: Duration, mut cond: F) -> Result<Duration, Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let start = tokio::time::Instant::now();
    loop {
        let last = match cond().await {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => e,
        };
        if start.elapsed() >= deadline {
            return Err(Timeout {
                after: deadline,
                last: last.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The blocking twin of [`wait_until`], for tests that drive processes:
/// polls `cond` every 100 ms until it returns a value or `deadline` passes,
/// then panics with `what` and the last observation.
pub fn wait_for_blocking<T, E: Display>(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<T, E>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        match cond() {
            Ok(v) => {
                eprintln!("{what}: after {:?}", start.elapsed());
                return v;
            }
            Err(last) if start.elapsed() > deadline => {
                panic!("{what}: not true after {deadline:?}: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The seed of a randomized test: `SHOAL_SEED` if set (to replay), else a
/// fresh one. Printed either way.
pub fn seed() -> u64 {
    let s = std::env::var("SHOAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("SHOAL_SEED={s}");
    s
}
