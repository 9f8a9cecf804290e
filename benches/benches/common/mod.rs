//! Shared driver of the criterion benches: one group per workload, one bench
//! per system, each timing whole workload runs from `stackless_benches`.
//!
//! Workers: `STACKLESS_BENCH_WORKERS`, else all cores (`pingpong_same` always
//! uses 1, `pingpong_cross` 2). Sizes: the `--quick` sizes of the scaling
//! binary. A system that cannot run (for example stackless while it is still
//! being written, or may asked for a second worker count in one process) is
//! skipped with a note on stderr. Go is measured by the `scaling` binary only,
//! and `blocked_memory` (a memory figure, not a time) too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use stackless_benches::{
    calibrate_spin, runner, Measured, Runner, Sizes, System, Workload, SKEWED_ITEM,
};

/// Worker count for the benches.
pub fn workers() -> usize {
    std::env::var("STACKLESS_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(stackless_benches::available_cores)
}

fn try_runner(
    system: System,
    n: usize,
    w: Workload,
    sizes: &Sizes,
) -> Result<Box<dyn Runner>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let r = runner(system, n)?;
        // One untimed probe run: skip the system if it cannot run the workload.
        r.run(w, sizes)?;
        Ok(r)
    }))
    .unwrap_or_else(|_| Err("panicked".to_string()))
}

/// Benchmarks `w` on every in-process system that implements it.
pub fn bench_workload(c: &mut Criterion, w: Workload) {
    let n = match w {
        Workload::PingpongSame => 1,
        Workload::PingpongCross => 2,
        _ => workers(),
    };
    let mut base = Sizes::quick();
    base.spin_iters = calibrate_spin(SKEWED_ITEM);
    let mut g = c.benchmark_group(w.name());
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for system in System::ALL {
        if system == System::Go || !system.supports(w) {
            continue;
        }
        let sizes = base.for_system(system);
        let r = match try_runner(system, n, w, &sizes) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}/{system}: skipped: {e}", w.name());
                continue;
            }
        };
        g.throughput(Throughput::Elements(sizes.ops(w)));
        g.bench_function(BenchmarkId::new(system.name(), n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| match r.run(w, &sizes) {
                        Ok(Measured::Time(d)) => d,
                        Ok(Measured::Value(_)) => panic!("{w} is not a timing workload"),
                        Err(e) => panic!("{w}/{system}: {e}"),
                    })
                    .sum()
            })
        });
    }
    g.finish();
}
