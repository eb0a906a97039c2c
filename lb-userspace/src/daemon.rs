//! xdpvsd's shell around the [`Engine`]: it owns the loaded data plane, reads the clock, the
//! kernel's neighbour table and the configuration file, sends neighbour probes, and saves the
//! bookkeeping for a successor. Everything it decides is the engine's.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use lb_common::state::Timeouts;

use crate::{
    config::Config,
    control::{Command, PROTOCOL_VERSION, Response},
    dataplane::{DataPlane, monotonic_ns},
    engine::{Engine, XDP_LOG_TARGET},
    iface,
    maps::Maps,
    model::ServiceSpec,
    neigh,
    saved::SavedState,
};

/// How often neighbours are refreshed, idle flows expired and counters sampled.
pub const TICK: Duration = Duration::from_secs(1);

/// The daemon's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface to attach to.
    pub interface: String,
    /// Services to install.
    pub services: Vec<ServiceSpec>,
    /// Where the maps are pinned.
    pub pin_dir: PathBuf,
    /// Control socket path.
    pub socket: PathBuf,
    /// Connection table size.
    pub max_flows: u32,
    /// Fall back to generic XDP when native fails.
    pub allow_generic: bool,
    /// Start even when the pins end with this process's mount namespace (and so the program
    /// and the flows with the daemon).
    pub transient_pins: bool,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// The configuration file, re-read on SIGHUP and `xdpvsadm --reload`.
    pub config: Option<PathBuf>,
    /// Where the daemon keeps its bookkeeping for its successor.
    pub state_file: PathBuf,
    /// Loopback address for the Prometheus text exposition, if any.
    pub metrics: Option<std::net::SocketAddr>,
}

impl Options {
    /// Settings from the command line and an optional configuration file.
    pub fn new(interface: Option<String>, config: Option<&Path>) -> Result<Self> {
        let path = config.map(Path::to_owned);
        let config = config.map(Config::load).transpose()?;
        let interface = interface
            .or_else(|| config.as_ref().and_then(|c| c.interface.clone()))
            .context("no interface: give --interface IF or `interface` in the configuration")?;
        Ok(Self {
            interface,
            timeouts: config.as_ref().map(|c| c.timeouts).unwrap_or_default(),
            services: config
                .as_ref()
                .map(|c| c.services.clone())
                .unwrap_or_default(),
            pin_dir: crate::DEFAULT_PIN_DIR.into(),
            socket: crate::DEFAULT_SOCKET.into(),
            max_flows: lb_common::DEFAULT_MAX_FLOWS,
            allow_generic: true,
            transient_pins: false,
            state_file: crate::DEFAULT_STATE_FILE.into(),
            metrics: config.as_ref().and_then(|c| c.metrics),
            config: path,
        })
    }
}

/// The running daemon.
pub struct Daemon {
    engine: Engine<DataPlane>,
    interface: String,
    /// The configuration file, for reloads.
    config: Option<PathBuf>,
    /// Where the bookkeeping is saved after every change.
    state_file: PathBuf,
}

impl Daemon {
    /// A daemon over a loaded data plane, with nothing installed yet.
    pub fn new(dataplane: DataPlane, opts: &Options) -> Self {
        Self {
            engine: Engine::new(dataplane, opts.max_flows, opts.timeouts),
            interface: opts.interface.clone(),
            config: opts.config.clone(),
            state_file: opts.state_file.clone(),
        }
    }

    /// Sets the director's MAC, adopts what a previous daemon left in the pinned maps (`saved`,
    /// if it matches them), drops services nobody accounts for, and installs the configured
    /// services; without a configuration file an adopted table is kept as it is.
    pub fn install(&mut self, opts: &Options, saved: Option<SavedState>) -> Result<()> {
        let debug = log::log_enabled!(target: XDP_LOG_TARGET, log::Level::Debug);
        self.engine
            .maps_mut()
            .set_director(iface::mac(&opts.interface)?, debug)?;
        let adopted = self.engine.adopt(saved)?;
        if adopted && opts.config.is_none() {
            return self.apply(&self.engine.installed().specs());
        }
        self.engine.set_timeouts(opts.timeouts);
        self.apply(&opts.services)
    }

    /// Applies `specs` with the current neighbour table, and probes what it lacks.
    fn apply(&mut self, specs: &[ServiceSpec]) -> Result<()> {
        self.engine.apply(specs)?;
        self.refresh_neighbours(false)
    }

    fn refresh_neighbours(&mut self, reprobe: bool) -> Result<()> {
        let table = neigh::table(&self.interface);
        for addr in self.engine.set_neighbours(table, reprobe)? {
            neigh::probe(addr);
        }
        Ok(())
    }

    /// Saves the bookkeeping for a successor; a failure is logged (the data plane is fine).
    pub fn save(&self) {
        if let Err(e) = self.engine.saved().store(&self.state_file) {
            log::error!("cannot save the daemon's state: {e:#}");
        }
    }

    /// Re-reads the configuration file and applies the difference. A file that is not valid,
    /// or a change that does not fit, changes nothing; a map write that fails midway leaves
    /// what was done, recorded.
    pub fn reload(&mut self) -> Result<()> {
        let path = self
            .config
            .clone()
            .context("the daemon was started without --config")?;
        let config = Config::load(&path)?;
        self.engine.set_timeouts(config.timeouts);
        self.apply(&config.services)
    }

    /// The periodic work, now.
    pub fn tick(&mut self) -> Result<()> {
        let table = neigh::table(&self.interface);
        for addr in self.engine.tick(monotonic_ns(), table)? {
            neigh::probe(addr);
        }
        Ok(())
    }

    /// The listing.
    pub fn listing(&self) -> Result<crate::listing::Listing> {
        self.engine.listing()
    }

    /// Carries out one command; changes are saved for a successor.
    pub fn handle(&mut self, command: Command) -> Response {
        let changes = !matches!(
            command,
            Command::List | Command::Timeouts | Command::Connections
        );
        let result = match command {
            Command::Reload => self
                .reload()
                .map(|()| crate::control::Reply::Done)
                .map_err(|e| format!("{e:#}")),
            command => self.engine.handle(command, monotonic_ns()),
        };
        if changes && result.is_ok() {
            self.save();
        }
        Response {
            version: PROTOCOL_VERSION,
            result,
        }
    }

    /// The data plane, for attaching and unloading.
    pub fn dataplane_mut(&mut self) -> &mut DataPlane {
        self.engine.maps_mut()
    }

    /// Gives the data plane back (the daemon is done).
    pub fn into_dataplane(self) -> DataPlane {
        self.engine.into_maps()
    }
}
