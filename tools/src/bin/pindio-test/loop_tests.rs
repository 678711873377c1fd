// SPDX-License-Identifier: GPL-2.0

//! Tests of the stacked block devices (/dev/pindio-loopN): data at the mapped offset of the
//! backing device, a filesystem on them, flush and FUA passed on, errors of the backing device,
//! removal while open and under load, and the ioctls' refusals. Forwarding lists the requests'
//! pages: the FOLL_PIN counters must not move for I/O that pins nothing above the device.

use super::dio_tests::{dev_size, open, pread_direct, pwrite_direct};
use super::{device, expect_errno, pin_tests::pattern};
use anyhow::{bail, ensure, Context, Result};
use pindio::{dio_bench::Rng, host::run, uapi, Device, ExtStruct};
use std::{
    fs::{self, File},
    io::{Read, Write},
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::{
        atomic::{AtomicBool, Ordering},
        Barrier,
    },
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Memory-backed null_blk, 256 MiB.
const NULLB: &str = "/dev/nullb0";
/// Memory-backed null_blk whose sectors 2048-2055 fail.
const NULLB_BAD: &str = "/dev/nullb2";
/// Memory-backed null_blk with 16 KiB logical blocks.
const NULLB_16K: &str = "/dev/nullb3";
/// Memory-backed null_blk with a volatile write cache (flush and FUA reach it).
const NULLB_CACHE: &str = "/dev/nullb7";
/// virtio-blk, read-only.
const VDB: &str = "/dev/vdb";

/// A stacked device made by a test, removed when the test is done with it (also when it fails).
pub(super) struct Stacked<'d> {
    dev: &'d Device,
    index: u32,
}

impl<'d> Stacked<'d> {
    pub(super) fn add(
        dev: &'d Device,
        backing: &str,
        offset: u64,
        sizelimit: u64,
        flags: u32,
    ) -> Result<Self> {
        let f = open(backing, flags & uapi::PINDIO_LOOP_READ_ONLY == 0, false)?;
        let index = dev
            .loop_add(f.as_raw_fd(), offset, sizelimit, flags)
            .with_context(|| format!("PINDIO_IOC_LOOP_ADD on {backing}"))?;
        // The device keeps its own reference to the backing file: ours goes now.
        drop(f);
        Ok(Self { dev, index })
    }

    pub(super) fn path(&self) -> String {
        pindio::loop_path(self.index)
    }

    pub(super) fn index(&self) -> u32 {
        self.index
    }

    pub(super) fn del(self) -> Result<()> {
        let (dev, index) = (self.dev, self.index);
        std::mem::forget(self);
        dev.loop_del(index)
            .with_context(|| format!("PINDIO_IOC_LOOP_DEL {index}"))
    }
}

impl Drop for Stacked<'_> {
    fn drop(&mut self) {
        let _ = self.dev.loop_del(self.index);
    }
}

/// `nr_foll_pin_acquired`, folded.
fn pins_acquired() -> Result<u64> {
    let _ = fs::write("/proc/sys/vm/stat_refresh", "1");
    Ok(pindio::foll_pin_counts()?.0)
}

/// Runs `f`, which pins nothing itself, and checks that no FOLL_PIN pin was taken meanwhile.
fn pins_nothing<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = pins_acquired()?;
    let v = f()?;
    let after = pins_acquired()?;
    ensure!(
        after == before,
        "{what}: nr_foll_pin_acquired moved by {}",
        after - before
    );
    Ok(v)
}

/// Buffered I/O through the page cache, written back with fsync: the requests carry page-cache
/// pages, which forwarding must list, not pin.
fn write_buffered(path: &str, off: u64, data: &[u8]) -> Result<()> {
    let f = open(path, true, false)?;
    f.write_all_at(data, off).context("buffered pwrite")?;
    f.sync_all().context("fsync")
}

pub(super) fn drop_caches(path: &str) -> Result<()> {
    // BLKFLSBUF = _IO(0x12, 97): write back and drop the device's page cache.
    let f = open(path, false, false)?;
    // SAFETY: BLKFLSBUF takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), (0x12 << 8) | 97, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("BLKFLSBUF");
    }
    Ok(())
}

