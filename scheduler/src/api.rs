//! The free functions: they act on the scheduler of the calling tasklet, or
//! the one the thread entered; with none, on the process-wide default
//! scheduler, which the first thread to use it enters implicitly (it becomes
//! that scheduler's worker 0 and its code the main tasklet).
//!
//! On a *foreign* thread — one that is no worker, such as a second plain
//! thread using the default scheduler — there is no run queue: `spawn`
//! sends the tasklet to the scheduler's injector, blocking calls park the
//! thread, `schedule()` yields the OS thread, and `run()` returns at once
//! (each Stackless thread has its own, here empty, queue).

use crate::body::Body;
use crate::task::Task;
use crate::tasklet::{setup_on, SetupError, Tasklet};
use crate::worker;
use std::time::{Duration, Instant};

/// Creates a tasklet running `f` and sets it up: it is alive and scheduled
/// at the tail of the calling worker's queue (Stackless `tasklet(f)()`).
///
/// # Panics
/// When no stack can be mapped (the message names `vm.max_map_count`); use
/// [`crate::TaskletBuilder::spawn`] to get that as an error.
///
/// ```
/// // No set-up needed: the first use enters the default scheduler.
/// let t = stackless_scheduler::spawn(|| println!("scheduled once"));
/// stackless_scheduler::run();
/// assert!(!t.alive());
/// ```
pub fn spawn(f: impl FnOnce() + Send + 'static) -> Tasklet {
    if let Some(w) = worker::local_or_default() {
        // The common case, on a running worker: the record is born set up.
        if !w.stopping() && !w.shared.is_shutdown() && w.ensure_stack().is_ok() {
            let t = Task::new_fresh(Body::new(f), &w.shared);
            w.enqueue_fresh(&t);
            return Tasklet(t);
        }
    }
    let t = Tasklet::new(f);
    match setup_on(&t.0, None) {
        Ok(()) => t,
        Err(SetupError::Io(e)) => panic!("{e}"),
        Err(SetupError::Tasklet(e)) => panic!("stackless::spawn: {e}"),
    }
}

/// Moves the running tasklet to the tail of its worker's queue and runs the
/// next one; returns at once if it is the only runnable tasklet.
#[inline(always)]
pub fn schedule() {
    // Not while unwinding (a destructor calling it): then it only lets a
    // shutdown in progress proceed. Checked before the worker is looked
    // up, so that nothing is live across the call this can make.
    if std::thread::panicking() {
        schedule_unwinding();
        return;
    }
    match worker::local_or_default() {
        Some(w) => w.schedule(),
        None => crate::sync::yield_thread(),
    }
}

/// `schedule()` on a thread that is unwinding: no switch.
#[cold]
#[inline(never)]
fn schedule_unwinding() {
    if let Some(w) = worker::local() {
        if w.shared.is_shutdown() {
            w.shutdown_point();
        }
    }
}

/// Takes the running tasklet out of the queue (it becomes paused) and runs
/// the next one. It runs again when something inserts or runs it. The main
/// tasklet is revived when nothing else is left to run.
pub fn schedule_remove() {
    if let Some(w) = worker::local_or_default() {
        w.schedule_remove()
    }
}

/// Runs the other tasklets until nothing is runnable on any worker and
/// nothing is sleeping (Stackless's `stackless.run()`, the "watchdog"). The
/// caller is paused meanwhile. Tasklets blocked on channels, nice or paused
/// tasklets do not keep it waiting. May be called from any tasklet; calls
/// nest.
pub fn run() {
    if let Some(w) = worker::local_or_default() {
        w.run_watchdog()
    }
}

/// The running tasklet (on a foreign thread: that thread's own main tasklet).
pub fn current() -> Tasklet {
    match worker::local_or_default() {
        Some(w) => Tasklet(w.current_task()),
        None => Tasklet(worker::foreign_main()),
    }
}

/// The main tasklet of the current scheduler (on a foreign thread: that
/// thread's own main tasklet).
pub fn main_tasklet() -> Tasklet {
    match worker::local_or_default() {
        Some(w) => match w.shared.main_task() {
            Some(m) => Tasklet(m),
            None => Tasklet(w.current_task()),
        },
        None => Tasklet(worker::foreign_main()),
    }
}

/// How many tasklets are runnable on this worker, the running one included
/// (Stackless `getruncount()`; a caller inside `run()` is not counted).
pub fn runcount() -> usize {
    match worker::local_or_default() {
        Some(w) => w.runcount(),
        None => 1,
    }
}

/// Parks the running tasklet on the nice queue until the next
/// [`run_nice`]. Never wakes a worker. A nice tasklet counts as blocked.
///
/// The BeNice frame loop (EVE Online's pattern):
///
/// ```
/// use stackless_scheduler::{be_nice, run, run_nice, spawn, Scheduler};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let frames = Arc::new(AtomicUsize::new(0));
/// Scheduler::builder().workers(1).build().unwrap().enter(|| {
///     let f = frames.clone();
///     spawn(move || loop {
///         f.fetch_add(1, Ordering::Relaxed); // one step of work per frame
///         be_nice();
///     });
///     for _ in 0..3 {
///         run_nice();
///         run();
///     }
/// });
/// assert_eq!(frames.load(Ordering::Relaxed), 3);
/// ```
///
/// A tasklet that calls [`schedule`] instead stays runnable, so `run()`
/// keeps going: use `be_nice` in frame-driven code.
#[inline(always)]
pub fn be_nice() {
    // Not while unwinding (a destructor calling it). Checked before the
    // worker is looked up, so that nothing is live across the call this
    // can make.
    if std::thread::panicking() {
        return;
    }
    match worker::local_or_default() {
        Some(w) => w.be_nice(),
        None => crate::sync::yield_thread(),
    }
}

/// Wakes every tasklet that was nice before this call, in the order they
/// became nice, at the tail of their home worker's queue; returns how many.
/// A tasklet that calls [`be_nice`] again waits for the next round.
pub fn run_nice() -> usize {
    match worker::local_or_default() {
        Some(w) => w.run_nice(),
        None => 0,
    }
}

/// Blocks the running tasklet (or thread) for `d`. Other tasklets run
/// meanwhile; `run()` waits for sleepers. `sleep(Duration::ZERO)` is
/// [`schedule`].
pub fn sleep(d: Duration) {
    if d.is_zero() {
        schedule();
        return;
    }
    let deadline = Instant::now() + d;
    match worker::local_or_default() {
        Some(w) => {
            if std::thread::panicking() {
                return;
            }
            if w.shared.is_shutdown() {
                w.shutdown_point();
                return;
            }
            let _ = crate::worker::prepare_park(false);
            while w.park(Some(deadline)) != crate::park::Wake::TimedOut {
                if Instant::now() >= deadline {
                    break;
                }
                let _ = crate::worker::prepare_park(false);
            }
        }
        None => std::thread::sleep(d),
    }
}
