//! The one place the scheduler gets its synchronisation primitives from.
//!
//! Every atomic, lock, condition variable, cell and thread-local used by the
//! scheduler (and, through the re-export in [`crate::sync`], by
//! `stackless-channels`) comes from here. Normally these are the `std` types;
//! under `--cfg loom` they are loom's, so the loom models in `loom-tests/`
//! check the production code rather than a copy of it (the tokio approach).
//!
//! The wrappers give both sides the same shape: locks without poisoning,
//! `UnsafeCell::with`/`with_mut`, and a `spin_wait` that becomes a loom yield
//! point so spin loops do not explode the model.

#![allow(dead_code)]

#[cfg(not(loom))]
mod imp {
    pub use std::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
    pub use std::sync::Arc;

    /// A mutex without poisoning: a panic while holding it leaves the data as it was.
    #[derive(Default, Debug)]
    pub struct Mutex<T>(std::sync::Mutex<T>);

    /// The guard of [`Mutex`].
    pub type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub const fn new(t: T) -> Self {
            Mutex(std::sync::Mutex::new(t))
        }
        #[inline]
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
        /// The data, through a unique borrow (no locking).
        #[inline]
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(|e| e.into_inner())
        }
        #[inline]
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            match self.0.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }
    }

    /// A condition variable paired with [`Mutex`].
    #[derive(Default, Debug)]
    pub struct Condvar(std::sync::Condvar);

    impl Condvar {
        pub const fn new() -> Self {
            Condvar(std::sync::Condvar::new())
        }
        pub fn wait<'a, T>(&self, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(g).unwrap_or_else(|e| e.into_inner())
        }
        pub fn wait_timeout<'a, T>(
            &self,
            g: MutexGuard<'a, T>,
            d: std::time::Duration,
        ) -> MutexGuard<'a, T> {
            match self.0.wait_timeout(g, d) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            }
        }
        pub fn notify_one(&self) {
            self.0.notify_one()
        }
        pub fn notify_all(&self) {
            self.0.notify_all()
        }
    }

    /// `UnsafeCell` with loom's access API.
    #[derive(Debug, Default)]
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub const fn new(t: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(t))
        }
        #[inline(always)]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        #[inline(always)]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
        #[inline(always)]
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut()
        }
    }

    /// One round of a spin loop.
    #[inline(always)]
    pub fn spin_wait() {
        std::hint::spin_loop();
    }

    /// Gives the OS thread's time slice away (a spin loop that waits long).
    #[inline]
    pub fn yield_thread() {
        std::thread::yield_now();
    }

    pub use std::thread::{current as current_thread, park, park_timeout, JoinHandle, Thread};

    /// Starts an OS thread (a loom thread under loom).
    pub fn spawn_any_thread<F, T>(f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        std::thread::spawn(f)
    }

    pub fn spawn_thread<F>(name: String, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        std::thread::Builder::new().name(name).spawn(f)
    }

    macro_rules! sync_thread_local {
        ($($tt:tt)*) => { std::thread_local!($($tt)*); };
    }
    pub(crate) use sync_thread_local as thread_local;
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
    pub use loom::sync::Arc;

    #[derive(Debug)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);
    pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    impl<T> Mutex<T> {
        pub fn new(t: T) -> Self {
            Mutex(loom::sync::Mutex::new(t))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(|e| e.into_inner())
        }
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }

    #[derive(Debug, Default)]
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub fn wait<'a, T>(&self, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(g).unwrap_or_else(|e| e.into_inner())
        }
        /// Loom never times out: a model that needs the timeout to make
        /// progress shows up as a loom deadlock, which is what we want.
        pub fn wait_timeout<'a, T>(
            &self,
            g: MutexGuard<'a, T>,
            _d: std::time::Duration,
        ) -> MutexGuard<'a, T> {
            self.wait(g)
        }
        pub fn notify_one(&self) {
            self.0.notify_one()
        }
        pub fn notify_all(&self) {
            self.0.notify_all()
        }
    }

    #[derive(Debug)]
    pub struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

    impl<T: Default> Default for UnsafeCell<T> {
        fn default() -> Self {
            UnsafeCell::new(T::default())
        }
    }

    impl<T> UnsafeCell<T> {
        pub fn new(t: T) -> Self {
            UnsafeCell(loom::cell::UnsafeCell::new(t))
        }
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            self.0.with(f)
        }
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            self.0.with_mut(f)
        }
        pub fn get_mut(&mut self) -> &mut T {
            // SAFETY: `&mut self` proves exclusive access.
            self.0.with_mut(|p| unsafe { &mut *p })
        }
    }

    pub fn spin_wait() {
        loom::thread::yield_now();
    }

    pub fn yield_thread() {
        loom::thread::yield_now();
    }

    pub use loom::thread::{current as current_thread, park, JoinHandle, Thread};

    pub fn spawn_any_thread<F, T>(f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        loom::thread::spawn(f)
    }

    pub fn park_timeout(_d: std::time::Duration) {
        loom::thread::park();
    }

    pub fn spawn_thread<F>(_name: String, f: F) -> std::io::Result<loom::thread::JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        Ok(loom::thread::spawn(f))
    }

    /// loom's `thread_local!` takes no `const { }` initialisers: unwrap them.
    macro_rules! sync_thread_local {
        () => {};
        ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }; $($rest:tt)*) => {
            loom::thread_local!($(#[$attr])* $vis static $name: $t = $init);
            $crate::sync::thread_local!($($rest)*);
        };
        ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
            loom::thread_local!($(#[$attr])* $vis static $name: $t = $init);
            $crate::sync::thread_local!($($rest)*);
        };
    }
    pub(crate) use sync_thread_local as thread_local;
}

pub(crate) use imp::thread_local;
pub use imp::*;

/// Test-only weakenings of the protocols, compiled only under `cfg(loom)`:
/// each switch removes one step (a fence, a re-check, a phase) so that the
/// loom models in `loom-tests/` can show that they catch the resulting bug.
/// The switches live in a plain (non-loom) thread-local: loom runs all the
/// threads of one model on the test's OS thread, so a model sees the
/// switches its test set, and tests running in parallel do not.
#[cfg(loom)]
pub mod weaken {
    use std::cell::Cell;

    /// One protocol step that a model may remove.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum Weakness {
        /// A worker goes to sleep without re-checking for work after
        /// announcing that it sleeps (idle/README.md, "Going to sleep").
        NoRecheckBeforeSleep = 1,
        /// Waker and sleeper skip the `SeqCst` fences of the sleep handshake.
        NoSleepFence = 2,
        /// A parked party trusts a *claim* of its park as a finished
        /// hand-off (no `WOKEN` phase): it may run before the waker is done.
        TrustClaim = 4,
        /// The worker loop decides "mine" from `home` and `life` read
        /// separately, racing with a thief that steals and starts a tasklet.
        RacyOwnership = 8,
    }

    std::thread_local! {
        static ON: Cell<u32> = const { Cell::new(0) };
    }

    /// Turns the given weaknesses on for models run on this thread.
    pub fn set(ws: &[Weakness]) {
        ON.with(|c| c.set(ws.iter().fold(0, |a, w| a | *w as u32)));
    }

    /// Whether `w` is on.
    pub fn on(w: Weakness) -> bool {
        ON.with(|c| c.get() & w as u32 != 0)
    }
}

