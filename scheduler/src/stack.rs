//! Guard-paged tasklet stacks, their pools, and the stack-overflow report.
//!
//! A stack is one `mmap` whose lowest page is made inaccessible with
//! `mprotect`, so an overflow faults instead of corrupting memory. A fresh
//! mapping costs hundreds of times more than a reused one, so stacks are
//! pooled: each worker keeps a small cache it alone touches, backed by a
//! shared pool. A stack is taken when a tasklet first runs and returned when
//! it ends.
//!
//! Each stack costs two kernel mappings (the guard and the usable part);
//! Linux allows `vm.max_map_count` (65530 by default) mappings per process, so
//! about 32,000 stacks can be alive at once. Running out is reported as an
//! `io::Error` that names the sysctl.

use std::io;

/// Bytes in one page (the guard size). Read once from the OS.
pub(crate) fn page_size() -> usize {
    use std::sync::OnceLock;
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as usize
        } else {
            4096
        }
    })
}

/// How many starting offsets (whole cache lines below the mapping's end)
/// stacks are spread over.
///
/// The lines a switch touches are a stack's top few, and a cache set is
/// picked by address bits that include the offset within the page. Were
/// every stack to start at its page's end, all their tops would share the
/// same 3 of every 64 sets: the 2 MiB L2 of the development VM would hold
/// the tops of only ~500 stacks, and a 1,000-tasklet ring missed it on
/// every hop (~88 ns a hop; ~56 ns with the tops spread). 32 offsets keep
/// the start within the top 2 KiB, so a blocked tasklet's stack still
/// fits in one page; the mapping has a page more, so the usable size is
/// still at least what was asked for.
const COLORS: usize = 1 << COLOR_BITS;
const COLOR_BITS: u32 = 5;

/// What a mapping adds above the usable size for the starting offset
/// (whole pages; only the top one is ever touched, and it would be anyway).
fn color_room() -> usize {
    (COLORS * 64).div_ceil(page_size()) * page_size()
}

/// A stack's starting offset, in lines, from where its mapping ends:
/// Fibonacci hashing of the page number, so that any stack size spreads.
fn color(end: usize) -> usize {
    (end >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - COLOR_BITS)
}

/// Rounds a requested usable size up to whole pages, at least 16 KiB.
pub(crate) fn round_stack_size(bytes: usize) -> usize {
    let page = page_size();
    let bytes = bytes.max(16 * 1024);
    bytes.div_ceil(page) * page
}

/// One guard-paged stack: `[base, base + guard)` is inaccessible,
/// `[base + guard, base + total)` is the usable stack (growing down from the top).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Stack {
    /// Never 0 (a mapping's address), which gives `Option<Coro>` its niche.
    base: std::num::NonZeroUsize,
    total: usize,
}

// SAFETY: a `Stack` is plain memory owned by whoever holds the value; it holds
// no thread-affine state, so it may be created on one thread and used or
// unmapped on another.
unsafe impl Send for Stack {}

impl Stack {
    /// Maps a new stack with `usable` bytes (a multiple of the page size),
    /// plus a guard page below and room above for its starting offset.
    pub(crate) fn new(usable: usize) -> io::Result<Stack> {
        let guard = page_size();
        let total = usable + color_room() + guard;
        let ptr = map_anonymous(total, MAP_STACK).map_err(|e| mapping_error("mmap", e))?;
        // SAFETY: `ptr` is the start of the mapping we just created; making its
        // first page inaccessible turns it into the guard.
        if unsafe { libc::mprotect(ptr, guard, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping the mapping we own and have not handed out.
            unsafe { libc::munmap(ptr, total) };
            return Err(mapping_error("mprotect", err));
        }
        let Some(base) = std::num::NonZeroUsize::new(ptr as usize) else {
            // SAFETY: as above.
            unsafe { libc::munmap(ptr, total) };
            return Err(mapping_error(
                "mmap",
                io::Error::other("mapped at address 0"),
            ));
        };
        Ok(Stack { base, total })
    }

    /// Where the stack starts (it grows down from here): up to 31 cache
    /// lines below the end of the mapping, a different number for each
    /// stack (see [`COLORS`]).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn top(&self) -> usize {
        let end = self.base.get() + self.total;
        end - color(end) * 64
    }

