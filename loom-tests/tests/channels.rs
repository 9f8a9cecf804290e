//! Loom models of the channel protocol on the park API (production code).
#![cfg(loom)]

mod common;

use common::model;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use stackless_channels::{Channel, SendError};
use stackless_scheduler::*;

fn sched(workers: usize) -> Scheduler {
    Scheduler::builder().workers(workers).build().unwrap()
}

/// Model 5: a rendezvous between tasklets on two workers. Each value is
/// delivered exactly once, in FIFO order, and the balance ends at 0.
#[test]
fn m5_rendezvous_across_workers() {
    model(|| {
        sched(2).enter(|| {
            let c: Channel<u32> = Channel::new();
            let rx = c.clone();
            let got = Arc::new(AtomicUsize::new(0));
            let g = got.clone();
            let t = TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    assert_eq!(rx.receive().unwrap(), 1);
                    assert_eq!(rx.receive().unwrap(), 2);
                    g.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            c.send(1).unwrap();
            c.send(2).unwrap();
            t.join().unwrap();
            assert_eq!(got.load(Ordering::SeqCst), 1);
            assert_eq!(c.balance(), 0);
        });
    });
}

/// Model 6: a kill of a blocked receiver races with a send from another
/// thread. The value is delivered (received, or dropped by the receiver
/// that was killed after the hand-off, as Stackless does) or handed back to
/// the sender: never both, never lost, never given to a dead waiter.
#[test]
fn m6_kill_of_receiver_races_with_send() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        sched(1).enter(move || {
            let c: Channel<Counted> = Channel::new();
            let rx = c.clone();
            let received = Arc::new(AtomicUsize::new(0));
            let r2 = received.clone();
            let r = spawn(move || {
                let v = rx.receive();
                if v.is_ok() {
                    r2.fetch_add(1, Ordering::SeqCst);
                }
            });
            run(); // r blocks
            let (tx, d2) = (c.clone(), d.clone());
            // A plain thread sends while main kills the receiver.
            let sender = loom::thread::spawn(move || match tx.try_send(Counted(d2)) {
                Ok(()) => 1,
                Err(e) => {
                    drop(e);
                    0
                }
            });
            r.kill().unwrap();
            let sent = sender.join().unwrap();
            assert!(!r.alive());
            assert_eq!(c.balance(), 0, "a killed waiter stayed queued");
            assert!(received.load(Ordering::SeqCst) <= sent);
        });
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the value was lost or duplicated"
        );
    });
}

/// Model 8: a plain OS thread parks on a channel and a tasklet wakes it,
/// twice (the thread's participant count must stay balanced across parks).
#[test]
fn m8_plain_thread_parks_on_a_channel() {
    model(|| {
        let s = sched(1);
        let s2 = s.clone();
        s.enter(move || {
            let c: Channel<u32> = Channel::new();
            let rx = c.clone();
            let th = s2.spawn_thread(move || rx.receive().unwrap() + rx.receive().unwrap());
            for v in [3, 4] {
                // The thread may not be waiting yet: retry until it takes it.
                let mut v = v;
                loop {
                    match c.send(v) {
                        Ok(()) => break,
                        Err(SendError::Deadlock(back)) => {
                            v = back;
                            loom::thread::yield_now();
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            assert_eq!(th.join().unwrap(), 7);
            assert_eq!(c.balance(), 0);
        });
    });
}
