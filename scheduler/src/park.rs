//! The park API: how anything blocks a tasklet (or a plain OS thread) and
//! how anything else makes it runnable again.
//!
//! This is the seam between the scheduler and every blocking primitive built
//! on it: `stackless-channels` uses nothing else, and a user's own lock,
//! event or semaphore can use exactly the same calls.
//!
//! # The protocol
//!
//! Blocking is "register me, then suspend":
//!
//! 1. [`prepare_park`] returns an [`Unparker`] for the *next* park of the
//!    caller and marks the caller `WAITING` (it now reads as blocked). A
//!    tasklet also leaves its worker's run queue here: its queue entry
//!    becomes the `Unparker`'s reference (parking counts no references),
//!    and if the park ends before step 3 switches out ([`cancel_park`], or
//!    a claim that came first), `park` returns at once with the tasklet back
//!    at the head of the queue, where it was.
//! 2. The caller publishes that `Unparker` wherever a waker will find it (a
//!    channel's wait queue, say), usually under the lock that protects the
//!    condition it waits for.
//! 3. The caller calls [`park`] (or [`park_until`]), which suspends it until
//!    someone claims the park, and returns why: [`Wake::Woken`],
//!    [`Wake::TimedOut`] or [`Wake::Deadlock`]. A kill unwinds out of `park`
//!    instead, so registrations must be undone by a guard's `Drop`.
//!
//! Waking is "claim, then publish": exactly one party wins the park by
//! [`Unparker::claim`] (one CAS on the tasklet's park word, which also
//! carries a sequence number, so a stale `Unparker` from an earlier park
//! never wakes a later one). The winner may hand over data (the claim
//! happens-before the parked side's return from `park`), then
//! [`Claimed::wake`] makes the tasklet runnable. Timers, kills and the
//! deadlock detector are claimers too, so a waiter that is woken, timed out
//! or killed at once sees exactly one of these.
//!
//! ## Switch out, then publish
//!
//! A woken tasklet is only ever *resumed* by its home worker, from that
//! worker's run queue. A claim may well happen between steps 2 and 3, while
//! the tasklet is still running on its stack: then `wake` appends it to its
//! home worker's inbox, and that worker reads the inbox only from its
//! scheduling loop — that is, after the tasklet has switched out. So no
//! stack is ever resumed while it is still running, without a lock held
//! across the switch. A plain OS thread parks on a condition variable and
//! checks the park word under its mutex, which gives the same guarantee.
//!
//! ## Deadlock answer
//!
//! When every worker is idle, no timer is pending, no foreign thread that
//! talks to the scheduler is running, and no `run()` is waiting, nothing can
//! ever claim the parks that remain: the last worker to go idle claims one
//! of them with [`Wake::Deadlock`] (the tasklet whose park made the
//! scheduler quiescent, else the main tasklet), exactly as Stackless raises
//! its "Deadlock" error in the last runnable tasklet. See `idle/README.md`.
//!
//! # Example: a one-shot event built on the park API
//!
//! ```
//! use stackless_scheduler::park::{prepare_park, park, Unparker, Wake};
//! use std::sync::{Arc, Mutex};
//!
//! #[derive(Default)]
//! struct Event { state: Mutex<(bool, Vec<Unparker>)> }
//!
//! impl Event {
//!     fn set(&self) {
//!         let waiters = {
//!             let mut s = self.state.lock().unwrap();
//!             s.0 = true;
//!             std::mem::take(&mut s.1)
//!         };
//!         for w in waiters { w.unpark(); }
//!     }
//!     fn wait(&self) -> Wake {
//!         let mut s = self.state.lock().unwrap();
//!         if s.0 { return Wake::Woken; }
//!         s.1.push(prepare_park()); // register me ...
//!         drop(s);
//!         park()                    // ... then suspend
//!     }
//! }
//!
//! let sched = stackless_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! sched.enter(|| {
//!     let ev = Arc::new(Event::default());
//!     let e = ev.clone();
//!     stackless_scheduler::spawn(move || assert_eq!(e.wait(), Wake::Woken));
//!     stackless_scheduler::schedule();  // the tasklet now waits
//!     ev.set();
//!     stackless_scheduler::run();
//! });
//! ```

use crate::scheduler::Shared;
use crate::sync::{Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};
use crate::task::{self, phase, Reason, TaskRef};
use std::time::Instant;

/// Why a [`park`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wake {
    /// An [`Unparker`] woke it.
    Woken,
    /// Its deadline passed first.
    TimedOut,
    /// Nothing anywhere could ever wake it (see the module docs).
    Deadlock,
}

/// Where a woken tasklet goes in its home worker's run queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// At the tail (Stackless `insert`). The only choice across workers.
    #[default]
    Tail,
    /// Right after the running tasklet, when the waker runs on the same
    /// worker; at the tail otherwise. A waker that then calls
    /// [`crate::schedule`] makes the woken tasklet run next.
    Next,
}

