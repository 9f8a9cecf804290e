//! Channels across workers and OS threads: invariants only (nothing lost,
//! nothing duplicated, FIFO per producer, nothing hangs). Every test runs
//! under a timeout.

#[path = "../../scheduler/tests/support/mod.rs"]
mod support;
use stackless::{
    current, run, schedule, spawn, Channel, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, Tasklet,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

#[test]
fn four_producers_one_consumer_nothing_lost_fifo_per_producer() {
    with_timeout(240, || {
        sched(2).enter(|| {
            const PER: u64 = 100_000;
            let c: Channel<(u64, u64)> = Channel::new();
            let producers: Vec<Tasklet> = (0..4)
                .map(|p| {
                    let c = c.clone();
                    spawn(move || {
                        for i in 0..PER {
                            c.send((p, i)).unwrap();
                        }
                    })
                })
                .collect();
            let mut next = [0u64; 4];
            for _ in 0..4 * PER {
                let (p, i) = c.receive().unwrap();
                assert_eq!(i, next[p as usize], "producer {p} out of order");
                next[p as usize] += 1;
            }
            assert_eq!(next, [PER; 4]);
            for t in producers {
                t.join().unwrap();
            }
            assert_eq!(c.balance(), 0);
        });
    });
}

#[test]
fn a_ring_of_a_thousand_tasklets_passes_a_token_a_hundred_laps() {
    with_timeout(240, || {
        sched(2).enter(|| {
            const SIZE: usize = 1000;
            const LAPS: u64 = 100;
            let chans: Vec<Channel<u64>> = (0..SIZE).map(|_| Channel::new()).collect();
            let ts: Vec<Tasklet> = (1..SIZE)
                .map(|k| {
                    let input = chans[k].clone();
                    let output = chans[(k + 1) % SIZE].clone();
                    spawn(move || {
                        for _ in 0..LAPS {
                            let v = input.receive().unwrap();
                            output.send(v + 1).unwrap();
                        }
                    })
                })
                .collect();
            let mut token = 0u64;
            for _ in 0..LAPS {
                chans[1].send(token).unwrap();
                token = chans[0].receive().unwrap();
            }
            assert_eq!(token, LAPS * (SIZE as u64 - 1));
            for t in ts {
                t.join().unwrap();
            }
        });
    });
}

/// A value that counts its drops, so a lost value (dropped in a dying
/// receiver) is still accounted for and a duplicate is impossible.
struct Counted(u64, Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn kills_racing_with_sends_lose_and_duplicate_nothing() {
    with_timeout(240, || {
        for round in 0..20 {
            sched(2).enter(move || {
                const N: u64 = 300;
                let dropped = Arc::new(AtomicUsize::new(0));
                let c: Channel<Counted> = Channel::new();
                let received = Arc::new(Mutex::new(Vec::new()));
                let receivers: Vec<Tasklet> = (0..6)
                    .map(|_| {
                        let (c, received) = (c.clone(), received.clone());
                        spawn(move || loop {
                            match c.receive() {
                                Ok(v) => received.lock().unwrap().push(v.0),
                                Err(_) => return,
                            }
                        })
                    })
                    .collect();
                let returned = Arc::new(Mutex::new(Vec::new()));
                let created = Arc::new(AtomicUsize::new(0));
                let (c2, ret2, d2, cr2) = (
                    c.clone(),
                    returned.clone(),
                    dropped.clone(),
                    created.clone(),
                );
                let sender = spawn(move || {
                    for i in 0..N {
                        cr2.fetch_add(1, Ordering::SeqCst);
                        if let Err(e) = c2.send(Counted(i, d2.clone())) {
                            ret2.lock().unwrap().push(e.into_inner().0);
                        }
                        if i % 7 == 0 {
                            schedule();
                        }
                    }
                });
                // Kill receivers while the sender runs (on either worker).
                for (k, r) in receivers.iter().enumerate() {
                    for _ in 0..(round % 5 + k) {
                        schedule();
                    }
                    r.kill().unwrap();
                }
                // With every receiver gone the sender blocks for good:
                // run() returns then, and shutting it down drops its value.
                run();
                sender.kill().unwrap();
                for r in &receivers {
                    let _ = r.join();
                }
                let _ = sender.join();
                let got = received.lock().unwrap().clone();
                let back = returned.lock().unwrap().clone();
                let mut seen: HashMap<u64, usize> = HashMap::new();
                for v in got.iter().chain(back.iter()) {
                    *seen.entry(*v).or_default() += 1;
                }
                assert!(seen.values().all(|&n| n == 1), "a value was duplicated");
                // Every value was received, handed back, or dropped with a
                // receiver killed after the hand-off (Stackless semantics);
                // each value's destructor runs exactly once.
                drop(c);
                let created = created.load(Ordering::SeqCst);
                assert_eq!(dropped.load(Ordering::SeqCst), created);
                assert!(got.len() + back.len() <= created);
            });
        }
    });
}

#[test]
fn timeouts_racing_with_late_senders_lose_nothing() {
    with_timeout(240, || {
        sched(2).enter(|| {
            let c: Channel<u64> = Channel::new();
            let got = Arc::new(Mutex::new(Vec::new()));
            let back = Arc::new(Mutex::new(Vec::new()));
            let (c1, g1) = (c.clone(), got.clone());
            let receiver = spawn(move || {
                let mut timeouts = 0;
                while timeouts < 200 {
                    match c1.receive_timeout(Duration::from_micros(50)) {
                        Ok(v) => g1.lock().unwrap().push(v),
                        Err(RecvTimeoutError::Timeout) => timeouts += 1,
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            });
            let (c2, b2) = (c.clone(), back.clone());
            let sender = spawn(move || {
                for i in 0..2000u64 {
                    match c2.send_timeout(i, Duration::from_micros(30)) {
                        Ok(()) => {}
                        Err(SendTimeoutError::Timeout(v)) => b2.lock().unwrap().push(v),
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            });
            sender.join().unwrap();
            receiver.join().unwrap();
            let mut all: Vec<u64> = got.lock().unwrap().clone();
            all.extend(back.lock().unwrap().iter());
            all.sort_unstable();
            assert_eq!(
                all,
                (0..2000).collect::<Vec<_>>(),
                "lost or duplicated values"
            );
            // Received values kept the sender's order.
            let g = got.lock().unwrap();
            assert!(g.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(c.balance(), 0, "a timed-out operation was not undone");
        });
    });
}

#[test]
fn a_plain_thread_exchanges_ten_thousand_requests_with_a_tasklet() {
    with_timeout(240, || {
        let s = sched(2);
        let s2 = s.clone();
        s.enter(move || {
            let req: Channel<u64> = Channel::new();
            let rep: Channel<u64> = Channel::new();
            let (rq, rp) = (req.clone(), rep.clone());
            let server = spawn(move || {
                for r in rq.iter() {
                    rp.send(r * 2).unwrap();
                }
            });
            let (rq, rp) = (req.clone(), rep.clone());
            let client = s2.spawn_thread(move || {
                for i in 0..10_000u64 {
                    rq.send(i).unwrap();
                    assert_eq!(rp.receive().unwrap(), i * 2);
                }
                rq.close();
            });
            // Main waits for the client thread without blocking a worker.
            while !client.is_finished() {
                schedule();
            }
            client.join().unwrap();
            // The server now blocks on a closing channel: iteration ends
            // only when it is woken; killing it ends it.
            server.kill().unwrap();
            // A kill of a tasklet on another worker completes there.
            server.join().unwrap();
            assert!(!server.alive());
        });
    });
}

#[test]
fn a_plain_std_thread_can_block_and_be_woken() {
    with_timeout(60, || {
        sched(2).enter(|| {
            let c: Channel<u64> = Channel::new();
            let c2 = c.clone();
            let h = std::thread::spawn(move || {
                let mut sum = 0;
                for _ in 0..1000 {
                    sum += c2.receive().unwrap();
                }
                sum
            });
            for i in 0..1000 {
                // The thread may not have started yet: only its first
                // touch registers it, so retry a send that found nobody.
                let mut v = i;
                loop {
                    match c.send(v) {
                        Ok(()) => break,
                        Err(SendError::Deadlock(back)) => {
                            v = back;
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            assert_eq!(h.join().unwrap(), (0..1000).sum());
        });
    });
}

#[test]
fn deadlock_across_workers_is_detected_and_undone() {
    with_timeout(60, || {
        sched(2).enter(|| {
            let c: Channel<u64> = Channel::new();
            let (c1, flag) = (c.clone(), Arc::new(AtomicBool::new(false)));
            let f1 = flag.clone();
            let t = spawn(move || {
                let r = c1.receive();
                f1.store(matches!(r, Err(RecvError::Deadlock)), Ordering::SeqCst);
            });
            // Main itself blocks on another channel nobody sends to: one of
            // the two blocked parties gets the deadlock error.
            let other: Channel<u64> = Channel::new();
            match other.receive() {
                Err(RecvError::Deadlock) => {
                    if c.balance() == -1 {
                        // Main was the last to block: the tasklet still waits.
                        c.send(7).unwrap();
                        t.join().unwrap();
                        assert!(!flag.load(Ordering::SeqCst));
                    } else {
                        // The tasklet was the last: it got the error first,
                        // ended, and then main's receive could never complete.
                        t.join().unwrap();
                        assert!(flag.load(Ordering::SeqCst));
                    }
                }
                r => panic!("expected Deadlock, got {r:?}"),
            }
            assert_eq!(other.balance(), 0);
            // A send that nothing can receive comes back.
            assert!(matches!(c.send(1), Err(SendError::Deadlock(1))));
            assert_eq!(c.balance(), 0);
            run();
            let _ = current();
        });
    });
}
