//! The channel: a Stackless rendezvous built on the scheduler's park API.
//!
//! # How an operation works
//!
//! All state sits behind one small spin lock: the balance, the FIFO of
//! waiters (all on one side), and the flags. An operation in direction
//! `dir` (+1 send, −1 receive):
//!
//! * **can do** (waiters of the other side exist): pop the oldest waiter and
//!   *claim* its park ([`Unparker::claim`]); a waiter whose park was already
//!   claimed by a kill, a timeout or a deadlock answer is dropped from the
//!   queue and the next one tried. The value moves through the waiter's
//!   slot while the lock is held, then the waiter is woken according to
//!   Stackless's rules (below) after the lock is released.
//! * **cannot do**: fail with `Closed` if the channel is closing; otherwise
//!   append a waiter (its [`Unparker`] and a pointer to a slot on the
//!   caller's stack) and park. "Register, then suspend": the waiter is
//!   visible before the caller has switched out, and the park word plus the
//!   home-worker-only resumption make that safe (see the scheduler's `park`
//!   module).
//!
//! A waiter that returns from `park` without having been matched (deadlock
//! answer, timeout) or that unwinds out of it (killed) removes its own entry
//! under the lock if it is still there, so the balance is always the signed
//! length of the queue and no stale waiter is ever resumed.
//!
//! # Who runs next (same worker)
//!
//! | setting | next | the woken waiter goes |
//! |---|---|---|
//! | `schedule_all` | the caller's successor (`schedule()`) | to the tail |
//! | preference favours the waiting side | the woken waiter, at once | right after the caller, which ends up last |
//! | otherwise | the caller goes on | to the tail |
//!
//! Across workers (or with a plain thread on either side) the caller always
//! goes on and the woken tasklet goes to the tail of its own worker.
//!
//! # Inlined at the call site
//!
//! [`Channel::send`] and [`Channel::receive`] are `#[inline(always)]`, so a
//! park's stack switch lies in the caller's own code: the tasklet resumes
//! there, not inside a `send` that must then return (one call and its six
//! register saves less per operation, and no `ret` whose prediction came
//! from the other tasklet's calls). A same-worker round trip went from
//! ~820 to ~700 instructions and ~20% less time (`pingpong_same` in the
//! `scaling` benchmark). The price is code size: about 4 KiB per call site,
//! most of it the park's switch paths. Out of line are what is rare (every
//! waiter gone, an unmatched park, a kill) and the hand-over to a favoured
//! waiter, which has its own switch (see `hand_over`). The other
//! operations are ordinary functions.

use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::wait_queue::WaitQueue;
use stackless_scheduler::park::{self, Placement, Unparker, Wake};
use stackless_scheduler::sync::{Arc, SpinGuard, SpinLock, UnsafeCell};
use std::time::{Duration, Instant};

/// Which side of a rendezvous keeps running on the same worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(i8)]
pub enum Preference {
    /// Favour the receiver (Stackless's default, −1): a send to a waiting
    /// receiver runs the receiver at once.
    #[default]
    Receiver = -1,
    /// Favour neither (0): whoever is running keeps running.
    Neither = 0,
    /// Favour the sender (1): a receive from a waiting sender runs the
    /// sender at once (CCP's uthread uses this for its nice channel).
    Sender = 1,
}

impl Preference {
    /// Stackless clamps any integer to −1/0/1.
    pub fn from_int(v: i64) -> Preference {
        match v.signum() {
            -1 => Preference::Receiver,
            0 => Preference::Neither,
            _ => Preference::Sender,
        }
    }
}

/// What travels through a channel.
enum Msg<T> {
    Value(T),
    Exception(Box<dyn std::error::Error + Send + Sync>),
}

/// Where a blocked party's value waits: on that party's stack.
struct Slot<T> {
    msg: UnsafeCell<Option<Msg<T>>>,
}

impl<T> Slot<T> {
    fn new(msg: Option<Msg<T>>) -> Self {
        Slot {
            msg: UnsafeCell::new(msg),
        }
    }

