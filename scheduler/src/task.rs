//! The tasklet record and its state machine.
//!
//! A [`Task`] is shared (a [`TaskRef`], see `record.rs`) between the
//! user's [`crate::Tasklet`] handles, its home worker's run queue and
//! whoever holds an [`crate::park::Unparker`] for it. Its state is split by who writes it:
//!
//! * `life` — `BOUND → FRESH → ALIVE → DEAD`. `BOUND` is `Tasklet::new`
//!   (a body, not set up), `FRESH` is set up but never run, `ALIVE` has
//!   started on its home worker. Only `setup` (any thread, by CAS) and the
//!   home worker write it.
//! * `home` — the worker a tasklet belongs to, plus a `STEALABLE` bit while
//!   it is fresh and published for thieves. Exactly one CAS clears the bit:
//!   the owner's (it pins the tasklet before running or moving it) or a
//!   thief's (it re-homes the tasklet). After a tasklet has started, `home`
//!   never changes again: started tasklets never move between threads.
//! * `queued` — in a run queue (the home worker's ring, its inbox, a ticket
//!   queue or the injector). Written by the home worker, or by a waker that
//!   has just claimed the tasklet's park.
//! * `park` — the park word: `seq << 8 | phase << 4 | reason`. `prepare_park`
//!   moves `IDLE → WAITING` with a new `seq`; exactly one *claimer* (a waker,
//!   a timer, a killer, the deadlock detector) moves `WAITING → CLAIMED` with
//!   its reason by CAS, hands over whatever it hands over, then moves
//!   `CLAIMED → WOKEN` (a release store) just before it publishes the
//!   tasklet on a run queue. The parked side trusts only `WOKEN`: a claim is
//!   not yet a finished hand-off. The tasklet itself moves back to `IDLE`
//!   when it resumes. An `Unparker` carries the `seq` it was made for, so a
//!   stale one can never wake a later park.
//! * `kill` — a pending kill request, acted on (by unwinding) the next time
//!   the tasklet resumes.
//!
//! The derived Stackless attributes:
//! `alive = life ∈ {FRESH, ALIVE}`; `blocked = phase == WAITING`;
//! `scheduled = queued || phase ∈ {WAITING, CLAIMED}` (a claim in flight
//! counts; the claimer sets `queued` when it publishes the wake);
//! `paused = alive && !scheduled`.

use crate::body::Body;
use crate::coroutine::Coro;
#[cfg(not(own_switch))]
use crate::coroutine::Suspender;
use crate::scheduler::Shared;
use crate::sync::{Arc, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Mutex, Ordering};
use std::any::Any;
use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;

/// A strong reference to a [`Task`]: `Arc` under loom, otherwise the
/// pooled handle of [`crate::record`].
#[cfg(loom)]
pub(crate) type TaskRef = Arc<Task>;
#[cfg(not(loom))]
pub(crate) use crate::record::TaskRef;

/// Lifecycle values of `Task::life`.
pub(crate) mod life {
    pub const BOUND: u8 = 0;
    pub const FRESH: u8 = 1;
    pub const ALIVE: u8 = 2;
    pub const DEAD: u8 = 3;
}

/// The `home` value of a tasklet that belongs to no worker yet.
pub(crate) const HOME_NONE: usize = usize::MAX >> 1;
/// Set in `home` while a fresh tasklet may still be taken by a thief.
pub(crate) const STEALABLE: usize = 1 << (usize::BITS - 1);

/// Phases of the park word.
pub(crate) mod phase {
    pub const IDLE: u64 = 0;
    pub const WAITING: u64 = 1;
    pub const CLAIMED: u64 = 2;
    /// The claimer finished its hand-off and published the wake.
    pub const WOKEN: u64 = 3;
}

/// The reason bits of a *waiting* park word that marks a nice park. A
/// nice park is owned by its home worker: only that worker claims it (with
/// plain stores, no CAS); other threads ask it through its inbox.
pub(crate) const NICE_MARK: u64 = 0xf;

/// Why a park ended (the low bits of a claimed park word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reason {
    Woken = 1,
    TimedOut = 2,
    Deadlock = 3,
    Killed = 4,
}

