// SPDX-License-Identifier: GPL-2.0

//! Tests of direct I/O through the device: PINDIO_IOC_DIO and PINDIO_IOC_DIO_BATCH against the
//! guest's block devices (see scripts/guest-init): null_blk with memory (nullb0), null_blk with
//! bad sectors (nullb2), a virtio-blk disk (vda) and a read-only one (vdb).

use super::{device, expect_errno, pin_tests::pattern};
use anyhow::{bail, ensure, Context, Result};
use pindio::{dio_req, uapi, Buf, Device, DioMem, ExtStruct};
use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    ptr,
    sync::atomic::{AtomicBool, Ordering},
};

const PAGE: usize = 4096;
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Memory-backed null_blk: what is written can be read back.
const NULLB: &str = "/dev/nullb0";
/// Memory-backed null_blk whose sectors 2048-2055 fail.
const NULLB_BAD: &str = "/dev/nullb2";
/// virtio-blk on an image file, read-write.
const VDA: &str = "/dev/vda";
/// virtio-blk, read-only.
const VDB: &str = "/dev/vdb";
/// virtio-blk throttled to 5 I/Os a second.
const SLOW: &str = "/dev/vdc";

pub(super) fn open(path: &str, write: bool, direct: bool) -> Result<File> {
    pindio::open_blockdev(path, write, direct)
}

/// The size of a block device in bytes (BLKGETSIZE64).
pub(super) fn dev_size(f: &File) -> Result<u64> {
    let mut size = 0u64;
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    let cmd = (2 << 30) | (8 << 16) | (0x12 << 8) | 114;
    // SAFETY: BLKGETSIZE64 writes one u64 to `size`.
    if unsafe { libc::ioctl(f.as_raw_fd(), cmd as libc::c_ulong, &mut size as *mut u64) } < 0 {
        return Err(io::Error::last_os_error()).context("BLKGETSIZE64");
    }
    Ok(size)
}

/// One direct I/O through the device.
fn dio(dev: &Device, f: &File, write: bool, off: u64, mem: DioMem<'_>) -> io::Result<usize> {
    let mut req = dio_req(f.as_raw_fd(), write, off, mem);
    dev.dio(&mut req)
}

/// `len` bytes at `off` of `path`, read with O_DIRECT (pread) into aligned memory.
pub(super) fn pread_direct(path: &str, off: u64, len: usize) -> Result<Vec<u8>> {
    let f = open(path, false, true)?;
    let mut m = Buf::with_flags(len.next_multiple_of(PAGE), 0)?;
    f.read_exact_at(&mut m.bytes()[..len], off)
        .context("pread O_DIRECT")?;
    Ok(m.bytes()[..len].to_vec())
}

/// `data` written at `off` of `path` with O_DIRECT (pwrite) from aligned memory.
pub(super) fn pwrite_direct(path: &str, off: u64, data: &[u8]) -> Result<()> {
    let f = open(path, true, true)?;
    let mut m = Buf::with_flags(data.len().next_multiple_of(PAGE), 0)?;
    m.bytes()[..data.len()].copy_from_slice(data);
    f.write_all_at(&m.bytes()[..data.len()], off)
        .context("pwrite O_DIRECT")
}

/// `len` bytes at `off` of `path` through the page cache.
pub(super) fn pread_buffered(path: &str, off: u64, len: usize) -> Result<Vec<u8>> {
    let f = open(path, false, false)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off).context("buffered pread")?;
    Ok(buf)
}

/// Writes `data` through pindio at `off` from memory `mem_off` bytes into a fresh mapping, then
/// reads it back with pread(O_DIRECT) and buffered; then writes other data with
/// pwrite(O_DIRECT) and reads it back through pindio.
fn round_trip(dev: &Device, path: &str, off: u64, len: usize, mem_off: usize) -> Result<()> {
    let what = format!("{path}: {len} bytes at {off}, memory offset {mem_off}");
    let f = open(path, true, false)?;
    let mut m = Buf::with_flags((mem_off + len).next_multiple_of(PAGE), 0)?;
    let data = pattern((len / 512) as u8, len);
    m.bytes()[mem_off..mem_off + len].copy_from_slice(&data);
    let n = dio(dev, &f, true, off, DioMem::Buf(m.addr() + mem_off, len))
        .with_context(|| format!("pindio write, {what}"))?;
    ensure!(n == len, "pindio write returned {n}, {what}");
    ensure!(
        pread_direct(path, off, len)? == data,
        "pread(O_DIRECT) after a pindio write differs, {what}"
    );
    ensure!(
        pread_buffered(path, off, len)? == data,
        "buffered read after a pindio write differs, {what}"
    );
    let other = pattern(0x5a, len);
    pwrite_direct(path, off, &other)?;
    m.bytes().fill(0);
    let n = dio(dev, &f, false, off, DioMem::Buf(m.addr() + mem_off, len))
        .with_context(|| format!("pindio read, {what}"))?;
    ensure!(n == len, "pindio read returned {n}, {what}");
    ensure!(
        m.bytes()[mem_off..mem_off + len] == other[..],
        "pindio read after pwrite(O_DIRECT) differs, {what}"
    );
    Ok(())
}

