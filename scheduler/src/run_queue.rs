//! [`RunQueue`]: a worker's Stackless ring, as a ring buffer.
//!
//! `VecDeque` would do (and did); this one exists for the hot path. Its
//! capacity is a power of two, so a position is `(head + i) & mask` rather
//! than a compare and a conditional subtract. A resume reads the head
//! and a few entries ahead (to prefetch them) and a switch pops or pushes
//! one: with `VecDeque` that was ~48 of the ~225 instructions of a nice
//! frame, and this ring takes ~20 fewer (callgrind). Its slots are
//! uninitialised outside the live range, so growing it and dropping it
//! touch only the live entries: a fresh worker's ring grows from 64 to
//! tens of thousands of slots in a spawn burst.
//!
//! Invariants: `slots.len()` is a power of two and `mask` is one less;
//! `head` is stored masked (below `slots.len()`), so the head's own slot
//! needs no mask; the `len` slots from `head` (wrapping) hold initialised
//! entries, the others nothing (growing or dropping the queue touches only
//! the live ones).

use crate::task::TaskRef;
use std::mem::MaybeUninit;

/// A FIFO ring of tasklets: only its worker's thread touches it.
pub(crate) struct RunQueue {
    slots: Box<[MaybeUninit<TaskRef>]>,
    mask: usize,
    head: usize,
    len: usize,
}

/// Where the ring's live entries are, copied out of it, so that a hot path
/// reads several entries without reloading the ring: the compiler cannot
/// tell the ring apart from the task records that a switch writes between
/// those reads, and would read every field of the ring again after each
/// store. Valid until the ring next changes.
#[derive(Clone, Copy)]
pub(crate) struct RingView {
    slots: *const TaskRef,
    mask: usize,
    head: usize,
    len: usize,
}

impl RingView {
    /// The entry `i` places behind the head.
    ///
    /// # Safety
    ///
    /// The ring has not changed since the view was taken, and the entry is
    /// not used once it changes.
    #[inline(always)]
    pub(crate) unsafe fn get<'a>(&self, i: usize) -> Option<&'a TaskRef> {
        if i < self.len {
            // The head itself, the common ask, needs no mask: `head` is
            // stored masked.
            let at = if i == 0 {
                self.head
            } else {
                self.head.wrapping_add(i) & self.mask
            };
            // SAFETY: the `len` slots from the head were initialised when
            // the view was taken, and the ring is unchanged since (the
            // caller's promise); `at` is in bounds (masked, or the masked
            // head).
            Some(unsafe { &*self.slots.add(at) })
        } else {
            None
        }
    }
}

impl RunQueue {
    /// The ring as it is now (see [`RingView`]).
    #[inline(always)]
    pub(crate) fn view(&self) -> RingView {
        RingView {
            slots: self.slots.as_ptr() as *const TaskRef,
            mask: self.mask,
            head: self.head,
            len: self.len,
        }
    }

