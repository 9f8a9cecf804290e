//! Stackless Python channels for `stackless` tasklets and plain OS threads.
//!
//! A [`Channel`] is an unbuffered rendezvous: `send` blocks until a receiver
//! takes the value and `receive` until a sender brings one, with waiters
//! served strictly first come, first served. On one worker the rules are
//! Stackless's exactly (preference, `schedule_all`, `close`, deadlock
//! errors); across workers and threads a wake-up never switches the caller
//! and the woken tasklet goes to the tail of its own worker's queue.
//!
//! This crate uses nothing of the scheduler but its public
//! [`park`](stackless_scheduler::park) API: it is the proof that a blocking
//! primitive needs nothing else.

mod channel;
mod error;
mod wait_queue;

pub use channel::{Channel, Iter, Preference};
pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
