//! Benchmark workloads shared by the criterion benches and the `scaling` binary.
//!
//! Every workload exists once per system, in its own module
//! ([`stackless_impl`], [`tokio_impl`], [`may_impl`], [`threads_impl`],
//! [`rayon_impl`]; [`go`] builds and runs the Go programs under `benches/go/`).
//! Each workload function runs the whole workload once and returns the
//! wall-clock time of the measured part (measured with [`Instant`] around the
//! workload), or the resident memory per blocked task for `blocked_memory`.
//! [`measure`] runs one (workload, system, workers) cell `runs` times and
//! converts each run into the reported unit.

#![warn(missing_docs)]

use std::fmt;
use std::time::{Duration, Instant};

pub mod go;
pub mod may_impl;
pub mod rayon_impl;
pub mod stackless_impl;
pub mod threads_impl;
pub mod tokio_impl;

/// A benchmark workload (the names are the ones printed and accepted by `--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// Many tasks each yielding many times; ns per yield.
    Yield,
    /// Two tasks ping-ponging over unbuffered channels on one worker; ns per round trip.
    PingpongSame,
    /// Two tasks ping-ponging with the two sides on different workers; ns per round trip.
    PingpongCross,
    /// A token passed around a ring of tasks connected by channels; ns per hop.
    Ring,
    /// Spawn many trivial tasks and wait for all of them; ns per task.
    Spawn,
    /// CPU-bound items of ~10 µs all spawned from one task (needs stealing); ns per item.
    Skewed,
    /// A parent spawns children that each send one result on a shared channel; ns per child.
    Fanout,
    /// Nice tasklets woken once per frame by `run_nice(); run();`; ns per tasklet per frame.
    NiceFrames,
    /// Resident memory per task blocked on its own channel; KiB per task.
    BlockedMemory,
}

impl Workload {
    /// All workloads, in table order.
    pub const ALL: [Workload; 9] = [
        Workload::Yield,
        Workload::PingpongSame,
        Workload::PingpongCross,
        Workload::Ring,
        Workload::Spawn,
        Workload::Skewed,
        Workload::Fanout,
        Workload::NiceFrames,
        Workload::BlockedMemory,
    ];

