//! A worker: its Stackless ring, its scheduling loop, and the operations a
//! running tasklet performs on its own worker.
//!
//! # The ring
//!
//! Each worker owns a [`RunQueue`] that only its thread touches: the Stackless
//! run queue, with the running tasklet at the front (`current` is the head of
//! the ring). `insert` appends at the back (just before `current` in
//! Stackless's circular list), `schedule()` rotates by one, switching to a
//! tasklet already in the ring rotates the ring to it, and switching to one
//! that is not appends it and makes it the head. That is all it takes to
//! reproduce Stackless's orders exactly on one worker.
//!
//! # The loop
//!
//! The loop runs on the worker thread's own stack. It resumes the head of
//! the ring; the tasklet runs until it switches out, after rearranging the
//! ring itself. Worker 0 hosts the main tasklet: main is plain code on the
//! thread's stack, so when main yields it *calls* the loop, which returns as
//! soon as main is the head again. Between tasklets the loop polls one
//! signal word (inbox, nice round, revive, shutdown) and every 61 resumes
//! the timers.
//!
//! # Direct switches
//!
//! With our own stack switch (x86-64 Linux, see `coroutine.rs`) a tasklet
//! that switches out does the loop's work itself when the loop has nothing
//! else to do: if the ring's head is a started tasklet of this worker, no
//! signal is pending and the timers are not due, it makes that tasklet
//! current and switches straight to it (`direct_successor`,
//! `enter`). Worker 0's main does the same instead of calling the
//! loop, and is switched to directly when it is the head; while main is
//! switched out that way no loop runs, so a tasklet that needs the loop
//! leaves to main, which then runs it (`switch_out_main`). A hop between
//! tasklets is then one switch instead of two and no loop iteration. The
//! order is the loop's: the head runs next either way.
//!
//! When the ring is empty the worker goes idle (see `idle/README.md`).

use crate::coroutine::{Coro, Landed, LoopContext, Suspender, DIRECT_SWITCH};
use crate::error::TaskletError;
use crate::park::{Placement, Target, Unparker, Wake};
use crate::run_queue::{RingView, RunQueue};
use crate::scheduler::{signal, Shared, WorkerShared};
use crate::sync::{Arc, Ordering};
use crate::task::{life, phase, Failure, Outcome, Reason, Task, TaskRef, TaskletExit, STEALABLE};
use crate::timer::Timers;
use std::cell::{Cell, UnsafeCell};
use std::time::Instant;

/// How often (in resumes) the loop looks at its timers while busy.
const TIMER_TICK: u32 = 61;
/// How far ahead in the ring the loop prefetches tasklet records. With
/// thousands of tasklets, each stack top is also a TLB miss (one 4 KiB page
/// per stack), so the stack's prefetch needs the longer lead: 8 and 4 gave
/// ~25% faster yields than 4 and 2 with 10,000 tasklets.
#[cfg(all(target_arch = "x86_64", not(loom)))]
const RECORD_PREFETCH_DISTANCE: usize = 8;
/// How far ahead in the ring the loop prefetches saved stack tops (read
/// from records prefetched earlier, so this is the smaller distance).
#[cfg(all(target_arch = "x86_64", not(loom)))]
const STACK_PREFETCH_DISTANCE: usize = 4;

/// Asks for the top of a saved stack: what a tasklet reads from its stack
/// when resumed is what its frames keep across the switch, from `sp` up.
/// One line: more only cost bandwidth. Not after a light suspension
/// (`Exec::light`): then it most likely reads none, and a needless
/// prefetch costs a page-table walk (a frame loop of 10,000 tasklets that
/// read none: ~28 ns per tasklet without it, ~56 with it).
#[cfg(all(target_arch = "x86_64", not(loom), own_switch))]
#[inline(always)]
fn prefetch_stack_top(sp: usize) {
    if sp != 0 {
        crate::sync::prefetch((sp & !63) as *const u8);
    }
}

/// Rounds a worker spends looking for work to steal before sleeping (one
/// under loom: spinning only multiplies the interleavings to explore).
pub(crate) const SEARCH_ROUNDS: u32 = if cfg!(loom) { 1 } else { 24 };

/// An entry of a worker's inbox: a tasklet homed there that another thread
/// made runnable.
pub(crate) struct InboxEntry {
    pub(crate) task: TaskRef,
    /// `Some(seq)`: a claimed wake of park `seq`; `None`: an insert of a
    /// paused tasklet (or a kill of one).
    seq: Option<u64>,
}

impl InboxEntry {
    pub(crate) fn wake(task: TaskRef, seq: u64) -> InboxEntry {
        InboxEntry {
            task,
            seq: Some(seq),
        }
    }
    pub(crate) fn insert(task: TaskRef) -> InboxEntry {
        InboxEntry { task, seq: None }
    }
    pub(crate) fn is_wake(&self) -> bool {
        self.seq.is_some()
    }
}

/// A nice tasklet of this worker and the round it joined. Entries are in
/// the order the tasklets became nice, so their rounds never decrease.
pub(crate) struct NiceEntry {
    pub(crate) task: TaskRef,
    pub(crate) epoch: u64,
}

/// The worker-thread-local state of a worker. Reached through a
/// thread-local pointer; every field is touched only by the worker's thread
/// (or, under loom, by the threads standing in for its tasklets, which run
/// only while the worker waits for them).
pub(crate) struct WorkerLocal {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// `&shared.workers[index]`, cached (the loop reads it every iteration).
    pub(crate) ws: *const WorkerShared,
    pub(crate) ring: UnsafeCell<RunQueue>,
    pub(crate) current: Cell<*const Task>,
    pub(crate) main: Option<TaskRef>,
    pub(crate) watchdogs: UnsafeCell<Vec<TaskRef>>,
    pub(crate) registry: UnsafeCell<Vec<TaskRef>>,
    pub(crate) timers: UnsafeCell<Timers>,
    pub(crate) stacks: UnsafeCell<crate::stack::LocalPool>,
    /// The last deadlock-eligible park on this worker (task, park seq), while
    /// nothing else has run here since (the deadlock victim candidate). A
    /// plain pointer: the task is parked, so the registry (or the main slot)
    /// keeps it alive until it next runs here, which clears this first.
    pub(crate) last_parked: UnsafeCell<Option<(*const Task, u64)>>,
    pub(crate) nice: UnsafeCell<Vec<NiceEntry>>,
    /// The nice list's capacity while this worker runs, 0 once it stops:
    /// `be_nice`'s common case tests only this, and a full list or a
    /// shutdown (see `set_stopping`) both take its slow path.
    pub(crate) nice_room: Cell<usize>,
    /// Whether the running tasklet's prepared park may get a deadlock answer.
    pub(crate) park_eligible: Cell<bool>,
    pub(crate) ticks: Cell<u32>,
    pub(crate) searching: Cell<bool>,
    pub(crate) stopping: Cell<bool>,
    pub(crate) fresh_starts: Cell<u32>,
    pub(crate) rng: Cell<u64>,
    pub(crate) announced_stack_error: Cell<bool>,
    /// The loop's saved context while a tasklet runs (see `coroutine.rs`).
    pub(crate) loop_ctx: LoopContext,
    /// The ring's handle of the tasklet whose body just ended: `tasklet_end`
    /// leaves it here and `finish` gives it up with the registry's, in one
    /// count update.
    pub(crate) ended: Cell<Option<TaskRef>>,
}

