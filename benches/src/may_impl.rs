//! The workloads on may 0.3 stackful coroutines.
//!
//! may's configuration is process-global and fixed when its scheduler starts,
//! so one process can measure may at one worker count only ([`MayRunner::new`]
//! refuses a second, different count); the `scaling` binary runs each may
//! cell in its own child process. Each workload runs inside one coroutine
//! (the parent), joined from the calling thread. Coroutines use may's default
//! stack (0x1000 words = 32 KiB) and may's default core pinning. may's
//! channels (`may::sync::mpsc`) are unbounded: may has no rendezvous channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use may::coroutine::{self, JoinHandle};
use may::go;
use may::sync::mpsc;

use crate::{kib_per_task, rss_kib, spin, Measured, Runner, Sizes, Workload};

/// Most may coroutines alive at once in `spawn`: may allocates a guard-paged
/// stack (2 memory mappings) at spawn time, so a million unstarted coroutines
/// would exceed `vm.max_map_count`; `spawn` spawns and joins in batches.
pub const SPAWN_BATCH: usize = 10_000;

static CONFIGURED: Mutex<Option<usize>> = Mutex::new(None);

/// Handle on may's global runtime, configured for a worker count.
pub struct MayRunner {
    workers: usize,
}

impl MayRunner {
    /// Sets may's worker count. Fails if this process already configured may
    /// with a different count.
    pub fn new(workers: usize) -> Result<Self, String> {
        let mut c = CONFIGURED.lock().unwrap_or_else(|e| e.into_inner());
        match *c {
            Some(n) if n != workers => {
                return Err(format!(
                "may is already configured with {n} workers in this process (its config is global)"
            ))
            }
            Some(_) => {}
            None => {
                may::config().set_workers(workers);
                *c = Some(workers);
            }
        }
        Ok(MayRunner { workers })
    }
}

impl Runner for MayRunner {
    fn run(&self, w: Workload, s: &Sizes) -> Result<Measured, String> {
        let t = match w {
            Workload::Yield => yield_storm(s.yield_tasks, s.yields)?,
            Workload::PingpongSame => {
                if self.workers != 1 {
                    return Err("pingpong_same is measured with 1 worker only".into());
                }
                pingpong(s.pingpong_rounds, false)?
            }
            Workload::PingpongCross => pingpong(s.pingpong_rounds, true)?,
            Workload::Ring => ring(s.ring_size, s.ring_laps)?,
            Workload::Spawn => spawn_storm(s.spawn_count)?,
            Workload::Skewed => skewed(s.skewed_items, s.spin_iters)?,
            Workload::Fanout => fanout(s.fanout_children)?,
            Workload::BlockedMemory => return blocked_memory(s.blocked).map(Measured::Value),
            Workload::NiceFrames => return Err("may has no nice_frames implementation".into()),
        };
        Ok(Measured::Time(t))
    }
}

fn panic_msg(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "coroutine panicked".to_string())
}

/// Runs `f` in a coroutine and waits for it from the calling thread.
pub fn on_coroutine<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    go!(f).join().map_err(panic_msg)
}

fn join_all(hs: Vec<JoinHandle<()>>) {
    for h in hs {
        h.join().expect("coroutine panicked");
    }
}

/// `tasks` coroutines each calling `coroutine::yield_now()` `yields` times.
pub fn yield_storm(tasks: usize, yields: usize) -> Result<Duration, String> {
    on_coroutine(move || {
        let t0 = Instant::now();
        let hs = (0..tasks)
            .map(|_| {
                go!(move || {
                    for _ in 0..yields {
                        coroutine::yield_now();
                    }
                })
            })
            .collect();
        join_all(hs);
        t0.elapsed()
    })
}

