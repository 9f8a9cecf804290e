//! The public `Tasklet` handle and its Stackless operations.

use crate::error::TaskletError;
use crate::park::Wake;
use crate::scheduler::{Scheduler, Shared};
use crate::sync::{Arc, Ordering};
use crate::task::{life, Failure, Outcome, Task, TaskRef, TaskletExit, HOME_NONE, STEALABLE};
use crate::worker::{self, InboxEntry, WorkerLocal};
use std::hash::{Hash, Hasher};

/// A tasklet: a function running on a stack of its own, scheduled
/// cooperatively with Stackless Python's ordering.
///
/// `Tasklet` is a cheap handle (`Clone + Send + Sync`); equality and hashing
/// are by identity. A tasklet belongs to one worker once it has started and
/// never moves to another thread, so its stack may hold `!Send` values.
///
/// ```
/// use stackless_scheduler::{Scheduler, Tasklet};
/// use std::sync::{Arc, Mutex};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// Scheduler::builder().workers(1).build().unwrap().enter(|| {
///     let l = log.clone();
///     let t = Tasklet::new(move || l.lock().unwrap().push("ran"));
///     assert!(!t.alive());            // bound, not set up
///     t.setup().unwrap();             // alive and scheduled at the tail
///     assert!(t.alive() && t.scheduled());
///     t.run().unwrap();               // switch to it now
///     assert!(!t.alive());
///     assert_eq!(t.run().unwrap_err().to_string(),
///                "You cannot run an unbound(dead) tasklet");
/// });
/// assert_eq!(*log.lock().unwrap(), ["ran"]);
/// ```
#[derive(Clone)]
pub struct Tasklet(pub(crate) TaskRef);

impl PartialEq for Tasklet {
    fn eq(&self, other: &Self) -> bool {
        TaskRef::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Tasklet {}
impl Hash for Tasklet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}
impl std::fmt::Debug for Tasklet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasklet")
            .field("id", &self.0.id)
            .field("main", &self.0.is_main)
            .field("alive", &self.alive())
            .field("scheduled", &self.scheduled())
            .field("blocked", &self.blocked())
            .field("worker", &self.worker())
            .finish()
    }
}

/// Where a tasklet is, seen from the calling thread.
enum Loc<'a> {
    /// Homed on the calling worker (pinned there if it was stealable).
    Local(&'a WorkerLocal),
    /// Homed on another worker of its scheduler (or not yet placed).
    Remote(&'a Shared),
    /// Not set up.
    Nowhere,
}

fn locate(t: &Task) -> Loc<'_> {
    let Some(shared) = t.shared() else {
        return Loc::Nowhere;
    };
    if let Some(w) = worker::local() {
        if t.is_on(&w.shared) {
            if t.pin(w.index) {
                return Loc::Local(w);
            }
            // Not yet placed (injected from outside): take it here.
            if t.home() == HOME_NONE && t.steal(w.index) {
                return Loc::Local(w);
            }
        }
    }
    Loc::Remote(shared)
}

impl Tasklet {
    /// A bound tasklet: not alive, not scheduled, until [`Tasklet::setup`].
    pub fn new(f: impl FnOnce() + Send + 'static) -> Tasklet {
        Tasklet(Task::new(Some(crate::body::Body::new(f)), false))
    }

    /// A builder for tasklets whose creation errors are returned, not panicked.
    pub fn builder() -> TaskletBuilder {
        TaskletBuilder::new()
    }

    /// Makes a bound tasklet alive and scheduled at the tail of the calling
    /// worker's queue (Stackless `setup()`).
    ///
    /// Errors: [`TaskletError::Alive`] if it is alive,
    /// [`TaskletError::Unbound`] if it has finished or was killed,
    /// [`TaskletError::NoStack`] if no stack could be mapped.
    pub fn setup(&self) -> Result<(), TaskletError> {
        setup_on(&self.0, None).map_err(|e| match e {
            SetupError::Tasklet(e) => e,
            SetupError::Io(e) => TaskletError::NoStack(e.to_string()),
        })
    }

