//! Shutdown: when `enter`'s main returns, every tasklet still alive is
//! killed (unwound, destructors run) on its own worker, and the workers
//! stop. A tasklet that tries to block or spin during shutdown is killed at
//! its next scheduler call. See `idle/README.md`, "Shutdown".

use crate::park::Placement;
use crate::scheduler::signal;
use crate::sync::Ordering;
use crate::task::{life, Outcome, Reason, TaskRef};
use crate::worker::WorkerLocal;

impl WorkerLocal {
    /// Called where a tasklet cannot suspend because the scheduler is
    /// shutting down: makes sure this worker has begun its shutdown (which
    /// kills every tasklet here), then unwinds the running tasklet. A
    /// tasklet that spins on a failing call can therefore not outlive the
    /// shutdown.
    ///
    /// The running tasklet unwinds whether or not a kill is still pending:
    /// one that caught its shutdown kill (`catch_unwind`) and calls the
    /// scheduler again is killed again, rather than spinning (or parking
    /// where nobody would wake it) while `enter` waits for it. A main
    /// tasklet unwinds only for a kill of its own.
    #[cold]
    pub(crate) fn shutdown_point(&self) {
        if !self.stopping.get() {
            self.handle_signals();
            if !self.stopping.get() {
                self.set_stopping();
                self.kill_all();
            }
        }
        let cur = self.current_ptr();
        if cur.is_main {
            self.check_kill();
        } else {
            Self::act_on_kill(cur);
        }
    }

    /// Makes every tasklet of this worker runnable with a kill pending.
    /// Allocates nothing (it may run when memory or mappings ran out): the
    /// ring's capacity is kept at least the registry's size (see `start`).
    pub(crate) fn kill_all(&self) {
        for t in self.ring().iter() {
            if t.home() == self.index && t.life() == life::FRESH {
                t.kill.store(true, Ordering::Release);
            }
        }
        while let Some(t) = self.ws().tickets.pop() {
            if t.pin(self.index) {
                t.kill.store(true, Ordering::Release);
            }
        }
        for i in 0..self.registry().len() {
            let t = self.registry()[i].clone();
            t.kill.store(true, Ordering::Release);
            if t.claim_current(Reason::Killed).is_some() {
                self.push_woken(t, Placement::Tail);
            } else if !t.scheduled() {
                self.ring_push_back(t);
            }
        }
    }

    /// Worker 0 after main returned: stop everything and kill what is left.
    pub(crate) fn shutdown_sweep(&self) {
        let sh = &self.shared;
        if let Some(m) = &self.main {
            self.ring_remove(m);
            m.life.store(life::DEAD, Ordering::Release);
        }
        sh.shutdown.store(true, Ordering::SeqCst);
        for (i, w) in sh.workers.iter().enumerate() {
            if i != self.index {
                w.signal.fetch_or(signal::SHUTDOWN, Ordering::SeqCst);
                let mut g = sh.idle.state.lock();
                sh.take_sleeper(&mut g, i);
                drop(g);
                w.parker.unpark();
            }
        }
        // Fresh tasklets nobody took: they die unstarted.
        let injected: Vec<TaskRef> = sh.injector.lock().drain(..).collect();
        sh.injector_len.store(0, Ordering::SeqCst);
        for t in injected {
            if t.steal(self.index) {
                drop(t.take_body());
                t.life.store(life::DEAD, Ordering::Release);
                for j in t.set_outcome(Outcome::Killed) {
                    j.unpark();
                }
            }
        }
        self.set_stopping();
        self.kill_all();
        let prev_current = self.current.get();
        self.run_loop();
        self.current.set(prev_current);
    }

    /// Gives cached stacks back (the worker is going away).
    pub(crate) fn release(&self) {
        self.stacks().drain_into(&self.shared.stacks);
        self.ring().clear();
        self.registry().clear();
        self.watchdogs().clear();
        self.nice_list().clear();
        self.timers().clear();
        *self.last_parked() = None;
    }
}
