//! The stack switch: the one thing loom cannot model.
//!
//! On x86-64 Linux a tasklet runs on a pooled guard-paged stack through our
//! own switch (`own` below): an inline-assembly block that stores the
//! stack pointer, a resume address and three callee-saved registers in
//! the tasklet's record (in the line that also holds its flags), loads
//! another context's and jumps; the caller-saved registers and the other
//! three callee-saved ones are declared clobbered, so the compiler saves
//! those itself where they are live. A resume reads the tasklet's stack
//! only for what its own code keeps in its frame, which for a loop around
//! `be_nice()` or `schedule()` is usually nothing (see `Exec::light`), and
//! the resumer hands the resumed context its own address in a register
//! ([`Landed`]), from which `be_nice` and `schedule` find their tasklet's
//! record without reading the worker's thread-local. The
//! worker loop keeps its context in a [`LoopContext`]; `resume` switches
//! from the loop onto a tasklet, `Suspender::suspend` back, and
//! `Suspender::switch_to` from one tasklet straight to another, which
//! saves the loop's half of every hop (the worker uses it when the next
//! tasklet is already started and nothing else needs the loop).
//!
//! Valgrind's memcheck guesses stack switches from how far the stack
//! pointer moves (2 MB by default); tasklet stacks sit ~72 KiB apart, so a
//! direct switch looks like one stack growing or shrinking. Run it with
//! `--max-stackframe=16384` (reports are clean then).
//!
//! Elsewhere a tasklet is a corosensei coroutine (asymmetric: no direct
//! switch between tasklets).
//!
//! Under `cfg(loom)` a tasklet is a loom thread and a *baton* (a loom
//! mutex/condvar pair): `resume` hands the baton to the tasklet's thread and
//! waits for it back, `suspend` hands it back and waits. Exactly one of the
//! worker and its running tasklet executes at a time, as with a real switch,
//! so everything above this module is the production code.

#[cfg(own_switch)]
mod own {
    use crate::stack::Stack;
    use std::cell::Cell;
    use std::ptr::NonNull;

    /// What a context hands to the one it switches to (its `switch` returns
    /// it): the loop learns whether the tasklet that switched back ended.
    const SUSPENDED: usize = 0;
    const FINISHED: usize = 1;

    /// Whether `Suspender::switch_to` exists.
    pub(crate) const DIRECT_SWITCH: bool = true;

    /// Where a tasklet switches to when it leaves for the scheduler rather
    /// than for another tasklet: the worker loop, saved in `resume`, while
    /// the loop runs; otherwise worker 0's main tasklet, which switched to a
    /// tasklet directly (and runs the loop itself when it is resumed and
    /// something other than it should run).
    #[derive(Default)]
    pub(crate) struct LoopContext {
        /// The worker loop's context while a tasklet it resumed runs.
        loop_regs: Regs,
        /// Worker 0's main tasklet's, while it has switched to a tasklet
        /// directly.
        main_regs: Regs,
        in_loop: Cell<bool>,
    }

    impl LoopContext {
        /// Marks the worker loop as running (or not); returns the old mark.
        pub(crate) fn set_in_loop(&self, yes: bool) -> bool {
            self.in_loop.replace(yes)
        }

        /// Whether the worker loop is running (so main, on worker 0, is
        /// inside it rather than switched out directly).
        #[inline(always)]
        pub(crate) fn in_loop(&self) -> bool {
            self.in_loop.get()
        }

        #[inline(always)]
        fn scheduler_regs(&self) -> &Regs {
            if self.in_loop.get() {
                &self.loop_regs
            } else {
                &self.main_regs
            }
        }

        /// Worker 0's main tasklet (running on the thread's own stack, the
        /// loop not running) switches straight to `next`; returns when a
        /// tasklet switches back to it: true when that one's body returned
        /// (the worker's `current`).
        #[inline(always)]
        pub(crate) fn main_switch_to(&self, next: &Coro) -> bool {
            debug_assert!(!self.in_loop.get());
            // SAFETY: `next` is switched out, so `regs` hold the context
            // it saved; main's context is saved in `main_regs`, where
            // tasklets switch back to while the loop is not running.
            unsafe { switch(&self.main_regs, &next.regs, SUSPENDED).0 == FINISHED }
        }
    }

