//! xdpvsd: the xdpvs daemon.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use lb_userspace::{config::Source, daemon::Options, ipvsadm_format, listing::Listing, run};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Native XDP, generic if the driver cannot.
    Auto,
    /// Native XDP only.
    Native,
}

/// XDP Virtual Server daemon: IPVS-style direct routing in XDP.
#[derive(Parser)]
#[command(version, args_override_self = true)]
struct Cli {
    /// Interface to attach to (the one that receives traffic for the VIPs).
    #[arg(short, long)]
    interface: Option<String>,
    /// TOML configuration file.
    #[arg(short, long, conflicts_with = "keepalived_conf")]
    config: Option<PathBuf>,
    /// keepalived.conf: its virtual servers, real servers and checkers (VRRP is keepalived's).
    #[arg(long, value_name = "FILE")]
    keepalived_conf: Option<PathBuf>,
    /// Check the configuration file: print its services as `xdpvsadm -S` would and every
    /// warning, and exit (1 if it is not valid) without touching the system.
    #[arg(long)]
    check: bool,
    /// Directory for the pinned maps (on a BPF filesystem).
    #[arg(long, default_value = lb_userspace::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Control socket path.
    #[arg(long, default_value = lb_userspace::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Where the daemon saves its bookkeeping for the next daemon.
    #[arg(long, default_value = lb_userspace::DEFAULT_STATE_FILE)]
    state_file: PathBuf,
    /// Serve Prometheus metrics on this loopback address (overrides `metrics` in the file).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Detach the program a stopped daemon left attached, remove its pins and state, and exit.
    #[arg(long)]
    unload: bool,
    /// Connection table size.
    #[arg(long, default_value_t = lb_common::DEFAULT_MAX_FLOWS)]
    max_flows: u32,
    /// keepalived's notify_fifo: follow this director's VRRP state there.
    #[arg(long, value_name = "PATH")]
    notify_fifo: Option<PathBuf>,
    /// keepalived's track_file (weight 0): write 0 while every service has a usable real
    /// server, 1 when one has none or the daemon stops.
    #[arg(long, value_name = "PATH")]
    track_file: Option<PathBuf>,
    /// Start even when the pin directory's BPF filesystem is private to this mount namespace
    /// (as under `ip netns exec`): the program is then detached, and the flows lost, when the
    /// daemon ends.
    #[arg(long)]
    transient_pins: bool,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: Mode,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let source = match (cli.config, cli.keepalived_conf) {
        (Some(path), _) => Some(Source::Toml(path)),
        (None, path) => path.map(Source::Keepalived),
    };
    let main = || -> anyhow::Result<()> {
        if cli.check {
            return check(source.as_ref());
        }
        let interface = cli.interface.or(cli.unload.then(String::new));
        let mut opts = Options::new(interface, source)?;
        opts.pin_dir = cli.pin_dir;
        opts.socket = cli.socket;
        opts.state_file = cli.state_file;
        opts.max_flows = cli.max_flows;
        opts.allow_generic = matches!(cli.xdp_mode, Mode::Auto);
        opts.transient_pins = cli.transient_pins;
        opts.metrics = cli.metrics.or(opts.metrics);
        opts.ha = lb_userspace::ha::Settings {
            notify_fifo: cli.notify_fifo,
            track_file: cli.track_file,
        };
        if cli.unload {
            return run::unload(&opts);
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run::run(opts))
    };
    match main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdpvsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check`: the services as `-S` lists them on stdout, the warnings on stderr.
fn check(source: Option<&Source>) -> anyhow::Result<()> {
    let source =
        source.ok_or_else(|| anyhow::anyhow!("--check needs --config or --keepalived-conf"))?;
    let loaded = source.read()?;
    for w in &loaded.warnings {
        eprintln!("xdpvsd: warning: {w}");
    }
    print!(
        "{}",
        ipvsadm_format::rules(&Listing::configured(&loaded.config.services))
    );
    Ok(())
}
