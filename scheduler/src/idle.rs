//! Idle workers, wake-ups and quiescence. The protocol is described in
//! prose in `idle/README.md`, next to this file; this module implements it.

use crate::park::{Placement, Target};
use crate::scheduler::{signal, Shared};
use crate::sync::{fence, AtomicUsize, Mutex, Ordering};
use crate::task::{Reason, TaskRef};
use crate::worker::{Flow, WorkerLocal, SEARCH_ROUNDS};
use std::time::Instant;

#[doc = include_str!("idle/README.md")]
pub(crate) struct Idle {
    pub(crate) state: Mutex<IdleState>,
    /// Workers that are not asleep with their busy count given up (a worker
    /// sleeping with a pending timer keeps its count). Written under `state`.
    pub(crate) busy: AtomicUsize,
    /// Workers looking for work to steal.
    pub(crate) searching: AtomicUsize,
    /// Workers that are (or are about to be) asleep; spawners read it.
    pub(crate) sleepers: AtomicUsize,
}

pub(crate) struct IdleState {
    /// Sleeping workers: (index, still counted in `busy`).
    pub(crate) sleeping: Vec<(usize, bool)>,
    /// Foreign threads talking to this scheduler that are running (not
    /// parked in the park API).
    pub(crate) participants: usize,
    /// Workers woken by `wakep` that start out searching.
    pub(crate) woken_searching: Vec<usize>,
    /// Per sleeping worker: its last deadlock-eligible park, with the
    /// order in which the worker went to sleep; the deadlock victim is the
    /// newest (the last to block, as in Stackless).
    pub(crate) candidates: Vec<Option<(u64, crate::park::Unparker)>>,
    /// Orders the candidates.
    pub(crate) clock: u64,
}

impl Idle {
    pub(crate) fn new(n: usize) -> Idle {
        Idle {
            state: Mutex::new(IdleState {
                sleeping: Vec::new(),
                participants: 0,
                woken_searching: Vec::new(),
                candidates: (0..n).map(|_| None).collect(),
                clock: 0,
            }),
            busy: AtomicUsize::new(n),
            searching: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
        }
    }

    /// Back to "every worker busy" for a new `enter`.
    pub(crate) fn reset(&self, n: usize) {
        let mut g = self.state.lock();
        g.sleeping.clear();
        g.woken_searching.clear();
        g.candidates.iter_mut().for_each(|c| *c = None);
        self.busy.store(n, Ordering::SeqCst);
        self.searching.store(0, Ordering::SeqCst);
        self.sleepers.store(0, Ordering::SeqCst);
    }
}

/// What the quiescence action left for the worker that performed it.
#[derive(Default)]
pub(crate) struct Quiescent {
    /// A tasklet of the performer whose park the action claimed: to wake
    /// on the performer's own run queue.
    pub(crate) local: Option<TaskRef>,
    /// The performer's paused main tasklet, to insert (revive).
    pub(crate) revive_main: Option<TaskRef>,
    /// The performer's innermost watchdog must be revived.
    pub(crate) revive_local: bool,
    /// The performer itself (a foreign thread) is the deadlock victim.
    pub(crate) victim_is_self: bool,
}

impl Shared {
    /// Wakes worker `w` after publishing work for it (an inbox entry or a
    /// signal bit): the waker's half of the sleep handshake.
    pub(crate) fn notify_worker(&self, w: usize) {
        if !crate::sync::weakened(crate::sync::Weakness::NoSleepFence) {
            fence(Ordering::SeqCst);
        }
        if self.workers[w].sleeping.load(Ordering::SeqCst) {
            let mut g = self.idle.state.lock();
            self.take_sleeper(&mut g, w);
            drop(g);
            self.workers[w].parker.unpark();
        }
    }

    /// Removes `w` from the sleepers (counting it busy again); idle lock held.
    pub(crate) fn take_sleeper(&self, g: &mut IdleState, w: usize) -> bool {
        if let Some(pos) = g.sleeping.iter().position(|&(i, _)| i == w) {
            let (_, holds_busy) = g.sleeping.swap_remove(pos);
            self.idle.sleepers.fetch_sub(1, Ordering::SeqCst);
            if !holds_busy {
                self.idle.busy.fetch_add(1, Ordering::SeqCst);
            }
            true
        } else {
            false
        }
    }

