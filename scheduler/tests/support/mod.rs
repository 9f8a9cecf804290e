//! Helpers shared by the integration tests of the scheduler and of the
//! channels (`channels/tests` include this file by path). Each test file
//! uses a subset.
#![allow(dead_code)]

use stackless_scheduler::Scheduler;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `f` on its own thread; panics if it does not finish within `secs`
/// (the thread is leaked), and propagates `f`'s own panic.
pub fn with_timeout<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(())) => {}
        Ok(Err(p)) => resume_unwind(p),
        Err(_) => panic!("test timed out after {secs} s (a hang)"),
    }
}

/// A fresh scheduler with `workers` workers.
pub fn sched(workers: usize) -> Scheduler {
    Scheduler::builder().workers(workers).build().unwrap()
}

/// The output log of a scenario (Stackless's `say`).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn say(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Runs `main` as the main tasklet of a fresh one-worker scheduler, under a
/// timeout, and returns everything it (and its tasklets) said.
///
/// Tasklets only `say` what they observe: an assertion failing inside a
/// tasklet would only end that tasklet, so every check is on the log.
pub fn scenario(main: impl FnOnce(&Log) + Send + 'static) -> Vec<String> {
    let log = Log::default();
    let l = log.clone();
    with_timeout(20, move || sched(1).enter(|| main(&l)));
    log.lines()
}

/// A tasklet body that says `s`.
pub fn sayer(log: &Log, s: &str) -> impl FnOnce() + Send + 'static {
    let (l, s) = (log.clone(), s.to_string());
    move || l.say(s)
}

/// Says its text when dropped: Stackless's `finally:` (runs on kill too).
pub struct Finally(Log, String);

impl Drop for Finally {
    fn drop(&mut self) {
        self.0.say(self.1.clone());
    }
}

pub fn finally(log: &Log, s: impl Into<String>) -> Finally {
    Finally(log.clone(), s.into())
}
