//! The workloads on std OS threads and crossbeam-channel.
//!
//! "n workers" means the threads may run on the first n CPUs only: each
//! workload runs in a driver thread that restricts its CPU affinity
//! ([`crate::pin_current_thread`]) and spawns the rest, which inherit it.
//! Channels are crossbeam `bounded(0)` (rendezvous). A task is an OS thread,
//! with at most [`THREAD_CAP`] alive at once (`spawn` and `fanout` go in
//! batches); `skewed` uses n pinned worker threads fed by one producer through
//! a crossbeam channel, the usual OS-thread way to spread items over cores.
//! [`crate::Sizes::for_system`] gives threads fewer operations.

use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};

use crate::{
    kib_per_task, pin_current_thread, rss_kib, spin, Measured, Runner, Sizes, Workload, THREAD_CAP,
};

/// Stack size of the many small threads of `ring`, `spawn` and `fanout`.
pub const SMALL_STACK: usize = 64 * 1024;

/// OS threads confined to the first `workers` CPUs.
pub struct ThreadsRunner {
    workers: usize,
}

impl ThreadsRunner {
    /// A runner whose threads run on the first `workers` CPUs.
    pub fn new(workers: usize) -> Self {
        ThreadsRunner { workers }
    }
}

impl Runner for ThreadsRunner {
    fn run(&self, w: Workload, s: &Sizes) -> Result<Measured, String> {
        let n = self.workers;
        let s = s.clone();
        if w == Workload::NiceFrames {
            return Err("threads have no nice_frames implementation".into());
        }
        on_driver(n, move || {
            Ok(match w {
                Workload::Yield => Measured::Time(yield_storm(s.yield_tasks, s.yields)),
                Workload::PingpongSame | Workload::PingpongCross => {
                    Measured::Time(pingpong(s.pingpong_rounds))
                }
                Workload::Ring => Measured::Time(ring(s.ring_size, s.ring_laps)),
                Workload::Spawn => Measured::Time(spawn_storm(s.spawn_count)),
                Workload::Skewed => Measured::Time(skewed(n, s.skewed_items, s.spin_iters)),
                Workload::Fanout => Measured::Time(fanout(s.fanout_children)),
                Workload::BlockedMemory => Measured::Value(blocked_memory(s.blocked)?),
                Workload::NiceFrames => unreachable!("rejected above"),
            })
        })
        .and_then(|r| r)
    }
}

