//! A worker's timers: the deadlines of its own parked tasklets.
//!
//! Each worker keeps a min-heap of `(deadline, order, tasklet, park seq)`.
//! A timer whose park ended some other way stays in the heap until it comes
//! due and is then skipped (its claim fails), but it stops counting at once:
//! `live` counts only unresolved timed parks, so `run()` and deadlock
//! detection never wait for a stale deadline. An idle worker with live
//! timers sleeps until the earliest deadline.

use crate::task::TaskRef;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

struct Entry {
    at: Instant,
    order: u64,
    task: TaskRef,
    seq: u64,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

/// The timer heap of one worker (owner-only).
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    order: u64,
    live: usize,
}

impl Timers {
    /// Registers the deadline of park `seq` of `task`.
    pub(crate) fn add(&mut self, at: Instant, task: TaskRef, seq: u64) {
        self.order += 1;
        self.live += 1;
        self.heap.push(Reverse(Entry {
            at,
            order: self.order,
            task,
            seq,
        }));
    }

    /// A timed park ended (by its timer or otherwise).
    pub(crate) fn resolved(&mut self) {
        self.live -= 1;
        if self.live == 0 {
            self.heap.clear();
        }
    }

    /// Unresolved timed parks.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Pops one entry that is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TaskRef, u64)> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.at <= now => {
                let Reverse(e) = self.heap.pop()?;
                Some((e.task, e.seq))
            }
            _ => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.live = 0;
    }
}