/// Whether a test-only weakening is on (always false outside loom).
#[cfg(loom)]
#[inline(always)]
pub(crate) fn weakened(w: weaken::Weakness) -> bool {
    weaken::on(w)
}

#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn weakened(_: Weakness) -> bool {
    false
}

/// Outside loom the weaknesses exist only as names.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) enum Weakness {
    NoRecheckBeforeSleep,
    NoSleepFence,
    TrustClaim,
    RacyOwnership,
}
#[cfg(loom)]
pub(crate) use weaken::Weakness;

/// Asks for the cache line holding `p` (a hint: it never faults, whatever
/// the address, and does nothing off x86-64 or under loom).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    prefetch_hint::<{ core::arch::x86_64::_MM_HINT_T0 }>(p);
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}

/// [`prefetch`] with intent to write (`prefetchw` where the target has it,
/// a plain prefetch otherwise).
#[inline(always)]
pub(crate) fn prefetch_write(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    prefetch_hint::<{ core::arch::x86_64::_MM_HINT_ET0 }>(p);
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}

#[cfg(all(target_arch = "x86_64", not(loom)))]
#[inline(always)]
fn prefetch_hint<const HINT: i32>(p: *const u8) {
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe { core::arch::x86_64::_mm_prefetch::<HINT>(p as *const i8) };
}

/// A value alone on its cache lines: 128 bytes, the unit the adjacent-line
/// prefetcher moves. Used where one thread stores often and others read (or
/// store) nearby fields, so that neither invalidates the other's line.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A small test-and-test-and-set spin lock whose unlock is a plain release
/// store: one atomic read-modify-write per critical section. Meant for the
/// tiny critical sections of channels and parking, never held across a
/// tasklet switch.
#[derive(Debug, Default)]
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, so sharing the
// lock between threads only needs `T: Send` (as for `std::sync::Mutex`).
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// The guard of [`SpinLock`]; unlocks on drop.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    /// A new unlocked lock around `value`.
    pub fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (then yielding the OS thread) while another
    /// thread holds it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spin_wait();
                    spins += 1;
                } else {
                    yield_thread();
                }
            }
            if self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock, so no `&mut`
        // to the value exists elsewhere.
        self.lock.value.with(|p| unsafe { &*p })
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: holding the guard means holding the lock exclusively.
        self.lock.value.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