    /// The workload's name as used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Yield => "yield",
            Workload::PingpongSame => "pingpong_same",
            Workload::PingpongCross => "pingpong_cross",
            Workload::Ring => "ring",
            Workload::Spawn => "spawn",
            Workload::Skewed => "skewed",
            Workload::Fanout => "fanout",
            Workload::NiceFrames => "nice_frames",
            Workload::BlockedMemory => "blocked_memory",
        }
    }

    /// Parses a workload name.
    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    /// The unit of the reported value.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::BlockedMemory => "KiB/tasklet",
            _ => "ns/op",
        }
    }

    /// Whether the workload is measured at this worker count (`pingpong_same`
    /// only at 1 worker, `pingpong_cross` only at 2).
    pub fn runs_at(self, workers: usize) -> bool {
        match self {
            Workload::PingpongSame => workers == 1,
            Workload::PingpongCross => workers == 2,
            _ => true,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A system measured against stackless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    /// This project.
    Stackless,
    /// tokio: multi-thread runtime (current_thread for 1 worker).
    Tokio,
    /// may 0.3 stackful coroutines.
    May,
    /// std OS threads + crossbeam-channel.
    Threads,
    /// rayon-core thread pool (spawn, skewed, fanout only).
    Rayon,
    /// Go goroutines (when `go` is on PATH).
    Go,
}

impl System {
    /// All systems, in table order.
    pub const ALL: [System; 6] = [
        System::Stackless,
        System::Tokio,
        System::May,
        System::Threads,
        System::Rayon,
        System::Go,
    ];

    /// The system's name as used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            System::Stackless => "stackless",
            System::Tokio => "tokio",
            System::May => "may",
            System::Threads => "threads",
            System::Rayon => "rayon",
            System::Go => "go",
        }
    }

    /// Parses a system name.
    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether this system has an implementation of `w`.
    pub fn supports(self, w: Workload) -> bool {
        match self {
            System::Stackless => true,
            System::Rayon => matches!(w, Workload::Spawn | Workload::Skewed | Workload::Fanout),
            System::Tokio | System::May | System::Threads | System::Go => w != Workload::NiceFrames,
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Workload sizes. [`Sizes::quick`] and [`Sizes::full`] are the two presets;
/// [`Sizes::for_system`] shrinks the counts where a system (OS threads) is
/// orders of magnitude slower, since the result is per operation anyway.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizes {
    /// `yield`: number of tasks.
    pub yield_tasks: usize,
    /// `yield`: yields per task.
    pub yields: usize,
    /// `pingpong_*`: round trips.
    pub pingpong_rounds: usize,
    /// `ring`: ring members (the measuring task included).
    pub ring_size: usize,
    /// `ring`: laps of the token.
    pub ring_laps: usize,
    /// `spawn`: tasks spawned.
    pub spawn_count: usize,
    /// `skewed`: CPU-bound items.
    pub skewed_items: usize,
    /// `skewed`: spin-loop iterations per item (calibrated to ~10 µs).
    pub spin_iters: u64,
    /// `fanout`: children.
    pub fanout_children: usize,
    /// `nice_frames`: nice tasklets.
    pub nice_tasklets: usize,
    /// `nice_frames`: frames.
    pub nice_frames: usize,
    /// `blocked_memory`: tasks blocked at once.
    pub blocked: usize,
}

/// Target duration of one `skewed` item.
pub const SKEWED_ITEM: Duration = Duration::from_micros(10);

/// Most OS threads alive at once in the `threads` implementations.
pub const THREAD_CAP: usize = 1000;

impl Sizes {
    /// The `--quick` sizes (the whole quick run stays well under 3 minutes on 2 cores).
    pub fn quick() -> Sizes {
        Sizes {
            yield_tasks: 100,
            yields: 5_000,
            pingpong_rounds: 20_000,
            ring_size: 1_000,
            ring_laps: 100,
            spawn_count: 100_000,
            skewed_items: 2_000,
            spin_iters: 0,
            fanout_children: 10_000,
            nice_tasklets: 10_000,
            nice_frames: 10,
            blocked: 20_000,
        }
    }

    /// The full sizes.
    pub fn full() -> Sizes {
        Sizes {
            yield_tasks: 100,
            yields: 10_000,
            pingpong_rounds: 200_000,
            ring_size: 1_000,
            ring_laps: 1_000,
            spawn_count: 1_000_000,
            skewed_items: 10_000,
            spin_iters: 0,
            fanout_children: 10_000,
            nice_tasklets: 10_000,
            nice_frames: 100,
            blocked: 20_000,
        }
    }

    /// The sizes actually used for `system`: OS threads get fewer operations
    /// (a thread switch costs microseconds, a thread spawn tens of them), and
    /// at most 5,000 threads are blocked at once for `blocked_memory`.
    pub fn for_system(&self, system: System) -> Sizes {
        let mut s = self.clone();
        if system == System::Threads {
            s.yields = (s.yields / 10).max(10);
            s.pingpong_rounds = (s.pingpong_rounds / 10).max(100);
            s.ring_laps = (s.ring_laps / 10).max(2);
            s.spawn_count = (s.spawn_count / 100).max(100);
            s.fanout_children = (s.fanout_children / 5).max(100);
            s.blocked = s.blocked.min(5_000);
        }
        s
    }

    /// Operations in one run of `w` (the divisor of the elapsed time).
    pub fn ops(&self, w: Workload) -> u64 {
        (match w {
            Workload::Yield => self.yield_tasks * self.yields,
            Workload::PingpongSame | Workload::PingpongCross => self.pingpong_rounds,
            Workload::Ring => self.ring_size * self.ring_laps,
            Workload::Spawn => self.spawn_count,
            Workload::Skewed => self.skewed_items,
            Workload::Fanout => self.fanout_children,
            Workload::NiceFrames => self.nice_tasklets * self.nice_frames,
            Workload::BlockedMemory => 1,
        }) as u64
    }
}

/// Spins for `iters` iterations of a xorshift step (a serial dependency chain
/// the compiler cannot fold) and returns the state.
#[inline(never)]
pub fn spin(iters: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// Returns the number of [`spin`] iterations that take about `target`
/// (median of 11 probes).
pub fn calibrate_spin(target: Duration) -> u64 {
    const PROBE: u64 = 1 << 18;
    let mut per_iter: Vec<f64> = (0..11)
        .map(|_| {
            let t0 = Instant::now();
            spin(PROBE);
            t0.elapsed().as_nanos() as f64 / PROBE as f64
        })
        .collect();
    per_iter.sort_by(f64::total_cmp);
    ((target.as_nanos() as f64 / per_iter[per_iter.len() / 2]) as u64).max(1)
}

/// The resident set size of this process in KiB (VmRSS from /proc/self/status).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// KiB of resident memory per task between two [`rss_kib`] readings.
pub fn kib_per_task(before: Option<u64>, after: Option<u64>, tasks: usize) -> Result<f64, String> {
    match (before, after) {
        (Some(b), Some(a)) => Ok((a as f64 - b as f64) / tasks as f64),
        _ => Err("cannot read VmRSS from /proc/self/status".into()),
    }
}

/// The CPUs this thread may run on (sched_getaffinity), in increasing order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, all-zero is a valid (empty) set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..available_cores()).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Restricts the calling thread (and the threads it spawns afterwards) to the
/// first `n` CPUs it is allowed to run on. This is how the `threads` system
/// gets "n workers".
pub fn pin_current_thread(n: usize) -> std::io::Result<()> {
    let cpus = allowed_cpus();
    // SAFETY: as in allowed_cpus; CPU_SET only writes inside the set for
    // indices below CPU_SETSIZE, which allowed_cpus guarantees.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().take(n.max(1)) {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The number of cores available to this process.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Converts one run's elapsed time into ns per operation.
pub fn ns_per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

/// One system's runtime, built once for a worker count and reused for
/// every run of a cell (and by the criterion benches).
pub trait Runner {
    /// Runs `workload` once with `sizes` and returns what it measured.
    fn run(&self, workload: Workload, sizes: &Sizes) -> Result<Measured, String>;
}

/// Builds the in-process runner of `system` with `workers` workers. `go` has
/// none (it runs as a separate program, see [`go::run`]).
pub fn runner(system: System, workers: usize) -> Result<Box<dyn Runner>, String> {
    Ok(match system {
        System::Stackless => Box::new(stackless_impl::StacklessRunner::new(workers)?),
        System::Tokio => Box::new(tokio_impl::TokioRunner::new(workers)?),
        System::May => Box::new(may_impl::MayRunner::new(workers)?),
        System::Threads => Box::new(threads_impl::ThreadsRunner::new(workers)),
        System::Rayon => Box::new(rayon_impl::RayonRunner::new(workers)?),
        System::Go => return Err("go runs as a separate program (go::run)".into()),
    })
}

/// The result of one run of a workload.
#[derive(Clone, Copy, Debug)]
pub enum Measured {
    /// Elapsed time of the measured part (divided by the op count when reported).
    Time(Duration),
    /// A value already in the workload's unit (KiB per task for `blocked_memory`).
    Value(f64),
}

impl Measured {
    /// The reported value: ns per op for a time, the value itself otherwise.
    pub fn per_op(self, workload: Workload, sizes: &Sizes) -> f64 {
        match self {
            Measured::Time(d) => ns_per_op(d, sizes.ops(workload)),
            Measured::Value(v) => v,
        }
    }
}

/// Runs one cell `runs` times in this process and returns one value per run
/// (ns/op, or KiB/tasklet for `blocked_memory`). Errors name what failed.
///
/// `may`'s configuration is global and fixed at its first use, so a process
/// can only measure may at one worker count, and `blocked_memory` needs a
/// fresh process per run to be meaningful; the `scaling` binary therefore
/// runs every cell in a child process. `go` is built and run through [`go`].
pub fn measure(
    workload: Workload,
    system: System,
    workers: usize,
    sizes: &Sizes,
    runs: usize,
) -> Result<Vec<f64>, String> {
    if !system.supports(workload) {
        return Err(format!("{system} has no {workload} implementation"));
    }
    let sizes = sizes.for_system(system);
    if system == System::Go {
        let bin = go::build(None)?;
        return go::run(&bin, workload, workers, &sizes, runs, go::DEFAULT_TIMEOUT);
    }
    let r = runner(system, workers)?;
    (0..runs)
        .map(|_| r.run(workload, &sizes).map(|m| m.per_op(workload, &sizes)))
        .collect()
}

/// Runs `cmd` with a wall-clock limit and returns its stdout, or an error
/// holding the most telling line of its stderr (a panic message if any).
pub fn run_command(cmd: &mut std::process::Command, timeout: Duration) -> Result<String, String> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for child: {e}")),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        None => Err(format!("timed out after {} s", timeout.as_secs())),
        Some(s) if s.success() => Ok(stdout),
        Some(s) => {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let why = match lines.iter().position(|l| l.contains("panicked at")) {
                Some(i) => {
                    // Drop "thread 'name' (tid) " so equal panics compare equal.
                    let l = lines[i];
                    let mut m = l[l.find("panicked at").unwrap_or(0)..].trim().to_string();
                    if let Some(next) = lines.get(i + 1) {
                        m.push(' ');
                        m.push_str(next.trim());
                    }
                    m
                }
                None => lines
                    .last()
                    .map_or_else(String::new, |l| l.trim().to_string()),
            };
            Err(format!("exited with {s}: {why}"))
        }
    }
}

/// Parses one number per non-empty line.
pub fn parse_values(stdout: &str) -> Result<Vec<f64>, String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<f64>()
                .map_err(|e| format!("bad value {l:?}: {e}"))
        })
        .collect()
}

/// The median of `v` (the mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
        for s in System::ALL {
            assert_eq!(System::parse(s.name()), Some(s));
        }
    }

    #[test]
    fn median_works() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn spin_calibrates() {
        let it = calibrate_spin(Duration::from_micros(10));
        assert!(it > 0);
    }

    #[test]
    fn rss_is_readable() {
        assert!(rss_kib().unwrap() > 0);
    }
}