impl Reason {
    pub(crate) fn from_bits(b: u64) -> Reason {
        match b {
            2 => Reason::TimedOut,
            3 => Reason::Deadlock,
            4 => Reason::Killed,
            _ => Reason::Woken,
        }
    }
}

#[inline(always)]
pub(crate) fn park_word(seq: u64, phase: u64, reason: u64) -> u64 {
    (seq << 8) | (phase << 4) | reason
}
#[inline(always)]
pub(crate) fn word_seq(w: u64) -> u64 {
    w >> 8
}
#[inline(always)]
pub(crate) fn word_phase(w: u64) -> u64 {
    (w >> 4) & 0xf
}
#[inline(always)]
pub(crate) fn word_reason(w: u64) -> u64 {
    w & 0xf
}

/// The unwinding payload of a killed tasklet (Stackless's `TaskletExit`).
///
/// A tasklet that catches it with `catch_unwind` keeps living, as in
/// Stackless; code should not swallow it.
#[derive(Debug)]
pub struct TaskletExit;

/// How a tasklet ended (what `set_outcome` is told).
pub(crate) enum Outcome {
    Finished,
    Killed,
    /// Ended otherwise: what its joiners learn.
    Failed(Failure),
}

/// What a joiner learns of a tasklet that did not end plainly.
pub(crate) enum Failure {
    /// The payload (taken by the first joiner) and its message.
    Panicked(Option<Box<dyn Any + Send>>, String),
    /// It could never start (no stack could be mapped).
    NoStack(String),
}

/// The joiners' side of a record, two words (a record is three cache
/// lines, see `record.rs`): whether it is running or ended plainly is
/// `done`'s to say.
pub(crate) struct JoinState {
    /// Set when it ended otherwise than plainly (`done` is then 2).
    pub(crate) failure: Option<Box<Failure>>,
    /// The joiners waiting for it to end (rarely any).
    #[allow(clippy::box_collection)]
    pub(crate) waiters: Option<Box<Vec<crate::park::Unparker>>>,
}

impl JoinState {
    /// Takes the waiting joiners.
    pub(crate) fn take_waiters(&mut self) -> Vec<crate::park::Unparker> {
        self.waiters.take().map(|w| *w).unwrap_or_default()
    }
}

/// The shared record of one tasklet. See the module docs for the state machine.
#[repr(C)]
pub(crate) struct Task {
    // Hot: touched on every resume, and written by a nice round: with the
    // coroutine's saved registers they are the record's first line (see
    // `record.rs`).
    pub(crate) park: AtomicU64,
    pub(crate) home: AtomicUsize,
    pub(crate) life: AtomicU8,
    pub(crate) queued: AtomicBool,
    pub(crate) kill: AtomicBool,
    pub(crate) is_main: bool,
    /// Home-worker-only execution state (its flags).
    pub(crate) exec: UnsafeCell<Exec>,
    /// The coroutine (home worker only). With our own switch its saved
    /// registers end the first line and its stack starts the second.
    pub(crate) coro: UnsafeCell<Option<Coro>>,
    // Cold.
    /// 0 while it runs; 1 once it returned or was killed; 2 once it ended
    /// otherwise (details in `join`). Lets `join` and a joiner-less finish
    /// skip the lock.
    done: AtomicU8,
    /// Set by a joiner before it looks at `done` (the other half of the
    /// handshake with `set_outcome`).
    joiners: AtomicBool,
    /// Its index in the home worker's registry of started tasklets (home
    /// worker only, like `exec`).
    slot: UnsafeCell<u32>,
    pub(crate) id: u64,
    /// The scheduler, once set up (a strong count is held; released on drop).
    shared: AtomicPtr<Shared>,
    /// The body until it starts (or dies unstarted). Taken exactly once, by
    /// whoever owns the fresh tasklet: its worker after the `home` CAS (to
    /// drop it), the tasklet itself on its first resume by that worker, or
    /// the thread whose `setup` CAS made it fresh during shutdown.
    body: crate::sync::UnsafeCell<Option<Body>>,
    /// Dropped by `Drop for Task` only when it holds something (see there).
    pub(crate) join: ManuallyDrop<Mutex<JoinState>>,
}

