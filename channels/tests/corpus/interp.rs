//! Interpreter of the op language on a one-worker `stackless` scheduler.
//!
//! Each program runs on its own OS thread under a timeout. Panics are
//! recorded by a process-wide panic hook: a panic with a string payload
//! (`panic!`, `todo!`, `unwrap`, ...) on a thread that is running corpus ops
//! is appended to that program's log as a `!! panic ...` line and to its
//! panic list, which fails the program. Panics with any other payload are
//! assumed to be the library's own kill unwinding and are ignored.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use stackless::{Channel, Preference, RecvError, Scheduler, SendError, Tasklet, TaskletError};

use crate::parse::{Op, Program};

/// What one program did.
#[derive(Debug)]
pub struct Outcome {
    /// Every line logged, including those after `M END`.
    pub lines: Vec<String>,
    /// Panics seen while the program ran (hook messages and the runner's).
    pub panics: Vec<String>,
    pub timed_out: bool,
}

/// Runs `programs` over `threads` runner threads; outcomes in input order.
pub fn run_all(programs: &[Arc<Program>], threads: usize, timeout: Duration) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> =
        Mutex::new((0..programs.len()).map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..threads.clamp(1, programs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = programs.get(i) else { break };
                let outcome = run_program(p, timeout);
                lock(&results)[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.expect("every program ran"))
        .collect()
}

/// Runs one program on a fresh thread, waiting at most `timeout`. A program
/// that times out leaves its thread behind (leaked).
pub fn run_program(p: &Arc<Program>, timeout: Duration) -> Outcome {
    install_panic_hook();
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let (p2, shared2) = (Arc::clone(p), Arc::clone(&shared));
    let spawned = thread::Builder::new()
        .name(format!("corpus-{}", p.number))
        .spawn(move || {
            set_current(&shared2, "runner");
            let r = panic::catch_unwind(AssertUnwindSafe(|| interpret(p2, Arc::clone(&shared2))));
            CURRENT.with(|c| c.borrow_mut().take());
            let _ = tx.send(r.err().map(|e| payload_message(&*e)));
        });
    let mut timed_out = false;
    match spawned {
        Err(e) => shared.panic(format!("could not spawn the program thread: {e}")),
        Ok(_) => match rx.recv_timeout(timeout) {
            Ok(None) => {}
            Ok(Some(msg)) => shared.panic(format!("program thread unwound: {msg}")),
            Err(mpsc::RecvTimeoutError::Timeout) => timed_out = true,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                shared.panic("program thread ended without a result".into())
            }
        },
    }
    let lines = lock(&shared.log).clone();
    let panics = lock(&shared.panics).clone();
    Outcome {
        lines,
        panics,
        timed_out,
    }
}

/// Log and panic record of one program.
#[derive(Default)]
struct Shared {
    log: Mutex<Vec<String>>,
    panics: Mutex<Vec<String>>,
}

impl Shared {
    fn say(&self, line: String) {
        lock(&self.log).push(line);
    }

    fn panic(&self, msg: String) {
        lock(&self.log).push(format!("!! {msg}"));
        lock(&self.panics).push(msg);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// The program (and printer) whose ops this OS thread ran last.
    static CURRENT: RefCell<Option<(Arc<Shared>, String)>> = const { RefCell::new(None) };
}

fn set_current(shared: &Arc<Shared>, who: &str) {
    CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(shared), who.to_string())));
}

fn payload_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let is_string = payload.is::<&str>() || payload.is::<String>();
            let current = CURRENT
                .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
                .ok()
                .flatten();
            match current {
                // Not a program thread: default behaviour.
                None => previous(info),
                // Most likely a kill unwinding (TaskletExit); not an error.
                Some(_) if !is_string => {}
                Some((shared, who)) => {
                    let place = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    let msg = payload_message(payload);
                    // try_lock: never deadlock if the panic hit while a lock was held.
                    let line = format!("panic (last op by {who}): {msg}{place}");
                    if let Ok(mut log) = shared.log.try_lock() {
                        log.push(format!("!! {line}"));
                    }
                    if let Ok(mut panics) = shared.panics.try_lock() {
                        panics.push(line);
                    }
                }
            }
        }));
    });
}

/// Channels and tasklet handles of one running program.
struct World {
    shared: Arc<Shared>,
    channels: Vec<Channel<String>>,
    tasklets: OnceLock<Vec<Tasklet>>,
}

/// Logs `Tk exit` on any exit of a tasklet body: return or kill unwinding.
struct ExitGuard {
    shared: Arc<Shared>,
    line: String,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.shared.say(std::mem::take(&mut self.line));
    }
}

