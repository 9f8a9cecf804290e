//! [`TaskRef`], the reference-counted handle to a tasklet record, and the
//! pool the records' memory comes from.
//!
//! `Arc<Task>` would do, and is what the loom build uses. Outside loom the
//! handle is our own for two reasons: where the memory goes, and where the
//! record sits (see [`Record`]). Records are carved, three lines each,
//! out of one region of address space reserved when the first is made (see
//! [`Region`]), and freed records stay in a pool that gives them out again,
//! most recently freed first (still in cache). Spawning a burst of
//! tasklets then writes records that lie side by side, with nothing
//! between them for the caches to fetch in vain; freeing the burst gives
//! nothing back to the kernel, so the next one does not page-fault the
//! same memory in again.
//!
//! # The pool
//!
//! * Each thread keeps up to [`LOCAL_CAP`] free records that it alone
//!   touches: an allocation pops one, a free pushes one, no atomics.
//! * A full local cache moves half of itself to the process-wide list; an
//!   empty one takes up to half its capacity from there before it carves
//!   [`FRESH_BATCH`] new records out of the region. Each of these happens
//!   once per many records, so the list's lock is off the hot path.
//! * The region holds [`REGION_RECORDS`] records (2^20: 192 MiB of address
//!   space, of which only the pages records were carved from are ever
//!   touched). Past that, or where the region could not be reserved,
//!   records come from the allocator one by one, and the process-wide
//!   list keeps those only while it holds fewer than [`GLOBAL_KEEP`]
//!   records in all: the rest go back to the allocator. So the pool holds
//!   at most what was alive at the peak, up to 192 MiB of carved records
//!   (what a million tasklets alive at once left; Go keeps its goroutine
//!   records for good too) and 24 MiB of others.
//! * A thread that exits hands its cache to the process-wide list; a record
//!   freed while its thread is being torn down goes there directly.
//!
//! # The count
//!
//! The same protocol as `Arc`: a clone is a relaxed increment (a new
//! handle is made from one that exists, so nothing needs ordering); a drop
//! is a release decrement, and the one that reaches zero fences (acquire)
//! before it drops the task, so every other handle's uses happen before.

use crate::task::Task;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Free records one thread keeps for itself.
pub(crate) const LOCAL_CAP: usize = 256;
/// Records carved (or allocated) at once when no free one is left anywhere.
const FRESH_BATCH: usize = 32;
/// Free records the process-wide list keeps, counting those of the region,
/// before it gives those from the allocator back.
pub(crate) const GLOBAL_KEEP: usize = 1 << 17;
/// Records the region holds: a million tasklets alive at once (the full
/// `spawn` benchmark) are all carved from it. With 2^17, the other 870,000
/// came from the allocator, and spawning and joining them took 172–297 ns
/// each instead of 120–168 (6 alternating pairs of runs).
const REGION_RECORDS: usize = 1 << 20;

/// The allocation behind a [`TaskRef`]: three cache lines, aligned. What a
/// switch touches is the first (the park word, `home` and the flags, which
/// a nice round writes, then the coroutine's saved registers), so resuming
/// one of thousands of tasklets misses one line of its record.
///
/// In the region records lie side by side, 192 bytes apart. Past it, the
/// alignment is not asked of the allocator (glibc's `memalign` leaves 384
/// bytes between 192-byte records): `fresh` asks for [`BLOCK`] at the
/// usual alignment and puts the record at the first line boundary past the
/// block's first word, where it keeps the block's address (272 bytes a
/// record). Among 100,000 records the dense ones took spawning and joining
/// from a median of 225 to 193 ns each (the scaling harness, 15 interleaved
/// runs): there are no lines between them for the hardware prefetchers to
/// bring in vain.
#[repr(C, align(64))]
struct Record {
    task: Task,
    refs: AtomicUsize,
}

/// A strong reference to a [`Task`] (the crate's `Arc<Task>`).
pub(crate) struct TaskRef {
    rec: NonNull<Record>,
}

// SAFETY: a `TaskRef` is a shared reference to a `Task` with an atomic
// count, exactly like `Arc<Task>`, which is Send + Sync because `Task` is.
unsafe impl Send for TaskRef {}
// SAFETY: as above.
unsafe impl Sync for TaskRef {}