    /// Wakes a sleeping worker to steal newly published fresh work, unless a
    /// worker is already searching (Go's `wakep`). Called after the work is
    /// published; the fence pairs with the sleeper's announce-then-recheck.
    pub(crate) fn wakep(&self) {
        fence(Ordering::SeqCst);
        if self.idle.sleepers.load(Ordering::SeqCst) == 0
            || self.idle.searching.load(Ordering::SeqCst) != 0
        {
            return;
        }
        let mut g = self.idle.state.lock();
        if self.idle.searching.load(Ordering::SeqCst) != 0 {
            return;
        }
        if let Some(&(w, _)) = g.sleeping.last() {
            self.take_sleeper(&mut g, w);
            self.idle.searching.fetch_add(1, Ordering::SeqCst);
            g.woken_searching.push(w);
            drop(g);
            self.workers[w].parker.unpark();
        }
    }

    /// Whether any worker has fresh tasklets a thief could take, or the
    /// injector has some (approximate; used to decide whether to wake more).
    pub(crate) fn has_stealable(&self) -> bool {
        self.injector_len.load(Ordering::SeqCst) > 0
            || self.workers.iter().any(|w| w.tickets.len() > 0)
    }

    /// Pushes `t` (homed at `w`) to `w`'s inbox and wakes `w`.
    pub(crate) fn push_inbox(&self, w: usize, entry: crate::worker::InboxEntry) {
        entry.task.queued.store(true, Ordering::Release);
        let ws = &self.workers[w];
        ws.inbox.lock().push(entry);
        ws.signal.fetch_or(signal::INBOX, Ordering::SeqCst);
        self.notify_worker(w);
    }

    /// Same as [`Shared::push_inbox`] but with the idle lock already held
    /// (the quiescence action).
    fn push_inbox_locked(&self, g: &mut IdleState, w: usize, entry: crate::worker::InboxEntry) {
        if entry.is_wake() {
            entry.task.mark_woken();
        }
        entry.task.queued.store(true, Ordering::Release);
        let ws = &self.workers[w];
        ws.inbox.lock().push(entry);
        ws.signal.fetch_or(signal::INBOX, Ordering::SeqCst);
        self.take_sleeper(g, w);
        ws.parker.unpark();
    }

    /// The quiescence action, run with the idle lock held by whoever brought
    /// the scheduler to rest (`busy == 0`): revive every watchdog (`run()`
    /// returns); else revive the main tasklet if it is paused; else — when
    /// no participant thread is running either — answer one park with
    /// `Deadlock`: `victim` (the park that made the scheduler quiescent) if
    /// it can still be claimed, else the main tasklet's park.
    ///
    /// `performer` is the performing worker's index (`None` for a foreign
    /// thread); work for the performer itself is returned, not queued.
    pub(crate) fn on_quiescent(
        &self,
        g: &mut IdleState,
        performer: Option<usize>,
        victim: Option<&crate::park::Unparker>,
    ) -> Quiescent {
        let mut out = Quiescent::default();
        let mut any_watchdog = false;
        for (i, w) in self.workers.iter().enumerate() {
            if w.watchdogs.load(Ordering::SeqCst) > 0 {
                any_watchdog = true;
                if Some(i) == performer {
                    out.revive_local = true;
                } else {
                    w.signal.fetch_or(signal::REVIVE, Ordering::SeqCst);
                    self.take_sleeper(g, i);
                    w.parker.unpark();
                }
            }
        }
        if any_watchdog || self.is_shutdown() {
            return out;
        }
        // No `run()` is waiting: the main tasklet is the fallback watchdog.
        // A paused main is revived (Stackless's `revive_main`).
        let main = self.main_task();
        if let Some(main) = &main {
            if main.alive() && !main.scheduled() {
                if performer == Some(0) {
                    out.revive_main = Some(main.clone());
                } else {
                    self.push_inbox_locked(g, 0, crate::worker::InboxEntry::insert(main.clone()));
                }
                return out;
            }
        }
        if g.participants > 0 {
            return out;
        }
        // A true deadlock: the newest blocking park fails (Stackless raises
        // the error in the last tasklet that tried to block), else main's.
        let mut newest: Vec<(u64, crate::park::Unparker)> = victim
            .map(|v| (u64::MAX, v.clone()))
            .into_iter()
            .chain(g.candidates.iter_mut().filter_map(|c| c.take()))
            .collect();
        newest.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (_, v) in &newest {
            if v.claim_with(Reason::Deadlock) {
                match &v.target {
                    crate::park::Target::Tasklet(t) => {
                        let home = t.home();
                        if Some(home) == performer {
                            out.local = Some(t.clone());
                        } else {
                            self.push_inbox_locked(
                                g,
                                home,
                                crate::worker::InboxEntry::wake(t.clone(), v.seq),
                            );
                        }
                    }
                    crate::park::Target::Thread(_) => out.victim_is_self = true,
                }
                return out;
            }
        }
        if let Some(main) = main {
            if main.nice_parked() && performer != Some(0) {
                // Only worker 0 may claim main's nice park: ask it.
                let w0 = &self.workers[0];
                w0.signal.fetch_or(signal::MAIN_DEADLOCK, Ordering::SeqCst);
                self.take_sleeper(g, 0);
                w0.parker.unpark();
                return out;
            }
            if let Some(seq) = main.claim_current(Reason::Deadlock) {
                if performer == Some(0) {
                    out.local = Some(main);
                } else {
                    self.push_inbox_locked(g, 0, crate::worker::InboxEntry::wake(main, seq));
                }
            }
        }
        out
    }

