//! The reference VM: Debian 12's kernel (ip_vs and every scheduler as modules) booted under
//! qemu's software emulation with no network card. A busybox initramfs loads the modules,
//! mounts this machine's `/` read-only over 9p with a tmpfs on top and switches into it, so the
//! VM runs this machine's tools and the project's binaries at their own paths; a second,
//! writable 9p share brings the script in and the results out. `cargo xtask conformance` and
//! `cargo xtask bench` run in it. See `/work/shared/notes/ipvs-reference-vm.md` for why it is
//! built this way.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::root;

/// The package whose dependency names the current kernel image package.
const KERNEL_META_PACKAGE: &str = "linux-image-amd64";

/// Modules loaded at boot, each after its dependencies: the 9p root and its overlay, then
/// the topology's links and IPVS with every scheduler kernel 6.1 has.
const MODULES: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    "veth",
    "bridge",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_lblc",
    "ip_vs_lblcr",
    "ip_vs_dh",
    "ip_vs_sh",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_fo",
    "ip_vs_ovf",
    "ip_vs_mh",
];

/// The 9p tags of the host's root and of the results share.
const ROOT_TAG: &str = "hostroot";
const IO_TAG: &str = "xdpvsio";
/// Where the results share is mounted inside the VM.
pub const IO_MOUNT: &str = "/xdpvs-io";

/// The initramfs's `/init`: modules, the overlay root, the shares, then `run.sh` as the new
/// root's first process.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "/modules/$m" || echo "init: insmod $m failed"; done < /modules/order
opts=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /lower /rw /newroot
mount -t 9p -o "$opts,ro,cache=loose" @ROOT@ /lower
mount -t tmpfs tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot
mkdir -p /newroot@IO@
mount -t 9p -o "$opts" @IO@TAG /newroot@IO@
for d in dev proc sys; do mount --move "/$d" "/newroot/$d"; done
exec switch_root /newroot /bin/sh @IO@/run.sh
"#;

/// The reference kernel, unpacked and prepared in [`kernel_dir`].
pub struct Kernel {
    /// The uncompressed ELF kernel (booted through its PVH entry, faster than the bzImage).
    pub vmlinux: PathBuf,
    /// The busybox initramfs with the modules.
    pub initramfs: PathBuf,
}

/// `target/conformance`, where the reference kernel is downloaded and prepared (the
/// conformance run was its first user).
fn kernel_dir() -> PathBuf {
    root().join("target/conformance")
}

/// Downloads (once) the Debian kernel package, unpacks it, extracts `vmlinux` and builds the
/// initramfs.
pub fn kernel() -> Result<Kernel> {
    let dir = kernel_dir();
    let unpacked = dir.join("kernel");
    if !unpacked.join("boot").exists() {
        download_kernel(&dir, &unpacked)?;
    }
    let release = fs::read_dir(unpacked.join("lib/modules"))?
        .next()
        .context("no modules in the kernel package")??
        .file_name()
        .into_string()
        .map_err(|_| anyhow::anyhow!("kernel release is not UTF-8"))?;
    let vmlinux = dir.join("vmlinux");
    if !vmlinux.exists() {
        extract_vmlinux(&unpacked.join(format!("boot/vmlinuz-{release}")), &vmlinux)?;
    }
    let initramfs = dir.join("initramfs.cpio");
    build_initramfs(&unpacked, &release, &dir.join("initramfs"), &initramfs)?;
    Ok(Kernel { vmlinux, initramfs })
}

fn download_kernel(dir: &Path, unpacked: &Path) -> Result<()> {
    let depends = output(Command::new("apt-cache").args(["depends", KERNEL_META_PACKAGE]))?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .with_context(|| format!("{KERNEL_META_PACKAGE} names no kernel image"))?
        .to_owned();
    let debs = dir.join("deb");
    fs::create_dir_all(&debs)?;
    eprintln!("xtask: downloading {package} (the reference kernel, about 70 MB)");
    output(
        Command::new("apt-get")
            .args(["download", "-qq", &package])
            .current_dir(&debs),
    )?;
    let deb = fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let partial = dir.join("kernel.partial");
    let _ = fs::remove_dir_all(&partial);
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    fs::rename(&partial, unpacked)?;
    fs::remove_file(deb)?;
    Ok(())
}