#[cfg(not(loom))]
pub(crate) use crate::context::running_guard;
pub(crate) use crate::context::{
    adopt_participant, current_shared, foreign_current_is, foreign_main, foreign_parker, install,
    local, local_or_default, register_participant, uninstall,
};

/// The running tasklet after a suspension that kept nothing live across
/// its switch: what the switch handed over (see [`Landed`]), or else the
/// worker's `current` (a tasklet never changes thread, so it is the same
/// worker). `None` only off any worker.
///
/// # Safety
///
/// `landed` is what the running tasklet's own suspension returned, and the
/// reference is not used once that tasklet has finished.
#[inline(always)]
pub(crate) unsafe fn resumed_task<'a>(landed: Option<Landed>) -> Option<&'a Task> {
    // SAFETY: forwarded to the caller.
    match landed.and_then(|l| unsafe { Task::landed(l) }) {
        Some(t) => Some(t),
        None => local().map(|w| w.current_ptr()),
    }
}

/// How the running tasklet left the ring before a switch, as far as the
/// direct switch cares (see `switch_out_tasklet_viewing`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// Unknown: it may still be the ring's head.
    Any,
    /// `schedule()`'s common case: from the head to the tail of a ring of
    /// two or more, so another tasklet is the head.
    ToTail,
    /// `be_nice()`'s common case: off the ring's head. No prefetch ahead
    /// either: the records a nice round wakes were all just written by
    /// `run_nice_local`, and a nice tasklet's resume reads nothing from its
    /// stack (without it, `nice_frames` at 1 worker measured faster in 28
    /// of 40 alternating runs, median 15.6 → 13.6 ns).
    Nice,
}

/// The body of worker threads 1..n.
pub(crate) fn worker_thread(shared: Arc<Shared>, index: usize) {
    #[cfg(not(loom))]
    crate::stack::overflow::ensure_altstack();
    let w = WorkerLocal::new(index, shared, None);
    let prev = install(&w);
    w.run_loop();
    uninstall(prev);
    w.release();
}

/// Whether `t` is homed on the worker of the calling thread.
#[inline]
pub(crate) fn is_local(t: &Task) -> bool {
    match local() {
        Some(w) => t.is_on(&w.shared) && t.home() == w.index,
        None => false,
    }
}

/// Makes a claimed tasklet runnable (see `park.rs`). True when it went on
/// the calling worker's ring.
#[inline]
pub(crate) fn wake_task(t: TaskRef, at: Placement) -> bool {
    if let Some(w) = local() {
        if t.is_on(&w.shared) && t.home() == w.index {
            w.push_woken(t, at);
            return true;
        }
    }
    wake_remote(t)
}

/// `wake_task` for a tasklet homed on another worker: through its inbox.
#[inline(never)]
fn wake_remote(t: TaskRef) -> bool {
    let seq = crate::task::word_seq(t.park.load(Ordering::Acquire));
    t.mark_woken();
    let Some(shared) = t.shared() else {
        return false;
    };
    if local().is_none() {
        // A foreign thread waking a tasklet takes part in the scheduler.
        if let Some(arc) = shared_arc(shared) {
            register_participant(&arc);
        }
    }
    shared.push_inbox(t.home(), InboxEntry::wake(t.clone(), seq));
    false
}

