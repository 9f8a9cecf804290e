//! Proof that the models bite: each test turns off one protocol step (a
//! test-only switch, `stackless_scheduler::sync::weaken`) and shows that a
//! model then fails. A failing loom model panics while scheduler state is
//! being torn down, which can abort the process, so each weakened model
//! runs in a child process (this test binary re-executed) and the parent
//! checks that it failed the way loom reports bugs.
#![cfg(loom)]

mod common;

use common::{model, Event};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use stackless_channels::Channel;
use stackless_scheduler::park::Wake;
use stackless_scheduler::sync::weaken::{self, Weakness};
use stackless_scheduler::*;

const CHILD: &str = "STACKLESS_BITE_CHILD";

/// Runs child test `name` and asserts that its model failed with `marker`
/// in its output.
fn expect_model_failure(name: &str, marker: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("re-execute the test binary");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the weakened model {name} passed: the model does not catch this bug\n{text}"
    );
    assert!(
        text.contains(marker),
        "the child failed, but not with {marker:?}:\n{text}"
    );
}

/// In the child: whether this child test should run its weakened model.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

fn sched(workers: usize) -> Scheduler {
    Scheduler::builder().workers(workers).build().unwrap()
}

/// Model 1's body: a cross-worker wake racing with the target worker going idle.
fn wake_races_with_idle() {
    model(|| {
        sched(2).enter(|| {
            let ev = Arc::new(Event::default());
            let done = Arc::new(AtomicUsize::new(0));
            let (e, d) = (ev.clone(), done.clone());
            TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    assert_eq!(e.wait(), Wake::Woken);
                    d.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            ev.set();
            run();
            assert_eq!(done.load(Ordering::SeqCst), 1, "MODEL FAILED: lost wake-up");
        });
    });
}

// ---- 1. skip the re-check before sleeping -----------------------------------

#[test]
fn no_recheck_before_sleep_loses_a_wakeup() {
    expect_model_failure(
        "child_no_recheck_before_sleep",
        "MODEL FAILED: lost wake-up",
    );
}

#[test]
fn child_no_recheck_before_sleep() {
    if !is_child("child_no_recheck_before_sleep") {
        return;
    }
    weaken::set(&[Weakness::NoRecheckBeforeSleep]);
    wake_races_with_idle();
}

// ---- 2. drop the SeqCst fences of the sleep handshake -----------------------

#[test]
fn no_sleep_fence_loses_a_wakeup() {
    expect_model_failure("child_no_sleep_fence", "MODEL FAILED: lost wake-up");
}

#[test]
fn child_no_sleep_fence() {
    if !is_child("child_no_sleep_fence") {
        return;
    }
    weaken::set(&[Weakness::NoSleepFence]);
    wake_races_with_idle();
}

// ---- 3. trust a claim as a finished hand-off (no WOKEN phase) ---------------

#[test]
fn trusting_a_claim_reads_a_slot_being_written() {
    expect_model_failure("child_trust_claim", "Causality violation");
}

#[test]
fn child_trust_claim() {
    if !is_child("child_trust_claim") {
        return;
    }
    weaken::set(&[Weakness::TrustClaim]);
    model(|| {
        let s = sched(1);
        let s2 = s.clone();
        s.enter(move || {
            let c: Channel<u64> = Channel::new();
            let tx = c.clone();
            // A plain thread sends while the main tasklet receives.
            let th = s2.spawn_thread(move || tx.send(7).is_ok());
            let v = c.receive();
            assert!(th.join().unwrap());
            assert_eq!(v.ok(), Some(7), "MODEL FAILED: value lost in the hand-off");
        });
    });
}

// ---- 4. decide ownership from two separate reads -----------------------------

#[test]
fn racy_ownership_runs_a_stolen_tasklet_twice() {
    // Two workers resume the same coroutine: both wait forever for its baton.
    expect_model_failure("child_racy_ownership", "deadlock; threads");
}

#[test]
fn child_racy_ownership() {
    if !is_child("child_racy_ownership") {
        return;
    }
    weaken::set(&[Weakness::RacyOwnership]);
    model(|| {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        sched(2).enter(move || {
            let r2 = r.clone();
            spawn(move || {
                r2.fetch_add(1, Ordering::SeqCst);
            });
            run();
            assert_eq!(
                r.load(Ordering::SeqCst),
                1,
                "MODEL FAILED: ran twice or never"
            );
        });
    });
}
