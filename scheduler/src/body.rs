//! A tasklet's body until it starts: the closure given to `spawn`.
//!
//! Most bodies capture a few words (a channel handle, an index, an `Arc`).
//! Those are kept inline in the task record, so a spawn costs one
//! allocation instead of two; larger closures are boxed. Either way the
//! body is called or dropped exactly once, through two monomorphised
//! functions chosen when it is made.

use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};

/// Room for a closure of up to three words.
type Words = MaybeUninit<[usize; 3]>;

/// An erased `FnOnce() + Send + 'static`.
pub(crate) struct Body {
    /// The closure itself (when it fits) or a `Box` of it.
    words: Words,
    /// Moves the closure out of `words` and calls it (`true`) or drops it
    /// (`false`). One function, not two: the record stays three lines.
    take: unsafe fn(*mut Words, bool),
}

// SAFETY: a `Body` is only made from an `F: Send` (see `Body::new`), and it
// owns that `F` (inline or boxed): sending the `Body` sends the `F`.
unsafe impl Send for Body {}

impl Body {
    /// Wraps `f`, inline when it fits in three words.
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Body {
        let mut words = Words::uninit();
        if size_of::<F>() <= size_of::<Words>() && align_of::<F>() <= align_of::<Words>() {
            // SAFETY: `F` fits in `words` and needs no stricter alignment
            // (checked just above); `words` is ours and uninitialised.
            unsafe { words.as_mut_ptr().cast::<F>().write(f) };
            Body {
                words,
                take: take_inline::<F>,
            }
        } else {
            let raw = Box::into_raw(Box::new(f));
            // SAFETY: a pointer fits in `words` (three words, word-aligned).
            unsafe { words.as_mut_ptr().cast::<*mut F>().write(raw) };
            Body {
                words,
                take: take_boxed::<F>,
            }
        }
    }

    /// Runs the closure (consuming it).
    pub(crate) fn call(self) {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `words` holds the value `new` stored with this `take`,
        // not yet moved out; `ManuallyDrop` keeps `Drop` from touching it
        // again, even if the closure panics (it was moved out before
        // running).
        unsafe { (me.take)(&mut me.words, true) }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // SAFETY: a `Body` that is dropped was never called (`call` wraps
        // it in `ManuallyDrop`), so `words` still holds its closure.
        unsafe { (self.take)(&mut self.words, false) }
    }
}

/// Calls (`call`) or drops the closure stored inline.
///
/// # Safety
/// `w` holds an `F` written by [`Body::new`], which the caller gives up.
unsafe fn take_inline<F: FnOnce()>(w: *mut Words, call: bool) {
    // SAFETY: per the contract, the `F` is there and becomes ours.
    let f = unsafe { w.cast::<F>().read() };
    if call {
        f()
    }
}

/// Calls (`call`) or drops the boxed closure.
///
/// # Safety
/// `w` holds a `Box<F>` pointer written by [`Body::new`], which the caller
/// gives up.
unsafe fn take_boxed<F: FnOnce()>(w: *mut Words, call: bool) {
    // SAFETY: per the contract, the pointer came from `Box::into_raw`.
    let f = unsafe { Box::from_raw(w.cast::<*mut F>().read()) };
    if call {
        f()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Body;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_and_large_bodies_run_or_drop_exactly_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        // Inline (two words) and boxed (five words), each called and dropped.
        for big in [false, true] {
            let (c, r) = (Count(drops.clone()), runs.clone());
            let pad = [7usize; 3];
            let b = if big {
                Body::new(move || {
                    assert_eq!(pad[2], 7);
                    let _c = &c;
                    r.fetch_add(1, Ordering::SeqCst);
                })
            } else {
                Body::new(move || {
                    let _c = &c;
                    r.fetch_add(1, Ordering::SeqCst);
                })
            };
            b.call();
            let c = Count(drops.clone());
            drop(if big {
                Body::new(move || drop((c, pad)))
            } else {
                Body::new(move || drop(c))
            });
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(drops.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_panicking_body_drops_its_captures_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let c = Count(drops.clone());
        let b = Body::new(move || {
            let _c = c;
            panic!("boom");
        });
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.call())).is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn over_aligned_captures_are_boxed() {
        #[repr(align(64))]
        struct Wide(u8);
        let w = Wide(3);
        let out = Arc::new(AtomicUsize::new(0));
        let o = out.clone();
        Body::new(move || {
            assert_eq!(&w as *const Wide as usize % 64, 0);
            o.store(w.0 as usize, Ordering::SeqCst);
        })
        .call();
        assert_eq!(out.load(Ordering::SeqCst), 3);
    }
}
