//! A worker: its Stackless ring, its scheduling loop, and the operations a
//! running tasklet performs on its own worker.
//!
//! # The ring
//!
//! Each worker owns a `VecDeque` that only its thread touches: the Stackless
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
//! the ring; the tasklet runs until it switches out (a corosensei suspend
//! back into the loop) after rearranging the ring itself. Worker 0 hosts the
//! main tasklet: main is plain code on the thread's stack, so when main
//! yields it *calls* the loop, which returns as soon as main is the head
//! again. Between tasklets the loop polls one signal word (inbox, nice
//! round, revive, shutdown) and every 61 resumes the timers.
//!
//! When the ring is empty the worker goes idle (see `idle/README.md`).

use crate::coroutine::Coro;
use crate::error::TaskletError;
use crate::idle::Quiescent;
use crate::park::{Placement, Target, ThreadParker, Unparker, Wake};
use crate::scheduler::{signal, Shared, WorkerShared};
use crate::sync::{Arc, Ordering};
use crate::task::{life, phase, Outcome, Reason, Task, TaskRef, TaskletExit, STEALABLE};
use crate::timer::Timers;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::time::Instant;

/// How often (in resumes) the loop looks at its timers while busy.
const TIMER_TICK: u32 = 61;
/// How far ahead in the ring the loop prefetches.
const PREFETCH_DISTANCE: usize = 1;
/// Rounds a worker spends looking for work to steal before sleeping (one
/// under loom: spinning only multiplies the interleavings to explore).
const SEARCH_ROUNDS: u32 = if cfg!(loom) { 1 } else { 24 };

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

/// A nice tasklet of this worker: the park to claim and the round it joined.
pub(crate) struct NiceEntry {
    pub(crate) task: TaskRef,
    pub(crate) seq: u64,
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
    ws: *const WorkerShared,
    ring: UnsafeCell<VecDeque<TaskRef>>,
    current: Cell<*const Task>,
    main: Option<TaskRef>,
    watchdogs: UnsafeCell<Vec<TaskRef>>,
    registry: UnsafeCell<Vec<TaskRef>>,
    pub(crate) timers: UnsafeCell<Timers>,
    stacks: UnsafeCell<crate::stack::LocalPool>,
    /// The last deadlock-eligible park on this worker (task, park seq), while
    /// nothing else has run here since (the deadlock victim candidate). A
    /// plain pointer: the task is parked, so the registry (or the main slot)
    /// keeps it alive until it next runs here, which clears this first.
    last_parked: UnsafeCell<Option<(*const Task, u64)>>,
    pub(crate) nice: UnsafeCell<VecDeque<NiceEntry>>,
    /// Whether the running tasklet's prepared park may get a deadlock answer.
    park_eligible: Cell<bool>,
    ticks: Cell<u32>,
    searching: Cell<bool>,
    stopping: Cell<bool>,
    fresh_starts: Cell<u32>,
    rng: Cell<u64>,
    announced_stack_error: Cell<bool>,
}

crate::sync::thread_local! {
    static WORKER: Cell<*const WorkerLocal> = const { Cell::new(std::ptr::null()) };
    static FOREIGN: RefCell<Option<ForeignThread>> = const { RefCell::new(None) };
}

/// A thread that is no worker: its parking spot, the scheduler it uses,
/// and its own main tasklet (what `current()` returns there).
struct ForeignThread {
    parker: Arc<ThreadParker>,
    bound: Option<Arc<Shared>>,
    main: Option<TaskRef>,
}

impl Drop for ForeignThread {
    fn drop(&mut self) {
        if let Some(s) = self.parker.participant.lock().take() {
            if !self.parker.released.load(Ordering::Acquire) {
                s.participant_exited();
            }
        }
    }
}

/// The worker running on this thread, if any.
#[inline(always)]
pub(crate) fn local() -> Option<&'static WorkerLocal> {
    let p = WORKER.with(|w| w.get());
    // SAFETY: the pointer is set by `install` to a `WorkerLocal` that outlives
    // the installation (it is uninstalled before being dropped), and only this
    // thread reads it.
    unsafe { p.as_ref() }
}

