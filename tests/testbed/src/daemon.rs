//! xdpvsd run inside a test namespace with its own pin directory and socket, stopped (and its
//! files removed) on drop; xdpvsadm run against it.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb_userspace::listing::Listing;

use crate::{
    netns::{Netns, terminate},
    topology::IFACE,
};

/// The directory holding xdpvsd and xdpvsadm: next to the running test binary's `deps/`, as
/// `cargo build --bins` leaves them.
pub fn default_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A running xdpvsd.
pub struct Daemon {
    child: Option<Child>,
    bin_dir: PathBuf,
    work_dir: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its pin directory.
    pub pin_dir: PathBuf,
    /// RUST_LOG of the next start: by default the program's decisions are logged too (debug
    /// level of their own target), which turns its event reports on.
    pub log_filter: &'static str,
    /// Connection-table size of the next start.
    pub max_flows: u32,
    /// keepalived.conf to start with (`--keepalived-conf`) when no TOML text is given.
    pub keepalived_conf: Option<PathBuf>,
    /// Further xdpvsd arguments of the next start.
    pub args: Vec<String>,
}

impl Daemon {
    /// Paths for a daemon named `name`; nothing is started.
    pub fn paths(bin_dir: &Path, name: &str) -> Result<Self> {
        let work_dir = std::env::temp_dir().join(format!("xdpvs-{name}"));
        fs::create_dir_all(&work_dir)?;
        Ok(Self {
            child: None,
            bin_dir: bin_dir.to_owned(),
            socket: work_dir.join("xdpvsd.sock"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/xdpvs-{name}")),
            work_dir,
            log_filter: "info,xdpvs::xdp=debug",
            max_flows: 65_536,
            keepalived_conf: None,
            args: Vec::new(),
        })
    }

    /// The xdpvsd command for `ns` with this daemon's paths and `config` (TOML) written to a
    /// file, or else its keepalived.conf if it has one.
    pub fn command(&self, ns: &Netns, config: Option<&str>) -> Result<Command> {
        let mut cmd = self.xdpvsd(ns)?;
        cmd.env("RUST_LOG", self.log_filter)
            .args(["--interface", IFACE, "--max-flows"])
            .arg(self.max_flows.to_string())
            .args(&self.args);
        if let Some(text) = config {
            self.write_config(text)?;
            cmd.arg("--config").arg(self.config_path());
        } else if let Some(path) = &self.keepalived_conf {
            cmd.arg("--keepalived-conf").arg(path);
        }
        Ok(cmd)
    }

    /// Where the daemon saves its state for the next daemon.
    pub fn state_file(&self) -> PathBuf {
        self.work_dir.join("state.json")
    }

    /// Where this daemon's configuration file is.
    pub fn config_path(&self) -> PathBuf {
        self.work_dir.join("xdpvsd.toml")
    }

    /// Replaces the configuration file (the daemon reads it on start and on reload).
    pub fn write_config(&self, text: &str) -> Result<()> {
        Ok(fs::write(self.config_path(), text)?)
    }

    /// Starts xdpvsd in `ns` and waits until it answers.
    pub fn start(bin_dir: &Path, ns: &Netns, name: &str, config: Option<&str>) -> Result<Self> {
        let mut d = Self::paths(bin_dir, name)?;
        d.restart(ns, config)?;
        Ok(d)
    }

    /// Starts (again) xdpvsd in `ns` with this daemon's paths and waits until it answers; its
    /// log is appended to.
    pub fn restart(&mut self, ns: &Netns, config: Option<&str>) -> Result<()> {
        let d = self;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.work_dir.join("xdpvsd.log"))?;
        let child = d
            .command(ns, config)?
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting xdpvsd")?;
        d.child = Some(child);
        // Generous: under the conformance VM's emulation, with other runners beside it, a
        // start has taken over 20 s.
        let deadline = Instant::now() + Duration::from_secs(90);
        while d.adm(&["-Ln"])?.status.code() != Some(0) {
            if let Some(status) = d.child.as_mut().unwrap().try_wait()? {
                bail!("xdpvsd exited ({status}): {}", d.log());
            }
            if Instant::now() > deadline {
                bail!("xdpvsd did not answer: {}", d.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Runs `xdpvsd --unload` for this daemon's pins and state.
    pub fn unload(&self, ns: &Netns) -> Result<Output> {
        Ok(self.xdpvsd(ns)?.arg("--unload").output()?)
    }

    /// xdpvsd in `ns` with this daemon's pin directory, socket and state file.
    fn xdpvsd(&self, ns: &Netns) -> Result<Command> {
        let mut cmd = ns.command(self.bin_dir.join("xdpvsd").to_str().context("path")?);
        cmd.arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-file")
            .arg(self.state_file());
        Ok(cmd)
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.work_dir.join("xdpvsd.log")).unwrap_or_default()
    }

    /// Runs xdpvsadm with `args` against this daemon.
    pub fn adm(&self, args: &[&str]) -> Result<Output> {
        self.adm_with_input(args, "")
    }

    /// Runs xdpvsadm with `args` and `input` on its standard input (for `-R`).
    pub fn adm_with_input(&self, args: &[&str], input: &str) -> Result<Output> {
        let mut child = Command::new(self.bin_dir.join("xdpvsadm"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running xdpvsadm")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// The listing, as JSON from xdpvsadm.
    pub fn listing(&self) -> Result<Listing> {
        let out = self.adm(&["-Ln", "--json"])?;
        if !out.status.success() {
            bail!("xdpvsadm failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits until every real server's MAC is resolved.
    pub fn wait_resolved(&self) -> Result<Listing> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let l = self.listing()?;
            if l.services
                .iter()
                .flat_map(|s| &s.dests)
                .all(|d| d.mac.is_some())
            {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("real servers not resolved: {l:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon with SIGTERM and returns its exit status (killing it after 10 s).
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Ok(terminate(&mut child, Duration::from_secs(10))?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        // A stopped daemon leaves its link and maps pinned (and a killed one its socket):
        // removing the pins detaches the program.
        if let Ok(entries) = fs::read_dir(&self.pin_dir) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = fs::remove_dir(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.work_dir);
    }
}