pub fn round_trip_null_blk() -> Result<()> {
    let dev = device()?;
    for (i, len) in [512, 4 * KIB, 64 * KIB, MIB, 8 * MIB]
        .into_iter()
        .enumerate()
    {
        // Aligned and 512 bytes into a page (the DMA alignment is 512).
        round_trip(&dev, NULLB, (i * 16 * MIB) as u64, len, 0)?;
        round_trip(&dev, NULLB, (i * 16 * MIB + 8 * MIB + 512) as u64, len, 512)?;
    }
    Ok(())
}

pub fn round_trip_virtio_blk() -> Result<()> {
    let dev = device()?;
    let size = dev_size(&open(VDA, false, false)?)?;
    for (i, len) in [512, 4 * KIB, 64 * KIB, MIB, 8 * MIB]
        .into_iter()
        .enumerate()
    {
        round_trip(&dev, VDA, (i * 9 * MIB + 512) as u64, len, 3584)?;
    }
    // The last block of the device, and the last 64 KiB.
    round_trip(&dev, VDA, size - 512, 512, 0)?;
    round_trip(&dev, VDA, size - 64 * KIB as u64, 64 * KIB, 1024)
}

/// `(memory offset, length)` segments of uneven sizes, all multiples of 512 at 512-byte aligned
/// addresses, crossing pages in several ways.
const UNEVEN: &[(usize, usize)] = &[
    (512, 512),
    (PAGE + 3584, 1536),
    (4 * PAGE + 1024, PAGE + 1024),
    (8 * PAGE, 8 * PAGE),
    (17 * PAGE + 512, 512),
    (20 * PAGE + 2048, 3 * PAGE + 2048),
];

fn iovecs(base: usize, segs: &[(usize, usize)]) -> Vec<libc::iovec> {
    segs.iter()
        .map(|&(off, len)| libc::iovec {
            iov_base: (base + off) as *mut libc::c_void,
            iov_len: len,
        })
        .collect()
}

pub fn iovec_uneven_segments() -> Result<()> {
    let dev = device()?;
    for path in [NULLB, VDA] {
        let f = open(path, true, false)?;
        let mut m = Buf::with_flags(32 * PAGE, 0)?;
        let total: usize = UNEVEN.iter().map(|s| s.1).sum();
        let data = pattern(0x33, total);
        let mut at = 0;
        for &(off, len) in UNEVEN {
            m.bytes()[off..off + len].copy_from_slice(&data[at..at + len]);
            at += len;
        }
        let iov = iovecs(m.addr(), UNEVEN);
        let off = 3 * MIB as u64 + 1536;
        let n = dio(&dev, &f, true, off, DioMem::Iovec(&iov)).context("iovec write")?;
        ensure!(
            n == total,
            "{path}: iovec write returned {n}, expected {total}"
        );
        ensure!(
            pread_direct(path, off, total)? == data,
            "{path}: the device does not hold the iovec's bytes in order"
        );
        // Read it back into the same uneven shape.
        m.bytes().fill(0);
        let n = dio(&dev, &f, false, off, DioMem::Iovec(&iov)).context("iovec read")?;
        ensure!(n == total, "{path}: iovec read returned {n}");
        let mut at = 0;
        for &(off, len) in UNEVEN {
            ensure!(
                m.bytes()[off..off + len] == data[at..at + len],
                "{path}: segment at {off} read back wrong"
            );
            at += len;
        }
    }
    Ok(())
}

