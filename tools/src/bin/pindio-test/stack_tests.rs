// SPDX-License-Identifier: GPL-2.0

//! What a stacked device must pass on or refuse, and the shapes of I/O that hung the request-based
//! design: bios the backing device splits many times, many at once, stacks of stacked devices,
//! a backing device in use (swap, read-only), its features (stable writes, zoned, discard),
//! `REQ_NOWAIT`, and who may make or remove a device. Each waits for its I/O with a watchdog, so
//! that a hang fails the case instead of the whole guest.

use super::dio_tests::{open, pread_direct, pwrite_direct};
use super::loop_tests::{queued_bios, Stacked};
use super::review_tests::SwapOn;
use super::{device, expect_errno, pin_tests::pattern};
use anyhow::{anyhow, bail, ensure, Context, Result};
use pindio::{host::output, uapi, Device};
use std::{
    fs,
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Memory-backed null_blk, 256 MiB.
const NULLB: &str = "/dev/nullb0";
/// Memory-backed null_blk that a test makes a swap device.
const NULLB_SWAP: &str = "/dev/nullb5";
/// Memory-backed null_blk with a volatile write cache.
const NULLB_CACHE: &str = "/dev/nullb7";
/// virtio-blk on an image file, 4 KiB physical blocks of 512-byte logical ones.
const VDA: &str = "/dev/vda";

/// Runs `f` on a thread of its own and waits `secs` seconds for it: a case that hangs fails
/// with `what` named instead of hanging the guest (the stuck thread is left behind).
fn watchdog<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(r) => r.with_context(|| what.to_string()),
        Err(mpsc::RecvTimeoutError::Timeout) => bail!("{what}: no answer in {secs} s (hung)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => bail!("{what}: its thread panicked"),
    }
}

/// The name of a block device node in /sys/block.
fn sys_name(path: &str) -> &str {
    path.trim_start_matches("/dev/")
}

fn queue_attr(path: &str, attr: &str) -> Result<String> {
    let p = format!("/sys/block/{}/queue/{attr}", sys_name(path));
    Ok(fs::read_to_string(&p)
        .with_context(|| p.clone())?
        .trim()
        .to_string())
}

fn set_queue_attr(path: &str, attr: &str, val: &str) -> Result<()> {
    let p = format!("/sys/block/{}/queue/{attr}", sys_name(path));
    fs::write(&p, val).with_context(|| format!("{val} > {p}"))
}

/// A null_blk device made through configfs for one case, powered off and removed on drop. Its
/// disk is named after its configfs directory, as null_blk names them.
struct NullBlk {
    dir: String,
    path: String,
}

impl NullBlk {
    fn new(name: &str, attrs: &[(&str, &str)]) -> Result<Self> {
        let dir = format!("/sys/kernel/config/nullb/{name}");
        fs::create_dir(&dir).with_context(|| format!("mkdir {dir}"))?;
        let mut nb = NullBlk {
            dir,
            path: String::new(),
        };
        for (attr, val) in attrs.iter().chain(&[("power", "1")]) {
            let p = format!("{}/{attr}", nb.dir);
            fs::write(&p, val).with_context(|| format!("{val} > {p}"))?;
        }
        nb.path = format!("/dev/{name}");
        ensure!(
            fs::metadata(&nb.path).is_ok(),
            "null_blk {name}: no {}",
            nb.path
        );
        Ok(nb)
    }
}