    /// A foreign participant thread starts running (registered up front).
    pub(crate) fn participant_started(&self) {
        self.idle.state.lock().participants += 1;
    }

    /// A parked participant thread was woken: count it running again.
    pub(crate) fn participant_resumed(&self) {
        self.idle.state.lock().participants += 1;
    }

    /// A participant thread is about to park without a deadline. Returns
    /// true when that would leave nothing able to wake anything: then the
    /// thread itself gets the deadlock answer (its park claimed) and does
    /// not block; its count stays.
    pub(crate) fn participant_parking(&self, me: &crate::park::Unparker) -> bool {
        let mut g = self.idle.state.lock();
        g.participants = g
            .participants
            .checked_sub(1)
            .expect("stackless: participant thread count underflow");
        if g.participants == 0 && self.idle.busy.load(Ordering::SeqCst) == 0 {
            let q = self.on_quiescent(&mut g, None, Some(me));
            if q.victim_is_self {
                g.participants += 1;
                return true;
            }
        }
        false
    }

    /// A participant thread ended.
    pub(crate) fn participant_exited(&self) {
        let mut g = self.idle.state.lock();
        g.participants = g.participants.saturating_sub(1);
        if g.participants == 0 && self.idle.busy.load(Ordering::SeqCst) == 0 {
            let _ = self.on_quiescent(&mut g, None, None);
        }
    }
}

// ---- the worker's side of the protocol -------------------------------------

impl WorkerLocal {
    /// The ring is empty: find work, or sleep until there is some.
    pub(crate) fn idle(&self) -> Flow {
        if self.stopping.get() {
            self.sync_inbox();
            if !self.ring().is_empty() {
                return Flow::Continue;
            }
            if self.registry().is_empty() {
                return Flow::Stop;
            }
            self.kill_all();
            return Flow::Continue;
        }
        if self.ws().signal.load(Ordering::Acquire) != 0 {
            self.handle_signals();
            if !self.ring().is_empty() {
                return Flow::Continue;
            }
        }
        if self.timers().live() > 0 && self.fire_timers(Instant::now()) {
            return Flow::Continue;
        }
        if self.shared.nworkers > 1 && self.search() {
            return Flow::Continue;
        }
        self.sleep();
        Flow::Continue
    }

    /// Looks for fresh tasklets to steal, spinning a little. True if found.
    // Under loom `SEARCH_ROUNDS` is 1, so the pausing rounds are none.
    #[cfg_attr(loom, allow(clippy::absurd_extreme_comparisons))]
    fn search(&self) -> bool {
        let idle = &self.shared.idle;
        let n = self.shared.nworkers;
        if !self.searching.get() {
            let searching = idle.searching.load(Ordering::SeqCst);
            if 2 * searching >= n {
                if self.others_wait_for_quiescence(searching) {
                    return false;
                }
                return self.watch_inbox();
            }
            idle.searching.fetch_add(1, Ordering::SeqCst);
            self.searching.set(true);
        }
        for round in 0..SEARCH_ROUNDS {
            if self.steal() {
                self.stop_searching(true);
                return true;
            }
            if self.ws().signal.load(Ordering::Acquire) != 0 {
                self.handle_signals();
                if !self.ring().is_empty() {
                    self.stop_searching(true);
                    return true;
                }
            }
            // (Never under loom: one round there, nothing to cut short.)
            if round + 1 < SEARCH_ROUNDS && self.alone_awake() {
                break;
            }
            if round < SEARCH_ROUNDS / 2 {
                // Pause between steal attempts, but notice our own signal
                // word (a hand-off to this worker) within a few pauses.
                self.pause_watching_signal(16);
            } else {
                crate::sync::yield_thread();
            }
        }
        self.stop_searching(false);
        false
    }

