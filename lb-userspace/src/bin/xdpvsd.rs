//! xdpvsd: the xdpvs daemon.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use lb_userspace::daemon::{self, Options};

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
    /// Connection table size.
    #[arg(long, default_value_t = lb_common::DEFAULT_MAX_FLOWS)]
    max_flows: u32,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: Mode,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let run = || -> anyhow::Result<()> {
        let mut opts = Options::new(cli.interface, cli.config.as_deref())?;
        opts.pin_dir = cli.pin_dir;
        opts.socket = cli.socket;
        opts.max_flows = cli.max_flows;
        opts.allow_generic = matches!(cli.xdp_mode, Mode::Auto);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(daemon::run(opts))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdpvsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
