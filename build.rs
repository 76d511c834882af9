//! Links the release binary with its hot functions first (see
//! `scripts/hot-symbols.sh`): code the service runs while it starts, idles and
//! serves typical requests is packed at the start of `.text`, so the pages the
//! kernel maps around each code fault hold code that runs. That halves the
//! idle resident set. Only the linker's layout changes, never the code.

use std::env;
use std::path::Path;

fn main() {
    let order = Path::new("link/hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    // Rust links x86_64-unknown-linux-gnu with its bundled lld since 1.90
    // (this crate needs 1.94); a linker chosen through RUSTFLAGS may not take
    // lld's options, so the order is then left out.
    let lld = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu")
        && !env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"));
    if !(release && lld) {
        return;
    }
    // Packed relative relocations (DT_RELR, glibc 2.36+, Debian 12): the 1 MB
    // table of a position-independent binary shrinks to a few KB, and the
    // loader no longer reads it all into memory at start.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if order.exists() {
        let path = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join(order);
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        // Functions renamed or removed since the file was made are skipped.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
