//! Installs what the build and the tests need on a fresh machine: bpf-linker (built against
//! the toolchain's own LLVM) under target/tools, and a few Debian packages.

use std::{fs, os::unix::fs::symlink, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::root;

/// Debian packages the tests, the demo and the benchmark call: (command or file, package).
const PACKAGES: &[(&str, &str)] = &[
    ("ethtool", "ethtool"),
    ("curl", "curl"),
    ("ss", "iproute2"),
    ("ping", "iputils-ping"),
    ("nsenter", "util-linux"),
    ("keepalived", "keepalived"),
    ("wrk", "wrk"),
    ("haproxy", "haproxy"),
    (
        "/usr/share/doc/keepalived/samples/keepalived.conf.sample",
        "keepalived",
    ),
    ("nginx", "nginx-light"),
    (
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "libnginx-mod-stream",
    ),
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "fonts-dejavu-core",
    ),
];

/// The bpf-linker binary, installed if missing.
pub fn bpf_linker() -> Result<PathBuf> {
    let tools = root().join("target/tools");
    let linker = tools.join("bin/bpf-linker");
    if linker.exists() {
        return Ok(linker);
    }
    eprintln!(
        "xtask: installing bpf-linker 0.13.0 into {} (about a minute)",
        tools.display()
    );
    let sysroot = String::from_utf8(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()?
            .stdout,
    )?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let llvm = fs::read_dir(&lib)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22"))
        })
        .with_context(|| format!("no libLLVM.so.22* in {}", lib.display()))?;
    let prefix = tools.join("llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so".into(), llvm.file_name().unwrap().to_owned()] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&llvm, &link)?;
    }
    let status = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--locked",
            "--no-default-features",
        ])
        .args(["--features", "llvm-22", "--root"])
        .arg(&tools)
        .env("LLVM_PREFIX", &prefix)
        .status()?;
    if !status.success() {
        bail!("installing bpf-linker failed");
    }
    Ok(linker)
}

/// Debian packages the reference VM needs besides [`PACKAGES`]: the emulator, the
/// initramfs's busybox and the tools that build it, the reference ipvsadm, and node_exporter
/// (whose ipvs collector the conformance run's `metrics` steps scrape).
const REFERENCE_VM_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/bin/busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("depmod", "kmod"),
    ("xz", "xz-utils"),
    ("ipvsadm", "ipvsadm"),
    ("prometheus-node-exporter", "prometheus-node-exporter"),
];

/// Installs the Debian packages the tests and the demo run, where missing.
pub fn runtime() -> Result<()> {
    install(PACKAGES)
}

/// Installs what the reference VM (`cargo xtask conformance`, `cargo xtask bench`) needs
/// besides [`runtime`], where missing.
pub fn reference_vm() -> Result<()> {
    runtime()?;
    install(REFERENCE_VM_PACKAGES)
}

/// Installs the packages of `packages` whose command or file is missing.
fn install(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(cmd, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {cmd} || test -e {cmd}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .arg("update")
        .arg("-qq")
        .status()?
        .success()
        && Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?
            .success();
    if !ok {
        bail!("apt-get could not install {}", missing.join(" "));
    }
    Ok(())
}
