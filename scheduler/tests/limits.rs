//! Resource limits fail loudly and clearly, never silently or deep inside:
//!
//! * a tasklet that overflows its stack hits the guard page, and the
//!   process prints which tasklet overflowed and its stack size, then
//!   aborts (deep recursion and one huge frame, which stack probes must not
//!   let skip the guard page);
//! * running out of address space for stacks gives an error that names
//!   `vm.max_map_count`: from `TaskletBuilder::spawn` as an `Err`, from
//!   `join` as `TaskletError::NoStack`, and as the panic message of plain
//!   `spawn`.
//!
//! Each dangerous part runs in a child process: the test binary re-executes
//! itself with `--exact <test> --nocapture` and `STACKLESS_LIMITS_CHILD`
//! set, and the parent checks how the child ended and what it printed. Every
//! child runs under a deadline and is killed (failing the test) past it.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The variable that makes a test body play the child's part.
const CHILD_ENV: &str = "STACKLESS_LIMITS_CHILD";
/// SIGABRT on Linux (libc is not a dev-dependency).
const SIGABRT: i32 = 6;
/// How long a child may run.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// How a child ended and what it wrote.
struct ChildRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for ChildRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.status.signal(),
            self.stdout,
            self.stderr
        )
    }
}

/// True in the child started by [`run_child`] for `test` (whose mode is the
/// test's own name); the test body then does the dangerous part.
fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|m| m == test)
}

/// Re-executes this test binary to run only `test`, in child mode, and
/// waits for it with a deadline (killing it and failing on timeout).
fn run_child(test: &str) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, test)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the child process");
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "child `{test}` hung: killed after {CHILD_DEADLINE:?}\n--- stdout ---\n{stdout}\n\
                 --- stderr ---\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ChildRun {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// setrlimit, declared here (libc is not a dev-dependency of this crate).

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
mod rlimit {
    /// `struct rlimit` on 64-bit Linux (`rlim_t` is 64 bits).
    #[repr(C)]
    struct RLimit {
        cur: u64,
        max: u64,
    }

    extern "C" {
        fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    }

    /// `RLIMIT_CORE` (generic Linux numbering).
    pub const CORE: i32 = 4;
    /// `RLIMIT_AS` (generic Linux numbering).
    pub const AS: i32 = 9;

