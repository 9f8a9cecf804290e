//! `scaling`: every workload × worker count × system in one run, one table.
//!
//! ```text
//! cargo run --release -p stackless-benches --bin scaling -- [--quick] [--workers 1,2,4]
//!     [--only yield,ring] [--systems stackless,tokio,may,threads,rayon,go]
//!     [--runs N] [--json PATH] [--timeout SECS]
//! ```
//!
//! Each run of a cell (workload, system, workers) is a child process (this
//! binary re-executed with `--child WORKLOAD SYSTEM WORKERS`): may's
//! configuration is global and can be set only once per process,
//! `blocked_memory` needs a fresh process per run, and a crash or hang of one
//! system cannot take the others down. The child prints one value per run;
//! the parent asks for two and keeps the second (the first warms the pools
//! and caches up, as in a program that has been running a while), except for
//! `blocked_memory`, which measures a fresh process. The `--runs` runs go
//! round by round: each round runs every cell once (a workload's cells one
//! after another, each round starting one cell further on), so a cell's runs
//! are spread over the whole table and a slow stretch of the shared host
//! (seconds long) lands on one or two runs of many cells rather than on
//! every run of a few; the table shows each cell's median.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use stackless_benches::{
    available_cores, calibrate_spin, go, measure, median, parse_values, run_command, Sizes, System,
    Workload, SKEWED_ITEM,
};

/// After this many timed-out cells a system's remaining cells are skipped.
const MAX_TIMEOUTS: usize = 2;

const USAGE: &str = "\
usage: scaling [--quick] [--workers N,N,..] [--only WORKLOAD,..] [--systems SYSTEM,..]
               [--runs N] [--json PATH] [--timeout SECS]
workloads: yield pingpong_same pingpong_cross ring spawn skewed fanout nice_frames blocked_memory
systems:   stackless tokio may threads rayon go";

struct Opts {
    quick: bool,
    workers: Vec<usize>,
    workloads: Vec<Workload>,
    systems: Vec<System>,
    runs: Option<usize>,
    json: Option<String>,
    timeout: Option<u64>,
    spin_iters: Option<u64>,
    child: Option<(Workload, System, usize)>,
}

fn list<T>(v: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse(s.trim()).ok_or_else(|| format!("unknown {what} {s:?}")))
        .collect()
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        workers: (1..=available_cores()).collect(),
        workloads: Workload::ALL.to_vec(),
        systems: System::ALL.to_vec(),
        runs: None,
        json: None,
        timeout: None,
        spin_iters: None,
        child: None,
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        v.ok_or_else(|| format!("{what} needs a value"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--workers" => {
                let v = args.next().ok_or("--workers needs a value")?;
                o.workers = list(&v, |s| s.parse().ok().filter(|&n| n > 0), "worker count")?;
            }
            "--only" => {
                let v = args.next().ok_or("--only needs a value")?;
                o.workloads = list(&v, Workload::parse, "workload")?;
            }
            "--systems" => {
                let v = args.next().ok_or("--systems needs a value")?;
                o.systems = list(&v, System::parse, "system")?;
            }
            "--runs" => o.runs = Some(num(args.next(), "--runs")?.max(1) as usize),
            "--json" => o.json = Some(args.next().ok_or("--json needs a path")?),
            "--timeout" => o.timeout = Some(num(args.next(), "--timeout")?),
            "--spin-iters" => o.spin_iters = Some(num(args.next(), "--spin-iters")?),
            "--child" | "--child-memory" => {
                let w = if a == "--child" {
                    let w = args.next().ok_or("--child needs WORKLOAD SYSTEM WORKERS")?;
                    Workload::parse(&w).ok_or_else(|| format!("unknown workload {w:?}"))?
                } else {
                    Workload::BlockedMemory
                };
                let s = args.next().ok_or("--child needs a system")?;
                let s = System::parse(&s).ok_or_else(|| format!("unknown system {s:?}"))?;
                let n = num(args.next(), "--child WORKERS")? as usize;
                o.child = Some((w, s, n));
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            // cargo bench/test pass this to every target; ignore it.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some((w, s, n)) = o.child {
        return child(&o, w, s, n);
    }
    parent(o)
}