    /// Starts fetching the lines a tasklet starting on this stack writes
    /// first: the coroutine's initial frame and the body's first frames.
    /// The stack handed out next is asked for when one is handed out, a
    /// whole tasklet's run ahead: with thousands of tasklets alive (a
    /// fan-out) it is cold, and the start's first locked instruction
    /// otherwise waits for those writes.
    #[inline]
    fn prefetch_top(&self) {
        let top = self.top() as *const u8;
        for line in 1..=8 {
            crate::sync::prefetch_write(top.wrapping_sub(64 * line));
        }
    }

    /// Lowest usable address (just above the guard page).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn limit(&self) -> usize {
        self.base.get() + page_size()
    }

    /// Usable bytes.
    pub(crate) fn usable(&self) -> usize {
        self.total - page_size() - color_room()
    }

    /// Lets the kernel reclaim the stack's pages lazily; the mapping stays.
    fn release_memory(&self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the usable part of a stack nobody runs on (it is in the
        // pool); its contents are garbage we never read again.
        unsafe {
            libc::madvise(
                self.limit() as *mut libc::c_void,
                self.usable(),
                libc::MADV_FREE,
            );
        }
    }

    /// The guard page's address range.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.base.get(), self.base.get() + page_size())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by this value and no coroutine runs on
        // it any more (a stack is only dropped from a pool, never while in use).
        unsafe { libc::munmap(self.base.get() as *mut libc::c_void, self.total) };
    }
}

/// Maps `bytes` of fresh, private, readable and writable memory, reserved
/// but not committed (`MAP_NORESERVE` where there is one: only the pages
/// touched cost memory), with `flags` added.
pub(crate) fn map_anonymous(bytes: usize, flags: libc::c_int) -> io::Result<*mut libc::c_void> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | MAP_NORESERVE | flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr)
}

#[cfg(target_os = "linux")]
const MAP_NORESERVE: libc::c_int = libc::MAP_NORESERVE;
#[cfg(not(target_os = "linux"))]
const MAP_NORESERVE: libc::c_int = 0;
#[cfg(target_os = "linux")]
const MAP_STACK: libc::c_int = libc::MAP_STACK;
#[cfg(not(target_os = "linux"))]
const MAP_STACK: libc::c_int = 0;

/// The error for a failed stack mapping, naming the sysctl that usually causes it.
pub(crate) fn mapping_error(call: &str, err: io::Error) -> io::Error {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let limit = match limit {
        Some(l) => format!("{l} (about {} live tasklet stacks)", l / 2),
        None => "unknown".to_string(),
    };
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "stackless: cannot map a tasklet stack ({call} failed: {err}). Each started tasklet \
             needs a guard-paged stack, which costs two kernel mappings; the process has probably \
             reached vm.max_map_count = {limit}. Raise it, e.g. `sysctl -w vm.max_map_count=1048576`, \
             or keep fewer tasklets alive at once. (An address-space limit such as `ulimit -v` \
             gives the same error.)"
        ),
    )
}