    /// A switched-out context: where it resumes, on which stack, and the
    /// callee-saved registers the switch keeps (`rbx` and `rbp`, which an
    /// `asm!` block may not name as clobbered, and `r12`): 40 bytes, the
    /// rest of the record's first line after the park word and the flags
    /// (see `record.rs`). `r13`–`r15` are declared clobbered instead.
    #[derive(Default)]
    #[repr(C)]
    pub(crate) struct Regs {
        sp: Cell<usize>,
        pc: Cell<usize>,
        rbx: Cell<usize>,
        rbp: Cell<usize>,
        r12: Cell<usize>,
    }

    /// A started tasklet's execution context. It lives in the tasklet's
    /// record (next to what every switch touches anyway), and its address
    /// must not change once [`Coro::suspender`] was taken.
    ///
    /// The saved registers end the record's first line, after the task's
    /// flags; the stack (whose base is never null, so `Option<Coro>` needs
    /// no separate tag) starts the second. The hot paths know from the
    /// tasklet's state that the coroutine is there and do not read that
    /// tag, so a resume reads one line of the record, and nothing of the
    /// tasklet's stack unless its code reloads something from its frame
    /// (see `switch`).
    #[repr(C)]
    pub(crate) struct Coro {
        /// The saved context while the tasklet is switched out.
        regs: Regs,
        /// Given back by `into_stack` once the body has returned; leaked
        /// otherwise (see `Drop`).
        stack: std::mem::ManuallyDrop<Stack>,
    }

    /// What a running tasklet uses to switch away: its own coroutine and
    /// its worker's loop context (which outlives its tasklets).
    #[derive(Clone, Copy)]
    pub(crate) struct Suspender {
        coro: NonNull<Coro>,
        ctx: NonNull<LoopContext>,
    }

    /// Saves the running context into `save`, loads the one in `to` and
    /// continues it, handing it `arg` (what its own `switch` returns).
    ///
    /// Inline assembly rather than a called function: the stack pointer,
    /// a resume label in the caller and `rbx`, `rbp` and `r12` go to
    /// `save` (the tasklet's record), nothing is pushed, and every
    /// caller-saved register is declared clobbered, as a call would, and
    /// so are `r13`–`r15`. So the compiler keeps up to three of a switching
    /// loop's values in registers that live in the record while it is
    /// switched out, and a resume reads the tasklet's stack only for what
    /// its code keeps in its frame beyond those: among thousands of
    /// tasklets each stack top is a page of its own, and reaching it costs
    /// a page-table walk as well as the line. (Keeping all six made the
    /// registers a line of their own, so a resume read two record lines;
    /// a loop around `be_nice()` keeps two or three values, and a frame of
    /// 10,000 nice tasklets misses 2.8 instead of 3.8 L1 lines per
    /// tasklet in cachegrind.) The function around a switch saves
    /// `r13`–`r15` in its prologue if it uses them, as for any call. MXCSR
    /// and the x87 control word are not switched: nothing here changes
    /// them.
    ///
    /// The other context is continued with an indirect jump, which the
    /// predictor learns per site (a `ret` would be predicted to return to
    /// our own caller, wrong whenever the two sides switched from
    /// different places).
    ///
    /// # Safety
    ///
    /// `to` holds a context saved by `switch` (or built by `Coro::new`)
    /// that nothing has resumed since, whose stack is alive; `save` stays
    /// valid, unmoved and otherwise unused until someone resumes it.
    ///
    /// It returns the argument it was resumed with and the context it was
    /// resumed as: whoever resumes a context passes that context's `to`
    /// in `rsi`, so this is `save`, without keeping it anywhere across the
    /// switch (see [`Landed`]).
    #[inline(always)]
    unsafe fn switch(save: &Regs, to: &Regs, arg: usize) -> (usize, *const Regs) {
        let ret: usize;
        let landed: *const Regs;
        // SAFETY: per the contract above. The stores go to `save` only;
        // when something resumes it, the stack pointer, `rbx`, `rbp` and
        // `r12` are what they were here, `rdx` holds its argument and `rsi`
        // the resumed context (`save`, as the resumer's `to`); every
        // register a call may change is declared clobbered, and so are
        // `r13`-`r15`.
        unsafe {
            core::arch::asm!(
                "lea rax, [rip + 2f]",
                "mov [rdi], rsp",
                "mov [rdi + 8], rax",
                "mov [rdi + 16], rbx",
                "mov [rdi + 24], rbp",
                "mov [rdi + 32], r12",
                "mov rsp, [rsi]",
                "mov rbx, [rsi + 16]",
                "mov rbp, [rsi + 24]",
                "mov r12, [rsi + 32]",
                "jmp qword ptr [rsi + 8]",
                "2:",
                in("rdi") save as *const Regs,
                inout("rsi") to as *const Regs => landed,
                inout("rdx") arg => ret,
                out("r13") _,
                out("r14") _,
                out("r15") _,
                clobber_abi("sysv64"),
            );
        }
        (ret, landed)
    }

