//! `cargo xtask conformance`: the corpus in `conformance/corpus` run inside the reference VM,
//! once against the kernel's IPVS with Debian's ipvsadm and once against xdpvsd with
//! xdpvsadm, on the same namespace topology; the transcripts compared by rule, with
//! `conformance/allow.toml` naming the differences accepted for now.

mod compare;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{deps, root, vm};

/// The directors the runner drives, the reference first.
const BACKENDS: [&str; 2] = ["ipvs", "xdpvs"];

/// Runners per backend, at once: the VM's two CPUs are kept busy while a runner waits.
const SHARDS: usize = 2;

/// How long a whole run may take under emulation (about 17 minutes measured on 2 shared cores).
const TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// Runs the corpus in the VM (unless `last`: the transcripts of the last run) and compares;
/// fails on a difference the allow-list lacks.
pub fn run(last: bool) -> Result<()> {
    let work = root().join("target/conformance");
    let io = work.join("io");
    let console = work.join("console.log");
    let elapsed = if last {
        None
    } else {
        Some(run_vm(&io, &console)?)
    };
    let mut transcripts = Vec::new();
    for b in BACKENDS {
        let mut text = String::new();
        for k in 0..SHARDS {
            let read = |ext: &str| fs::read_to_string(io.join(format!("{b}.{k}.{ext}")));
            let rc = read("rc").with_context(|| {
                format!(
                    "the {b} runner {k} left no exit code (console: {})",
                    console.display()
                )
            })?;
            eprint!("{}", read("log")?);
            // 1: a scenario could not run, which its transcript records; anything else: the
            // runner itself did not.
            match rc.trim() {
                "0" => {}
                "1" => eprintln!("xtask: the {b} runner {k} exited 1"),
                rc => bail!(
                    "the {b} runner {k} failed (exit {rc}); its log is above, the VM's console in {}",
                    console.display()
                ),
            }
            text += &read("txt")?;
        }
        let transcript = compare::parse(&text);
        let expected = corpus_scenarios()?;
        if transcript.len() != expected {
            bail!(
                "the {b} transcript holds {} of the corpus's {expected} scenarios",
                transcript.len()
            );
        }
        transcripts.push(transcript);
    }
    let allow_path = root().join("conformance/allow.toml");
    let allow = compare::AllowList::parse(&fs::read_to_string(&allow_path)?)?;
    let outcome = compare::compare(&transcripts[0], &transcripts[1], &allow);
    fs::write(work.join("differences.txt"), &outcome.report)?;
    print!("{}", outcome.report);
    for entry in &outcome.unused {
        println!("allow-list entry that matched nothing: {entry}");
    }
    println!(
        "conformance: {} scenarios, {} steps; {} differing lines allowed, {} not allowed{} \
         (transcripts in {})",
        outcome.scenarios,
        outcome.steps,
        outcome.allowed,
        outcome.failures,
        elapsed.map_or(String::new(), |e| format!(
            "; {:.0} s in the VM",
            e.as_secs_f64()
        )),
        io.display()
    );
    if outcome.failures > 0 {
        bail!(
            "{} differences from the kernel's IPVS that {} does not list",
            outcome.failures,
            allow_path.display()
        );
    }
    Ok(())
}

/// Builds everything (release, as the benchmark: under emulation every instruction counts),
/// boots the VM and runs the corpus there, each backend's scenarios shared by [`SHARDS`]
/// runners at once, leaving the transcripts, the runners' logs and exit codes in `io`; the
/// time the VM took.
fn run_vm(io: &Path, console: &Path) -> Result<Duration> {
    deps::reference_vm()?;
    crate::build_release()?;
    let kernel = vm::kernel()?;
    let _ = fs::remove_dir_all(io);
    fs::create_dir_all(io)?;
    let corpus = corpus_files()?;
    let runner = root().join("target/release/xdpvs-conformance");
    let files = corpus
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = String::new();
    for b in BACKENDS {
        for k in 0..SHARDS {
            let out = format!("{}/{b}.{k}", vm::IO_MOUNT);
            script += &format!(
                "({} {b} --shard {k}/{SHARDS} {files} > {out}.txt 2> {out}.log; echo $? > {out}.rc) &\n",
                runner.display()
            );
        }
    }
    script += "wait\n";
    eprintln!(
        "xtask: booting the reference kernel under emulation ({} scenario files, {} runners)",
        corpus.len(),
        BACKENDS.len() * SHARDS
    );
    let started = Instant::now();
    vm::boot(&kernel, io, &script, console, TIMEOUT)
        .with_context(|| format!("the VM's console is in {}", console.display()))?;
    Ok(started.elapsed())
}

/// How many scenarios the corpus holds.
fn corpus_scenarios() -> Result<usize> {
    let mut n = 0;
    for file in corpus_files()? {
        n += fs::read_to_string(file)?
            .lines()
            .filter(|l| l.starts_with("scenario "))
            .count();
    }
    Ok(n)
}

/// The corpus files, in name order.
fn corpus_files() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("conformance/corpus"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    Ok(files)
}