    /// Appends a paused tasklet at the tail of its worker's queue; no-op if
    /// it is already scheduled or is the caller.
    ///
    /// Errors: [`TaskletError::Dead`] (dead or never set up),
    /// [`TaskletError::Blocked`].
    pub fn insert(&self) -> Result<(), TaskletError> {
        let t = &self.0;
        if matches!(t.life(), life::BOUND | life::DEAD) {
            return Err(TaskletError::Dead);
        }
        if t.blocked() {
            return Err(TaskletError::Blocked);
        }
        match locate(t) {
            Loc::Local(w) => {
                w.sync_target(t);
                if w.is_current(t) {
                    return Ok(());
                }
                if t.blocked() {
                    return Err(TaskletError::Blocked);
                }
                w.ring_push_back(t.clone());
                Ok(())
            }
            Loc::Remote(s) => {
                insert_remote(s, t);
                Ok(())
            }
            Loc::Nowhere => Err(TaskletError::Dead),
        }
    }

    /// Takes a runnable tasklet out of its worker's queue (it becomes
    /// paused); no-op if it is not scheduled or never set up.
    ///
    /// Errors: [`TaskletError::Current`] for the caller itself,
    /// [`TaskletError::Blocked`], [`TaskletError::OtherWorker`] for a
    /// scheduled tasklet of another worker.
    pub fn remove(&self) -> Result<(), TaskletError> {
        let t = &self.0;
        if let Some(w) = worker::local() {
            if w.is_current(t) {
                return Err(TaskletError::Current);
            }
        }
        if matches!(t.life(), life::BOUND | life::DEAD) {
            return Ok(());
        }
        if t.blocked() {
            return Err(TaskletError::Blocked);
        }
        match locate(t) {
            Loc::Local(w) => {
                w.sync_target(t);
                if t.blocked() {
                    return Err(TaskletError::Blocked);
                }
                w.ring_remove(t);
                Ok(())
            }
            Loc::Remote(_) if t.scheduled() => Err(TaskletError::OtherWorker),
            _ => Ok(()),
        }
    }

    /// Switches to the tasklet now; the caller stays runnable and runs again
    /// after it (Stackless `run()`: a scheduled target rotates the queue, a
    /// paused one is appended and run). A tasklet of another worker is
    /// inserted there instead and the caller goes on.
    ///
    /// Errors: [`TaskletError::Dead`], [`TaskletError::Blocked`].
    pub fn run(&self) -> Result<(), TaskletError> {
        self.run_or_switch(false)
    }

    /// Like [`Tasklet::run`], but the caller is paused (Stackless `switch()`).
    ///
    /// Errors: [`TaskletError::Dead`], [`TaskletError::Blocked`],
    /// [`TaskletError::OtherWorker`].
    pub fn switch(&self) -> Result<(), TaskletError> {
        self.run_or_switch(true)
    }

    fn run_or_switch(&self, switch: bool) -> Result<(), TaskletError> {
        let t = &self.0;
        if matches!(t.life(), life::BOUND | life::DEAD) {
            return Err(TaskletError::Dead);
        }
        if t.blocked() {
            return Err(TaskletError::Blocked);
        }
        if let Some(w) = worker::local() {
            if w.is_current(t) {
                return Ok(());
            }
        }
        match locate(t) {
            Loc::Local(w) => {
                w.sync_target(t);
                w.run_local(t, switch)
            }
            Loc::Remote(_) if switch => Err(TaskletError::OtherWorker),
            Loc::Remote(s) => {
                insert_remote(s, t);
                Ok(())
            }
            Loc::Nowhere => Err(TaskletError::Dead),
        }
    }