    /// Where a new context's first `switch` lands: pops the entry's two
    /// arguments and the entry itself (`Coro::new` put them there), then
    /// calls it on a 16-byte-aligned stack. The entry never returns (`ud2`
    /// guards it); `rbp` is 0, which ends frame-pointer walks here.
    #[unsafe(naked)]
    unsafe extern "sysv64" fn trampoline() {
        core::arch::naked_asm!("pop rdi", "pop rsi", "pop rax", "call rax", "ud2")
    }

    /// The first frame of every tasklet: runs the body, then leaves for
    /// good, telling the loop the body has returned. A panic cannot get
    /// out of here (the ABI aborts); the scheduler's body catches them.
    unsafe extern "sysv64" fn entry<F: FnOnce(Option<Suspender>)>(
        body: *mut F,
        ctx: *const LoopContext,
    ) -> ! {
        // SAFETY: `Coro::new` moved the body to `body` for this one read.
        let body = unsafe { body.read() };
        body(None);
        // SAFETY: the loop context outlives its tasklets, and the loop
        // resumed this tasklet (or a tasklet it ran switched to it), so
        // its context is saved there.
        unsafe {
            let dead = Regs::default();
            switch(&dead, (*ctx).scheduler_regs(), FINISHED);
        }
        // Nothing resumes a context that ended.
        std::process::abort()
    }

    impl Suspender {
        /// Switches back to the worker loop; returns when resumed.
        #[inline(always)]
        pub(crate) fn suspend(self) -> Landed {
            // SAFETY: the coroutine is the running tasklet's own (the
            // scheduler hands a tasklet's Suspender to that tasklet alone)
            // and lives in its record; the loop's context was saved when it
            // resumed us, or a tasklet it resumed switched to us.
            unsafe {
                Landed::at(
                    switch(
                        &self.coro.as_ref().regs,
                        self.ctx.as_ref().scheduler_regs(),
                        SUSPENDED,
                    )
                    .1,
                )
            }
        }

        /// Switches straight to worker 0's main tasklet, which switched out
        /// directly (the loop is not running); returns when resumed.
        #[inline(always)]
        pub(crate) fn switch_to_main(self) -> Landed {
            // SAFETY: as for `suspend`; main's context is saved in `main_regs`
            // (the caller checked the loop is not running).
            unsafe {
                let ctx = self.ctx.as_ref();
                debug_assert!(!ctx.in_loop.get());
                Landed::at(switch(&self.coro.as_ref().regs, &ctx.main_regs, SUSPENDED).1)
            }
        }

        /// Switches straight to `next` (started, switched out, homed on
        /// this worker); returns when this tasklet is resumed.
        #[inline(always)]
        pub(crate) fn switch_to(self, next: &Coro) -> Landed {
            // SAFETY: as for `suspend`; `next` is switched out, so its
            // `regs` hold the context it saved.
            unsafe { Landed::at(switch(&self.coro.as_ref().regs, &next.regs, SUSPENDED).1) }
        }
    }

    /// What a suspended tasklet learns when it is resumed: its own
    /// coroutine, handed over by the switch in a register (see `switch`),
    /// so that the code after a switch finds its record without reading
    /// the worker's thread-local and `current`.
    #[derive(Clone, Copy)]
    pub(crate) struct Landed(NonNull<Coro>);

    impl Landed {
        /// # Safety
        ///
        /// `regs` is what `switch` returned in a tasklet's suspension: that
        /// tasklet's own saved context, the first field of its `Coro`.
        #[inline(always)]
        unsafe fn at(regs: *const Regs) -> Landed {
            // SAFETY: `regs` is the first field of a `#[repr(C)]` `Coro`
            // (the caller's promise), so not null and the `Coro`'s address.
            Landed(unsafe { NonNull::new_unchecked(regs as *mut Coro) })
        }

