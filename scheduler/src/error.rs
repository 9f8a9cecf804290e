//! Errors of tasklet operations, with Stackless's messages.

use std::any::Any;
use std::fmt;

/// Why a [`crate::Tasklet`] operation failed. `Display` gives Stackless's
/// message for the same misuse.
#[non_exhaustive]
pub enum TaskletError {
    /// `setup` of a tasklet that is already alive: "tasklet is alive".
    Alive,
    /// `insert`/`run`/`switch` of a tasklet that is dead or was never set up:
    /// "You cannot run an unbound(dead) tasklet".
    Dead,
    /// `insert`/`run`/`switch`/`remove` of a tasklet blocked on a channel or
    /// the nice queue: "You cannot run a blocked tasklet". (Stackless words
    /// the `remove` case "You cannot remove a blocked tasklet."; one variant
    /// covers all four operations so that one match catches them.)
    Blocked,
    /// `remove` (or `join`) of the running tasklet:
    /// "The current tasklet cannot be removed."
    Current,
    /// `switch` or `remove` of a tasklet that runs on another worker (started
    /// tasklets never move): "can't switch to a different thread."
    OtherWorker,
    /// `setup` of a tasklet that has finished or was killed:
    /// "the tasklet was not bound to a function".
    Unbound,
    /// A blocking call (here: `join`) that nothing could ever complete:
    /// "Deadlock: the last runnable tasklet cannot be blocked."
    Deadlock,
    /// `join` of a tasklet that panicked; the first joiner gets the payload,
    /// later ones a `String` with its message.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The tasklet could not start: no stack could be mapped (the message
    /// names `vm.max_map_count`).
    NoStack(String),
}

impl TaskletError {
    /// The panic message of a [`TaskletError::Panicked`], if it is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskletError::Panicked(p) => p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(|s| s.as_str())),
            _ => None,
        }
    }
}

impl fmt::Display for TaskletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskletError::Alive => f.write_str("tasklet is alive"),
            TaskletError::Dead => f.write_str("You cannot run an unbound(dead) tasklet"),
            TaskletError::Blocked => f.write_str("You cannot run a blocked tasklet"),
            TaskletError::Current => f.write_str("The current tasklet cannot be removed."),
            TaskletError::OtherWorker => f.write_str("can't switch to a different thread."),
            TaskletError::Unbound => f.write_str("the tasklet was not bound to a function"),
            TaskletError::Deadlock => {
                f.write_str("Deadlock: the last runnable tasklet cannot be blocked.")
            }
            TaskletError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "tasklet panicked: {m}"),
                None => f.write_str("tasklet panicked"),
            },
            TaskletError::NoStack(m) => f.write_str(m),
        }
    }
}

impl fmt::Debug for TaskletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskletError::Alive => f.write_str("Alive"),
            TaskletError::Dead => f.write_str("Dead"),
            TaskletError::Blocked => f.write_str("Blocked"),
            TaskletError::Current => f.write_str("Current"),
            TaskletError::OtherWorker => f.write_str("OtherWorker"),
            TaskletError::Unbound => f.write_str("Unbound"),
            TaskletError::Deadlock => f.write_str("Deadlock"),
            TaskletError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "Panicked({m:?})"),
                None => f.write_str("Panicked(..)"),
            },
            TaskletError::NoStack(m) => write!(f, "NoStack({m:?})"),
        }
    }
}

impl std::error::Error for TaskletError {}