    /// Whether every other worker sleeps with nothing to do (`busy` counts
    /// only us): no tasklet of theirs can hand us work, and spinning or
    /// watching would only delay the quiescence our own sleep may complete
    /// (a frame loop's `run()` returns then). A plain thread's wake still
    /// reaches us through the sleep handshake.
    #[inline]
    fn alone_awake(&self) -> bool {
        self.shared.idle.busy.load(Ordering::Relaxed) <= 1
    }

    /// Whether our sleep is what a `run()` elsewhere waits for: every other
    /// awake worker is searching (it ran dry), one of them hosts a `run()`
    /// caller, and none has a signal pending (a hand-off on its way). Then
    /// watching for work would only delay the quiescence that lets that
    /// `run()` return (a frame loop on several workers waited out our watch
    /// and then a futex wake-up each frame). Only a hint: the sleep
    /// handshake catches whatever comes after all. Without a waiting
    /// `run()` we watch as before: a searcher may be a moment from picking
    /// up a hand-off that makes it answer us (cross-worker ping-pong).
    fn others_wait_for_quiescence(&self, searching: usize) -> bool {
        let sh = &self.shared;
        if sh.idle.busy.load(Ordering::Relaxed) > searching + 1 {
            return false;
        }
        let mut watchdog = false;
        for (i, w) in sh.workers.iter().enumerate() {
            if i == self.index {
                continue;
            }
            if w.signal.load(Ordering::Relaxed) != 0 {
                return false;
            }
            watchdog |= w.watchdogs.load(Ordering::Relaxed) > 0;
        }
        watchdog
    }

    /// Enough workers are searching already: instead of stealing, watch
    /// only this worker's own signal word for a while before sleeping. A
    /// hand-off from another worker (a channel partner answering) usually
    /// arrives within microseconds, and catching it here saves a futex
    /// sleep and wake-up on both sides. Touches no shared line but our own
    /// signal word, so it adds no contention. True if work arrived.
    // Under loom `SEARCH_ROUNDS` is 1, so there is no watching at all.
    #[cfg_attr(loom, allow(clippy::reversed_empty_ranges))]
    fn watch_inbox(&self) -> bool {
        // The same time as the searchers' spinning rounds, but looking
        // every few pauses: the load hits our own cache line until the
        // waker writes it.
        for i in 0..SEARCH_ROUNDS / 2 * 16 {
            if self.pause_watching_signal(1) {
                self.handle_signals();
                if !self.ring().is_empty() {
                    return true;
                }
            }
            if i % 16 == 15 && self.alone_awake() {
                break;
            }
        }
        false
    }

    /// Pauses for up to `checks` × 4 spin-loop hints, looking at this
    /// worker's signal word after every four; true as soon as it is set.
    /// (`handle_signals` takes the bits with its own read-modify-write, so
    /// a relaxed look suffices.)
    #[inline]
    fn pause_watching_signal(&self, checks: u32) -> bool {
        for _ in 0..checks {
            for _ in 0..4 {
                crate::sync::spin_wait();
            }
            if self.ws().signal.load(Ordering::Relaxed) != 0 {
                return true;
            }
        }
        false
    }

    fn stop_searching(&self, found: bool) {
        if self.searching.replace(false) {
            let prev = self.shared.idle.searching.fetch_sub(1, Ordering::SeqCst);
            if found && prev == 1 && self.shared.has_stealable() {
                self.shared.wakep();
            }
        }
    }