/// Reads and writes of every size from 512 B to 4 MiB, at offsets that are not page aligned,
/// through a device whose window starts 1 MiB + 512 B into the backing device: the data is on
/// the backing device at the mapped offset, and reads through the device return it.
pub fn data_at_mapped_offset() -> Result<()> {
    let dev = device()?;
    let base = (MIB + 512) as u64;
    let s = Stacked::add(&dev, NULLB, base, 64 * MIB as u64, 0)?;
    let path = s.path();
    let size = dev_size(&open(&path, false, false)?)?;
    ensure!(size == 64 * MIB as u64, "device size {size}");
    let mut sizes = vec![512, 1024, 1536, 4096 - 512, 4096, 4096 + 512, 64 * KIB];
    sizes.extend([
        128 * KIB + 512,
        MIB,
        MIB + 3584,
        2 * MIB,
        4 * MIB - 512,
        4 * MIB,
    ]);
    for (i, &len) in sizes.iter().enumerate() {
        // 512-byte steps that cross pages unevenly.
        let off = (i * 3 * MIB + 512 * (i % 7 + 1)) as u64;
        let data = pattern(i as u8 + 1, len);
        pwrite_direct(&path, off, &data).with_context(|| format!("write {len} at {off}"))?;
        let below = pread_direct(NULLB, base + off, len)?;
        ensure!(
            below == data,
            "{len} bytes at {off}: the backing device differs"
        );
        let back = pread_direct(&path, off, len)?;
        ensure!(back == data, "{len} bytes at {off}: read back differs");
        // The other way: written below, read through the device.
        let other = pattern(i as u8 + 101, len);
        pwrite_direct(NULLB, base + off, &other)?;
        let through = pread_direct(&path, off, len)?;
        ensure!(
            through == other,
            "{len} bytes at {off}: read through differs"
        );
    }
    // The last block, and one past it.
    let last = size - 512;
    pwrite_direct(&path, last, &pattern(9, 512))?;
    ensure!(pread_direct(NULLB, base + last, 512)? == pattern(9, 512));
    let f = open(&path, false, true)?;
    let mut m = pindio::Buf::with_flags(4096, 0)?;
    let n = f
        .read_at(&mut m.bytes()[..512], size)
        .context("read at the end")?;
    ensure!(n == 0, "read past the end returned {n} bytes");
    drop(f);
    s.del()
}

/// Buffered writes and reads through the device take no FOLL_PIN pin: forwarding lists the
/// page-cache pages of each request.
pub fn forwarding_pins_nothing() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB, 0, 0, 0)?;
    let path = s.path();
    let data = pattern(0x33, 8 * MIB + 4096);
    pins_nothing("buffered write + fsync", || {
        write_buffered(&path, 12288, &data)
    })?;
    drop_caches(&path)?;
    let back = pins_nothing("buffered read", || {
        let f = open(&path, false, false)?;
        let mut v = vec![0u8; data.len()];
        f.read_exact_at(&mut v, 12288)?;
        Ok(v)
    })?;
    ensure!(back == data, "buffered data differs");
    ensure!(
        pread_direct(NULLB, 12288, data.len())? == data,
        "backing device differs"
    );
    s.del()
}

/// ext2 (busybox mke2fs) on the device: files of random sizes written, synced, unmounted,
/// mounted again and read back; then the same image read through the backing device directly.
/// No FOLL_PIN pin is taken throughout.
pub fn filesystem() -> Result<()> {
    let dev = device()?;
    // A fresh window at the start of nullb0 (the backing device is mounted directly below).
    let s = Stacked::add(&dev, NULLB, 0, 96 * MIB as u64, 0)?;
    let path = s.path();
    let mnt = "/tmp/pindio-fs";
    fs::create_dir_all(mnt)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files = Vec::new();
    pins_nothing("mke2fs, mount, write, sync, umount", || {
        run("busybox", &["mke2fs", "-q", "-b", "4096", &path])?;
        run("mount", &["-t", "ext2", &path, mnt])?;
        for i in 0..24 {
            let len = (rng.next_u64() % (3 * MIB as u64)) as usize + (i % 3);
            let seed = rng.next_u64() as u8;
            let data = pattern(seed, len);
            let name = format!("{mnt}/f{i}");
            File::create(&name)?.write_all(&data)?;
            files.push((format!("f{i}"), data));
        }
        run("sync", &[])?;
        run("umount", &[mnt])
    })?;
    let check = |root: &str, what: &str| -> Result<()> {
        for (name, data) in &files {
            let mut v = Vec::new();
            File::open(format!("{root}/{name}"))?.read_to_end(&mut v)?;
            ensure!(&v == data, "{what}: {name} differs ({} bytes)", data.len());
        }
        Ok(())
    };
    pins_nothing("mount again and read", || {
        run("mount", &["-t", "ext2", "-o", "ro", &path, mnt])?;
        let r = check(mnt, "through the device");
        run("umount", &[mnt])?;
        r
    })?;
    s.del()?;
    // The image, read through the backing device itself.
    drop_caches(NULLB)?;
    run("mount", &["-t", "ext2", "-o", "ro", NULLB, mnt])?;
    let r = check(mnt, "through the backing device");
    run("umount", &[mnt])?;
    r
}

