//! The conformance corpus's runner, as `cargo xtask conformance` starts it inside the
//! reference VM: `xdpvs-conformance ipvs|xdpvs [--shard K/N] CORPUS_FILE...` prints the
//! transcript of every scenario (with `--shard`, of every N-th scenario starting at the K-th,
//! counted from 0 over all the files, so that N runners share a corpus). A scenario the runner
//! cannot run is recorded as `!! ERROR` and the run goes on; the exit code is then 1.

use std::{fs, process::ExitCode};

use anyhow::{Context, Result, bail};
use xdpvs_testbed::conformance::{self, Backend};

const USAGE: &str = "usage: xdpvs-conformance ipvs|xdpvs [--shard K/N] CORPUS_FILE...";

/// `K/N` with K < N.
fn shard(text: &str) -> Result<(usize, usize)> {
    let (k, n) = text.split_once('/').context(USAGE)?;
    let (k, n): (usize, usize) = (k.parse()?, n.parse()?);
    if k >= n {
        bail!("shard {k}/{n}: K must be below N");
    }
    Ok((k, n))
}

fn main() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1).peekable();
    let backend: Backend = args.next().context(USAGE)?.parse()?;
    let (k, n) = match args.next_if(|a| a == "--shard") {
        Some(_) => shard(&args.next().context(USAGE)?)?,
        None => (0, 1),
    };
    let mut scenarios = Vec::new();
    for path in args {
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        scenarios.extend(conformance::parse(&text).with_context(|| path.clone())?);
    }
    let mut failed = false;
    for scenario in scenarios.iter().skip(k).step_by(n) {
        let started = std::time::Instant::now();
        let mut transcript = String::new();
        if let Err(e) = conformance::run(backend, scenario, &mut transcript) {
            failed = true;
            eprintln!("scenario {}: {e:#}", scenario.name);
            transcript += &format!("!! ERROR {e:#}\n");
        }
        print!("{transcript}");
        eprintln!(
            "{backend:?} {}: {:.1} s",
            scenario.name,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
