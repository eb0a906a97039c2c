//! The real keepalived, VRRP only (`keepalived -P`), run inside a test namespace with its own
//! configuration, pid files, notify FIFO and track file; stopped on drop.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb_userspace::ha::setup::Setup;

use crate::netns::{Netns, terminate};

/// A keepalived of one director: its files, and the process while it runs.
pub struct Keepalived {
    child: Option<Child>,
    dir: PathBuf,
}

impl Keepalived {
    /// Files for a keepalived named `name`; nothing is started.
    pub fn paths(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("xdpvs-ka-{name}"));
        fs::create_dir_all(&dir)?;
        Ok(Self { child: None, dir })
    }

    /// The FIFO keepalived reports its state to (xdpvsd's `--notify-fifo`).
    pub fn notify_fifo(&self) -> PathBuf {
        self.dir.join("notify.fifo")
    }

    /// The file keepalived tracks (xdpvsd's `--track-file`).
    pub fn track_file(&self) -> PathBuf {
        self.dir.join("track")
    }

    /// `xdpvsadm ha-setup`'s setup for these files.
    pub fn setup(
        &self,
        interface: &str,
        vip: std::net::Ipv4Addr,
        router_id: u8,
        priority: u8,
    ) -> Setup {
        let mut s = Setup::new(interface, vip, 32, router_id, priority);
        s.notify_fifo = self.notify_fifo();
        s.track_file = self.track_file();
        s
    }

    fn pid_file(&self, which: &str) -> PathBuf {
        self.dir.join(format!("{which}.pid"))
    }

    /// Starts keepalived for VRRP only in `ns` with `setup`'s configuration.
    pub fn start(&mut self, ns: &Netns, setup: &Setup) -> Result<()> {
        if self.child.is_some() {
            bail!("keepalived is running");
        }
        let conf = self.dir.join("keepalived.conf");
        fs::write(&conf, setup.keepalived_conf()?)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("keepalived.log"))?;
        let child = ns
            .command("keepalived")
            // In the foreground, logging to the console (our log file), VRRP only.
            .args(["-n", "-l", "-D", "-P", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(self.pid_file("keepalived"))
            .arg("-r")
            .arg(self.pid_file("vrrp"))
            .arg("-c")
            .arg(self.pid_file("checkers"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting keepalived")?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills keepalived's parent process with SIGKILL: its VRRP child shuts down on its own
    /// (priority-0 advert, VIP removed). Returns when both are gone.
    pub fn kill(&mut self) -> Result<()> {
        let vrrp = self.vrrp_pid();
        let mut child = self.child.take().context("keepalived is not running")?;
        child.kill()?;
        child.wait()?;
        self.reap(vrrp)
    }

    /// Stops keepalived cleanly (SIGTERM).
    pub fn stop(&mut self) -> Result<()> {
        let vrrp = self.vrrp_pid();
        let mut child = self.child.take().context("keepalived is not running")?;
        terminate(&mut child, Duration::from_secs(5))?;
        self.reap(vrrp)
    }

    fn vrrp_pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file("vrrp"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Waits up to 5 s for the VRRP child `pid` to exit, then kills it.
    fn reap(&self, pid: Option<i32>) -> Result<()> {
        let Some(pid) = pid else { return Ok(()) };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = || unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() {
            if Instant::now() > deadline {
                // SAFETY: the VRRP child of the keepalived this harness started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                bail!(
                    "keepalived's VRRP child {pid} did not exit:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// What keepalived logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }
}

/// Whether `pid` is a zombie (exited, not yet reaped by its parent, here init after the
/// parent's death).
fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