    /// # Safety
    /// The caller holds the channel lock and has claimed the slot owner's
    /// park, or is the slot's owner after it stopped being reachable.
    unsafe fn take(&self) -> Option<Msg<T>> {
        // SAFETY: forwarded (exclusive access per the contract above).
        self.msg.with_mut(|p| unsafe { (*p).take() })
    }

    /// # Safety
    /// As for `take`.
    unsafe fn put(&self, m: Option<Msg<T>>) {
        // SAFETY: forwarded (exclusive access per the contract above).
        self.msg.with_mut(|p| unsafe { *p = m })
    }
}

struct Waiter<T> {
    unparker: Unparker,
    slot: *const Slot<T>,
}

struct State<T> {
    balance: isize,
    queue: WaitQueue<Waiter<T>>,
    preference: Preference,
    schedule_all: bool,
    closing: bool,
}

struct Inner<T> {
    state: SpinLock<State<T>>,
}

// SAFETY: the raw slot pointers in the queue point into the stacks of parked
// waiters; they are dereferenced only under the lock by the party that won
// the waiter's park claim, while the waiter cannot return (it is only woken
// afterwards, or removes its entry under the same lock first). So sharing
// the channel only moves `T` values between threads: `T: Send` suffices.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: see `Send`; all access to the state goes through the lock.
unsafe impl<T: Send> Sync for Inner<T> {}

/// A Stackless channel: an unbuffered, strictly FIFO rendezvous between
/// tasklets (on any workers) and plain OS threads.
///
/// A cheap handle (`Clone` shares the channel); `Send + Sync` for
/// `T: Send`.
///
/// ```
/// use stackless::{spawn, run, Channel, Scheduler};
/// use std::sync::{Arc, Mutex};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// Scheduler::builder().workers(1).build().unwrap().enter(|| {
///     let c = Channel::new();
///     let (l, rc) = (log.clone(), c.clone());
///     spawn(move || l.lock().unwrap().push(format!("R got {}", rc.receive().unwrap())));
///     run();                       // R blocks: balance -1
///     assert_eq!(c.balance(), -1);
///     c.send("v").unwrap();        // preference -1: R runs at once
///     log.lock().unwrap().push("main after send".to_string());
/// });
/// assert_eq!(*log.lock().unwrap(), ["R got v", "main after send"]);
/// ```
pub struct Channel<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.lock();
        f.debug_struct("Channel")
            .field("balance", &s.balance)
            .field("preference", &s.preference)
            .field("schedule_all", &s.schedule_all)
            .field("closing", &s.closing)
            .finish()
    }
}

impl<T: Send + 'static> Default for Channel<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// How long an operation may wait.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    Until(Instant),
    Never,
}

/// The result of one transfer attempt; carries the value back on failure.
enum Transfer<T> {
    Done(Option<Msg<T>>),
    Closed(Option<Msg<T>>),
    Deadlock(Option<Msg<T>>),
    Timeout(Option<Msg<T>>),
    WouldBlock(Option<Msg<T>>),
}

/// Removes a waiter's own entry if it is still queued: on a deadlock answer,
/// a timeout, or while unwinding from a kill.
struct Dequeue<'a, T> {
    inner: &'a Inner<T>,
    slot: *const Slot<T>,
    dir: isize,
    armed: bool,
}

impl<T> Dequeue<'_, T> {
    #[cold]
    #[inline(never)]
    fn run(&mut self) {
        self.armed = false;
        let mut st = self.inner.state.lock();
        let slot = self.slot;
        if st.queue.remove_where(|w| std::ptr::eq(w.slot, slot)) {
            st.balance -= self.dir;
        }
    }
}

impl<T> Drop for Dequeue<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.armed {
            self.run();
        }
    }
}

