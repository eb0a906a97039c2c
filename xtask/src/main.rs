//! Project tasks: `cargo xtask build`, `test`, `demo`. See the README.

mod bench;
mod conformance;
mod deps;
mod ebpf;
mod link;
mod vm;

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ebpf::Objects;

#[derive(Parser)]
#[command(about = "xdpvs build, test and demo tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install build tools if missing and build the XDP objects only.
    BuildEbpf,
    /// Build the XDP objects and every binary.
    Build,
    /// Check formatting and run clippy (warnings are errors) on every crate.
    Lint,
    /// Lint, install what the tests need, build, run every test and the benchmark's smoke run
    /// (as root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run a DR cluster in network namespaces and curl its VIP (as root).
    Demo,
    /// Run the conformance corpus against the kernel's IPVS and against xdpvs in the
    /// reference VM and compare (as root); see conformance/allow.toml.
    Conformance {
        /// Compare the transcripts of the last run again (after editing the allow-list).
        #[arg(long)]
        last: bool,
    },
    /// Measure xdpvs against its baselines and the L4 proxies, and against the kernel's IPVS
    /// in the reference VM (as root); writes target/bench/bench.json and the plots.
    Bench {
        /// Fewer and shorter runs, without the reference VM (CI smoke).
        #[arg(long)]
        quick: bool,
        /// Only the part in the reference VM: the kernel's IPVS against xdpvs.
        #[arg(long, conflicts_with = "quick")]
        vm_only: bool,
    },
}

fn main() -> Result<()> {
    if let Some(linker) = std::env::var_os(link::LINKER_ENV) {
        return link::run(PathBuf::from(linker), std::env::args().skip(1).collect());
    }
    match Cli::parse().task {
        Task::BuildEbpf => ebpf::build().map(drop),
        Task::Build => build_all().map(drop),
        Task::Lint => lint(),
        Task::Test { args } => {
            lint()?;
            let (passed, failed) = test(args)?;
            // The benchmark's quick mode as a smoke check: it must keep running.
            bench::run(true, false)?;
            // The kernel's IPVS and xdpvs through the same corpus, in the reference VM.
            conformance::run(false)?;
            println!("xdpvs: {passed} passed, {failed} failed");
            Ok(())
        }
        Task::Bench { quick, vm_only } => {
            deps::runtime()?;
            bench::run(quick, vm_only)
        }
        Task::Conformance { last } => conformance::run(last),
        Task::Demo => {
            deps::runtime()?;
            build_all()?;
            run_bin("debug", "xdpvs-demo", &[])
        }
    }
}

/// Environment variable naming the XDP object lb-userspace's build script embeds.
const OBJECT_ENV: &str = "XDPVS_EBPF_OBJECT";
/// Environment variable naming the helper XDP object the test beds' build script embeds.
const TOOLS_OBJECT_ENV: &str = "XDPVS_TOOLS_OBJECT";

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo ARGS` in the workspace, embedding the XDP objects `objects`.
fn cargo_command(args: &[&str], objects: &Objects) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args)
        .current_dir(root())
        .env(OBJECT_ENV, &objects.dataplane)
        .env(TOOLS_OBJECT_ENV, &objects.tools);
    cmd
}

fn cargo(args: &[&str], objects: &Objects) -> Result<()> {
    let status = cargo_command(args, objects)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Builds the objects, then every binary with them embedded.
fn build_all() -> Result<Objects> {
    let objects = ebpf::build()?;
    cargo(&["build", "--bins"], &objects)?;
    Ok(objects)
}

/// Runs one of the workspace's binaries built by [`build_all`] (`profile` debug) or by the
/// benchmark's release build.
fn run_bin(profile: &str, name: &str, args: &[&str]) -> Result<()> {
    let path = root().join("target").join(profile).join(name);
    let status = Command::new(&path)
        .args(args)
        .status()
        .with_context(|| format!("running {}", path.display()))?;
    if !status.success() {
        bail!("{name} failed");
    }
    Ok(())
}

/// Builds the objects, then every binary optimised with them embedded.
fn build_release() -> Result<Objects> {
    let objects = ebpf::build()?;
    cargo(&["build", "--release", "--bins"], &objects)?;
    Ok(objects)
}

fn lint() -> Result<()> {
    let objects = ebpf::build()?;
    cargo(&["fmt", "--all", "--", "--check"], &objects)?;
    cargo(
        &["clippy", "--all-targets", "--", "-D", "warnings"],
        &objects,
    )?;
    ebpf::clippy()
}

/// Runs every test, echoing cargo's output; returns the passed and failed counts summed over
/// all test binaries.
fn test(args: Vec<String>) -> Result<(u64, u64)> {
    deps::runtime()?;
    let objects = build_all()?;
    let mut cargo_args = vec!["test"];
    cargo_args.extend(args.iter().map(String::as_str));
    let mut child = cargo_command(&cargo_args, &objects)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    for line in std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().context("stdout")?,
    )) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |what: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(what)
                    })
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    if !child.wait()?.success() {
        bail!("cargo test failed ({passed} passed, {failed} failed)");
    }
    Ok((passed, failed))
}
