//! STUB: being implemented.
#![allow(unused)]
use std::time::{Duration, Instant};
pub struct Channel<T>(std::marker::PhantomData<T>);
impl<T> Clone for Channel<T> { fn clone(&self) -> Self { todo!() } }
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Preference { #[default] Receiver = -1, Neither = 0, Sender = 1 }
#[derive(Debug)]
pub enum SendError<T> { Closed(T), Deadlock(T) }
#[derive(Debug)]
pub enum TrySendError<T> { Full(T), Closed(T) }
#[derive(Debug)]
pub enum SendTimeoutError<T> { Timeout(T), Closed(T), Deadlock(T) }
#[derive(Debug)]
pub enum RecvError { Closed, Deadlock, Exception(Box<dyn std::error::Error + Send + Sync>) }
#[derive(Debug)]
pub enum TryRecvError { Empty, Closed }
#[derive(Debug)]
pub enum RecvTimeoutError { Timeout, Closed, Deadlock, Exception(Box<dyn std::error::Error + Send + Sync>) }
impl<T: Send + 'static> Default for Channel<T> { fn default() -> Self { Self::new() } }
impl<T: Send + 'static> Channel<T> {
    pub fn new() -> Self { todo!() }
    pub fn send(&self, v: T) -> Result<(), SendError<T>> { todo!() }
    pub fn receive(&self) -> Result<T, RecvError> { todo!() }
    pub fn send_exception(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Result<(), SendError<()>> { todo!() }
    pub fn send_sequence(&self, it: impl IntoIterator<Item = T>) -> Result<usize, SendError<T>> { todo!() }
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ { std::iter::empty() }
    pub fn balance(&self) -> isize { todo!() }
    pub fn preference(&self) -> Preference { todo!() }
    pub fn set_preference(&self, p: Preference) { todo!() }
    pub fn schedule_all(&self) -> bool { todo!() }
    pub fn set_schedule_all(&self, on: bool) { todo!() }
    pub fn close(&self) { todo!() }
    pub fn open(&self) { todo!() }
    pub fn closing(&self) -> bool { todo!() }
    pub fn closed(&self) -> bool { todo!() }
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> { todo!() }
    pub fn try_receive(&self) -> Result<T, TryRecvError> { todo!() }
    pub fn send_timeout(&self, v: T, d: Duration) -> Result<(), SendTimeoutError<T>> { todo!() }
    pub fn receive_timeout(&self, d: Duration) -> Result<T, RecvTimeoutError> { todo!() }
}
