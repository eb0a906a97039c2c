//! `cargo xtask bench`: the benchmark built as shipped (release) and run on this machine; the
//! full run first plays its HTTP part against the kernel's IPVS inside the reference VM
//! ([`vm`]) and joins that report to its own. `--quick` (CI's smoke run) leaves the VM out: it
//! needs the emulator and the kernel package, and takes minutes.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{deps, root, run_bin, vm};

/// How long the VM's part may take under emulation (206 s measured on 2 busy shared cores).
const TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Builds the benchmark in release mode and runs it: quick, in full, or only its part in the
/// reference VM (`vm_only`, printing that part's report).
pub fn run(quick: bool, vm_only: bool) -> Result<()> {
    let out = root().join("target/bench");
    crate::build_release()?;
    let path = |p: &Path| p.to_str().context("path").map(str::to_owned);
    if quick {
        return run_bin("release", "xdpvs-bench", &["--quick", &path(&out)?]);
    }
    let io = out.join("reference-vm");
    reference_vm(&io)?;
    if vm_only {
        print!("{}", fs::read_to_string(io.join("bench.out"))?);
        return Ok(());
    }
    run_bin(
        "release",
        "xdpvs-bench",
        &["--reference-vm", &path(&io)?, &path(&out)?],
    )
}

/// Boots the reference VM and runs the benchmark's IPVS part there, which leaves its report
/// in `io` (with its output, its log and the VM's console).
fn reference_vm(io: &Path) -> Result<()> {
    deps::reference_vm()?;
    let kernel = vm::kernel()?;
    let _ = fs::remove_dir_all(io);
    fs::create_dir_all(io)?;
    let bench = root().join("target/release/xdpvs-bench");
    let m = vm::IO_MOUNT;
    let script = format!(
        "{} --in-reference-vm {m} > {m}/bench.out 2> {m}/bench.log; echo $? > {m}/bench.rc\n",
        bench.display()
    );
    let console = io.join("console.log");
    eprintln!("xtask: booting the reference kernel under emulation (kernel IPVS against xdpvs)");
    let started = std::time::Instant::now();
    vm::boot(&kernel, io, &script, &console, TIMEOUT)
        .with_context(|| format!("the VM's console is in {}", console.display()))?;
    let log = fs::read_to_string(io.join("bench.log")).unwrap_or_default();
    eprint!("{log}");
    let rc = fs::read_to_string(io.join("bench.rc")).unwrap_or_default();
    if rc.trim() != "0" {
        bail!(
            "the benchmark in the reference VM failed (exit {:?}; console: {})",
            rc.trim(),
            console.display()
        );
    }
    eprintln!(
        "xtask: {:.0} s in the reference VM",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