impl TaskRef {
    /// A new record holding what `make` returns, with one reference.
    ///
    /// The memory is taken first and the task made after, so that it is
    /// built where it stays: a task passed by value is made before the
    /// call that finds its memory, so on the stack, then copied (a
    /// `memcpy` of the whole record per spawn).
    #[inline(always)]
    pub(crate) fn new_with(make: impl FnOnce() -> Task) -> TaskRef {
        let rec = take_free().unwrap_or_else(fresh);
        let task = make();
        // SAFETY: `rec` is a free, properly aligned allocation for a
        // `Record` that nothing else refers to (it came off a free list or
        // from the allocator).
        unsafe {
            rec.as_ptr().write(Record {
                refs: AtomicUsize::new(1),
                task,
            })
        };
        TaskRef { rec }
    }

    /// The task's address (stable for the record's life).
    #[inline(always)]
    pub(crate) fn as_ptr(this: &TaskRef) -> *const Task {
        // SAFETY: `rec` is live while `this` exists; no reference is made.
        unsafe { std::ptr::addr_of!((*this.rec.as_ptr()).task) }
    }

    /// Whether both handles are the same tasklet.
    #[inline(always)]
    pub(crate) fn ptr_eq(a: &TaskRef, b: &TaskRef) -> bool {
        a.rec == b.rec
    }

    /// Gives up the handle without dropping its reference.
    #[inline(always)]
    pub(crate) fn into_raw(this: TaskRef) -> *const Task {
        let p = TaskRef::as_ptr(&this);
        std::mem::forget(this);
        p
    }

    /// Takes back a reference given up by [`TaskRef::into_raw`].
    ///
    /// # Safety
    /// `p` came from `into_raw` (or `as_ptr` of a handle whose reference is
    /// being transferred) and that reference has not been taken back yet.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(p: *const Task) -> TaskRef {
        let off = std::mem::offset_of!(Record, task);
        // SAFETY: `p` points at the `task` field of a live `Record`
        // (caller's contract), so stepping back by the field's offset stays
        // inside that allocation and gives its start, which is non-null.
        let rec = unsafe { NonNull::new_unchecked((p as *mut u8).sub(off) as *mut Record) };
        TaskRef { rec }
    }

    /// Adds a reference to the record `p` points into.
    ///
    /// # Safety
    /// `p` is the task of a record that is alive (someone holds a
    /// reference for the whole call).
    #[inline(always)]
    pub(crate) unsafe fn increment_strong_count(p: *const Task) {
        // SAFETY: forwarded to the caller: the record is alive.
        let r = std::mem::ManuallyDrop::new(unsafe { TaskRef::from_raw(p) });
        std::mem::forget(TaskRef::clone(&r));
    }

    /// A second handle to a record no other thread can reach yet: a plain
    /// increment (no locked instruction, which would wait for the stores
    /// that just filled the record).
    ///
    /// # Safety
    /// No other handle to this record exists on another thread, and none is
    /// cloned or dropped concurrently (the record is unpublished).
    #[inline(always)]
    pub(crate) unsafe fn clone_unpublished(&self) -> TaskRef {
        let r = self.refs();
        r.store(r.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        TaskRef { rec: self.rec }
    }

    #[inline(always)]
    fn refs(&self) -> &AtomicUsize {
        // SAFETY: the record is live while `self` exists.
        unsafe { &(*self.rec.as_ptr()).refs }
    }
}

impl TaskRef {
    /// Gives up two handles with one count update when they are the same
    /// record (a tasklet's end gives up the ring's and the registry's).
    #[inline]
    pub(crate) fn drop_pair(a: TaskRef, b: TaskRef) {
        if !TaskRef::ptr_eq(&a, &b) {
            drop(a);
            drop(b);
            return;
        }
        let rec = a.rec;
        std::mem::forget(b);
        std::mem::forget(a);
        give_up(rec, 2);
    }
}

/// Gives up `n` handles of the record `rec`, freeing it with the last.
///
/// Handles that hold the whole count (a joined tasklet's last one,
/// typically) free the record without a locked instruction: nobody else
/// holds a handle to clone it meanwhile, and the acquire load orders every
/// other handle's uses (their release decrements) before the drop.
#[inline(always)]
fn give_up(rec: NonNull<Record>, n: usize) {
    // SAFETY: the `n` handles being given up keep the record alive until
    // they are accounted for here.
    let refs = unsafe { &(*rec.as_ptr()).refs };
    if refs.load(Ordering::Acquire) == n || refs.fetch_sub(n, Ordering::Release) == n {
        // Every other handle's uses happen before the task is dropped.
        fence(Ordering::Acquire);
        release(rec);
    }
}

