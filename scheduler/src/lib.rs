//! STUB: being implemented.
#![allow(unused)]
use std::time::{Duration, Instant};
use std::any::Any;

#[derive(Clone)]
pub struct Scheduler(());
impl Scheduler {
    pub fn builder() -> Builder { Builder(()) }
    pub fn enter<R>(&self, main: impl FnOnce() -> R) -> R { todo!() }
    pub fn workers(&self) -> usize { todo!() }
}
pub struct Builder(());
impl Builder {
    pub fn workers(self, n: usize) -> Self { self }
    pub fn stack_size(self, bytes: usize) -> Self { self }
    pub fn build(self) -> std::io::Result<Scheduler> { todo!() }
}
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Tasklet(());
impl Tasklet {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Tasklet { todo!() }
    pub fn setup(&self) -> Result<(), TaskletError> { todo!() }
    pub fn insert(&self) -> Result<(), TaskletError> { todo!() }
    pub fn remove(&self) -> Result<(), TaskletError> { todo!() }
    pub fn run(&self) -> Result<(), TaskletError> { todo!() }
    pub fn switch(&self) -> Result<(), TaskletError> { todo!() }
    pub fn kill(&self) -> Result<(), TaskletError> { todo!() }
    pub fn join(&self) -> Result<(), TaskletError> { todo!() }
    pub fn alive(&self) -> bool { todo!() }
    pub fn scheduled(&self) -> bool { todo!() }
    pub fn blocked(&self) -> bool { todo!() }
    pub fn paused(&self) -> bool { todo!() }
    pub fn is_main(&self) -> bool { todo!() }
    pub fn is_current(&self) -> bool { todo!() }
    pub fn id(&self) -> u64 { todo!() }
    pub fn worker(&self) -> Option<usize> { todo!() }
}
#[derive(Debug)]
pub enum TaskletError { Alive, Dead, Blocked, Current, OtherWorker, Unbound, Deadlock, Panicked(Box<dyn Any + Send>) }
pub fn spawn(f: impl FnOnce() + Send + 'static) -> Tasklet { todo!() }
pub fn schedule() { todo!() }
pub fn schedule_remove() { todo!() }
pub fn run() { todo!() }
pub fn current() -> Tasklet { todo!() }
pub fn main_tasklet() -> Tasklet { todo!() }
pub fn runcount() -> usize { todo!() }
pub fn be_nice() { todo!() }
pub fn run_nice() -> usize { todo!() }
pub fn sleep(d: Duration) { todo!() }
