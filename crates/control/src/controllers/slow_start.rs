//! Upstream's `slowStartBatch`: a controller that creates many pods does it
//! in batches of 1, 2, 4, 8, … each batch's creates running concurrently,
//! and stops at the first batch with a failure. A template the API
//! refuses costs one create, not hundreds; a healthy one reaches full
//! concurrency after a few round trips.

/// The sizes of the batches that create `total` objects.
pub struct Batches {
    left: usize,
    next: usize,
}

impl Batches {
    pub fn new(total: usize) -> Batches {
        Batches {
            left: total,
            next: 1,
        }
    }
}

impl Iterator for Batches {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let n = self.next.min(self.left);
        self.left -= n;
        self.next = self.next.saturating_mul(2);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_double_and_sum_to_the_total() {
        assert_eq!(Batches::new(0).count(), 0);
        assert_eq!(Batches::new(10).collect::<Vec<_>>(), [1, 2, 4, 3]);
        assert_eq!(Batches::new(500).sum::<usize>(), 500);
        assert_eq!(Batches::new(500).count(), 9);
    }
}
