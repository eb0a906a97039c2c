//! xdpvsd's event loop: the control socket, the metrics endpoint, signals, the health
//! checkers' reports, keepalived's notify FIFO and the periodic tick. Stopping leaves the
//! program attached and its maps pinned for the next daemon.

use std::{
    fs, io::ErrorKind, net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixListener},
    signal::unix::{SignalKind, signal},
};

use crate::{
    control::{Command, Reply, Response},
    control_server::{self, Requests},
    daemon::{Daemon, Options, TICK},
    dataplane::{self, DataPlane},
    ha::{self, Ha},
    iface, metrics,
    saved::SavedState,
};

/// Binds the control socket with mode 0600, refusing to steal one a live daemon holds.
fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another xdpvsd is already listening on {}", path.display());
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(e).context("removing a stale socket");
        }
        _ => {}
    }
    // SAFETY: umask only changes the mode of files created meanwhile.
    let old = unsafe { libc::umask(0o077) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener.with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Binds the metrics endpoint, which must be a loopback address.
async fn bind_metrics(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        bail!("metrics address {addr} is not a loopback address");
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))
}

/// Answers one HTTP request with the exposition, whatever the path, from a task of its own:
/// a client that says nothing holds up no other.
async fn serve_metrics(requests: Requests, mut stream: TcpStream) -> Result<()> {
    let mut request = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await;
    let Some(Response {
        result: Ok(Reply::Listing(listing)),
        ..
    }) = requests.ask(Command::List).await
    else {
        bail!("the daemon gave no listing");
    };
    let body = metrics::exposition(&listing);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM. The program stays attached and the maps pinned
/// (forwarding goes on without a daemon); the next daemon adopts them. The socket is removed.
pub async fn run(opts: Options) -> Result<()> {
    if !iface::is_root() {
        bail!("Permission denied (you must be root)");
    }
    iface::index(&opts.interface)?;
    let listener = bind_socket(&opts.socket)?;
    let result = start(&opts, listener).await;
    let _ = fs::remove_file(&opts.socket);
    result
}

async fn start(opts: &Options, listener: UnixListener) -> Result<()> {
    let metrics = match opts.metrics {
        Some(addr) => Some(bind_metrics(addr).await?),
        None => None,
    };
    let lasting = pins_last(opts)?;
    // Only state that goes with maps still pinned is adopted.
    let pinned = opts.pin_dir.join(lb_common::map_names::SERVICES).exists();
    let saved = pinned.then(|| SavedState::load(&opts.state_file)).flatten();
    let dataplane = DataPlane::load(Some(&opts.pin_dir), opts.max_flows)?;
    let mut daemon = Daemon::new(dataplane, opts);
    let attached = daemon.install(opts, saved).and_then(|()| {
        daemon
            .dataplane_mut()
            .attach(&opts.interface, opts.allow_generic)
    });
    let mode = match attached {
        Ok(m) => m,
        Err(e) if pinned => return Err(e),
        Err(e) => {
            // Nothing stays attached, and the half-written maps are not left pinned.
            daemon.into_dataplane().unpin();
            let _ = fs::remove_file(&opts.state_file);
            return Err(e);
        }
    };
    daemon.save();
    log::info!(
        "attached to {} ({mode:?} XDP); control socket {}",
        opts.interface,
        opts.socket.display()
    );
    let mut ha = Ha::start(&opts.ha)?;
    let served = serve(&mut daemon, &mut ha, listener, metrics).await;
    daemon.stop();
    // keepalived hands the VIP to the peer; the program goes on forwarding meanwhile.
    ha.stop();
    served?;
    daemon.save();
    if lasting {
        log::info!(
            "stopping; the XDP program stays attached to {} (`xdpvsd --unload` removes it)",
            opts.interface
        );
    } else {
        log::warn!(
            "stopping; the pins in {} end with this mount namespace: the XDP program is \
             detached from {} and its flows are lost",
            opts.pin_dir.display(),
            opts.interface
        );
    }
    Ok(())
}

/// Whether the pins will outlive this daemon; refuses to go on with pins that will not unless
/// `--transient-pins` allows it.
fn pins_last(opts: &Options) -> Result<bool> {
    iface::ensure_bpffs(&opts.pin_dir)?;
    match iface::outlives_mount_namespace(&opts.pin_dir) {
        Ok(true) => return Ok(true),
        Ok(false) => {}
        Err(e) => {
            log::warn!("cannot tell whether the pins outlive this mount namespace: {e:#}");
            return Ok(true);
        }
    }
    let why = format!(
        "the BPF filesystem holding {} is private to this mount namespace (as under \
         `ip netns exec`): the pins end with it, and with them the XDP program and its flows",
        opts.pin_dir.display()
    );
    if !opts.transient_pins {
        bail!(
            "{why}. Run xdpvsd with `nsenter --net=/run/netns/NAME` or on a bind-mounted host \
             /sys/fs/bpf (see the README), or pass --transient-pins to accept it"
        );
    }
    log::warn!("{why}; a restarted daemon starts afresh, and `--unload` will find nothing");
    Ok(false)
}

async fn serve(
    daemon: &mut Daemon,
    ha: &mut Ha,
    listener: UnixListener,
    metrics: Option<TcpListener>,
) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(TICK);
    let mut reports = daemon
        .take_health_reports()
        .context("the health reports are read once")?;
    let (requests, mut commands) = control_server::spawn(listener);
    let scrape = async |m: &Option<TcpListener>| match m {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    };
    loop {
        ha.check_health(|| ha::serving(daemon.installed_specs()));
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => match daemon.reload() {
                Ok(()) => {
                    daemon.save();
                    log::info!("configuration reloaded");
                }
                Err(e) => log::error!("reload failed: {e:#}"),
            },
            Some(report) = reports.recv() => {
                if let Err(e) = daemon.health_report(report) {
                    log::error!("applying a health change failed: {e:#}");
                }
            }
            _ = ticker.tick() => {
                if let Err(e) = daemon.tick() {
                    log::error!("periodic work failed: {e:#}");
                }
            }
            Some(request) = commands.recv() => request.answer_with(|c| {
                let mut response = daemon.handle(c);
                if let Ok(Reply::Listing(l)) = &mut response.result {
                    l.ha = ha.status();
                }
                response
            }),
            accepted = scrape(&metrics) => match accepted {
                Ok((stream, _)) => {
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_metrics(requests, stream).await {
                            log::warn!("metrics request failed: {e:#}");
                        }
                    });
                }
                Err(e) => log::warn!("accepting a metrics connection: {e}"),
            },
            update = ha.next() => ha.apply(update),
        }
    }
}

/// `xdpvsd --unload`: detaches the program a stopped daemon left attached and removes its pins
/// and saved state. Refused while a daemon is running on `socket`.
pub fn unload(opts: &Options) -> Result<()> {
    if !iface::is_root() {
        bail!("Permission denied (you must be root)");
    }
    if std::os::unix::net::UnixStream::connect(&opts.socket).is_ok() {
        bail!(
            "xdpvsd is running on {}; stop it first",
            opts.socket.display()
        );
    }
    let found = dataplane::remove_pins(&opts.pin_dir);
    let _ = fs::remove_file(&opts.state_file);
    if found {
        log::info!("unloaded: pins in {} removed", opts.pin_dir.display());
    } else {
        log::info!("nothing pinned in {}", opts.pin_dir.display());
    }
    Ok(())
}