/// What a park waits on: a tasklet or a plain OS thread.
#[derive(Clone)]
pub(crate) enum Target {
    Tasklet(TaskRef),
    Thread(Arc<ThreadParker>),
}

/// The right to wake one particular park of one tasklet or thread.
///
/// Cheap to clone; `Send + Sync`. Waking it after that park has ended (or
/// twice) does nothing.
#[derive(Clone)]
pub struct Unparker {
    pub(crate) target: Target,
    pub(crate) seq: u64,
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Tasklet(t) => write!(f, "Unparker(tasklet {}, park {})", t.id, self.seq),
            Target::Thread(_) => write!(f, "Unparker(thread, park {})", self.seq),
        }
    }
}

/// A won claim on a park: the parked side will return [`Wake::Woken`] once
/// this is woken. Dropping it without waking wakes at the tail.
#[must_use = "a claimed park must be woken"]
pub struct Claimed {
    target: Option<Target>,
}

impl Unparker {
    /// Claims the park (exactly one caller ever succeeds) so that data can be
    /// handed over before the parked side runs; `None` when the park already
    /// ended or was claimed by someone else (a timeout, a kill, a deadlock
    /// answer, another waker). Consumes the unparker (clone it to keep one).
    #[inline]
    pub fn claim(self) -> Option<Claimed> {
        // (Not `then_some`: building a `Claimed` for a lost claim would
        // wake the tasklet when it is dropped.)
        if self.claim_with(Reason::Woken) {
            Some(Claimed {
                target: Some(self.target),
            })
        } else {
            None
        }
    }

    #[inline]
    pub(crate) fn claim_with(&self, reason: Reason) -> bool {
        match &self.target {
            Target::Tasklet(t) => t.claim(self.seq, reason),
            Target::Thread(p) => p.claim(self.seq, reason),
        }
    }

    /// Claims and wakes at the tail; true when this call woke it.
    #[inline]
    pub fn unpark(self) -> bool {
        match self.claim() {
            Some(c) => {
                c.wake();
                true
            }
            None => false,
        }
    }

    /// Whether the parked party is a tasklet of the worker this is called
    /// from (so a [`Placement::Next`] wake would run it on this worker).
    #[inline]
    pub fn is_local(&self) -> bool {
        match &self.target {
            Target::Tasklet(t) => crate::worker::is_local(t),
            Target::Thread(_) => false,
        }
    }

    /// The parked tasklet, if a tasklet (not an OS thread) parked.
    pub fn tasklet(&self) -> Option<crate::Tasklet> {
        match &self.target {
            Target::Tasklet(t) => Some(crate::Tasklet(t.clone())),
            Target::Thread(_) => None,
        }
    }

    /// Whether this park is still waiting (not yet claimed by anyone).
    pub fn is_waiting(&self) -> bool {
        let w = match &self.target {
            Target::Tasklet(t) => t.park.load(Ordering::Acquire),
            Target::Thread(p) => p.word.load(Ordering::Acquire),
        };
        task::word_seq(w) == self.seq && task::word_phase(w) == phase::WAITING
    }

