//! What a thread is to the scheduler: a worker (a thread-local pointer to
//! its `WorkerLocal`), or a *foreign* thread (its parking spot, the
//! scheduler it talks to, and its own main tasklet). Also the lazily built
//! process-wide default scheduler, which the first thread that uses it
//! enters implicitly.

use crate::park::ThreadParker;
use crate::scheduler::Shared;
use crate::sync::{Arc, Ordering};
use crate::task::{Task, TaskRef};
#[cfg(not(loom))]
use crate::worker::worker_thread;
use crate::worker::WorkerLocal;
use std::cell::{Cell, RefCell};

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
    // SAFETY: as above for `coro`, which a fault interrupted no writer of
    // either (it is set before the tasklet first runs and taken after its
    // body returned). Main tasklets have none: they run on their thread's
    // own stack.
    let coro = unsafe { (*t.coro.get()).as_ref()? };
    let ((guard_lo, guard_hi), usable) = coro.stack_extent();
    Some(crate::stack::overflow::Running {
        guard_lo,
        guard_hi,
        id: t.id,
        usable,
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

pub(crate) fn foreign_parker() -> Arc<ThreadParker> {
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
