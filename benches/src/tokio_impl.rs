//! The workloads on tokio: a `current_thread` runtime for 1 worker, a
//! multi-thread runtime with `worker_threads = n` otherwise.
//!
//! Each workload runs as one spawned task (so the parent is on a worker
//! thread, not on the thread that called `block_on`), which spawns, awaits
//! and measures. Channels are `tokio::sync::mpsc` with capacity 1, the
//! closest tokio has to an unbuffered rendezvous channel.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{kib_per_task, rss_kib, spin, Measured, Runner, Sizes, Workload};

/// A tokio runtime with a fixed number of workers.
pub struct TokioRunner {
    rt: Runtime,
    workers: usize,
}

impl TokioRunner {
    /// Builds a `current_thread` runtime for 1 worker, else a multi-thread
    /// runtime with `workers` worker threads.
    pub fn new(workers: usize) -> Result<Self, String> {
        Ok(TokioRunner {
            rt: runtime(workers).map_err(|e| format!("tokio runtime: {e}"))?,
            workers,
        })
    }
}

/// Builds the runtime used for `workers` workers.
pub fn runtime(workers: usize) -> std::io::Result<Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .build()
    }
}

impl Runner for TokioRunner {
    fn run(&self, w: Workload, s: &Sizes) -> Result<Measured, String> {
        let rt = &self.rt;
        let t = match w {
            Workload::Yield => yield_storm(rt, s.yield_tasks, s.yields),
            Workload::PingpongSame => {
                if self.workers != 1 {
                    return Err("pingpong_same is measured with 1 worker only".into());
                }
                pingpong_same(rt, s.pingpong_rounds)
            }
            Workload::PingpongCross => pingpong_cross(s.pingpong_rounds)?,
            Workload::Ring => ring(rt, s.ring_size, s.ring_laps),
            Workload::Spawn => spawn_storm(rt, s.spawn_count),
            Workload::Skewed => skewed(rt, s.skewed_items, s.spin_iters),
            Workload::Fanout => fanout(rt, s.fanout_children),
            Workload::BlockedMemory => return blocked_memory(rt, s.blocked).map(Measured::Value),
            Workload::NiceFrames => return Err("tokio has no nice_frames implementation".into()),
        };
        Ok(Measured::Time(t))
    }
}

/// Runs `f` as a task on the runtime's workers and returns its output.
pub fn on_worker<T: Send + 'static>(
    rt: &Runtime,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(async move { tokio::spawn(f).await.expect("workload task panicked") })
}

async fn join_all(hs: Vec<JoinHandle<()>>) {
    for h in hs {
        h.await.expect("task panicked");
    }
}

/// `tasks` tasks each calling `yield_now().await` `yields` times.
pub fn yield_storm(rt: &Runtime, tasks: usize, yields: usize) -> Duration {
    on_worker(rt, async move {
        let t0 = Instant::now();
        let hs = (0..tasks)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        join_all(hs).await;
        t0.elapsed()
    })
}

async fn pingpong_partner(rounds: usize, mut rx: mpsc::Receiver<u64>, tx: mpsc::Sender<u64>) {
    for _ in 0..rounds {
        let v = rx.recv().await.expect("ping closed");
        tx.send(v + 1).await.expect("pong closed");
    }
}

async fn pingpong_driver(
    rounds: usize,
    tx: mpsc::Sender<u64>,
    mut rx: mpsc::Receiver<u64>,
) -> Duration {
    let t0 = Instant::now();
    let mut v = 0;
    for _ in 0..rounds {
        tx.send(v).await.expect("ping closed");
        v = rx.recv().await.expect("pong closed");
    }
    let el = t0.elapsed();
    assert_eq!(v, rounds as u64);
    el
}

/// Round trips between two tasks on one `current_thread` runtime.
pub fn pingpong_same(rt: &Runtime, rounds: usize) -> Duration {
    on_worker(rt, async move {
        let (ping_tx, ping_rx) = mpsc::channel(1);
        let (pong_tx, pong_rx) = mpsc::channel(1);
        let partner = tokio::spawn(pingpong_partner(rounds, ping_rx, pong_tx));
        let el = pingpong_driver(rounds, ping_tx, pong_rx).await;
        partner.await.expect("partner panicked");
        el
    })
}