    /// Lowers the soft and hard limit of `resource` to `value`.
    pub fn set(resource: i32, value: u64) -> std::io::Result<()> {
        let r = RLimit {
            cur: value,
            max: value,
        };
        // SAFETY: `r` is a valid `struct rlimit` for the duration of the call.
        if unsafe { setrlimit(resource, &r) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// No core file from the aborts we provoke (they would be slow and litter).
fn no_core_dumps() {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    let _ = rlimit::set(rlimit::CORE, 0);
}

// ---------------------------------------------------------------------------
// 1. Stack overflow: the report, then abort.

const OVERFLOW_STACK: usize = 64 * 1024;

/// Recursion whose frames cannot be optimized away: each holds a 512-byte
/// buffer that escapes through `black_box`, and the result depends on it.
fn deep(depth: u64, trail: &mut [u8; 512]) -> u64 {
    let mut buf = [0u8; 512];
    buf[(depth % 512) as usize] = depth as u8;
    std::hint::black_box(&mut buf);
    std::hint::black_box(&mut *trail);
    if std::hint::black_box(depth) == u64::MAX {
        return buf[7] as u64;
    }
    deep(depth + 1, &mut buf) + buf[(depth % 509) as usize] as u64
}

/// One frame four times the stack: the stack probes in its prologue walk
/// down page by page, so the first touch below the stack is the guard page.
#[inline(never)]
fn huge_frame() -> u64 {
    let mut buf = [0u8; 256 * 1024];
    std::hint::black_box(&mut buf);
    buf[12345] as u64 + buf[256 * 1024 - 1] as u64
}

/// The child's part: one worker, 64 KiB stacks, a tasklet that overflows.
fn overflow_child(body: fn() -> u64) {
    no_core_dumps();
    let sched = stackless_scheduler::Scheduler::builder()
        .workers(1)
        .stack_size(OVERFLOW_STACK)
        .build()
        .unwrap();
    assert_eq!(sched.stack_size(), OVERFLOW_STACK);
    sched.enter(|| {
        let t = stackless_scheduler::spawn(move || {
            std::hint::black_box(body());
        });
        eprintln!("child: spawned tasklet {}", t.id());
        let r = t.join();
        // Only reached if the overflow went unnoticed.
        println!("child: SURVIVED the overflow: join gave {r:?}");
    });
    println!("child: SURVIVED the overflow");
}

fn check_overflow_report(test: &str) {
    let run = run_child(test);
    assert!(
        !run.status.success(),
        "the overflowing child exited successfully\n{run}"
    );
    assert_eq!(
        run.status.signal(),
        Some(SIGABRT),
        "the overflowing child was not killed by SIGABRT\n{run}"
    );
    assert!(
        run.stderr.contains("overflowed its stack of 65536 bytes"),
        "no overflow report naming the stack size\n{run}"
    );
    // The report names the tasklet (by the id the child printed).
    let id = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: spawned tasklet "))
        .unwrap_or_else(|| panic!("the child did not print its tasklet id\n{run}"))
        .trim()
        .to_string();
    assert!(
        run.stderr.contains(&format!(
            "stackless: tasklet {id} overflowed its stack of 65536 bytes; \
             give it more with Builder::stack_size. Aborting."
        )),
        "the report does not name tasklet {id}\n{run}"
    );
    assert!(!run.stdout.contains("SURVIVED"), "{run}");
}

#[test]
fn overflow_recursion_aborts_with_report() {
    const NAME: &str = "overflow_recursion_aborts_with_report";
    if is_child(NAME) {
        overflow_child(|| deep(0, &mut [0u8; 512]));
        return;
    }
    check_overflow_report(NAME);
}

#[test]
fn overflow_huge_frame_hits_guard_page() {
    const NAME: &str = "overflow_huge_frame_hits_guard_page";
    if is_child(NAME) {
        overflow_child(huge_frame);
        return;
    }
    check_overflow_report(NAME);
}

/// Control: a tasklet that stays within its 64 KiB (same recursion, bounded)
/// runs to the end in the same kind of child, so the aborts above come from
/// the overflow and not from the set-up.
#[test]
fn within_stack_runs_fine() {
    const NAME: &str = "within_stack_runs_fine";
    if is_child(NAME) {
        fn bounded(depth: u64) -> u64 {
            let mut buf = [0u8; 512];
            buf[(depth % 512) as usize] = depth as u8;
            std::hint::black_box(&mut buf);
            if std::hint::black_box(depth) >= 40 {
                return buf[3] as u64;
            }
            bounded(depth + 1) + buf[(depth % 509) as usize] as u64
        }
        let sched = stackless_scheduler::Scheduler::builder()
            .workers(1)
            .stack_size(OVERFLOW_STACK)
            .build()
            .unwrap();
        sched.enter(|| {
            let t = stackless_scheduler::spawn(|| {
                std::hint::black_box(bounded(0));
            });
            t.join().unwrap();
        });
        println!("child: bounded recursion done");
        return;
    }
    let run = run_child(NAME);
    assert!(run.status.success(), "{run}");
    assert!(
        run.stdout.contains("child: bounded recursion done"),
        "{run}"
    );
    assert!(!run.stderr.contains("overflowed"), "{run}");
}

// ---------------------------------------------------------------------------
// 2. Exhausted mappings: an error naming the sysctl.

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
/// The process's current address-space size in bytes (`/proc/self/statm`
/// counts base pages; `KernelPageSize` in `/proc/self/smaps` gives their size).
fn address_space_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("parse /proc/self/statm");
    let page = std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("KernelPageSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb * 1024);
    pages * page
}

/// Grows this thread's malloc heap and leaves the memory free but mapped, so
/// that the small allocations of the code under test keep succeeding once
/// the address-space limit is reached (an allocation failure would abort
/// the child and hide what the scheduler reports).
fn pre_grow_heap() {
    let chunks: Vec<Box<[u8; 1024]>> = (0..24 * 1024)
        .map(|_| std::hint::black_box(Box::new([1u8; 1024])))
        .collect();
    // A sentinel above them keeps the freed space from being trimmed.
    std::mem::forget(Box::new([2u8; 1024]));
    drop(chunks);
}

/// What the exhaustion child reports on stdout, one line each.
const SPAWN_ERR: &str = "child: TaskletBuilder::spawn error: ";
const JOIN_ERR: &str = "child: join error: ";
const PANIC_MSG: &str = "child: spawn panicked: ";
const CLEAN_SHUTDOWN: &str = "child: scheduler shut down cleanly";

/// What runs out in an exhaustion child.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exhaust {
    /// `RLIMIT_AS` set a little above the current address-space size: works
    /// whatever `vm.max_map_count` is, and the mmap fails with the same
    /// ENOMEM as at the map-count limit.
    AddressSpace,
    /// The real `vm.max_map_count` (only run when it is small enough).
    MapCount(usize),
}

/// `/proc/sys/vm/max_map_count`, if readable.
fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The largest `vm.max_map_count` the real-limit test exhausts (about
/// 130,000 started tasklets on 16 KiB stacks, a few hundred MiB resident).
const MAX_MAP_COUNT_TESTED: usize = 262_144;

/// The child's part: one worker; tasklets that each park (holding their
/// stacks) are created in batches with `run()` between, until
/// `TaskletBuilder::spawn` fails. Then plain `spawn` must panic, and the
/// scheduler must still shut down (killing every parked tasklet).
fn exhaustion_child(what: Exhaust) {
    use stackless_scheduler::park::{park, prepare_park};
    use stackless_scheduler::{run, Scheduler, TaskletBuilder, TaskletError};
    use std::io::Write;

    let (batch, max_tasklets, stack_size) = match what {
        Exhaust::AddressSpace => (16, 10_000, 64 * 1024),
        Exhaust::MapCount(n) => (256, n / 2 + 10_000, 16 * 1024),
    };

    no_core_dumps();
    let sched = Scheduler::builder()
        .workers(1)
        .stack_size(stack_size)
        .build()
        .unwrap();
    let stack_bytes = sched.stack_size() as u64;
    // Everything the run needs later, allocated before the limit.
    let mut tasklets = Vec::with_capacity(max_tasklets);
    let mut out = std::io::stdout().lock();
    writeln!(out, "child: stacks of {stack_bytes} bytes").unwrap();
    out.flush().unwrap();
    if what == Exhaust::AddressSpace {
        // Under RLIMIT_AS any heap growth fails too; at the map-count limit
        // this thread's malloc arena grows inside space it reserved already.
        pre_grow_heap();
    }

    sched.enter(|| {
        match what {
            Exhaust::AddressSpace => {
                #[cfg(any(
                    target_arch = "x86_64",
                    target_arch = "aarch64",
                    target_arch = "riscv64"
                ))]
                {
                    // Room for about 64 stacks (each a guard page more)
                    // beyond what is mapped now.
                    let limit = address_space_bytes() + 64 * stack_bytes;
                    rlimit::set(rlimit::AS, limit).expect("setrlimit(RLIMIT_AS)");
                    writeln!(out, "child: RLIMIT_AS = {limit}").unwrap();
                }
            }
            Exhaust::MapCount(n) => writeln!(out, "child: vm.max_map_count = {n}").unwrap(),
        }

        let mut spawn_err = None;
        let mut join_err = None;
        'outer: while tasklets.len() < max_tasklets {
            let first = tasklets.len();
            for _ in 0..batch {
                match TaskletBuilder::new().spawn(|| {
                    // Hold the stack: block until the scheduler shuts down
                    // (which kills us). A deadlock answer just parks again.
                    loop {
                        let _unparker = prepare_park();
                        park();
                    }
                }) {
                    Ok(t) => tasklets.push(t),
                    Err(e) => {
                        spawn_err = Some(e);
                        break 'outer;
                    }
                }
            }
            run();
            for t in &tasklets[first..] {
                if !t.alive() {
                    match t.join() {
                        Err(e @ TaskletError::NoStack(_)) => {
                            if join_err.is_none() {
                                join_err = Some(e);
                            }
                        }
                        other => panic!("tasklet {} ended with {other:?}", t.id()),
                    }
                }
            }
        }
        let parked = tasklets.iter().filter(|t| t.alive()).count();
        writeln!(
            out,
            "child: {} tasklets created, {parked} alive holding a stack",
            tasklets.len()
        )
        .unwrap();
        match &spawn_err {
            Some(e) => writeln!(out, "{SPAWN_ERR}{e}").unwrap(),
            None => writeln!(out, "child: TaskletBuilder::spawn never failed").unwrap(),
        }
        if let Some(e) = &join_err {
            writeln!(out, "{JOIN_ERR}{e}").unwrap();
        }
        out.flush().unwrap();

        // Plain spawn with no stack left: a panic with the same message.
        let r = std::panic::catch_unwind(|| stackless_scheduler::spawn(|| {}));
        match r {
            Ok(t) => writeln!(out, "child: plain spawn did not panic ({t:?})").unwrap(),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "<not a string>".to_string());
                writeln!(out, "{PANIC_MSG}{msg}").unwrap();
            }
        }
        writeln!(out, "child: leaving enter with {parked} parked tasklets").unwrap();
        out.flush().unwrap();
    });
    // The kills at shutdown unwound every parked tasklet.
    assert!(tasklets.iter().all(|t| !t.alive()));
    println!("{CLEAN_SHUTDOWN}");
}

