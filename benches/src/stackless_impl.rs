//! The workloads on stackless tasklets and channels.
//!
//! Every workload runs inside `Scheduler::enter`, with the main tasklet (on
//! worker 0) as the parent that spawns, joins and measures.

use std::time::{Duration, Instant};

use stackless::{
    be_nice, run, run_nice, schedule, spawn, Channel, Scheduler, Tasklet, TaskletBuilder,
};

use crate::{kib_per_task, rss_kib, spin, Measured, Runner, Sizes, Workload};

/// A stackless scheduler with a fixed number of workers.
pub struct StacklessRunner {
    sched: Scheduler,
    workers: usize,
}

impl StacklessRunner {
    /// Builds a scheduler with `workers` workers.
    pub fn new(workers: usize) -> Result<Self, String> {
        let sched = Scheduler::builder()
            .workers(workers)
            .build()
            .map_err(|e| format!("Scheduler::build: {e}"))?;
        Ok(StacklessRunner { sched, workers })
    }

    /// The scheduler (to run other code on it).
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }
}

impl Runner for StacklessRunner {
    fn run(&self, w: Workload, s: &Sizes) -> Result<Measured, String> {
        let sc = &self.sched;
        let t = match w {
            Workload::Yield => yield_storm(sc, s.yield_tasks, s.yields)?,
            Workload::PingpongSame => {
                if self.workers != 1 {
                    return Err("pingpong_same is measured with 1 worker only".into());
                }
                pingpong(sc, s.pingpong_rounds, false)?
            }
            Workload::PingpongCross => pingpong(sc, s.pingpong_rounds, true)?,
            Workload::Ring => ring(sc, s.ring_size, s.ring_laps)?,
            Workload::Spawn => spawn_storm(sc, s.spawn_count)?,
            Workload::Skewed => skewed(sc, s.skewed_items, s.spin_iters)?,
            Workload::Fanout => fanout(sc, s.fanout_children)?,
            Workload::NiceFrames => nice_frames(sc, s.nice_tasklets, s.nice_frames)?,
            Workload::BlockedMemory => return blocked_memory(sc, s.blocked).map(Measured::Value),
        };
        Ok(Measured::Time(t))
    }
}

fn join_all(ts: impl IntoIterator<Item = Tasklet>) -> Result<(), String> {
    for t in ts {
        t.join().map_err(|e| format!("join: {e:?}"))?;
    }
    Ok(())
}

/// `tasks` tasklets each calling `schedule()` `yields` times; the main tasklet
/// joins them all.
pub fn yield_storm(s: &Scheduler, tasks: usize, yields: usize) -> Result<Duration, String> {
    s.enter(|| {
        let t0 = Instant::now();
        let ts: Vec<Tasklet> = (0..tasks)
            .map(|_| {
                spawn(move || {
                    for _ in 0..yields {
                        schedule();
                    }
                })
            })
            .collect();
        join_all(ts)?;
        Ok(t0.elapsed())
    })
}

/// Round trips between the main tasklet and one spawned tasklet over two
/// unbuffered channels.
///
/// With `cross` false the scheduler should have 1 worker, so both sides share
/// it. With `cross` true (2 workers) the partner is placed on worker 1 with
/// `TaskletBuilder::worker(1)` (never stolen, never moved), while the main
/// tasklet runs on worker 0.
pub fn pingpong(s: &Scheduler, rounds: usize, cross: bool) -> Result<Duration, String> {
    s.enter(|| {
        let ping: Channel<u64> = Channel::new();
        let pong: Channel<u64> = Channel::new();
        let (p, q) = (ping.clone(), pong.clone());
        let body = move || {
            for _ in 0..rounds {
                let Ok(v) = p.receive() else { return };
                if q.send(v + 1).is_err() {
                    return;
                }
            }
        };
        let partner = if cross {
            TaskletBuilder::new()
                .worker(1)
                .spawn(body)
                .map_err(|e| format!("spawn on worker 1: {e}"))?
        } else {
            spawn(body)
        };
        let t0 = Instant::now();
        let mut v = 0u64;
        for _ in 0..rounds {
            ping.send(v).map_err(|e| format!("send: {e:?}"))?;
            v = pong.receive().map_err(|e| format!("receive: {e:?}"))?;
        }
        let el = t0.elapsed();
        if v != rounds as u64 {
            return Err(format!("pingpong ended with {v}, expected {rounds}"));
        }
        partner.join().map_err(|e| format!("join: {e:?}"))?;
        Ok(el)
    })
}

