//! Builds the eBPF crates (lb-ebpf, lb-ebpf-tools) on stable Rust: host-target LLVM bitcode
//! (`-C linker-plugin-lto`) linked for BPF by bpf-linker, with this very binary as the link
//! shim rustc calls.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{deps, link, root};

const HOST: &str = "x86_64-unknown-linux-gnu";

/// The eBPF crates and the object each becomes under target/ebpf: the daemon's data plane,
/// then the test beds' and benchmark's helper programs.
const CRATES: [(&str, &str); 2] = [
    ("lb-ebpf", "xdpvs.bpf.o"),
    ("lb-ebpf-tools", "xdpvs-tools.bpf.o"),
];

/// The built objects.
pub struct Objects {
    /// The daemon's object (lb-ebpf), embedded by lb-userspace.
    pub dataplane: PathBuf,
    /// The helper object (lb-ebpf-tools), embedded by the test beds.
    pub tools: PathBuf,
}

/// `cargo SUBCOMMAND` for the eBPF crates alone (release, host target) with their own target
/// directory and rustflags, free of the caller's RUSTFLAGS and rustc wrapper.
fn cargo_ebpf(subcommand: &str, target_dir: &Path, rustflags: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(subcommand);
    for (package, _) in CRATES {
        cmd.args(["--package", package]);
    }
    cmd.args(["--release", "--target", HOST])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root())
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    cmd
}

/// Runs clippy on the eBPF crates for the host target with panic=abort, as they are built.
pub fn clippy() -> Result<()> {
    let status = cargo_ebpf(
        "clippy",
        &root().join("target/ebpf-clippy"),
        "-Cpanic=abort",
    )
    .args(["--", "-D", "warnings"])
    .status()?;
    if !status.success() {
        bail!("clippy found problems in the eBPF crates");
    }
    Ok(())
}

/// The linker rustc calls for the eBPF crates: a copy of this very binary, made from
/// /proc/self/exe, because cargo may replace the binary itself while it runs (`cargo test`
/// relinks xtask), after which its own path names a deleted file.
fn link_shim() -> Result<PathBuf> {
    let shim = root().join("target/tools/xtask-link-shim");
    let dir = shim.parent().context("the shim has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = shim.with_extension("tmp");
    std::fs::copy("/proc/self/exe", &tmp).context("copying this binary as the link shim")?;
    std::fs::rename(&tmp, &shim).with_context(|| format!("replacing {}", shim.display()))?;
    Ok(shim)
}

/// Builds the XDP objects and returns their paths.
pub fn build() -> Result<Objects> {
    let linker = deps::bpf_linker()?;
    let shim = link_shim()?;
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
        .context("running cargo build for the eBPF crates")?;
    if !status.success() {
        bail!("building the eBPF crates failed");
    }
    let [dataplane, tools] = CRATES.map(|(package, file)| {
        let built = target_dir
            .join(HOST)
            .join("release")
            .join(format!("lib{}.so", package.replace('-', "_")));
        let object = target_dir.join(file);
        std::fs::copy(&built, &object)
            .with_context(|| format!("copying {}", built.display()))
            .map(|_| object)
    });
    Ok(Objects {
        dataplane: dataplane?,
        tools: tools?,
    })
}
