//! What a stopping daemon leaves for its successor, next to the pinned maps: the services with
//! the map ids, list and table regions they hold, the timeouts and the counter baselines. With it a
//! restarted daemon adopts the running data plane instead of rebuilding it, so flows stay.

use std::{fs, path::Path};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{counters::Baselines, reconcile::InstalledService};

/// Version of the file's format; another version is ignored.
const FORMAT: u32 = 2;

/// The daemon's bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    format: u32,
    /// Installed services in list order.
    pub services: Vec<InstalledService>,
    /// Timeouts by state (`lb_common::state::Timeouts`).
    pub timeouts: Vec<u32>,
    /// Counter baselines.
    pub baselines: Baselines,
}

impl SavedState {
    /// A state to save.
    pub fn new(services: Vec<InstalledService>, timeouts: Vec<u32>, baselines: Baselines) -> Self {
        Self {
            format: FORMAT,
            services,
            timeouts,
            baselines,
        }
    }

    /// Writes the state to `path` atomically (a temporary file renamed over it).
    pub fn store(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    }

    /// The state at `path`, if there is a readable one of this format.
    pub fn load(path: &Path) -> Option<Self> {
        let state: Self = serde_json::from_slice(&fs::read(path).ok()?)
            .inspect_err(|e| log::warn!("ignoring {}: {e}", path.display()))
            .ok()?;
        (state.format == FORMAT).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("xdpvs-saved-{}", std::process::id()));
        let path = dir.join("state.json");
        let s = SavedState::new(vec![], vec![900, 120], Baselines::default());
        s.store(&path).unwrap();
        assert_eq!(SavedState::load(&path), Some(s));
        fs::write(&path, "{").unwrap();
        assert_eq!(SavedState::load(&path), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
