//! Criterion bench of the `spawn` workload on stackless and its peers.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use stackless_benches::Workload;

fn bench(c: &mut Criterion) {
    common::bench_workload(c, Workload::Spawn);
}

criterion_group!(benches, bench);
criterion_main!(benches);
