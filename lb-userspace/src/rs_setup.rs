//! `xdpvsadm rs-setup`: what a direct-routing real server needs: the VIP on `lo`, and no
//! neighbour answers or announcements for it on the wire. For IPv4 that takes sysctls
//! (arp_ignore=1, arp_announce=2); for IPv6 the VIP as a /128 on `lo` without duplicate
//! address detection is enough, as Linux answers a neighbour solicitation only for addresses
//! of the interface it arrives on.

use std::{fs, net::IpAddr, process::Command};

use anyhow::{Context, Result, bail};

/// The sysctls an IPv4 real server needs, as (key, value).
pub const SYSCTLS: [(&str, &str); 4] = [
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.lo.arp_ignore", "1"),
    ("net.ipv4.conf.lo.arp_announce", "2"),
];

/// The `ip` arguments that put `vip` on `lo`.
fn vip_on_lo(vip: IpAddr) -> Vec<String> {
    match vip {
        IpAddr::V4(v4) => ["addr", "replace", &format!("{v4}/32"), "dev", "lo"]
            .map(str::to_owned)
            .to_vec(),
        IpAddr::V6(v6) => [
            "-6",
            "addr",
            "replace",
            &format!("{v6}/128"),
            "dev",
            "lo",
            "nodad",
        ]
        .map(str::to_owned)
        .to_vec(),
    }
}

/// The sysctls `vip`'s family needs.
fn sysctls(vip: IpAddr) -> &'static [(&'static str, &'static str)] {
    if vip.is_ipv4() { &SYSCTLS } else { &[] }
}

/// The shell commands that set a real server up for `vip`.
pub fn script(vip: IpAddr) -> String {
    let mut s = format!("ip {}\n", vip_on_lo(vip).join(" "));
    for (key, value) in sysctls(vip) {
        s += &format!("sysctl -w {key}={value}\n");
    }
    s
}

/// Carries out [`script`] on this machine (in the current network namespace).
pub fn apply(vip: IpAddr) -> Result<()> {
    let args = vip_on_lo(vip);
    let out = Command::new("ip")
        .args(&args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for (key, value) in sysctls(vip) {
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
            script("10.0.0.100".parse().unwrap()),
            "ip addr replace 10.0.0.100/32 dev lo\n\
sysctl -w net.ipv4.conf.all.arp_ignore=1\n\
sysctl -w net.ipv4.conf.all.arp_announce=2\n\
sysctl -w net.ipv4.conf.lo.arp_ignore=1\n\
sysctl -w net.ipv4.conf.lo.arp_announce=2\n"
        );
        assert_eq!(
            script("2001:db8::100".parse().unwrap()),
            "ip -6 addr replace 2001:db8::100/128 dev lo nodad\n"
        );
    }
}
