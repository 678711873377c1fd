// SPDX-License-Identifier: GPL-2.0

//! Real filesystems and their own checkers on the stacked device, with the host's tools
//! ([`pindio::host`]): ext4 and xfs made by e2fsprogs and xfsprogs, a workload by fio with
//! verification and a tree copied in, then `e2fsck -fn` / `xfs_repair -n`, which must find the
//! filesystem clean; and the stacked device on a kernel loop device made by util-linux's
//! `losetup --direct-io=on`; and fio driving `/dev/pindio` itself through its pindio engine.

use super::dio_tests::{dev_size, open, pread_direct, pwrite_direct};
use super::loop_tests::{drop_caches, Stacked};
use super::{device, expect_errno, pin_tests::pattern};
use anyhow::{ensure, Context, Result};
use pindio::host::{self, run, KernelLoop};
use std::{fs, os::unix::fs::FileExt};

const MIB: u64 = 1 << 20;

/// Memory-backed null_blk of 512 MiB (mkfs.xfs wants at least 300 MiB).
const NULLB_FS: &str = "/dev/nullb8";
/// Memory-backed null_blk, 256 MiB.
const NULLB: &str = "/dev/nullb0";
/// Memory-backed null_blk with 16 KiB logical blocks.
const NULLB_16K: &str = "/dev/nullb3";
/// A tree on the host (linux-libc-dev, which setup's libc6-dev brings): about 90 files in
/// two directories. (All of `/usr/include/linux`, 760 files, read over 9p and compared twice,
/// took a minute of each case under TCG.)
const TREE: &str = "/usr/include/linux/netfilter";

#[derive(Clone, Copy)]
enum Fs {
    Ext4,
    Xfs,
}

impl Fs {
    fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
        }
    }

    fn mkfs(self, dev: &str) -> Result<String> {
        match self {
            // Inode tables and the journal written at mkfs, not by ext4lazyinit behind the
            // workload's back.
            Fs::Ext4 => run(
                host::MKFS_EXT4,
                &[
                    "-q",
                    "-F",
                    "-E",
                    "lazy_itable_init=0,lazy_journal_init=0",
                    dev,
                ],
            ),
            Fs::Xfs => run(host::MKFS_XFS, &["-q", "-f", dev]),
        }
    }

    /// The filesystem's own checker, read-only: exit status 0 is a clean filesystem (e2fsck's
    /// 4 and xfs_repair's 1 are errors left uncorrected), which [`run`] requires.
    fn check(self, dev: &str) -> Result<String> {
        match self {
            Fs::Ext4 => run(host::E2FSCK, &["-f", "-n", dev]),
            Fs::Xfs => run(host::XFS_REPAIR, &["-n", dev]),
        }
    }
}

/// fio's workload on the filesystem at `dir`: files written by direct I/O at random offsets
/// (the filesystem pins the pages and sends them down through the stacked device) and by
/// buffered sequential writes (written back from the page cache), every block with a crc32c
/// header, read back and verified; with `verify_only`, the files of an earlier run are only
/// read and verified.
fn fio_workload(dir: &str, verify_only: bool) -> Result<String> {
    let mut args = vec![
        "--directory",
        dir,
        "--size=4M",
        "--nrfiles=2",
        "--ioengine=psync",
        "--verify=crc32c",
        "--randrepeat=1",
        "--name=dio",
        "--direct=1",
        "--rw=randwrite",
        "--bs=16k",
        "--name=buffered",
        "--direct=0",
        "--rw=write",
        "--bs=256k",
        "--end_fsync=1",
    ];
    if verify_only {
        args.insert(0, "--verify_only");
    }
    run(host::FIO, &args)
}

/// The sizes fio's four files must have: a run that wrote nothing would also verify nothing.
fn fio_files_complete(dir: &str) -> Result<()> {
    for name in ["dio.0.0", "dio.0.1", "buffered.0.0", "buffered.0.1"] {
        let len = fs::metadata(format!("{dir}/{name}"))
            .with_context(|| format!("fio's file {name}"))?
            .len();
        ensure!(
            len == 2 * MIB,
            "fio's file {name} has {len} bytes, not 2 MiB"
        );
    }
    Ok(())
}

/// Runs `f`, then prints how long `step` took (a KTAP diagnostic line).
fn timed<T>(step: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = std::time::Instant::now();
    let res = f();
    println!("#   {step}: {:.1} s", start.elapsed().as_secs_f64());
    res
}

/// `fs` made on a stacked device over the whole of nullb8, mounted, fio's verified workload and
/// the host's tree copied in and compared, unmounted; its checker must find it clean; mounted
/// again, everything is read back and verified, and the checker runs once more after that.
fn filesystem_checked(fs_kind: Fs) -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB_FS, 0, 0, 0)?;
    let path = s.path();
    let mnt = format!("/tmp/pindio-{}", fs_kind.name());
    fs::create_dir_all(&mnt)?;
    let tree = format!("{mnt}/tree");
    timed("mkfs", || fs_kind.mkfs(&path).context("mkfs"))?;
    run("mount", &["-t", fs_kind.name(), &path, &mnt])?;
    let written = (|| -> Result<()> {
        timed("fio write and verify", || {
            fio_workload(&mnt, false).context("fio write and verify")
        })?;
        fio_files_complete(&mnt)?;
        timed("tree copied", || run("cp", &["-a", TREE, &tree]))?;
        timed("tree compared", || {
            run("diff", &["-r", TREE, &tree]).context("the copied tree differs")
        })?;
        timed("sync", || run("sync", &[]))?;
        Ok(())
    })();
    timed("umount", || run("umount", &[&mnt]))?;
    written?;
    timed("check", || {
        fs_kind
            .check(&path)
            .context("the checker found the filesystem not clean after the workload")
    })?;
    // Nothing of it left in the device's page cache: what is read next comes from the backing
    // device through the stacked one.
    drop_caches(&path)?;
    run("mount", &["-t", fs_kind.name(), &path, &mnt])?;
    let read = (|| -> Result<()> {
        fio_files_complete(&mnt)?;
        timed("fio verify", || {
            fio_workload(&mnt, true).context("fio verify after remount")
        })?;
        timed("tree compared", || {
            run("diff", &["-r", TREE, &tree]).context("the tree differs after remount")
        })?;
        Ok(())
    })();
    run("umount", &[&mnt])?;
    read?;
    timed("check", || {
        fs_kind
            .check(&path)
            .context("the checker found the filesystem not clean after the remount")
    })?;
    s.del()
}

