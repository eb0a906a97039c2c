//! The conformance corpus's runner, as `cargo xtask conformance` starts it inside the
//! reference VM: `xdpvs-conformance ipvs|xdpvs CORPUS_FILE...` prints the transcript of every
//! scenario. A scenario the runner cannot run is recorded as `!! ERROR` and the run goes on;
//! the exit code is then 1.

use std::{fs, process::ExitCode};

use anyhow::{Context, Result};
use xdpvs_testbed::conformance::{self, Backend};

fn main() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let backend: Backend = args
        .next()
        .context("usage: xdpvs-conformance ipvs|xdpvs CORPUS_FILE...")?
        .parse()?;
    let mut failed = false;
    for path in args {
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        for scenario in conformance::parse(&text).with_context(|| path.clone())? {
            let started = std::time::Instant::now();
            let mut transcript = String::new();
            if let Err(e) = conformance::run(backend, &scenario, &mut transcript) {
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
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
