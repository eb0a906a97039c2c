//! keepalived's `notify_fifo`: the lines it writes on VRRP state changes, and a reader that
//! follows the FIFO across keepalived's restarts.
//!
//! keepalived writes one line per event, in order (`INSTANCE "VI_1" MASTER 100`), and keeps
//! the FIFO open while it runs: the reader sees end-of-file when keepalived exits. It creates
//! the FIFO if it is missing (and then removes it when it exits) or uses the one it finds.

use std::{
    ffi::CString,
    fs::File,
    io::{BufRead, BufReader, ErrorKind},
    os::unix::{ffi::OsStrExt, fs::FileTypeExt},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// This director's VRRP state, as keepalived reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// It holds the VIP.
    Master,
    /// A peer holds the VIP, or none is known yet.
    Backup,
    /// keepalived found a fault (a tracked file, interface or script) and gave the VIP away.
    Fault,
    /// keepalived is stopping.
    Stop,
    /// No keepalived writes to the FIFO: nothing is known, which counts as not master.
    Unknown,
}

impl Role {
    /// Every role, in the order metrics list them.
    pub const ALL: [Role; 5] = [
        Role::Master,
        Role::Backup,
        Role::Fault,
        Role::Stop,
        Role::Unknown,
    ];

    /// keepalived's word for a state.
    fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "MASTER" => Self::Master,
            "BACKUP" => Self::Backup,
            "FAULT" => Self::Fault,
            "STOP" => Self::Stop,
            _ => return None,
        })
    }

    /// The lowercase name used in logs, JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Backup => "backup",
            Self::Fault => "fault",
            Self::Stop => "stop",
            Self::Unknown => "unknown",
        }
    }
}

/// A state change of a VRRP instance or sync group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The instance's (or group's) name.
    pub instance: String,
    /// Its new state.
    pub role: Role,
    /// The priority it announces, when keepalived gives it (instances only).
    pub priority: Option<u8>,
}

/// Parses one FIFO line. Lines that are no state change of an instance or group (priority
/// changes, virtual server events) give `None`.
pub fn parse(line: &str) -> Option<Transition> {
    let (kind, rest) = line.trim_end().split_once(' ')?;
    if kind != "INSTANCE" && kind != "GROUP" {
        return None;
    }
    let rest = rest.strip_prefix('"')?;
    let (instance, rest) = rest.split_once('"')?;
    let mut words = rest.split_whitespace();
    let role = Role::from_word(words.next()?)?;
    let priority = words.next().and_then(|p| p.parse().ok());
    Some(Transition {
        instance: instance.to_owned(),
        role,
        priority,
    })
}

/// What the reader of the FIFO reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// keepalived reported a state change.
    Changed(Transition),
    /// keepalived closed the FIFO (it stopped or died).
    Closed,
}

/// Follows the FIFO at `path` on a thread of its own: creates it when missing (mode 0600),
/// opens it (blocking until keepalived opens it too), passes every state change on, reports
/// `Closed` at end-of-file and opens it again. The thread ends when the receiver is dropped
/// and the next event comes, or with the process.
pub fn follow(path: &Path) -> Result<mpsc::UnboundedReceiver<Update>> {
    ensure_fifo(path)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("notify-fifo".into())
        .spawn(move || read_forever(&path, &tx))
        .context("starting the notify_fifo reader")?;
    Ok(rx)
}

fn read_forever(path: &PathBuf, tx: &mpsc::UnboundedSender<Update>) {
    loop {
        // keepalived removes a FIFO it created when it exits; the next one finds ours.
        let file = ensure_fifo(path)
            .and_then(|()| File::open(path).with_context(|| format!("opening {}", path.display())));
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                log::error!("notify_fifo: {e:#}; trying again in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        // Lines are read as bytes: one that is not UTF-8 is ignored, not the end of the FIFO.
        for line in BufReader::new(file).split(b'\n') {
            match line {
                Ok(bytes) => {
                    let line = String::from_utf8_lossy(&bytes);
                    match parse(&line) {
                        Some(t) => {
                            if tx.send(Update::Changed(t)).is_err() {
                                return;
                            }
                        }
                        None => log::debug!("notify_fifo: ignoring {line:?}"),
                    }
                }
                Err(e) => {
                    log::warn!("notify_fifo: reading {}: {e}", path.display());
                    break;
                }
            }
        }
        if tx.send(Update::Closed).is_err() {
            return;
        }
    }
}

/// Creates a FIFO (mode 0600) at `path` unless one is there; anything else there is an error.
fn ensure_fifo(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).context("a path with a NUL byte")?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::AlreadyExists {
            return Err(e).with_context(|| format!("creating the FIFO {}", path.display()));
        }
    }
    let kind = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .file_type();
    if !kind.is_fifo() {
        bail!("{} exists and is not a FIFO", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn parses_keepalived_lines() {
        assert_eq!(
            parse("INSTANCE \"VI_1\" MASTER 100\n"),
            Some(Transition {
                instance: "VI_1".into(),
                role: Role::Master,
                priority: Some(100),
            })
        );
        assert_eq!(
            parse("GROUP \"G1\" FAULT"),
            Some(Transition {
                instance: "G1".into(),
                role: Role::Fault,
                priority: None,
            })
        );
        for ignored in [
            "INSTANCE \"VI_1\" MASTER_PRIORITY 80",
            "VS [10.0.0.1]:tcp:80 UP",
            "INSTANCE VI_1 MASTER 100",
            "INSTANCE \"VI_1\"",
            "",
        ] {
            assert_eq!(parse(ignored), None, "{ignored:?}");
        }
    }

    /// The reader passes lines on in order, reports the writer's close and opens the FIFO
    /// again for the next writer.
    #[test]
    fn follows_the_fifo_across_writers() {
        let dir = std::env::temp_dir().join(format!("xdpvs-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fifo");
        let mut rx = follow(&path).unwrap();
        let next = |rx: &mut mpsc::UnboundedReceiver<Update>| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(u) = rx.try_recv() {
                    return u;
                }
                assert!(std::time::Instant::now() < deadline, "no update");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        for (line, role) in [
            ("INSTANCE \"VI_1\" BACKUP 90", Role::Backup),
            ("INSTANCE \"VI_1\" MASTER 90", Role::Master),
        ] {
            let mut w = File::options().write(true).open(&path).unwrap();
            writeln!(w, "INSTANCE \"VI_1\" MASTER_PRIORITY 80\n{line}").unwrap();
            drop(w);
            match next(&mut rx) {
                Update::Changed(t) => assert_eq!(t.role, role),
                other => panic!("{other:?}"),
            }
            assert_eq!(next(&mut rx), Update::Closed);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
