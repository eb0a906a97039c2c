//! A director pair with keepalived's VRRP (`keepalived -P`): keepalived moves the VIP, xdpvsd
//! runs the same services on both directors all the time. xdpvsd follows keepalived's state
//! through `notify_fifo` ([`notify`]) and tells keepalived whether it can serve through a
//! `track_file` of weight 0: 0 while every service has a usable real server, 1 when one has
//! none or the daemon stops, which puts the director in FAULT and hands the VIP to the peer.
//! [`setup`] prints keepalived's side.

pub mod notify;
pub mod setup;

use std::{fs, path::PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use notify::Role;
use notify::Update;

use crate::model::ServiceSpec;

/// xdpvsd's side of the pair; both off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// keepalived's `notify_fifo`, followed for this director's VRRP state.
    pub notify_fifo: Option<PathBuf>,
    /// keepalived's `track_file`, written with this director's health.
    pub track_file: Option<PathBuf>,
}

/// The pair as this director sees it (`--json`, metrics).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaStatus {
    /// Its VRRP state; `unknown` while no keepalived writes to the FIFO (or none is followed).
    pub role: Role,
    /// The instance the last state change was about.
    pub instance: Option<String>,
    /// Whether some service has a usable real server (what the track file says).
    pub healthy: bool,
}

/// Whether the director can serve at all: some service has a real server of positive weight
/// (a failed real server is removed or set to weight 0, as keepalived's checker would do), or
/// there is no service. Not "every service": both directors check the same real servers, so a
/// service whose servers are all down is down on both, and a fault on both would drop the VIP
/// of every other service too.
pub fn serving<'a>(services: impl IntoIterator<Item = &'a ServiceSpec>) -> bool {
    let mut services = services.into_iter().peekable();
    services.peek().is_none() || services.any(|s| s.dests.iter().any(|d| d.weight > 0))
}

/// The daemon's link to keepalived.
pub struct Ha {
    enabled: bool,
    updates: Option<mpsc::UnboundedReceiver<Update>>,
    track_file: Option<PathBuf>,
    /// What the track file holds, once written.
    written: Option<bool>,
    status: HaStatus,
}

impl Ha {
    /// Starts following the FIFO, if any. Nothing is written yet.
    pub fn start(settings: &Settings) -> Result<Self> {
        let updates = settings
            .notify_fifo
            .as_deref()
            .map(notify::follow)
            .transpose()?;
        Ok(Self {
            enabled: settings.notify_fifo.is_some() || settings.track_file.is_some(),
            updates,
            track_file: settings.track_file.clone(),
            written: None,
            status: HaStatus {
                role: Role::Unknown,
                instance: None,
                healthy: false,
            },
        })
    }

    /// The next update from keepalived; never ready without a FIFO.
    pub async fn next(&mut self) -> Update {
        match &mut self.updates {
            Some(rx) => match rx.recv().await {
                Some(u) => u,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Takes keepalived's update in.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Changed(t) => {
                log::info!(
                    "keepalived: {} is {}{}",
                    t.instance,
                    t.role.name(),
                    t.priority
                        .map(|p| format!(" (priority {p})"))
                        .unwrap_or_default()
                );
                self.status.role = t.role;
                self.status.instance = Some(t.instance);
            }
            Update::Closed => {
                log::warn!("keepalived closed its notify_fifo: role unknown, taken as not master");
                self.status.role = Role::Unknown;
            }
        }
    }

    /// Finds out whether the director can serve (with `healthy`, only when the daemon takes
    /// part in a pair) and writes the track file when that changed.
    pub fn check_health(&mut self, healthy: impl FnOnce() -> bool) {
        if !self.enabled {
            return;
        }
        let healthy = healthy();
        if self.status.healthy != healthy {
            if healthy {
                log::info!("a service has a usable real server: this director is healthy");
            } else {
                log::warn!("no service has a usable real server: this director is not healthy");
            }
            self.status.healthy = healthy;
        }
        self.write(healthy);
    }

    /// The daemon stops: keepalived is told it cannot serve any more.
    pub fn stop(&mut self) {
        self.status.healthy = false;
        self.write(false);
    }

    /// Writes the track file unless it already holds `healthy`'s value; a failed write is
    /// logged and tried again next time.
    fn write(&mut self, healthy: bool) {
        let Some(path) = &self.track_file else {
            return;
        };
        if self.written == Some(healthy) {
            return;
        }
        // keepalived reads the file when it is closed after a write, as after `echo 1 > F`.
        match fs::write(path, if healthy { "0\n" } else { "1\n" }) {
            Ok(()) => {
                log::info!(
                    "track file {}: {}",
                    path.display(),
                    if healthy { "0 (healthy)" } else { "1 (fault)" }
                );
                self.written = Some(healthy);
            }
            Err(e) => log::error!("writing the track file {}: {e}", path.display()),
        }
    }

    /// The pair's state, if the daemon takes part in one.
    pub fn status(&self) -> Option<HaStatus> {
        self.enabled.then(|| self.status.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use lb_common::sched::Scheduler;

    use crate::model::{DestSpec, tcp_service};

    /// Services with real servers of the given weights.
    fn services(weights: &[&[u32]]) -> Vec<ServiceSpec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, weights)| {
                let mut s = tcp_service(
                    80 + i as u16,
                    Scheduler::Mh,
                    [Ipv4Addr::new(10, 0, 0, 2).into()],
                );
                s.dests = weights
                    .iter()
                    .map(|&weight| DestSpec {
                        weight,
                        ..s.dests[0]
                    })
                    .collect();
                s
            })
            .collect()
    }

    #[test]
    fn a_director_without_any_usable_real_server_is_a_fault() {
        assert!(serving(&services(&[])));
        assert!(serving(&services(&[&[1, 0], &[2]])));
        assert!(
            serving(&services(&[&[1], &[0, 0]])),
            "one service down on both"
        );
        assert!(!serving(&services(&[&[0], &[0, 0]])));
        assert!(!serving(&services(&[&[], &[0]])));
    }

    #[test]
    fn track_file_follows_health_and_stop() {
        let path = std::env::temp_dir().join(format!("xdpvs-track-{}", std::process::id()));
        let mut ha = Ha::start(&Settings {
            notify_fifo: None,
            track_file: Some(path.clone()),
        })
        .unwrap();
        let read = || fs::read_to_string(&path).unwrap();
        ha.check_health(|| true);
        assert_eq!(read(), "0\n");
        ha.check_health(|| false);
        assert_eq!(read(), "1\n");
        ha.check_health(|| true);
        assert_eq!(read(), "0\n");
        ha.stop();
        assert_eq!(read(), "1\n");
        assert_eq!(ha.status().unwrap().role, Role::Unknown);
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn role_follows_keepalived_and_its_close() {
        assert_eq!(Ha::start(&Settings::default()).unwrap().status(), None);
        let mut ha = Ha::start(&Settings {
            notify_fifo: None,
            track_file: Some("/nonexistent/track".into()),
        })
        .unwrap();
        ha.apply(Update::Changed(notify::Transition {
            instance: "VI_1".into(),
            role: Role::Master,
            priority: Some(100),
        }));
        assert_eq!(ha.status().unwrap().role, Role::Master);
        ha.apply(Update::Closed);
        let s = ha.status().unwrap();
        assert_eq!(
            (s.role, s.instance.as_deref()),
            (Role::Unknown, Some("VI_1"))
        );
    }
}
