//! Builds lb-ebpf on stable Rust: host-target LLVM bitcode (`-C linker-plugin-lto`) linked
//! for BPF by bpf-linker, with this very binary as the link shim rustc calls.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{deps, link, root};

const HOST: &str = "x86_64-unknown-linux-gnu";

/// Where the built object is placed.
pub fn object_path() -> PathBuf {
    root().join("target/ebpf/xdpvs.bpf.o")
}

/// `cargo SUBCOMMAND` for lb-ebpf alone (release, host target) with its own target directory
/// and rustflags, free of the caller's RUSTFLAGS and rustc wrapper.
fn cargo_ebpf(subcommand: &str, target_dir: &Path, rustflags: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args([
        subcommand,
        "--package",
        "lb-ebpf",
        "--release",
        "--target",
        HOST,
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(root())
    .env_remove("RUSTFLAGS")
    .env_remove("RUSTC_WRAPPER")
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    cmd
}

/// Runs clippy on lb-ebpf for the host target with panic=abort, as it is built.
pub fn clippy() -> Result<()> {
    let status = cargo_ebpf(
        "clippy",
        &root().join("target/ebpf-clippy"),
        "-Cpanic=abort",
    )
    .args(["--", "-D", "warnings"])
    .status()?;
    if !status.success() {
        bail!("clippy found problems in lb-ebpf");
    }
    Ok(())
}

/// Builds the XDP object and returns its path.
pub fn build() -> Result<PathBuf> {
    let linker = deps::bpf_linker()?;
    let shim = std::env::current_exe()?;
    let rustflags = [
        "-Clinker-plugin-lto",
        &format!("-Clinker={}", shim.display()),
        "-Cpanic=abort",
        "-Cforce-unwind-tables=no",
        "-Cdebuginfo=2",
        "-Cno-vectorize-loops",
        "-Cno-vectorize-slp",
        "-Cllvm-args=-unroll-runtime=false",
    ]
    .join("\x1f");
    let target_dir = root().join("target/ebpf");
    let status = cargo_ebpf("build", &target_dir, &rustflags)
        .env(link::LINKER_ENV, &linker)
        .status()
        .context("running cargo build for lb-ebpf")?;
    if !status.success() {
        bail!("building lb-ebpf failed");
    }
    let built = target_dir.join(HOST).join("release/liblb_ebpf.so");
    let object = object_path();
    std::fs::copy(&built, &object).with_context(|| format!("copying {}", built.display()))?;
    Ok(object)
}
