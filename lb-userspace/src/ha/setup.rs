//! `xdpvsadm ha-setup`: the keepalived configuration of one director of a pair. keepalived runs
//! VRRP only (`keepalived -P`) and moves the VIP; xdpvsd follows its state through
//! `notify_fifo` and tells it about its own health through a `track_file` of weight 0.

use std::{
    fmt::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail, ensure};

/// Where the shipped snippets put the FIFO xdpvsd follows.
pub const DEFAULT_NOTIFY_FIFO: &str = "/run/xdpvs/keepalived.fifo";
/// Where the shipped snippets put the file xdpvsd writes its health to.
pub const DEFAULT_TRACK_FILE: &str = "/run/xdpvs/keepalived.track";

/// One director's part of a VRRP pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// The VRRP instance's name.
    pub instance: String,
    /// The interface VRRP runs on and the VIP is added to (xdpvsd's `--interface`).
    pub interface: String,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The VIP's prefix length on the interface.
    pub prefix: u8,
    /// `virtual_router_id`, the same on both directors.
    pub router_id: u8,
    /// This director's priority: the higher one holds the VIP while it is healthy.
    pub priority: u8,
    /// Seconds between adverts. Below 1 s, or not whole seconds, needs VRRP version 3.
    pub advert_int: f64,
    /// keepalived's `notify_fifo`, xdpvsd's `--notify-fifo`.
    pub notify_fifo: PathBuf,
    /// keepalived's `track_file`, xdpvsd's `--track-file`.
    pub track_file: PathBuf,
}

impl Setup {
    /// A setup with the shipped paths, instance `VI_1` and adverts every second.
    pub fn new(interface: &str, vip: Ipv4Addr, prefix: u8, router_id: u8, priority: u8) -> Self {
        Self {
            instance: "VI_1".into(),
            interface: interface.into(),
            vip,
            prefix,
            router_id,
            priority,
            advert_int: 1.0,
            notify_fifo: DEFAULT_NOTIFY_FIFO.into(),
            track_file: DEFAULT_TRACK_FILE.into(),
        }
    }

