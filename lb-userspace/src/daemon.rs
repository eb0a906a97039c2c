//! xdpvsd's shell around the [`Engine`]: it owns the loaded data plane, reads the clock, the
//! kernel's neighbour table and the configuration file, sends neighbour probes, and saves the
//! bookkeeping for a successor, runs the health checkers and their notifiers. Everything it
//! decides is the engine's.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use lb_common::state::Timeouts;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    config::Source,
    control::{Command, PROTOCOL_VERSION, Response},
    dataplane::{DataPlane, monotonic_ns},
    engine::{Engine, XDP_LOG_TARGET},
    health::{
        model::ServiceHealth,
        runner::{Report, Runner},
    },
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
    /// Health checking of their real servers.
    pub health: Vec<ServiceHealth>,
    /// Where the maps are pinned.
    pub pin_dir: PathBuf,
    /// Control socket path.
    pub socket: PathBuf,
    /// Connection table size.
    pub max_flows: u32,
    /// Persistence template table size.
    pub max_templates: u32,
    /// Fall back to generic XDP when native fails.
    pub allow_generic: bool,
    /// Start even when the pins end with this process's mount namespace (and so the program
    /// and the flows with the daemon).
    pub transient_pins: bool,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// The configuration file, re-read on SIGHUP and `xdpvsadm --reload`.
    pub config: Option<Source>,
    /// Where the daemon keeps its bookkeeping for its successor.
    pub state_file: PathBuf,
    /// Loopback address for the Prometheus text exposition, if any.
    pub metrics: Option<std::net::SocketAddr>,
    /// The link to keepalived's VRRP, if any.
    pub ha: crate::ha::Settings,
}

impl Options {
    /// Settings from the command line and an optional configuration file.
    pub fn new(interface: Option<String>, source: Option<Source>) -> Result<Self> {
        let config = source.as_ref().map(Source::load).transpose()?;
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
            health: config
                .as_ref()
                .map(|c| c.health.clone())
                .unwrap_or_default(),
            pin_dir: crate::DEFAULT_PIN_DIR.into(),
            socket: crate::DEFAULT_SOCKET.into(),
            max_flows: lb_common::DEFAULT_MAX_FLOWS,
            max_templates: lb_common::DEFAULT_MAX_TEMPLATES,
            allow_generic: true,
            transient_pins: false,
            state_file: crate::DEFAULT_STATE_FILE.into(),
            metrics: config.as_ref().and_then(|c| c.metrics),
            ha: Default::default(),
            config: source,
        })
    }
}

/// The running daemon.
pub struct Daemon {
    engine: Engine<DataPlane>,
    interface: String,
    /// The configuration file, for reloads.
    config: Option<Source>,
    /// Where the bookkeeping is saved after every change.
    state_file: PathBuf,
    /// The health checkers' tasks.
    checks: Runner,
    /// Their reports, until the event loop takes them.
    reports: Option<UnboundedReceiver<Report>>,
}

impl Daemon {
    /// A daemon over a loaded data plane, with nothing installed yet.
    pub fn new(dataplane: DataPlane, opts: &Options) -> Self {
        let (checks, reports) = Runner::new();
        Self {
            engine: Engine::new(dataplane, opts.max_flows, opts.timeouts),
            interface: opts.interface.clone(),
            config: opts.config.clone(),
            state_file: opts.state_file.clone(),
            checks,
            reports: Some(reports),
        }
    }

    /// The health checkers' reports, for the event loop (once).
    pub fn take_health_reports(&mut self) -> Option<UnboundedReceiver<Report>> {
        self.reports.take()
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
        self.engine.set_timeouts(opts.timeouts)?;
        self.configure(&opts.services, &opts.health)
    }

    /// Applies `specs` with the current neighbour table, and probes what it lacks.
    fn apply(&mut self, specs: &[ServiceSpec]) -> Result<()> {
        self.engine.apply(specs)?;
        self.refresh_neighbours(false)
    }

    /// Applies `specs` with `health`, and (re)starts the checkers that changed.
    fn configure(&mut self, specs: &[ServiceSpec], health: &[ServiceHealth]) -> Result<()> {
        self.engine
            .apply_with_health(specs, health, monotonic_ns())?;
        self.checks.update(health);
        self.notify();
        self.refresh_neighbours(false)
    }

    /// Takes a checker's report; a change is installed and saved, and notifiers are run.
    pub fn health_report(&mut self, report: Report) -> Result<()> {
        if !self.checks.is_current(&report) {
            return Ok(());
        }
        let changed = self.engine.report(&report, monotonic_ns());
        self.notify();
        if changed? {
            self.save();
            self.refresh_neighbours(false)?;
        }
        Ok(())
    }

    /// Runs the notifiers `omega` asks for at stop.
    pub fn stop(&mut self) {
        run_notifiers(self.engine.stop_notifications());
    }

    fn notify(&mut self) {
        run_notifiers(self.engine.take_notifications());
    }

    fn refresh_neighbours(&mut self, reprobe: bool) -> Result<()> {
        let table = neigh::table(&self.interface);
        neigh::probe(&self.engine.set_neighbours(table, reprobe)?);
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
        let config = self
            .config
            .as_ref()
            .context("the daemon was started without --config or --keepalived-conf")?
            .load()?;
        self.engine.set_timeouts(config.timeouts)?;
        self.configure(&config.services, &config.health)
    }

    /// The periodic work, now.
    pub fn tick(&mut self) -> Result<()> {
        let table = neigh::table(&self.interface);
        neigh::probe(&self.engine.tick(monotonic_ns(), table)?);
        Ok(())
    }

    /// The listing.
    pub fn listing(&self) -> Result<crate::listing::Listing> {
        self.engine.listing(monotonic_ns())
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

    /// The services as installed (health overlaid).
    pub fn installed_specs(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.engine.installed().services.iter().map(|s| &s.spec)
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

/// Starts notifier commands (`notify_up`, `quorum_down`, ...) with `sh -c`, as keepalived
/// forks its scripts: they run on their own, and a failure is logged.
fn run_notifiers(commands: Vec<String>) {
    for command in commands {
        match std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                std::thread::spawn(move || match child.wait() {
                    Ok(status) if status.success() => {}
                    Ok(status) => log::warn!("notifier `{command}` ended with {status}"),
                    Err(e) => log::warn!("notifier `{command}`: {e}"),
                });
            }
            Err(e) => log::error!("cannot start notifier `{command}`: {e}"),
        }
    }
}