fn interpret(p: Arc<Program>, shared: Arc<Shared>) {
    let s = Scheduler::builder()
        .workers(1)
        .build()
        .expect("build a one-worker scheduler");
    s.enter(move || {
        let world = Arc::new(World {
            shared: Arc::clone(&shared),
            channels: (0..p.channels).map(|_| Channel::new()).collect(),
            tasklets: OnceLock::new(),
        });
        let handles = (0..p.tasklets.len())
            .map(|k| {
                // Weak: a tasklet handle must not keep its own world alive.
                let world: Weak<World> = Arc::downgrade(&world);
                let shared = Arc::clone(&shared);
                let p = Arc::clone(&p);
                Tasklet::new(move || {
                    let who = format!("T{k}");
                    let _guard = ExitGuard {
                        line: format!("{who} exit"),
                        shared,
                    };
                    if let Some(world) = world.upgrade() {
                        world.exec(&who, &p.tasklets[k]);
                    }
                })
            })
            .collect();
        if world.tasklets.set(handles).is_err() {
            unreachable!("tasklet handles set twice");
        }
        world.exec("M", &p.main);
    });
}

impl World {
    fn tasklet(&self, k: usize) -> &Tasklet {
        &self.tasklets.get().expect("tasklet handles are set")[k]
    }

    fn exec(&self, who: &str, ops: &[Op]) {
        for op in ops {
            set_current(&self.shared, who);
            self.step(who, op);
            set_current(&self.shared, who);
        }
    }

    fn say(&self, who: &str, what: impl std::fmt::Display) {
        self.shared.say(format!("{who} {what}"));
    }

    fn step(&self, who: &str, op: &Op) {
        let tasklet_result = |r: Result<(), TaskletError>| {
            if let Err(e) = r {
                self.say(who, format_args!("E:{}", tasklet_error(&e)));
            }
        };
        match op {
            Op::Say(tag) => self.say(who, tag),
            Op::Schedule => stackless::schedule(),
            Op::ScheduleRemove => stackless::schedule_remove(),
            Op::Run => stackless::run(),
            Op::Setup(k) => tasklet_result(self.tasklet(*k).setup()),
            Op::Insert(k) => tasklet_result(self.tasklet(*k).insert()),
            Op::Remove(k) => tasklet_result(self.tasklet(*k).remove()),
            Op::RunT(k) => tasklet_result(self.tasklet(*k).run()),
            Op::Kill(k) => tasklet_result(self.tasklet(*k).kill()),
            Op::Send(c, v) => match self.channels[*c].send(v.clone()) {
                Ok(()) => {}
                Err(SendError::Closed(_)) => self.say(who, "E:Closed"),
                Err(SendError::Deadlock(_)) => self.say(who, "E:Deadlock"),
            },
            Op::Recv(c) => match self.channels[*c].receive() {
                Ok(v) => self.say(who, format_args!("got {v}")),
                Err(RecvError::Closed) => self.say(who, "E:Closed"),
                Err(RecvError::Deadlock) => self.say(who, "E:Deadlock"),
                Err(e) => self.say(who, format_args!("E:Other:{e:?}")),
            },
            Op::Pref(c, p) => self.channels[*c].set_preference(match p {
                -1 => Preference::Receiver,
                0 => Preference::Neither,
                _ => Preference::Sender,
            }),
            Op::SchedAll(c, on) => self.channels[*c].set_schedule_all(*on),
            Op::Close(c) => self.channels[*c].close(),
            Op::Open(c) => self.channels[*c].open(),
            Op::BeNice => stackless::be_nice(),
            Op::RunNice => {
                let n = stackless::run_nice();
                self.say(who, format_args!("nice {n}"));
            }
            Op::QBalance(c) => {
                let b = self.channels[*c].balance();
                self.say(who, format_args!("bal{c} {b}"));
            }
            Op::QRuncount => {
                let n = stackless::runcount();
                self.say(who, format_args!("rc {n}"));
            }
            Op::QState(k) => {
                let t = self.tasklet(*k);
                let bit = |b: bool| u8::from(b);
                let state = format!(
                    "T{k} a{}s{}b{}p{}",
                    bit(t.alive()),
                    bit(t.scheduled()),
                    bit(t.blocked()),
                    bit(t.paused())
                );
                self.say(who, state);
            }
        }
    }
}

fn tasklet_error(e: &TaskletError) -> String {
    match e {
        TaskletError::Alive => "Alive".into(),
        TaskletError::Dead => "Dead".into(),
        TaskletError::Blocked => "Blocked".into(),
        TaskletError::Current => "Current".into(),
        TaskletError::Unbound => "Unbound".into(),
        TaskletError::Deadlock => "Deadlock".into(),
        other => format!("Other:{other:?}"),
    }
}
