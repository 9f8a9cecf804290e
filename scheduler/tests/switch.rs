//! The stack switch keeps what the compiler keeps live across it: integer
//! and floating-point values, in registers or in the frame, at every kind
//! of switch (to the worker loop, straight to another tasklet, to and from
//! worker 0's main tasklet), and frames deeper in the stack.

mod support;

use stackless_scheduler::{be_nice, run, run_nice, schedule, spawn, Tasklet};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use support::{sched, with_timeout};

/// Twelve integers and eight floats derived from `seed`, all live across
/// `switch()`, which is called `rounds` times; returns their checksum.
fn hold_across(seed: u64, rounds: u32, switch: fn()) -> (u64, f64) {
    let mut a = [0u64; 12];
    for (i, x) in a.iter_mut().enumerate() {
        *x = black_box(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64) << 40);
    }
    let mut f = [0f64; 8];
    for (i, x) in f.iter_mut().enumerate() {
        *x = black_box(seed as f64 * 0.5 + i as f64);
    }
    for r in 0..rounds {
        // Every value is used after the switch, so each is kept somewhere
        // across it (callee-saved registers, the frame, or spilled
        // caller-saved registers).
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] = a;
        let [f0, f1, f2, f3, f4, f5, f6, f7] = f;
        switch();
        a = black_box([
            a0 ^ a1.rotate_left(r),
            a1.wrapping_add(a2),
            a2 ^ a3,
            a3.wrapping_sub(a4),
            a4 ^ a5.rotate_right(3),
            a5.wrapping_add(a6),
            a6 ^ a7,
            a7.wrapping_add(a8),
            a8 ^ a9,
            a9.wrapping_sub(a10),
            a10 ^ a11,
            a11.wrapping_add(a0),
        ]);
        f = black_box([
            f0 + f1,
            f1 * 0.5,
            f2 - f3,
            f3 + 1.0,
            f4 * f5,
            f5 - 0.25,
            f6 + f7,
            f7 * 2.0,
        ]);
    }
    (
        a.iter().fold(0u64, |s, x| s.rotate_left(7) ^ x),
        f.iter().sum(),
    )
}

/// The same computation with no switch at all: what every run must match.
fn expected(seed: u64, rounds: u32) -> (u64, f64) {
    hold_across(seed, rounds, || {})
}

/// Sums `depth` frames, each holding values across a switch before and
/// after the deeper call.
fn deep(depth: u32, switch: fn()) -> u64 {
    let mine = black_box(u64::from(depth) * 7 + 3);
    switch();
    if depth == 0 {
        return mine;
    }
    let below = deep(depth - 1, switch);
    switch();
    black_box(mine + below)
}

fn deep_expected(depth: u32) -> u64 {
    (0..=depth).map(|d| u64::from(d) * 7 + 3).sum()
}

/// What each tasklet found: (seed, integers, floats, frames).
type Found = Arc<Mutex<Vec<(u64, u64, f64, u64)>>>;

fn check(found: &Found, n: usize, rounds: u32, depth: u32) {
    let found = found.lock().unwrap();
    assert_eq!(found.len(), n, "every tasklet reported");
    for &(seed, a, f, d) in found.iter() {
        let (ea, ef) = expected(seed, rounds);
        assert_eq!(a, ea, "integers of tasklet {seed}");
        assert_eq!(f.to_bits(), ef.to_bits(), "floats of tasklet {seed}");
        assert_eq!(d, deep_expected(depth), "frames of tasklet {seed}");
    }
}

/// Spawns `n` tasklets that hold values across `rounds` switches and
/// `depth` frames, each reporting what it found.
fn spawn_holders(n: u64, rounds: u32, depth: u32, switch: fn()) -> (Found, Vec<Tasklet>) {
    let found: Found = Arc::default();
    let ts = (0..n)
        .map(|seed| {
            let found = found.clone();
            spawn(move || {
                let (a, f) = hold_across(seed, rounds, switch);
                let d = deep(depth, switch);
                found.lock().unwrap().push((seed, a, f, d));
            })
        })
        .collect();
    (found, ts)
}

fn check_tasklets(workers: usize, switch: fn(), frame_loop: bool) {
    let s = sched(workers);
    s.enter(|| {
        let (found, ts) = spawn_holders(8, 50, 20, switch);
        if frame_loop {
            // Each tasklet is nice at most 50 + 41 times.
            for _ in 0..200 {
                run_nice();
                run();
            }
        }
        for t in ts {
            t.join().unwrap();
        }
        check(&found, 8, 50, 20);
    });
}

#[test]
fn values_survive_schedule_one_worker() {
    with_timeout(60, || check_tasklets(1, schedule, false));
}

#[test]
fn values_survive_schedule_two_workers() {
    with_timeout(60, || check_tasklets(2, schedule, false));
}

#[test]
fn values_survive_be_nice() {
    with_timeout(60, || check_tasklets(1, be_nice, true));
}

#[test]
fn values_survive_on_main_and_tasklets_alike() {
    // Worker 0's main tasklet switches straight to tasklets and back while
    // it holds its own values.
    with_timeout(60, || {
        let s = sched(1);
        s.enter(|| {
            let (found, ts) = spawn_holders(3, 30, 30, schedule);
            let mine = hold_across(99, 30, schedule);
            assert_eq!(mine.0, expected(99, 30).0);
            assert_eq!(mine.1.to_bits(), expected(99, 30).1.to_bits());
            assert_eq!(deep(30, schedule), deep_expected(30));
            for t in ts {
                t.join().unwrap();
            }
            check(&found, 3, 30, 30);
        });
    });
}