fn shared_arc(s: &Shared) -> Option<Arc<Shared>> {
    if let Some(w) = local() {
        if std::ptr::eq(&*w.shared, s) {
            return Some(w.shared.clone());
        }
    }
    let main = s.main_task()?;
    // The main tasklet holds a strong count of its scheduler.
    let p = main.shared()? as *const Shared;
    // SAFETY: `p` points at a live `Shared` kept alive by `main`; bumping the
    // count of an `Arc` whose pointer we hold is sound.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// See [`crate::park::prepare_park`].
#[inline(always)]
pub(crate) fn prepare_park(eligible: bool) -> Unparker {
    if let Some(w) = local() {
        let t = w.take_current_for_park();
        let seq = t.prepare_park();
        w.park_eligible.set(eligible);
        return Unparker {
            target: Target::Tasklet(t),
            seq,
        };
    }
    let p = foreign_parker();
    let seq = p.prepare();
    Unparker {
        target: Target::Thread(p),
        seq,
    }
}

/// See [`crate::park::park`].
#[inline]
pub(crate) fn park(deadline: Option<Instant>) -> Wake {
    match local() {
        Some(w) => w.park(deadline),
        None => park_foreign(deadline),
    }
}

/// `park` on a plain OS thread.
#[inline(never)]
fn park_foreign(deadline: Option<Instant>) -> Wake {
    let p = foreign_parker();
    let w = p.word.load(Ordering::Acquire);
    let seq = crate::task::word_seq(w);
    if crate::task::word_phase(w) == phase::IDLE {
        return Wake::Woken;
    }
    if std::thread::panicking() {
        if p.claim(seq, Reason::Deadlock) {
            p.wake();
        }
    } else if deadline.is_none() {
        let part = p.participant.lock().clone();
        if let Some(s) = part {
            let me = Unparker {
                target: Target::Thread(p.clone()),
                seq,
            };
            // Stop counting as running, unless a waker already claimed this
            // park; from then on whoever claims it counts us back in.
            if p.release_if_waiting(seq) && s.participant_parking(&me) {
                // We are the deadlock victim: our park is claimed; finish it.
                p.unrelease();
                p.wake();
            }
        }
    }
    match p.wait(seq, deadline) {
        Reason::TimedOut => Wake::TimedOut,
        Reason::Deadlock => Wake::Deadlock,
        _ => Wake::Woken,
    }
}

/// See [`crate::park::cancel_park`].
pub(crate) fn cancel_park(u: &Unparker) -> bool {
    let word = match &u.target {
        Target::Tasklet(t) => &t.park,
        Target::Thread(p) => &p.word,
    };
    let ok = word
        .compare_exchange(
            crate::task::park_word(u.seq, phase::WAITING, 0),
            crate::task::park_word(u.seq, phase::IDLE, 0),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok();
    if ok {
        if let Target::Tasklet(t) = &u.target {
            t.queued.store(true, Ordering::Release);
            // The tasklet left the ring when it prepared the park: if it is
            // the caller, it goes back to the head now; otherwise its own
            // `park` finds the park ended and does it.
            if let Some(w) = local() {
                if std::ptr::eq(w.current_ptr(), &**t) {
                    w.reenter_ring_current();
                }
            }
        }
    }
    ok
}

pub(crate) enum Flow {
    Continue,
    Stop,
}

impl WorkerLocal {
    pub(crate) fn new(index: usize, shared: Arc<Shared>, main: Option<TaskRef>) -> WorkerLocal {
        let mut ring = RunQueue::with_capacity(64);
        if let Some(m) = &main {
            ring.push_back(m.clone());
            // SAFETY: the main task is only reachable by this thread so far.
            unsafe { m.exec().in_ring = true };
        }
        let current = main.as_ref().map_or(std::ptr::null(), TaskRef::as_ptr);
        let ws = &shared.workers[index] as *const WorkerShared;
        WorkerLocal {
            index,
            ws,
            shared,
            ring: UnsafeCell::new(ring),
            current: Cell::new(current),
            main,
            watchdogs: UnsafeCell::new(Vec::new()),
            registry: UnsafeCell::new(Vec::new()),
            timers: UnsafeCell::new(Timers::default()),
            stacks: UnsafeCell::new(Default::default()),
            last_parked: UnsafeCell::new(None),
            nice: UnsafeCell::new(Vec::new()),
            nice_room: Cell::new(0),
            park_eligible: Cell::new(true),
            ticks: Cell::new(0),
            searching: Cell::new(false),
            stopping: Cell::new(false),
            fresh_starts: Cell::new(0),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
            announced_stack_error: Cell::new(false),
            loop_ctx: LoopContext::default(),
            ended: Cell::new(None),
        }
    }

    // ----- owner-only accessors -------------------------------------------

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn ring(&self) -> &mut RunQueue {
        // SAFETY: only this worker's thread reaches `self` (thread-local
        // pointer), and callers never hold the reference across a switch.
        unsafe { &mut *self.ring.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn registry(&self) -> &mut Vec<TaskRef> {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.registry.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn watchdogs(&self) -> &mut Vec<TaskRef> {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.watchdogs.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn timers(&self) -> &mut Timers {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.timers.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn stacks(&self) -> &mut crate::stack::LocalPool {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.stacks.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn nice_list(&self) -> &mut Vec<NiceEntry> {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.nice.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn last_parked(&self) -> &mut Option<(*const Task, u64)> {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.last_parked.get() }
    }

    #[inline(always)]
    pub(crate) fn ws(&self) -> &WorkerShared {
        // SAFETY: `ws` points into `self.shared.workers`, which `self.shared`
        // keeps alive and never reallocates.
        unsafe { &*self.ws }
    }

    /// The running tasklet.
    #[inline(always)]
    pub(crate) fn current_ptr(&self) -> &Task {
        // SAFETY: `current` always points at a task kept alive by the ring,
        // the registry or the main slot while it runs.
        unsafe { &*self.current.get() }
    }

    /// The running tasklet as a shared handle.
    pub(crate) fn current_task(&self) -> TaskRef {
        task_ref(self.current_ptr())
    }

    /// Whether `t` is the running tasklet.
    #[inline(always)]
    pub(crate) fn is_current(&self, t: &Task) -> bool {
        std::ptr::eq(self.current.get(), t)
    }

    // ----- ring primitives --------------------------------------------------

    /// Appends `t` at the tail (Stackless insert). No-op if already in the ring.
    #[inline]
    pub(crate) fn ring_push_back(&self, t: TaskRef) {
        // SAFETY: `t` is homed here (callers check), so its exec is ours.
        let ex = unsafe { t.exec() };
        if ex.in_ring {
            return;
        }
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        self.ring().push_back(t);
    }

    /// Removes `t` from the ring (wherever it is). True if it was there.
    pub(crate) fn ring_remove(&self, t: &Task) -> bool {
        // SAFETY: `t` is homed here.
        let ex = unsafe { t.exec() };
        if !ex.in_ring {
            return false;
        }
        drop(self.ring().remove_task(t));
        ex.in_ring = false;
        t.queued.store(false, Ordering::Release);
        true
    }

    /// Makes `t` (in the ring or not) the head, Stackless's "switch to":
    /// a tasklet in the ring rotates the ring to it; one outside is
    /// appended at the tail and made the head.
    pub(crate) fn ring_make_head(&self, t: &TaskRef) {
        // SAFETY: `t` is homed here.
        let ex = unsafe { t.exec() };
        let ring = self.ring();
        if ex.in_ring {
            if let Some(pos) = ring.position(|x| TaskRef::ptr_eq(x, t)) {
                ring.rotate_left(pos);
                return;
            }
        }
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        ring.push_front(t.clone());
    }

    /// A claimed tasklet of ours becomes runnable.
    #[inline(always)]
    pub(crate) fn push_woken(&self, t: TaskRef, at: Placement) {
        t.mark_woken();
        // SAFETY: `t` is homed here.
        let ex = unsafe { t.exec() };
        if ex.in_ring {
            return;
        }
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        let ring = self.ring();
        match at {
            Placement::Next if !ring.is_empty() => {
                // `insert(1, t)`, as two cheap end operations.
                if let Some(head) = ring.pop_front() {
                    ring.push_front(t);
                    ring.push_front(head);
                }
            }
            _ => ring.push_back(t),
        }
    }

    /// The running tasklet leaves the ring and keeps the ring's reference.
    #[inline]
    pub(crate) fn take_current_from_ring(&self) -> Option<TaskRef> {
        let cur = self.current_ptr();
        // SAFETY: the running tasklet is homed here.
        let ex = unsafe { cur.exec() };
        if !ex.in_ring {
            return None;
        }
        let ring = self.ring();
        let t = if ring.front().is_some_and(|h| std::ptr::eq(&**h, cur)) {
            ring.pop_front()
        } else {
            ring.remove_task(cur)
        };
        ex.in_ring = false;
        cur.queued.store(false, Ordering::Release);
        t
    }

    /// The running tasklet leaves the ring as it prepares a park, and the
    /// ring's reference becomes its `Unparker`'s (a move, not a count
    /// change; the registry or the main slot keeps the task alive). A waker
    /// moves it back; `park` or `cancel_park` restore it when the tasklet
    /// does not switch out after all.
    #[inline]
    pub(crate) fn take_current_for_park(&self) -> TaskRef {
        self.take_current_from_ring()
            .unwrap_or_else(|| self.current_task())
    }

    /// Puts the running tasklet back at the head of the ring, where it
    /// belongs while it runs: after a park that ended before it switched
    /// out (the tasklet left the ring when it prepared it, and a waker on
    /// this worker may have queued it elsewhere since).
    #[cold]
    pub(crate) fn reenter_ring_current(&self) {
        let cur = self.current_ptr();
        if self.ring().front().is_some_and(|h| std::ptr::eq(&**h, cur)) {
            return;
        }
        self.ring_remove(cur);
        self.ring().push_front(self.current_task());
        // SAFETY: the running tasklet is homed here.
        unsafe { cur.exec().in_ring = true };
        cur.queued.store(true, Ordering::Release);
    }

    /// The running tasklet leaves the ring (it is the head).
    #[inline]
    pub(crate) fn leave_ring_current(&self) {
        drop(self.take_current_from_ring());
    }

    /// Runnable tasklets of this worker, the running one included.
    pub(crate) fn runcount(&self) -> usize {
        self.sync_inbox();
        let n = self.shared.nworkers;
        let ring = self.ring();
        if n == 1 {
            ring.len()
        } else {
            ring.iter().filter(|t| t.home() == self.index).count()
        }
    }

    // ----- the loop ------------------------------------------------------------

    /// Runs tasklets. Worker 0 calls this when main switches out and it
    /// returns when main is the head again; the other workers call it once
    /// and it returns at shutdown.
    pub(crate) fn run_loop(&self) {
        // While the loop runs, tasklets leave to it (not to worker 0's main
        // tasklet, which runs this loop on its own stack).
        struct InLoop<'a>(&'a LoopContext, bool);
        impl Drop for InLoop<'_> {
            fn drop(&mut self) {
                self.0.set_in_loop(self.1);
            }
        }
        let _in_loop = InLoop(&self.loop_ctx, self.loop_ctx.set_in_loop(true));
        let ws = self.ws();
        loop {
            if ws.signal.load(Ordering::Relaxed) != 0 {
                self.handle_signals();
            }
            let ticks = self.ticks.get();
            if ticks == 0 {
                // Once stopping, ticks stay at 0: no direct switches, so
                // every resume comes through here (see below).
                if !self.stopping.get() {
                    self.ticks.set(TIMER_TICK);
                }
                if self.timers().live() > 0 {
                    self.fire_timers(Instant::now());
                }
            } else {
                self.ticks.set(ticks - 1);
            }
            let head: *const Task = match self.ring().front() {
                Some(h) => TaskRef::as_ptr(h),
                None => match self.idle() {
                    Flow::Continue => continue,
                    Flow::Stop => return,
                },
            };
            // SAFETY: the ring holds a strong count of the head; a started
            // tasklet is also held by the registry while it runs, so the
            // reference stays valid until `resume` returns (and `finish`
            // does not use it after giving up the registry's count).
            let head = unsafe { &*head };
            if head.is_main {
                self.current.set(head);
                ws.running
                    .store(head as *const Task as *mut Task, Ordering::Relaxed);
                return;
            }
            // One atomic decision: a fresh tasklet is pinned here (or was
            // taken by a thief, leaving a stale entry); a started one is ours
            // for good. Reading `home` and `life` separately would race with
            // a thief that steals and starts it in between.
            if crate::sync::weakened(crate::sync::Weakness::RacyOwnership) {
                if head.home() != self.index {
                    self.ring().pop_front();
                    continue;
                }
                if head.life() == life::FRESH && !head.pin(self.index) {
                    self.ring().pop_front();
                    continue;
                }
            } else if !head.pin(self.index) {
                self.ring().pop_front();
                continue;
            }
            match head.life() {
                // Not started after all (killed first, or no stack).
                life::FRESH if !self.start(head) => continue,
                life::DEAD => {
                    // Never resume a finished coroutine (defensive: nothing
                    // should queue a dead tasklet).
                    debug_assert!(false, "a dead tasklet was queued");
                    self.ring_remove(head);
                    continue;
                }
                _ => {
                    if self.stopping.get() {
                        // Every tasklet was killed when the shutdown began.
                        // One still resumed after that caught its kill:
                        // it gets another, or a tasklet that keeps calling
                        // `schedule()` would outlive the shutdown.
                        head.kill.store(true, Ordering::Release);
                    }
                }
            }
            self.resume(head);
        }
    }

    /// Brings the next tasklets' records and the top of their saved stacks
    /// towards the cache while the current one runs.
    ///
    /// A two-stage pipeline: the record a few places ahead is prefetched,
    /// and the stack top of one nearer is prefetched from the stack pointer
    /// saved in its record (prefetched a few resumes earlier), so that
    /// load does not stall on a miss. `ring` is this worker's ring as it is.
    #[inline(always)]
    pub(crate) fn prefetch_next(&self, ring: RingView) {
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        let _ = ring;
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        {
            use crate::sync::prefetch;
            // SAFETY (both `get`s): `ring` is the ring as it is (the
            // caller's promise), and the entries are not kept.
            if let Some(far) = unsafe { ring.get(RECORD_PREFETCH_DISTANCE) } {
                // What a switch touches (the flags, then the saved
                // registers) is its record's first line (see `record.rs`).
                prefetch(far.hot_line());
            }
            let Some(next) = (unsafe { ring.get(STACK_PREFETCH_DISTANCE) }) else {
                return;
            };
            let home = next.home.load(Ordering::Relaxed);
            if home == self.index {
                // Homed here (a stale entry of a tasklet a thief took is
                // not), so `exec` is this thread's, read only for a hint.
                // The light test first: it rejects most.
                // SAFETY: per the above.
                if unsafe { next.exec() }.light || next.is_main {
                    return;
                }
                match next.life() {
                    #[cfg(own_switch)]
                    // SAFETY: `next` is homed here, started and not
                    // running (so not finished).
                    life::ALIVE => prefetch_stack_top(unsafe { next.started_coro() }.saved_sp()),
                    // A fresh tasklet's start and end use the rest of its
                    // record: among 100,000 of them (a spawn burst, each
                    // record cold in L3) asking for it took running them
                    // from ~120 to ~76 ns each.
                    life::FRESH => crate::record::prefetch_after_first_line(next),
                    _ => {}
                }
            } else if home == self.index | STEALABLE && next.life() == life::FRESH {
                crate::record::prefetch_after_first_line(next);
            }
        }
    }

    /// Starts a fresh tasklet at the head of the ring. False when it could
    /// not start (stolen, killed before starting, or no stack).
    ///
    /// `t` is the head of the ring (which holds a count of it).
    pub(crate) fn start(&self, t: &Task) -> bool {
        self.note_fresh_start();
        // A kill request is rare: look before the read-modify-write.
        let killed = t.kill.load(Ordering::Acquire) && t.kill.swap(false, Ordering::AcqRel);
        // The body stays in the record until the tasklet takes it on its
        // own stack (see `tasklet_main`).
        if !t.has_body() || killed || self.stopping.get() {
            self.die_unstarted(&task_ref(t), Outcome::Killed);
            return false;
        }
        let stack = match self.stacks().take(&self.shared.stacks) {
            Ok(s) => s,
            Err(e) => {
                if !self.announced_stack_error.replace(true) {
                    eprintln!("{e}");
                }
                self.die_unstarted(
                    &task_ref(t),
                    Outcome::Failed(Failure::NoStack(e.to_string())),
                );
                return false;
            }
        };
        let task_ptr = t as *const Task as usize;
        let worker_ptr = self as *const WorkerLocal as usize;
        let coro = Coro::new(stack, &self.loop_ctx, move |susp| {
            tasklet_main(worker_ptr, task_ptr, susp)
        });
        // SAFETY: `coro` is a home-worker-only field of a task homed here.
        let coro = unsafe {
            *t.coro.get() = Some(coro);
            (*t.coro.get()).as_ref()
        };
        debug_assert!(coro.is_some());
        // What `Task::landed` relies on: the coroutine's address finds the
        // record back.
        #[cfg(own_switch)]
        debug_assert!(coro.is_some_and(|c| std::ptr::eq(Task::record_of(c), t)));
        let reg = self.registry();
        // Every started tasklet holds a stack mapping, so the registry
        // stays far below `u32::MAX` entries (`vm.max_map_count` is an i32).
        // SAFETY: `t` is pinned to this worker and not started: its
        // home-worker-only fields are ours.
        unsafe { *t.registry_slot() = reg.len() as u32 };
        reg.push(task_ref(t));
        // Keep room to queue every started tasklet at once, so that the
        // shutdown's kill sweep never allocates.
        let ring = self.ring();
        if ring.capacity() < ring.len() + reg.len() {
            ring.reserve(reg.len());
        }
        t.life.store(life::ALIVE, Ordering::Release);
        true
    }

    /// A tasklet at the head of the ring dies without running its body.
    pub(crate) fn die_unstarted(&self, t: &TaskRef, outcome: Outcome) {
        self.ring_remove(t);
        drop(t.take_body());
        t.life.store(life::DEAD, Ordering::Release);
        for j in t.set_outcome(outcome) {
            j.unpark();
        }
    }

    pub(crate) fn note_fresh_start(&self) {
        if self.shared.nworkers == 1 {
            return;
        }
        let n = self.fresh_starts.get().wrapping_add(1);
        self.fresh_starts.set(n);
        if n % 16 == 0 {
            // Drop the stale tickets of tasklets we started ourselves.
            let ws = self.ws();
            if ws.tickets.len() > 0 {
                ws.tickets.drop_stale_front(|t| !t.stealable());
            }
        }
    }

    /// Resumes the tasklet at the head of the ring until it switches out.
    #[inline]
    pub(crate) fn resume(&self, t: &Task) {
        self.enter(t, self.ring().view(), true);
        // SAFETY: only the home worker's thread touches `coro`: the loop,
        // and (with our own switch) a tasklet of this worker reading the
        // next one's to switch straight to it; that reading is why the loop
        // holds only a shared reference there.
        #[cfg(own_switch)]
        let coro = unsafe { &*t.coro.get() };
        // SAFETY: as above; without our own switch only the loop reads it.
        #[cfg(not(own_switch))]
        let coro = unsafe { &mut *t.coro.get() };
        let done = match coro {
            Some(c) => c.resume(&self.loop_ctx),
            None => true,
        };
        if done {
            // The tasklet whose body returned is the current one: `t`, or
            // one that `t` (or a successor) switched to directly.
            self.finish(self.current_ptr());
        }
    }

    /// What comes before every switch to `next`, from the loop (`resume`)
    /// or straight from another tasklet: `next` becomes current. `ring` is
    /// this worker's ring as it is; `prefetch` asks for the tasklets after
    /// `next` to be fetched towards the cache (see `prefetch_next`).
    #[inline(always)]
    fn enter(&self, next: &Task, ring: RingView, prefetch: bool) {
        if prefetch {
            self.prefetch_next(ring);
        }
        // SAFETY: `next` is homed here (or a main tasklet of this worker)
        // and is not running.
        unsafe { next.exec() }.light = false;
        self.current.set(next);
        self.ws()
            .running
            .store(next as *const Task as *mut Task, Ordering::Relaxed);
        *self.last_parked() = None;
    }

    /// The tasklet that the running one may switch to directly, bypassing
    /// the loop: the ring's head when it is a started tasklet of ours and
    /// the loop has nothing to do first (no signal, timers not due). `ring`
    /// is this worker's ring as it is; `cur_may_be_head` is false where the
    /// caller knows the running tasklet `cur` is not the head (it left the
    /// ring, or went to the tail of a ring of two or more), which saves
    /// testing it. With the tasklet, whether it is a main
    /// tasklet (known here already: the caller's switch depends on it, and
    /// reading the flag again after `enter`'s stores costs a load).
    #[inline(always)]
    fn direct_successor(
        &self,
        cur: &Task,
        ring: RingView,
        cur_may_be_head: bool,
    ) -> Option<(&Task, bool)> {
        if !DIRECT_SWITCH || self.ws().signal.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let ticks = self.ticks.get();
        if ticks == 0 {
            return None;
        }
        // SAFETY: `ring` is the ring as it is (the caller's promise); the
        // head is not kept past the switch.
        let head: &Task = unsafe { ring.get(0) }?;
        debug_assert!(cur_may_be_head || !std::ptr::eq(head, cur));
        if cur_may_be_head && std::ptr::eq(head, cur) {
            return None;
        }
        let is_main = head.is_main;
        if is_main {
            // Main can be switched to only when it switched out directly
            // (otherwise it is inside the loop, which returns to it).
            if self.loop_ctx.in_loop() {
                return None;
            }
        } else if head.home.load(Ordering::Acquire) != self.index || head.life() != life::ALIVE {
            return None;
        }
        self.ticks.set(ticks - 1);
        // SAFETY: the ring holds a count of its head, and the registry (or,
        // for main, this worker's `main`) holds one of every started
        // tasklet until it ends, so the task outlives this switch.
        Some((unsafe { &*(head as *const Task) }, is_main))
    }

    /// Cleans up after a tasklet whose body returned or unwound. `t` may
    /// be freed when this returns (the registry held the last count).
    pub(crate) fn finish(&self, t: &Task) {
        // SAFETY: `coro` is ours (see `resume`); the coroutine has returned.
        let coro = unsafe { (*t.coro.get()).take() };
        if let Some(c) = coro {
            self.stacks().give(c.into_stack(), &self.shared.stacks);
        }
        #[cfg(not(own_switch))]
        {
            // SAFETY: `t` is homed here.
            unsafe { t.exec() }.suspender = None;
        }
        *self.last_parked() = None;
        let ended = self.ended.take();
        let reg = self.registry();
        // SAFETY: `t` is homed here.
        let slot = unsafe { *t.registry_slot() } as usize;
        if slot < reg.len() && std::ptr::eq(&*reg[slot], t) {
            let owned = reg.swap_remove(slot);
            if slot < reg.len() {
                // SAFETY: every registry entry is homed here.
                unsafe { *reg[slot].registry_slot() = slot as u32 };
            }
            match ended {
                #[cfg(not(loom))]
                Some(e) => TaskRef::drop_pair(owned, e),
                _ => drop(owned),
            }
        }
    }

    // ----- switching out of the running tasklet ----------------------------------

    /// Switches away from the running tasklet (which has already arranged
    /// the ring) and returns when it is resumed. Does not act on kills.
    #[inline(always)]
    pub(crate) fn switch_out_raw(&self) {
        let cur = self.current_ptr();
        if cur.is_main {
            self.switch_out_main(cur);
        } else {
            self.switch_out_tasklet(cur);
        }
    }

    /// `switch_out_raw` for `cur`, the running tasklet, which is not a
    /// main tasklet. Makes no call on the way to the switch.
    #[inline(always)]
    pub(crate) fn switch_out_tasklet(&self, cur: &Task) {
        self.switch_out_tasklet_viewing(cur, self.ring().view(), Leaving::Any);
    }

    /// `switch_out_tasklet` with a view of the ring taken by the caller
    /// after its last change to the ring (a view taken early saves reading
    /// the ring again after the stores in between), and what the caller
    /// knows of how `cur` left it (`leaving`).
    ///
    /// Returns what the switch back handed over (see [`Landed`]): with
    /// [`resumed_task`], the code after it finds the tasklet without the
    /// worker.
    #[inline(always)]
    pub(crate) fn switch_out_tasklet_viewing(
        &self,
        cur: &Task,
        ring: RingView,
        leaving: Leaving,
    ) -> Option<Landed> {
        debug_assert!(!cur.is_main && self.is_current(cur));
        let s = self.suspender(cur)?;
        let cur_may_be_head = leaving == Leaving::Any;
        if let Some((next, is_main)) = self.direct_successor(cur, ring, cur_may_be_head) {
            self.enter(next, ring, leaving != Leaving::Nice);
            if is_main {
                return Some(s.switch_to_main());
            }
            // SAFETY: `direct_successor` saw `next` alive, homed here and
            // not main, and it is switched out (so not finished).
            return Some(s.switch_to(unsafe { next.started_coro() }));
        }
        Some(s.suspend())
    }

    /// The running tasklet's way out: its coroutine with our own switch,
    /// the suspender its body was given otherwise. `cur` is the running
    /// tasklet, not a main one, and this runs on its stack.
    #[inline(always)]
    fn suspender(&self, cur: &Task) -> Option<Suspender> {
        #[cfg(own_switch)]
        {
            // SAFETY: we are on the home worker, running on that very
            // coroutine, which `start` put in its final place before
            // resuming it; `finish` takes it only after its body returned.
            unsafe { cur.started_coro() }.suspender(&self.loop_ctx)
        }
        #[cfg(not(own_switch))]
        {
            // SAFETY: as above for `exec`, which the body's first frame
            // filled in (see `tasklet_main`).
            #[allow(clippy::clone_on_copy)] // `Suspender` is `Copy` only outside loom
            unsafe {
                cur.exec().suspender.clone()
            }
        }
    }

    /// `switch_out_raw` for worker 0's main tasklet, which runs on the
    /// thread's own stack: it switches straight to the next tasklet when it
    /// can, and otherwise runs the loop on its stack until it is the head
    /// again.
    #[inline(always)]
    fn switch_out_main(&self, cur: &Task) {
        let ring = self.ring().view();
        if let Some((next, _)) = self.direct_successor(cur, ring, true) {
            // SAFETY: `next` is started, homed here and switched out, so
            // its coroutine is set and only read here.
            if let Some(c) = unsafe { (*next.coro.get()).as_ref() } {
                self.enter(next, ring, true);
                let finished = self.loop_ctx.main_switch_to(c);
                // A tasklet that switched to main directly made it
                // current; one that left to the scheduler (or ended) did
                // not: then the loop decides what runs.
                if finished || !std::ptr::eq(self.current.get(), cur) {
                    self.main_left_to(finished);
                }
                return;
            }
        }
        self.run_loop();
    }

    /// Main was resumed by a tasklet that left to the scheduler rather than
    /// to it (or whose body returned): finish that one if so, then run the
    /// loop until main is the head again.
    #[cold]
    #[inline(never)]
    fn main_left_to(&self, finished: bool) {
        if finished {
            self.finish(self.current_ptr());
        }
        self.run_loop();
    }

    /// Switches out, then unwinds if a kill arrived meanwhile.
    #[inline]
    pub(crate) fn switch_out(&self) {
        self.switch_out_raw();
        self.check_kill();
    }

    /// Unwinds the running tasklet if it has a pending kill.
    #[inline]
    pub(crate) fn check_kill(&self) {
        Self::check_kill_of(self.current_ptr());
    }

    /// `check_kill` for `cur`, the running tasklet, found without the
    /// worker (see `resumed_task`).
    #[inline(always)]
    pub(crate) fn check_kill_of(cur: &Task) {
        if cur.kill.load(Ordering::Relaxed) {
            Self::act_on_kill(cur);
        }
    }

    /// Unwinds `cur`, the running tasklet, with `TaskletExit` (its kill,
    /// if one is pending, is consumed), unless it is unwinding already
    /// (then a pending kill waits for the next check).
    #[cold]
    #[inline(never)]
    pub(crate) fn act_on_kill(cur: &Task) {
        if !std::thread::panicking() {
            cur.kill.store(false, Ordering::Relaxed);
            std::panic::resume_unwind(Box::new(TaskletExit));
        }
    }

    // ----- operations of the running tasklet ------------------------------------

    /// `schedule()`: the running tasklet goes to the tail; the next runs.
    /// The caller checked that this thread is not unwinding (see
    /// `api::schedule`).
    ///
    /// As in `be_nice`, the common case (a tasklet at the ring's head, no
    /// signal, another tasklet to run) makes no call on the way to the
    /// switch and reads the worker afresh after it, so the caller's values
    /// stay in callee-saved registers rather than its stack frame.
    #[inline(always)]
    pub(crate) fn schedule(&self) {
        let ring = self.ring();
        let cur = self.current_ptr();
        let common = self.ws().signal.load(Ordering::Relaxed) == 0
            && ring.len() > 1
            && !cur.is_main
            && ring.front().is_some_and(|h| std::ptr::eq(&**h, cur));
        if !common {
            self.schedule_slow();
            return;
        }
        ring.rotate_one();
        let view = ring.view();
        // SAFETY: the running tasklet is homed here.
        unsafe { cur.exec() }.light = true;
        let landed = self.switch_out_tasklet_viewing(cur, view, Leaving::ToTail);
        // Act on a kill, reading nothing kept from before the switch.
        // SAFETY: from this tasklet's own suspension, and it runs.
        if let Some(cur) = unsafe { resumed_task(landed) } {
            Self::check_kill_of(cur);
        }
    }

    /// `schedule` when something needs a call first (a signal, nothing
    /// else to run, a main tasklet, or the tasklet not at the head).
    #[cold]
    #[inline(never)]
    fn schedule_slow(&self) {
        if self.ws().signal.load(Ordering::Relaxed) != 0 {
            self.handle_signals();
        }
        let ring = self.ring();
        if ring.len() <= 1 {
            if self.shared.is_shutdown() {
                self.shutdown_point();
            }
            self.check_kill();
            return;
        }
        // Rotate by one: the head (the running tasklet) to the tail.
        ring.rotate_one();
        self.switch_out();
    }

    /// `schedule_remove()`: the running tasklet leaves the ring (paused).
    pub(crate) fn schedule_remove(&self) {
        if std::thread::panicking() {
            return;
        }
        self.leave_ring_current();
        self.switch_out();
    }

    /// `run()`: the caller becomes a watchdog (paused) until nothing is
    /// runnable anywhere, or until something runs it again.
    pub(crate) fn run_watchdog(&self) {
        if std::thread::panicking() {
            return;
        }
        let me = self.current_task();
        self.leave_ring_current();
        self.watchdogs().push(me.clone());
        self.ws()
            .watchdogs
            .store(self.watchdogs().len(), Ordering::SeqCst);
        struct Pop<'a>(&'a WorkerLocal, TaskRef);
        impl Drop for Pop<'_> {
            fn drop(&mut self) {
                let wd = self.0.watchdogs();
                if let Some(pos) = wd.iter().rposition(|t| TaskRef::ptr_eq(t, &self.1)) {
                    wd.remove(pos);
                }
                self.0.ws().watchdogs.store(wd.len(), Ordering::SeqCst);
            }
        }
        let _pop = Pop(self, me);
        self.switch_out();
    }

    /// Revives the innermost watchdog (quiescence reached).
    pub(crate) fn revive_watchdog(&self) {
        if let Some(t) = self.watchdogs().last().cloned() {
            self.ring_push_back(t);
        }
    }

    /// Parks the running tasklet (see `park.rs`).
    #[inline(always)]
    pub(crate) fn park(&self, deadline: Option<Instant>) -> Wake {
        let cur = self.current_ptr();
        let w = cur.park.load(Ordering::Acquire);
        let seq = crate::task::word_seq(w);
        let ended = match crate::task::word_phase(w) {
            // Cancelled.
            phase::IDLE => Some(Wake::Woken),
            // Claimed and woken before we even left: consume the wake-up.
            phase::WOKEN => Some(self.end_park(cur)),
            phase::CLAIMED if crate::sync::weakened(crate::sync::Weakness::TrustClaim) => {
                Some(self.end_park(cur))
            }
            // `CLAIMED`: a claimer is handing over; we leave and its wake
            // (to our inbox) brings us back. `WAITING`: the usual case.
            _ if self.shared.is_shutdown() || std::thread::panicking() => {
                Some(self.park_unwinding(cur, seq))
            }
            _ => None,
        };
        if let Some(r) = ended {
            // The park ended before we switched out: back to the head.
            self.reenter_ring_current();
            return r;
        }
        self.leave_ring_current();
        if let Some(d) = deadline {
            self.timers().add(d, self.current_task(), seq);
            // SAFETY: the running tasklet is homed here.
            unsafe { cur.exec().timed = true };
        }
        if self.park_eligible.get() && deadline.is_none() {
            *self.last_parked() = Some((cur as *const Task, seq));
        }
        self.park_eligible.set(true);
        self.switch_out_raw();
        let r = self.end_park(cur);
        self.check_kill();
        r
    }

    /// `park` where the tasklet cannot suspend (it unwinds, or the
    /// scheduler shuts down).
    #[cold]
    #[inline(never)]
    fn park_unwinding(&self, cur: &Task, seq: u64) -> Wake {
        if self.shared.is_shutdown() && !std::thread::panicking() {
            self.shutdown_point();
        }
        // We cannot suspend: answer the park ourselves, or wait out a
        // hand-off in progress (a few instructions under a channel lock).
        if cur.claim(seq, Reason::Deadlock) {
            cur.mark_woken();
            cur.finish_park();
            cur.queued.store(true, Ordering::Release);
            return Wake::Deadlock;
        }
        cur.settle();
        self.end_park(cur)
    }

    #[inline]
    pub(crate) fn end_park(&self, cur: &Task) -> Wake {
        let reason = cur.finish_park();
        // SAFETY: the running tasklet is homed here.
        let ex = unsafe { cur.exec() };
        if ex.timed {
            ex.timed = false;
            self.timers().resolved();
        }
        cur.queued.store(true, Ordering::Release);
        match reason {
            Reason::Woken | Reason::Killed => Wake::Woken,
            Reason::TimedOut => Wake::TimedOut,
            Reason::Deadlock => Wake::Deadlock,
        }
    }

    /// This worker's deadlock candidate as an `Unparker` (for the idle state).
    pub(crate) fn take_candidate(&self) -> Option<Unparker> {
        let (p, seq) = self.last_parked().take()?;
        // SAFETY: see `last_parked`: the parked task is still alive.
        let t = task_ref(unsafe { &*p });
        Some(Unparker {
            target: Target::Tasklet(t),
            seq,
        })
    }

    // ----- operations on other tasklets (Tasklet methods, local case) ---------------

    /// Prepares an operation on tasklet `t` of this worker: lets a hand-off
    /// in flight finish, then drains the inbox so that every tasklet woken
    /// for us is in the ring.
    #[inline]
    pub(crate) fn sync_target(&self, t: &Task) {
        t.settle();
        self.sync_inbox();
    }

    /// Drains the inbox so that every tasklet woken for us is in the ring.
    #[inline]
    pub(crate) fn sync_inbox(&self) {
        if self.ws().signal.load(Ordering::Relaxed) & signal::INBOX != 0 {
            self.drain_inbox();
        }
    }

    /// `t.run()` / `t.switch()` for a tasklet of this worker.
    pub(crate) fn run_local(&self, t: &TaskRef, switch: bool) -> Result<(), TaskletError> {
        if t.blocked() {
            return Err(TaskletError::Blocked);
        }
        if std::thread::panicking() {
            return Ok(());
        }
        if switch {
            self.leave_ring_current();
        }
        self.ring_make_head(t);
        self.switch_out();
        Ok(())
    }

    /// `t.kill()` for a started or fresh tasklet of this worker.
    pub(crate) fn kill_local(&self, t: &TaskRef) {
        t.kill.store(true, Ordering::Release);
        if std::thread::panicking() {
            // We cannot switch while unwinding: the target dies when it next runs.
            if t.life() == life::FRESH {
                self.die_unstarted(t, Outcome::Killed);
            } else {
                let _ = t.claim_current(Reason::Killed);
                self.push_woken(t.clone(), Placement::Tail);
            }
            return;
        }
        // Stackless's kill is a throw: switch to the target (rotating the
        // ring if it is in it) so it unwinds now. A never-started target dies
        // at once when the loop tries to start it.
        if t.claim_current(Reason::Killed).is_some() {
            t.mark_woken();
        } else {
            // Someone else may have just won the claim (a waker on another
            // thread): let its hand-off finish and take its wake first.
            self.sync_target(t);
        }
        self.ring_make_head(t);
        self.switch_out();
    }

    // ----- signals, inbox, timers ------------------------------------------------------

    #[cold]
    pub(crate) fn handle_signals(&self) {
        let ws = self.ws();
        let bits = ws.signal.swap(0, Ordering::AcqRel);
        if bits & signal::INBOX != 0 {
            self.drain_inbox_now();
        }
        if bits & signal::NICE != 0 {
            self.run_nice_local(ws.nice_target.load(Ordering::Acquire));
        }
        if bits & signal::REVIVE != 0 {
            self.revive_watchdog();
        }
        if bits & signal::MAIN_DEADLOCK != 0 {
            // The deadlock answer for a main tasklet parked nice (only this
            // worker may claim that park).
            if let Some(m) = self.shared.main_task() {
                if m.nice_parked() && m.claim_current(Reason::Deadlock).is_some() {
                    self.push_woken(m, Placement::Tail);
                }
            }
        }
        if bits & signal::SHUTDOWN != 0 && !self.stopping.get() {
            self.set_stopping();
            self.kill_all();
        }
    }

    pub(crate) fn drain_inbox(&self) {
        let ws = self.ws();
        if ws.signal.fetch_and(!signal::INBOX, Ordering::AcqRel) & signal::INBOX != 0 {
            self.drain_inbox_now();
        }
    }

    pub(crate) fn drain_inbox_now(&self) {
        let entries = std::mem::take(&mut *self.ws().inbox.lock());
        for e in entries {
            let t = e.task;
            match e.seq {
                Some(seq) => {
                    let w = t.park.load(Ordering::Acquire);
                    if crate::task::word_seq(w) == seq && crate::task::word_phase(w) == phase::WOKEN
                    {
                        self.push_woken(t, Placement::Tail);
                    }
                }
                None => {
                    if t.kill.load(Ordering::Acquire) && t.nice_parked() {
                        // A kill from another thread: nice parks are ours.
                        if t.claim_current(Reason::Killed).is_some() {
                            self.push_woken(t, Placement::Tail);
                        }
                    } else if t.alive() && !t.blocked() {
                        // SAFETY: inbox entries are homed here.
                        let ex = unsafe { t.exec() };
                        if !ex.in_ring && !self.is_current(&t) {
                            self.ring_push_back(t);
                        }
                    }
                }
            }
        }
    }

    /// Wakes every due timer. True if anything became runnable.
    pub(crate) fn fire_timers(&self, now: Instant) -> bool {
        let mut any = false;
        while let Some((t, seq)) = self.timers().pop_due(now) {
            if t.claim(seq, Reason::TimedOut) {
                self.push_woken(t, Placement::Tail);
                any = true;
            }
        }
        any
    }

    // ----- idle ------------------------------------------------------------------------

    // ----- shutdown -------------------------------------------------------------------------

    /// Makes sure a stack is ready for a tasklet about to be created.
    pub(crate) fn ensure_stack(&self) -> std::io::Result<()> {
        self.stacks().ensure_one(&self.shared.stacks)
    }

    /// Sets up a bound tasklet here: it joins the tail of the ring and, with
    /// more than one worker, becomes stealable.
    pub(crate) fn setup_local(&self, t: &TaskRef) {
        t.bind_shared(&self.shared);
        self.enqueue_fresh(t);
    }

    /// Queues a fresh tasklet bound to this scheduler at the tail of the
    /// ring (and, with more than one worker, makes it stealable).
    #[inline]
    pub(crate) fn enqueue_fresh(&self, t: &TaskRef) {
        let sh = &self.shared;
        // SAFETY: `t` is fresh and not yet visible to any other worker.
        let ex = unsafe { t.exec() };
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        if sh.nworkers > 1 && !sh.is_shutdown() {
            t.home.store(self.index | STEALABLE, Ordering::Release);
            // SAFETY: `t` is fresh: no other thread can reach it until the
            // ticket below is pushed, and both handles exist by then.
            let (for_ring, for_ticket) = unsafe { (clone_fresh(t), clone_fresh(t)) };
            self.ring().push_back(for_ring);
            self.ws().tickets.push(for_ticket, |moved| {
                // The ring is full: its older half goes to the injector.
                let mut q = sh.injector.lock();
                q.extend(moved);
                sh.injector_len.store(q.len(), Ordering::Release);
            });
            sh.wakep();
        } else {
            t.home.store(self.index, Ordering::Release);
            // SAFETY: `t` is fresh: no other thread can reach it yet.
            self.ring().push_back(unsafe { clone_fresh(t) });
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.get()
    }

    /// This worker has begun its shutdown. From here on no tasklet parks
    /// nice on the fast path (`be_nice` finds no room and, in its slow
    /// path, the shutdown), and every switch goes through the loop.
    pub(crate) fn set_stopping(&self) {
        self.stopping.set(true);
        self.nice_room.set(0);
        // No more direct switches (see `run_loop`).
        self.ticks.set(0);
    }
}

/// A second handle to a fresh record, without a locked instruction (which
/// would wait for the stores that just filled the record: see
/// `TaskRef::clone_unpublished`).
///
/// # Safety
/// No other thread can reach the record yet.
#[inline(always)]
unsafe fn clone_fresh(t: &TaskRef) -> TaskRef {
    #[cfg(not(loom))]
    // SAFETY: forwarded to the caller.
    unsafe {
        t.clone_unpublished()
    }
    #[cfg(loom)]
    t.clone()
}

/// A new strong reference to a task that something else holds a count of
/// (the ring's head, the running tasklet, the parked deadlock candidate).
#[inline(always)]
fn task_ref(t: &Task) -> TaskRef {
    let p = t as *const Task;
    // SAFETY: `t` lives in a record kept alive by a count its caller
    // relies on; one more count is added before the new handle is made.
    unsafe {
        TaskRef::increment_strong_count(p);
        TaskRef::from_raw(p)
    }
}

/// The root of every tasklet's stack.
fn tasklet_main(worker_ptr: usize, task_ptr: usize, susp: Option<crate::coroutine::Suspender>) {
    // SAFETY: the worker outlives its tasklets (it kills them all before it
    // is dropped) and the task is kept alive by the worker's registry.
    let (w, t) = unsafe {
        (
            &*(worker_ptr as *const WorkerLocal),
            &*(task_ptr as *const Task),
        )
    };
    #[cfg(loom)]
    install(w);
    #[cfg(not(own_switch))]
    if let Some(susp) = susp {
        // SAFETY: running on the tasklet's own stack, on its home worker.
        unsafe { t.exec().suspender = Some(susp) };
    }
    #[cfg(own_switch)]
    debug_assert!(susp.is_none(), "our own switch hands no suspender");
    // Taken here rather than moved into the coroutine's closure: the
    // closure is then two words, and starting a tasklet copies no body
    // through the worker's stack. Its worker checked it is there.
    let body = t.take_body();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(body) = body {
            body.call()
        }
    }));
    tasklet_end(w, t, result.err());
}

/// The end of [`tasklet_main`], out of line: its frame then lies where the
/// body's frames were (lines this stack has just touched) instead of
/// widening the frame that sits above the body for the tasklet's whole
/// life. With thousands of blocked tasklets, every line of a stack top is a
/// cache miss when it resumes.
#[inline(never)]
fn tasklet_end(w: &WorkerLocal, t: &Task, panic: Option<Box<dyn std::any::Any + Send>>) {
    let outcome = match panic {
        None => Outcome::Finished,
        Some(p) if p.is::<TaskletExit>() => Outcome::Killed,
        Some(p) => {
            let msg = panic_message(&p);
            Outcome::Failed(Failure::Panicked(Some(p), msg))
        }
    };
    // The ring's handle waits for `finish`, which gives it up together with
    // the registry's.
    w.ended.set(w.take_current_from_ring());
    t.life.store(life::DEAD, Ordering::Release);
    t.queued.store(false, Ordering::Release);
    for j in t.set_outcome(outcome) {
        j.unpark();
    }
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}