impl Drop for NullBlk {
    fn drop(&mut self) {
        let _ = fs::write(format!("{}/power", self.dir), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Reads `len` bytes at `off` of `path` with O_DIRECT, `n` times on each of `threads` threads at
/// once, and checks them against `expect`.
fn parallel_reads(path: &str, off: u64, expect: &[u8], threads: usize, n: usize) -> Result<()> {
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| -> Result<()> {
                    let f = open(path, false, true)?;
                    let mut m = pindio::Buf::with_flags(expect.len(), 0)?;
                    for _ in 0..n {
                        f.read_exact_at(m.bytes(), off)?;
                        ensure!(m.bytes() == expect, "{path}: read back differs");
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow!("a reader panicked"))?)
    })
}

/// The reproducer of the request-based design's hang: a 1 MiB direct read of a device whose
/// `max_sectors_kb` is 4 (one `dd`: the reproducer; the bio-based disk does not split, so
/// it is nullb0 that cuts the bio); then 16 parallel 1 MiB direct reads with the default limits
/// (null_blk's 255-sector requests: every bio split in 9 below); then the same on a backing
/// null_blk of 4 KiB requests, where each 1 MiB bio is split 256 times into a queue of 64 tags,
/// and writes split as many times, and a split read one of whose pieces fails (`EIO`, the rest
/// of the device still reading). Every read returns the data, none hangs.
pub fn split_many_times_no_hang() -> Result<()> {
    let dev = device()?;
    let data = pattern(0x22, MIB);
    pwrite_direct(NULLB, 8 * MIB as u64, &data)?;
    let s = Stacked::add(&dev, NULLB, 0, 64 * MIB as u64, 0)?;
    let path = s.path();
    set_queue_attr(&path, "max_sectors_kb", "4")?;
    let p = path.clone();
    watchdog(
        60,
        "dd bs=1M count=1 iflag=direct, max_sectors_kb 4",
        move || {
            let (status, text) = output(
                "dd",
                &[
                    &format!("if={p}"),
                    "of=/dev/null",
                    "bs=1M",
                    "count=1",
                    "iflag=direct",
                ],
            )?;
            ensure!(status.success(), "dd: {status}: {text}");
            Ok(())
        },
    )?;
    let (p, d) = (path.clone(), data.clone());
    watchdog(60, "1 MiB read, max_sectors_kb 4", move || {
        ensure!(pread_direct(&p, 8 * MIB as u64, MIB)? == d, "data differs");
        Ok(())
    })?;
    s.del()?;
    let s = Stacked::add(&dev, NULLB, 0, 64 * MIB as u64, 0)?;
    let (p, d) = (s.path(), data.clone());
    watchdog(120, "16 parallel 1 MiB reads", move || {
        parallel_reads(&p, 8 * MIB as u64, &d, 16, 4)
    })?;
    s.del()?;
    let nb = NullBlk::new(
        "nullb-split",
        &[
            ("size", "64"),
            ("memory_backed", "1"),
            ("max_sectors", "8"),
            ("hw_queue_depth", "64"),
        ],
    )?;
    pwrite_direct(&nb.path, 8 * MIB as u64, &data)?;
    let s = Stacked::add(&dev, &nb.path, 0, 0, 0)?;
    ensure!(
        queue_attr(&s.path(), "max_sectors_kb")? == "4",
        "limits not stacked"
    );
    let (p, d) = (s.path(), data);
    watchdog(
        120,
        "16 parallel 1 MiB reads split 256 times each",
        move || parallel_reads(&p, 8 * MIB as u64, &d, 16, 2),
    )?;
    // Writes split as many times land whole; one bad piece fails the whole bio with EIO and
    // only it: the rest of the device still reads.
    let (p, n) = (s.path(), nb.path.clone());
    watchdog(120, "1 MiB writes split 256 times each", move || {
        let w = pattern(0x23, MIB);
        pwrite_direct(&p, 16 * MIB as u64, &w)?;
        ensure!(
            pread_direct(&n, 16 * MIB as u64, MIB)? == w,
            "split write did not land"
        );
        Ok(())
    })?;
    s.del()?;
    let bad = "/sys/kernel/config/nullb/nullb-split/badblocks";
    fs::write(bad, "+40968-40975").with_context(|| bad.to_string())?;
    let s = Stacked::add(&dev, &nb.path, 0, 0, 0)?;
    let p = s.path();
    watchdog(120, "a split 1 MiB read with one bad piece", move || {
        let f = open(&p, false, true)?;
        let mut m = pindio::Buf::with_flags(MIB, 0)?;
        // Sectors 40968-40975 are 4 KiB into the MiB at 20 MiB.
        expect_errno(
            f.read_at(m.bytes(), 20 * MIB as u64),
            libc::EIO,
            "the bad piece",
        )?;
        f.read_exact_at(m.bytes(), 21 * MIB as u64)
            .context("the MiB after it")?;
        Ok(())
    })?;
    s.del()
}

/// pindio on pindio on pindio, each window 1 MiB into the one below, over a null_blk of 4 KiB
/// requests: four threads write and read back through the top at once, the data lands on the
/// null_blk 3 MiB further on, and the lower devices cannot be removed while a device is stacked
/// on them (they are held open); top down, they go.
pub fn three_deep_under_parallel_io() -> Result<()> {
    let dev = device()?;
    let nb = NullBlk::new(
        "nullb-deep",
        &[("size", "64"), ("memory_backed", "1"), ("max_sectors", "8")],
    )?;
    let s0 = Stacked::add(&dev, &nb.path, MIB as u64, 32 * MIB as u64, 0)?;
    let s1 = Stacked::add(&dev, &s0.path(), MIB as u64, 0, 0)?;
    let s2 = Stacked::add(&dev, &s1.path(), MIB as u64, 0, 0)?;
    let top = s2.path();
    watchdog(
        180,
        "parallel I/O through three stacked devices",
        move || {
            std::thread::scope(|sc| {
                let workers: Vec<_> = (0..4u8)
                    .map(|t| {
                        let top = &top;
                        sc.spawn(move || -> Result<()> {
                            let f = open(top, true, true)?;
                            let mut m = pindio::Buf::with_flags(MIB + 512, 0)?;
                            let mut back = pindio::Buf::with_flags(MIB + 512, 0)?;
                            let off = u64::from(t) * 4 * MIB as u64 + 512;
                            let len = MIB + 512;
                            for n in 0..6u8 {
                                m.bytes()[..len].copy_from_slice(&pattern(t << 4 | n, len));
                                f.write_all_at(&m.bytes()[..len], off)?;
                                f.read_exact_at(&mut back.bytes()[..len], off)?;
                                ensure!(
                                    back.bytes()[..len] == m.bytes()[..len],
                                    "thread {t}: read back differs"
                                );
                            }
                            Ok(())
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .try_for_each(|w| w.join().map_err(|_| anyhow!("a thread panicked"))?)
            })
        },
    )?;
    for t in 0..4u8 {
        let at = 3 * MIB as u64 + u64::from(t) * 4 * MIB as u64 + 512;
        let on_nb = pread_direct(&nb.path, at, MIB + 512)?;
        ensure!(
            on_nb == pattern(t << 4 | 5, MIB + 512),
            "thread {t}'s data is not 3 MiB further on the null_blk"
        );
    }
    for (s, what) in [(&s0, "the bottom device"), (&s1, "the middle device")] {
        expect_errno(dev.loop_del(s.index()), libc::EBUSY, what)?;
    }
    s2.del()?;
    s1.del()?;
    s0.del()
}

/// An active swap device cannot be stacked on (EBUSY: it is claimed), and a stacked-on device
/// cannot be made a swap device (swapon is refused) until the stacked device goes. Nothing is
/// written to it meanwhile.
pub fn swap_device_refused() -> Result<()> {
    let dev = device()?;
    let header = {
        let _swap = SwapOn::new(NULLB_SWAP)?;
        let header = pread_direct(NULLB_SWAP, 0, 4096)?;
        for (write, flags) in [(true, 0), (false, uapi::PINDIO_LOOP_READ_ONLY)] {
            let f = open(NULLB_SWAP, write, false)?;
            expect_errno(
                dev.loop_add(f.as_raw_fd(), 0, 0, flags),
                libc::EBUSY,
                "stacking on an active swap device",
            )?;
        }
        header
    };
    ensure!(&header[4086..] == b"SWAPSPACE2", "no swap signature");
    ensure!(
        pread_direct(NULLB_SWAP, 0, 4096)? == header,
        "the swap header changed"
    );
    let s = Stacked::add(&dev, NULLB_SWAP, 0, 0, 0)?;
    let (status, text) = output("swapon", &[NULLB_SWAP])?;
    if status.success() {
        let _ = output("swapoff", &[NULLB_SWAP]);
        bail!("swapon of a stacked-on device succeeded");
    }
    ensure!(text.contains("busy"), "swapon: {text}");
    s.del()?;
    // Released: it can be a swap device again.
    drop(SwapOn::new(NULLB_SWAP)?);
    Ok(())
}

/// Sets a block device read-only or writable (`BLKROSET`), and back to writable on drop.
struct ReadOnly(String);

impl ReadOnly {
    fn set(path: &str, ro: bool) -> Result<()> {
        let f = open(path, false, false)?;
        let v: libc::c_int = ro.into();
        // BLKROSET = _IO(0x12, 93), an int.
        // SAFETY: BLKROSET reads one int.
        if unsafe { libc::ioctl(f.as_raw_fd(), (0x12 << 8) | 93, &v) } != 0 {
            return Err(std::io::Error::last_os_error()).context("BLKROSET");
        }
        Ok(())
    }

    fn new(path: &str) -> Result<Self> {
        Self::set(path, true)?;
        Ok(Self(path.to_string()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Self::set(&self.0, false);
    }
}

/// A backing device made read-only after the device was stacked on it: `LOOP_INFO` says the
/// device is read-only now, and writes through it fail (EIO) and change nothing, direct or
/// written back; made writable again, writes land. The stacked disk made read-only itself
/// refuses the writeback of pages dirtied before (EIO: the kernel lets those bios through), and
/// the kernel refuses new writes to it (EPERM).
pub fn backing_made_read_only() -> Result<()> {
    let dev = device()?;
    let at = 2 * MIB as u64;
    let s = Stacked::add(&dev, NULLB, at, 4 * MIB as u64, 0)?;
    let path = s.path();
    let before = pattern(0x31, 64 * KIB);
    pwrite_direct(NULLB, at, &before)?;
    {
        let _ro = ReadOnly::new(NULLB)?;
        let info = dev.loop_info(s.index())?;
        ensure!(
            info.flags & uapi::PINDIO_LOOP_READ_ONLY != 0,
            "LOOP_INFO: not read-only with a read-only backing device"
        );
        let f = open(&path, true, true)?;
        let mut m = pindio::Buf::with_flags(64 * KIB, 0)?;
        m.bytes().fill(0xee);
        expect_errno(f.write_at(m.bytes(), 0), libc::EIO, "direct write")?;
        let f = open(&path, true, false)?;
        let _ = f.write_at(&[0xee; 4096], 0);
        expect_errno(f.sync_all(), libc::EIO, "fsync of a buffered write")?;
        ensure!(
            pread_direct(NULLB, at, 64 * KIB)? == before,
            "the backing device was written"
        );
    }
    let info = dev.loop_info(s.index())?;
    ensure!(
        info.flags & uapi::PINDIO_LOOP_READ_ONLY == 0,
        "LOOP_INFO: still read-only"
    );
    let after = pattern(0x32, 64 * KIB);
    pwrite_direct(&path, 0, &after)?;
    ensure!(
        pread_direct(NULLB, at, 64 * KIB)? == after,
        "write after setrw did not land"
    );
    {
        // Pages dirtied while the disk was writable, written back once it is read-only: the
        // writeback bios pass the kernel's checks (`bio_check_ro` only warns) and reach the
        // stacked device, which refuses them.
        let f = open(&path, true, false)?;
        f.write_all_at(&[0xdd; 4096], 0)?;
        let _ro = ReadOnly::new(&path)?;
        expect_errno(f.sync_all(), libc::EIO, "writeback to the read-only disk")?;
        ensure!(
            pread_direct(NULLB, at, 64 * KIB)? == after,
            "writeback reached the backing device"
        );
        drop(f);
        let info = dev.loop_info(s.index())?;
        ensure!(
            info.flags & uapi::PINDIO_LOOP_READ_ONLY != 0,
            "LOOP_INFO after BLKROSET"
        );
        let f = open(&path, true, true)?;
        expect_errno(
            f.write_at(&[0; 512], 0),
            libc::EPERM,
            "write to the read-only disk",
        )?;
    }
    s.del()
}

/// The queue features and limits a clone by reference needs are the backing device's, by the
/// kernel's stacking: stable writes (set and cleared on the backing device, both ways),
/// rotational, the write cache, discard, and the alignment offset of a window that does not
/// start on a physical block. A zoned backing device is refused (EOPNOTSUPP).
pub fn features_stacked_zoned_refused() -> Result<()> {
    let dev = device()?;
    for attr in ["stable_writes", "rotational"] {
        for v in ["1", "0"] {
            set_queue_attr(NULLB, attr, v)?;
            let s = Stacked::add(&dev, NULLB, 0, 0, 0);
            let got = s.as_ref().map(|s| queue_attr(&s.path(), attr));
            set_queue_attr(NULLB, attr, "0")?;
            let got = got.map_err(|e| anyhow!("{e:#}"))??;
            ensure!(
                got == v,
                "{attr}: the backing device's is {v}, the stacked device's {got}"
            );
            s?.del()?;
        }
    }
    for (backing, cache) in [(NULLB_CACHE, "write back"), (NULLB, "write through")] {
        let s = Stacked::add(&dev, backing, 0, 0, 0)?;
        let got = queue_attr(&s.path(), "write_cache")?;
        ensure!(got == cache, "{backing}: write_cache {got}");
        s.del()?;
    }
    ensure!(
        queue_attr(VDA, "physical_block_size")? == "4096",
        "vda: not 4 KiB physical blocks"
    );
    for (off, expect) in [(512, "3584"), (4096, "0")] {
        let s = Stacked::add(&dev, VDA, off, 4 * MIB as u64, 0)?;
        let p = format!("/sys/block/{}/alignment_offset", sys_name(&s.path()));
        let got = fs::read_to_string(&p).with_context(|| p.clone())?;
        let got = got.trim();
        ensure!(
            got == expect,
            "window at {off} of vda: alignment_offset {got}"
        );
        s.del()?;
    }
    let s = Stacked::add(&dev, NULLB, 0, 0, 0)?;
    ensure!(
        queue_attr(&s.path(), "discard_max_bytes")? == "0",
        "discard without the backing's"
    );
    s.del()?;
    let zoned = NullBlk::new(
        "nullb-zoned",
        &[
            ("size", "64"),
            ("zoned", "1"),
            ("zone_size", "4"),
            ("memory_backed", "1"),
        ],
    )?;
    let f = open(&zoned.path, true, false)?;
    expect_errno(
        dev.loop_add(f.as_raw_fd(), 0, 0, 0),
        libc::EOPNOTSUPP,
        "stacking on a zoned device",
    )?;
    Ok(())
}

/// How many of 100 `RWF_NOWAIT` direct 4 KiB reads of `path` end with EAGAIN while three
/// threads keep its backing queue busy with blocking reads; any other error fails.
fn nowait_eagains(path: &str) -> Result<usize> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let loaders: Vec<_> = (0..3)
            .map(|_| {
                let stop = &stop;
                sc.spawn(move || -> Result<()> {
                    let f = open(path, false, true)?;
                    let mut m = pindio::Buf::with_flags(4096, 0)?;
                    while !stop.load(Ordering::Relaxed) {
                        f.read_exact_at(m.bytes(), 0)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let counted = (|| -> Result<usize> {
            std::thread::sleep(Duration::from_millis(50));
            let f = open(path, false, true)?;
            let mut m = pindio::Buf::with_flags(4096, 0)?;
            let iov = libc::iovec {
                iov_base: m.bytes().as_mut_ptr().cast(),
                iov_len: 4096,
            };
            let mut eagain = 0;
            for i in 0..100 {
                // SAFETY: `iov` points to the live 4 KiB buffer `m`.
                let r =
                    unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, i * 4096, libc::RWF_NOWAIT) };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    ensure!(
                        e.raw_os_error() == Some(libc::EAGAIN),
                        "RWF_NOWAIT read: {e}"
                    );
                    eagain += 1;
                } else {
                    ensure!(r == 4096, "RWF_NOWAIT read: {r} bytes");
                }
            }
            Ok(eagain)
        })();
        stop.store(true, Ordering::Relaxed);
        for l in loaders {
            l.join().map_err(|_| anyhow!("a loader panicked"))??;
        }
        counted
    })
}

/// `REQ_NOWAIT` is passed on: on a backing null_blk of one tag whose I/Os take 5 ms, kept busy,
/// `RWF_NOWAIT` reads through the stacked device get EAGAIN, as they do on the null_blk itself,
/// rather than a sleep for the tag.
pub fn nowait_reads_eagain() -> Result<()> {
    let dev = device()?;
    let nb = NullBlk::new(
        "nullb-nowait",
        &[
            ("size", "64"),
            ("hw_queue_depth", "1"),
            ("submit_queues", "1"),
            ("irqmode", "2"),
            ("completion_nsec", "5000000"),
        ],
    )?;
    let raw = nowait_eagains(&nb.path)?;
    ensure!(
        raw > 0,
        "the null_blk itself gave no EAGAIN: the load does not hold its tag"
    );
    let s = Stacked::add(&dev, &nb.path, 0, 0, 0)?;
    let p = s.path();
    let stacked = watchdog(120, "RWF_NOWAIT reads under load", move || {
        nowait_eagains(&p)
    })?;
    ensure!(
        stacked > 0,
        "no EAGAIN through the stacked device (null_blk itself: {raw} of 100)"
    );
    s.del()
}

/// BLKDISCARD = _IO(0x12, 119), BLKZEROOUT = _IO(0x12, 127): on `[off, off + len)` of `path`.
fn discard_ioctl(path: &str, nr: u64, off: u64, len: u64) -> std::io::Result<()> {
    let f = open(path, true, false).map_err(std::io::Error::other)?;
    let range = [off, len];
    // SAFETY: both ioctls read two u64s.
    if unsafe { libc::ioctl(f.as_raw_fd(), (0x12 << 8) | nr, range.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Discard and write-zeroes through a window 1 MiB into a null_blk that discards: they reach
/// exactly the window's bytes (zero on the null_blk afterwards), the canaries on both sides and
/// between stay; past the window's end they are refused (EINVAL, the kernel's check of the
/// stacked disk's size); secure erase, which the null_blk does not have, is not offered
/// (EOPNOTSUPP). Write-zeroes proper, on vda, which has them, lands exactly in the window too.
pub fn discard_and_write_zeroes_in_window() -> Result<()> {
    let dev = device()?;
    let nb = NullBlk::new(
        "nullb-discard",
        &[("size", "16"), ("memory_backed", "1"), ("discard", "1")],
    )?;
    let (base, len) = (MIB as u64, 4 * MIB as u64);
    let canary = pattern(0x44, 6 * MIB);
    pwrite_direct(&nb.path, 0, &canary)?;
    let s = Stacked::add(&dev, &nb.path, base, len, 0)?;
    let path = s.path();
    ensure!(
        queue_attr(&path, "discard_max_bytes")? != "0",
        "discard not passed on"
    );
    let check = |zero: std::ops::Range<usize>, what: &str| -> Result<()> {
        let got = pread_direct(&nb.path, 0, 6 * MIB)?;
        for (i, (g, c)) in got.iter().zip(&canary).enumerate() {
            let want = if zero.contains(&i) { 0 } else { *c };
            ensure!(
                *g == want,
                "{what}: byte {i} of the null_blk is {g:#x}, not {want:#x}"
            );
        }
        Ok(())
    };
    discard_ioctl(&path, 127, 512 * KIB as u64, 64 * KIB as u64).context("BLKZEROOUT")?;
    check(1536 * KIB..1600 * KIB, "write zeroes")?;
    discard_ioctl(&path, 119, 0, len).context("BLKDISCARD")?;
    check(MIB..5 * MIB, "discard")?;
    expect_errno(
        discard_ioctl(&path, 119, 3 * MIB as u64, 2 * MIB as u64),
        libc::EINVAL,
        "discard past the end",
    )?;
    expect_errno(
        discard_ioctl(&path, 127, len, 4096),
        libc::EINVAL,
        "zeroout past the end",
    )?;
    // BLKSECDISCARD = _IO(0x12, 125).
    expect_errno(
        discard_ioctl(&path, 125, 0, 4096),
        libc::EOPNOTSUPP,
        "secure erase",
    )?;
    check(MIB..5 * MIB, "after the refused ones")?;
    s.del()?;
    // Write-zeroes as such (null_blk has none, so BLKZEROOUT above wrote zero pages): vda's
    // REQ_OP_WRITE_ZEROES, traced as `WZ` on both devices, zeroes exactly the window's bytes.
    let wz = queue_attr(VDA, "write_zeroes_max_bytes")?;
    ensure!(wz != "0", "vda has no write-zeroes");
    let vbase = 40 * MIB as u64;
    let s = Stacked::add(&dev, VDA, vbase, 4 * MIB as u64, 0)?;
    let path = s.path();
    ensure!(
        queue_attr(&path, "write_zeroes_max_bytes")? == wz,
        "write-zeroes limit not stacked"
    );
    let canary = pattern(0x45, 2 * MIB);
    pwrite_direct(VDA, vbase - MIB as u64, &canary)?;
    let bios = queued_bios(&[&path, VDA], || {
        discard_ioctl(&path, 127, 512 * KIB as u64, 64 * KIB as u64).context("BLKZEROOUT")?;
        Ok(())
    })?;
    ensure!(
        bios.iter()
            .all(|b| b.iter().any(|(r, ..)| r.starts_with("WZ"))),
        "no write-zeroes bio on both devices: {bios:?}"
    );
    let got = pread_direct(VDA, vbase - MIB as u64, 2 * MIB)?;
    for (i, (g, c)) in got.iter().zip(&canary).enumerate() {
        let want = if (1536 * KIB..1600 * KIB).contains(&i) {
            0
        } else {
            *c
        };
        ensure!(
            *g == want,
            "vda write zeroes: byte {i} is {g:#x}, not {want:#x}"
        );
    }
    s.del()
}

/// Drops `CAP_SYS_ADMIN` from the calling task's effective and permitted sets (`capset`),
/// keeping its uid and every other capability. For a forked child only.
///
/// # Safety
///
/// Plain system calls; the caller is a child that exits after it.
unsafe fn drop_cap_sys_admin() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two Data, capabilities 0-31 and 32-63.
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget writes two Data through a pointer to two of them.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        return false;
    }
    // CAP_SYS_ADMIN, capability 21 (<linux/capability.h>).
    let bit = 1u32 << 21;
    d[0].effective &= !bit;
    d[0].permitted &= !bit;
    // SAFETY: capset reads the header and two Data.
    unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) == 0 }
}

/// In a forked child that first gives up its privilege with `unprivilege`: `LOOP_ADD` of `fd`
/// and `LOOP_DEL` of `index` must be EPERM, `LOOP_INFO` must answer. The child's exit status.
fn unprivileged_child(dev: &Device, fd: i32, index: u32, unprivilege: fn() -> bool) -> Result<()> {
    // SAFETY: The child only makes system calls and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = if !unprivilege() {
            10
        } else {
            let add = dev.loop_add(fd, 0, 0, 0).map_err(|e| e.raw_os_error());
            let del = dev.loop_del(index).map_err(|e| e.raw_os_error());
            let info = dev.loop_info(index).is_ok();
            match (add, del, info) {
                (Err(Some(libc::EPERM)), Err(Some(libc::EPERM)), true) => 0,
                (Ok(_), _, _) => 11,
                (_, Ok(()), _) => 12,
                (_, _, false) => 13,
                _ => 14,
            }
        };
        // SAFETY: Leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    ensure!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waits for the child made above.
    ensure!(unsafe { libc::waitpid(pid, &mut status, 0) } == pid);
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x} (10 could not drop privilege, 11 added, 12 removed, \
         13 no info, 14 other errno)"
    );
    Ok(())
}

/// `LOOP_ADD` and `LOOP_DEL` need `CAP_SYS_ADMIN`, as device mapper's ioctls do: a process
/// holding `/dev/pindio` and a block device open gets EPERM from both, and changes nothing, when
/// it is root without `CAP_SYS_ADMIN` and when it dropped to nobody; `LOOP_INFO` still answers.
pub fn unprivileged_refused() -> Result<()> {
    let dev = device()?;
    let s = Stacked::add(&dev, NULLB, 0, MIB as u64, 0)?;
    let f = open(NULLB, true, false)?;
    // SAFETY: in the forked child only.
    unprivileged_child(&dev, f.as_raw_fd(), s.index(), || unsafe {
        drop_cap_sys_admin()
    })
    .context("root without CAP_SYS_ADMIN")?;
    unprivileged_child(&dev, f.as_raw_fd(), s.index(), || {
        // SAFETY: plain system calls in the forked child.
        unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(65534) == 0
                && libc::setuid(65534) == 0
        }
    })
    .context("nobody")?;
    ensure!(dev.loop_info(s.index()).is_ok(), "the device is gone");
    ensure!(dev.loops()?.len() == 1, "a device was added");
    s.del()
}

/// Whether a `rwbs` string is of one kind of bio.
type RwbsTest = fn(&str) -> bool;

/// Every bio reaches the backing device with the flags it had, as far as the block tracepoint
/// shows them (preflush, operation, FUA, readahead, sync, meta): for each bio queued to the
/// stacked device (readahead `RA`, synchronous `WS`, FUA `WFS`, flushes `FWS`, ext4's metadata
/// `RM`/`WM`, ...), one is queued to the backing device at the window's offset with the same
/// size and the same flags, and nothing else is. (The clone copies `bi_opf` whole, so the flags
/// the tracepoint does not show, `REQ_PRIO`, `IDLE`, `NOWAIT`, ..., go with it; `NOWAIT` has a
/// case of its own.)
pub fn request_flags_kept() -> Result<()> {
    let dev = device()?;
    let nb = NullBlk::new(
        "nullb-flags",
        &[
            ("size", "128"),
            ("memory_backed", "1"),
            ("cache_size", "16"),
        ],
    )?;
    let start = MIB as u64;
    let s = Stacked::add(&dev, &nb.path, start, 0, 0)?;
    let path = s.path();
    let mnt = "/tmp/pindio-flags";
    let _ = fs::create_dir(mnt);
    let bios = queued_bios(&[&path, &nb.path], || {
        let _ = super::loop_tests::drop_caches(&path);
        let f = open(&path, false, false)?;
        let mut b = vec![0; 512 * KIB];
        f.read_exact_at(&mut b, 0)?;
        pwrite_direct(&path, 2 * MIB as u64, &pattern(1, 64 * KIB))?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let f = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                .open(&path)?;
            let mut m = pindio::Buf::with_flags(64 * KIB, 0)?;
            m.bytes().fill(3);
            f.write_all_at(m.bytes(), 4 * MIB as u64)?;
        }
        pindio::host::run("mkfs.ext4", &["-q", "-F", "-E", "nodiscard", &path])?;
        pindio::host::run("mount", &["-t", "ext4", &path, mnt])?;
        let w = fs::write(format!("{mnt}/f"), pattern(2, 256 * KIB)).context("write a file");
        let synced = pindio::host::run("sync", &[]);
        let u = pindio::host::run("umount", &[mnt]);
        w?;
        synced?;
        u?;
        Ok(())
    })?;
    let (above, below) = (&bios[0], &bios[1]);
    let mut rest = below.clone();
    for (rwbs, sector, n) in above {
        let want = (rwbs.clone(), sector + (start >> 9), *n);
        let Some(i) = rest.iter().position(|b| *b == want) else {
            bail!("bio {rwbs} {sector} + {n} of the stacked device: no {want:?} on the backing device");
        };
        rest.swap_remove(i);
    }
    ensure!(
        rest.is_empty(),
        "bios on the backing device that the stacked device had not: {rest:?}"
    );
    let kinds: [(RwbsTest, &str); 5] = [
        (|r: &str| r.starts_with('R') && r.contains('A'), "readahead"),
        (|r: &str| r.starts_with('F'), "a flush"),
        (
            |r: &str| r.starts_with('W') && r[1..].starts_with('F'),
            "a FUA write",
        ),
        (|r: &str| r.ends_with('M'), "metadata"),
        (|r: &str| r == "WS", "a synchronous write"),
    ];
    for (flag, what) in kinds {
        ensure!(
            above.iter().any(|(r, ..)| flag(r)),
            "the workload made no {what} bio: {above:?}"
        );
    }
    s.del()
}
