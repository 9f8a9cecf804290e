//! The FIFO of a channel's waiters, with room for the first one inline.
//!
//! Most channels have at most one waiter at a time (a ping-pong, a ring, a
//! pipeline stage), so the oldest waiter lives in the channel's own state
//! and a `VecDeque` is touched only from the second one on. That saves the
//! deque's bookkeeping and a separate cache line on every operation.
//!
//! Invariant: `first` is empty only when `rest` is empty too, so the order
//! is always `first`, then `rest` front to back.

use std::collections::VecDeque;

pub(crate) struct WaitQueue<W> {
    first: Option<W>,
    rest: VecDeque<W>,
}

impl<W> WaitQueue<W> {
    pub(crate) const fn new() -> Self {
        WaitQueue {
            first: None,
            rest: VecDeque::new(),
        }
    }

    #[inline(always)]
    pub(crate) fn push_back(&mut self, w: W) {
        if self.first.is_none() {
            debug_assert!(self.rest.is_empty());
            self.first = Some(w);
        } else {
            self.rest.push_back(w);
        }
    }

    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<W> {
        let w = self.first.take()?;
        if !self.rest.is_empty() {
            self.first = self.rest.pop_front();
        }
        Some(w)
    }

    /// Removes the first waiter that `is` picks; true when one was found.
    pub(crate) fn remove_where(&mut self, mut is: impl FnMut(&W) -> bool) -> bool {
        match &self.first {
            None => false,
            Some(w) if is(w) => {
                self.first = self.rest.pop_front();
                true
            }
            Some(_) => match self.rest.iter().position(is) {
                Some(pos) => {
                    self.rest.remove(pos);
                    true
                }
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WaitQueue;

    #[test]
    fn keeps_fifo_order_across_the_inline_slot() {
        let mut q = WaitQueue::new();
        for i in 0..4 {
            q.push_back(i);
        }
        assert_eq!(q.pop_front(), Some(0));
        q.push_back(4);
        assert!(q.remove_where(|&w| w == 2));
        assert!(q.remove_where(|&w| w == 1)); // the inline one
        assert!(!q.remove_where(|&w| w == 9));
        let rest: Vec<i32> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(rest, [3, 4]);
        assert_eq!(q.pop_front(), None);
        q.push_back(5);
        assert_eq!(q.pop_front(), Some(5));
    }
}