/// Round trips between two tasks forced onto different threads: tokio cannot
/// pin a task to a worker, so each side runs on its own thread with its own
/// `current_thread` runtime (two workers, one task each), and every message
/// wakes the other thread.
pub fn pingpong_cross(rounds: usize) -> Result<Duration, String> {
    let (ping_tx, ping_rx) = mpsc::channel(1);
    let (pong_tx, pong_rx) = mpsc::channel(1);
    let ready = Arc::new(Barrier::new(2));
    let r2 = ready.clone();
    let partner = std::thread::spawn(move || {
        let rt = runtime(1).expect("runtime");
        rt.block_on(async move {
            r2.wait();
            pingpong_partner(rounds, ping_rx, pong_tx).await
        })
    });
    let rt = runtime(1).map_err(|e| e.to_string())?;
    let el = rt.block_on(async move {
        ready.wait();
        pingpong_driver(rounds, ping_tx, pong_rx).await
    });
    partner
        .join()
        .map_err(|_| "partner thread panicked".to_string())?;
    Ok(el)
}

/// A ring of `size` tasks (the measuring task included) linked by capacity-1
/// channels; `laps` laps of one token.
pub fn ring(rt: &Runtime, size: usize, laps: usize) -> Duration {
    on_worker(rt, async move {
        let size = size.max(2);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..size).map(|_| mpsc::channel::<u64>(1)).unzip();
        let mut rxs: Vec<Option<mpsc::Receiver<u64>>> = rxs.into_iter().map(Some).collect();
        let hs = (1..size)
            .map(|k| {
                let mut input = rxs[k].take().expect("receiver");
                let output = txs[(k + 1) % size].clone();
                tokio::spawn(async move {
                    for _ in 0..laps {
                        let v = input.recv().await.expect("ring closed");
                        output.send(v + 1).await.expect("ring closed");
                    }
                })
            })
            .collect();
        let mut back = rxs[0].take().expect("receiver");
        let t0 = Instant::now();
        let mut tok = 0u64;
        for _ in 0..laps {
            txs[1].send(tok).await.expect("ring closed");
            tok = back.recv().await.expect("ring closed");
        }
        let el = t0.elapsed();
        assert_eq!(tok, ((size - 1) * laps) as u64);
        join_all(hs).await;
        el
    })
}

/// Spawn `count` empty tasks, then await all their handles.
pub fn spawn_storm(rt: &Runtime, count: usize) -> Duration {
    on_worker(rt, async move {
        let t0 = Instant::now();
        let hs = (0..count)
            .map(|i| {
                tokio::spawn(async move {
                    std::hint::black_box(i);
                })
            })
            .collect();
        join_all(hs).await;
        t0.elapsed()
    })
}

/// `items` CPU-bound tasks of `spin_iters` iterations, all spawned by one task.
pub fn skewed(rt: &Runtime, items: usize, spin_iters: u64) -> Duration {
    on_worker(rt, async move {
        let t0 = Instant::now();
        let hs = (0..items)
            .map(|_| {
                tokio::spawn(async move {
                    spin(spin_iters);
                })
            })
            .collect();
        join_all(hs).await;
        t0.elapsed()
    })
}

/// One task spawns `children` tasks that each send one value on a shared
/// capacity-1 channel; it receives and sums them.
pub fn fanout(rt: &Runtime, children: usize) -> Duration {
    on_worker(rt, async move {
        let (tx, mut rx) = mpsc::channel::<u64>(1);
        let t0 = Instant::now();
        let hs: Vec<JoinHandle<()>> = (0..children as u64)
            .map(|i| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(i).await;
                })
            })
            .collect();
        let mut sum = 0u64;
        for _ in 0..children {
            sum += rx.recv().await.expect("fanout closed");
        }
        let el = t0.elapsed();
        let n = children as u64;
        assert_eq!(sum, n * n.saturating_sub(1) / 2);
        join_all(hs).await;
        el
    })
}

/// Resident KiB per task with `n` tasks each awaiting its own channel.
pub fn blocked_memory(rt: &Runtime, n: usize) -> Result<f64, String> {
    on_worker(rt, async move {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<u64>(1)).unzip();
        let started = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::with_capacity(n);
        let before = rss_kib();
        for mut rx in rxs {
            let started = started.clone();
            hs.push(tokio::spawn(async move {
                started.fetch_add(1, Ordering::Relaxed);
                let _ = rx.recv().await;
            }));
        }
        while started.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let after = rss_kib();
        for tx in &txs {
            let _ = tx.send(1).await;
        }
        join_all(hs).await;
        kib_per_task(before, after, n)
    })
}