pub fn last_block_and_past_the_end() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let size = dev_size(&f)?;
    let mut m = Buf::with_flags(2 * PAGE, 0)?;
    m.bytes().fill(0x77);
    let n = dio(&dev, &f, true, size - 512, DioMem::Buf(m.addr(), 512))?;
    ensure!(n == 512, "last block: {n}");
    ensure!(pread_direct(NULLB, size - 512, 512)?
        .iter()
        .all(|&b| b == 0x77));
    for (off, len, what) in [
        (size - 512, 1024, "across the end"),
        (size, 512, "at the end"),
        (size + 4096, 512, "past the end"),
        (u64::MAX - 511, 1024, "offset + length overflows"),
    ] {
        expect_errno(
            dio(&dev, &f, false, off, DioMem::Buf(m.addr(), len)),
            libc::EINVAL,
            what,
        )?;
    }
    Ok(())
}

pub fn page_cache_coherency() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let off = 40 * MIB as u64;
    let len = 64 * KIB;
    let mut m = Buf::with_flags(len, 0)?;
    // A buffered write, not flushed: a pindio read must see it (written back first).
    let data = pattern(0x11, len);
    f.write_all_at(&data, off).context("buffered write")?;
    let n = dio(&dev, &f, false, off, DioMem::Buf(m.addr(), len))?;
    ensure!(
        n == len && m.bytes()[..] == data[..],
        "pindio read missed a buffered write"
    );
    // A cached range, then a pindio write: a buffered read must see the new data.
    ensure!(
        pread_buffered(NULLB, off, len)? == data,
        "buffered read before"
    );
    let new = pattern(0x22, len);
    m.bytes().copy_from_slice(&new);
    dio(&dev, &f, true, off, DioMem::Buf(m.addr(), len))?;
    ensure!(
        f.read_exact_at(&mut vec![0; len], off).is_ok() && pread_buffered(NULLB, off, len)? == new,
        "buffered read after a pindio write shows stale cached data"
    );
    // A buffered write, not flushed, then a pindio write of the same range: the dirty cached
    // pages must be written back before the direct write, or their writeback (or the
    // invalidation after the write, which launders them) would land on top of it.
    let old = pattern(0x33, len);
    f.write_all_at(&old, off).context("buffered write")?;
    let new = pattern(0x44, len);
    m.bytes().copy_from_slice(&new);
    dio(&dev, &f, true, off, DioMem::Buf(m.addr(), len))?;
    f.sync_all()?;
    ensure!(
        pread_direct(NULLB, off, len)? == new,
        "a dirty cached page written back over a pindio write"
    );
    ensure!(
        pread_buffered(NULLB, off, len)? == new,
        "buffered read after a pindio write over dirty cache shows the old data"
    );
    Ok(())
}

/// A `struct pindio_dio` with everything valid for a 4 KiB read of `f` into `m`.
fn good_req(f: &File, m: &Buf) -> uapi::pindio_dio {
    dio_req(f.as_raw_fd(), false, 0, DioMem::Buf(m.addr(), 4096))
}

