//! The nice queue: EVE's BeNice frame loop.
//!
//! `be_nice()` parks the running tasklet on its *own worker's* nice list,
//! tagged with the current round (`Shared::nice_epoch`); it never wakes
//! anyone. `run_nice()` ends the round (one `fetch_add` on the epoch) and
//! wakes, on every worker, the tasklets that joined before it, in the order
//! they became nice, at the tail of their home worker's queue: the caller's
//! own worker does it at once, and every other worker with nice tasklets is
//! signalled (and woken if asleep) once. A tasklet that calls `be_nice()`
//! again joins the next round, so `loop { run_nice(); run(); }` runs every
//! nice tasklet exactly once a frame.
//!
//! A nice tasklet is blocked in Stackless's terms (the nice queue was a
//! channel with preference 1 there): `insert`, `run` and `remove` on it fail
//! with `Blocked`, and a kill takes it off the list at once.

use crate::coroutine::Landed;
use crate::scheduler::signal;
use crate::sync::Ordering;
use crate::task::{Reason, Task, TaskRef, NICE_MARK};
use crate::worker::{resumed_task, Leaving, NiceEntry, WorkerLocal};

/// How many entries ahead a round fetches the record it will write.
const ROUND_PREFETCH_DISTANCE: usize = 8;

impl WorkerLocal {
    /// Parks the running tasklet until the next `run_nice()`. The caller
    /// checked that this thread is not unwinding (see `api::be_nice`).
    ///
    /// The hot path of a frame loop, so it allocates nothing and does no
    /// atomic read-modify-write: the tasklet's own ring entry (its reference
    /// count included) moves to this worker's nice list, and the park word
    /// is written with plain stores (a nice park is claimed only by its home
    /// worker; see `NICE_MARK`).
    ///
    /// The common case (a tasklet at the head of the ring, room on the
    /// list, no shutdown) makes no call from the caller's code to the
    /// switch, and after it reads the worker afresh: nothing of ours is
    /// live across a call or the switch, so up to three of the caller's
    /// own values stay in the registers the switch saves in the record
    /// instead of its stack frame. Among thousands of nice tasklets, a
    /// resume that reads nothing from the stack saves a page-table walk
    /// and a cache line each.
    #[inline(always)]
    pub(crate) fn be_nice(&self) {
        let cur = self.current_ptr();
        let list = self.nice_list();
        // SAFETY: the running tasklet is homed here.
        let ex = unsafe { cur.exec() };
        // (A tasklet at the ring's head is in the ring: `pop_front_if`
        // below needs no `in_ring` test first. A worker that stops has no
        // room, so the shutdown is the slow path's to test.)
        let len = list.len();
        let common = !cur.is_main && len < self.nice_room.get();
        // The tasklet leaves the ring's head, where it runs (unless its own
        // code moved it: then the slow path sorts it out).
        let ring = self.ring();
        let Some(me) = common.then(|| ring.pop_front_if(cur)).flatten() else {
            self.be_nice_slow();
            return;
        };
        // Unchanged until the switch: only the nice list and the records
        // are written in between.
        let view = ring.view();
        debug_assert!(ex.in_ring);
        ex.in_ring = false;
        ex.light = true;
        cur.queued.store(false, Ordering::Release);
        // `ex` is not used past here: `join_nice_list` borrows the flags
        // afresh.
        // SAFETY: the list has room (`common`: `nice_room` is at most its
        // capacity) and is `len` long.
        unsafe { self.join_nice_list(cur, me, len) };
        let landed = self.switch_out_tasklet_viewing(cur, view, Leaving::Nice);
        Self::nice_resumed(landed);
    }

    /// `be_nice` when something needs a call first: a shutdown, a full
    /// list, the tasklet not at the ring's head, or a main tasklet.
    #[cold]
    #[inline(never)]
    fn be_nice_slow(&self) {
        if self.shared.is_shutdown() {
            self.shutdown_point();
            return;
        }
        let cur = self.current_ptr();
        let Some(me) = self.take_current_from_ring() else {
            return;
        };
        let list = self.nice_list();
        list.reserve(1);
        // Not stopping (that is a shutdown, handled above).
        self.nice_room.set(list.capacity());
        // SAFETY: the list has room (just reserved) and is `len` long.
        unsafe { self.join_nice_list(cur, me, list.len()) };
        self.switch_out_raw();
        Self::nice_resumed(None);
    }