    /// Kills the tasklet: it unwinds (destructors run) with Stackless's
    /// `TaskletExit`, is removed from any channel or the nice queue, and
    /// ends silently. A never-started tasklet dies without running its
    /// body; a dead or never-set-up one is left alone. On the same worker
    /// the caller switches to the target so it dies at once; a target on
    /// another worker is killed there and the caller goes on.
    pub fn kill(&self) -> Result<(), TaskletError> {
        let t = &self.0;
        if matches!(t.life(), life::BOUND | life::DEAD) {
            return Ok(());
        }
        if let Some(w) = worker::local() {
            if w.is_current(t) {
                if std::thread::panicking() {
                    return Ok(());
                }
                std::panic::resume_unwind(Box::new(TaskletExit));
            }
        }
        match locate(t) {
            Loc::Local(w) => {
                w.sync_target(t);
                w.kill_local(t);
                Ok(())
            }
            Loc::Remote(s) => {
                t.kill.store(true, Ordering::Release);
                if let Some(seq) = t.claim_current(crate::task::Reason::Killed) {
                    t.mark_woken();
                    s.push_inbox(t.home(), InboxEntry::wake(t.clone(), seq));
                } else if t.nice_parked() {
                    // Its worker claims nice parks itself: send it the kill.
                    s.push_inbox(t.home(), InboxEntry::insert(t.clone()));
                } else if !t.scheduled() {
                    insert_remote(s, t);
                }
                Ok(())
            }
            Loc::Nowhere => Ok(()),
        }
    }

    /// Blocks the caller (a tasklet, or a plain thread) until the tasklet
    /// has ended. `Ok` when it returned or was killed.
    ///
    /// Errors: [`TaskletError::Panicked`] with its payload,
    /// [`TaskletError::Current`] for the caller itself,
    /// [`TaskletError::Deadlock`] when nothing could ever end it,
    /// [`TaskletError::NoStack`] when it could not start.
    pub fn join(&self) -> Result<(), TaskletError> {
        let t = &self.0;
        if let Some(w) = worker::local() {
            if w.is_current(t) {
                return Err(TaskletError::Current);
            }
        }
        loop {
            if t.done() == 1 {
                return Ok(());
            }
            t.announce_joiner();
            let mut j = t.join.lock();
            if t.done() == 1 {
                return Ok(());
            }
            match j.failure.as_deref_mut() {
                Some(Failure::Panicked(payload, msg)) => {
                    return Err(TaskletError::Panicked(
                        payload.take().unwrap_or_else(|| Box::new(msg.clone())),
                    ));
                }
                Some(Failure::NoStack(m)) => return Err(TaskletError::NoStack(m.clone())),
                // Still running: `done` was checked under the lock.
                None => {}
            }
            let u = crate::park::prepare_park();
            j.waiters.get_or_insert_with(Box::default).push(u.clone());
            drop(j);
            match crate::park::park() {
                Wake::Deadlock => {
                    if let Some(ws) = t.join.lock().waiters.as_mut() {
                        ws.retain(|w| !w.same_target(&u));
                    }
                    return Err(TaskletError::Deadlock);
                }
                _ => continue,
            }
        }
    }

    /// Set up and not finished (fresh tasklets are alive).
    pub fn alive(&self) -> bool {
        self.0.alive()
    }

    /// Runnable, or blocked on a channel or the nice queue.
    pub fn scheduled(&self) -> bool {
        self.0.alive() && self.0.scheduled()
    }

    /// Waiting on a channel, the nice queue, a join or a sleep.
    pub fn blocked(&self) -> bool {
        self.0.alive() && self.0.blocked()
    }

    /// Alive but not scheduled (removed, switched away from, inside its own
    /// `run()`, or set up and then removed).
    pub fn paused(&self) -> bool {
        self.0.alive() && !self.0.scheduled()
    }

    /// Whether this is the main tasklet (of its scheduler, or of a thread).
    pub fn is_main(&self) -> bool {
        self.0.is_main
    }