pub fn bad_arguments() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let m = Buf::with_flags(4 * PAGE, 0)?;
    let e = |req: uapi::pindio_dio, errno: i32, what: &str| {
        let mut req = req;
        expect_errno(dev.dio(&mut req), errno, what)
    };
    let good = good_req(&f, &m);
    e(
        uapi::pindio_dio {
            flags: 1 << 7,
            ..good
        },
        libc::EINVAL,
        "unknown flag",
    )?;
    e(
        uapi::pindio_dio {
            flags: uapi::PINDIO_DIO_FUA,
            ..good
        },
        libc::EINVAL,
        "FUA on a read",
    )?;
    e(
        uapi::pindio_dio {
            reserved: 1,
            ..good
        },
        libc::EINVAL,
        "reserved",
    )?;
    e(
        uapi::pindio_dio { len: 0, ..good },
        libc::EINVAL,
        "zero length",
    )?;
    e(
        uapi::pindio_dio {
            offset: 100,
            ..good
        },
        libc::EINVAL,
        "misaligned offset",
    )?;
    e(
        uapi::pindio_dio { len: 4000, ..good },
        libc::EINVAL,
        "misaligned length",
    )?;
    // null_blk asks for 2-byte DMA alignment (dma_alignment 1): an odd address is misaligned.
    e(
        uapi::pindio_dio {
            buf: good.buf + 1,
            ..good
        },
        libc::EINVAL,
        "misaligned buffer",
    )?;
    e(
        uapi::pindio_dio {
            buf: u64::MAX - 100,
            ..good
        },
        libc::EINVAL,
        "buf + len overflows",
    )?;
    e(
        uapi::pindio_dio { buf: 0, ..good },
        libc::EFAULT,
        "null buffer",
    )?;
    e(
        uapi::pindio_dio {
            buf: 0xffff_8000_0000_0000,
            ..good
        },
        libc::EFAULT,
        "kernel buffer",
    )?;
    // Misaligned iovec segments: an address, then a length.
    let iov = iovecs(m.addr(), &[(0, 512), (PAGE + 1, 512)]);
    let mut req = dio_req(f.as_raw_fd(), false, 0, DioMem::Iovec(&iov));
    expect_errno(
        dev.dio(&mut req),
        libc::EINVAL,
        "misaligned segment address",
    )?;
    let iov = iovecs(m.addr(), &[(0, 1000), (PAGE, 24)]);
    let mut req = dio_req(f.as_raw_fd(), false, 0, DioMem::Iovec(&iov));
    expect_errno(
        dev.dio(&mut req),
        libc::EINVAL,
        "segment length not a block multiple",
    )?;
    let many = vec![iov[0]; 1025];
    let mut req = dio_req(f.as_raw_fd(), false, 0, DioMem::Iovec(&many));
    expect_errno(
        dev.dio(&mut req),
        libc::EINVAL,
        "more than UIO_MAXIOV segments",
    )?;
    // Files: not open, not a block device, opened the wrong way.
    e(uapi::pindio_dio { fd: -1, ..good }, libc::EBADF, "fd -1")?;
    e(
        uapi::pindio_dio { fd: 999, ..good },
        libc::EBADF,
        "fd not open",
    )?;
    std::fs::write("/tmp/pindio-regular", [0u8; 8192])?;
    let regular = open("/tmp/pindio-regular", true, false)?;
    e(
        uapi::pindio_dio {
            fd: regular.as_raw_fd(),
            ..good
        },
        libc::ENOTBLK,
        "regular file",
    )?;
    let chr = open(pindio::DEVICE_PATH, true, false)?;
    e(
        uapi::pindio_dio {
            fd: chr.as_raw_fd(),
            ..good
        },
        libc::ENOTBLK,
        "character device",
    )?;
    let ro = open(NULLB, false, false)?;
    let write = uapi::pindio_dio {
        fd: ro.as_raw_fd(),
        flags: uapi::PINDIO_DIO_WRITE,
        ..good
    };
    e(write, libc::EBADF, "write through a read-only fd")?;
    let wo = OpenOptions::new().write(true).open(NULLB)?;
    e(
        uapi::pindio_dio {
            fd: wo.as_raw_fd(),
            ..good
        },
        libc::EBADF,
        "read through a write-only fd",
    )?;
    // The read-only disk: no write access through an fd opened read-only either.
    let vdb = open(VDB, false, false)?;
    let write = uapi::pindio_dio {
        fd: vdb.as_raw_fd(),
        flags: uapi::PINDIO_DIO_WRITE,
        ..good
    };
    e(write, libc::EBADF, "write to the read-only disk")?;
    let n = dio(&dev, &vdb, false, 0, DioMem::Buf(m.addr(), 4096)).context("read-only disk")?;
    ensure!(n == 4096, "read from the read-only disk: {n}");
    Ok(())
}

/// A write to the read-only disk opened for writing (if the kernel lets it be opened so).
pub fn read_only_disk() -> Result<()> {
    let dev = device()?;
    let m = Buf::with_flags(PAGE, 0)?;
    match OpenOptions::new().read(true).write(true).open(VDB) {
        Err(err) => ensure!(
            err.raw_os_error() == Some(libc::EACCES) || err.raw_os_error() == Some(libc::EROFS),
            "open of the read-only disk for writing: {err}"
        ),
        Ok(f) => expect_errno(
            dio(&dev, &f, true, 0, DioMem::Buf(m.addr(), 4096)),
            libc::EPERM,
            "write to a read-only disk",
        )?,
    }
    Ok(())
}