    /// An empty queue with room for at least `n` tasklets.
    pub(crate) fn with_capacity(n: usize) -> RunQueue {
        let cap = n.max(1).next_power_of_two();
        RunQueue {
            slots: uninit_slots(cap),
            mask: cap - 1,
            head: 0,
            len: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The slot `i` places after the head (wrapping), to read.
    #[inline(always)]
    fn slot(&self, i: usize) -> *const TaskRef {
        let at = self.head.wrapping_add(i) & self.mask;
        // SAFETY: `mask` is `slots.len() - 1` with a power-of-two length,
        // so `at` is in bounds.
        unsafe { self.slots.as_ptr().add(at) as *const TaskRef }
    }

    /// The slot `i` places after the head (wrapping), to write.
    #[inline(always)]
    fn slot_mut(&mut self, i: usize) -> *mut TaskRef {
        let at = self.head.wrapping_add(i) & self.mask;
        // SAFETY: as in `slot`.
        unsafe { self.slots.as_mut_ptr().add(at) as *mut TaskRef }
    }

    /// The head's slot, to read: `slot(0)` without the mask (`head` is
    /// stored masked), two instructions fewer on every switch.
    #[inline(always)]
    fn head_slot(&self) -> *const TaskRef {
        debug_assert!(self.head <= self.mask);
        // SAFETY: `head` is below `slots.len()` (stored masked).
        unsafe { self.slots.as_ptr().add(self.head) as *const TaskRef }
    }

    /// The head's slot, to write.
    #[inline(always)]
    fn head_slot_mut(&mut self) -> *mut TaskRef {
        debug_assert!(self.head <= self.mask);
        // SAFETY: as in `head_slot`.
        unsafe { self.slots.as_mut_ptr().add(self.head) as *mut TaskRef }
    }

    /// The head (the running tasklet, while one runs).
    #[inline(always)]
    pub(crate) fn front(&self) -> Option<&TaskRef> {
        if self.len == 0 {
            return None;
        }
        // SAFETY: the head slot is initialised (`len > 0`).
        Some(unsafe { &*self.head_slot() })
    }

    /// The entry `i` places behind the head.
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> Option<&TaskRef> {
        if i < self.len {
            // SAFETY: the `len` slots from the head are initialised.
            Some(unsafe { &*self.slot(i) })
        } else {
            None
        }
    }

    /// Room for `n` more entries at the tail, filled through the returned
    /// [`Tail`] without a capacity check each (a nice round appends
    /// thousands at once). They count as entries once the `Tail` is gone.
    #[inline(always)]
    pub(crate) fn tail(&mut self, n: usize) -> Tail<'_> {
        self.reserve(n);
        let cap = self.slots.len();
        let base = self.slots.as_mut_ptr();
        // SAFETY: both are within the buffer, or one past its end.
        let (first, wrap) = unsafe {
            (
                base.add(self.head.wrapping_add(self.len) & self.mask),
                base.add(cap),
            )
        };
        Tail {
            queue: self,
            base,
            first,
            next: first,
            wrap,
            wrapped: false,
            #[cfg(debug_assertions)]
            room: n,
        }
    }

    #[inline(always)]
    pub(crate) fn push_back(&mut self, t: TaskRef) {
        if self.len == self.slots.len() {
            self.grow(1);
        }
        // SAFETY: the slot just past the last entry is free (there is room).
        unsafe { self.slot_mut(self.len).write(t) };
        self.len += 1;
    }

    #[inline]
    pub(crate) fn push_front(&mut self, t: TaskRef) {
        if self.len == self.slots.len() {
            self.grow(1);
        }
        self.head = self.head.wrapping_sub(1) & self.mask;
        // SAFETY: the slot just before the old head is free (there is room).
        unsafe { self.head_slot_mut().write(t) };
        self.len += 1;
    }

    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<TaskRef> {
        if self.len == 0 {
            return None;
        }
        // SAFETY: the head slot is initialised; it leaves the live range
        // below, so it is read exactly once.
        let t = unsafe { self.head_slot().read() };
        self.head = (self.head + 1) & self.mask;
        self.len -= 1;
        Some(t)
    }

    /// Removes the head if it is `t` (the running tasklet leaving the
    /// ring): one look at the head for both the test and the removal.
    #[inline(always)]
    pub(crate) fn pop_front_if(&mut self, t: &crate::task::Task) -> Option<TaskRef> {
        if self.len == 0 {
            return None;
        }
        let head = self.head_slot();
        // SAFETY: the head slot is initialised (`len > 0`).
        if !std::ptr::eq(unsafe { &**head }, t) {
            return None;
        }
        // SAFETY: as above; it leaves the live range below, so it is read
        // exactly once.
        let e = unsafe { head.read() };
        self.head = (self.head + 1) & self.mask;
        self.len -= 1;
        Some(e)
    }

    /// Moves the head to the tail (what `schedule()` does), without a
    /// growth check: the slot the head leaves is the one the tail needs
    /// when the ring is full, or a free one past the tail otherwise.
    #[inline(always)]
    pub(crate) fn rotate_one(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: the head slot is initialised; it leaves the live range
        // when the head advances, so it is read once here.
        let t = unsafe { self.head_slot().read() };
        self.head = (self.head + 1) & self.mask;
        // SAFETY: the slot just past the last entry is free: the old head's
        // slot when the ring is full, otherwise one past the tail already.
        unsafe { self.slot_mut(self.len - 1).write(t) };
    }

    /// Removes the entry `i` places behind the head, keeping the order of
    /// the others (those before it move back by one).
    pub(crate) fn remove(&mut self, i: usize) -> Option<TaskRef> {
        if i >= self.len {
            return None;
        }
        // SAFETY: slots `0..=i` are initialised; each is read once and
        // written one place further back, and the head slot leaves the live
        // range, so every entry stays initialised exactly once.
        unsafe {
            let t = self.slot(i).read();
            for j in (0..i).rev() {
                let moved = self.slot(j).read();
                self.slot_mut(j + 1).write(moved);
            }
            self.head = (self.head + 1) & self.mask;
            self.len -= 1;
            Some(t)
        }
    }

    /// Rotates the ring so that the entry `n` places behind the head is
    /// the head.
    pub(crate) fn rotate_left(&mut self, n: usize) {
        for _ in 0..n.min(self.len) {
            if let Some(t) = self.pop_front() {
                self.push_back(t);
            }
        }
    }

    /// Makes room for `additional` more entries without growing again.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.len + additional > self.slots.len() {
            self.grow(additional);
        }
    }

    /// Moves the entries, in order, to a buffer of at least twice the size
    /// that holds `len + additional`.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize) {
        let cap = (self.len + additional)
            .max(self.slots.len() * 2)
            .next_power_of_two();
        let mut slots = uninit_slots(cap);
        for (i, s) in slots.iter_mut().take(self.len).enumerate() {
            // SAFETY: the `len` slots from the head are initialised; each
            // moves to the new buffer once, and the old buffer is dropped
            // without dropping entries (they are `MaybeUninit`).
            s.write(unsafe { self.slot(i).read() });
        }
        self.slots = slots;
        self.mask = cap - 1;
        self.head = 0;
    }

    /// The entries from the head on.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &TaskRef> + '_ {
        (0..self.len).filter_map(move |i| self.get(i))
    }

    /// Removes `t`'s entry wherever it is (the order of the others kept).
    /// Rare on the hot paths (a tasklet leaves from the head), so out of
    /// line.
    #[cold]
    #[inline(never)]
    pub(crate) fn remove_task(&mut self, t: &crate::task::Task) -> Option<TaskRef> {
        let pos = self.position(|x| std::ptr::eq(&**x, t))?;
        self.remove(pos)
    }

    /// Index of the first entry for which `f` is true.
    pub(crate) fn position(&self, f: impl FnMut(&TaskRef) -> bool) -> Option<usize> {
        self.iter().position(f)
    }

    pub(crate) fn clear(&mut self) {
        while self.pop_front().is_some() {}
        self.head = 0;
    }
}