/// The guard page of the tasklet this thread's worker last resumed (the
/// one running, if a tasklet runs): for the stack-overflow handler. Only
/// reads memory that stays valid while the tasklet runs.
#[cfg(not(loom))]
pub(crate) fn running_guard() -> Option<crate::stack::overflow::Running> {
    let w = WORKER.try_with(|w| w.get()).ok()?;
    // SAFETY: a non-null pointer is this thread's installed worker (see `local`).
    let w = unsafe { w.as_ref()? };
    let t = w.current.get();
    if t.is_null() {
        return None;
    }
    // SAFETY: `current` points at a live task (see `current_ptr`); `exec`
    // belongs to this thread, and a fault interrupted no writer of it.
    let t = unsafe { &*t };
    // SAFETY: as above.
    let ex = unsafe { &*t.exec.get() };
    (ex.guard.0 != 0).then_some(crate::stack::overflow::Running {
        guard_lo: ex.guard.0,
        guard_hi: ex.guard.1,
        id: t.id,
        usable: ex.usable,
    })
}

/// Makes `w` this thread's worker; returns the previous one.
pub(crate) fn install(w: &WorkerLocal) -> *const WorkerLocal {
    WORKER.with(|c| c.replace(w as *const _))
}

/// Restores the worker that `install` replaced.
pub(crate) fn uninstall(prev: *const WorkerLocal) {
    WORKER.with(|c| c.set(prev));
}

/// The scheduler of this thread (worker or bound foreign thread).
pub(crate) fn current_shared() -> Option<Arc<Shared>> {
    if let Some(w) = local() {
        return Some(w.shared.clone());
    }
    FOREIGN.with(|f| f.borrow().as_ref().and_then(|f| f.bound.clone()))
}

fn foreign_parker() -> Arc<ThreadParker> {
    FOREIGN.with(|f| {
        let mut f = f.borrow_mut();
        f.get_or_insert_with(new_foreign).parker.clone()
    })
}

fn new_foreign() -> ForeignThread {
    ForeignThread {
        parker: Arc::new(ThreadParker::new()),
        bound: None,
        main: None,
    }
}

/// The main tasklet of this foreign thread (created on first use).
pub(crate) fn foreign_main() -> TaskRef {
    FOREIGN.with(|f| {
        let mut f = f.borrow_mut();
        let f = f.get_or_insert_with(new_foreign);
        f.main.get_or_insert_with(|| Task::new(None, true)).clone()
    })
}

/// Whether `t` is this foreign thread's own main tasklet.
pub(crate) fn foreign_current_is(t: &Task) -> bool {
    FOREIGN
        .try_with(|f| {
            f.borrow()
                .as_ref()
                .and_then(|f| f.main.as_ref())
                .is_some_and(|m| std::ptr::eq(&**m, t))
        })
        .unwrap_or(false)
}

/// Registers this foreign thread as a participant of `s` (once).
pub(crate) fn register_participant(s: &Arc<Shared>) {
    if local().is_some() {
        return;
    }
    let p = foreign_parker();
    let mut part = p.participant.lock();
    if part.is_none() {
        s.participant_started();
        *part = Some(s.clone());
    }
}

/// A thread started by `Scheduler::spawn_thread`: already counted.
pub(crate) fn adopt_participant(s: Arc<Shared>) {
    let p = foreign_parker();
    *p.participant.lock() = Some(s.clone());
    FOREIGN.with(|f| {
        if let Some(f) = f.borrow_mut().as_mut() {
            f.bound = Some(s);
        }
    });
}

/// The worker for free functions: this thread's, or the default
/// scheduler's (attaching this thread as its worker 0 on first use).
/// `None` on a foreign thread of a scheduler whose worker 0 is elsewhere.
#[inline]
pub(crate) fn local_or_default() -> Option<&'static WorkerLocal> {
    match local() {
        Some(w) => Some(w),
        None => attach_default(),
    }
}

