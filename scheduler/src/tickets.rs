//! A worker's ticket queue: the fresh tasklets other workers may steal,
//! oldest first.
//!
//! A bounded single-producer, multi-consumer ring of tasklet pointers:
//!
//! * only the owner **pushes**: it writes the slot at `tail`, then publishes
//!   it by storing `tail + 1` (release). No read-modify-write, no lock.
//! * anyone **pops** the oldest entry (a thief stealing, or the owner
//!   dropping entries of tasklets it started itself): it reads the slot at
//!   `head`, then claims it with one CAS of `head` to `head + 1`; the value
//!   it read is its own only if the CAS succeeds.
//!
//! Reading a slot before claiming it is safe because the owner never
//! overwrites a slot between `head` and `head + CAP`: it checks
//! `tail - head < CAP` before writing, and `head` only grows. Counters are
//! `usize` and never wrap in practice. When the ring is full the owner moves
//! the older half to the scheduler's injector in one batch (claimed with one
//! CAS), so a long burst of spawns costs one lock per `CAP / 2` spawns.
//!
//! A ticket is only a hint: whoever claims the *tasklet* (the CAS on its
//! `home` word, see `task.rs`) runs it, and a ticket whose tasklet was
//! already claimed is dropped when met.

use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use crate::task::{Task, TaskRef};

/// Slots in the ring (small under loom, so the overflow path is modelled).
pub(crate) const CAP: usize = if cfg!(loom) { 4 } else { 1024 };

pub(crate) struct Tickets {
    /// Moved by thieves (and the owner when it pops): apart from `tail`.
    head: crate::sync::Padded<AtomicUsize>,
    tail: crate::sync::Padded<AtomicUsize>,
    slots: Box<[AtomicPtr<Task>]>,
}

impl Tickets {
    pub(crate) fn new() -> Tickets {
        Tickets {
            head: crate::sync::Padded(AtomicUsize::new(0)),
            tail: crate::sync::Padded(AtomicUsize::new(0)),
            slots: (0..CAP)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    /// Entries (approximate while others pop).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        tail.saturating_sub(head)
    }

    /// Owner only: appends `t`. When the ring is full, the older half moves
    /// to `overflow` (called with the moved tickets, oldest first).
    pub(crate) fn push(&self, t: TaskRef, overflow: impl FnOnce(Vec<TaskRef>)) {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail - head >= CAP {
            let mut moved = Vec::with_capacity(CAP / 2 + 1);
            // Claim the older half with one CAS; readers racing with us
            // simply find the ring shorter.
            let h = self.head.load(Ordering::Acquire);
            let n = (tail - h) / 2;
            if n > 0
                && self
                    .head
                    .compare_exchange(h, h + n, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                for i in h..h + n {
                    let p = self.slots[i % CAP].load(Ordering::Relaxed);
                    // SAFETY: the CAS made slots h..h+n ours; each holds a
                    // pointer from `Arc::into_raw` in `push`.
                    moved.push(unsafe { TaskRef::from_raw(p) });
                }
            }
            moved.push(t);
            overflow(moved);
            return;
        }
        let p = TaskRef::into_raw(t) as *mut Task;
        self.slots[tail % CAP].store(p, Ordering::Relaxed);
        self.tail.store(tail + 1, Ordering::Release);
    }

    /// Pops the oldest ticket (any thread).
    pub(crate) fn pop(&self) -> Option<TaskRef> {
        loop {
            let head = self.head.load(Ordering::Acquire);
            let tail = self.tail.load(Ordering::Acquire);
            if head >= tail {
                return None;
            }
            let p = self.slots[head % CAP].load(Ordering::Relaxed);
            if self
                .head
                .compare_exchange(head, head + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: the CAS made slot `head` ours; the owner wrote it
                // (from `Arc::into_raw`) before publishing `tail`, and cannot
                // have overwritten it since (see the module docs).
                return Some(unsafe { TaskRef::from_raw(p) });
            }
            crate::sync::spin_wait();
        }
    }

    /// Owner only: drops stale tickets (of tasklets already claimed) from
    /// the front. Each ticket is claimed before it is looked at (a ticket
    /// may hold the last count of its tasklet, and another popper may drop
    /// it); the first live one goes back at the tail.
    pub(crate) fn drop_stale_front(&self, stale: impl Fn(&Task) -> bool) {
        while let Some(t) = self.pop() {
            if !stale(&t) {
                // Not stale: still stealable. Re-queue it (the owner runs its
                // oldest fresh tasklets soon anyway).
                self.push(t, drop);
                return;
            }
        }
    }
}

impl Drop for Tickets {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

/// Loom models of the ring itself: every ticket ends up in exactly one
/// place. The ring is private, so the models live here and
/// `loom-tests/tests/tickets.rs` runs them (see loom-tests/README.md).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_models {
    use super::*;
    use crate::sync::Arc;
    use crate::task::Task;

    fn collect(n: usize) -> Vec<TaskRef> {
        (0..n).map(|_| Task::new(None, false)).collect()
    }

    /// The owner pushes past capacity (the overflow path) while a thief pops.
    pub fn push_overflow_races_with_steal() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(|| {
            let q = Arc::new(Tickets::new());
            let tasks = collect(CAP + 2);
            let ids: Vec<u64> = tasks.iter().map(|t| t.id).collect();
            let q2 = q.clone();
            let thief = loom::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    if let Some(t) = q2.pop() {
                        got.push(t.id);
                    }
                }
                got
            });
            let mut overflowed = Vec::new();
            for t in tasks {
                q.push(t, |moved| overflowed.extend(moved.iter().map(|t| t.id)));
            }
            let mut seen = thief.join().unwrap();
            seen.extend(overflowed);
            while let Some(t) = q.pop() {
                seen.push(t.id);
            }
            seen.sort_unstable();
            let mut want = ids;
            want.sort_unstable();
            assert_eq!(seen, want, "a ticket was lost or duplicated");
        });
    }

    /// Two thieves pop the same ring: no ticket twice.
    pub fn two_thieves() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(|| {
            let q = Arc::new(Tickets::new());
            for t in collect(3) {
                q.push(t, drop);
            }
            let spawn_thief = |q: Arc<Tickets>| {
                loom::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(t) = q.pop() {
                        got.push(t.id);
                    }
                    got
                })
            };
            let a = spawn_thief(q.clone());
            let b2 = spawn_thief(q.clone());
            let mut all = a.join().unwrap();
            all.extend(b2.join().unwrap());
            all.sort_unstable();
            assert_eq!(all.len(), 3, "a ticket was lost or taken twice");
            all.dedup();
            assert_eq!(all.len(), 3, "a ticket was taken twice");
        });
    }
}