/// The major and minor number of the block device node `path`.
fn dev_numbers(path: &str) -> Result<(u32, u32)> {
    let rdev = std::os::unix::fs::MetadataExt::rdev(&fs::metadata(path)?);
    Ok((libc::major(rdev), libc::minor(rdev)))
}

/// The bios queued to each of `devs` while `f` runs (`block_bio_queue`): per device, its
/// `(rwbs, sector, sectors)`.
pub(super) fn queued_bios(
    devs: &[&str],
    f: impl FnOnce() -> Result<()>,
) -> Result<Vec<Vec<(String, u64, u64)>>> {
    let t = "/sys/kernel/tracing";
    if fs::metadata(format!("{t}/events")).is_err() {
        run("mount", &["-t", "tracefs", "tracefs", t])?;
    }
    let numbers: Vec<(u32, u32)> = devs.iter().map(|d| dev_numbers(d)).collect::<Result<_>>()?;
    // The tracepoints print "major,minor"; their filter takes the kernel's dev_t.
    let names: Vec<String> = numbers
        .iter()
        .map(|(ma, mi)| format!("{ma},{mi}"))
        .collect();
    let filter: Vec<String> = numbers
        .iter()
        .map(|(ma, mi)| format!("dev == {}", (ma << 20) | mi))
        .collect();
    let ev = format!("{t}/events/block/block_bio_queue");
    fs::write(format!("{t}/buffer_size_kb"), "8192")?;
    fs::write(format!("{ev}/filter"), filter.join(" || "))?;
    fs::write(format!("{t}/trace"), "")?;
    fs::write(format!("{ev}/enable"), "1")?;
    let ran = f();
    fs::write(format!("{ev}/enable"), "0")?;
    fs::write(format!("{ev}/filter"), "0")?;
    ran?;
    let trace = fs::read_to_string(format!("{t}/trace"))?;
    // "# entries-in-buffer/entries-written: 1234/1234": none was overwritten.
    let counts = trace
        .lines()
        .find_map(|l| l.split("entries-in-buffer/entries-written: ").nth(1))
        .and_then(|c| c.split_whitespace().next())
        .context("no entries-written line in the trace")?;
    let (kept, written) = counts.split_once('/').context("entries line")?;
    ensure!(kept == written, "the trace kept {kept} of {written} events");
    let mut out = vec![Vec::new(); devs.len()];
    for line in trace
        .lines()
        .filter_map(|l| l.split("block_bio_queue: ").nth(1))
    {
        // "252,7 WFS 2048 + 8 [comm]"
        let w: Vec<&str> = line.split_whitespace().collect();
        ensure!(w.len() >= 5 && w[3] == "+", "unexpected trace line: {line}");
        let Some(i) = names.iter().position(|n| n == w[0]) else {
            continue;
        };
        out[i].push((w[1].to_string(), w[2].parse()?, w[4].parse()?));
    }
    Ok(out)
}

/// The backing device's block layer, as its block tracepoint sees it: flush bios (`F` before
/// the `W`) and FUA writes (`F` after it) queued to it while `f` runs.
fn backing_flush_fua(backing: &str, f: impl FnOnce() -> Result<()>) -> Result<(usize, usize)> {
    let bios = queued_bios(&[backing], f)?;
    let (mut flushes, mut fua) = (0, 0);
    for (rwbs, ..) in &bios[0] {
        if rwbs.starts_with('F') {
            flushes += 1;
        }
        if rwbs
            .find('W')
            .is_some_and(|w| rwbs[w + 1..].starts_with('F'))
        {
            fua += 1;
        }
    }
    Ok((flushes, fua))
}

