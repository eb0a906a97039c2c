//! Builds lb-ebpf on stable Rust: host-target LLVM bitcode (`-C linker-plugin-lto`) linked
//! for BPF by bpf-linker, with this very binary as the link shim rustc calls.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::{deps, link, root};

const HOST: &str = "x86_64-unknown-linux-gnu";

/// Where the built object is placed.
pub fn object_path() -> PathBuf {
    root().join("target/ebpf/xdpvs.bpf.o")
}

/// Runs clippy on lb-ebpf for the host target with panic=abort, as it is built.
pub fn clippy() -> Result<()> {
    let status = Command::new("cargo")
        .args([
            "clippy",
            "--package",
            "lb-ebpf",
            "--release",
            "--target",
            HOST,
        ])
        .arg("--target-dir")
        .arg(root().join("target/ebpf-clippy"))
        .args(["--", "-D", "warnings"])
        .current_dir(root())
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cpanic=abort")
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
    let status = Command::new("cargo")
        .args([
            "build",
            "--package",
            "lb-ebpf",
            "--release",
            "--target",
            HOST,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(root())
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
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
