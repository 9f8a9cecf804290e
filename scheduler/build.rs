//! Picks the stack switch (see `src/coroutine.rs`): our own on x86-64
//! Linux, corosensei elsewhere, loom's stand-in under `cfg(loom)`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(own_switch)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let loom = std::env::var_os("CARGO_CFG_LOOM").is_some();
    if arch == "x86_64" && os == "linux" && !loom {
        println!("cargo::rustc-cfg=own_switch");
    }
}