pub fn device_error_eio() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB_BAD, true, false)?;
    let mut m = Buf::with_flags(8 * MIB, 0)?;
    m.bytes().fill(1);
    // Sectors 2048-2055 (1 MiB) are bad; an I/O that touches them fails as a whole.
    for (off, len, what) in [
        (MIB as u64, 4096, "read of the bad blocks"),
        (MIB as u64 - 4096, 64 * KIB, "read across them"),
        (0, 8 * MIB, "8 MiB read over them (several bios)"),
    ] {
        expect_errno(
            dio(&dev, &f, false, off, DioMem::Buf(m.addr(), len)),
            libc::EIO,
            what,
        )?;
    }
    expect_errno(
        dio(&dev, &f, true, 0, DioMem::Buf(m.addr(), 2 * MIB)),
        libc::EIO,
        "write over the bad blocks",
    )?;
    // Next to them all is well.
    let n = dio(&dev, &f, false, 2 * MIB as u64, DioMem::Buf(m.addr(), MIB))?;
    ensure!(n == MIB, "good blocks: {n}");
    Ok(())
}

/// A thread unmaps the buffer while another writes it through pindio: the write either
/// completes with the buffer's data (its pages were pinned first) or fails with EFAULT.
pub fn unmap_during_io() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let len = 4 * MIB;
    let off = 64 * MIB as u64;
    let (mut done, mut faulted) = (0, 0);
    for round in 0..40u8 {
        let mut m = Buf::with_flags(len, 0)?;
        let data = pattern(round, len);
        m.bytes().copy_from_slice(&data);
        let (addr, fd) = (m.addr(), f.as_raw_fd());
        let started = AtomicBool::new(false);
        let res = std::thread::scope(|s| {
            let io = s.spawn(|| {
                started.store(true, Ordering::SeqCst);
                let mut req = dio_req(fd, true, off, DioMem::Buf(addr, len));
                dev.dio(&mut req)
            });
            // Every other round unmaps at once (usually before the pin: EFAULT); the others
            // once the I/O started, a little later each round.
            if round % 2 == 1 {
                while !started.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                std::thread::sleep(std::time::Duration::from_micros(u64::from(round) * 20));
            }
            m.unmap();
            io.join()
        })
        .map_err(|_| anyhow::anyhow!("I/O thread panicked"))?;
        match res {
            Ok(n) if n == len => {
                ensure!(
                    pread_direct(NULLB, off, len)? == data,
                    "round {round}: data differs"
                );
                done += 1;
            }
            Err(err) if err.raw_os_error() == Some(libc::EFAULT) => faulted += 1,
            other => bail!("round {round}: {other:?}"),
        }
    }
    println!("# unmap_during_io: {done} completed, {faulted} EFAULT");
    Ok(())
}

/// Loops of David Hildenbrand's O_DIRECT + fork tests (seed 004), with pindio doing the I/O.
/// Tests 1 and 2 are regression tests (they pass with FOLL_GET too on 7.3, docs/testing.md);
/// a round costs about 65 ms under TCG with KASAN and lockdep, most of it fork and exit.
const FORK_ROUNDS: usize = 250;

/// Forks while `io` (of `len` bytes) runs in another thread; the child runs `child` and exits.
fn fork_during(
    len: usize,
    io: impl FnOnce() -> io::Result<usize> + Send,
    child: impl FnOnce(),
) -> Result<()> {
    std::thread::scope(|s| -> Result<()> {
        let t = s.spawn(io);
        // SAFETY: The child only writes memory (and issues syscalls) before _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            child();
            // SAFETY: Leaves the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: Waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let n = t
            .join()
            .map_err(|_| anyhow::anyhow!("I/O thread panicked"))??;
        ensure!(n == len, "I/O returned {n}, expected {len}");
        Ok(())
    })
}

/// Test 1: the parent writes its buffer to the device while it forks and the child writes its
/// copy of the page: the device must receive the parent's data.
pub fn fork_write_child_modifies() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let off = 100 * MIB as u64;
    let mut bad = 0;
    for round in 0..FORK_ROUNDS {
        let mut m = Buf::with_flags(PAGE, 0)?;
        m.bytes().fill(0xaa);
        let (addr, fd) = (m.addr(), f.as_raw_fd());
        fork_during(
            PAGE,
            || dev.dio(&mut dio_req(fd, true, off, DioMem::Buf(addr, PAGE))),
            // SAFETY: The child's copy of the page.
            || unsafe { ptr::write_bytes(addr as *mut u8, 0xcc, PAGE) },
        )?;
        if pread_direct(NULLB, off, PAGE)?.iter().any(|&b| b != 0xaa) {
            bad += 1;
            println!("# round {round}: the device got the child's data");
        }
    }
    ensure!(bad == 0, "{bad} of {FORK_ROUNDS} rounds corrupted");
    Ok(())
}

