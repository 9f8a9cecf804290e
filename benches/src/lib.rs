//! Benchmark workloads shared by criterion benches and the scaling binary.
