//! Builds and runs the Go peer (`benches/go/main.go`, one program that takes
//! the workload name as `-w`). It is built once per run into the cargo target
//! directory (never the source tree) and run with `GOMAXPROCS = workers`; it
//! prints one value per run. Go is optional: without a `go` toolchain on PATH
//! the `go` system is skipped with a note.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{parse_values, run_command, Sizes, Workload, SKEWED_ITEM};

/// Time limit for one invocation of the Go program.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Name of the built Go program.
pub const BINARY: &str = "stackless-go-bench";

/// The Go sources (`benches/go`).
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// `go version`'s output, or `None` when no usable `go` is on PATH.
pub fn version() -> Option<String> {
    let out = Command::new("go").arg("version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where the Go program is built: `<dir of the running executable>/go-bench`,
/// one level up from `deps/` (so under `target/release` or `target/debug`).
pub fn default_out_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("target/release/x"));
    let mut dir = exe
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join("go-bench")
}

/// Whether the Go program implements `w` (everything but `nice_frames`).
pub fn supports(w: Workload) -> bool {
    w != Workload::NiceFrames
}

/// Builds the Go program into `out_dir` (default [`default_out_dir`]) and
/// returns its path.
pub fn build(out_dir: Option<&Path>) -> Result<PathBuf, String> {
    let dir = out_dir.map_or_else(default_out_dir, Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let bin = dir.join(BINARY);
    let mut cmd = Command::new("go");
    cmd.arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .current_dir(source_dir())
        .env("GOTOOLCHAIN", "local");
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", dir.join("cache"));
    }
    run_command(&mut cmd, Duration::from_secs(300)).map_err(|e| format!("go build: {e}"))?;
    Ok(bin)
}

/// The command line that runs `workload` once per run with `sizes`.
pub fn command(
    bin: &Path,
    workload: Workload,
    workers: usize,
    sizes: &Sizes,
    runs: usize,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("GOMAXPROCS", workers.to_string())
        .arg("-w")
        .arg(workload.name())
        .arg("-runs")
        .arg(runs.to_string());
    let flags: [(&str, u128); 10] = [
        ("yield_tasks", sizes.yield_tasks as u128),
        ("yields", sizes.yields as u128),
        ("rounds", sizes.pingpong_rounds as u128),
        ("ring", sizes.ring_size as u128),
        ("laps", sizes.ring_laps as u128),
        ("spawn", sizes.spawn_count as u128),
        ("items", sizes.skewed_items as u128),
        ("item_ns", SKEWED_ITEM.as_nanos()),
        ("children", sizes.fanout_children as u128),
        ("blocked", sizes.blocked as u128),
    ];
    for (k, v) in flags {
        cmd.arg(format!("-{k}={v}"));
    }
    cmd
}

/// Runs `workload` `runs` times with `GOMAXPROCS = workers` and returns one
/// value per run (ns/op; KiB/goroutine for `blocked_memory`, one process per
/// run). The skewed items spin for [`SKEWED_ITEM`], calibrated by the Go
/// program itself.
pub fn run(
    bin: &Path,
    workload: Workload,
    workers: usize,
    sizes: &Sizes,
    runs: usize,
    timeout: Duration,
) -> Result<Vec<f64>, String> {
    if !supports(workload) {
        return Err(format!("go has no {workload} implementation"));
    }
    if workload == Workload::BlockedMemory {
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let out = run_command(&mut command(bin, workload, workers, sizes, 1), timeout)?;
            v.extend(parse_values(&out)?);
        }
        return Ok(v);
    }
    let out = run_command(&mut command(bin, workload, workers, sizes, runs), timeout)?;
    let v = parse_values(&out)?;
    if v.len() != runs {
        return Err(format!(
            "expected {runs} values from the Go program, got {}",
            v.len()
        ));
    }
    Ok(v)
}