fn sizes(o: &Opts) -> Sizes {
    let mut s = if o.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    s.spin_iters = o.spin_iters.unwrap_or_else(|| calibrate_spin(SKEWED_ITEM));
    s
}

/// `--child`: measure one cell in this process, print one value per line.
fn child(o: &Opts, w: Workload, s: System, n: usize) -> ExitCode {
    let runs = o.runs.unwrap_or(1);
    match measure(w, s, n, &sizes(o), runs) {
        Ok(v) => {
            for x in v {
                println!("{x}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{w} {s} workers={n}: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Row {
    workload: Workload,
    system: System,
    workers: usize,
    values: Result<Vec<f64>, String>,
}

impl Row {
    fn median(&self) -> Option<f64> {
        self.values.as_ref().ok().and_then(|v| median(v))
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!(
        "machine: {} cores, {cpu}, {kernel} ({}), vm.max_map_count {maps}",
        available_cores(),
        std::env::consts::ARCH
    )
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn parent(o: Opts) -> ExitCode {
    let started = Instant::now();
    let runs = o.runs.unwrap_or(5);
    let timeout = Duration::from_secs(o.timeout.unwrap_or(if o.quick { 30 } else { 1200 }));
    let mut notes: Vec<String> = Vec::new();

    println!("{}", machine());
    eprintln!("calibrating the skewed spin loop ...");
    let sz = sizes(&o);
    println!(
        "sizes: {} (median of {runs} runs, each after a warm-up run in its own process, \
         one run of every cell per round); skewed item = {} spin iterations (~{} us)",
        if o.quick { "--quick" } else { "full" },
        sz.spin_iters,
        SKEWED_ITEM.as_micros()
    );

    let mut systems = o.systems.clone();
    let mut go_bin = None;
    if systems.contains(&System::Go) {
        match go::version() {
            None => {
                notes.push("go: no `go` toolchain on PATH, skipped".into());
                systems.retain(|&s| s != System::Go);
            }
            Some(v) => {
                eprintln!("building the Go peer ({v}) ...");
                match go::build(None) {
                    Ok(b) => {
                        println!("go: {v}, built at {}", b.display());
                        go_bin = Some(b);
                    }
                    Err(e) => {
                        notes.push(format!("go: build failed, skipped: {e}"));
                        systems.retain(|&s| s != System::Go);
                    }
                }
            }
        }
    }

    // Cells grouped by workload, in the table's order; the runs below go
    // round by round over all of them.
    let mut groups: Vec<Vec<(Workload, System, usize)>> = Vec::new();
    for &w in &o.workloads {
        let ws: Vec<usize> = o
            .workers
            .iter()
            .copied()
            .filter(|&n| w.runs_at(n))
            .collect();
        if ws.is_empty() {
            notes.push(format!(
                "{w}: measured only at {} worker(s), which is not in --workers",
                if w == Workload::PingpongSame { 1 } else { 2 }
            ));
        }
        let cells: Vec<_> = ws
            .iter()
            .flat_map(|&n| {
                systems
                    .iter()
                    .filter(move |&&s| s.supports(w))
                    .map(move |&s| (w, s, n))
            })
            .collect();
        if !cells.is_empty() {
            groups.push(cells);
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };

    // One timed run of a cell in a fresh process, after one untimed run
    // there (so that every run finds warm pools and code, as a long-running
    // program would); `blocked_memory` measures a fresh process's first run.
    let one_run = |w: Workload, s: System, n: usize| -> Result<f64, String> {
        let in_process = if w == Workload::BlockedMemory { 1 } else { 2 };
        let values = if s == System::Go {
            let bin = go_bin.as_ref().expect("go was built");
            go::run(bin, w, n, &sz.for_system(s), in_process, timeout)?
        } else {
            let mut cmd = Command::new(&exe);
            cmd.arg("--child")
                .arg(w.name())
                .arg(s.name())
                .arg(n.to_string())
                .arg("--runs")
                .arg(in_process.to_string())
                .arg("--spin-iters")
                .arg(sz.spin_iters.to_string());
            if o.quick {
                cmd.arg("--quick");
            }
            parse_values(&run_command(&mut cmd, timeout)?)?
        };
        values
            .last()
            .copied()
            .ok_or_else(|| "the child printed no value".to_string())
    };

    let ncells: usize = groups.iter().map(Vec::len).sum();
    let mut values: Vec<Vec<Result<Vec<f64>, String>>> = groups
        .iter()
        .map(|cells| vec![Ok(Vec::new()); cells.len()])
        .collect();
    let mut spent: Vec<Vec<Duration>> = groups
        .iter()
        .map(|cells| vec![Duration::ZERO; cells.len()])
        .collect();
    let mut timeouts: BTreeMap<System, usize> = BTreeMap::new();
    // Round by round: each round runs every cell once, so a cell's runs
    // are spread over the whole table and a slow stretch of the host
    // (seconds long) falls on at most one or two of them.
    for round in 0..runs {
        eprintln!(
            "round {}/{runs} ({ncells} cells, {:.0} s so far) ...",
            round + 1,
            started.elapsed().as_secs_f64()
        );
        for (g, cells) in groups.iter().enumerate() {
            // Each round starts one cell further on, so no cell always
            // runs right after the same neighbour.
            for k in 0..cells.len() {
                let i = (k + round) % cells.len();
                let (w, s, n) = cells[i];
                let Ok(v) = &mut values[g][i] else { continue };
                let timed_out = timeouts.get(&s).copied().unwrap_or(0);
                if timed_out >= MAX_TIMEOUTS {
                    values[g][i] = Err(format!("skipped: timed out {timed_out} times already"));
                    continue;
                }
                let t0 = Instant::now();
                match one_run(w, s, n) {
                    Ok(x) => v.push(x),
                    Err(e) => {
                        if e.contains("timed out after") {
                            *timeouts.entry(s).or_default() += 1;
                        }
                        values[g][i] = Err(e);
                    }
                }
                spent[g][i] += t0.elapsed();
            }
        }
    }
    let mut rows = Vec::new();
    for ((cells, values), spent) in groups.iter().zip(values).zip(spent) {
        for ((&(w, s, n), values), spent) in cells.iter().zip(values).zip(spent) {
            eprint!(
                "[{:>3}/{ncells}] {w:<15} workers={n:<3} {s:<10} ",
                rows.len() + 1
            );
            match &values {
                Ok(v) => eprintln!(
                    "{} {} ({:.1} s)",
                    median(v).map_or("-".into(), fmt_value),
                    w.unit(),
                    spent.as_secs_f64()
                ),
                Err(e) => eprintln!("failed: {e}"),
            }
            rows.push(Row {
                workload: w,
                system: s,
                workers: n,
                values,
            });
        }
    }

    print_table(&rows);
    let mut failures: BTreeMap<(System, String), Vec<String>> = BTreeMap::new();
    for r in &rows {
        if let Err(e) = &r.values {
            failures
                .entry((r.system, e.clone()))
                .or_default()
                .push(format!("{}@{}", r.workload, r.workers));
        }
    }
    for ((s, e), where_) in failures {
        notes.push(format!("{s} failed in {}: {e}", where_.join(", ")));
    }
    for note in implementation_notes(&rows) {
        notes.push(note);
    }
    if !notes.is_empty() {
        println!("\nnotes:");
        for n in &notes {
            println!("  - {n}");
        }
    }
    if let Some(path) = &o.json {
        match std::fs::write(path, to_json(&rows)) {
            Ok(()) => println!("\nwrote {path}"),
            Err(e) => {
                eprintln!("cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}

fn sys_order(s: System) -> usize {
    System::ALL
        .iter()
        .position(|&x| x == s)
        .unwrap_or(usize::MAX)
}

fn print_table(rows: &[Row]) {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    let wl_order = |w: Workload| {
        Workload::ALL
            .iter()
            .position(|&x| x == w)
            .unwrap_or(usize::MAX)
    };
    sorted.sort_by_key(|r| (wl_order(r.workload), r.workers, sys_order(r.system)));
    let base: BTreeMap<(usize, usize), f64> = rows
        .iter()
        .filter(|r| r.system == System::Stackless)
        .filter_map(|r| r.median().map(|m| ((wl_order(r.workload), r.workers), m)))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<15} {:>7}  {:<10} {:>12}  {:<12} {:>4}  {:>14}",
        "workload", "workers", "system", "median", "unit", "runs", "peer/stackless"
    );
    let _ = writeln!(out, "{}", "-".repeat(84));
    let mut last = None;
    for r in sorted {
        if last.is_some_and(|l| l != r.workload) {
            out.push('\n');
        }
        last = Some(r.workload);
        let (value, n) = match &r.values {
            Ok(v) => (r.median().map_or("-".into(), fmt_value), v.len()),
            Err(_) => ("failed".into(), 0),
        };
        let ratio = if r.system == System::Stackless {
            "-".to_string()
        } else {
            match (r.median(), base.get(&(wl_order(r.workload), r.workers))) {
                (Some(m), Some(&b)) if b != 0.0 => format!("{:.2}x", m / b),
                _ => "-".into(),
            }
        };
        let _ = writeln!(
            out,
            "{:<15} {:>7}  {:<10} {:>12}  {:<12} {:>4}  {:>14}",
            r.workload.name(),
            r.workers,
            r.system.name(),
            value,
            r.workload.unit(),
            n,
            ratio
        );
    }
    print!("{out}");
}

/// How each peer approximates a workload, printed under the table for the
/// (workload, system) pairs this run measured.
fn implementation_notes(rows: &[Row]) -> Vec<String> {
    let has = |w: Option<Workload>, s: System| {
        rows.iter()
            .any(|r| r.system == s && w.map_or(true, |w| r.workload == w))
    };
    let cross = Some(Workload::PingpongCross);
    let mut v = Vec::new();
    if has(cross, System::Stackless) {
        v.push("pingpong_cross/stackless: main on worker 0, the partner placed on worker 1 with TaskletBuilder::worker(1)".into());
    }
    if has(cross, System::Tokio) {
        v.push("pingpong_cross/tokio: two threads, each with its own current_thread runtime (tokio cannot pin a task to a worker)".into());
    }
    if has(cross, System::May) {
        v.push("pingpong_cross/may: sides spawned with Builder::id(0) and id(1); may moves a woken coroutine to the waker's worker, so they may end up sharing one".into());
    }
    if has(cross, System::Go) {
        v.push("pingpong_cross/go: both goroutines call runtime.LockOSThread (Go cannot pin a goroutine to a P)".into());
    }
    if has(None, System::Threads) {
        v.push(format!(
            "threads: n workers = CPU affinity to the first n CPUs; fewer ops (Sizes::for_system); at most {} threads alive in spawn/fanout/ring; skewed = n threads draining a crossbeam channel fed by one producer; blocked_memory with at most 5,000 threads",
            stackless_benches::THREAD_CAP
        ));
    }
    if has(Some(Workload::Spawn), System::May) {
        v.push(format!(
            "spawn/may: spawned and joined in batches of {} (may maps a guard-paged stack per coroutine at spawn time; vm.max_map_count)",
            stackless_benches::may_impl::SPAWN_BATCH
        ));
    }
    if has(None, System::Tokio) || has(None, System::May) || has(None, System::Rayon) {
        v.push("channels: stackless/go unbuffered, crossbeam bounded(0) for threads, tokio mpsc capacity 1, may mpsc unbounded (may has no bounded channel), rayon fanout: unbounded + rayon_core::yield_now".into());
    }
    v
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The measured rows as a JSON array (failed cells are left out).
fn to_json(rows: &[Row]) -> String {
    let mut out = String::from("[\n");
    let mut first = true;
    for r in rows {
        let (Some(m), Ok(v)) = (r.median(), &r.values) else {
            continue;
        };
        if !m.is_finite() {
            continue;
        }
        if !first {
            out.push_str(",\n");
        }
        first = false;
        let _ = write!(
            out,
            "  {{\"workload\": {}, \"system\": {}, \"workers\": {}, \"value\": {}, \"unit\": {}, \"runs\": {}}}",
            json_str(r.workload.name()),
            json_str(r.system.name()),
            r.workers,
            m,
            json_str(r.workload.unit()),
            v.len()
        );
    }
    out.push_str("\n]\n");
    out
}