/// A pool of stacks of one size shared by the workers of a scheduler.
///
/// Returned stacks stay *warm* (their pages resident) so that a burst of
/// tasklets can be followed by another without page faults. Only when a
/// worker goes idle are the warm stacks beyond [`SHARED_WARM`] made *cold*:
/// their memory is handed back to the kernel lazily, which costs a system
/// call each, off the busy path.
#[derive(Debug)]
pub(crate) struct SharedPool {
    usable: usize,
    stacks: std::sync::Mutex<PoolStacks>,
    /// `stacks.warm.len()`, readable without the lock (a hint for `trim`).
    warm_len: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct PoolStacks {
    /// Most recently returned last (taken first: likeliest in cache).
    warm: std::collections::VecDeque<Stack>,
    cold: Vec<Stack>,
}

/// How many stacks a worker caches locally before returning them to the shared pool.
pub(crate) const LOCAL_CACHE: usize = 64;
/// How many stacks the shared pool keeps before unmapping extras. A
/// program that once needed many stacks at once (10,000 blocked tasklets,
/// say) will likely need them again, and a fresh mapping costs hundreds of
/// times a reused one.
const SHARED_KEEP: usize = 16 * 1024;
/// Pooled stacks beyond this many have their memory handed back to the
/// kernel lazily (`MADV_FREE`) once a worker goes idle: the mapping stays, so
/// reuse is cheap, but an idle pool does not pin the peak's resident memory.
const SHARED_WARM: usize = 1024;

impl SharedPool {
    pub(crate) fn new(usable: usize) -> SharedPool {
        SharedPool {
            usable,
            stacks: std::sync::Mutex::new(PoolStacks::default()),
            warm_len: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolStacks> {
        self.stacks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_warm(&self, p: &PoolStacks) {
        self.warm_len
            .store(p.warm.len(), std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn usable(&self) -> usize {
        self.usable
    }

    /// A stack from the pool, or a freshly mapped one.
    pub(crate) fn take(&self) -> io::Result<Stack> {
        let mut p = self.lock();
        if let Some(s) = p.warm.pop_back() {
            self.note_warm(&p);
            return Ok(s);
        }
        if let Some(s) = p.cold.pop() {
            return Ok(s);
        }
        drop(p);
        Stack::new(self.usable)
    }

    /// Moves up to `n` pooled stacks into `into`, warm ones first; the one
    /// to be used first (the most recently returned) ends up last.
    fn take_batch(&self, n: usize, into: &mut Vec<Stack>) {
        let mut p = self.lock();
        let k = n.min(p.warm.len());
        let from = p.warm.len() - k;
        into.extend(p.warm.drain(from..));
        self.note_warm(&p);
        let k = (n - k).min(p.cold.len());
        if k > 0 {
            let from = p.cold.len() - k;
            let cold: Vec<Stack> = p.cold.drain(from..).collect();
            into.splice(0..0, cold);
        }
    }

    /// Returns stacks to the shared pool, warm (unmapping what exceeds its cap).
    pub(crate) fn give(&self, mut batch: Vec<Stack>) {
        let mut p = self.lock();
        while p.warm.len() + p.cold.len() < SHARED_KEEP {
            match batch.pop() {
                Some(s) => p.warm.push_back(s),
                None => break,
            }
        }
        self.note_warm(&p);
        drop(p);
        drop(batch);
    }

    /// Makes the oldest warm stacks beyond [`SHARED_WARM`] cold. Called by a
    /// worker about to sleep; cheap when there is nothing to do.
    pub(crate) fn trim(&self) {
        if self.warm_len.load(std::sync::atomic::Ordering::Relaxed) <= SHARED_WARM {
            return;
        }
        let excess: Vec<Stack> = {
            let mut p = self.lock();
            let n = p.warm.len().saturating_sub(SHARED_WARM);
            let excess = p.warm.drain(..n).collect();
            self.note_warm(&p);
            excess
        };
        // The system calls run without the lock: a worker that needs a stack
        // meanwhile maps a new one rather than waiting.
        for s in &excess {
            s.release_memory();
        }
        let mut p = self.lock();
        p.cold.extend(excess);
    }

    /// How many stacks are pooled, warm and cold (for tests).
    #[cfg(all(test, not(loom)))]
    fn counts(&self) -> (usize, usize) {
        let p = self.lock();
        (p.warm.len(), p.cold.len())
    }
}

/// The per-worker cache in front of a [`SharedPool`]. Owned by one worker thread.
#[derive(Debug, Default)]
pub(crate) struct LocalPool {
    stacks: Vec<Stack>,
}

impl LocalPool {
    /// Takes a stack: local cache, then shared pool (half a cache's worth
    /// at once, under one lock), then a fresh mapping.
    pub(crate) fn take(&mut self, shared: &SharedPool) -> io::Result<Stack> {
        if self.stacks.is_empty() {
            shared.take_batch(LOCAL_CACHE / 2, &mut self.stacks);
        }
        match self.stacks.pop() {
            Some(s) => {
                if let Some(next) = self.stacks.last() {
                    next.prefetch_top();
                }
                Ok(s)
            }
            None => shared.take(),
        }
    }

    /// Gives a stack back after its tasklet ended.
    pub(crate) fn give(&mut self, s: Stack, shared: &SharedPool) {
        self.stacks.push(s);
        if self.stacks.len() > 2 * LOCAL_CACHE {
            let extra = self.stacks.split_off(LOCAL_CACHE);
            shared.give(extra);
        }
    }

    /// Makes sure one stack is ready, so that a tasklet created now can start
    /// even when mappings are exhausted later. Returns the mapping error otherwise.
    pub(crate) fn ensure_one(&mut self, shared: &SharedPool) -> io::Result<()> {
        if self.stacks.is_empty() {
            let s = shared.take()?;
            self.stacks.push(s);
        }
        Ok(())
    }

    /// Returns every cached stack to the shared pool.
    pub(crate) fn drain_into(&mut self, shared: &SharedPool) {
        shared.give(std::mem::take(&mut self.stacks));
    }
}

#[cfg(all(test, not(loom)))]
mod pool_tests {
    use super::{LocalPool, SharedPool, Stack, COLORS, LOCAL_CACHE, SHARED_WARM};

    #[test]
    fn stacks_start_at_spread_offsets_and_keep_their_usable_size() {
        let stacks: Vec<Stack> = (0..64).map(|_| Stack::new(16 * 1024).unwrap()).collect();
        let mut offsets = std::collections::HashSet::new();
        for s in &stacks {
            let end = s.base.get() + s.total;
            let top = s.top();
            assert_eq!(top % 64, 0);
            assert!(end - top < COLORS * 64, "starts {} bytes down", end - top);
            assert!(top - s.limit() >= 16 * 1024, "usable below the start");
            assert_eq!(s.usable(), 16 * 1024);
            offsets.insert(end - top);
        }
        // 64 stacks over 32 offsets: most offsets are used.
        assert!(
            offsets.len() >= COLORS / 2,
            "only {} offsets",
            offsets.len()
        );
    }

    #[test]
    fn a_local_cache_refills_in_batches_in_the_same_order() {
        let pool = SharedPool::new(16 * 1024);
        let n = LOCAL_CACHE / 2 + 8;
        let batch: Vec<Stack> = (0..n).map(|_| Stack::new(16 * 1024).unwrap()).collect();
        let tops: Vec<usize> = batch.iter().map(Stack::top).collect();
        pool.give(batch);
        let mut local = LocalPool::default();
        // One lock takes half a cache's worth, most recently returned first,
        // as the shared pool alone would hand them out.
        for (i, top) in tops.iter().enumerate().take(LOCAL_CACHE / 2) {
            assert_eq!(local.take(&pool).unwrap().top(), *top, "stack {i}");
            assert_eq!(pool.counts(), (8, 0));
        }
        for top in &tops[LOCAL_CACHE / 2..] {
            assert_eq!(local.take(&pool).unwrap().top(), *top);
        }
        assert_eq!(pool.counts(), (0, 0));
    }

    #[test]
    fn returned_stacks_stay_warm_until_trimmed() {
        let pool = SharedPool::new(16 * 1024);
        let n = SHARED_WARM + 40;
        let batch: Vec<Stack> = (0..n).map(|_| Stack::new(16 * 1024).unwrap()).collect();
        let newest = batch[0].top();
        pool.give(batch);
        assert_eq!(pool.counts(), (n, 0));
        pool.trim();
        assert_eq!(pool.counts(), (SHARED_WARM, 40));
        pool.trim();
        assert_eq!(pool.counts(), (SHARED_WARM, 40));
        // The most recently returned stack comes back first, and warm ones
        // before cold ones.
        assert_eq!(pool.take().unwrap().top(), newest);
        for _ in 1..SHARED_WARM {
            pool.take().unwrap();
        }
        assert_eq!(pool.counts(), (0, 40));
        pool.take().unwrap();
        assert_eq!(pool.counts(), (0, 39));
    }
}

#[cfg(not(loom))]
/// Stack-overflow detection: a SIGSEGV/SIGBUS handler that recognises a fault
/// in the guard page of the tasklet running on this thread, prints which
/// tasklet overflowed and its stack size, and aborts. Other faults go to the
/// handler that was installed before ours (std's, which reports overflows of
/// the thread's own stack).
pub(crate) mod overflow {
    use std::sync::Once;

    /// What the handler needs to know about the running tasklet.
    #[derive(Clone, Copy)]
    pub(crate) struct Running {
        pub guard_lo: usize,
        pub guard_hi: usize,
        pub id: u64,
        pub usable: usize,
    }

    static INSTALL: Once = Once::new();
    // SAFETY (both): an all-zero `sigaction` is a valid value (SIG_DFL, no
    // flags); the statics are written only inside `INSTALL.call_once`,
    // before our handler can read them.
    static mut PREV_SEGV: libc::sigaction = unsafe { std::mem::zeroed() };
    static mut PREV_BUS: libc::sigaction = unsafe { std::mem::zeroed() };

    /// Installs the handler once per process.
    pub(crate) fn install() {
        INSTALL.call_once(|| {
            // SAFETY: installing a signal handler with a zeroed-then-filled
            // sigaction; the previous handlers are saved in statics written
            // only here, before our handler can run.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGSEGV, &sa, std::ptr::addr_of_mut!(PREV_SEGV));
                libc::sigaction(libc::SIGBUS, &sa, std::ptr::addr_of_mut!(PREV_BUS));
            }
        });
    }

    /// Gives this thread an alternate signal stack if it has none, so the
    /// handler can run when the faulting stack is exhausted.
    pub(crate) fn ensure_altstack() {
        // SAFETY: querying and setting this thread's alternate signal stack;
        // the new stack is leaked on purpose (it must outlive the thread's use of it).
        unsafe {
            let mut old: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(std::ptr::null(), &mut old) != 0 {
                return;
            }
            if old.ss_flags & libc::SS_DISABLE == 0 {
                return;
            }
            let size = libc::SIGSTKSZ.max(64 * 1024);
            let mem = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if mem == libc::MAP_FAILED {
                return;
            }
            let st = libc::stack_t {
                ss_sp: mem,
                ss_flags: 0,
                ss_size: size,
            };
            libc::sigaltstack(&st, std::ptr::null_mut());
        }
    }

    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: `info` is provided by the kernel for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        // The worker's `current` tasklet (what the loop last resumed): read
        // through the worker's thread-local pointer, no per-switch bookkeeping.
        if let Some(r) = crate::worker::running_guard() {
            if r.guard_lo != 0 && addr >= r.guard_lo && addr < r.guard_hi {
                let mut buf = [0u8; 256];
                let n = format_message(&mut buf, r.id, r.usable);
                // SAFETY: write(2) and abort(3) are async-signal-safe.
                unsafe {
                    libc::write(2, buf.as_ptr() as *const libc::c_void, n);
                    libc::abort();
                }
            }
        }
        // Not ours: hand over to the previous handler, or the default action.
        // SAFETY: reading the saved sigaction written once before install
        // finished; calling it the way the kernel would.
        unsafe {
            let prev = if sig == libc::SIGSEGV {
                std::ptr::addr_of!(PREV_SEGV).read()
            } else {
                std::ptr::addr_of!(PREV_BUS).read()
            };
            if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(prev.sa_sigaction);
                f(sig, info, ctx);
            } else {
                let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
                f(sig);
            }
        }
    }

    /// Formats the report without allocating (we are in a signal handler).
    fn format_message(buf: &mut [u8; 256], id: u64, usable: usize) -> usize {
        let mut n = 0;
        let mut put = |s: &[u8], n: &mut usize| {
            for &b in s {
                if *n < buf.len() {
                    buf[*n] = b;
                    *n += 1;
                }
            }
        };
        put(b"\nstackless: tasklet ", &mut n);
        put(itoa(id as usize, &mut [0u8; 24]), &mut n);
        put(b" overflowed its stack of ", &mut n);
        put(itoa(usable, &mut [0u8; 24]), &mut n);
        put(
            b" bytes; give it more with Builder::stack_size. Aborting.\n",
            &mut n,
        );
        n
    }

    fn itoa(mut v: usize, tmp: &mut [u8; 24]) -> &[u8] {
        let mut i = tmp.len();
        if v == 0 {
            i -= 1;
            tmp[i] = b'0';
        }
        while v > 0 {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        &tmp[i..]
    }
}
