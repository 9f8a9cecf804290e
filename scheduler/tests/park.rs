//! The public park API: cancel, deadlines, stale unparkers, placement.

mod support;
use stackless_scheduler::park::{cancel_park, park, park_until, prepare_park, Placement, Wake};
use stackless_scheduler::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

fn one_worker(f: impl FnOnce() + Send + 'static) {
    with_timeout(30, move || {
        Scheduler::builder().workers(1).build().unwrap().enter(f);
    });
}

#[test]
fn cancel_before_anyone_claimed_needs_no_park() {
    one_worker(|| {
        let u = prepare_park();
        assert!(current().blocked());
        assert!(cancel_park(&u));
        assert!(!current().blocked());
        // The cancelled unparker wakes nothing.
        assert!(!u.unpark());
    });
}

#[test]
fn cancel_after_a_claim_fails_and_park_returns_at_once() {
    one_worker(|| {
        let u = prepare_park();
        let c = u.clone().claim().expect("the first claim wins");
        c.wake();
        assert!(!cancel_park(&u));
        assert_eq!(park(), Wake::Woken);
        assert!(!current().blocked());
    });
}

#[test]
fn park_until_times_out_for_a_tasklet_and_a_thread() {
    one_worker(|| {
        let t = spawn(|| {
            let _u = prepare_park();
            let d = Instant::now() + Duration::from_millis(20);
            assert_eq!(park_until(d), Wake::TimedOut);
            assert!(Instant::now() >= d);
        });
        t.join().unwrap();
        let h = std::thread::spawn(|| {
            let _u = prepare_park();
            let d = Instant::now() + Duration::from_millis(20);
            assert_eq!(park_until(d), Wake::TimedOut);
            assert!(Instant::now() >= d);
        });
        h.join().unwrap();
    });
}

#[test]
fn a_stale_unparker_never_wakes_a_later_park() {
    one_worker(|| {
        let slot: Arc<Mutex<Vec<_>>> = Arc::default();
        let s = slot.clone();
        let t = spawn(move || {
            // First park: woken normally.
            s.lock().unwrap().push(prepare_park());
            assert_eq!(park(), Wake::Woken);
            // Second park: only a deadline ends it; the old unparker must not.
            let _u = prepare_park();
            let r = park_until(Instant::now() + Duration::from_millis(30));
            assert_eq!(r, Wake::TimedOut);
        });
        schedule(); // t parks the first time
        let first = slot.lock().unwrap().pop().unwrap();
        assert!(first.clone().unpark());
        schedule(); // t parks the second time
        assert!(t.blocked());
        assert!(!first.unpark(), "a stale unparker woke a later park");
        t.join().unwrap();
    });
}

#[test]
fn wake_next_runs_the_woken_tasklet_right_after_the_waker() {
    one_worker(|| {
        let log: Arc<Mutex<Vec<&str>>> = Arc::default();
        let slot: Arc<Mutex<Option<_>>> = Arc::default();
        let (l, s) = (log.clone(), slot.clone());
        spawn(move || {
            *s.lock().unwrap() = Some(prepare_park());
            park();
            l.lock().unwrap().push("woken");
        });
        let l = log.clone();
        spawn(move || l.lock().unwrap().push("other"));
        // The first tasklet parks; "other" is still queued behind main.
        schedule();
        let u = slot.lock().unwrap().take().unwrap();
        let l = log.clone();
        spawn(move || l.lock().unwrap().push("b")); // ring: main, b
        assert!(u.is_local());
        // Next: right after main, ahead of b (Tail would put it behind b).
        assert!(u.claim().unwrap().wake_at(Placement::Next));
        schedule();
        log.lock().unwrap().push("main");
        run();
        assert_eq!(*log.lock().unwrap(), ["other", "woken", "b", "main"]);
    });
}

// A tasklet leaves the run queue when it prepares a park. When the park
// ends before it switches out (cancelled, or woken by the tasklet itself),
// it must be back at the head: `schedule()` then lets the others run first,
// in their order.
#[test]
fn a_park_that_ends_before_switching_out_keeps_the_head() {
    for how in ["cancel", "self-wake"] {
        one_worker(move || {
            let log: Arc<Mutex<Vec<String>>> = Arc::default();
            let l = log.clone();
            spawn(move || {
                l.lock().unwrap().push("A1".into());
                let u = prepare_park();
                if how == "cancel" {
                    assert!(cancel_park(&u));
                } else {
                    assert!(u.clone().unpark());
                    assert_eq!(park(), Wake::Woken);
                }
                assert!(!current().blocked());
                l.lock().unwrap().push("A2".into());
                schedule();
                l.lock().unwrap().push("A3".into());
            });
            let l = log.clone();
            spawn(move || {
                l.lock().unwrap().push("B1".into());
                schedule();
                l.lock().unwrap().push("B2".into());
            });
            run();
            assert_eq!(runcount(), 1, "{how}: only main is left");
            assert_eq!(
                *log.lock().unwrap(),
                ["A1", "A2", "B1", "A3", "B2"],
                "{how}"
            );
        });
    }
}