impl<T: Send + 'static> Channel<T> {
    /// A new open channel: balance 0, preference [`Preference::Receiver`],
    /// `schedule_all` off.
    pub fn new() -> Self {
        Channel {
            inner: Arc::new(Inner {
                state: SpinLock::new(State {
                    balance: 0,
                    queue: WaitQueue::new(),
                    preference: Preference::Receiver,
                    schedule_all: false,
                    closing: false,
                }),
            }),
        }
    }

    #[inline(always)]
    fn transfer(&self, dir: isize, msg: Option<Msg<T>>, wait: Wait) -> Transfer<T> {
        let st = self.inner.state.lock();
        if st.balance * dir < 0 {
            self.rendezvous(st, dir, msg, wait)
        } else if st.closing || matches!(wait, Wait::Never) {
            self.cannot_wait(st, msg, wait)
        } else {
            self.wait(st, dir, msg, wait)
        }
    }

    /// Serves the oldest waiter of the other side (under the lock `st`).
    #[inline(always)]
    fn rendezvous(
        &self,
        mut st: SpinGuard<'_, State<T>>,
        dir: isize,
        mut msg: Option<Msg<T>>,
        wait: Wait,
    ) -> Transfer<T> {
        loop {
            let Some(w) = st.queue.pop_front() else { break };
            st.balance += dir;
            let local = w.unparker.is_local();
            let Some(claim) = w.unparker.claim() else {
                // Its park ended some other way (kill, timeout, deadlock).
                if st.balance * dir < 0 {
                    continue;
                }
                break;
            };
            // SAFETY: we hold the lock and won the waiter's park: it cannot
            // return before we wake it, so its slot is alive and ours.
            let got = unsafe {
                let slot = &*w.slot;
                if dir > 0 {
                    slot.put(msg.take());
                    None
                } else {
                    slot.take()
                }
            };
            let schedule_all = st.schedule_all;
            let favour_waiter = st.preference as isize == -dir;
            drop(st);
            if !local || std::thread::panicking() {
                claim.wake();
            } else if schedule_all || favour_waiter {
                hand_over(claim, schedule_all);
            } else {
                claim.wake();
            }
            return Transfer::Done(got);
        }
        // Every waiter had gone: this operation cannot complete at once.
        self.after_waiters_gone(st, dir, msg, wait)
    }

    /// The rest of an operation whose every waiter of the other side had
    /// gone (rare): out of line, so that the hot path holds one copy of
    /// `wait`.
    #[cold]
    #[inline(never)]
    fn after_waiters_gone(
        &self,
        st: SpinGuard<'_, State<T>>,
        dir: isize,
        msg: Option<Msg<T>>,
        wait: Wait,
    ) -> Transfer<T> {
        if st.closing || matches!(wait, Wait::Never) {
            return self.cannot_wait(st, msg, wait);
        }
        self.wait(st, dir, msg, wait)
    }

    #[cold]
    fn cannot_wait(
        &self,
        st: SpinGuard<'_, State<T>>,
        msg: Option<Msg<T>>,
        wait: Wait,
    ) -> Transfer<T> {
        if st.closing {
            Transfer::Closed(msg)
        } else {
            debug_assert!(matches!(wait, Wait::Never));
            Transfer::WouldBlock(msg)
        }
    }

    /// Queues the caller and parks it until served (or the park ends
    /// otherwise).
    #[inline(always)]
    fn wait(
        &self,
        mut st: SpinGuard<'_, State<T>>,
        dir: isize,
        msg: Option<Msg<T>>,
        wait: Wait,
    ) -> Transfer<T> {
        let slot = Slot::new(msg);
        let unparker = park::prepare_park();
        st.queue.push_back(Waiter {
            unparker,
            slot: &slot,
        });
        st.balance += dir;
        drop(st);
        let mut dequeue = Dequeue {
            inner: &self.inner,
            slot: &slot,
            dir,
            armed: true,
        };
        let wake = match wait {
            Wait::Until(d) => park::park_until(d),
            _ => park::park(),
        };
        if wake == Wake::Woken {
            // The matcher took our entry off the queue and filled (or
            // emptied) the slot before waking us.
            dequeue.armed = false;
            // SAFETY: our entry is gone, so nobody else can reach the slot.
            return Transfer::Done(unsafe { slot.take() });
        }
        dequeue.run();
        // SAFETY: the entry is removed (under the lock): the slot is ours again.
        let back = unsafe { slot.take() };
        if wake == Wake::Deadlock {
            Transfer::Deadlock(back)
        } else {
            Transfer::Timeout(back)
        }
    }

    /// Sends `v`, blocking until a receiver takes it (Stackless `send`).
    ///
    /// Errors give the value back: [`SendError::Closed`] when the channel is
    /// closing and no receiver waits, [`SendError::Deadlock`] when nothing
    /// could ever receive it.
    #[inline(always)]
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        match self.transfer(1, Some(Msg::Value(v)), Wait::Forever) {
            Transfer::Done(m) => {
                // A served send carries nothing back.
                debug_assert!(m.is_none());
                std::mem::forget(m);
                Ok(())
            }
            Transfer::Closed(m) => Err(SendError::Closed(value(m))),
            Transfer::Deadlock(m) | Transfer::Timeout(m) | Transfer::WouldBlock(m) => {
                Err(SendError::Deadlock(value(m)))
            }
        }
    }

    /// Receives a value, blocking until a sender brings one.
    ///
    /// Errors: [`RecvError::Closed`], [`RecvError::Deadlock`], and
    /// [`RecvError::Exception`] when the sender sent an exception.
    #[inline(always)]
    pub fn receive(&self) -> Result<T, RecvError> {
        match self.transfer(-1, None, Wait::Forever) {
            Transfer::Done(m) => match m {
                Some(Msg::Value(v)) => Ok(v),
                Some(Msg::Exception(e)) => Err(RecvError::Exception(e)),
                None => Err(RecvError::Deadlock),
            },
            Transfer::Closed(_) => Err(RecvError::Closed),
            _ => Err(RecvError::Deadlock),
        }
    }

    /// Sends an exception: the receiver's `receive` returns
    /// `Err(RecvError::Exception(e))` (Stackless `send_exception`). Blocks
    /// like [`Channel::send`].
    pub fn send_exception(
        &self,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<(), SendError<()>> {
        match self.transfer(1, Some(Msg::Exception(e.into())), Wait::Forever) {
            Transfer::Done(_) => Ok(()),
            Transfer::Closed(_) => Err(SendError::Closed(())),
            _ => Err(SendError::Deadlock(())),
        }
    }

    /// Sends every item in turn; returns how many were sent. Stops at the
    /// first failure, returning that item in the error.
    pub fn send_sequence(&self, it: impl IntoIterator<Item = T>) -> Result<usize, SendError<T>> {
        let mut n = 0;
        for v in it {
            self.send(v)?;
            n += 1;
        }
        Ok(n)
    }

    /// Receives until the channel is closed (closing with no sender
    /// waiting) or a receive fails (an exception — Stackless's way to end an
    /// iteration is `send_exception(StopIteration)` — or a deadlock).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { chan: self }
    }

    /// Sends only if a receiver is waiting; never blocks.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        match self.transfer(1, Some(Msg::Value(v)), Wait::Never) {
            Transfer::Done(_) => Ok(()),
            Transfer::Closed(m) => Err(TrySendError::Closed(value(m))),
            Transfer::WouldBlock(m) | Transfer::Deadlock(m) | Transfer::Timeout(m) => {
                Err(TrySendError::WouldBlock(value(m)))
            }
        }
    }

    /// Receives only if a sender is waiting; never blocks.
    pub fn try_receive(&self) -> Result<T, TryRecvError> {
        match self.transfer(-1, None, Wait::Never) {
            Transfer::Done(Some(Msg::Value(v))) => Ok(v),
            Transfer::Done(Some(Msg::Exception(e))) => Err(TryRecvError::Exception(e)),
            Transfer::Closed(_) => Err(TryRecvError::Closed),
            _ => Err(TryRecvError::WouldBlock),
        }
    }

    /// Like [`Channel::send`], giving up after `timeout`: a timed-out send is
    /// undone (the balance is restored) and the value comes back.
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(v, Instant::now() + timeout)
    }

    /// Like [`Channel::send_timeout`] with an absolute deadline.
    pub fn send_deadline(&self, v: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        match self.transfer(1, Some(Msg::Value(v)), Wait::Until(deadline)) {
            Transfer::Done(_) => Ok(()),
            Transfer::Closed(m) => Err(SendTimeoutError::Closed(value(m))),
            Transfer::Timeout(m) | Transfer::WouldBlock(m) => {
                Err(SendTimeoutError::Timeout(value(m)))
            }
            Transfer::Deadlock(m) => Err(SendTimeoutError::Deadlock(value(m))),
        }
    }

    /// Like [`Channel::receive`], giving up after `timeout` (undone).
    pub fn receive_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.receive_deadline(Instant::now() + timeout)
    }

    /// Like [`Channel::receive_timeout`] with an absolute deadline.
    pub fn receive_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        match self.transfer(-1, None, Wait::Until(deadline)) {
            Transfer::Done(Some(Msg::Value(v))) => Ok(v),
            Transfer::Done(Some(Msg::Exception(e))) => Err(RecvTimeoutError::Exception(e)),
            Transfer::Done(None) | Transfer::Deadlock(_) => Err(RecvTimeoutError::Deadlock),
            Transfer::Closed(_) => Err(RecvTimeoutError::Closed),
            Transfer::Timeout(_) | Transfer::WouldBlock(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Waiting senders (> 0) or receivers (< 0).
    pub fn balance(&self) -> isize {
        self.inner.state.lock().balance
    }

    /// The current [`Preference`].
    pub fn preference(&self) -> Preference {
        self.inner.state.lock().preference
    }

    /// Sets which side keeps running on a same-worker rendezvous.
    pub fn set_preference(&self, p: Preference) {
        self.inner.state.lock().preference = p;
    }

    /// Whether a rendezvous puts both parties behind everything runnable.
    pub fn schedule_all(&self) -> bool {
        self.inner.state.lock().schedule_all
    }

    /// Sets `schedule_all` (it overrides the preference).
    pub fn set_schedule_all(&self, on: bool) {
        self.inner.state.lock().schedule_all = on;
    }

    /// Marks the channel closing. Wakes nobody: waiters already queued can
    /// still be served, and only an operation that would block fails with
    /// `Closed` (Stackless semantics).
    pub fn close(&self) {
        self.inner.state.lock().closing = true;
    }

    /// Clears `closing`.
    pub fn open(&self) {
        self.inner.state.lock().closing = false;
    }

    /// Whether [`Channel::close`] was called (and not undone by `open`).
    pub fn closing(&self) -> bool {
        self.inner.state.lock().closing
    }

    /// Closing and nobody waiting.
    pub fn closed(&self) -> bool {
        let s = self.inner.state.lock();
        s.closing && s.balance == 0
    }
}

/// Wakes a served waiter on this worker and runs the next tasklet: the
/// waiter itself when the preference favours it (it goes right after the
/// caller), whoever is next with `schedule_all` (it goes to the tail).
///
/// Out of line, so that an inlined operation does not carry a second copy
/// of the switch code (its park has one); the ring of the `scaling`
/// benchmark, which hands over on every hop, ran as fast either way.
#[inline(never)]
fn hand_over(claim: park::Claimed, schedule_all: bool) {
    if schedule_all {
        claim.wake();
    } else {
        claim.wake_at(Placement::Next);
    }
    stackless_scheduler::schedule();
}

fn value<T>(m: Option<Msg<T>>) -> T {
    match m {
        Some(Msg::Value(v)) => v,
        _ => unreachable!("a send always carries its value back"),
    }
}

/// The iterator of [`Channel::iter`].
pub struct Iter<'a, T> {
    chan: &'a Channel<T>,
}

impl<T: Send + 'static> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        {
            let s = self.chan.inner.state.lock();
            if s.closing && s.balance <= 0 {
                return None;
            }
        }
        self.chan.receive().ok()
    }
}

impl<'a, T: Send + 'static> IntoIterator for &'a Channel<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
