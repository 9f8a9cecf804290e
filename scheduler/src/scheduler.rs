//! The scheduler handle, its builder, `enter`, shutdown and the lazily
//! built process-wide default.

use crate::idle::Idle;
use crate::stack::{self, SharedPool};
use crate::sync::Padded;
use crate::sync::{
    Arc, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering,
};
use crate::task::{Task, TaskRef};
use crate::worker::{self, WorkerLocal};
use std::collections::VecDeque;
use std::io;

/// Default usable stack size of a tasklet (a guard page comes on top).
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;

/// Signal bits a worker polls between tasklets (`WorkerShared::signal`).
pub(crate) mod signal {
    /// Its inbox has tasklets woken by other threads.
    pub const INBOX: u32 = 1;
    /// A `run_nice()` round asks it to wake its nice tasklets.
    pub const NICE: u32 = 2;
    /// Quiescence was reached: revive its innermost watchdog (`run()` caller).
    pub const REVIVE: u32 = 4;
    /// The scheduler is shutting down.
    pub const SHUTDOWN: u32 = 8;
    /// Quiescence found the main tasklet parked nice: give it the deadlock answer.
    pub const MAIN_DEADLOCK: u32 = 16;
}

/// The parts of a worker other threads touch.
///
/// The fields the owner stores to on every resume (`running`) or every
/// `be_nice` (`nice_len`) sit on lines of their own, away from the ones
/// thieves and wakers read and write, so neither side's traffic makes the
/// other miss.
pub(crate) struct WorkerShared {
    /// Tasklets homed here that other threads made runnable.
    pub(crate) inbox: Mutex<Vec<crate::worker::InboxEntry>>,
    /// The tasklet running on this worker (for `is_current` from elsewhere).
    pub(crate) running: Padded<AtomicPtr<Task>>,
    /// `signal::*` bits; the owner polls this one word between tasklets.
    pub(crate) signal: AtomicU32,
    /// Fresh tasklets a thief may take, oldest first (stale entries skipped).
    pub(crate) tickets: crate::tickets::Tickets,
    /// Set (under the idle lock) from just before the final re-check until
    /// the worker is awake again; read by wakers after publishing work.
    pub(crate) sleeping: AtomicBool,
    pub(crate) parker: WorkerParker,
    /// How many `run()` callers (watchdogs) this worker has.
    pub(crate) watchdogs: AtomicUsize,
    /// How many tasklets of this worker wait on the nice queue.
    pub(crate) nice_len: Padded<AtomicUsize>,
    /// The newest nice round this worker was asked to run.
    pub(crate) nice_target: AtomicU64,
}

impl WorkerShared {
    fn new() -> WorkerShared {
        WorkerShared {
            inbox: Mutex::new(Vec::new()),
            running: Padded(AtomicPtr::new(std::ptr::null_mut())),
            signal: AtomicU32::new(0),
            tickets: crate::tickets::Tickets::new(),
            sleeping: AtomicBool::new(false),
            parker: WorkerParker::new(),
            watchdogs: AtomicUsize::new(0),
            nice_len: Padded(AtomicUsize::new(0)),
            nice_target: AtomicU64::new(0),
        }
    }
}

/// A worker thread's sleeping place: a token flag under a mutex.
pub(crate) struct WorkerParker {
    notified: Mutex<bool>,
    cv: Condvar,
}

impl WorkerParker {
    fn new() -> WorkerParker {
        WorkerParker {
            notified: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    /// Sleeps until unparked (a token left by an earlier unpark counts) or
    /// until `deadline`.
    pub(crate) fn park(&self, deadline: Option<std::time::Instant>) {
        let mut g = self.notified.lock();
        while !*g {
            match deadline {
                None => g = self.cv.wait(g),
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        break;
                    }
                    g = self.cv.wait_timeout(g, d - now);
                    #[cfg(loom)]
                    break;
                }
            }
        }
        *g = false;
    }

    pub(crate) fn unpark(&self) {
        let mut g = self.notified.lock();
        *g = true;
        self.cv.notify_one();
    }
}

