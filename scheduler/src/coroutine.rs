//! The stack switch: the one thing loom cannot model.
//!
//! Normally a tasklet is a corosensei coroutine on a pooled guard-paged
//! stack: `resume` switches from the worker's loop onto the tasklet's stack
//! and `Suspender::suspend` switches back (asymmetric, about 2.4 ns a round
//! trip here).
//!
//! Under `cfg(loom)` a tasklet is a loom thread and a *baton* (a loom
//! mutex/condvar pair): `resume` hands the baton to the tasklet's thread and
//! waits for it back, `suspend` hands it back and waits. Exactly one of the
//! worker and its running tasklet executes at a time, as with a real switch,
//! so everything above this module is the production code.

#[cfg(not(loom))]
mod imp {
    use crate::stack::Stack;
    use corosensei::stack::StackPointer;
    use corosensei::{Coroutine, CoroutineResult, Yielder};

    // SAFETY: `Stack` is a live mapping whose usable part is
    // `[limit, top)` and whose page below `limit` is PROT_NONE (the guard page
    // corosensei's trait demands); `top` is page aligned, so it meets
    // STACK_ALIGNMENT.
    unsafe impl corosensei::stack::Stack for Stack {
        #[inline]
        fn base(&self) -> StackPointer {
            StackPointer::new(self.top()).expect("stack top is not null")
        }
        #[inline]
        fn limit(&self) -> StackPointer {
            StackPointer::new(self.limit()).expect("stack limit is not null")
        }
    }

    /// A started tasklet's execution context.
    pub(crate) struct Coro {
        co: Coroutine<(), (), (), Stack>,
    }

    /// What a running tasklet uses to switch back to its worker's loop.
    #[derive(Clone, Copy)]
    pub(crate) struct Suspender(std::ptr::NonNull<Yielder<(), ()>>);

    impl Suspender {
        /// Switches back to whoever resumed us; returns when resumed again.
        #[inline(always)]
        pub(crate) fn suspend(self) {
            // SAFETY: the yielder lives in the root frame of this coroutine's
            // stack for as long as the coroutine runs, and `suspend` is only
            // called by code running on that coroutine (the scheduler hands
            // out a tasklet's Suspender to that tasklet alone).
            unsafe { self.0.as_ref().suspend(()) }
        }
    }

    impl Coro {
        /// Prepares `body` to run on `stack`; nothing runs until `resume`.
        pub(crate) fn new(stack: Stack, body: impl FnOnce(Suspender) + 'static) -> Coro {
            let co = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
                body(Suspender(std::ptr::NonNull::from(y)))
            });
            Coro { co }
        }

        /// Runs the tasklet until it suspends (false) or finishes (true).
        #[inline(always)]
        pub(crate) fn resume(&mut self) -> bool {
            matches!(self.co.resume(()), CoroutineResult::Return(()))
        }

        /// Takes the stack back from a finished coroutine.
        pub(crate) fn into_stack(self) -> Stack {
            self.co.into_stack()
        }
    }
}

#[cfg(loom)]
mod imp {
    use crate::stack::Stack;
    use loom::sync::{Arc, Condvar, Mutex};

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Turn {
        Worker,
        Tasklet,
        Done,
    }

    struct Baton {
        turn: Mutex<Turn>,
        cv: Condvar,
    }

    impl Baton {
        fn pass(&self, to: Turn, wait_for: &[Turn]) -> Turn {
            let mut g = self.turn.lock().unwrap();
            *g = to;
            self.cv.notify_all();
            while !wait_for.contains(&*g) {
                g = self.cv.wait(g).unwrap();
            }
            *g
        }
    }

    pub(crate) struct Coro {
        baton: Arc<Baton>,
        stack: Option<Stack>,
    }

    #[derive(Clone)]
    pub(crate) struct Suspender(Arc<Baton>);

    impl Suspender {
        pub(crate) fn suspend(self) {
            self.0.pass(Turn::Worker, &[Turn::Tasklet]);
        }
    }

    impl Coro {
        pub(crate) fn new(stack: Stack, body: impl FnOnce(Suspender) + 'static) -> Coro {
            let baton = Arc::new(Baton {
                turn: Mutex::new(Turn::Worker),
                cv: Condvar::new(),
            });
            let b = baton.clone();
            let body: Box<dyn FnOnce(Suspender)> = Box::new(body);
            // The tasklet's closure is `Send` (it was checked when the tasklet
            // was created); the scheduler state it reaches is loom-aware.
            let body = AssertSend(body);
            loom::thread::spawn(move || {
                let body = body;
                {
                    let mut g = b.turn.lock().unwrap();
                    while *g != Turn::Tasklet {
                        g = b.cv.wait(g).unwrap();
                    }
                }
                (body.0)(Suspender(b.clone()));
                let mut g = b.turn.lock().unwrap();
                *g = Turn::Done;
                b.cv.notify_all();
            });
            Coro {
                baton,
                stack: Some(stack),
            }
        }

        pub(crate) fn resume(&mut self) -> bool {
            self.baton.pass(Turn::Tasklet, &[Turn::Worker, Turn::Done]) == Turn::Done
        }

        pub(crate) fn into_stack(mut self) -> Stack {
            self.stack.take().expect("stack")
        }
    }

    struct AssertSend<T>(T);
    // SAFETY: only used to move a tasklet body (built from a `Send` closure)
    // into the loom thread that stands in for its stack.
    unsafe impl<T> Send for AssertSend<T> {}
}

pub(crate) use imp::{Coro, Suspender};