impl Clone for TaskRef {
    #[inline(always)]
    fn clone(&self) -> TaskRef {
        // Relaxed: the new handle is made from one that exists, so the
        // record cannot be freed meanwhile (Arc's argument).
        let old = self.refs().fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            // Leaked handles by the billions: stop before the count wraps.
            std::process::abort();
        }
        TaskRef { rec: self.rec }
    }
}

impl std::ops::Deref for TaskRef {
    type Target = Task;
    #[inline(always)]
    fn deref(&self) -> &Task {
        // SAFETY: the record is live while `self` exists, and the task is
        // only ever shared (`Task` is `Sync`).
        unsafe { &(*self.rec.as_ptr()).task }
    }
}

impl Drop for TaskRef {
    #[inline]
    fn drop(&mut self) {
        give_up(self.rec, 1);
    }
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// Drops the task of a record whose last reference went, and frees it.
#[inline(never)]
fn release(rec: NonNull<Record>) {
    // SAFETY: the count reached zero: no handle is left, so this is the
    // only access to the task, which was initialised by `TaskRef::new` and
    // is dropped exactly once here.
    unsafe { std::ptr::drop_in_place(std::ptr::addr_of_mut!((*rec.as_ptr()).task)) };
    give_free(FreeRecord(rec));
}

/// A record's memory with no live task in it.
struct FreeRecord(NonNull<Record>);

// SAFETY: free memory holds no value, so it may be handed to any thread.
unsafe impl Send for FreeRecord {}

impl FreeRecord {
    /// Whether it was carved out of the region (and so is never freed).
    fn in_region(&self) -> bool {
        REGION
            .get()
            .and_then(Option::as_ref)
            .is_some_and(|r| r.holds(self.0))
    }

    /// Gives a record that came from `fresh` back to the allocator.
    fn dealloc(self) {
        debug_assert!(!self.in_region());
        // SAFETY: the record came from `fresh`, which kept its block's
        // address in the word before it; the block was allocated with
        // `BLOCK` and holds no live value.
        unsafe {
            let block = (self.0.as_ptr() as *const *mut u8).sub(1).read();
            dealloc(block, BLOCK);
        }
    }
}

/// A thread's own free records; handed to [`GLOBAL`] when the thread exits.
struct LocalFree(Vec<FreeRecord>);

impl Drop for LocalFree {
    fn drop(&mut self) {
        give_global(&mut self.0, usize::MAX);
    }
}

std::thread_local! {
    static LOCAL: RefCell<LocalFree> = const { RefCell::new(LocalFree(Vec::new())) };
}

/// The process-wide free list.
static GLOBAL: Mutex<Vec<FreeRecord>> = Mutex::new(Vec::new());

fn global() -> std::sync::MutexGuard<'static, Vec<FreeRecord>> {
    // A panic while holding it leaves a valid Vec of free memory.
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves up to `n` records from the end of `from` to the global list. It
/// keeps every record of the region (they are never freed), and others
/// while it holds fewer than [`GLOBAL_KEEP`]; the rest go back to the
/// allocator.
fn give_global(from: &mut Vec<FreeRecord>, n: usize) {
    let n = n.min(from.len());
    let split = from.len() - n;
    let mut spare = Vec::new();
    let mut g = global();
    let mut room = GLOBAL_KEEP.saturating_sub(g.len());
    for r in from.drain(split..) {
        if r.in_region() {
            g.push(r);
        } else if room > 0 {
            room -= 1;
            g.push(r);
        } else {
            spare.push(r);
        }
    }
    drop(g);
    for r in spare {
        r.dealloc();
    }
}

#[inline]
fn take_free() -> Option<NonNull<Record>> {
    LOCAL
        .try_with(|l| {
            let mut l = l.borrow_mut();
            if let Some(r) = l.0.pop() {
                // Four spawns ahead: about an L3 miss's time.
                let n = l.0.len();
                if n >= 4 {
                    prefetch_for_write(l.0[n - 4].0);
                }
                return Some(r.0);
            }
            refill(&mut l.0)
        })
        .ok()
        .flatten()
}

/// Asks for the lines of a record that will be handed out soon. In a spawn
/// burst each record is written whole while its lines are still on their
/// way from L3, and the next locked instruction waits for those stores:
/// spawning 100,000 tasklets then waits for one record at a time.
#[inline(always)]
fn prefetch_for_write(rec: NonNull<Record>) {
    prefetch_lines(rec.as_ptr() as *const u8, 0, crate::sync::prefetch_write);
}

/// Asks for every line but the first of `t`'s record: what a fresh
/// tasklet's start and end use besides what a resume reads (the worker
/// loop asks for the first line earlier, with every record's).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_after_first_line(t: &Task) {
    prefetch_lines(t.hot_line(), 1, crate::sync::prefetch);
}