        /// The resumed tasklet's coroutine, in its record.
        #[inline(always)]
        pub(crate) fn coro(self) -> Option<NonNull<Coro>> {
            Some(self.0)
        }
    }

    impl Coro {
        /// Prepares `body` to run on `stack`, returning to `ctx`'s loop;
        /// nothing runs until `resume`. The body gets `None`: its
        /// [`Suspender`] is [`Coro::suspender`], once the coroutine is in
        /// its final place.
        pub(crate) fn new<F: FnOnce(Option<Suspender>) + 'static>(
            stack: Stack,
            ctx: &LoopContext,
            body: F,
        ) -> Coro {
            let top = stack.top();
            debug_assert_eq!(top % 16, 0);
            // The body at the top, 16-byte aligned.
            let size = std::mem::size_of::<F>().max(1);
            assert!(std::mem::align_of::<F>() <= 16, "tasklet body over-aligned");
            let at = (top - size) & !15;
            // The first `switch` into it lands on the trampoline with the
            // stack pointer here; it pops these three and calls the entry
            // with the stack 16-byte aligned (at `at`).
            let frame: [usize; 3] = [
                at,                                 // the entry's first argument
                ctx as *const LoopContext as usize, // its second
                entry::<F> as *const () as usize,   // the entry
            ];
            let sp = at - frame.len() * 8;
            // SAFETY: `[sp, top)` lies in the stack's usable part (a few
            // dozen bytes below its top), which nothing else uses: the
            // stack came from the pool or a fresh mapping.
            unsafe {
                (at as *mut F).write(body);
                std::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut usize, frame.len());
            }
            let regs = Regs::default();
            regs.sp.set(sp);
            regs.pc.set(trampoline as *const () as usize);
            Coro {
                regs,
                stack: std::mem::ManuallyDrop::new(stack),
            }
        }

        /// The stack pointer it saved when it last switched out (a hint
        /// for prefetching while it runs).
        #[inline(always)]
        pub(crate) fn saved_sp(&self) -> usize {
            self.regs.sp.get()
        }

        /// Its stack's guard page and usable size (for the overflow report).
        pub(crate) fn stack_extent(&self) -> ((usize, usize), usize) {
            (self.stack.guard(), self.stack.usable())
        }

        /// The running tasklet's way out; valid while `self` stays put.
        pub(crate) fn suspender(&self, ctx: &LoopContext) -> Option<Suspender> {
            Some(Suspender {
                coro: NonNull::from(self),
                ctx: NonNull::from(ctx),
            })
        }

        /// Runs the tasklet until some tasklet switches back to the loop:
        /// true when that one's body returned (the worker's `current`,
        /// which a direct switch may have changed).
        ///
        /// A shared borrow: while it is out, a tasklet of this worker may
        /// read the coroutine to switch to it directly.
        #[inline(always)]
        pub(crate) fn resume(&self, ctx: &LoopContext) -> bool {
            // SAFETY: the coroutine is switched out (only the loop resumes
            // a tasklet that is not running, on its home worker), so `regs`
            // hold the context it saved.
            unsafe { switch(&ctx.loop_regs, &self.regs, SUSPENDED).0 == FINISHED }
        }

        /// Takes the stack back from a coroutine whose body returned.
        pub(crate) fn into_stack(mut self) -> Stack {
            // SAFETY: taken once; `self` is forgotten right after.
            let s = unsafe { std::mem::ManuallyDrop::take(&mut self.stack) };
            std::mem::forget(self);
            s
        }
    }

    impl Drop for Coro {
        fn drop(&mut self) {
            // Only a coroutine whose body never returned gets here (a
            // finished one gives its stack back with `into_stack`). Its
            // stack may still be pointed into (a channel's waiter slot,
            // say), so it is leaked rather than reused. The scheduler kills
            // every tasklet before it drops it, so this does not happen.
        }
    }
}

#[cfg(all(own_switch, test))]
pub(crate) use own::Regs;
#[cfg(own_switch)]
pub(crate) use own::{Coro, Landed, LoopContext, Suspender, DIRECT_SWITCH};