/// State only the home worker thread touches once the tasklet has started:
/// the flags a nice round writes, and (outside our own switch) the way out.
/// Four bytes with our own switch.
#[derive(Default)]
#[repr(C)]
pub(crate) struct Exec {
    /// In the home worker's ring (the truth behind `queued`).
    pub(crate) in_ring: bool,
    /// Set while the tasklet waits on the nice queue.
    pub(crate) nice: bool,
    /// Set while the tasklet has a live timer.
    pub(crate) timed: bool,
    /// Set when it switched out from a suspension inlined into its own
    /// code that keeps nothing in its stack frame (`be_nice`'s and
    /// `schedule`'s common case): its resume most likely reads no stack
    /// line, so the worker does not prefetch one. Cleared when it is
    /// switched to.
    ///
    /// A heuristic: a loop that calls them directly (at any depth) and
    /// keeps at most three values across them (the registers the switch
    /// saves in the record) reads no stack line when resumed, and among
    /// 10,000 tasklets skipping the prefetch takes a resume from ~48 to
    /// ~31 ns (a probe); a function that calls them last and then returns,
    /// or a loop that keeps more values (spilled to its frame), reads its
    /// frame at once, and pays ~67 instead of ~56 ns for the missing
    /// prefetch.
    pub(crate) light: bool,
    /// What the running tasklet switches out with: handed to its body by
    /// corosensei and loom. With our own switch it is the coroutine itself
    /// (see `WorkerLocal::suspender`).
    #[cfg(not(own_switch))]
    pub(crate) suspender: Option<Suspender>,
}