/// Everything the workers of one scheduler share.
pub(crate) struct Shared {
    pub(crate) nworkers: usize,
    pub(crate) workers: Box<[WorkerShared]>,
    /// Fresh tasklets set up from outside any worker.
    pub(crate) injector: Padded<Mutex<VecDeque<TaskRef>>>,
    pub(crate) injector_len: AtomicUsize,
    /// Written by every worker that goes idle or searches: on its own lines,
    /// away from the read-mostly fields every tasklet switch reads.
    pub(crate) idle: Padded<Idle>,
    pub(crate) stacks: SharedPool,
    pub(crate) nice_epoch: AtomicU64,
    /// The main tasklet of the current `enter` (worker 0's host code).
    pub(crate) main: Mutex<Option<TaskRef>>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) entered: AtomicBool,
}

impl Shared {
    /// Drops whatever the queues still hold once every worker has stopped:
    /// stale wakes of tasklets that died meanwhile. (A task holds a strong
    /// count of its scheduler, so leaving them would leak both.)
    fn clear_queues(&self) {
        for w in self.workers.iter() {
            drop(std::mem::take(&mut *w.inbox.lock()));
            while w.tickets.pop().is_some() {}
            w.signal.store(0, Ordering::SeqCst);
        }
        drop(std::mem::take(&mut *self.injector.lock()));
        self.injector_len.store(0, Ordering::SeqCst);
        let mut g = self.idle.state.lock();
        g.candidates.iter_mut().for_each(|c| *c = None);
    }

    #[inline]
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub(crate) fn main_task(&self) -> Option<TaskRef> {
        self.main.lock().clone()
    }
}

/// A scheduler: a set of workers running tasklets.
///
/// Cheap to clone (a shared handle); `Send + Sync`. The thread that calls
/// [`Scheduler::enter`] becomes worker 0 and runs the main tasklet; the other
/// workers are threads started by `enter` and stopped before it returns.
///
/// ```
/// use stackless_scheduler::{Scheduler, spawn, schedule, run};
/// use std::sync::{Arc, Mutex};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let sched = Scheduler::builder().workers(1).build().unwrap();
/// sched.enter(|| {
///     for name in ["A", "B"] {
///         let log = log.clone();
///         spawn(move || {
///             for i in 0..2 {
///                 log.lock().unwrap().push(format!("{name} {i}"));
///                 schedule();
///             }
///         });
///     }
///     run();
/// });
/// assert_eq!(*log.lock().unwrap(), ["A 0", "B 0", "A 1", "B 1"]);
/// ```
#[derive(Clone)]
pub struct Scheduler {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("workers", &self.shared.nworkers)
            .finish()
    }
}

/// Configures a [`Scheduler`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: Option<usize>,
}

/// The worker count used when none is given: `STACKLESS_WORKERS`, else the
/// number of CPUs.
pub fn default_workers() -> usize {
    if let Some(n) = std::env::var("STACKLESS_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Builder {
    /// Number of workers (threads), at least 1. Default: `STACKLESS_WORKERS`
    /// if set, else the number of CPUs.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n.max(1));
        self
    }

    /// Usable stack size of each tasklet in bytes (rounded up to pages, at
    /// least 16 KiB). Default 64 KiB; a guard page comes on top.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Builds the scheduler. No thread starts until [`Scheduler::enter`].
    pub fn build(self) -> io::Result<Scheduler> {
        let n = self.workers.unwrap_or_else(default_workers);
        let usable = stack::round_stack_size(self.stack_size.unwrap_or(DEFAULT_STACK_SIZE));
        #[cfg(not(loom))]
        stack::overflow::install();
        let shared = Shared {
            nworkers: n,
            workers: (0..n).map(|_| WorkerShared::new()).collect(),
            injector: Padded(Mutex::new(VecDeque::new())),
            injector_len: AtomicUsize::new(0),
            idle: Padded(Idle::new(n)),
            stacks: SharedPool::new(usable),
            nice_epoch: AtomicU64::new(0),
            main: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            entered: AtomicBool::new(false),
        };
        Ok(Scheduler {
            shared: Arc::new(shared),
        })
    }
}