/// Runs `f` on a new thread restricted to the first `workers` CPUs.
pub fn on_driver<T: Send + 'static>(
    workers: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    thread::spawn(move || {
        pin_current_thread(workers).map_err(|e| format!("sched_setaffinity: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "driver thread panicked".to_string())?
}

fn small_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn thread")
}

fn join_all<T>(hs: Vec<JoinHandle<T>>) {
    for h in hs {
        h.join().expect("thread panicked");
    }
}

/// `tasks` threads each calling `std::thread::yield_now()` `yields` times
/// (timed from a barrier after all are spawned).
pub fn yield_storm(tasks: usize, yields: usize) -> Duration {
    let go = Arc::new(Barrier::new(tasks + 1));
    let hs = (0..tasks)
        .map(|_| {
            let go = go.clone();
            small_thread(move || {
                go.wait();
                for _ in 0..yields {
                    thread::yield_now();
                }
            })
        })
        .collect();
    go.wait();
    let t0 = Instant::now();
    join_all(hs);
    t0.elapsed()
}

/// Round trips between the driver and one partner thread over two
/// `bounded(0)` channels (on 1 CPU for `pingpong_same`, 2 for `pingpong_cross`).
pub fn pingpong(rounds: usize) -> Duration {
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    let partner = thread::spawn(move || {
        for _ in 0..rounds {
            let v = ping_rx.recv().expect("ping closed");
            pong_tx.send(v + 1).expect("pong closed");
        }
    });
    let t0 = Instant::now();
    let mut v = 0;
    for _ in 0..rounds {
        ping_tx.send(v).expect("ping closed");
        v = pong_rx.recv().expect("pong closed");
    }
    let el = t0.elapsed();
    assert_eq!(v, rounds as u64);
    partner.join().expect("partner panicked");
    el
}

/// A ring of `size` threads (the driver included) linked by `bounded(0)`.
pub fn ring(size: usize, laps: usize) -> Duration {
    let size = size.clamp(2, THREAD_CAP);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..size).map(|_| bounded::<u64>(0)).unzip();
    let mut rxs: Vec<Option<_>> = rxs.into_iter().map(Some).collect();
    let hs = (1..size)
        .map(|k| {
            let input = rxs[k].take().expect("receiver");
            let output = txs[(k + 1) % size].clone();
            small_thread(move || {
                for _ in 0..laps {
                    let v = input.recv().expect("ring closed");
                    output.send(v + 1).expect("ring closed");
                }
            })
        })
        .collect();
    let back = rxs[0].take().expect("receiver");
    let t0 = Instant::now();
    let mut tok = 0u64;
    for _ in 0..laps {
        txs[1].send(tok).expect("ring closed");
        tok = back.recv().expect("ring closed");
    }
    let el = t0.elapsed();
    assert_eq!(tok, ((size - 1) * laps) as u64);
    join_all(hs);
    el
}

/// Spawn `count` trivial threads and join them, at most [`THREAD_CAP`] at once.
pub fn spawn_storm(count: usize) -> Duration {
    let t0 = Instant::now();
    let mut left = count;
    while left > 0 {
        let b = left.min(THREAD_CAP);
        left -= b;
        let hs = (0..b)
            .map(|i| {
                small_thread(move || {
                    std::hint::black_box(i);
                })
            })
            .collect();
        join_all(hs);
    }
    t0.elapsed()
}

/// `items` CPU-bound items of `spin_iters` iterations, produced by the driver
/// into a channel drained by `workers` threads.
pub fn skewed(workers: usize, items: usize, spin_iters: u64) -> Duration {
    let (tx, rx) = unbounded::<u64>();
    let go = Arc::new(Barrier::new(workers + 1));
    let hs = (0..workers)
        .map(|_| {
            let rx = rx.clone();
            let go = go.clone();
            thread::spawn(move || {
                go.wait();
                for it in rx {
                    spin(it);
                }
            })
        })
        .collect();
    go.wait();
    let t0 = Instant::now();
    for _ in 0..items {
        tx.send(spin_iters).expect("workers gone");
    }
    drop(tx);
    join_all(hs);
    t0.elapsed()
}

/// The driver spawns `children` threads (at most [`THREAD_CAP`] at once) that
/// each send one value on a shared `bounded(0)` channel; it receives and sums.
pub fn fanout(children: usize) -> Duration {
    let (tx, rx) = bounded::<u64>(0);
    let t0 = Instant::now();
    let mut sum = 0u64;
    let mut next = 0u64;
    while next < children as u64 {
        let end = (next + THREAD_CAP as u64).min(children as u64);
        let hs: Vec<_> = (next..end)
            .map(|i| {
                let tx = tx.clone();
                small_thread(move || {
                    let _ = tx.send(i);
                })
            })
            .collect();
        for _ in next..end {
            sum += rx.recv().expect("fanout closed");
        }
        join_all(hs);
        next = end;
    }
    let el = t0.elapsed();
    let n = children as u64;
    assert_eq!(sum, n * n.saturating_sub(1) / 2);
    el
}

/// Resident KiB per thread with `n` threads (default std stack size) each
/// blocked receiving on its own channel.
pub fn blocked_memory(n: usize) -> Result<f64, String> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| bounded::<u64>(0)).unzip();
    let started = Arc::new(Barrier::new(n + 1));
    let mut hs = Vec::with_capacity(n);
    let before = rss_kib();
    for rx in rxs {
        let started = started.clone();
        hs.push(thread::spawn(move || {
            started.wait();
            let _ = rx.recv();
        }));
    }
    started.wait();
    thread::sleep(Duration::from_millis(20));
    let after = rss_kib();
    for tx in &txs {
        let _ = tx.send(1);
    }
    join_all(hs);
    kib_per_task(before, after, n)
}
