// SPDX-License-Identifier: GPL-2.0

//! The host's programs, as the guest runs them: the test guest mounts the host's root read-only
//! over virtio-9p at `/host`, and its `/usr` is a link into it (scripts/qemu), so util-linux,
//! e2fsprogs, xfsprogs, dmsetup and fio run at the host's versions. They are named here by their
//! full paths: busybox's namesakes (`losetup`, `mke2fs`, `mount`) come first on the guest's
//! `PATH`, and a test that means the host's `losetup --direct-io` must never get busybox's.

use anyhow::{bail, ensure, Context, Result};
use std::{
    fs,
    process::{Command, ExitStatus},
};

/// util-linux.
pub const LOSETUP: &str = "/usr/sbin/losetup";
/// dmsetup (libdevmapper).
pub const DMSETUP: &str = "/usr/sbin/dmsetup";
/// fio.
pub const FIO: &str = "/usr/bin/fio";
/// e2fsprogs.
pub const MKFS_EXT4: &str = "/usr/sbin/mkfs.ext4";
/// e2fsprogs.
pub const E2FSCK: &str = "/usr/sbin/e2fsck";
/// xfsprogs.
pub const MKFS_XFS: &str = "/usr/sbin/mkfs.xfs";
/// xfsprogs.
pub const XFS_REPAIR: &str = "/usr/sbin/xfs_repair";

/// Runs `prog` with `args` and returns its exit status and what it printed (standard output,
/// then standard error); fails only if it cannot be started (missing: the host's root is not
/// mounted, or setup did not install it).
pub fn output(prog: &str, args: &[&str]) -> Result<(ExitStatus, String)> {
    let out = Command::new(prog)
        .args(args)
        // libdevmapper: no udev in the guest, so dmsetup makes and removes /dev/mapper/NAME
        // itself instead of waiting for udev to.
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .with_context(|| format!("run {prog} (is the host's root mounted at /host?)"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status, text))
}

/// [`output`], which must exit 0: fails with the exit status and the output otherwise, or if
/// `prog` is missing: never a skip.
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let (status, text) = output(prog, args)?;
    ensure!(status.success(), "{prog} {args:?}: {status}: {text}");
    Ok(text)
}

/// A kernel loop device made by util-linux's `losetup --direct-io=on`, detached on drop.
///
/// # Invariants
///
/// `path` is a loop device this value attached, with direct I/O on (checked in sysfs when it was
/// made).
pub struct KernelLoop {
    path: String,
}

impl KernelLoop {
    /// `losetup --find --show --direct-io=on --sector-size SECTOR [--offset O --sizelimit S]
    /// BACKING`; fails unless the loop driver really turned direct I/O on
    /// (`/sys/block/loopN/loop/dio`): it silently keeps buffered I/O where the backing cannot do
    /// direct I/O at that sector size.
    pub fn new(backing: &str, sector: u32, offset: u64, sizelimit: u64) -> Result<Self> {
        let (sector, offset, sizelimit) = (
            sector.to_string(),
            offset.to_string(),
            sizelimit.to_string(),
        );
        let mut args = vec![
            "--find",
            "--show",
            "--direct-io=on",
            "--sector-size",
            &sector,
        ];
        if offset != "0" {
            args.extend(["--offset", &offset]);
        }
        if sizelimit != "0" {
            args.extend(["--sizelimit", &sizelimit]);
        }
        args.push(backing);
        let path = run(LOSETUP, &args)?.trim().to_string();
        ensure!(
            path.starts_with("/dev/loop"),
            "losetup printed {path:?}, not a loop device"
        );
        // INVARIANT: attached above; direct I/O is checked next, and a failed check detaches it.
        let lo = Self { path };
        let dio = fs::read_to_string(format!("/sys/block/{}/loop/dio", lo.name()))
            .context("read loop/dio")?;
        if dio.trim() != "1" {
            bail!("{}: losetup --direct-io=on left direct I/O off", lo.path);
        }
        Ok(lo)
    }

    /// The device node, `/dev/loopN`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `loopN`.
    pub fn name(&self) -> &str {
        self.path.trim_start_matches("/dev/")
    }
}

impl Drop for KernelLoop {
    fn drop(&mut self) {
        let _ = run(LOSETUP, &["--detach", &self.path]);
    }
}

/// A dm-linear device over the whole of a block device, made by `dmsetup create`, removed on
/// drop: the kernel's own remapper, pindio's stacked device's nearest peer.
///
/// # Invariants
///
/// `name` is a device-mapper device this value created.
pub struct DmLinear {
    name: String,
}

impl DmLinear {
    /// `dmsetup create NAME --table "0 SECTORS linear BACKING 0"`, `SECTORS` being the size of
    /// `backing` in 512-byte sectors.
    pub fn new(name: &str, backing: &str, bytes: u64) -> Result<Self> {
        let table = format!("0 {} linear {backing} 0", bytes >> 9);
        run(DMSETUP, &["create", name, "--table", &table])?;
        // INVARIANT: created above.
        Ok(Self {
            name: name.to_string(),
        })
    }

    /// `/dev/mapper/NAME`.
    pub fn path(&self) -> String {
        format!("/dev/mapper/{}", self.name)
    }
}

impl Drop for DmLinear {
    fn drop(&mut self) {
        let _ = run(DMSETUP, &["remove", &self.name]);
    }
}