/// fsync of the device sends a flush to the backing device, and an O_DSYNC direct write a FUA
/// write: the device takes the backing device's write cache and FUA features.
pub fn flush_and_fua_reach_backing() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB_CACHE, 0, 0, 0)?;
    let path = s.path();
    let (flushes, fua) = backing_flush_fua(NULLB_CACHE, || {
        write_buffered(&path, 0, &pattern(1, 64 * KIB))?;
        Ok(())
    })?;
    ensure!(
        flushes >= 1,
        "fsync: {flushes} flushes reached the backing device"
    );
    ensure!(fua == 0, "buffered write: {fua} FUA writes");
    let (_, fua) = backing_flush_fua(NULLB_CACHE, || {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(&path)?;
        let mut m = pindio::Buf::with_flags(64 * KIB, 0)?;
        m.bytes().fill(7);
        f.write_all_at(m.bytes(), 128 * KIB as u64)?;
        Ok(())
    })?;
    ensure!(
        fua >= 1,
        "O_DSYNC direct write: {fua} FUA writes reached the backing device"
    );
    ensure!(pread_direct(NULLB_CACHE, 128 * KIB as u64, 64 * KIB)? == vec![7; 64 * KIB]);
    s.del()
}

/// A backing device that fails: EIO on the device where it fails, the rest still works.
pub fn backing_errors_eio() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB_BAD, 0, 0, 0)?;
    let path = s.path();
    let f = open(&path, true, true)?;
    let mut m = pindio::Buf::with_flags(2 * MIB, 0)?;
    for (off, len, what) in [
        (MIB as u64, 4096, "read of the bad blocks"),
        (MIB as u64 - 4096, 64 * KIB, "read across them"),
        (0, 2 * MIB, "2 MiB read over them"),
    ] {
        let r = f.read_at(&mut m.bytes()[..len], off);
        expect_errno(r, libc::EIO, what)?;
    }
    expect_errno(
        f.write_at(&m.bytes()[..64 * KIB], MIB as u64 - 4096),
        libc::EIO,
        "write across them",
    )?;
    let n = f.read_at(&mut m.bytes()[..MIB], 2 * MIB as u64)?;
    ensure!(n == MIB, "next to them: {n} bytes");
    drop(f);
    s.del()
}

/// The device takes the backing device's block size (16 KiB, larger than a page) and refuses
/// I/O that is not whole blocks of it, as the backing device does.
pub fn large_logical_blocks() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB_16K, 16 * KIB as u64, 0, 0)?;
    let path = s.path();
    let data = pattern(0x16, 256 * KIB);
    pwrite_direct(&path, 32 * KIB as u64, &data)?;
    ensure!(pread_direct(NULLB_16K, 48 * KIB as u64, data.len())? == data);
    let f = open(&path, false, true)?;
    let mut m = pindio::Buf::with_flags(64 * KIB, 0)?;
    expect_errno(
        f.read_at(&mut m.bytes()[..4096], 0),
        libc::EINVAL,
        "4 KiB read of a 16 KiB-block device",
    )?;
    drop(f);
    s.del()
}

/// Read-only devices: asked for, or on a read-only backing device. Writes are refused.
pub fn read_only() -> Result<()> {
    let dev = device()?;
    for (backing, flags) in [(NULLB, uapi::PINDIO_LOOP_READ_ONLY), (VDB, 0)] {
        let s = if backing == VDB {
            // A read-only disk can only be opened for reading.
            let f = open(VDB, false, false)?;
            let index = dev.loop_add(f.as_raw_fd(), 0, 0, flags)?;
            Stacked { dev: &dev, index }
        } else {
            Stacked::add(&dev, backing, 0, 0, flags)?
        };
        let info = dev.loop_info(s.index)?;
        ensure!(
            info.flags & uapi::PINDIO_LOOP_READ_ONLY != 0,
            "{backing}: not read-only"
        );
        // BLKROGET = _IO(0x12, 94): the disk says it is read-only, and writes are refused
        // (EPERM, as blkdev_write_iter refuses them; opening for writing is allowed).
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(s.path())?;
        let mut ro: libc::c_int = 0;
        // SAFETY: BLKROGET writes one int.
        ensure!(unsafe { libc::ioctl(f.as_raw_fd(), (0x12 << 8) | 94, &mut ro) } == 0);
        ensure!(ro == 1, "{backing}: BLKROGET says {ro}");
        expect_errno(
            f.write_at(&[0; 512], 0),
            libc::EPERM,
            "write to a read-only device",
        )?;
        drop(f);
        ensure!(pread_direct(&s.path(), 0, 4096)? == pread_direct(backing, 0, 4096)?);
        s.del()?;
    }
    Ok(())
}

