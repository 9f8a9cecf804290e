//! The seed's first example: a tasklet that yields once, from a plain
//! `fn main()` with no set-up (the first call enters the process-wide
//! default scheduler).
//!
//! ```text
//! $ cargo run --example seed
//! scheduled once
//! scheduled twice
//! ```

fn main() {
    stackless::spawn(|| {
        println!("scheduled once");
        stackless::schedule();
        println!("scheduled twice");
    });
    stackless::run();
}