    /// Whether this is the tasklet running on its own worker right now.
    pub fn is_current(&self) -> bool {
        let t = &self.0;
        if let Some(w) = worker::local() {
            if t.is_on(&w.shared) && t.home() == w.index {
                return w.is_current(t);
            }
        }
        match t.shared() {
            Some(s) if t.home() < s.nworkers => {
                std::ptr::eq(s.workers[t.home()].running.load(Ordering::Relaxed), &**t)
            }
            _ => worker::foreign_current_is(t),
        }
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The worker it belongs to (where it runs once started), if set up.
    pub fn worker(&self) -> Option<usize> {
        let h = self.0.home.load(Ordering::Acquire) & !STEALABLE;
        (h != HOME_NONE).then_some(h)
    }
}

/// Inserts a paused tasklet of another worker there (cross-thread insert).
fn insert_remote(s: &Shared, t: &TaskRef) {
    if t.scheduled() {
        return;
    }
    let home = t.home();
    if home >= s.nworkers {
        return;
    }
    if t.queued
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        s.push_inbox(home, InboxEntry::insert(t.clone()));
    }
}

pub(crate) enum SetupError {
    Tasklet(TaskletError),
    Io(std::io::Error),
}

/// Sets `t` up on the scheduler of the calling thread (or `on`).
pub(crate) fn setup_on(t: &TaskRef, on: Option<&Scheduler>) -> Result<(), SetupError> {
    if t.is_main {
        return Err(SetupError::Tasklet(TaskletError::Alive));
    }
    match t.life() {
        life::FRESH | life::ALIVE => return Err(SetupError::Tasklet(TaskletError::Alive)),
        life::DEAD => return Err(SetupError::Tasklet(TaskletError::Unbound)),
        _ => {}
    }
    if !t.has_body() {
        return Err(SetupError::Tasklet(TaskletError::Unbound));
    }
    let local = match on {
        Some(s) => worker::local().filter(|w| Arc::ptr_eq(&w.shared, &s.shared)),
        None => worker::local_or_default(),
    };
    if let Some(w) = local {
        w.ensure_stack().map_err(SetupError::Io)?;
    }
    if t.life
        .compare_exchange(
            life::BOUND,
            life::FRESH,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return Err(SetupError::Tasklet(match t.life() {
            life::DEAD => TaskletError::Unbound,
            _ => TaskletError::Alive,
        }));
    }
    t.kill.store(false, Ordering::Release);
    match local {
        Some(w) => {
            if w.stopping() || w.shared.is_shutdown() {
                die_at_birth(t, &w.shared);
            } else {
                w.setup_local(t);
            }
            Ok(())
        }
        None => {
            let shared = match on {
                Some(s) => s.shared.clone(),
                None => match worker::current_shared() {
                    Some(s) => s,
                    None => {
                        t.life.store(life::BOUND, Ordering::Release);
                        return Err(SetupError::Tasklet(TaskletError::Unbound));
                    }
                },
            };
            inject(&shared, t).map_err(|e| {
                t.life.store(life::BOUND, Ordering::Release);
                SetupError::Io(e)
            })
        }
    }
}

/// Sets a bound tasklet up on worker `index` of `shared`, not stealable.
fn setup_pinned(t: &TaskRef, shared: &Arc<Shared>, index: usize) -> std::io::Result<()> {
    if index >= shared.nworkers {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "stackless: no worker {index} (the scheduler has {})",
                shared.nworkers
            ),
        ));
    }
    let s = shared.stacks.take()?;
    shared.stacks.give(vec![s]);
    if t.life
        .compare_exchange(
            life::BOUND,
            life::FRESH,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return Err(std::io::Error::other(TaskletError::Alive.to_string()));
    }
    t.bind_shared(shared);
    if shared.is_shutdown() && shared.entered.load(Ordering::Acquire) {
        die_at_birth(t, shared);
        return Ok(());
    }
    t.home.store(index, Ordering::Release);
    match worker::local() {
        Some(w) if Arc::ptr_eq(&w.shared, shared) && w.index == index => {
            w.ring_push_back(t.clone());
        }
        Some(_) => shared.push_inbox(index, InboxEntry::insert(t.clone())),
        None => {
            worker::register_participant(shared);
            shared.push_inbox(index, InboxEntry::insert(t.clone()));
        }
    }
    Ok(())
}

