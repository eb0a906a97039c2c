//! `xdpvsadm rs-setup`: what a direct-routing real server needs: the VIP on `lo` and no ARP
//! answers or announcements for it (arp_ignore=1, arp_announce=2).

use std::{fs, net::Ipv4Addr, process::Command};

use anyhow::{Context, Result, bail};

/// The sysctls a real server needs, as (key, value).
pub const SYSCTLS: [(&str, &str); 4] = [
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.lo.arp_ignore", "1"),
    ("net.ipv4.conf.lo.arp_announce", "2"),
];

/// The shell commands that set a real server up for `vip`.
pub fn script(vip: Ipv4Addr) -> String {
    let mut s = format!("ip addr replace {vip}/32 dev lo\n");
    for (key, value) in SYSCTLS {
        s += &format!("sysctl -w {key}={value}\n");
    }
    s
}

/// Carries out [`script`] on this machine (in the current network namespace).
pub fn apply(vip: Ipv4Addr) -> Result<()> {
    let out = Command::new("ip")
        .args(["addr", "replace", &format!("{vip}/32"), "dev", "lo"])
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip addr replace {vip}/32 dev lo: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for (key, value) in SYSCTLS {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value).with_context(|| format!("setting {key}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_sets_the_vip_and_arp_behaviour() {
        assert_eq!(
            script(Ipv4Addr::new(10, 0, 0, 100)),
            "ip addr replace 10.0.0.100/32 dev lo\n\
sysctl -w net.ipv4.conf.all.arp_ignore=1\n\
sysctl -w net.ipv4.conf.all.arp_announce=2\n\
sysctl -w net.ipv4.conf.lo.arp_ignore=1\n\
sysctl -w net.ipv4.conf.lo.arp_announce=2\n"
        );
    }
}
