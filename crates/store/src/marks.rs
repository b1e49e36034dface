//! When this replica applied which revision, for compaction by age: the
//! store keeps every revision younger than `store.history_min_age_ms` as
//! well as the last `store.history_revisions`. Marks are this replica's
//! own (one a second at most); after a restart it has none, so it keeps
//! more history until they cover the age again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// When this replica applied which revision: the oldest marks first, one
/// a second at most, none older than needed.
#[derive(Default)]
pub struct Marks(VecDeque<(Instant, u64)>);

impl Marks {
    /// Notes that `revision` was applied at `now`.
    pub fn note(&mut self, now: Instant, revision: u64) {
        let fresh = self
            .0
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1));
        if fresh {
            self.0.push_back((now, revision));
        }
    }

    /// The newest revision applied at least `age` before `now`, dropping
    /// the marks older than it; None if no revision is that old yet.
    pub fn older_than(&mut self, now: Instant, age: Duration) -> Option<u64> {
        let old = |t: &Instant| now.duration_since(*t) >= age;
        while self.0.len() > 1 && self.0.get(1).is_some_and(|(t, _)| old(t)) {
            self.0.pop_front();
        }
        self.0.front().filter(|(t, _)| old(t)).map(|(_, r)| *r)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_old_enough_to_compact_to() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut m = Marks::default();
        assert_eq!(m.older_than(t0, s(300)), None);
        m.note(t0, 10);
        m.note(t0 + Duration::from_millis(500), 11); // within the second: no mark
        m.note(t0 + s(100), 500);
        m.note(t0 + s(200), 900);
        assert_eq!(
            m.older_than(t0 + s(250), s(300)),
            None,
            "nothing is 5 minutes old"
        );
        assert_eq!(m.older_than(t0 + s(300), s(300)), Some(10));
        assert_eq!(m.older_than(t0 + s(450), s(300)), Some(500));
        // Marks older than the answer are dropped.
        assert_eq!(m.0.len(), 2);
        assert_eq!(m.older_than(t0 + s(1000), s(300)), Some(900));
        assert_eq!(m.0.len(), 1);
    }
}
