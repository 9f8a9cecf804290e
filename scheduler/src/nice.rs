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

use crate::scheduler::signal;
use crate::sync::Ordering;
use crate::task::{Reason, Task, NICE_MARK};
use crate::worker::{NiceEntry, WorkerLocal};

impl WorkerLocal {
    /// Parks the running tasklet until the next `run_nice()`.
    ///
    /// The hot path of a frame loop, so it allocates nothing and does no
    /// atomic read-modify-write: the tasklet's own ring entry (its reference
    /// count included) moves to this worker's nice list, and the park word
    /// is written with plain stores (a nice park is claimed only by its home
    /// worker; see `NICE_MARK`).
    #[inline]
    pub(crate) fn be_nice(&self) {
        if std::thread::panicking() {
            return;
        }
        if self.shared.is_shutdown() {
            self.shutdown_point();
            return;
        }
        let cur = self.current_ptr();
        let Some(me) = self.take_current_from_ring() else {
            return;
        };
        let w = cur.park.load(Ordering::Relaxed);
        let seq = crate::task::word_seq(w).wrapping_add(1) & ((1 << 56) - 1);
        cur.park.store(
            crate::task::park_word(seq, crate::task::phase::WAITING, NICE_MARK),
            Ordering::Release,
        );
        let epoch = self.shared.nice_epoch.load(Ordering::SeqCst);
        let list = self.nice_list();
        list.push(NiceEntry { task: me, epoch });
        self.ws().nice_len.store(list.len(), Ordering::Relaxed);
        // SAFETY: the running tasklet is homed here.
        unsafe { cur.exec().nice = true };
        self.switch_out_raw();
        Self::nice_resumed();
    }

    /// The rest of `be_nice`, once resumed. It keeps nothing from before
    /// the switch: the worker and the tasklet are read afresh (tasklets
    /// never change thread, so they are the same), which leaves the
    /// registers that survive a switch to the caller's own values, and
    /// fewer of them go to its stack frame (which a resume then reloads).
    #[inline(always)]
    fn nice_resumed() {
        let Some(w) = crate::worker::local() else {
            return;
        };
        let cur = w.current_ptr();
        // SAFETY: the tasklet is homed here and running again.
        if unsafe { cur.exec() }.nice {
            // Woken by something other than a round (a kill, a deadlock
            // answer): leave the list now.
            w.leave_nice_list(cur);
        }
        // Whoever woke us (a round, a kill, a deadlock answer) ran on this
        // worker and already marked us queued; no claim of a nice park is
        // ever in flight from another thread, so there is nothing to settle.
        let p = cur.park.load(Ordering::Relaxed);
        cur.park.store(
            crate::task::park_word(crate::task::word_seq(p), crate::task::phase::IDLE, 0),
            Ordering::Release,
        );
        w.check_kill();
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
    pub(crate) fn run_nice(&self) -> usize {
        let sh = &self.shared;
        let round = sh.nice_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let mut n = self.run_nice_local(round);
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
        n
    }

    /// Wakes this worker's nice tasklets that joined before round `below`.
    pub(crate) fn run_nice_local(&self, below: u64) -> usize {
        let list = self.nice_list();
        let k = list.partition_point(|e| e.epoch < below);
        let ring = self.ring();
        ring.reserve(k);
        let mut n = 0;
        for e in list.drain(..k) {
            // SAFETY: nice entries are tasklets homed here.
            let ex = unsafe { e.task.exec() };
            ex.nice = false;
            // A tasklet has at most one entry: one whose park ended
            // otherwise (a kill, a deadlock answer) is removed by the
            // tasklet when it runs, or dropped here. So a nice-waiting park
            // word means this entry's park.
            let w = e.task.park.load(Ordering::Relaxed);
            if crate::task::word_phase(w) == crate::task::phase::WAITING
                && crate::task::word_reason(w) == NICE_MARK
            {
                // Only this worker claims a nice park: plain stores suffice.
                e.task.park.store(
                    crate::task::park_word(
                        crate::task::word_seq(w),
                        crate::task::phase::WOKEN,
                        Reason::Woken as u64,
                    ),
                    Ordering::Release,
                );
                ex.in_ring = true;
                e.task.queued.store(true, Ordering::Release);
                ring.push_back(e.task);
                n += 1;
            }
        }
        self.ws().nice_len.store(list.len(), Ordering::Relaxed);
        n
    }
}