/// Round trips between two coroutines over may mpsc channels. With `cross`
/// the measuring side is spawned with `Builder::id(0)` and the partner with
/// `Builder::id(1)` (may's way to place a coroutine on a worker). may puts a
/// coroutine woken from a worker on *that* worker's queue, so the two sides
/// may end up sharing a worker after the first exchange; may cannot pin.
pub fn pingpong(rounds: usize, cross: bool) -> Result<Duration, String> {
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let partner = move || {
        for _ in 0..rounds {
            let v = ping_rx.recv().expect("ping closed");
            pong_tx.send(v + 1).expect("pong closed");
        }
    };
    let driver = move || {
        let t0 = Instant::now();
        let mut v = 0;
        for _ in 0..rounds {
            ping_tx.send(v).expect("ping closed");
            v = pong_rx.recv().expect("pong closed");
        }
        let el = t0.elapsed();
        assert_eq!(v, rounds as u64);
        el
    };
    if cross {
        let d = go!(coroutine::Builder::new().id(0), driver).map_err(|e| e.to_string())?;
        let p = go!(coroutine::Builder::new().id(1), partner).map_err(|e| e.to_string())?;
        p.join().map_err(panic_msg)?;
        d.join().map_err(panic_msg)
    } else {
        on_coroutine(move || {
            let p = go!(partner);
            let el = driver();
            p.join().expect("partner panicked");
            el
        })
    }
}

/// A ring of `size` coroutines (the measuring one included); `laps` laps.
pub fn ring(size: usize, laps: usize) -> Result<Duration, String> {
    on_coroutine(move || {
        let size = size.max(2);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..size).map(|_| mpsc::channel::<u64>()).unzip();
        let mut rxs: Vec<Option<mpsc::Receiver<u64>>> = rxs.into_iter().map(Some).collect();
        let hs = (1..size)
            .map(|k| {
                let input = rxs[k].take().expect("receiver");
                let output = txs[(k + 1) % size].clone();
                go!(move || {
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
    })
}

/// Spawn `count` empty coroutines and join them, in batches of [`SPAWN_BATCH`].
pub fn spawn_storm(count: usize) -> Result<Duration, String> {
    on_coroutine(move || {
        let t0 = Instant::now();
        let mut left = count;
        while left > 0 {
            let b = left.min(SPAWN_BATCH);
            left -= b;
            let hs = (0..b)
                .map(|i| {
                    go!(move || {
                        std::hint::black_box(i);
                    })
                })
                .collect();
            join_all(hs);
        }
        t0.elapsed()
    })
}

/// `items` CPU-bound coroutines of `spin_iters` iterations, all spawned by one.
pub fn skewed(items: usize, spin_iters: u64) -> Result<Duration, String> {
    on_coroutine(move || {
        let t0 = Instant::now();
        let hs = (0..items)
            .map(|_| {
                go!(move || {
                    spin(spin_iters);
                })
            })
            .collect();
        join_all(hs);
        t0.elapsed()
    })
}

/// One coroutine spawns `children` coroutines that each send one value on a
/// shared (unbounded) channel; it receives and sums them.
pub fn fanout(children: usize) -> Result<Duration, String> {
    on_coroutine(move || {
        let (tx, rx) = mpsc::channel::<u64>();
        let t0 = Instant::now();
        let hs: Vec<JoinHandle<()>> = (0..children as u64)
            .map(|i| {
                let tx = tx.clone();
                go!(move || {
                    let _ = tx.send(i);
                })
            })
            .collect();
        let mut sum = 0u64;
        for _ in 0..children {
            sum += rx.recv().expect("fanout closed");
        }
        let el = t0.elapsed();
        let n = children as u64;
        assert_eq!(sum, n * n.saturating_sub(1) / 2);
        join_all(hs);
        el
    })
}

/// Resident KiB per coroutine with `n` coroutines each blocked on its own channel.
pub fn blocked_memory(n: usize) -> Result<f64, String> {
    on_coroutine(move || {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<u64>()).unzip();
        let started = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::with_capacity(n);
        let before = rss_kib();
        for rx in rxs {
            let started = started.clone();
            hs.push(go!(move || {
                started.fetch_add(1, Ordering::Relaxed);
                let _ = rx.recv();
            }));
        }
        // Sleep rather than yield: may runs a worker's local queue (where a
        // yielding coroutine goes) before its global queue (where spawns go),
        // so a yield loop on one worker would never let the spawns run.
        while started.load(Ordering::Relaxed) < n {
            coroutine::sleep(Duration::from_millis(1));
        }
        coroutine::sleep(Duration::from_millis(10));
        let after = rss_kib();
        for tx in &txs {
            let _ = tx.send(1);
        }
        join_all(hs);
        kib_per_task(before, after, n)
    })?
}
