//! The control plane's clock: the system's, or in tests a fake one that
//! moves only when told, so time-driven controllers (CronJob schedules)
//! can be driven to an exact instant, on every node of an in-process
//! cluster at once.

use std::sync::{Arc, Mutex};

/// Cheap to clone; every clone of a fake clock shows the same time.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    fake: Option<Arc<Mutex<jiff::Timestamp>>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that shows `at` until it is set again.
    pub fn fake(at: jiff::Timestamp) -> Clock {
        Clock {
            fake: Some(Arc::new(Mutex::new(at))),
        }
    }

    pub fn now(&self) -> jiff::Timestamp {
        match &self.fake {
            Some(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
            None => jiff::Timestamp::now(),
        }
    }

    /// Moves a fake clock to `at` (a system clock ignores it).
    pub fn set(&self, at: jiff::Timestamp) {
        if let Some(t) = &self.fake {
            *t.lock().unwrap_or_else(|p| p.into_inner()) = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_only_when_set_and_clones_share_it() {
        let t0: jiff::Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let c = Clock::fake(t0);
        let other = c.clone();
        assert_eq!(c.now(), t0);
        let t1: jiff::Timestamp = "2026-12-07T10:01:00Z".parse().unwrap();
        other.set(t1);
        assert_eq!(c.now(), t1);
        assert!(Clock::system().now() > t0 - jiff::SignedDuration::from_hours(24 * 365));
    }
}