/// ext4 (e2fsprogs) on the stacked device, clean by `e2fsck -fn` after fio and a tree copy.
pub fn ext4_checked() -> Result<()> {
    filesystem_checked(Fs::Ext4)
}

/// xfs (xfsprogs) on the stacked device, clean by `xfs_repair -n` after fio and a tree copy.
pub fn xfs_checked() -> Result<()> {
    filesystem_checked(Fs::Xfs)
}

/// The stacked device on a kernel loop device (`losetup --direct-io=on --sector-size 4096
/// --offset 1M --sizelimit 64M` over nullb0): it takes the loop device's size and 4 KiB blocks,
/// refuses 512-byte I/O as the loop device does, and its data lands on nullb0 at the loop
/// device's offset.
pub fn on_kernel_loop() -> Result<()> {
    let lo = KernelLoop::new(NULLB, 4096, MIB, 64 * MIB)?;
    let dev = device()?;
    let s = Stacked::add(&dev, lo.path(), 0, 0, 0)?;
    let path = s.path();
    let name = path.trim_start_matches("/dev/");
    let lbs = fs::read_to_string(format!("/sys/block/{name}/queue/logical_block_size"))?;
    ensure!(lbs.trim() == "4096", "logical block size {}", lbs.trim());
    ensure!(
        dev_size(&open(&path, false, false)?)? == 64 * MIB,
        "not the loop device's size"
    );
    let data = pattern(0x4c, 256 << 10);
    pwrite_direct(&path, 8192, &data)?;
    ensure!(
        pread_direct(NULLB, MIB + 8192, data.len())? == data,
        "not on nullb0 at the loop device's offset"
    );
    ensure!(pread_direct(&path, 8192, data.len())? == data);
    let f = open(&path, true, true)?;
    let mut m = pindio::Buf::with_flags(4096, 0)?;
    expect_errno(
        f.write_at(&m.bytes()[..512], 0),
        libc::EINVAL,
        "512-byte write to a 4 KiB-block device",
    )?;
    drop(f);
    s.del()
}

/// fio through `/dev/pindio`'s own direct I/O (fio's pindio engine, tools/fio-engine/pindio.c):
/// random writes with crc32c headers, read back and verified, one at a time (PINDIO_IOC_DIO)
/// and 32 at a time (PINDIO_IOC_DIO_BATCH). Each page is pinned once for its write and once for
/// its read, so `nr_foll_pin_acquired` moves by at least that much: the I/O went through pindio,
/// not a fallback path. At depth 32, fio's own count of I/Os per submission (its JSON's
/// `iodepth_submit`) must put nine in ten submissions at 17 to 32 I/Os: the batches are real,
/// not one I/O a call. A block size below the device's logical block size fails with fio
/// reporting EINVAL, the ioctl's answer.
pub fn fio_engine() -> Result<()> {
    const ENGINE: &str = "--ioengine=external:/lib/pindio-fio.so";
    let _dev = device()?;
    let pins = || -> Result<u64> { Ok(pindio::foll_pin_counts()?.0) };
    for depth in ["--iodepth=1", "--iodepth=32"] {
        let before = pins()?;
        let out = run(
            host::FIO,
            &[
                "--name=pindio",
                ENGINE,
                depth,
                "--filename",
                NULLB,
                "--direct=1",
                "--rw=randwrite",
                "--bs=4k",
                "--size=8M",
                "--verify=crc32c",
                "--randrepeat=1",
                "--output-format=json",
            ],
        )?;
        let moved = pins()? - before;
        ensure!(
            moved >= 2 * 2048,
            "{depth}: {moved} pins taken for 8 MiB written and read back in 4 KiB: {out}"
        );
        if depth == "--iodepth=32" {
            // fio's JSON, on its standard output: what follows (its standard error) is not.
            let json: serde_json::Value = serde_json::Deserializer::from_str(&out)
                .into_iter()
                .next()
                .context("no JSON from fio")?
                .context("fio's JSON output")?;
            let full = json["jobs"][0]["iodepth_submit"]["32"].as_f64();
            ensure!(
                full.is_some_and(|p| p >= 90.0),
                "{depth}: {full:?} % of the submissions were of 17 to 32 I/Os: {}",
                json["jobs"][0]["iodepth_submit"]
            );
        }
    }
    let (status, text) = host::output(
        host::FIO,
        &[
            "--name=misaligned",
            ENGINE,
            "--filename",
            NULLB_16K,
            "--direct=1",
            "--rw=read",
            "--bs=4k",
            "--size=64k",
        ],
    )?;
    ensure!(
        !status.success() && text.contains("Invalid argument"),
        "4 KiB reads of a 16 KiB-block device through the engine: {status}: {text}"
    );
    Ok(())
}