/// Test 2: the child writes the (shared) page to the device while the parent writes the page:
/// the device must receive the data the child saw, not the parent's new data.
pub fn fork_child_writes_parent_modifies() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let off = 101 * MIB as u64;
    let mut bad = 0;
    for round in 0..FORK_ROUNDS {
        let mut m = Buf::with_flags(PAGE, 0)?;
        m.bytes().fill(0xaa);
        pwrite_direct(NULLB, off, &[0u8; PAGE])?;
        let (addr, fd) = (m.addr(), f.as_raw_fd());
        // SAFETY: The child only issues the ioctl and exits with its status.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            let ok = dev
                .dio(&mut dio_req(fd, true, off, DioMem::Buf(addr, PAGE)))
                .is_ok();
            // SAFETY: Leaves the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        m.bytes().fill(0xcc);
        let mut status = 0;
        // SAFETY: Waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ensure!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child's I/O failed"
        );
        if pread_direct(NULLB, off, PAGE)?.iter().any(|&b| b != 0xaa) {
            bad += 1;
            println!("# round {round}: the device got the parent's new data");
        }
    }
    ensure!(bad == 0, "{bad} of {FORK_ROUNDS} rounds corrupted");
    Ok(())
}

/// Rounds of [`fork_read_parent_touches`]: each holds an I/O on the throttled disk (200 ms).
const SLOW_FORK_ROUNDS: usize = 5;

/// Test 3: a read into the parent's buffer is in flight (on the throttled disk, so for about
/// 200 ms) when the parent forks and then writes elsewhere in the page. The read must land in
/// the parent's page. With FOLL_PIN, fork sees the pinned page and gives the child a copy at
/// once, so the parent keeps the page under I/O; with a mere reference (FOLL_GET) fork shares
/// the page, the parent's write copies it away, and the read lands in the child's page. The
/// child stays alive, blocked on a pipe, until the read is done, so its copy stays mapped.
pub fn fork_read_parent_touches() -> Result<()> {
    let dev = device()?;
    let f = open(SLOW, true, false)?;
    let off = 4096;
    pwrite_direct(SLOW, off, &[0x5au8; 512])?;
    let mut bad = 0;
    for round in 0..SLOW_FORK_ROUNDS {
        let mut m = Buf::new(PAGE)?;
        m.bytes().fill(0);
        let (addr, fd) = (m.addr(), f.as_raw_fd());
        let mut pipe = [0; 2];
        // SAFETY: `pipe` has room for the two descriptors.
        ensure!(unsafe { libc::pipe(pipe.as_mut_ptr()) } == 0, "pipe");
        let before = pindio::foll_pin_counts()?;
        let res = std::thread::scope(|s| -> Result<()> {
            let t = s.spawn(|| dev.dio(&mut dio_req(fd, false, off, DioMem::Buf(addr, 512))));
            // Until the page is pinned (or 100 ms, if pins are not counted).
            let t0 = std::time::Instant::now();
            while pindio::foll_pin_counts()?.0 == before.0
                && t0.elapsed() < std::time::Duration::from_millis(100)
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            // SAFETY: The child only blocks on the pipe and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let mut b = 0u8;
                // SAFETY: Reads one byte into `b`; leaves the child at once after.
                unsafe {
                    libc::read(pipe[0], (&mut b as *mut u8).cast(), 1);
                    libc::_exit(0)
                };
            }
            ensure!(pid > 0, "fork: {}", io::Error::last_os_error());
            // The parent writes its page while the read is in flight.
            // SAFETY: The parent's own mapping, outside the I/O range.
            unsafe { ptr::write_volatile((addr + PAGE - 1) as *mut u8, 1) };
            let n = t
                .join()
                .map_err(|_| anyhow::anyhow!("I/O thread panicked"))?;
            // SAFETY: Releases the child, then waits for it.
            unsafe {
                libc::write(pipe[1], [0u8].as_ptr().cast(), 1);
                libc::waitpid(pid, ptr::null_mut(), 0);
            }
            ensure!(n? == 512, "read returned the wrong length");
            Ok(())
        });
        // SAFETY: Our own pipe.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        res?;
        if m.bytes()[..512].iter().any(|&b| b != 0x5a) {
            bad += 1;
            println!("# round {round}: the read did not land in the parent's page");
        }
    }
    ensure!(bad == 0, "{bad} of {SLOW_FORK_ROUNDS} rounds lost the read");
    Ok(())
}