    /// Whether both unparkers are for the same tasklet or thread.
    pub fn same_target(&self, other: &Unparker) -> bool {
        match (&self.target, &other.target) {
            (Target::Tasklet(a), Target::Tasklet(b)) => TaskRef::ptr_eq(a, b),
            (Target::Thread(a), Target::Thread(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Claimed {
    /// Makes the claimed party runnable at the tail of its home worker's queue.
    #[inline]
    pub fn wake(self) {
        self.wake_at(Placement::Tail);
    }

    /// Makes the claimed party runnable at `at`; true when it was placed on
    /// the calling worker (so [`crate::schedule`] would reach it).
    #[inline]
    pub fn wake_at(mut self, at: Placement) -> bool {
        match self.target.take() {
            Some(t) => wake_target(t, at),
            None => false,
        }
    }
}

impl Drop for Claimed {
    #[inline]
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            wake_target(t, Placement::Tail);
        }
    }
}

#[inline]
pub(crate) fn wake_target(t: Target, at: Placement) -> bool {
    match t {
        Target::Tasklet(task) => crate::worker::wake_task(task, at),
        Target::Thread(p) => {
            p.wake();
            false
        }
    }
}

/// Starts a park of the calling tasklet (or thread): returns the
/// [`Unparker`] that ends it. The caller reads as blocked from now on and
/// must call [`park`] or [`park_until`] next.
#[inline]
pub fn prepare_park() -> Unparker {
    crate::worker::prepare_park(true)
}

/// Suspends the caller until its prepared park is claimed; see the module
/// docs. A kill unwinds out of here (Stackless's `TaskletExit`).
///
/// While the caller is unwinding (a destructor running during a panic or a
/// kill) it cannot suspend, so `park` returns [`Wake::Deadlock`] at once;
/// the same holds during the scheduler's shutdown.
#[inline]
pub fn park() -> Wake {
    crate::worker::park(None)
}

/// Like [`park`], but gives up with [`Wake::TimedOut`] at `deadline`.
/// A timed park keeps `run()` waiting and is never a deadlock.
#[inline]
pub fn park_until(deadline: Instant) -> Wake {
    crate::worker::park(Some(deadline))
}

/// Abandons a prepared park without suspending (the condition became true
/// after [`prepare_park`]). Returns true when nobody had claimed it yet; when
/// false, a waker already claimed it and the caller must still consume the
/// wake-up by calling [`park`] (which then returns at once).
pub fn cancel_park(u: &Unparker) -> bool {
    crate::worker::cancel_park(u)
}

/// A plain OS thread's parking spot: the same park word as a tasklet's,
/// plus a mutex and condition variable to sleep on.
pub(crate) struct ThreadParker {
    pub(crate) word: AtomicU64,
    lock: Mutex<()>,
    cv: Condvar,
    /// The scheduler this thread talks to (a *participant*, see idle/README.md).
    pub(crate) participant: Mutex<Option<Arc<Shared>>>,
    /// Set while this thread's park released its participant count.
    pub(crate) released: AtomicBool,
}

impl ThreadParker {
    pub(crate) fn new() -> ThreadParker {
        ThreadParker {
            word: AtomicU64::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            participant: Mutex::new(None),
            released: AtomicBool::new(false),
        }
    }

    pub(crate) fn prepare(&self) -> u64 {
        let w = self.word.load(Ordering::Relaxed);
        let seq = task::word_seq(w).wrapping_add(1) & ((1 << 56) - 1);
        self.word
            .store(task::park_word(seq, phase::WAITING, 0), Ordering::Release);
        seq
    }

    pub(crate) fn claim(&self, seq: u64, reason: Reason) -> bool {
        self.word
            .compare_exchange(
                task::park_word(seq, phase::WAITING, 0),
                task::park_word(seq, phase::CLAIMED, reason as u64),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Wakes the thread after a successful claim and hand-off.
    pub(crate) fn wake(&self) {
        let g = self.lock.lock();
        // The thread released its participant count under this lock (see
        // `release_if_waiting`), so the two never miss each other.
        if self.released.swap(false, Ordering::AcqRel) {
            if let Some(s) = self.participant.lock().clone() {
                s.participant_resumed();
            }
        }
        let w = self.word.load(Ordering::Relaxed);
        if task::word_phase(w) == phase::CLAIMED {
            self.word.store(
                task::park_word(task::word_seq(w), phase::WOKEN, task::word_reason(w)),
                Ordering::Release,
            );
        }
        self.cv.notify_all();
        drop(g);
    }

    /// The thread is about to sleep in park `seq`: marks its participant
    /// count as released if nobody has claimed the park yet. True when the
    /// caller must now count itself out (a later waker counts it back in).
    pub(crate) fn release_if_waiting(&self, seq: u64) -> bool {
        let _g = self.lock.lock();
        let waiting = self.word.load(Ordering::Acquire) == task::park_word(seq, phase::WAITING, 0);
        if waiting {
            self.released.store(true, Ordering::Release);
        }
        waiting
    }

    /// Takes back a release that nobody consumed (the deadlock-victim path).
    pub(crate) fn unrelease(&self) {
        let _g = self.lock.lock();
        self.released.store(false, Ordering::Release);
    }

    /// Sleeps until the park word leaves `WAITING` (or the deadline passes,
    /// in which case the thread claims its own park as timed out).
    pub(crate) fn wait(&self, seq: u64, deadline: Option<Instant>) -> Reason {
        let mut g = self.lock.lock();
        loop {
            let w = self.word.load(Ordering::Acquire);
            if task::word_seq(w) != seq || task::word_phase(w) == phase::WOKEN {
                break;
            }
            if task::word_phase(w) == phase::CLAIMED
                && crate::sync::weakened(crate::sync::Weakness::TrustClaim)
            {
                break;
            }
            if task::word_phase(w) == phase::CLAIMED {
                // Someone won the claim and is handing over: its wake follows.
                g = self.cv.wait(g);
                continue;
            }
            match deadline {
                None => g = self.cv.wait(g),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        if self.claim(seq, Reason::TimedOut) {
                            let w = self.word.load(Ordering::Relaxed);
                            self.word.store(
                                task::park_word(seq, phase::WOKEN, task::word_reason(w)),
                                Ordering::Release,
                            );
                            break;
                        }
                        continue;
                    }
                    g = self.cv.wait_timeout(g, d - now);
                }
            }
        }
        drop(g);
        let w = self.word.load(Ordering::Acquire);
        self.word.store(
            task::park_word(task::word_seq(w), phase::IDLE, 0),
            Ordering::Release,
        );
        Reason::from_bits(task::word_reason(w))
    }
}
