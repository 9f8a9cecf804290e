//! Stackful tasklets on work-stealing workers with Stackless Python's
//! ordering: the scheduler half of [`stackless`](https://docs.rs/stackless).
//!
//! * A [`Tasklet`] is a function on a guard-paged stack of its own that can
//!   call [`schedule`] or block at any depth — no `async`.
//! * A [`Scheduler`] has N workers, each a thread with a FIFO run queue
//!   ordered exactly as Stackless's ring. With one worker every Stackless
//!   scenario gives Stackless's output.
//! * Idle workers steal tasklets that have never run (oldest first); a
//!   started tasklet never moves to another thread, so `!Send` values and
//!   thread-locals on its stack stay sound.
//! * Blocking is built on the public [`park`] API, which is all
//!   `stackless-channels` uses.
//! * The nice queue ([`be_nice`], [`run_nice`]) is EVE Online's BeNice
//!   frame loop.
//!
//! See `DESIGN.md` for the guarantees and `src/idle/README.md` for the idle,
//! steal and quiescence protocols.

mod api;
mod body;
mod context;
mod coroutine;
mod error;
mod idle;
mod nice;
pub mod park;
#[cfg(not(loom))]
mod record;
mod run_queue;
mod scheduler;
mod shutdown;
mod stack;
#[doc(hidden)]
pub mod sync;
mod task;
mod tasklet;
mod tickets;
#[cfg(loom)]
#[doc(hidden)]
pub use tickets::loom_models as ticket_models;
mod timer;
mod worker;

pub use api::{
    be_nice, current, main_tasklet, run, run_nice, runcount, schedule, schedule_remove, sleep,
    spawn,
};
pub use error::TaskletError;
pub use scheduler::{default_workers, Builder, Scheduler, DEFAULT_STACK_SIZE};
pub use task::TaskletExit;
pub use tasklet::{Tasklet, TaskletBuilder};