/// A ring of `size` members (the main tasklet and `size - 1` tasklets), each
/// receiving on its own channel and sending to the next; `laps` laps of one
/// token. The elapsed time covers `size * laps` hops.
pub fn ring(s: &Scheduler, size: usize, laps: usize) -> Result<Duration, String> {
    s.enter(|| {
        let size = size.max(2);
        let chans: Vec<Channel<u64>> = (0..size).map(|_| Channel::new()).collect();
        let ts: Vec<Tasklet> = (1..size)
            .map(|k| {
                let input = chans[k].clone();
                let output = chans[(k + 1) % size].clone();
                spawn(move || {
                    for _ in 0..laps {
                        let Ok(v) = input.receive() else { return };
                        if output.send(v + 1).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut tok = 0u64;
        for _ in 0..laps {
            chans[1].send(tok).map_err(|e| format!("send: {e:?}"))?;
            tok = chans[0].receive().map_err(|e| format!("receive: {e:?}"))?;
        }
        let el = t0.elapsed();
        if tok != ((size - 1) * laps) as u64 {
            return Err(format!("ring token {tok}, expected {}", (size - 1) * laps));
        }
        join_all(ts)?;
        Ok(el)
    })
}

/// Spawn `count` trivial tasklets from the main tasklet, then join them all.
pub fn spawn_storm(s: &Scheduler, count: usize) -> Result<Duration, String> {
    s.enter(|| {
        let t0 = Instant::now();
        let ts: Vec<Tasklet> = (0..count)
            .map(|i| {
                spawn(move || {
                    std::hint::black_box(i);
                })
            })
            .collect();
        join_all(ts)?;
        Ok(t0.elapsed())
    })
}

/// `items` CPU-bound tasklets of `spin_iters` spin iterations (~10 µs), all
/// spawned by the main tasklet on worker 0; other workers must steal them.
pub fn skewed(s: &Scheduler, items: usize, spin_iters: u64) -> Result<Duration, String> {
    s.enter(|| {
        let t0 = Instant::now();
        let ts: Vec<Tasklet> = (0..items)
            .map(|_| {
                spawn(move || {
                    spin(spin_iters);
                })
            })
            .collect();
        join_all(ts)?;
        Ok(t0.elapsed())
    })
}

/// The main tasklet spawns `children` tasklets that each send one value on a
/// shared unbuffered channel; it receives and sums them all.
pub fn fanout(s: &Scheduler, children: usize) -> Result<Duration, String> {
    s.enter(|| {
        let c: Channel<u64> = Channel::new();
        let t0 = Instant::now();
        let ts: Vec<Tasklet> = (0..children as u64)
            .map(|i| {
                let c = c.clone();
                spawn(move || {
                    let _ = c.send(i);
                })
            })
            .collect();
        let mut sum = 0u64;
        for _ in 0..children {
            sum += c.receive().map_err(|e| format!("receive: {e:?}"))?;
        }
        let el = t0.elapsed();
        let n = children as u64;
        if sum != n * n.saturating_sub(1) / 2 {
            return Err(format!("fanout sum {sum} is wrong"));
        }
        join_all(ts)?;
        Ok(el)
    })
}

/// `tasklets` nice tasklets that loop on `be_nice()`, driven by the frame loop
/// `run_nice(); run();` for `frames` timed frames: the steady state of a
/// frame loop. Before them, an untimed `run()` starts the tasklets (each
/// becomes nice), then one untimed warm-up frame runs: starting 10,000
/// tasklets faults in (and the kernel zeroes) 10,000 stack pages, which
/// leaves the records cold, so the first frame after it costs 2–3× a later
/// one. After them, one more frame lets the tasklets end.
pub fn nice_frames(s: &Scheduler, tasklets: usize, frames: usize) -> Result<Duration, String> {
    s.enter(|| {
        let ts: Vec<Tasklet> = (0..tasklets)
            .map(|_| {
                spawn(move || {
                    for _ in 0..frames + 2 {
                        be_nice();
                    }
                })
            })
            .collect();
        run();
        run_nice();
        run();
        let t0 = Instant::now();
        for f in 0..frames {
            let woke = run_nice();
            if woke != tasklets {
                return Err(format!(
                    "frame {f}: run_nice woke {woke}, expected {tasklets}"
                ));
            }
            run();
        }
        let el = t0.elapsed();
        run_nice();
        run();
        join_all(ts)?;
        Ok(el)
    })
}

/// Resident KiB per tasklet with `n` tasklets each blocked receiving on its own
/// channel (VmRSS after `run()` has run them all to their receive, minus VmRSS
/// before spawning; the channels exist before the first reading). Meaningful
/// only as the first thing a fresh process does.
pub fn blocked_memory(s: &Scheduler, n: usize) -> Result<f64, String> {
    s.enter(|| {
        let chans: Vec<Channel<u64>> = (0..n).map(|_| Channel::new()).collect();
        let mut ts: Vec<Tasklet> = Vec::with_capacity(n);
        let before = rss_kib();
        for c in &chans {
            let c = c.clone();
            ts.push(spawn(move || {
                let _ = c.receive();
            }));
        }
        run();
        let after = rss_kib();
        for c in &chans {
            c.send(1).map_err(|e| format!("send: {e:?}"))?;
        }
        join_all(ts)?;
        kib_per_task(before, after, n)
    })
}