/// Removal of an open device is refused while threads do I/O through it; once they are done and
/// it is closed, it goes, and its node with it.
pub fn removal_while_open_and_busy() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB, 0, 32 * MIB as u64, 0)?;
    let path = s.path();
    let stop = AtomicBool::new(false);
    // The threads have the device open before the first removal attempt.
    let opened = Barrier::new(5);
    let ios = std::thread::scope(|sc| -> Result<usize> {
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                let (path, stop, opened) = (&path, &stop, &opened);
                sc.spawn(move || -> Result<usize> {
                    let f = open(path, true, true);
                    opened.wait();
                    let f = f?;
                    let mut m = pindio::Buf::with_flags(64 * KIB, 0)?;
                    let off = (u64::from(t) * 4 * MIB as u64) + 512;
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) || n < 8 {
                        m.bytes().fill(t ^ n as u8);
                        f.write_all_at(m.bytes(), off)?;
                        let mut back = pindio::Buf::with_flags(64 * KIB, 0)?;
                        f.read_exact_at(back.bytes(), off)?;
                        ensure!(back.bytes() == m.bytes(), "thread {t}: read back differs");
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        opened.wait();
        // Removal attempts while they run.
        let mut refused = 0;
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            match dev.loop_del(s.index) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => refused += 1,
                Err(e) => bail!("removal while open: {e}"),
                Ok(()) => bail!("removed while open"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for w in workers {
            total += w
                .join()
                .map_err(|_| anyhow::anyhow!("a thread panicked"))??;
        }
        ensure!(refused == 20, "{refused} of 20 removals refused");
        Ok(total)
    })?;
    ensure!(ios >= 32, "only {ios} I/Os");
    let held = open(&path, false, false)?;
    expect_errno(dev.loop_del(s.index), libc::EBUSY, "removal while open")?;
    drop(held);
    s.del()?;
    ensure!(fs::metadata(&path).is_err(), "{path} still exists");
    expect_errno(dev.loop_info(0), libc::ENXIO, "info of a removed device")?;
    Ok(())
}

/// Every refusal of the three ioctls, with its errno.
pub fn bad_arguments() -> Result<()> {
    let dev = device()?;
    let nullb = open(NULLB, true, false)?;
    let add = |fd: i32, off: u64, size: u64, flags: u32| dev.loop_add(fd, off, size, flags);
    expect_errno(add(-1, 0, 0, 0), libc::EBADF, "fd -1")?;
    expect_errno(add(9999, 0, 0, 0), libc::EBADF, "fd not open")?;
    let regular = File::create("/tmp/pindio-regular")?;
    expect_errno(
        add(regular.as_raw_fd(), 0, 0, 0),
        libc::ENOTBLK,
        "a regular file",
    )?;
    expect_errno(add(dev.as_raw_fd(), 0, 0, 0), libc::ENOTBLK, "/dev/pindio")?;
    let wronly = fs::OpenOptions::new().write(true).open(NULLB)?;
    expect_errno(
        add(wronly.as_raw_fd(), 0, 0, 0),
        libc::EBADF,
        "write-only fd",
    )?;
    let fd = nullb.as_raw_fd();
    let size = dev_size(&nullb)?;
    for (off, len, what) in [
        (1, 0, "offset 1"),
        (256, 0, "offset not a block"),
        (0, 1000, "size not a block"),
        (size, 0, "offset at the end"),
        (size + 512, 0, "offset past the end"),
        (size - 512, 1024, "window past the end"),
        (512, u64::MAX - 511, "offset + size overflows"),
    ] {
        expect_errno(add(fd, off, len, 0), libc::EINVAL, what)?;
    }
    expect_errno(add(fd, 0, 0, 1 << 5), libc::EINVAL, "unknown flag")?;
    let f16 = open(NULLB_16K, true, false)?;
    expect_errno(
        add(f16.as_raw_fd(), 4096, 0, 0),
        libc::EINVAL,
        "4 KiB into 16 KiB blocks",
    )?;
    expect_errno(
        add(f16.as_raw_fd(), 0, 4096, 0),
        libc::EINVAL,
        "4 KiB of 16 KiB blocks",
    )?;
    // Reserved bytes must be zero.
    let mut raw = uapi::pindio_loop_add::sized();
    (raw.fd, raw.reserved) = (fd, 1);
    expect_errno(
        dev.ioctl(uapi::PINDIO_IOC_LOOP_ADD, &mut raw),
        libc::EINVAL,
        "reserved",
    )?;
    // The last window that fits, and as many devices as there may be, then one more.
    let last = Stacked::add(&dev, NULLB, size - 512, 512, 0)?;
    ensure!(dev_size(&open(&last.path(), false, false)?)? == 512);
    let mut all = vec![last];
    while all.len() < uapi::PINDIO_LOOP_MAX as usize {
        all.push(Stacked::add(&dev, NULLB, 0, MIB as u64, 0)?);
    }
    let mut indices: Vec<u32> = all.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    ensure!(
        indices == (0..uapi::PINDIO_LOOP_MAX).collect::<Vec<_>>(),
        "indices {indices:?}"
    );
    expect_errno(add(fd, 0, 0, 0), libc::ENOSPC, "one device too many")?;
    ensure!(dev.loops()?.len() == uapi::PINDIO_LOOP_MAX as usize);
    // A freed index is reused, lowest first.
    let third = all.remove(3);
    third.del()?;
    let again = Stacked::add(&dev, NULLB, 0, MIB as u64, 0)?;
    ensure!(again.index == 3, "index {} reused, not 3", again.index);
    drop(again);
    drop(all);
    ensure!(
        dev.loops()?.is_empty(),
        "devices left: {}",
        dev.loops()?.len()
    );
    // Deletion and description of what is not there.
    expect_errno(dev.loop_del(0), libc::ENXIO, "delete an unknown index")?;
    expect_errno(
        dev.loop_del(uapi::PINDIO_LOOP_MAX),
        libc::ENXIO,
        "delete past the last",
    )?;
    expect_errno(dev.loop_del(u32::MAX), libc::ENXIO, "delete index u32::MAX")?;
    let mut del = uapi::pindio_loop_del::sized();
    del.flags = 1;
    expect_errno(
        dev.ioctl(uapi::PINDIO_IOC_LOOP_DEL, &mut del),
        libc::EINVAL,
        "del flags",
    )?;
    expect_errno(dev.loop_info(0), libc::ENXIO, "info of an unknown index")?;
    expect_errno(
        dev.loop_info(uapi::PINDIO_LOOP_MAX),
        libc::EINVAL,
        "info past the last",
    )?;
    Ok(())
}

/// A device left in place: unloading the module (the rmmod after the suite) must remove it.
pub fn left_for_module_unload() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB, 0, MIB as u64, 0)?;
    let info = dev.loop_info(s.index)?;
    let meta = fs::metadata(NULLB)?;
    let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
    let want = (libc::major(rdev) << 20) | libc::minor(rdev);
    ensure!(
        info.backing_dev == want,
        "backing {:#x}, expected {want:#x}",
        info.backing_dev
    );
    ensure!(info.sizelimit == MIB as u64 && info.offset == 0);
    std::mem::forget(s);
    Ok(())
}

