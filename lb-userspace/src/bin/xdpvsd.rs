//! xdpvsd: the xdpvs daemon.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use lb_userspace::{daemon::Options, run};

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
    #[arg(short, long)]
    config: Option<PathBuf>,
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
    let main = || -> anyhow::Result<()> {
        let interface = cli.interface.or(cli.unload.then(String::new));
        let mut opts = Options::new(interface, cli.config.as_deref())?;
        opts.pin_dir = cli.pin_dir;
        opts.socket = cli.socket;
        opts.state_file = cli.state_file;
        opts.max_flows = cli.max_flows;
        opts.allow_generic = matches!(cli.xdp_mode, Mode::Auto);
        opts.transient_pins = cli.transient_pins;
        opts.metrics = cli.metrics.or(opts.metrics);
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