#[cfg(not(loom))]
#[cold]
fn attach_default() -> Option<&'static WorkerLocal> {
    if FOREIGN.with(|f| f.borrow().as_ref().is_some_and(|f| f.bound.is_some())) {
        return None;
    }
    let sched = crate::scheduler::default_scheduler();
    let shared = &sched.shared;
    if shared.entered.swap(true, Ordering::AcqRel) {
        // Worker 0 is another thread: this one is a foreign thread of the default.
        let p = foreign_parker();
        let _ = p;
        FOREIGN.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                f.bound = Some(shared.clone());
            }
        });
        return None;
    }
    shared.idle.reset(shared.nworkers);
    let main_task = Task::new(None, true);
    main_task.bind_shared(shared);
    main_task.home.store(0, Ordering::Release);
    main_task.queued.store(true, Ordering::Release);
    *shared.main.lock() = Some(main_task.clone());
    let w: &'static WorkerLocal = Box::leak(Box::new(WorkerLocal::new(
        0,
        shared.clone(),
        Some(main_task),
    )));
    install(w);
    for i in 1..shared.nworkers {
        let s = shared.clone();
        crate::sync::spawn_thread(format!("stackless-worker-{i}"), move || worker_thread(s, i))
            .unwrap_or_else(|e| panic!("stackless: cannot start worker thread {i}: {e}"));
    }
    Some(w)
}

#[cfg(loom)]
fn attach_default() -> Option<&'static WorkerLocal> {
    None
}