/// The parent's checks on an exhaustion child.
fn check_exhaustion_report(run: &ChildRun) {
    assert!(
        run.status.success(),
        "the child did not exit normally (a crash, abort or panic deep inside?)\n{run}"
    );
    let line = |prefix: &str| {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
    };
    let spawn_err =
        line(SPAWN_ERR).unwrap_or_else(|| panic!("TaskletBuilder::spawn never failed\n{run}"));
    assert!(spawn_err.contains("cannot map a tasklet stack"), "{run}");
    assert!(spawn_err.contains("vm.max_map_count"), "{run}");
    if let Some(join_err) = line(JOIN_ERR) {
        assert!(join_err.contains("vm.max_map_count"), "{run}");
    }
    let panic_msg = line(PANIC_MSG).unwrap_or_else(|| panic!("plain spawn did not panic\n{run}"));
    assert!(panic_msg.contains("vm.max_map_count"), "{run}");
    assert!(run.stdout.contains(CLEAN_SHUTDOWN), "{run}");
}

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
#[test]
fn exhausted_address_space_names_the_sysctl() {
    const NAME: &str = "exhausted_address_space_names_the_sysctl";
    if is_child(NAME) {
        exhaustion_child(Exhaust::AddressSpace);
        return;
    }
    check_exhaustion_report(&run_child(NAME));
}

/// The real limit, when it is the usual 65530 (or not much more): each
/// started tasklet's stack is two mappings, so about `max_map_count / 2`
/// tasklets park before the next stack cannot be mapped.
#[test]
fn exhausted_max_map_count_names_the_sysctl() {
    const NAME: &str = "exhausted_max_map_count_names_the_sysctl";
    let Some(n) = max_map_count() else {
        eprintln!("skipped: /proc/sys/vm/max_map_count is not readable");
        return;
    };
    if n > MAX_MAP_COUNT_TESTED {
        eprintln!("skipped: vm.max_map_count = {n} is too large to exhaust in a test");
        return;
    }
    if is_child(NAME) {
        exhaustion_child(Exhaust::MapCount(n));
        return;
    }
    let run = run_child(NAME);
    check_exhaustion_report(&run);
    // Most of the limit went to stacks (the rest: the binary, libraries,
    // thread stacks, the heap).
    let parked: usize = run
        .stdout
        .lines()
        .find_map(|l| l.strip_suffix(" alive holding a stack"))
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count of parked tasklets\n{run}"));
    assert!(
        parked >= n / 2 * 9 / 10,
        "only {parked} tasklets held stacks under vm.max_map_count = {n}\n{run}"
    );
}
