//! The workloads on a rayon-core `ThreadPool` (`spawn`, `skewed` and `fanout`
//! only: rayon jobs have no stack of their own and cannot block or yield to
//! each other, so the channel workloads do not apply).

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rayon_core::{ThreadPool, ThreadPoolBuilder};

use crate::{spin, Measured, Runner, Sizes, Workload};

/// A rayon-core thread pool with a fixed number of threads.
pub struct RayonRunner {
    pool: ThreadPool,
}

impl RayonRunner {
    /// Builds a pool of `workers` threads.
    pub fn new(workers: usize) -> Result<Self, String> {
        let pool = ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .map_err(|e| format!("rayon pool: {e}"))?;
        Ok(RayonRunner { pool })
    }
}

impl Runner for RayonRunner {
    fn run(&self, w: Workload, s: &Sizes) -> Result<Measured, String> {
        let p = &self.pool;
        Ok(Measured::Time(match w {
            Workload::Spawn => spawn_storm(p, s.spawn_count),
            Workload::Skewed => skewed(p, s.skewed_items, s.spin_iters),
            Workload::Fanout => fanout(p, s.fanout_children),
            _ => return Err(format!("rayon has no {w} implementation")),
        }))
    }
}

/// `count` empty jobs spawned in a `scope` on the pool, which waits for all.
pub fn spawn_storm(pool: &ThreadPool, count: usize) -> Duration {
    let t0 = Instant::now();
    pool.scope(|s| {
        for i in 0..count {
            s.spawn(move |_| {
                std::hint::black_box(i);
            });
        }
    });
    t0.elapsed()
}

/// `items` CPU-bound jobs of `spin_iters` iterations, all spawned by one job.
pub fn skewed(pool: &ThreadPool, items: usize, spin_iters: u64) -> Duration {
    let t0 = Instant::now();
    pool.scope(|s| {
        for _ in 0..items {
            s.spawn(move |_| {
                spin(spin_iters);
            });
        }
    });
    t0.elapsed()
}

/// One job spawns `children` jobs that each send one value on a shared
/// (unbounded: a rayon job must not block) channel; the parent sums them,
/// running other jobs with `rayon_core::yield_now` while none is ready.
pub fn fanout(pool: &ThreadPool, children: usize) -> Duration {
    let t0 = Instant::now();
    let sum = pool.scope(|s| {
        let (tx, rx) = unbounded::<u64>();
        for i in 0..children as u64 {
            let tx = tx.clone();
            s.spawn(move |_| {
                let _ = tx.send(i);
            });
        }
        let mut sum = 0u64;
        let mut got = 0;
        while got < children {
            match rx.try_recv() {
                Ok(v) => {
                    sum += v;
                    got += 1;
                }
                Err(_) => {
                    if rayon_core::yield_now() != Some(rayon_core::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        sum
    });
    let el = t0.elapsed();
    let n = children as u64;
    assert_eq!(sum, n * n.saturating_sub(1) / 2);
    el
}