/// Extracts the ELF kernel from a bzImage: the xz stream that starts at the first xz magic.
fn extract_vmlinux(bzimage: &Path, vmlinux: &Path) -> Result<()> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
    let image = fs::read(bzimage)?;
    let start = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .context("no xz stream in the kernel image")?;
    let mut xz = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running xz")?;
    let mut stdin = xz.stdin.take().context("xz stdin")?;
    let tail = image[start..].to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&tail));
    let out = xz.wait_with_output()?;
    // xz stops reading after the stream: the rest of the image is not wanted.
    let _ = writer.join();
    ensure!(
        out.stdout.starts_with(b"\x7fELF"),
        "the kernel image's xz stream is not an ELF vmlinux"
    );
    fs::write(vmlinux, out.stdout)?;
    Ok(())
}

/// Builds the initramfs in `staging`: busybox, `/init`, and [`MODULES`] with their
/// dependencies in load order.
fn build_initramfs(unpacked: &Path, release: &str, staging: &Path, cpio: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(staging);
    for d in ["bin", "modules", "proc", "sys", "dev"] {
        fs::create_dir_all(staging.join(d))?;
    }
    fs::copy("/bin/busybox", staging.join("bin/busybox"))?;
    let init = INIT
        .replace("@ROOT@", ROOT_TAG)
        .replace("@IO@TAG", IO_TAG)
        .replace("@IO@", IO_MOUNT);
    write_executable(&staging.join("init"), &init)?;
    output(Command::new("depmod").arg("-b").arg(unpacked).arg(release))?;
    let mut order = Vec::new();
    for module in MODULES {
        let deps = output(Command::new("modprobe").arg("-d").arg(unpacked).args([
            "-S",
            release,
            "--show-depends",
            module,
        ]))?;
        for path in deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("insmod "))
        {
            let path = Path::new(path.trim());
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("module path")?
                .to_owned();
            if !order.contains(&name) {
                fs::copy(path, staging.join("modules").join(&name))?;
                order.push(name);
            }
        }
    }
    fs::write(staging.join("modules/order"), order.join("\n") + "\n")?;
    let archive = fs::File::create(cpio)?;
    let status = Command::new("sh")
        .args(["-c", "find . | cpio --quiet -o -H newc"])
        .current_dir(staging)
        .stdout(archive)
        .status()?;
    ensure!(status.success(), "cpio failed");
    Ok(())
}

/// Boots the VM, which runs the shell commands `script` (with `io` as [`IO_MOUNT`]) and
/// powers off, its console going to `console`; waits until it has or `timeout` passes.
pub fn boot(
    kernel: &Kernel,
    io: &Path,
    script: &str,
    console: &Path,
    timeout: Duration,
) -> Result<()> {
    write_executable(
        &io.join("run.sh"),
        &format!("{PRELUDE}{script}\necho o > /proc/sysrq-trigger\n"),
    )?;
    let share = |path: &Path, tag: &str, readonly: bool| {
        format!(
            "local,path={},mount_tag={tag},security_model=none,multidevs=remap{}",
            path.display(),
            if readonly { ",readonly=on" } else { "" }
        )
    };
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
        .args([
            "-m",
            "2048",
            "-nodefaults",
            "-nic",
            "none",
            "-display",
            "none",
        ])
        .args(["-no-reboot", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel.vmlinux)
        .arg("-initrd")
        .arg(&kernel.initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-virtfs")
        .arg(share(Path::new("/"), ROOT_TAG, true))
        .arg("-virtfs")
        .arg(share(io, IO_TAG, false))
        .stdin(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = qemu.try_wait()? {
            ensure!(status.success(), "qemu exited with {status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            qemu.kill()?;
            qemu.wait()?;
            bail!("the VM did not power off within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The start of `run.sh`: a fresh `/run` (the host's is not the VM's) with the temporary
/// directory in it, and a bpffs for xdpvsd's pins. `/tmp` itself stays the host's, through the
/// overlay: the checkout, and so the binaries the VM runs, may live there.
const PRELUDE: &str = "#!/bin/sh
mount -t tmpfs tmpfs /run
mkdir /run/tmp
export TMPDIR=/run/tmp
mount -t bpf bpf /sys/fs/bpf
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
ip link set lo up
";

fn write_executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs `cmd`, failing with its stderr; its stdout.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}
