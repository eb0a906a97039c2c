//! Facts about network interfaces and the BPF filesystem, read in the caller's network namespace.

use std::{ffi::CString, fs, io, os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result, bail};

/// The interface's index, or an error naming it when it does not exist.
pub fn index(name: &str) -> Result<u32> {
    let c = CString::new(name).context("interface name contains a NUL byte")?;
    // SAFETY: a valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("interface {name} does not exist");
    }
    Ok(idx)
}

/// The interface's hardware address.
pub fn mac(name: &str) -> Result<[u8; 6]> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq whose name fits (checked).
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        let bytes = name.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            bail!("interface name {name} is too long");
        }
        for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err).with_context(|| format!("reading the MAC address of {name}"));
        }
        let sa = req.ifr_ifru.ifru_hwaddr.sa_data;
        Ok(std::array::from_fn(|i| sa[i] as u8))
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Makes sure `dir` exists on a BPF filesystem, mounting one at `/sys/fs/bpf` if needed.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root)? {
        fs::create_dir_all(root).ok();
        let (src, dst, ty) = (
            c"bpf",
            CString::new(root.as_os_str().as_encoded_bytes())?,
            c"bpf",
        );
        // SAFETY: valid C strings; no data argument.
        let rc =
            unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .context("mounting the BPF filesystem on /sys/fs/bpf");
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !is_bpffs(dir)? {
        bail!(
            "{} is not on a BPF filesystem (mount -t bpf bpf DIR)",
            dir.display()
        );
    }
    Ok(())
}

/// Whether the filesystem holding `dir` outlives this process's mount namespace: whether PID 1's
/// namespace (which outlives every other) mounts it too. It does not under `ip netns exec`,
/// which mounts a new /sys in a new mount namespace: a BPF filesystem mounted there, and the
/// pins in it, end with the last process of that namespace.
pub fn outlives_mount_namespace(dir: &Path) -> Result<bool> {
    let dev = fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .dev();
    let mountinfo = fs::read_to_string("/proc/1/mountinfo").context("reading PID 1's mounts")?;
    Ok(mounts_device(
        &mountinfo,
        libc::major(dev),
        libc::minor(dev),
    ))
}

/// Whether a `/proc/PID/mountinfo` text has a mount of the filesystem `major:minor` (the third
/// field of each line).
fn mounts_device(mountinfo: &str, major: u32, minor: u32) -> bool {
    let device = format!("{major}:{minor}");
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(2) == Some(device.as_str()))
}

fn is_bpffs(path: &Path) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a zeroed statfs filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(false);
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Whether the process runs with root's privileges.
pub fn is_root() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:29 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:12 - bpf bpf rw,mode=700
30 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
";

    #[test]
    fn a_filesystem_is_found_by_its_device_only() {
        assert!(mounts_device(MOUNTINFO, 0, 29));
        assert!(mounts_device(MOUNTINFO, 254, 1));
        assert!(!mounts_device(MOUNTINFO, 0, 2));
        assert!(!mounts_device(MOUNTINFO, 29, 0));
        assert!(!mounts_device("", 0, 29));
    }
}