/// Asks for the lines of the record at `p` from line `first` on.
#[inline(always)]
fn prefetch_lines(p: *const u8, first: usize, prefetch: fn(*const u8)) {
    for off in (first * 64..size_of::<Record>()).step_by(64) {
        prefetch(p.wrapping_add(off));
    }
}

#[cold]
fn refill(local: &mut Vec<FreeRecord>) -> Option<NonNull<Record>> {
    let mut g = global();
    let n = g.len().min(LOCAL_CAP / 2);
    let from = g.len() - n;
    local.extend(g.drain(from..));
    drop(g);
    if local.is_empty() {
        // Nothing to reuse: make a few at once, so a growing burst visits
        // the lock once per batch rather than once per record.
        if !carve(local) {
            local.extend((1..FRESH_BATCH).map(|_| FreeRecord(fresh())));
            return Some(fresh());
        }
    }
    local.pop().map(|r| r.0)
}

/// The address space records are carved from: [`REGION_RECORDS`] side
/// by side, reserved (not committed: only the pages carved from are ever
/// touched) once per process, and never given back.
struct Region {
    base: NonNull<Record>,
    /// Records carved so far (may run past the capacity: then none is).
    next: AtomicUsize,
}

// SAFETY: the region is plain memory handed out by an atomic counter; each
// record carved from it belongs to whoever holds it.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

/// The region, or `None` when it could not be reserved (then records come
/// from the allocator).
static REGION: std::sync::OnceLock<Option<Region>> = std::sync::OnceLock::new();

impl Region {
    fn reserve() -> Option<Region> {
        let p = crate::stack::map_anonymous(REGION_RECORDS * size_of::<Record>(), 0).ok()?;
        // A mapping starts on a page boundary, so records are line-aligned.
        Some(Region {
            base: NonNull::new(p as *mut Record)?,
            next: AtomicUsize::new(0),
        })
    }

    fn holds(&self, r: NonNull<Record>) -> bool {
        let off = (r.as_ptr() as usize).wrapping_sub(self.base.as_ptr() as usize);
        off < REGION_RECORDS * size_of::<Record>()
    }
}

/// Carves up to [`FRESH_BATCH`] records out of the region into `local`,
/// lowest address on top (handed out first). False when none is left.
#[cold]
fn carve(local: &mut Vec<FreeRecord>) -> bool {
    let Some(r) = REGION.get_or_init(Region::reserve).as_ref() else {
        return false;
    };
    // Once it is used up, every refill that finds nothing to reuse comes
    // here: a plain load then, not a read-modify-write of a shared line.
    if r.next.load(Ordering::Relaxed) >= REGION_RECORDS {
        return false;
    }
    let start = r.next.fetch_add(FRESH_BATCH, Ordering::Relaxed);
    if start >= REGION_RECORDS {
        return false;
    }
    for i in (start..(start + FRESH_BATCH).min(REGION_RECORDS)).rev() {
        // SAFETY: `i` is below the region's capacity, so the record lies
        // within the mapping; the counter gives each index out once.
        local.push(FreeRecord(unsafe {
            NonNull::new_unchecked(r.base.as_ptr().add(i))
        }));
    }
    true
}

/// What `fresh` asks the allocator for: a record and the room to align it
/// and to keep the block's address just before it.
const BLOCK: Layout = match Layout::from_size_align(size_of::<Record>() + 64, 16) {
    Ok(l) => l,
    Err(_) => panic!("a record's block is a valid layout"),
};

#[cold]
fn fresh() -> NonNull<Record> {
    // SAFETY: `BLOCK` is not zero-sized.
    let block = unsafe { alloc(BLOCK) };
    if block.is_null() {
        handle_alloc_error(BLOCK);
    }
    // The first line boundary at least a word in: at most 64 bytes in, so
    // the record ends within the block.
    let off = (block as usize + 8).next_multiple_of(64) - block as usize;
    debug_assert!((8..=64).contains(&off));
    // SAFETY: `off - 8 .. off + size_of::<Record>()` lies within the
    // block, and the word before the record is ours alone (no `Record`
    // covers it): it keeps the block's address for `dealloc`.
    unsafe {
        let rec = block.add(off);
        (rec as *mut *mut u8).sub(1).write(block);
        NonNull::new_unchecked(rec as *mut Record)
    }
}