#[cfg(all(not(loom), not(own_switch)))]
mod imp {
    use super::asymmetric::LoopContext;
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
        /// Its stack's guard page and usable size (corosensei keeps the
        /// stack out of reach while the coroutine lives).
        extent: ((usize, usize), usize),
    }

    /// What a running tasklet uses to switch back to its worker's loop.
    #[derive(Clone, Copy)]
    pub(crate) struct Suspender(std::ptr::NonNull<Yielder<(), ()>>);

    impl Suspender {
        /// Switches back to whoever resumed us; returns when resumed again.
        #[inline(always)]
        pub(crate) fn suspend(self) -> super::asymmetric::Landed {
            // SAFETY: the yielder lives in the root frame of this coroutine's
            // stack for as long as the coroutine runs, and `suspend` is only
            // called by code running on that coroutine (the scheduler hands
            // out a tasklet's Suspender to that tasklet alone).
            unsafe { self.0.as_ref().suspend(()) };
            super::asymmetric::Landed
        }
    }

    impl Coro {
        /// Prepares `body` to run on `stack`; nothing runs until `resume`.
        pub(crate) fn new(
            stack: Stack,
            _ctx: &LoopContext,
            body: impl FnOnce(Option<Suspender>) + 'static,
        ) -> Coro {
            let extent = (stack.guard(), stack.usable());
            let co = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
                body(Some(Suspender(std::ptr::NonNull::from(y))))
            });
            Coro { co, extent }
        }

        /// Its stack's guard page and usable size (for the overflow report).
        pub(crate) fn stack_extent(&self) -> ((usize, usize), usize) {
            self.extent
        }

        /// Runs the tasklet until it suspends (false) or finishes (true).
        #[inline(always)]
        pub(crate) fn resume(&mut self, _ctx: &LoopContext) -> bool {
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
    use super::asymmetric::LoopContext;
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
        pub(crate) fn suspend(self) -> super::asymmetric::Landed {
            self.0.pass(Turn::Worker, &[Turn::Tasklet]);
            super::asymmetric::Landed
        }
    }

    impl Coro {
        pub(crate) fn new(
            stack: Stack,
            _ctx: &LoopContext,
            body: impl FnOnce(Option<Suspender>) + 'static,
        ) -> Coro {
            let baton = Arc::new(Baton {
                turn: Mutex::new(Turn::Worker),
                cv: Condvar::new(),
            });
            let b = baton.clone();
            let body: Box<dyn FnOnce(Option<Suspender>)> = Box::new(body);
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
                (body.0)(Some(Suspender(b.clone())));
                let mut g = b.turn.lock().unwrap();
                *g = Turn::Done;
                b.cv.notify_all();
            });
            Coro {
                baton,
                stack: Some(stack),
            }
        }

        pub(crate) fn resume(&mut self, _ctx: &LoopContext) -> bool {
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

/// The worker's side of an asymmetric switch (corosensei, loom): each
/// coroutine links back to whoever resumed it, and no tasklet switches
/// straight to another, so the direct-switch calls are never reached
/// (`DIRECT_SWITCH` is false).
#[cfg(not(own_switch))]
mod asymmetric {
    use super::imp::{Coro, Suspender};

    /// Whether `Suspender::switch_to` exists.
    pub(crate) const DIRECT_SWITCH: bool = false;

    /// Nothing to keep: the coroutine holds the link to its resumer.
    #[derive(Default)]
    pub(crate) struct LoopContext(());

    impl LoopContext {
        pub(crate) fn set_in_loop(&self, _yes: bool) -> bool {
            true
        }
        pub(crate) fn in_loop(&self) -> bool {
            true
        }
        pub(crate) fn main_switch_to(&self, _next: &Coro) -> bool {
            unreachable!("no direct switch without our own stack switch")
        }
    }

    impl Suspender {
        pub(crate) fn switch_to(self, _next: &Coro) -> Landed {
            unreachable!("no direct switch without our own stack switch")
        }
        pub(crate) fn switch_to_main(self) -> Landed {
            unreachable!("no direct switch without our own stack switch")
        }
    }

    /// What a resumed tasklet learns from the switch: nothing here (the
    /// code after a switch reads the worker's `current` instead).
    #[derive(Clone, Copy)]
    pub(crate) struct Landed;

    impl Landed {
        pub(crate) fn coro(self) -> Option<std::ptr::NonNull<Coro>> {
            None
        }
    }
}

#[cfg(not(own_switch))]
pub(crate) use asymmetric::{Landed, LoopContext, DIRECT_SWITCH};
#[cfg(not(own_switch))]
pub(crate) use imp::{Coro, Suspender};