/// A tasklet set up during shutdown dies without running.
fn die_at_birth(t: &TaskRef, shared: &Arc<Shared>) {
    t.bind_shared(shared);
    drop(t.take_body());
    t.life.store(life::DEAD, Ordering::Release);
    for j in t.set_outcome(Outcome::Killed) {
        j.unpark();
    }
}

/// Sets up a tasklet from outside the scheduler's workers: it goes to the
/// injector, where an idle worker takes it.
fn inject(shared: &Arc<Shared>, t: &TaskRef) -> std::io::Result<()> {
    let s = shared.stacks.take()?;
    shared.stacks.give(vec![s]);
    t.bind_shared(shared);
    if shared.is_shutdown() && shared.entered.load(Ordering::Acquire) {
        die_at_birth(t, shared);
        return Ok(());
    }
    worker::register_participant(shared);
    t.home.store(HOME_NONE | STEALABLE, Ordering::Release);
    t.queued.store(true, Ordering::Release);
    {
        let mut q = shared.injector.lock();
        q.push_back(t.clone());
        shared.injector_len.store(q.len(), Ordering::SeqCst);
    }
    shared.wakep();
    Ok(())
}

/// Creates tasklets with options, returning creation errors (such as
/// running out of stack mappings) instead of panicking.
///
/// ```
/// let sched = stackless_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// sched.enter(|| {
///     let t = stackless_scheduler::Tasklet::builder().spawn(|| println!("hi")).unwrap();
///     t.join().unwrap();
/// });
/// ```
#[derive(Debug, Default, Clone)]
pub struct TaskletBuilder {
    worker: Option<usize>,
}

impl TaskletBuilder {
    /// The default options.
    pub fn new() -> TaskletBuilder {
        TaskletBuilder::default()
    }

    /// Places the tasklet on worker `index` (at the tail of its queue, from
    /// any thread) instead of the caller's, and never lets another worker
    /// steal it. Spawning fails with `InvalidInput` if there is no such
    /// worker.
    pub fn worker(mut self, index: usize) -> TaskletBuilder {
        self.worker = Some(index);
        self
    }

    /// Creates and sets up a tasklet on the current scheduler (like
    /// [`crate::spawn`]); the error names `vm.max_map_count` when stacks
    /// ran out.
    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> std::io::Result<Tasklet> {
        let t = Tasklet::new(f);
        if let Some(i) = self.worker {
            let shared = worker::local_or_default()
                .map(|w| w.shared.clone())
                .or_else(worker::current_shared)
                .ok_or_else(|| std::io::Error::other("stackless: no scheduler"))?;
            return setup_pinned(&t.0, &shared, i).map(|()| t);
        }
        match setup_on(&t.0, None) {
            Ok(()) => Ok(t),
            Err(SetupError::Io(e)) => Err(e),
            Err(SetupError::Tasklet(e)) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// Creates and sets up a tasklet on `sched` from any thread.
    pub fn spawn_on(
        self,
        sched: &Scheduler,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Tasklet> {
        let t = Tasklet::new(f);
        if let Some(i) = self.worker {
            return setup_pinned(&t.0, &sched.shared, i).map(|()| t);
        }
        match setup_on(&t.0, Some(sched)) {
            Ok(()) => Ok(t),
            Err(SetupError::Io(e)) => Err(e),
            Err(SetupError::Tasklet(e)) => Err(std::io::Error::other(e.to_string())),
        }
    }
}
