//! Shared helpers of the loom models.
#![allow(dead_code)]

use stackless_scheduler::park::{park, prepare_park, Unparker, Wake};
use stackless_scheduler::sync::Mutex;

/// Runs `f` under loom with the bounds CI uses: `LOOM_MAX_PREEMPTIONS`
/// (default 2) and `LOOM_MAX_BRANCHES` (default 20,000) from the
/// environment.
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    if std::env::var("LOOM_MAX_BRANCHES").is_err() {
        b.max_branches = 20_000;
    }
    b.check(f);
}

/// A one-shot event built only on the public park API and the facade's
/// (loom-aware) mutex.
#[derive(Default)]
pub struct Event {
    state: Mutex<(bool, Vec<Unparker>)>,
}

impl Event {
    pub fn set(&self) {
        let waiters = {
            let mut s = self.state.lock();
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in waiters {
            w.unpark();
        }
    }

    pub fn wait(&self) -> Wake {
        let mut s = self.state.lock();
        if s.0 {
            return Wake::Woken;
        }
        s.1.push(prepare_park());
        drop(s);
        park()
    }
}
