//! The benchmark, as `cargo xtask bench` runs it: `xdpvs-bench [--quick] OUT_DIR`.

use std::path::PathBuf;

use xdpvs_bench::Plan;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = if args.iter().any(|a| a == "--quick") {
        Plan::QUICK
    } else {
        Plan::FULL
    };
    let out = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from);
    xdpvs_bench::run(&plan, &out)
}