/// A 2 MiB buffer of one huge page: hugetlb (`MAP_HUGETLB`), or a transparent huge page
/// (`MADV_HUGEPAGE` on an aligned 2 MiB, checked in `AnonHugePages`). The second value is the
/// mapping around a THP, which the caller keeps until it is done with the first.
fn huge_buffer(hugetlb: bool) -> Result<(pindio::Buf, Option<pindio::Buf>)> {
    const HUGE: usize = 2 << 20;
    if hugetlb {
        let _ = fs::write("/proc/sys/vm/nr_hugepages", "4");
        let m = pindio::Buf::with_flags(HUGE, libc::MAP_HUGETLB)
            .context("hugetlb mapping (nr_hugepages)")?;
        return Ok((m, None));
    }
    let _ = fs::write("/sys/kernel/mm/transparent_hugepage/enabled", "madvise");
    let anon_huge = || -> Result<u64> {
        let meminfo = fs::read_to_string("/proc/meminfo")?;
        let kb = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        Ok(kb.unwrap_or(0))
    };
    let before = anon_huge()?;
    let mut big = pindio::Buf::with_flags(2 * HUGE, 0)?;
    let aligned = (big.addr() + HUGE - 1) & !(HUGE - 1);
    // SAFETY: The aligned 2 MiB lies inside `big`.
    if unsafe { libc::madvise(aligned as *mut libc::c_void, HUGE, libc::MADV_HUGEPAGE) } != 0 {
        return Err(std::io::Error::last_os_error()).context("madvise(MADV_HUGEPAGE)");
    }
    big.bytes().fill(0);
    let after = anon_huge()?;
    ensure!(
        after >= before + 2048,
        "no transparent huge page was made ({after} kB)"
    );
    // SAFETY: The 2 MiB at `aligned` lie inside `big`, mapped read-write; only the returned
    // buffer uses them, and `big` is returned to be kept until it is dropped.
    Ok((unsafe { pindio::Buf::from_raw(aligned, HUGE) }, Some(big)))
}