/// The current stack pointer (a hint for prefetching; any nearby address
/// would do).
#[inline(always)]
fn stack_pointer() -> usize {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        let sp: usize;
        // SAFETY: reads the stack pointer register; no memory is touched.
        unsafe {
            std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    {
        let here = 0u8;
        std::hint::black_box(&here) as *const u8 as usize
    }
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
pub(crate) fn wake_task(t: TaskRef, at: Placement) -> bool {
    let seq = crate::task::word_seq(t.park.load(Ordering::Acquire));
    t.mark_woken();
    if let Some(w) = local() {
        if t.is_on(&w.shared) && t.home() == w.index {
            w.push_woken(t, at);
            return true;
        }
    }
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
pub(crate) fn prepare_park(eligible: bool) -> Unparker {
    if let Some(w) = local() {
        let t = w.current_task();
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
pub(crate) fn park(deadline: Option<Instant>) -> Wake {
    if let Some(w) = local() {
        return w.park(deadline);
    }
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
        }
    }
    ok
}

enum Flow {
    Continue,
    Stop,
}

impl WorkerLocal {
    pub(crate) fn new(index: usize, shared: Arc<Shared>, main: Option<TaskRef>) -> WorkerLocal {
        let mut ring = VecDeque::with_capacity(64);
        if let Some(m) = &main {
            ring.push_back(m.clone());
            // SAFETY: the main task is only reachable by this thread so far.
            unsafe { m.exec().in_ring = true };
        }
        let current = main.as_ref().map_or(std::ptr::null(), Arc::as_ptr);
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
            nice: UnsafeCell::new(VecDeque::new()),
            park_eligible: Cell::new(true),
            ticks: Cell::new(0),
            searching: Cell::new(false),
            stopping: Cell::new(false),
            fresh_starts: Cell::new(0),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
            announced_stack_error: Cell::new(false),
        }
    }

    // ----- owner-only accessors -------------------------------------------

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn ring(&self) -> &mut VecDeque<TaskRef> {
        // SAFETY: only this worker's thread reaches `self` (thread-local
        // pointer), and callers never hold the reference across a switch.
        unsafe { &mut *self.ring.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn registry(&self) -> &mut Vec<TaskRef> {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.registry.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn watchdogs(&self) -> &mut Vec<TaskRef> {
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
    fn stacks(&self) -> &mut crate::stack::LocalPool {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.stacks.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn nice_list(&self) -> &mut VecDeque<NiceEntry> {
        // SAFETY: as for `ring`.
        unsafe { &mut *self.nice.get() }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn last_parked(&self) -> &mut Option<(*const Task, u64)> {
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
        let p = self.current.get();
        // SAFETY: see `current_ptr`; the count is raised before making a new
        // `Arc` from the pointer.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
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
        let ring = self.ring();
        if let Some(pos) = ring.iter().position(|x| std::ptr::eq(&**x, t)) {
            ring.remove(pos);
        }
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
            if let Some(pos) = ring.iter().position(|x| Arc::ptr_eq(x, t)) {
                ring.rotate_left(pos);
                return;
            }
        }
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        ring.push_front(t.clone());
    }

    /// A claimed tasklet of ours becomes runnable.
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
            Placement::Next if !ring.is_empty() => ring.insert(1, t),
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
            let pos = ring.iter().position(|x| std::ptr::eq(&**x, cur))?;
            ring.remove(pos)
        };
        ex.in_ring = false;
        cur.queued.store(false, Ordering::Release);
        t
    }

    /// The running tasklet leaves the ring (it is the head).
    #[inline]
    fn leave_ring_current(&self) {
        let cur = self.current_ptr();
        // SAFETY: the running tasklet is homed here.
        let ex = unsafe { cur.exec() };
        if !ex.in_ring {
            return;
        }
        let ring = self.ring();
        if ring.front().is_some_and(|h| std::ptr::eq(&**h, cur)) {
            ring.pop_front();
        } else if let Some(pos) = ring.iter().position(|x| std::ptr::eq(&**x, cur)) {
            ring.remove(pos);
        }
        ex.in_ring = false;
        cur.queued.store(false, Ordering::Release);
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
        let ws = self.ws();
        loop {
            if ws.signal.load(Ordering::Relaxed) != 0 {
                self.handle_signals();
            }
            let ticks = self.ticks.get();
            if ticks == 0 {
                self.ticks.set(TIMER_TICK);
                if self.timers().live() > 0 {
                    self.fire_timers(Instant::now());
                }
            } else {
                self.ticks.set(ticks - 1);
            }
            let head: *const Task = match self.ring().front() {
                Some(h) => Arc::as_ptr(h),
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
                life::FRESH => {
                    let Some(t) = self.ring().front().cloned() else {
                        continue;
                    };
                    if !self.start(&t) {
                        continue;
                    }
                }
                life::DEAD => {
                    // Never resume a finished coroutine (defensive: nothing
                    // should queue a dead tasklet).
                    debug_assert!(false, "a dead tasklet was queued");
                    self.ring_remove(head);
                    continue;
                }
                _ => {}
            }
            self.prefetch_next();
            self.resume(head);
        }
    }

    /// Brings the next tasklet's record and the top of its saved stack
    /// towards the cache while the current one runs.
    #[inline(always)]
    fn prefetch_next(&self) {
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        if let Some(next) = self.ring().get(PREFETCH_DISTANCE) {
            let t: &Task = next;
            // SAFETY: prefetching is a hint: it never faults, whatever the
            // address. `exec` is read only for a hint (a stale value does
            // no harm) and belongs to this thread.
            unsafe {
                use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                let p = t as *const Task as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.add(64));
                _mm_prefetch::<_MM_HINT_T0>(p.add(128));
                let sp = (*t.exec.get()).sp_hint;
                if sp != 0 {
                    // The saved registers sit just below the hint, the frames
                    // it returns through just above.
                    let sp = (sp & !63) as *const i8;
                    _mm_prefetch::<_MM_HINT_T0>(sp.sub(128));
                    _mm_prefetch::<_MM_HINT_T0>(sp.sub(64));
                    _mm_prefetch::<_MM_HINT_T0>(sp);
                    _mm_prefetch::<_MM_HINT_T0>(sp.add(64));
                }
            }
        }
    }

    /// Starts a fresh tasklet at the head of the ring. False when it could
    /// not start (stolen, killed before starting, or no stack).
    fn start(&self, t: &TaskRef) -> bool {
        self.note_fresh_start();
        let body = t.take_body();
        let body = match body {
            Some(b) if !t.kill.swap(false, Ordering::AcqRel) && !self.stopping.get() => b,
            _ => {
                self.die_unstarted(t, Outcome::Killed);
                return false;
            }
        };
        let stack = match self.stacks().take(&self.shared.stacks) {
            Ok(s) => s,
            Err(e) => {
                if !self.announced_stack_error.replace(true) {
                    eprintln!("{e}");
                }
                drop(body);
                self.die_unstarted(t, Outcome::NoStack(e.to_string()));
                return false;
            }
        };
        // SAFETY: `t` is pinned to this worker and not started: its exec is ours.
        let ex = unsafe { t.exec() };
        ex.guard = stack.guard();
        ex.usable = stack.usable();
        let task_ptr = Arc::as_ptr(t) as usize;
        let worker_ptr = self as *const WorkerLocal as usize;
        let coro = Coro::new(stack, move |susp| {
            tasklet_main(worker_ptr, task_ptr, susp, body)
        });
        // SAFETY: `coro` is a home-worker-only field of a task homed here.
        unsafe { *t.coro.get() = Some(coro) };
        let reg = self.registry();
        ex.slot = reg.len();
        reg.push(t.clone());
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
    fn die_unstarted(&self, t: &TaskRef, outcome: Outcome) {
        self.ring_remove(t);
        drop(t.take_body());
        t.life.store(life::DEAD, Ordering::Release);
        for j in t.set_outcome(outcome) {
            j.unpark();
        }
    }

    fn note_fresh_start(&self) {
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
    fn resume(&self, t: &Task) {
        self.current.set(t);
        self.ws()
            .running
            .store(t as *const Task as *mut Task, Ordering::Relaxed);
        *self.last_parked() = None;
        // SAFETY: only the home worker touches `coro`, and the tasklet code
        // never does, so this is the only reference while it runs.
        let coro = unsafe { &mut *t.coro.get() };
        let done = match coro {
            Some(c) => c.resume(),
            None => true,
        };
        if done {
            self.finish(t);
        }
    }

    /// Cleans up after a tasklet whose body returned or unwound. `t` may
    /// be freed when this returns (the registry held the last count).
    fn finish(&self, t: &Task) {
        // SAFETY: `coro` is ours (see `resume`); the coroutine has returned.
        let coro = unsafe { (*t.coro.get()).take() };
        if let Some(c) = coro {
            self.stacks().give(c.into_stack(), &self.shared.stacks);
        }
        // SAFETY: `t` is homed here.
        let ex = unsafe { t.exec() };
        ex.suspender = None;
        *self.last_parked() = None;
        let reg = self.registry();
        let slot = ex.slot;
        if slot < reg.len() && std::ptr::eq(&*reg[slot], t) {
            let owned = reg.swap_remove(slot);
            if slot < reg.len() {
                // SAFETY: every registry entry is homed here.
                unsafe { reg[slot].exec().slot = slot };
            }
            drop(owned);
        }
    }

    // ----- switching out of the running tasklet ----------------------------------

    /// Switches away from the running tasklet (which has already arranged
    /// the ring) and returns when it is resumed. Does not act on kills.
    #[inline]
    pub(crate) fn switch_out_raw(&self) {
        let cur = self.current_ptr();
        if cur.is_main {
            self.run_loop();
        } else {
            // SAFETY: the running tasklet is homed here; its suspender was set
            // when it started and is only used from its own stack (here).
            let ex = unsafe { cur.exec() };
            ex.sp_hint = stack_pointer();
            #[allow(clippy::clone_on_copy)] // `Suspender` is `Copy` only outside loom
            let s = ex.suspender.clone();
            if let Some(s) = s {
                s.suspend();
            }
        }
    }

    /// Switches out, then unwinds if a kill arrived meanwhile.
    #[inline]
    pub(crate) fn switch_out(&self) {
        self.switch_out_raw();
        self.check_kill();
    }

    /// Called where a tasklet cannot suspend because the scheduler is
    /// shutting down: makes sure this worker has begun its shutdown (which
    /// kills every tasklet here), then unwinds the running tasklet. A
    /// tasklet that spins on a failing call can therefore not outlive the
    /// shutdown.
    #[cold]
    pub(crate) fn shutdown_point(&self) {
        if !self.stopping.get() {
            self.handle_signals();
            if !self.stopping.get() {
                self.stopping.set(true);
                self.kill_all();
            }
        }
        self.check_kill();
    }

    /// Unwinds the running tasklet if it has a pending kill.
    #[inline]
    pub(crate) fn check_kill(&self) {
        let cur = self.current_ptr();
        if cur.kill.load(Ordering::Relaxed) && !std::thread::panicking() {
            cur.kill.store(false, Ordering::Relaxed);
            std::panic::resume_unwind(Box::new(TaskletExit));
        }
    }

    // ----- operations of the running tasklet ------------------------------------

    /// `schedule()`: the running tasklet goes to the tail; the next runs.
    #[inline]
    pub(crate) fn schedule(&self) {
        if self.ws().signal.load(Ordering::Relaxed) != 0 {
            self.handle_signals();
        }
        let ring = self.ring();
        if ring.len() <= 1 || std::thread::panicking() {
            if self.shared.is_shutdown() {
                self.shutdown_point();
            }
            self.check_kill();
            return;
        }
        // Rotate by one: cheaper as pop + push than `rotate_left(1)`.
        if let Some(cur) = ring.pop_front() {
            ring.push_back(cur);
        }
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
        // SAFETY: the running tasklet is homed here.
        unsafe { me.exec().watchdog = true };
        self.ws()
            .watchdogs
            .store(self.watchdogs().len(), Ordering::SeqCst);
        struct Pop<'a>(&'a WorkerLocal, TaskRef);
        impl Drop for Pop<'_> {
            fn drop(&mut self) {
                let wd = self.0.watchdogs();
                if let Some(pos) = wd.iter().rposition(|t| Arc::ptr_eq(t, &self.1)) {
                    wd.remove(pos);
                }
                // SAFETY: the tasklet is homed here and running.
                unsafe { self.1.exec().watchdog = false };
                self.0.ws().watchdogs.store(wd.len(), Ordering::SeqCst);
            }
        }
        let _pop = Pop(self, me);
        self.switch_out();
    }

    /// Revives the innermost watchdog (quiescence reached).
    fn revive_watchdog(&self) {
        if let Some(t) = self.watchdogs().last().cloned() {
            self.ring_push_back(t);
        }
    }

    /// Parks the running tasklet (see `park.rs`).
    pub(crate) fn park(&self, deadline: Option<Instant>) -> Wake {
        let cur = self.current_ptr();
        let w = cur.park.load(Ordering::Acquire);
        let seq = crate::task::word_seq(w);
        match crate::task::word_phase(w) {
            phase::IDLE => return Wake::Woken,
            // Claimed and woken before we even left: consume the wake-up.
            phase::WOKEN => return self.end_park(cur),
            phase::CLAIMED if crate::sync::weakened(crate::sync::Weakness::TrustClaim) => {
                return self.end_park(cur)
            }
            // `CLAIMED`: a claimer is handing over; we leave and its wake
            // (to our inbox) brings us back. `WAITING`: the usual case.
            _ => {}
        }
        if self.shared.is_shutdown() && !std::thread::panicking() {
            self.shutdown_point();
        }
        if std::thread::panicking() || self.shared.is_shutdown() {
            // We cannot suspend: answer the park ourselves, or wait out a
            // hand-off in progress (a few instructions under a channel lock).
            if cur.claim(seq, Reason::Deadlock) {
                cur.mark_woken();
                cur.finish_park();
                cur.queued.store(true, Ordering::Release);
                return Wake::Deadlock;
            }
            cur.settle();
            return self.end_park(cur);
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

    fn end_park(&self, cur: &Task) -> Wake {
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
    fn take_candidate(&self) -> Option<Unparker> {
        let (p, seq) = self.last_parked().take()?;
        // SAFETY: see `last_parked`: the parked task is still alive; we add
        // a count before making an `Arc` of the pointer.
        let t = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
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
            self.stopping.set(true);
            self.kill_all();
        }
    }

    fn drain_inbox(&self) {
        let ws = self.ws();
        if ws.signal.fetch_and(!signal::INBOX, Ordering::AcqRel) & signal::INBOX != 0 {
            self.drain_inbox_now();
        }
    }

    fn drain_inbox_now(&self) {
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

    /// The ring is empty: find work, or sleep until there is some.
    fn idle(&self) -> Flow {
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
    fn search(&self) -> bool {
        let idle = &self.shared.idle;
        let n = self.shared.nworkers;
        if !self.searching.get() {
            if 2 * idle.searching.load(Ordering::SeqCst) >= n {
                return false;
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
            if round < SEARCH_ROUNDS / 2 {
                for _ in 0..64 {
                    crate::sync::spin_wait();
                }
            } else {
                crate::sync::yield_thread();
            }
        }
        self.stop_searching(false);
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
            // Up to half of the victim's tickets, oldest first (stale ones,
            // whose tasklet was already claimed, are dropped on the way).
            let want = len.div_ceil(2).min(32);
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
        ws.parker.park(deadline);
        let mut g = sh.idle.state.lock();
        sh.take_sleeper(&mut g, me);
        if let Some((_, u)) = g.candidates[me].take() {
            if let Target::Tasklet(t) = &u.target {
                *self.last_parked() = Some((Arc::as_ptr(t), u.seq));
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

    // ----- shutdown -------------------------------------------------------------------------

    /// Makes every tasklet of this worker runnable with a kill pending.
    /// Allocates nothing (it may run when memory or mappings ran out): the
    /// ring's capacity is kept at least the registry's size (see `start`).
    fn kill_all(&self) {
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
        self.stopping.set(true);
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

    /// Makes sure a stack is ready for a tasklet about to be created.
    pub(crate) fn ensure_stack(&self) -> std::io::Result<()> {
        self.stacks().ensure_one(&self.shared.stacks)
    }

    /// Sets up a bound tasklet here: it joins the tail of the ring and, with
    /// more than one worker, becomes stealable.
    pub(crate) fn setup_local(&self, t: &TaskRef) {
        let sh = &self.shared;
        t.bind_shared(sh);
        // SAFETY: `t` is fresh and not yet visible to any other worker.
        let ex = unsafe { t.exec() };
        ex.in_ring = true;
        t.queued.store(true, Ordering::Release);
        if sh.nworkers > 1 && !sh.is_shutdown() {
            t.home.store(self.index | STEALABLE, Ordering::Release);
            self.ring().push_back(t.clone());
            self.ws().tickets.push(t.clone(), |moved| {
                // The ring is full: its older half goes to the injector.
                let mut q = sh.injector.lock();
                q.extend(moved);
                sh.injector_len.store(q.len(), Ordering::Release);
            });
            sh.wakep();
        } else {
            t.home.store(self.index, Ordering::Release);
            self.ring().push_back(t.clone());
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.get()
    }
}

/// The root of every tasklet's stack.
fn tasklet_main(
    worker_ptr: usize,
    task_ptr: usize,
    susp: crate::coroutine::Suspender,
    body: Box<dyn FnOnce() + Send>,
) {
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
    // SAFETY: running on the tasklet's own stack, on its home worker.
    unsafe { t.exec().suspender = Some(susp) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let outcome = match result {
        Ok(()) => Outcome::Finished,
        Err(p) if p.is::<TaskletExit>() => Outcome::Killed,
        Err(p) => {
            let msg = panic_message(&p);
            Outcome::Panicked(Some(p), msg)
        }
    };
    w.leave_ring_current();
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