/// `cap` free slots (`Box::new_uninit_slice` needs Rust 1.82).
fn uninit_slots(cap: usize) -> Box<[MaybeUninit<TaskRef>]> {
    (0..cap).map(|_| MaybeUninit::uninit()).collect()
}

/// Appends up to the `n` entries asked of [`RunQueue::tail`]: a pointer
/// that wraps to the buffer's start past its end (so a push is a store,
/// an increment and a compare), and the queue's length set once, when it
/// is dropped.
pub(crate) struct Tail<'a> {
    queue: &'a mut RunQueue,
    /// The buffer's first slot, and one past its last.
    base: *mut MaybeUninit<TaskRef>,
    wrap: *mut MaybeUninit<TaskRef>,
    /// The first slot appended to, and the next.
    first: *mut MaybeUninit<TaskRef>,
    next: *mut MaybeUninit<TaskRef>,
    /// Whether `next` went past the buffer's end to its start.
    wrapped: bool,
    #[cfg(debug_assertions)]
    room: usize,
}

impl Tail<'_> {
    /// Appends `t`.
    ///
    /// # Safety
    ///
    /// At most the `n` entries asked of `tail` are appended.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, t: TaskRef) {
        #[cfg(debug_assertions)]
        {
            assert!(self.room > 0, "RunQueue::tail overfilled");
            self.room -= 1;
        }
        // SAFETY: `tail` reserved `n` free slots after the live ones
        // (wrapping at the buffer's end) and, per the contract, `next` is
        // one of them.
        unsafe {
            self.next.write(MaybeUninit::new(t));
            self.next = self.next.add(1);
        }
        if self.next == self.wrap {
            self.next = self.base;
            self.wrapped = true;
        }
    }

    /// How many were appended so far.
    #[inline(always)]
    pub(crate) fn pushed(&self) -> usize {
        // SAFETY: all four lie in (or one past) the one buffer, and
        // `first <= wrap`, `base <= next`, and `first <= next` unless
        // `next` wrapped.
        unsafe {
            if self.wrapped {
                self.wrap.offset_from(self.first) as usize
                    + self.next.offset_from(self.base) as usize
            } else {
                self.next.offset_from(self.first) as usize
            }
        }
    }
}

impl Drop for Tail<'_> {
    fn drop(&mut self) {
        self.queue.len += self.pushed();
    }
}

impl Drop for RunQueue {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::RunQueue;
    use crate::task::{Task, TaskRef};

    fn ids(q: &RunQueue, all: &[TaskRef]) -> Vec<usize> {
        q.iter()
            .map(|t| all.iter().position(|a| TaskRef::ptr_eq(a, t)).unwrap())
            .collect()
    }

