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

use crate::park::Placement;
use crate::scheduler::signal;
use crate::sync::Ordering;
use crate::task::{Reason, TaskRef};
use crate::worker::{NiceEntry, WorkerLocal};

impl WorkerLocal {
    /// Parks the running tasklet until the next `run_nice()`.
    pub(crate) fn be_nice(&self) {
        if std::thread::panicking() {
            return;
        }
        if self.shared.is_shutdown() {
            self.shutdown_point();
            return;
        }
        let u = crate::worker::prepare_park(false);
        let task = self.current_task();
        let epoch = self.shared.nice_epoch.load(Ordering::SeqCst);
        self.nice_list().push_back(NiceEntry {
            task: task.clone(),
            seq: u.seq,
            epoch,
        });
        self.ws()
            .nice_len
            .store(self.nice_list().len(), Ordering::Relaxed);
        // SAFETY: the running tasklet is homed here.
        unsafe { task.exec().nice = true };
        struct Leave<'a>(&'a WorkerLocal, TaskRef);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                // SAFETY: the tasklet is homed here and running again.
                let ex = unsafe { self.1.exec() };
                if ex.nice {
                    // Woken by something other than a round (a kill, a
                    // deadlock answer): leave the list now.
                    ex.nice = false;
                    let list = self.0.nice_list();
                    if let Some(pos) = list
                        .iter()
                        .rposition(|e| crate::sync::Arc::ptr_eq(&e.task, &self.1))
                    {
                        list.remove(pos);
                    }
                    self.0.ws().nice_len.store(list.len(), Ordering::Relaxed);
                }
            }
        }
        let _leave = Leave(self, task);
        let _ = self.park(None);
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
        let mut n = 0;
        loop {
            let list = self.nice_list();
            match list.front() {
                Some(e) if e.epoch < below => {}
                _ => break,
            }
            let Some(e) = list.pop_front() else { break };
            // SAFETY: nice entries are tasklets homed here.
            unsafe { e.task.exec().nice = false };
            if e.task.claim(e.seq, Reason::Woken) {
                self.push_woken(e.task, Placement::Tail);
                n += 1;
            }
        }
        self.ws()
            .nice_len
            .store(self.nice_list().len(), Ordering::Relaxed);
        n
    }
}
