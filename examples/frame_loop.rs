//! EVE Online's "BeNice" main loop on stackless.
//!
//! Game-object tasklets do one step of work per frame and then call
//! `be_nice()`. A loader tasklet also waits for (simulated) I/O each frame
//! with `sleep()`. The main loop runs one frame at a time:
//!
//! * `run_nice()` releases every tasklet that was nice before the call;
//! * `run()` runs until nothing is runnable on any worker *and nothing is
//!   sleeping*, so the frame includes the loader's I/O wait;
//! * tasklets that call `be_nice()` again wait for the next frame.
//!
//! A tasklet that called `schedule()` instead of `be_nice()` would stay
//! runnable and keep `run()` going: frame-driven code uses `be_nice()`.
//!
//! ```text
//! $ cargo run --example frame_loop
//! ```

use stackless::{be_nice, run, run_nice, sleep, spawn, Scheduler};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHIPS: usize = 1000;
const FRAMES: usize = 60;

fn main() {
    let sched = Scheduler::builder().build().expect("scheduler");
    println!("{} workers", sched.workers());
    let steps = Arc::new(AtomicUsize::new(0));
    let loads = Arc::new(AtomicUsize::new(0));
    sched.enter(|| {
        // Game objects: one step of work per frame.
        for ship in 0..SHIPS {
            let steps = steps.clone();
            spawn(move || {
                let mut position = 0u64;
                loop {
                    position = std::hint::black_box(position.wrapping_add(ship as u64 + 1));
                    steps.fetch_add(1, Ordering::Relaxed);
                    be_nice();
                }
            });
        }
        // A loader: waits 1 ms for "I/O" each frame (sleepers hold `run()`).
        let l = loads.clone();
        spawn(move || loop {
            be_nice();
            sleep(Duration::from_millis(1));
            l.fetch_add(1, Ordering::Relaxed);
        });
        run(); // every ship took its first step and is now nice

        let t0 = Instant::now();
        for frame in 1..=FRAMES {
            let started = Instant::now();
            let woken = run_nice();
            run();
            if frame <= 3 || frame == FRAMES {
                println!(
                    "frame {frame:>2}: woke {woken} nice tasklets, {} ship steps, {} loads, {:.2} ms",
                    steps.load(Ordering::Relaxed),
                    loads.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        let el = t0.elapsed();
        assert_eq!(steps.load(Ordering::Relaxed), SHIPS * (FRAMES + 1));
        assert_eq!(loads.load(Ordering::Relaxed), FRAMES);
        println!(
            "{FRAMES} frames in {:.1} ms: every ship stepped exactly once per frame",
            el.as_secs_f64() * 1e3
        );
        // Leaving `enter` kills the ships and the loader (they unwind) and
        // stops the workers.
    });
}