    /// `ha-setup`'s arguments: `--interface IF --vip VIP[/LEN] --router-id N --priority P`,
    /// optionally `--advert-int S`, `--instance NAME`, `--notify-fifo PATH`, `--track-file PATH`.
    pub fn from_args(args: &[String]) -> Result<Self> {
        let (mut interface, mut vip, mut router_id, mut priority) = (None, None, None, None);
        let mut s = Self::new("", Ipv4Addr::UNSPECIFIED, 32, 0, 0);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let number = |what: &str| -> Result<u8> {
                value
                    .parse()
                    .with_context(|| format!("{what} {value:?} is not a number 0..255"))
            };
            match flag.as_str() {
                "--interface" => interface = Some(value.clone()),
                "--vip" => {
                    let (addr, prefix) = value.split_once('/').unwrap_or((value, "32"));
                    vip = Some(addr.parse().with_context(|| format!("VIP {addr:?}"))?);
                    s.prefix = prefix
                        .parse()
                        .with_context(|| format!("prefix length {prefix:?}"))?;
                }
                "--router-id" => router_id = Some(number("router id")?),
                "--priority" => priority = Some(number("priority")?),
                "--advert-int" => {
                    s.advert_int = value
                        .parse()
                        .with_context(|| format!("advert_int {value:?}"))?
                }
                "--instance" => s.instance = value.clone(),
                "--notify-fifo" => s.notify_fifo = value.into(),
                "--track-file" => s.track_file = value.into(),
                other => bail!("unexpected argument {other}"),
            }
        }
        let missing = |what| format!("{what} is required");
        s.interface = interface.with_context(|| missing("--interface IF"))?;
        s.vip = vip.with_context(|| missing("--vip VIP[/LEN]"))?;
        s.router_id = router_id.with_context(|| missing("--router-id N"))?;
        s.priority = priority.with_context(|| missing("--priority P"))?;
        Ok(s)
    }

    /// Refuses what keepalived would refuse, or would read as something else.
    fn check(&self) -> Result<()> {
        let word = |what: &str, s: &str| {
            ensure!(
                !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "{}\"!#".contains(c)),
                "{what} {s:?} is not a single keepalived word"
            );
            Ok(())
        };
        word("instance", &self.instance)?;
        word("interface", &self.interface)?;
        for (what, p) in [
            ("notify_fifo", &self.notify_fifo),
            ("track_file", &self.track_file),
        ] {
            word(what, &p.to_string_lossy())?;
            ensure!(
                p.is_absolute(),
                "{what} {} is not an absolute path",
                p.display()
            );
        }
        ensure!(
            self.prefix <= 32,
            "prefix length {} is above 32",
            self.prefix
        );
        ensure!(self.router_id >= 1, "virtual_router_id must be 1..255");
        // 255 is the address owner's priority: keepalived would not let it fail over.
        ensure!(
            (1..=254).contains(&self.priority),
            "priority must be 1..254"
        );
        // VRRPv3 counts centiseconds in 12 bits; VRRPv2 whole seconds in 8.
        let v3 = (0.01..=40.95).contains(&self.advert_int);
        let v2 = self.whole_seconds() && self.advert_int <= 255.0;
        ensure!(
            v3 || v2,
            "advert_int must be 0.01..40.95 s, or whole seconds up to 255"
        );
        Ok(())
    }

    fn whole_seconds(&self) -> bool {
        self.advert_int >= 1.0 && self.advert_int.fract() == 0.0
    }

    /// The keepalived.conf text for this director.
    pub fn keepalived_conf(&self) -> Result<String> {
        self.check()?;
        let Self {
            instance,
            interface,
            vip,
            prefix,
            router_id,
            priority,
            advert_int,
            ..
        } = self;
        let (fifo, track) = (path(&self.notify_fifo), path(&self.track_file));
        // VRRPv2 carries whole seconds only.
        let version = if self.whole_seconds() {
            ""
        } else {
            "    version 3\n"
        };
        let mut s = String::new();
        let _ = write!(
            s,
            "\
# keepalived.conf for one xdpvs director (`xdpvsadm ha-setup`). Run it for VRRP only:
#   keepalived -P -f THIS_FILE
# with xdpvsd --interface {interface} --notify-fifo {fifo} --track-file {track}
# on both directors, the same services on both. The peer has the same file with a lower priority.

global_defs {{
    # xdpvsd follows this director's VRRP state here (one line per change, in order).
    notify_fifo {fifo}
}}

# xdpvsd writes 0 while every service has a usable real server, 1 when one has none or the
# daemon stops. Weight 0 turns a non-zero value into FAULT: the peer takes the VIP at once.
# Until xdpvsd has written, the director is not eligible (init_file 1).
track_file xdpvsd {{
    file {track}
    weight 0
    init_file 1
}}

vrrp_instance {instance} {{
    # The priorities decide; both directors start as BACKUP.
    state BACKUP
    interface {interface}
    virtual_router_id {router_id}
    priority {priority}
{version}    advert_int {advert_int}
    virtual_ipaddress {{
        {vip}/{prefix} dev {interface}
    }}
    track_file {{
        xdpvsd
    }}
}}
"
        );
        Ok(s)
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dist/keepalived.conf` is what `xdpvsadm ha-setup --interface eth0 --vip 192.0.2.100
    /// --router-id 51 --priority 100` prints.
    #[test]
    fn dist_snippet_is_ha_setup_output() {
        let conf = Setup::new("eth0", Ipv4Addr::new(192, 0, 2, 100), 32, 51, 100)
            .keepalived_conf()
            .unwrap();
        assert_eq!(conf, include_str!("../../../dist/keepalived.conf"));
    }

    #[test]
    fn reads_its_arguments() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let s = Setup::from_args(&args(
            "--interface eth1 --vip 10.0.0.1/24 --router-id 7 --priority 90 --advert-int 0.5",
        ))
        .unwrap();
        let mut want = Setup::new("eth1", Ipv4Addr::new(10, 0, 0, 1), 24, 7, 90);
        want.advert_int = 0.5;
        assert_eq!(s, want);
        for bad in [
            "--interface eth1 --vip 10.0.0.1 --router-id 7",
            "--interface eth1 --vip 10.0.0.1 --router-id 7 --priority",
            "--interface eth1 --vip 10.0.0.1 --router-id 300 --priority 9",
            "--interface eth1 --vip 10.0.0 --router-id 7 --priority 9",
            "--interface eth1 --vip 10.0.0.1 --router-id 7 --priority 9 --preempt no",
        ] {
            assert!(Setup::from_args(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn fractional_adverts_use_vrrp_version_3() {
        let mut s = Setup::new("eth0", Ipv4Addr::new(10, 0, 0, 1), 24, 7, 90);
        s.advert_int = 0.2;
        let conf = s.keepalived_conf().unwrap();
        assert!(
            conf.contains("    version 3\n    advert_int 0.2\n"),
            "{conf}"
        );
        assert!(conf.contains("        10.0.0.1/24 dev eth0\n"), "{conf}");
        s.advert_int = 2.0;
        assert!(!s.keepalived_conf().unwrap().contains("version"));
    }

    #[test]
    fn refuses_what_keepalived_would_misread() {
        let good = Setup::new("eth0", Ipv4Addr::new(10, 0, 0, 1), 32, 7, 90);
        let cases: [fn(&mut Setup); 7] = [
            |s| s.priority = 255,
            |s| s.priority = 0,
            |s| s.router_id = 0,
            |s| s.prefix = 33,
            |s| s.advert_int = 41.5,
            |s| s.interface = "eth0 }".into(),
            |s| s.track_file = "relative/track".into(),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut s = good.clone();
            change(&mut s);
            assert!(s.keepalived_conf().is_err(), "case {i}: {s:?}");
        }
        assert!(good.keepalived_conf().is_ok());
    }
}