    /// Puts the running tasklet `cur` (already out of the ring; `me` is
    /// the ring's reference) on this worker's nice list, for the next
    /// round. Makes no call.
    ///
    /// # Safety
    ///
    /// The list is `len` long and has room for one more entry (`len` is
    /// below its capacity).
    #[inline(always)]
    unsafe fn join_nice_list(&self, cur: &Task, me: TaskRef, len: usize) {
        let epoch = self.shared.nice_epoch.load(Ordering::SeqCst);
        let list = self.nice_list();
        debug_assert!(len == list.len() && len < list.capacity());
        // SAFETY: slot `len` is within the capacity (the caller's promise)
        // and past the initialised part; it is written before the length
        // covers it.
        unsafe {
            list.as_mut_ptr()
                .add(len)
                .write(NiceEntry { task: me, epoch });
            list.set_len(len + 1);
        }
        self.ws().nice_len.store(len + 1, Ordering::Relaxed);
        let w = cur.park.load(Ordering::Relaxed);
        let seq = crate::task::word_seq(w).wrapping_add(1) & ((1 << 56) - 1);
        cur.park.store(
            crate::task::park_word(seq, crate::task::phase::WAITING, NICE_MARK),
            Ordering::Release,
        );
        // SAFETY: the running tasklet is homed here.
        unsafe { cur.exec().nice = true };
    }

    /// The rest of `be_nice`, once resumed. It keeps nothing from before
    /// the switch: the tasklet comes from what the switch handed over
    /// (`landed`), or from the worker read afresh.
    #[inline(always)]
    fn nice_resumed(landed: Option<Landed>) {
        // SAFETY: `landed` is from this tasklet's own suspension, and it
        // runs until this returns.
        let Some(cur) = (unsafe { resumed_task(landed) }) else {
            return;
        };
        // Read before the park word's store, which the compiler cannot
        // tell apart from them.
        // SAFETY: the tasklet is homed here and running again.
        let still_nice = unsafe { cur.exec() }.nice;
        let killed = cur.kill.load(Ordering::Relaxed);
        // Whoever woke us (a round, a kill, a deadlock answer) ran on this
        // worker and already marked us queued; no claim of a nice park is
        // ever in flight from another thread, so there is nothing to settle.
        let p = cur.park.load(Ordering::Relaxed);
        cur.park.store(
            crate::task::park_word(crate::task::word_seq(p), crate::task::phase::IDLE, 0),
            Ordering::Release,
        );
        if still_nice || killed {
            // Woken by something other than a round (a kill, a deadlock
            // answer), or a kill is pending: leave the list if still on
            // it, then act on the kill.
            Self::leave_nice_list_resumed();
        }
    }

    /// Takes the running tasklet off the nice list if something other than
    /// a round woke it, then acts on a kill.
    #[cold]
    #[inline(never)]
    fn leave_nice_list_resumed() {
        if let Some(w) = crate::worker::local() {
            let cur = w.current_ptr();
            // SAFETY: the tasklet is homed here and running.
            if unsafe { cur.exec() }.nice {
                w.leave_nice_list(cur);
            }
            w.check_kill();
        }
    }

    /// Takes `t` (running, homed here) off the nice list, where it still
    /// is when something other than a round woke it.
    #[cold]
    #[inline(never)]
    fn leave_nice_list(&self, t: &Task) {
        // SAFETY: `t` is homed here.
        unsafe { t.exec() }.nice = false;
        let list = self.nice_list();
        if let Some(pos) = list.iter().rposition(|e| std::ptr::eq(&*e.task, t)) {
            list.remove(pos);
        }
        self.ws().nice_len.store(list.len(), Ordering::Relaxed);
    }