pub fn batch_mixed_with_one_bad() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let fd = f.as_raw_fd();
    let len = 16 * KIB;
    let base = 120 * MIB as u64;
    let mut m = Buf::with_flags(32 * len, 0)?;
    // Regions the reads will read, written first.
    for i in 0..16 {
        pwrite_direct(
            NULLB,
            base + (16 + i) as u64 * len as u64,
            &pattern(100 + i as u8, len),
        )?;
    }
    for i in 0..16 {
        m.bytes()[i * len..(i + 1) * len].copy_from_slice(&pattern(i as u8, len));
    }
    let mut reqs: Vec<_> = (0..32)
        .map(|i| {
            let off = base + i as u64 * len as u64;
            dio_req(fd, i < 16, off, DioMem::Buf(m.addr() + i * len, len))
        })
        .collect();
    // One bad request: a misaligned device offset.
    reqs[7].offset += 100;
    for r in reqs.iter_mut() {
        r.result = 12345;
    }
    dev.dio_batch(&mut reqs).context("PINDIO_IOC_DIO_BATCH")?;
    for (i, r) in reqs.iter().enumerate() {
        if i == 7 {
            ensure!(
                r.result == -(libc::EINVAL as i64),
                "bad request: result {}",
                r.result
            );
        } else {
            ensure!(r.result == len as i64, "request {i}: result {}", r.result);
        }
    }
    for i in 0..16 {
        let off = base + i as u64 * len as u64;
        if i != 7 {
            ensure!(
                pread_direct(NULLB, off, len)? == pattern(i as u8, len),
                "write {i} differs"
            );
        }
        ensure!(
            m.bytes()[(16 + i) * len..(17 + i) * len] == pattern(100 + i as u8, len)[..],
            "read {} differs",
            16 + i
        );
    }
    // The call's own bad arguments.
    let mut one = [dio_req(fd, false, 0, DioMem::Buf(m.addr(), 4096))];
    expect_errno(dev.dio_batch(&mut one[..0]), libc::EINVAL, "empty batch")?;
    let mut many = vec![one[0]; uapi::PINDIO_DIO_BATCH_MAX as usize + 1];
    expect_errno(dev.dio_batch(&mut many), libc::EINVAL, "too many requests")?;
    Ok(())
}

/// `PINDIO_IOC_DIO_BATCH` over the raw bytes `array`: `nr` entries `stride` bytes apart.
fn dio_batch_raw(dev: &Device, array: *mut u8, nr: u32, stride: u32) -> io::Result<()> {
    let mut batch = uapi::pindio_dio_batch::sized();
    batch.nr = nr;
    batch.reqs = array as u64;
    batch.entry_size = stride;
    dev.ioctl(uapi::PINDIO_IOC_DIO_BATCH, &mut batch).map(drop)
}

/// Writes `req` as the raw entry at `at`.
///
/// # Safety
///
/// `at` is valid for writes of `size_of::<pindio_dio>()` bytes.
unsafe fn put_entry(at: *mut u8, req: &uapi::pindio_dio) {
    // SAFETY: By the function's safety requirements.
    unsafe { ptr::copy_nonoverlapping(ptr::from_ref(req).cast::<u8>(), at, size_of_val(req)) };
}