    /// One pass over the injector and the other workers' tickets, oldest
    /// first; steals up to half of a victim's fresh tasklets. True if any.
    fn steal(&self) -> bool {
        let sh = &self.shared;
        let me = self.index;
        let mut got = false;
        if sh.injector_len.load(Ordering::Acquire) > 0 {
            let mut q = sh.injector.lock();
            let take = (q.len() / sh.nworkers).clamp(1, 32);
            for _ in 0..take {
                let Some(t) = q.pop_front() else { break };
                if t.steal(me) {
                    self.adopt(t);
                    got = true;
                }
            }
            sh.injector_len.store(q.len(), Ordering::Release);
        }
        if got {
            return true;
        }
        let n = sh.nworkers;
        if n == 1 {
            return false;
        }
        let start = self.next_rand() as usize % n;
        for k in 0..n {
            let v = (start + k) % n;
            if v == me {
                continue;
            }
            let vs = &sh.workers[v];
            let len = vs.tickets.len();
            if len == 0 {
                continue;
            }
            // Half of the victim's tickets, oldest first (stale ones, whose
            // tasklet was already claimed, are dropped on the way). All of
            // the half at once: taking at most 32 per visit interleaved a
            // burst's tasklets between the workers in small runs, and
            // tasklets that talk to their neighbours (a ring) then crossed
            // workers every few hops.
            let want = len.div_ceil(2);
            let mut taken = 0;
            while taken < want {
                let Some(t) = vs.tickets.pop() else { break };
                if t.steal(me) {
                    self.adopt(t);
                    taken += 1;
                }
            }
            if taken > 0 {
                return true;
            }
        }
        false
    }

    /// A stolen fresh tasklet joins our ring.
    fn adopt(&self, t: TaskRef) {
        // SAFETY: the steal CAS made `t` ours, and it has not started.
        let ex = unsafe { t.exec() };
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        self.ring().push_back(t);
    }

    fn next_rand(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// Sleeps until woken (or the next timer). Runs the quiescence action
    /// when this worker is the last to go idle.
    fn sleep(&self) {
        let sh = &self.shared;
        let me = self.index;
        let ws = self.ws();
        let holds_busy = self.timers().live() > 0;
        let mut last_idle = false;
        {
            let mut g = sh.idle.state.lock();
            ws.sleeping.store(true, Ordering::SeqCst);
            sh.idle.sleepers.fetch_add(1, Ordering::SeqCst);
            if !crate::sync::weakened(crate::sync::Weakness::NoSleepFence) {
                crate::sync::fence(Ordering::SeqCst);
            }
            let found = !crate::sync::weakened(crate::sync::Weakness::NoRecheckBeforeSleep)
                && (ws.signal.load(Ordering::SeqCst) != 0 || self.steal());
            if found {
                sh.idle.sleepers.fetch_sub(1, Ordering::SeqCst);
                ws.sleeping.store(false, Ordering::SeqCst);
                return;
            }
            g.sleeping.push((me, holds_busy));
            g.clock += 1;
            g.candidates[me] = self.take_candidate().map(|u| (g.clock, u));
            if !holds_busy {
                let busy = sh.idle.busy.fetch_sub(1, Ordering::SeqCst) - 1;
                last_idle = busy == 0;
                if busy == 0 {
                    let q = sh.on_quiescent(&mut g, Some(me), None);
                    if q.local.is_some() || q.revive_local || q.revive_main.is_some() {
                        sh.take_sleeper(&mut g, me);
                        g.candidates[me] = None;
                        ws.sleeping.store(false, Ordering::SeqCst);
                        drop(g);
                        self.apply_quiescent(q);
                        return;
                    }
                }
            }
        }
        let deadline = if holds_busy {
            self.timers().next_deadline()
        } else {
            None
        };
        if last_idle {
            // The whole scheduler is idle: the time to give back the memory
            // of stacks pooled beyond the warm reserve.
            sh.stacks.trim();
        }
        ws.parker.park(deadline);
        let mut g = sh.idle.state.lock();
        sh.take_sleeper(&mut g, me);
        if let Some((_, u)) = g.candidates[me].take() {
            if let Target::Tasklet(t) = &u.target {
                *self.last_parked() = Some((TaskRef::as_ptr(t), u.seq));
            }
        }
        if let Some(pos) = g.woken_searching.iter().position(|&w| w == me) {
            g.woken_searching.swap_remove(pos);
            self.searching.set(true);
        }
        ws.sleeping.store(false, Ordering::SeqCst);
    }

    fn apply_quiescent(&self, q: Quiescent) {
        if q.revive_local {
            self.revive_watchdog();
        }
        if let Some(t) = q.local {
            // We won this park's claim: finish the wake.
            self.push_woken(t, Placement::Tail);
        }
        if let Some(main) = q.revive_main {
            self.ring_push_back(main);
        }
    }
}
