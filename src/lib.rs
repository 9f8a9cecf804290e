//! `stackless`: Stackless Python's tasklets, channels and BeNice frame loop on many cores.
pub use stackless_channels::*;
pub use stackless_scheduler::*;
