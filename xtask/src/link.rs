//! The linker rustc calls for lb-ebpf: turns rustc's gcc-style link line into a bpf-linker one.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

/// When set (to bpf-linker's path), xtask acts as the link shim instead of running a task.
pub const LINKER_ENV: &str = "XDPVS_BPF_LINKER";

/// Expands `@file` response files (one argument a line, as rustc writes them).
fn expand(args: Vec<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for arg in args {
        match arg.strip_prefix('@') {
            Some(file) => out.extend(fs::read_to_string(file)?.lines().map(str::to_owned)),
            None => out.push(arg),
        }
    }
    Ok(out)
}

/// The global symbols of a version script.
fn exported(script: &str) -> Result<Vec<String>> {
    let text = fs::read_to_string(script).with_context(|| format!("reading {script}"))?;
    let globals = text.split("global:").nth(1).unwrap_or("");
    let globals = globals.split("local:").next().unwrap_or("");
    Ok(globals
        .split(';')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s != "}" && s != "*")
        .collect())
}

/// Runs bpf-linker at `linker` for rustc's link line `args`.
pub fn run(linker: PathBuf, args: Vec<String>) -> Result<()> {
    let args = expand(args)?;
    let mut cmd = Command::new(&linker);
    cmd.args(["--target=bpfel", "--cpu=v3", "--btf"]);
    let mut exports = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-o" {
            cmd.arg("-o").arg(it.next().context("-o without a path")?);
        } else if let Some(script) = arg.strip_prefix("-Wl,--version-script=") {
            exports.extend(exported(script)?);
        } else if [".o", ".rlib", ".a"].iter().any(|ext| arg.ends_with(ext))
            || arg.starts_with("--")
        {
            // Inputs, and link-args meant for bpf-linker itself.
            cmd.arg(arg);
        }
    }
    if !exports.is_empty() {
        cmd.arg("--export").arg(exports.join(","));
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", linker.display()))?;
    if !status.success() {
        bail!("bpf-linker failed");
    }
    Ok(())
}