// SAFETY: `exec` is only accessed by the tasklet's home worker thread (the
// thread that started it; `home` never changes after start), or by the
// thread that creates/finishes it while no other thread can reach it. Every
// other field is an atomic or a lock.
unsafe impl Sync for Task {}
// SAFETY: the `!Send` parts (`Coro`, `Suspender`) live in `exec`, which only
// the home worker touches (see above); moving the `Arc` to another thread
// moves a handle, not the execution state.
unsafe impl Send for Task {}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A process-unique tasklet id. Each thread takes ids from the global
/// counter in blocks, so spawning on many workers does not contend on it.
fn next_id() -> u64 {
    const BLOCK: u64 = 1024;
    std::thread_local! {
        static RANGE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    RANGE.with(|r| {
        let (next, end) = r.get();
        if next < end {
            r.set((next + 1, end));
            return next;
        }
        let base = NEXT_ID.fetch_add(BLOCK, std::sync::atomic::Ordering::Relaxed);
        r.set((base + 1, base + BLOCK));
        base
    })
}

impl Task {
    /// The record's first cache line: the park word, `home`, the flags and
    /// the saved registers, all that a switch reads and a nice round
    /// writes (the layout test in `record.rs` keeps them there). For
    /// prefetching; never dereferenced.
    #[inline(always)]
    pub(crate) fn hot_line(&self) -> *const u8 {
        self as *const Task as *const u8
    }

    #[allow(clippy::new_ret_no_self)] // a record is only ever made shared
    pub(crate) fn new(body: Option<Body>, is_main: bool) -> TaskRef {
        let life = if is_main { life::ALIVE } else { life::BOUND };
        Task::record(body, is_main, life, std::ptr::null_mut())
    }

    /// A record made fresh (set up) on `shared` at once: what `spawn` on a
    /// worker does. The record is not shared yet, so its birth needs none
    /// of the compare-exchanges that set up a bound tasklet.
    pub(crate) fn new_fresh(body: Body, shared: &Arc<Shared>) -> TaskRef {
        let raw = Arc::into_raw(shared.clone()) as *mut Shared;
        Task::record(Some(body), false, life::FRESH, raw)
    }

    #[inline(always)]
    fn record(body: Option<Body>, is_main: bool, life: u8, shared: *mut Shared) -> TaskRef {
        let make = || Task {
            id: next_id(),
            is_main,
            life: AtomicU8::new(life),
            home: AtomicUsize::new(HOME_NONE),
            queued: AtomicBool::new(false),
            park: AtomicU64::new(0),
            kill: AtomicBool::new(false),
            shared: AtomicPtr::new(shared),
            body: crate::sync::UnsafeCell::new(body),
            done: AtomicU8::new(0),
            joiners: AtomicBool::new(false),
            exec: UnsafeCell::new(Exec::default()),
            slot: UnsafeCell::new(0),
            coro: UnsafeCell::new(None),
            join: ManuallyDrop::new(Mutex::new(JoinState {
                failure: None,
                waiters: None,
            })),
        };
        #[cfg(loom)]
        return Arc::new(make());
        #[cfg(not(loom))]
        TaskRef::new_with(make)
    }

    /// Its `Exec` (home worker only).
    ///
    /// # Safety
    /// The caller is the home worker thread (or the only thread that can
    /// reach the task), and does not keep the reference across a switch.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn exec(&self) -> &mut Exec {
        // SAFETY: forwarded to the caller (see above).
        unsafe { &mut *self.exec.get() }
    }

    /// The tasklet whose suspension a switch just resumed, from what the
    /// switch handed over (its coroutine, in this record), or `None` where
    /// the switch does not tell (then the worker's `current` is it).
    ///
    /// # Safety
    ///
    /// `landed` is what a running tasklet's own suspension returned, and
    /// the reference is not used once that tasklet has finished.
    #[inline(always)]
    pub(crate) unsafe fn landed<'a>(landed: crate::coroutine::Landed) -> Option<&'a Task> {
        let coro = landed.coro()?;
        // SAFETY: a running tasklet's coroutine is in its record, which is
        // alive (the registry holds it).
        Some(unsafe { &*Task::record_of(coro.as_ptr()) })
    }

    /// The record whose `coro` field holds `coro` (as the payload of the
    /// `Some`: `Option<Coro>` keeps it at offset 0, its tag being the
    /// stack's non-null niche; `start` checks this in debug builds). Only
    /// address arithmetic: meaningful for a coroutine that lives in a
    /// record.
    #[inline(always)]
    pub(crate) fn record_of(coro: *const Coro) -> *const Task {
        (coro as *const u8).wrapping_sub(std::mem::offset_of!(Task, coro)) as *const Task
    }

    /// The coroutine of a started tasklet whose body has not returned,
    /// without reading `Option<Coro>`'s tag (in the record's second line:
    /// the hot paths touch only the first).
    ///
    /// # Safety
    /// As for [`Task::exec`]; and the tasklet is started (`start` set its
    /// coroutine) and not finished (only `finish` takes it).
    #[inline(always)]
    pub(crate) unsafe fn started_coro(&self) -> &Coro {
        // SAFETY: the coroutine is set (per the contract) and only this
        // thread writes it.
        unsafe {
            debug_assert!((*self.coro.get()).is_some());
            (*self.coro.get()).as_ref().unwrap_unchecked()
        }
    }

    /// Its index in the home worker's registry.
    ///
    /// # Safety
    /// As for [`Task::exec`].
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn registry_slot(&self) -> &mut u32 {
        // SAFETY: forwarded to the caller.
        unsafe { &mut *self.slot.get() }
    }

    #[inline(always)]
    pub(crate) fn life(&self) -> u8 {
        self.life.load(Ordering::Acquire)
    }

    /// Takes the body.
    ///
    /// The caller owns the fresh tasklet (see the `body` field): it won the
    /// `home` CAS (pin or steal) or the `setup` CAS, or is the tasklet that
    /// winner started, so no other thread reaches the body.
    pub(crate) fn take_body(&self) -> Option<Body> {
        // SAFETY: exclusive by the ownership rule above.
        self.body.with_mut(|b| unsafe { (*b).take() })
    }

    /// Whether it still has its body (read while it is bound, when nobody
    /// takes it).
    pub(crate) fn has_body(&self) -> bool {
        // SAFETY: a bound tasklet's body is only ever read.
        self.body.with(|b| unsafe { (*b).is_some() })
    }

    /// The home worker index, if any (ignoring the stealable bit).
    #[inline(always)]
    pub(crate) fn home(&self) -> usize {
        self.home.load(Ordering::Acquire) & !STEALABLE
    }

    /// The scheduler this tasklet was set up on.
    #[inline(always)]
    pub(crate) fn shared(&self) -> Option<&Shared> {
        let p = self.shared.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from `Arc::into_raw` in
        // `bind_shared` and its strong count is released only in `drop`.
        unsafe { p.as_ref() }
    }

    /// Binds the tasklet to a scheduler (once; later calls keep the first).
    pub(crate) fn bind_shared(&self, s: &Arc<Shared>) {
        if !self.shared.load(Ordering::Acquire).is_null() {
            return;
        }
        let raw = Arc::into_raw(s.clone()) as *mut Shared;
        if self
            .shared
            .compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: `raw` came from `Arc::into_raw` just above and was not stored.
            unsafe { drop(Arc::from_raw(raw as *const Shared)) };
        }
    }

    /// Whether it is set up on `s`.
    #[inline(always)]
    pub(crate) fn is_on(&self, s: &Shared) -> bool {
        std::ptr::eq(self.shared.load(Ordering::Acquire), s)
    }

    /// Pins a fresh stealable tasklet to `me` (the owner's CAS). True when it
    /// is (now or already) homed at `me`; false when a thief took it.
    #[inline]
    pub(crate) fn pin(&self, me: usize) -> bool {
        let h = self.home.load(Ordering::Acquire);
        if h & STEALABLE == 0 {
            return h == me;
        }
        if h & !STEALABLE != me {
            return false;
        }
        self.home
            .compare_exchange(h, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A thief's claim: re-homes a stealable fresh tasklet to `thief`.
    #[inline]
    pub(crate) fn steal(&self, thief: usize) -> bool {
        let h = self.home.load(Ordering::Acquire);
        h & STEALABLE != 0
            && self
                .home
                .compare_exchange(h, thief, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Whether a thief could still take it.
    #[inline]
    pub(crate) fn stealable(&self) -> bool {
        self.home.load(Ordering::Acquire) & STEALABLE != 0
    }

    #[inline(always)]
    pub(crate) fn park_phase(&self) -> u64 {
        word_phase(self.park.load(Ordering::Acquire))
    }

    /// Starts a new park: `IDLE → WAITING` with the next sequence number.
    /// Only the tasklet itself calls this, while running.
    #[inline]
    pub(crate) fn prepare_park(&self) -> u64 {
        let w = self.park.load(Ordering::Relaxed);
        let seq = word_seq(w).wrapping_add(1) & ((1 << 56) - 1);
        self.queued.store(false, Ordering::Relaxed);
        self.park
            .store(park_word(seq, phase::WAITING, 0), Ordering::Release);
        seq
    }

    /// The exactly-once claim of park `seq`. True for the one winner.
    #[inline]
    pub(crate) fn claim(&self, seq: u64, reason: Reason) -> bool {
        self.park
            .compare_exchange(
                park_word(seq, phase::WAITING, 0),
                park_word(seq, phase::CLAIMED, reason as u64),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Claims whatever park is current (a kill or deadlock answer).
    pub(crate) fn claim_current(&self, reason: Reason) -> Option<u64> {
        let w = self.park.load(Ordering::Acquire);
        if word_phase(w) != phase::WAITING {
            return None;
        }
        if word_reason(w) == NICE_MARK && !crate::worker::is_local(self) {
            // A nice park belongs to its home worker (see `NICE_MARK`).
            return None;
        }
        let seq = word_seq(w);
        self.park
            .compare_exchange(
                w,
                park_word(seq, phase::CLAIMED, reason as u64),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
            .then_some(seq)
    }

    /// Whether it waits on the nice queue.
    #[inline]
    pub(crate) fn nice_parked(&self) -> bool {
        let w = self.park.load(Ordering::Acquire);
        word_phase(w) == phase::WAITING && word_reason(w) == NICE_MARK
    }

    /// The claim winner's last step before publishing the wake:
    /// `CLAIMED → WOKEN` (only the winner writes the word in between).
    #[inline]
    pub(crate) fn mark_woken(&self) {
        let w = self.park.load(Ordering::Relaxed);
        if word_phase(w) == phase::CLAIMED {
            self.park.store(
                park_word(word_seq(w), phase::WOKEN, word_reason(w)),
                Ordering::Release,
            );
        }
    }

    /// Waits out a hand-off in flight: while another thread has claimed this
    /// tasklet's park but not yet published the wake (`CLAIMED`), nothing
    /// else may make the tasklet runnable. The claimer is a few
    /// instructions from done (it holds a channel lock at most).
    #[inline]
    pub(crate) fn settle(&self) {
        while word_phase(self.park.load(Ordering::Acquire)) == phase::CLAIMED {
            crate::sync::yield_thread();
        }
    }

    /// Ends the park when the tasklet resumes; returns why it ended.
    #[inline]
    pub(crate) fn finish_park(&self) -> Reason {
        self.settle();
        let w = self.park.load(Ordering::Acquire);
        self.park
            .store(park_word(word_seq(w), phase::IDLE, 0), Ordering::Release);
        Reason::from_bits(word_reason(w))
    }

    pub(crate) fn alive(&self) -> bool {
        matches!(self.life(), life::FRESH | life::ALIVE)
    }

    pub(crate) fn blocked(&self) -> bool {
        self.park_phase() == phase::WAITING
    }

    pub(crate) fn scheduled(&self) -> bool {
        self.queued.load(Ordering::Acquire)
            || matches!(self.park_phase(), phase::WAITING | phase::CLAIMED)
    }

    /// Records how it ended and returns the joiners to wake. Without a
    /// joiner, a plain finish touches no lock: it stores `done`, fences
    /// (`SeqCst`) and loads `joiners`; a joiner stores `joiners`, fences and
    /// loads `done`; one of the two sees the other (Dekker).
    pub(crate) fn set_outcome(&self, outcome: Outcome) -> Vec<crate::park::Unparker> {
        let failure = match outcome {
            Outcome::Finished | Outcome::Killed => {
                self.done.store(1, Ordering::Release);
                crate::sync::fence(Ordering::SeqCst);
                if !self.joiners.load(Ordering::Relaxed) {
                    return Vec::new();
                }
                return self.join.lock().take_waiters();
            }
            Outcome::Failed(f) => f,
        };
        let mut j = self.join.lock();
        j.failure = Some(Box::new(failure));
        self.done.store(2, Ordering::SeqCst);
        j.take_waiters()
    }

    /// 1: ended plainly (returned or killed); 2: ended otherwise; 0: not yet.
    pub(crate) fn done(&self) -> u8 {
        self.done.load(Ordering::Acquire)
    }

    /// A joiner announces itself before it looks at `done` again.
    pub(crate) fn announce_joiner(&self) {
        self.joiners.store(true, Ordering::Relaxed);
        crate::sync::fence(Ordering::SeqCst);
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let p = self.shared.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: the pointer came from `Arc::into_raw` in `bind_shared`
            // and this is the only place its count is given back.
            unsafe { drop(Arc::from_raw(p as *const Shared)) };
        }
        // The joiners' side rarely holds anything (a failure, or joiners
        // that waited): look before calling its drop, which the compiler
        // keeps out of line (two calls per spawned tasklet otherwise). On
        // Linux a std mutex is a futex word that owns nothing, so an empty
        // one may go undropped; elsewhere it may own a lazily boxed OS lock.
        let j = self.join.get_mut();
        let owns_nothing = cfg!(all(
            not(loom),
            any(target_os = "linux", target_os = "android")
        ));
        if !owns_nothing || j.failure.is_some() || j.waiters.is_some() {
            // SAFETY: `join` is dropped once, here, and the task is being
            // dropped, so nothing uses it after.
            unsafe { ManuallyDrop::drop(&mut self.join) };
        }
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasklet")
            .field("id", &self.id)
            .field("main", &self.is_main)
            .field("life", &self.life())
            .finish()
    }
}