    #[test]
    fn keeps_fifo_order_across_wraps_and_growth() {
        let all: Vec<TaskRef> = (0..40).map(|_| Task::new(None, false)).collect();
        let mut q = RunQueue::with_capacity(4);
        let mut model = std::collections::VecDeque::new();
        // A deterministic mix of the operations the worker uses.
        for step in 0..2_000usize {
            let t = &all[step % all.len()];
            match step * 7 % 11 {
                0..=3 if model.len() < 30 => {
                    q.push_back(t.clone());
                    model.push_back(step % all.len());
                }
                4 if model.len() < 30 => {
                    q.push_front(t.clone());
                    model.push_front(step % all.len());
                }
                6 if !model.is_empty() && step % 3 == 0 => {
                    // Only the head is taken, and only by its own task.
                    let other = (model[0] + 1) % all.len();
                    assert!(q.pop_front_if(&all[other]).is_none());
                    let got = q.pop_front_if(&all[model[0]]).map(|t| ids_of(&t, &all));
                    assert_eq!(got, model.pop_front());
                }
                5 | 6 => {
                    let got = q.pop_front().map(|t| ids_of(&t, &all));
                    assert_eq!(got, model.pop_front());
                }
                7 if !model.is_empty() => {
                    let i = step % model.len();
                    let got = q.remove(i).map(|t| ids_of(&t, &all));
                    assert_eq!(got, model.remove(i));
                }
                8 if !model.is_empty() => {
                    let n = step % model.len();
                    q.rotate_left(n);
                    model.rotate_left(n);
                }
                9 if !model.is_empty() => {
                    q.rotate_one();
                    model.rotate_left(1);
                }
                10 if model.len() < 27 => {
                    // What a nice round does: room for up to three, some used.
                    let mut tail = q.tail(3);
                    for j in 0..step % 4 % 3 + 1 {
                        let k = (step + j) % all.len();
                        // SAFETY: at most three, as asked.
                        unsafe { tail.push(all[k].clone()) };
                        model.push_back(k);
                    }
                    drop(tail);
                }
                _ => {}
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(ids(&q, &all), model.iter().copied().collect::<Vec<_>>());
            assert_eq!(q.front().map(|t| ids_of(t, &all)), model.front().copied());
            for i in 0..model.len() + 2 {
                assert_eq!(q.get(i).map(|t| ids_of(t, &all)), model.get(i).copied());
            }
            assert!(q.capacity().is_power_of_two() && q.capacity() >= q.len());
        }
        q.clear();
        assert!(q.is_empty() && q.front().is_none());
    }

    fn ids_of(t: &TaskRef, all: &[TaskRef]) -> usize {
        all.iter().position(|a| TaskRef::ptr_eq(a, t)).unwrap()
    }

    /// A nice round's `tail` that fills the ring exactly, starting mid-
    /// buffer (so it wraps), counts all its entries; one that pushes
    /// nothing counts none.
    #[test]
    fn tail_fills_a_ring_exactly_across_the_wrap() {
        let all: Vec<TaskRef> = (0..8).map(|_| Task::new(None, false)).collect();
        for start in 0..8 {
            let mut q = RunQueue::with_capacity(8);
            // Move the head to `start`, leaving the ring empty.
            for t in all.iter().take(start) {
                q.push_back(t.clone());
            }
            while q.pop_front().is_some() {}
            drop(q.tail(0));
            assert!(q.is_empty());
            let mut tail = q.tail(8);
            for t in &all {
                // SAFETY: eight, as asked.
                unsafe { tail.push(t.clone()) };
            }
            assert_eq!(tail.pushed(), 8);
            drop(tail);
            assert_eq!(q.capacity(), 8, "start {start}");
            assert_eq!(ids(&q, &all), (0..8).collect::<Vec<_>>(), "start {start}");
        }
    }

    #[test]
    fn rotate_one_in_a_full_ring() {
        let all: Vec<TaskRef> = (0..4).map(|_| Task::new(None, false)).collect();
        let mut q = RunQueue::with_capacity(4);
        for t in &all {
            q.push_back(t.clone());
        }
        assert_eq!(q.capacity(), 4);
        for k in 1..=9 {
            q.rotate_one();
            let want: Vec<usize> = (0..4).map(|i| (i + k) % 4).collect();
            assert_eq!(ids(&q, &all), want);
        }
        assert_eq!(q.capacity(), 4);
    }

    #[test]
    fn reserve_makes_room_without_growing_later() {
        let t = Task::new(None, false);
        let mut q = RunQueue::with_capacity(2);
        q.push_back(t.clone());
        q.reserve(100);
        let cap = q.capacity();
        assert!(cap >= 101);
        for _ in 0..100 {
            q.push_back(t.clone());
        }
        assert_eq!(q.capacity(), cap);
        assert_eq!(q.len(), 101);
    }
}
