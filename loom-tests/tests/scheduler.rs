//! Loom models of the scheduler's protocols, run against the production
//! code (see loom-tests/README.md). Each model builds a real scheduler; a
//! tasklet is a loom thread with a baton instead of a stack switch.
#![cfg(loom)]

mod common;

use common::{model, Event};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use stackless_scheduler::park::Wake;
use stackless_scheduler::*;

fn sched(workers: usize) -> Scheduler {
    Scheduler::builder().workers(workers).build().unwrap()
}

/// Model 1: a wake from another worker races with the home worker going
/// idle. The woken tasklet always runs; `run()` returns only after it did.
#[test]
fn m1_cross_worker_wake_races_with_idle() {
    model(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        sched(2).enter(move || {
            let ev = Arc::new(Event::default());
            let e = ev.clone();
            let d2 = d.clone();
            // Pinned to worker 1: it blocks there, worker 1 goes idle.
            TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    assert_eq!(e.wait(), Wake::Woken);
                    d2.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            ev.set(); // from worker 0, racing with worker 1's idle transition
            run();
            assert_eq!(
                d.load(Ordering::SeqCst),
                1,
                "run() returned before the woken tasklet ran"
            );
        });
        assert_eq!(done.load(Ordering::SeqCst), 1);
    });
}

/// Model 2: a thief steals a fresh tasklet while its owner starts it. It
/// runs exactly once, and once started it never changes worker.
#[test]
fn m2_steal_races_with_owner() {
    model(|| {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        sched(2).enter(move || {
            let r2 = r.clone();
            let t = spawn(move || {
                r2.fetch_add(1, Ordering::SeqCst);
                let w = current().worker();
                schedule();
                assert_eq!(current().worker(), w, "a started tasklet moved");
            });
            run(); // worker 0 starts it unless worker 1 stole it first
            assert!(!t.alive());
            assert_eq!(r.load(Ordering::SeqCst), 1, "ran twice or never");
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

/// Model 3: quiescence. `run()` never returns while a tasklet is runnable
/// anywhere or a wake is in flight, and always returns when nothing is.
#[test]
fn m3_run_waits_for_quiescence() {
    model(|| {
        let steps = Arc::new(AtomicUsize::new(0));
        let s = steps.clone();
        sched(2).enter(move || {
            let ev = Arc::new(Event::default());
            let (e1, s1) = (ev.clone(), s.clone());
            // A waits on worker 0 for B, which runs on worker 1.
            spawn(move || {
                assert_eq!(e1.wait(), Wake::Woken);
                s1.fetch_add(1, Ordering::SeqCst);
            });
            let (e2, s2) = (ev.clone(), s.clone());
            TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    s2.fetch_add(1, Ordering::SeqCst);
                    e2.set(); // a cross-worker wake in flight
                })
                .unwrap();
            run(); // returns only when both ran
            assert_eq!(s.load(Ordering::SeqCst), 2, "run() returned early");
        });
    });
}

/// Model 4a: deadlock detection never fires while a wake is in flight.
#[test]
fn m4a_no_false_deadlock() {
    model(|| {
        sched(2).enter(|| {
            let ev = Arc::new(Event::default());
            let e = ev.clone();
            TaskletBuilder::new()
                .worker(1)
                .spawn(move || e.set())
                .unwrap();
            // Main blocks; the only waker runs on worker 1.
            assert_eq!(ev.wait(), Wake::Woken, "false deadlock");
        });
    });
}

/// Model 4b: a true deadlock always fires (and nothing hangs), whichever
/// worker goes idle last.
#[test]
fn m4b_true_deadlock_fires() {
    model(|| {
        sched(2).enter(|| {
            let ev = Arc::new(Event::default());
            let e = ev.clone();
            let got = Arc::new(AtomicUsize::new(0));
            let g = got.clone();
            let t = TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    if e.wait() == Wake::Deadlock {
                        g.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .unwrap();
            // Main joins the blocked tasklet: one of the two gets Deadlock.
            match t.join() {
                Ok(()) => assert_eq!(got.load(Ordering::SeqCst), 1),
                Err(TaskletError::Deadlock) => {
                    ev.set();
                    t.join().unwrap();
                    assert_eq!(got.load(Ordering::SeqCst), 0);
                }
                Err(e) => panic!("{e:?}"),
            }
        });
    });
}

/// Model 7: `run_nice()` on one worker races with `be_nice()` on another.
/// Each nice tasklet is woken once per round and none is lost.
#[test]
fn m7_run_nice_races_with_be_nice() {
    model(|| {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        sched(2).enter(move || {
            let c2 = c.clone();
            TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    for _ in 0..2 {
                        be_nice();
                        c2.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .unwrap();
            // Rounds until the tasklet went through both of its be_nice().
            let mut rounds = 0;
            while c.load(Ordering::SeqCst) < 2 {
                run_nice();
                run();
                rounds += 1;
                assert!(rounds <= 3, "a nice tasklet was lost");
            }
            assert_eq!(c.load(Ordering::SeqCst), 2);
        });
    });
}

/// Model 9: shutdown racing with a cross-worker wake: nothing leaks,
/// nothing is resumed after shutdown, destructors run exactly once.
#[test]
fn m9_shutdown_races_with_a_wake() {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    model(|| {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        sched(2).enter(move || {
            let ev = Arc::new(Event::default());
            let e = ev.clone();
            let g = Guard(d.clone());
            TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    let _g = g;
                    let _ = e.wait();
                })
                .unwrap();
            ev.set(); // the wake may still be in flight when main returns
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    });
}
