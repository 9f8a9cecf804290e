//! Many-worker behaviour: invariants (nothing lost, nothing duplicated,
//! nothing hangs), never timing. Every test runs under a timeout.

mod support;
use stackless_scheduler::park::{park, prepare_park, Unparker, Wake};
use stackless_scheduler::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// A counting semaphore built only on the public park API.
#[derive(Default)]
struct Semaphore {
    state: Mutex<(usize, std::collections::VecDeque<Unparker>)>,
}

impl Semaphore {
    fn acquire(&self) -> Wake {
        let mut s = self.state.lock().unwrap();
        if s.0 > 0 {
            s.0 -= 1;
            return Wake::Woken;
        }
        s.1.push_back(prepare_park());
        drop(s);
        park()
    }
    fn release(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..n {
            loop {
                match s.1.pop_front() {
                    Some(u) => {
                        if u.unpark() {
                            break;
                        }
                    }
                    None => {
                        s.0 += 1;
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn fresh_tasklets_are_stolen_while_main_does_not_yield() {
    with_timeout(30, || {
        sched(2).enter(|| {
            let ran_on = Arc::new(Mutex::new(Vec::new()));
            let ts: Vec<Tasklet> = (0..64)
                .map(|_| {
                    let r = ran_on.clone();
                    spawn(move || r.lock().unwrap().push(current().worker()))
                })
                .collect();
            // Main keeps worker 0 busy without yielding: only a thief can run them.
            let deadline = Instant::now() + Duration::from_secs(20);
            while ran_on.lock().unwrap().is_empty() && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            assert!(
                !ran_on.lock().unwrap().is_empty(),
                "no tasklet was stolen while main kept worker 0 busy"
            );
            assert!(ran_on.lock().unwrap().iter().all(|w| *w == Some(1)));
            run();
            assert_eq!(ran_on.lock().unwrap().len(), 64);
            assert!(ts.iter().all(|t| !t.alive()));
        });
    });
}

#[test]
fn started_tasklets_never_change_worker() {
    with_timeout(120, || {
        sched(2).enter(|| {
            let moved = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            for _ in 0..200 {
                let (moved, done) = (moved.clone(), done.clone());
                spawn(move || {
                    let home = current().worker();
                    let thread = std::thread::current().id();
                    for _ in 0..500 {
                        schedule();
                        if current().worker() != home || std::thread::current().id() != thread {
                            moved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
            run();
            assert_eq!(done.load(Ordering::Relaxed), 200);
            assert_eq!(moved.load(Ordering::Relaxed), 0);
        });
    });
}

#[test]
fn nice_tasklets_run_exactly_once_per_frame() {
    with_timeout(60, || {
        sched(2).enter(|| {
            const N: usize = 100;
            const FRAMES: usize = 10;
            let counts: Arc<Vec<AtomicUsize>> =
                Arc::new((0..N).map(|_| AtomicUsize::new(0)).collect());
            let frame = Arc::new(AtomicUsize::new(0));
            let bad = Arc::new(AtomicBool::new(false));
            for i in 0..N {
                let (counts, frame, bad) = (counts.clone(), frame.clone(), bad.clone());
                spawn(move || loop {
                    be_nice();
                    let f = frame.load(Ordering::SeqCst);
                    let c = counts[i].fetch_add(1, Ordering::SeqCst) + 1;
                    if c != f {
                        bad.store(true, Ordering::SeqCst);
                    }
                });
            }
            run(); // every tasklet is now nice
            for f in 1..=FRAMES {
                frame.store(f, Ordering::SeqCst);
                let woken = run_nice();
                assert_eq!(woken, N, "frame {f}: run_nice woke {woken}");
                run();
                for c in counts.iter() {
                    assert_eq!(c.load(Ordering::SeqCst), f, "frame {f}");
                }
            }
            assert!(!bad.load(Ordering::SeqCst));
        });
    });
}

#[test]
fn sleep_wakes_in_deadline_order_and_run_waits_for_sleepers() {
    with_timeout(30, || {
        sched(2).enter(|| {
            let order = Arc::new(Mutex::new(Vec::new()));
            for (name, ms) in [("A", 60u64), ("B", 20), ("C", 40)] {
                let order = order.clone();
                spawn(move || {
                    sleep(Duration::from_millis(ms));
                    order.lock().unwrap().push(name);
                });
            }
            let t0 = Instant::now();
            run();
            assert!(
                t0.elapsed() >= Duration::from_millis(60),
                "run() returned before the sleepers woke"
            );
            assert_eq!(*order.lock().unwrap(), ["B", "C", "A"]);
        });
    });
}

#[test]
fn deadlock_with_two_workers_is_an_error_not_a_hang() {
    with_timeout(30, || {
        sched(2).enter(|| {
            let sem = Arc::new(Semaphore::default());
            // Main waits for a release nobody will ever make.
            assert_eq!(sem.acquire(), Wake::Deadlock);
            // A tasklet waits too while main joins it. Whichever blocked last
            // gets the error (Stackless's rule): the tasklet, so the join
            // succeeds, or main's join, and then the tasklet still waits.
            let s2 = sem.clone();
            let got = Arc::new(Mutex::new(None));
            let g2 = got.clone();
            let t = spawn(move || *g2.lock().unwrap() = Some(s2.acquire()));
            match t.join() {
                Ok(()) => assert_eq!(*got.lock().unwrap(), Some(Wake::Deadlock)),
                Err(TaskletError::Deadlock) => {
                    assert!(t.blocked());
                    sem.release(1);
                    t.join().unwrap();
                    assert_eq!(*got.lock().unwrap(), Some(Wake::Woken));
                }
                Err(e) => panic!("join: {e:?}"),
            }
        });
    });
}

#[test]
fn a_panic_ends_only_its_tasklet() {
    with_timeout(30, || {
        sched(2).enter(|| {
            let survivors = Arc::new(AtomicUsize::new(0));
            let bad = spawn(|| {
                schedule();
                panic!("boom");
            });
            let others: Vec<Tasklet> = (0..10)
                .map(|_| {
                    let s = survivors.clone();
                    spawn(move || {
                        for _ in 0..10 {
                            schedule();
                        }
                        s.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            match bad.join() {
                Err(e @ TaskletError::Panicked(_)) => assert_eq!(e.panic_message(), Some("boom")),
                other => panic!("expected Panicked, got {other:?}"),
            }
            for t in &others {
                t.join().unwrap();
            }
            assert_eq!(survivors.load(Ordering::SeqCst), 10);
        });
    });
}

struct Dropped(Arc<AtomicUsize>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_kills_blocked_nice_paused_and_sleeping_tasklets() {
    with_timeout(30, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let sem = Arc::new(Semaphore::default());
        let d = dropped.clone();
        sched(2).enter(move || {
            for kind in 0..4 {
                for _ in 0..5 {
                    let guard = Dropped(d.clone());
                    let sem = sem.clone();
                    spawn(move || {
                        let _g = guard;
                        match kind {
                            0 => {
                                let _ = sem.acquire();
                            }
                            1 => loop {
                                be_nice();
                            },
                            2 => schedule_remove(),
                            _ => sleep(Duration::from_secs(3600)),
                        }
                        // A killed tasklet never gets here.
                        std::thread::sleep(Duration::from_secs(3600));
                    });
                }
            }
            // Never-started ones die too.
            for _ in 0..5 {
                let guard = Dropped(d.clone());
                spawn(move || drop(guard));
            }
            schedule();
        });
        assert_eq!(dropped.load(Ordering::SeqCst), 25);
    });
}

/// A tasklet that catches its shutdown kill and calls the scheduler again
/// (`be_nice`, `schedule`, a park, a sleep) is killed again at each call:
/// it can neither block where nobody would wake it nor spin while the
/// shutdown waits for it. On one worker and on two, where the other
/// workers learn of the shutdown through a signal.
#[test]
fn shutdown_kills_again_a_tasklet_that_swallows_its_kill() {
    with_timeout(30, || {
        for workers in [1, 2] {
            let kills = Arc::new(AtomicUsize::new(0));
            let ended = Arc::new(AtomicUsize::new(0));
            let (k, e) = (kills.clone(), ended.clone());
            sched(workers).enter(move || {
                let sem = Arc::new(Semaphore::default());
                let st = Arc::new(AtomicUsize::new(0));
                for kind in 0..4 {
                    for _ in 0..3 {
                        let (k, e, sem) = (k.clone(), e.clone(), sem.clone());
                        let call = move || match kind {
                            0 => be_nice(),
                            1 => schedule(),
                            2 => {
                                let _ = sem.acquire();
                            }
                            _ => sleep(Duration::from_secs(3600)),
                        };
                        let st = st.clone();
                        spawn(move || {
                            st.fetch_add(1, Ordering::SeqCst);
                            // Three kills swallowed; the fourth unwinds the
                            // body.
                            for _ in 0..3 {
                                let r =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        loop {
                                            call();
                                        }
                                    }));
                                assert!(r.is_err());
                                k.fetch_add(1, Ordering::SeqCst);
                            }
                            e.fetch_add(1, Ordering::SeqCst);
                            loop {
                                call();
                            }
                        });
                    }
                }
                // Every one started (a tasklet killed before it starts
                // never runs), then the shutdown.
                while st.load(Ordering::SeqCst) < 12 {
                    schedule();
                }
            });
            assert_eq!(kills.load(Ordering::SeqCst), 36, "{workers} workers");
            assert_eq!(ended.load(Ordering::SeqCst), 12, "{workers} workers");
        }
    });
}

#[test]
fn twenty_thousand_blocked_tasklets_are_released() {
    with_timeout(120, || {
        sched(2).enter(|| {
            const N: usize = 20_000;
            let sem = Arc::new(Semaphore::default());
            let done = Arc::new(AtomicUsize::new(0));
            let blocked = Arc::new(AtomicUsize::new(0));
            for _ in 0..N {
                let (sem, done, blocked) = (sem.clone(), done.clone(), blocked.clone());
                spawn(move || {
                    blocked.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(sem.acquire(), Wake::Woken);
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            run(); // all of them block
            assert_eq!(blocked.load(Ordering::SeqCst), N);
            assert_eq!(done.load(Ordering::SeqCst), 0);
            sem.release(N);
            run();
            assert_eq!(done.load(Ordering::SeqCst), N);
        });
    });
}

#[test]
fn cross_worker_wakes_keep_fifo_per_waker_and_lose_nothing() {
    with_timeout(60, || {
        sched(2).enter(|| {
            // Tasklets on both workers wake each other through the park API.
            let sem = Arc::new(Semaphore::default());
            let total = Arc::new(AtomicUsize::new(0));
            let mut ts = Vec::new();
            for i in 0..50 {
                let (sem, total) = (sem.clone(), total.clone());
                ts.push(spawn(move || {
                    for _ in 0..100 {
                        if i % 2 == 0 {
                            sem.release(1);
                        } else {
                            assert_eq!(sem.acquire(), Wake::Woken);
                            total.fetch_add(1, Ordering::SeqCst);
                        }
                        schedule();
                    }
                }));
            }
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(total.load(Ordering::SeqCst), 25 * 100);
        });
    });
}

#[test]
fn spawn_from_a_plain_thread_runs_on_the_scheduler() {
    with_timeout(30, || {
        let s = sched(2);
        let s2 = s.clone();
        s.enter(move || {
            let seen = Arc::new(Mutex::new(HashSet::new()));
            let seen2 = seen.clone();
            let s3 = s2.clone();
            let h = s2.spawn_thread(move || {
                let ts: Vec<Tasklet> = (0..20)
                    .map(|i| {
                        let seen = seen2.clone();
                        s3.spawn(move || {
                            seen.lock().unwrap().insert(i);
                        })
                    })
                    .collect();
                for t in ts {
                    t.join().unwrap();
                }
            });
            // Main blocks in join() until the thread's tasklets ran.
            while !h.is_finished() {
                schedule();
            }
            h.join().unwrap();
            assert_eq!(seen.lock().unwrap().len(), 20);
        });
    });
}

#[test]
fn misuse_across_workers_is_an_error() {
    with_timeout(30, || {
        sched(2).enter(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let f2 = flag.clone();
            let t = spawn(move || {
                while !f2.load(Ordering::SeqCst) {
                    schedule();
                }
            });
            // Keep main busy until a thief started it on worker 1.
            let deadline = Instant::now() + Duration::from_secs(20);
            while t.worker() != Some(1) || !t.alive() {
                if Instant::now() > deadline {
                    // It ran here instead; nothing cross-worker to check.
                    flag.store(true, Ordering::SeqCst);
                    run();
                    return;
                }
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_millis(10));
            if t.alive() && t.worker() == Some(1) {
                assert!(matches!(t.switch(), Err(TaskletError::OtherWorker)));
                assert_eq!(
                    t.switch().unwrap_err().to_string(),
                    "can't switch to a different thread."
                );
            }
            flag.store(true, Ordering::SeqCst);
            t.join().unwrap();
        });
    });
}

/// Tasklet records are pooled per thread: handles dropped on plain threads
/// (which then exit), records reused across bursts and workers. Every body
/// runs exactly once, every handle joins, and ids never repeat while their
/// tasklets are alive.
#[test]
fn tasklet_records_survive_bursts_and_drops_on_other_threads() {
    with_timeout(60, || {
        let s = sched(2);
        let runs = Arc::new(AtomicUsize::new(0));
        s.enter(|| {
            for round in 0..4 {
                let ts: Vec<Tasklet> = (0..3_000)
                    .map(|_| {
                        let runs = runs.clone();
                        spawn(move || {
                            runs.fetch_add(1, Ordering::Relaxed);
                            if round % 2 == 1 {
                                schedule();
                            }
                        })
                    })
                    .collect();
                let ids: HashSet<u64> = ts.iter().map(|t| t.id()).collect();
                assert_eq!(ids.len(), ts.len(), "ids repeat among live tasklets");
                // Half the handles go to plain threads that join, drop them
                // and exit (their record caches go back to the shared list).
                let mut ts = ts;
                let theirs = ts.split_off(ts.len() / 2);
                let threads: Vec<_> = theirs
                    .chunks(500)
                    .map(|c| {
                        let c: Vec<Tasklet> = c.to_vec();
                        std::thread::spawn(move || {
                            for t in c {
                                t.join().unwrap();
                            }
                        })
                    })
                    .collect();
                for t in ts {
                    t.join().unwrap();
                }
                // Wait without blocking this worker's thread (its tasklets
                // may be what the plain threads are joining).
                while !threads.iter().all(|th| th.is_finished()) {
                    sleep(Duration::from_millis(1));
                }
                for th in threads {
                    th.join().unwrap();
                }
            }
        });
        assert_eq!(runs.load(Ordering::Relaxed), 4 * 3_000);
    });
}

// Direct switches (a tasklet, or worker 0's main, switching straight to the
// next started tasklet without the worker loop): the loop's duties must
// still happen, and a tasklet that ends after one must still be finished.

#[test]
fn tasklets_that_end_after_direct_switches_are_finished_in_order() {
    with_timeout(60, || {
        let log = Log::default();
        sched(1).enter(|| {
            // Started first (run), so that main's and their switches to each
            // other are direct: A and B end on a direct switch from main.
            let ts: Vec<Tasklet> = ["A", "B", "C"]
                .into_iter()
                .map(|name| {
                    let log = log.clone();
                    spawn(move || {
                        for i in 0..3 {
                            log.say(format!("{name}{i}"));
                            if name != "C" || i < 2 {
                                schedule();
                            }
                        }
                    })
                })
                .collect();
            // A, B and C run one step each.
            schedule();
            log.say("main");
            for _ in 0..3 {
                schedule();
                log.say("main");
            }
            for t in &ts {
                t.join().unwrap();
                assert!(!t.alive());
            }
        });
        assert_eq!(
            log.lines(),
            [
                "A0", "B0", "C0", "main", "A1", "B1", "C1", "main", "A2", "B2", "C2", "main",
                "main"
            ]
        );
    });
}

#[test]
fn timers_and_remote_wakes_reach_a_worker_whose_tasklets_switch_directly() {
    with_timeout(60, || {
        let s = sched(2);
        let stop = Arc::new(AtomicBool::new(false));
        let slept = Arc::new(AtomicUsize::new(0));
        let woken = Arc::new(AtomicUsize::new(0));
        s.enter(|| {
            // Two tasklets on worker 0 that only ever yield to each other.
            let spinners: Vec<Tasklet> = (0..2)
                .map(|_| {
                    let stop = stop.clone();
                    TaskletBuilder::new()
                        .worker(0)
                        .spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                schedule();
                            }
                        })
                        .unwrap()
                })
                .collect();
            // A sleeper among them (its timer must fire) ...
            let sl = slept.clone();
            let sleeper = TaskletBuilder::new()
                .worker(0)
                .spawn(move || {
                    for _ in 0..5 {
                        sleep(Duration::from_millis(2));
                        sl.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap();
            // ... and parks on worker 0 that worker 1 ends (inbox wakes).
            let sem = Arc::new(Semaphore::default());
            let (w, sm) = (woken.clone(), sem.clone());
            let waiter = TaskletBuilder::new()
                .worker(0)
                .spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(sm.acquire(), Wake::Woken);
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap();
            let sm = sem.clone();
            let releaser = TaskletBuilder::new()
                .worker(1)
                .spawn(move || {
                    for _ in 0..50 {
                        sm.release(1);
                        sleep(Duration::from_micros(200));
                    }
                })
                .unwrap();
            sleeper.join().unwrap();
            waiter.join().unwrap();
            releaser.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            for t in spinners {
                t.join().unwrap();
            }
        });
        assert_eq!(slept.load(Ordering::Relaxed), 5);
        assert_eq!(woken.load(Ordering::Relaxed), 50);
    });
}