/// Direct I/O from and into one huge page (hugetlb and THP), whose pages bio_add_page merges
/// into multi-page vectors: through PINDIO_IOC_DIO to nullb0, and with O_DIRECT through a
/// stacked device, whose forwarded bios carry those vectors as they are. The data is checked
/// each way against what pread(O_DIRECT) of the backing device sees.
pub fn huge_page_buffers() -> Result<()> {
    const HUGE: usize = 2 << 20;
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB, 128 * MIB as u64, 16 * MIB as u64, 0)?;
    let path = s.path();
    let nullb = open(NULLB, true, false)?;
    for (i, hugetlb) in [(0u8, true), (1, false)] {
        let what = if hugetlb { "hugetlb" } else { "THP" };
        let (mut m, keep) = huge_buffer(hugetlb)?;
        let data = pattern(0x70 + i, HUGE);
        // PINDIO_IOC_DIO: write from the huge page, read back below; read into it.
        let at = (64 * MIB + usize::from(i) * HUGE) as u64;
        m.bytes().copy_from_slice(&data);
        let mut req = pindio::dio_req(
            nullb.as_raw_fd(),
            true,
            at,
            pindio::DioMem::Buf(m.addr(), HUGE),
        );
        ensure!(dev.dio(&mut req)? == HUGE, "{what}: short DIO write");
        ensure!(
            pread_direct(NULLB, at, HUGE)? == data,
            "{what}: DIO write differs below"
        );
        m.bytes().fill(0);
        let mut req = pindio::dio_req(
            nullb.as_raw_fd(),
            false,
            at,
            pindio::DioMem::Buf(m.addr(), HUGE),
        );
        ensure!(dev.dio(&mut req)? == HUGE, "{what}: short DIO read");
        ensure!(m.bytes() == &data[..], "{what}: DIO read differs");
        // O_DIRECT through the stacked device, from and into the huge page.
        let other = pattern(0x90 + i, HUGE);
        m.bytes().copy_from_slice(&other);
        let f = open(&path, true, true)?;
        let off = (usize::from(i) * 4 * MIB + 512) as u64;
        f.write_all_at(m.bytes(), off).context("pwrite O_DIRECT")?;
        ensure!(
            pread_direct(NULLB, 128 * MIB as u64 + off, HUGE)? == other,
            "{what}: stacked write differs below"
        );
        m.bytes().fill(0);
        f.read_exact_at(m.bytes(), off).context("pread O_DIRECT")?;
        ensure!(m.bytes() == &other[..], "{what}: stacked read differs");
        drop(m);
        drop(keep);
    }
    drop(nullb);
    s.del()
}