impl Scheduler {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.nworkers
    }

    /// Usable stack bytes of each tasklet.
    pub fn stack_size(&self) -> usize {
        self.shared.stacks.usable()
    }

    /// Runs `main` as the main tasklet, with the calling thread as worker 0
    /// and the other workers on threads of their own.
    ///
    /// When `main` returns (or panics), every tasklet still alive — runnable,
    /// blocked, nice, sleeping or paused — is killed (unwound, destructors
    /// run), the workers stop, and only then does `enter` return. A tasklet
    /// that catches its kill (`catch_unwind`) is killed again whenever it
    /// would block or switch (`schedule`, `be_nice`, a channel operation
    /// that waits, a sleep); one that never does keeps `enter` waiting, as
    /// any code that never returns would.
    ///
    /// # Panics
    /// If this scheduler is already entered (on this or another thread), and
    /// with `main`'s own panic after the shutdown.
    pub fn enter<R>(&self, main: impl FnOnce() -> R) -> R {
        let shared = &self.shared;
        if shared.entered.swap(true, Ordering::AcqRel) {
            panic!("stackless: Scheduler::enter called while this scheduler is already entered");
        }
        shared.shutdown.store(false, Ordering::Release);
        shared.idle.reset(shared.nworkers);
        let main_task = Task::new(None, true);
        main_task.bind_shared(shared);
        main_task.home.store(0, Ordering::Release);
        main_task.queued.store(true, Ordering::Release);
        *shared.main.lock() = Some(main_task.clone());

        let local = WorkerLocal::new(0, shared.clone(), Some(main_task));
        let prev = worker::install(&local);
        let mut threads = Vec::new();
        for i in 1..shared.nworkers {
            let s = shared.clone();
            match crate::sync::spawn_thread(format!("stackless-worker-{i}"), move || {
                worker::worker_thread(s, i)
            }) {
                Ok(h) => threads.push(h),
                Err(e) => panic!("stackless: cannot start worker thread {i}: {e}"),
            }
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(main));
        local.shutdown_sweep();
        for h in threads {
            let _ = h.join();
        }
        worker::uninstall(prev);
        local.release();
        drop(local);
        *shared.main.lock() = None;
        shared.clear_queues();
        shared.entered.store(false, Ordering::Release);
        match result {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// The scheduler of the calling tasklet or thread, if any (without
    /// building the default).
    pub fn current() -> Option<Scheduler> {
        worker::current_shared().map(|shared| Scheduler { shared })
    }

    /// Creates and sets up a tasklet on this scheduler from any thread. From
    /// a worker of this scheduler it goes to that worker's queue; from
    /// anywhere else to the scheduler's injector, where an idle worker takes it.
    ///
    /// # Panics
    /// With the message of [`crate::TaskletBuilder::spawn_on`]'s error when no
    /// stack can be mapped.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) -> crate::Tasklet {
        crate::TaskletBuilder::new()
            .spawn_on(self, f)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts an OS thread that talks to this scheduler's tasklets (over
    /// channels, say). It is registered as a *participant* before it starts,
    /// so while it runs, tasklets waiting for it are never reported as
    /// deadlocked (a plain `std::thread` is registered only once it first
    /// touches the scheduler). See `idle/README.md`.
    pub fn spawn_thread<F, T>(&self, f: F) -> crate::sync::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        shared.participant_started();
        crate::sync::spawn_any_thread(move || {
            worker::adopt_participant(shared);
            f()
        })
    }
}

/// The process-wide default scheduler, built on first use.
#[cfg(not(loom))]
pub(crate) fn default_scheduler() -> &'static Scheduler {
    use std::sync::OnceLock;
    static DEFAULT: OnceLock<Scheduler> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        Scheduler::builder()
            .build()
            .expect("stackless: cannot build the default scheduler")
    })
}