pub fn batch_array_is_read_whole_before_anything_starts() -> Result<()> {
    // The header: "Errors of the call itself (no request is started): EFAULT any byte of the
    // array cannot be read". An array whose entries 0..N-1 are readable and whose entry N runs
    // into an unmapped page must fail whole: no write reaches the device, no result is written.
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let fd = f.as_raw_fd();
    let entry = size_of::<uapi::pindio_dio>();
    let base = 130 * MIB as u64;
    let data = Buf::with_flags(8 * PAGE, 0)?;
    // SAFETY: Our own mapping of 8 pages.
    unsafe { ptr::write_bytes(data.addr() as *mut u8, 0xa5, 8 * PAGE) };
    let mut arr = Buf::with_flags(2 * PAGE, 0)?;
    let readable = PAGE / entry; // whole entries in the first page
    for (n_ok, straddle) in [
        (readable - 1, true),
        (readable, false),
        (1, false),
        (0, false),
    ] {
        pwrite_direct(NULLB, base, &vec![0u8; 8 * PAGE])?;
        // The array ends so that entry `n_ok` starts `entry / 2` bytes before the hole (it
        // straddles it) or right at it.
        let hole = arr.addr() + PAGE;
        let start = hole - n_ok * entry - if straddle { entry / 2 } else { 0 };
        // SAFETY: Remap the second page, write entries into the first, unmap the second.
        unsafe {
            let p = libc::mmap(
                hole as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            ensure!(p as usize == hole, "remap the second page");
            for i in 0..n_ok + 1 {
                let mut r = dio_req(
                    fd,
                    true,
                    base + (i * PAGE) as u64 % (8 * PAGE) as u64,
                    DioMem::Buf(data.addr(), PAGE),
                );
                r.result = 12345;
                let at = start + i * entry;
                if at + entry <= hole + PAGE {
                    put_entry(at as *mut u8, &r);
                }
            }
            libc::munmap(hole as *mut libc::c_void, PAGE);
        }
        let nr = u32::try_from(n_ok + 1)?;
        expect_errno(
            dio_batch_raw(&dev, start as *mut u8, nr, entry as u32),
            libc::EFAULT,
            &format!("{n_ok} readable entries, then the hole"),
        )?;
        ensure!(
            pread_direct(NULLB, base, 8 * PAGE)?.iter().all(|&b| b == 0),
            "{n_ok} readable entries: a request ran although the call failed"
        );
        for i in 0..n_ok {
            // SAFETY: Entry `i` lies in the first page, still mapped.
            let result = unsafe {
                ptr::read_unaligned(
                    (start + i * entry + std::mem::offset_of!(uapi::pindio_dio, result))
                        as *const i64,
                )
            };
            ensure!(result == 12345, "entry {i}'s result was written: {result}");
        }
    }
    arr.unmap();
    Ok(())
}

pub fn batch_entry_size_must_be_the_stride() -> Result<()> {
    // An entry whose own size differs from entry_size is EINVAL in its result, whatever the
    // bytes after it (larger and followed by zeroes or by the next entry's non-zero bytes; above
    // PINDIO_STRUCT_SIZE_MAX; smaller); one larger than the kernel's struct with a non-zero tail
    // is E2BIG; the other entries run.
    let dev = device()?;
    let f = open(NULLB, true, false)?;
    let fd = f.as_raw_fd();
    let entry = size_of::<uapi::pindio_dio>();
    let data = Buf::with_flags(PAGE, 0)?;
    let base = 131 * MIB as u64;
    for stride in [entry, entry + 8] {
        let sizes: [(u32, i64); 6] = [
            (stride as u32, PAGE as i64),
            (stride as u32 + 8, -(libc::EINVAL as i64)),
            (stride as u32, PAGE as i64),
            (uapi::PINDIO_STRUCT_SIZE_MAX + 1, -(libc::EINVAL as i64)),
            (stride as u32 - 8, -(libc::EINVAL as i64)),
            // The last entry: larger than the stride, followed by zeroes only.
            (stride as u32 + 8, -(libc::EINVAL as i64)),
        ];
        let mut arr = vec![0u8; sizes.len() * stride + 64];
        for (i, (size, _)) in sizes.iter().enumerate() {
            let mut r = dio_req(fd, false, base, DioMem::Buf(data.addr(), PAGE));
            r.size = *size;
            r.result = 12345;
            // SAFETY: `arr` has room for every entry and 64 bytes more.
            unsafe { put_entry(arr.as_mut_ptr().add(i * stride), &r) };
        }
        if stride > entry {
            // A non-zero byte past the kernel's struct in entry 2: E2BIG.
            arr[2 * stride + entry] = 1;
        }
        dio_batch_raw(&dev, arr.as_mut_ptr(), sizes.len() as u32, stride as u32)?;
        for (i, (size, want)) in sizes.iter().enumerate() {
            let want = if stride > entry && i == 2 {
                -(libc::E2BIG as i64)
            } else {
                *want
            };
            let at = i * stride + std::mem::offset_of!(uapi::pindio_dio, result);
            let got = i64::from_ne_bytes(arr[at..at + 8].try_into()?);
            ensure!(
                got == want,
                "stride {stride}, entry {i} of size {size}: result {got}, expected {want}"
            );
        }
    }
    Ok(())
}
