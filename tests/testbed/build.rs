//! Embeds the helper XDP object built by `cargo xtask build-ebpf` (lb-ebpf-tools).
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=XDPVS_TOOLS_OBJECT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let source = env::var_os("XDPVS_TOOLS_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target/ebpf/xdpvs-tools.bpf.o"));
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("xdpvs-tools.bpf.o");
    // Without a built object the library still compiles (for fmt, clippy and docs);
    // loading then fails with a message that says how to build it.
    let bytes = fs::read(&source).unwrap_or_default();
    fs::write(out, bytes).unwrap();
}