    /// Ends the current round: wakes every tasklet that became nice before.
    /// Returns how many (on other workers: how many were waiting there).
    ///
    /// The other workers are signalled first, so that their rounds overlap
    /// this one's (a round of 5,000 tasklets takes ~12 µs here; signalled
    /// after it, the second worker of a 2-worker frame loop started that
    /// much later every frame).
    pub(crate) fn run_nice(&self) -> usize {
        let sh = &self.shared;
        let round = sh.nice_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let mut n = 0;
        for (i, w) in sh.workers.iter().enumerate() {
            if i == self.index {
                continue;
            }
            let waiting = w.nice_len.load(Ordering::Acquire);
            if waiting > 0 {
                n += waiting;
                w.nice_target.fetch_max(round, Ordering::AcqRel);
                w.signal.fetch_or(signal::NICE, Ordering::SeqCst);
                sh.notify_worker(i);
            }
        }
        n + self.run_nice_local(round)
    }

    /// Wakes this worker's nice tasklets that joined before round `below`.
    pub(crate) fn run_nice_local(&self, below: u64) -> usize {
        let list = self.nice_list();
        let k = list.partition_point(|e| e.epoch < below);
        let len = list.len();
        let first = list.as_mut_ptr();
        // The first `k` entries are moved out one by one below. Until the
        // rest moves down, the list owns none of its entries: a panic
        // leaks them rather than dropping any twice.
        // SAFETY: 0 is within the capacity, and nothing needs dropping.
        unsafe { list.set_len(0) };
        // SAFETY: `k <= len`, so both stay within the list's buffer.
        let (end, ahead_end) = unsafe {
            (
                first.add(k),
                first.add(k.saturating_sub(ROUND_PREFETCH_DISTANCE)),
            )
        };
        let mut tail = self.ring().tail(k);
        // Tasklets whose park ended otherwise, dropped once the list is
        // whole again (dropping a count may run a tasklet's destructors).
        let mut stale = Vec::new();
        // Wakes the tasklet of entry `at`, moving its count out (once).
        let mut wake = |at: *mut NiceEntry| {
            // SAFETY: `at` is an initialised entry below `end`, and its
            // task is moved out once (the epoch needs no drop).
            let t = unsafe { std::ptr::addr_of!((*at).task).read() };
            // SAFETY: nice entries are tasklets homed here.
            let ex = unsafe { t.exec() };
            ex.nice = false;
            // A tasklet has at most one entry: one whose park ended
            // otherwise (a kill, a deadlock answer) is removed by the
            // tasklet when it runs, or dropped here. So a nice-waiting park
            // word means this entry's park.
            let w = t.park.load(Ordering::Relaxed);
            if crate::task::word_phase(w) == crate::task::phase::WAITING
                && crate::task::word_reason(w) == NICE_MARK
            {
                // Only this worker claims a nice park: plain stores suffice.
                t.park.store(
                    crate::task::park_word(
                        crate::task::word_seq(w),
                        crate::task::phase::WOKEN,
                        Reason::Woken as u64,
                    ),
                    Ordering::Release,
                );
                ex.in_ring = true;
                t.queued.store(true, Ordering::Release);
                // SAFETY: at most `k` are appended, one per entry.
                unsafe { tail.push(t) };
            } else {
                stale.push(t);
            }
        };
        let mut at = first;
        // Each entry's record is written here, and among thousands of
        // tasklets it is rarely still cached: fetch the one a few entries
        // ahead while this one is handled (in a loop of its own, so the
        // last few need no test).
        while at < ahead_end {
            // SAFETY: that entry is below `end` and not moved out yet.
            let ahead = unsafe { &(*at.add(ROUND_PREFETCH_DISTANCE)).task };
            crate::sync::prefetch_write(ahead.hot_line());
            wake(at);
            // SAFETY: still within the list's buffer (at most `end`).
            at = unsafe { at.add(1) };
        }
        while at != end {
            wake(at);
            // SAFETY: as above.
            at = unsafe { at.add(1) };
        }
        let n = tail.pushed();
        drop(tail);
        // SAFETY: entries `k..len` are initialised and untouched; moved
        // down to the front, they are the list.
        unsafe {
            std::ptr::copy(end, first, len - k);
            list.set_len(len - k);
        }
        self.ws().nice_len.store(list.len(), Ordering::Relaxed);
        drop(stale);
        n
    }
}
