//! Channel errors, with Stackless's messages. A value that could not be
//! sent always comes back inside the error.

use std::fmt;

/// The message of Stackless's `ValueError` for a closed channel.
pub(crate) const CLOSED: &str = "Send/receive operation on a closed channel";
/// The message of Stackless's deadlock `RuntimeError`.
pub(crate) const DEADLOCK: &str = "Deadlock: the last runnable tasklet cannot be blocked.";

/// Why [`crate::Channel::send`] failed; the value comes back.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// The channel is closing and no receiver waits.
    Closed(T),
    /// Nothing could ever receive it (Stackless's deadlock error); the send
    /// was undone (the balance is unchanged).
    Deadlock(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(v) | SendError::Deadlock(v) => v,
        }
    }
}

/// Why [`crate::Channel::receive`] failed.
pub enum RecvError {
    /// The channel is closing and no sender waits.
    Closed,
    /// Nothing could ever send (Stackless's deadlock error); the receive was
    /// undone.
    Deadlock,
    /// The sender sent an exception ([`crate::Channel::send_exception`]).
    Exception(Box<dyn std::error::Error + Send + Sync>),
}

/// Why [`crate::Channel::try_send`] failed; the value comes back.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// No receiver is waiting: the send would block.
    WouldBlock(T),
    /// The channel is closing and no receiver waits.
    Closed(T),
}

/// Why [`crate::Channel::try_receive`] failed.
pub enum TryRecvError {
    /// No sender is waiting: the receive would block.
    WouldBlock,
    /// The channel is closing and no sender waits.
    Closed,
    /// The sender sent an exception.
    Exception(Box<dyn std::error::Error + Send + Sync>),
}

/// Why [`crate::Channel::send_timeout`] failed; the value comes back.
#[derive(PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// No receiver took it in time; the send was undone.
    Timeout(T),
    /// The channel is closing and no receiver waits.
    Closed(T),
    /// Nothing could ever receive it.
    Deadlock(T),
}

/// Why [`crate::Channel::receive_timeout`] failed.
pub enum RecvTimeoutError {
    /// No sender came in time; the receive was undone.
    Timeout,
    /// The channel is closing and no sender waits.
    Closed,
    /// Nothing could ever send.
    Deadlock,
    /// The sender sent an exception.
    Exception(Box<dyn std::error::Error + Send + Sync>),
}

macro_rules! value_error {
    ($name:ident { $($var:ident => $msg:expr),* }) => {
        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($name::$var(_) => f.write_str($msg)),* }
            }
        }
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($name::$var(_) => write!(f, concat!(stringify!($var), "(..)"))),* }
            }
        }
        impl<T> std::error::Error for $name<T> {}
    };
}

value_error!(SendError { Closed => CLOSED, Deadlock => DEADLOCK });
value_error!(TrySendError { WouldBlock => "the send would block: no receiver is waiting", Closed => CLOSED });
value_error!(SendTimeoutError { Timeout => "timed out waiting for a receiver", Closed => CLOSED, Deadlock => DEADLOCK });

macro_rules! plain_error {
    ($name:ident { $($var:ident => $msg:expr),* }) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$var => f.write_str($msg),)*
                    $name::Exception(e) => fmt::Display::fmt(e, f),
                }
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$var => f.write_str(stringify!($var)),)*
                    $name::Exception(e) => write!(f, "Exception({e:?})"),
                }
            }
        }
        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Exception(e) => Some(&**e),
                    _ => None,
                }
            }
        }
    };
}

plain_error!(RecvError { Closed => CLOSED, Deadlock => DEADLOCK });
plain_error!(TryRecvError { WouldBlock => "the receive would block: no sender is waiting", Closed => CLOSED });
plain_error!(RecvTimeoutError { Timeout => "timed out waiting for a sender", Closed => CLOSED, Deadlock => DEADLOCK });