#[inline]
fn give_free(r: FreeRecord) {
    let mut r = Some(r);
    let _ = LOCAL.try_with(|l| {
        // A record freed inside a `LOCAL` borrow cannot happen (the pool
        // drops no tasks), but be safe: fall through to the global list.
        let Ok(mut l) = l.try_borrow_mut() else {
            return;
        };
        if l.0.len() >= LOCAL_CAP {
            give_global(&mut l.0, LOCAL_CAP / 2);
        }
        l.0.push(r.take().expect("taken once"));
    });
    if let Some(r) = r {
        // This thread's cache is gone (thread exit).
        let mut v = vec![r];
        give_global(&mut v, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_reused_and_counted() {
        let a = Task::new(None, false);
        let p = TaskRef::as_ptr(&a);
        let b = a.clone();
        assert!(TaskRef::ptr_eq(&a, &b));
        drop(a);
        drop(b);
        // The most recently freed record comes back first.
        let c = Task::new(None, false);
        assert_eq!(TaskRef::as_ptr(&c), p);
        let raw = TaskRef::into_raw(c);
        // SAFETY: `raw` came from `into_raw` and is taken back once.
        unsafe { TaskRef::increment_strong_count(raw) };
        // SAFETY: two references are owned through `raw` now.
        let (d, e) = unsafe { (TaskRef::from_raw(raw), TaskRef::from_raw(raw)) };
        assert!(TaskRef::ptr_eq(&d, &e));
        assert_eq!(d.refs().load(Ordering::Relaxed), 2);
    }

    #[test]
    fn carved_records_lie_side_by_side_and_stay_in_the_pool() {
        let mut v = Vec::new();
        if !carve(&mut v) {
            // No region here, or other tests used it all: nothing to check.
            return;
        }
        assert!(!v.is_empty() && v.len() <= FRESH_BATCH);
        // Lowest address on top, each record right above the next.
        for w in v.windows(2) {
            assert_eq!(
                w[0].0.as_ptr() as usize,
                w[1].0.as_ptr() as usize + size_of::<Record>()
            );
        }
        assert!(v
            .iter()
            .all(|r| r.in_region() && r.0.as_ptr() as usize % 64 == 0));
        // Handed back, they go to the global list (`dealloc` asserts that
        // no record of the region reaches it).
        give_global(&mut v, usize::MAX);
        assert!(v.is_empty());
    }

    #[test]
    fn a_burst_larger_than_the_local_cache_round_trips() {
        let many: Vec<TaskRef> = (0..LOCAL_CAP * 3).map(|_| Task::new(None, false)).collect();
        let ptrs: std::collections::HashSet<usize> =
            many.iter().map(|t| TaskRef::as_ptr(t) as usize).collect();
        assert_eq!(ptrs.len(), LOCAL_CAP * 3);
        drop(many);
        // A thread that exits hands its cache over; records freed there can
        // be taken here.
        std::thread::spawn(|| drop(Task::new(None, false)))
            .join()
            .unwrap();
        let again: Vec<TaskRef> = (0..LOCAL_CAP * 3).map(|_| Task::new(None, false)).collect();
        assert_eq!(again.len(), LOCAL_CAP * 3);
    }
}

#[cfg(test)]
mod layout_tests {
    use super::Record;
    use crate::task::{Exec, Task};
    use std::mem::{offset_of, size_of};

    /// Everything a switch reads and a nice round writes (the park word,
    /// `home`, the flags, `Exec`, then the coroutine's saved registers)
    /// is the record's first line; the coroutine's stack (`Option<Coro>`'s
    /// niche, which the hot paths do not read) starts the second.
    #[test]
    fn hot_fields_come_first() {
        assert_eq!(offset_of!(Record, task), 0);
        assert_eq!(offset_of!(Task, park), 0);
        assert_eq!(
            size_of::<Option<crate::coroutine::Coro>>(),
            size_of::<crate::coroutine::Coro>()
        );
        let exec_end = offset_of!(Task, exec) + size_of::<Exec>();
        assert!(exec_end <= offset_of!(Task, coro));
        #[cfg(own_switch)]
        {
            assert_eq!(size_of::<crate::coroutine::Regs>(), 40);
            assert_eq!(offset_of!(Task, coro), 24);
        }
        assert_eq!(size_of::<Record>(), 192);
        assert_eq!(std::mem::align_of::<Record>(), 64);
    }
}
