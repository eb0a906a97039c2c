//! xdpvsadm: ipvsadm's command line for xdpvs.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use lb_userspace::{
    control::{self, Command, Reply},
    listing,
};

/// Administer the xdpvs virtual server table, as ipvsadm does.
#[derive(Parser)]
#[command(version, disable_help_flag = true)]
struct Cli {
    /// List the virtual server table.
    #[arg(short = 'L', long = "list", visible_short_alias = 'l')]
    list: bool,
    /// Numeric output of addresses and ports.
    #[arg(short = 'n', long = "numeric")]
    numeric: bool,
    /// Print the listing as JSON.
    #[arg(long)]
    json: bool,
    /// The daemon's control socket.
    #[arg(long, default_value = lb_userspace::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print help.
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    // As ipvsadm, no command lists the table; addresses are always printed numerically.
    let _ = (cli.list, cli.numeric);
    match control::call(&cli.socket, Command::List) {
        Ok(Reply::Listing(l)) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&l).expect("a listing serializes")
                );
            } else {
                print!("{}", listing::numeric(&l));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(255)
        }
    }
}
