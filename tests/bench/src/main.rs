//! The benchmark, as `cargo xtask bench` runs it:
//! `xdpvs-bench [--quick] [--reference-vm VM_DIR] OUT_DIR` on this machine, joining the report
//! the reference VM left in VM_DIR; `xdpvs-bench [--quick] --in-reference-vm OUT_DIR` inside
//! the VM; `xdpvs-bench [--quick] --only-expiry` or `--only-control-plane` measures that
//! section alone and prints it.

use std::path::PathBuf;

use anyhow::Context;
use xdpvs_bench::Plan;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut plan, mut in_vm, mut reference_vm, mut out) = (Plan::FULL, false, None, None);
    let (mut only_expiry, mut only_control_plane) = (false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => plan = Plan::QUICK,
            "--in-reference-vm" => in_vm = true,
            "--only-expiry" => only_expiry = true,
            "--only-control-plane" => only_control_plane = true,
            "--reference-vm" => {
                reference_vm = Some(PathBuf::from(
                    args.next().context("--reference-vm needs a directory")?,
                ));
            }
            _ if arg.starts_with("--") => anyhow::bail!("unknown option {arg}"),
            _ => out = Some(PathBuf::from(arg)),
        }
    }
    let out = out.unwrap_or_else(|| PathBuf::from("target/bench"));
    if only_expiry {
        xdpvs_bench::run_expiry(&plan)
    } else if only_control_plane {
        xdpvs_bench::run_control_plane(&plan)
    } else if in_vm {
        xdpvs_bench::run_reference_vm(&plan, &out)
    } else {
        xdpvs_bench::run(&plan, &out, reference_vm.as_deref())
    }
}
