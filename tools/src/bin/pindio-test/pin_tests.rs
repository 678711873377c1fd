// SPDX-License-Identifier: GPL-2.0

//! Tests of the pins the device holds: PINDIO_IOC_PIN, _READ_PINNED, _UNPIN.

use super::{device, expect_errno};
use anyhow::{ensure, Context, Result};
use pindio::{uapi, Buf, Device};
use std::{io, ptr};

const PAGE: usize = 4096;

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn read_all(dev: &Device, handle: u32, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    dev.read_pinned(handle, 0, &mut buf)
        .context("PINDIO_IOC_READ_PINNED")?;
    Ok(buf)
}

pub fn read_pinned_matches() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(4 * PAGE, 0)?;
    let data = pattern(7, 3 * PAGE + 10);
    m.bytes()[100..100 + data.len()].copy_from_slice(&data);
    let pin = dev.pin(m.addr() + 100, data.len() as u64, 0)?;
    ensure!(
        pin.nr_pages == 4,
        "{} pages pinned, expected 4",
        pin.nr_pages
    );
    ensure!(pin.bytes == data.len() as u64, "{} bytes pinned", pin.bytes);
    ensure!(
        read_all(&dev, pin.handle, data.len())? == data,
        "pinned bytes differ"
    );
    // A piece from the middle.
    let mut piece = vec![0u8; 5000];
    dev.read_pinned(pin.handle, 1234, &mut piece)?;
    ensure!(piece[..] == data[1234..1234 + 5000], "piece differs");
    dev.unpin(pin.handle)?;
    expect_errno(dev.unpin(pin.handle), libc::ENOENT, "second unpin")
}

/// cow.c: a R/O pin on an exclusive anonymous page stays the page the parent then writes.
pub fn ro_pin_sees_parent_write() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(PAGE, 0)?;
    m.bytes().fill(1);
    let pin = dev.pin(m.addr(), PAGE as u64, 0)?;
    m.bytes().fill(2);
    let seen = read_all(&dev, pin.handle, PAGE)?;
    dev.unpin(pin.handle)?;
    ensure!(
        seen.iter().all(|&b| b == 2),
        "the pin does not see the parent's write"
    );
    Ok(())
}

/// Runs `child` in a forked child and waits for it; the child's result is its exit status.
pub fn in_child(child: impl FnOnce() -> bool) -> Result<()> {
    // SAFETY: The child only touches memory and exits with _exit, never returning here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let ok = child();
        // SAFETY: Leaves the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: Waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(io::Error::last_os_error()).context("waitpid");
    }
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed (status {status:#x})"
    );
    Ok(())
}

/// A pinned page is the parent's: a child writing its copy must not change it.
pub fn fork_child_write_not_seen() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(2 * PAGE, 0)?;
    let data = pattern(3, 2 * PAGE);
    m.bytes().copy_from_slice(&data);
    let pin = dev.pin(m.addr(), data.len() as u64, 0)?;
    let addr = m.addr() as *mut u8;
    in_child(|| {
        // SAFETY: The child's copy of the mapping, writable.
        unsafe { ptr::write_bytes(addr, 0xee, 2 * PAGE) };
        true
    })?;
    let seen = read_all(&dev, pin.handle, data.len())?;
    ensure!(m.bytes()[..] == data[..], "the parent's memory changed");
    ensure!(
        seen == data,
        "the child's write leaked into the pinned pages"
    );
    dev.unpin(pin.handle)?;
    Ok(())
}

/// FOLL_PIN, not FOLL_GET: the parent pins its page, forks (the child still maps its copy when
/// the parent writes), then writes the page; the pin must see the parent's write. At fork, a
/// pinned anonymous page is copied for the child at once (`page_needs_cow_for_dma`), so the
/// parent keeps writing the pinned page; a page only referenced (FOLL_GET) is shared
/// copy-on-write instead, the parent's write copies it, and the reference keeps the old page.
pub fn fork_then_parent_write_seen() -> Result<()> {
    let dev = device()?;
    for flags in [0, uapi::PINDIO_PIN_WRITE] {
        let mut m = Buf::with_flags(2 * PAGE, 0)?;
        m.bytes().fill(1);
        let pin = dev.pin(m.addr(), 2 * PAGE as u64, flags)?;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two ends.
        ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe");
        // SAFETY: The child only blocks on the pipe and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: Reads into `b` until the parent closes its end; then leaves at once.
            unsafe {
                libc::close(fds[1]);
                libc::read(fds[0], ptr::from_mut(&mut b).cast(), 1);
                libc::_exit(0);
            }
        }
        // SAFETY: Our end; the child holds the other until it exits.
        unsafe { libc::close(fds[0]) };
        m.bytes().fill(2);
        let seen = read_all(&dev, pin.handle, 2 * PAGE);
        let mut status = 0;
        // SAFETY: Lets the child go, then waits for it.
        unsafe {
            libc::close(fds[1]);
            libc::waitpid(pid, &mut status, 0);
        }
        let seen = seen?;
        dev.unpin(pin.handle)?;
        ensure!(
            seen.iter().all(|&b| b == 2),
            "flags {flags:#x}: the pin does not see the parent's write after fork \
             ({} of {} bytes old): a reference, not a pin",
            seen.iter().filter(|&&b| b == 1).count(),
            seen.len()
        );
    }
    Ok(())
}

pub fn survives_munmap() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(3 * PAGE, 0)?;
    let data = pattern(9, 3 * PAGE);
    m.bytes().copy_from_slice(&data);
    let pin = dev.pin(m.addr(), data.len() as u64, 0)?;
    m.unmap();
    ensure!(
        read_all(&dev, pin.handle, data.len())? == data,
        "data changed after munmap"
    );
    dev.unpin(pin.handle)?;
    Ok(())
}

/// A process that exits holding pins: closing the file releases them (checked by the balance).
pub fn released_at_close() -> Result<()> {
    in_child(|| {
        let Ok(dev) = Device::open() else {
            return false;
        };
        let Ok(mut m) = Buf::with_flags(8 * PAGE, 0) else {
            return false;
        };
        m.bytes().fill(5);
        (0..4).all(|i| dev.pin(m.addr() + i * PAGE, 2 * PAGE as u64, 0).is_ok())
    })
}

pub fn iovec_odd_segments() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(6 * PAGE, 0)?;
    let data = pattern(11, 6 * PAGE);
    m.bytes().copy_from_slice(&data);
    let segs = [
        (1usize, 7usize),
        (2 * PAGE + 5, 5000),
        (3 * PAGE - 3, 6),
        (5 * PAGE, 1),
    ];
    let iov: Vec<libc::iovec> = segs
        .iter()
        .map(|&(off, len)| libc::iovec {
            iov_base: (m.addr() + off) as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let pin = dev.pin(
        iov.as_ptr() as usize,
        iov.len() as u64,
        uapi::PINDIO_PIN_IOVEC,
    )?;
    let want: Vec<u8> = segs
        .iter()
        .flat_map(|&(off, len)| data[off..off + len].to_vec())
        .collect();
    ensure!(pin.bytes == want.len() as u64, "{} bytes pinned", pin.bytes);
    ensure!(
        pin.nr_pages == 6,
        "{} pages pinned, expected 6",
        pin.nr_pages
    );
    ensure!(
        read_all(&dev, pin.handle, want.len())? == want,
        "pinned bytes differ"
    );
    dev.unpin(pin.handle)?;
    Ok(())
}

/// Pins a 2 MiB buffer from `m` (write + longterm) and checks the kernel's view.
fn pin_huge(mut m: Buf) -> Result<()> {
    let dev = device()?;
    let len = m.bytes().len();
    let data = pattern(13, len);
    m.bytes().copy_from_slice(&data);
    let pin = dev.pin(
        m.addr(),
        len as u64,
        uapi::PINDIO_PIN_WRITE | uapi::PINDIO_PIN_LONGTERM,
    )?;
    ensure!(
        pin.nr_pages as usize == len / PAGE,
        "{} pages pinned",
        pin.nr_pages
    );
    ensure!(
        read_all(&dev, pin.handle, len)? == data,
        "pinned bytes differ"
    );
    dev.unpin(pin.handle)?;
    Ok(())
}

pub fn hugetlb() -> Result<()> {
    let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "4");
    pin_huge(Buf::with_flags(2 << 20, libc::MAP_HUGETLB).context("hugetlb mapping (nr_hugepages)")?)
}

pub fn thp() -> Result<()> {
    let _ = std::fs::write("/sys/kernel/mm/transparent_hugepage/enabled", "madvise");
    // 4 MiB so that an aligned 2 MiB lies inside; pin that part.
    let mut big = Buf::with_flags(4 << 20, 0)?;
    let aligned = (big.addr() + (2 << 20) - 1) & !((2 << 20) - 1);
    // SAFETY: The aligned 2 MiB lies inside `big`.
    if unsafe { libc::madvise(aligned as *mut libc::c_void, 2 << 20, libc::MADV_HUGEPAGE) } != 0 {
        return Err(io::Error::last_os_error()).context("madvise(MADV_HUGEPAGE)");
    }
    big.bytes().fill(0);
    let thp = std::fs::read_to_string("/proc/meminfo")?;
    let anon_huge = thp
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .map(|v| {
            v.trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    ensure!(
        anon_huge >= 2048,
        "no transparent huge page was made (AnonHugePages {anon_huge} kB)"
    );
    // SAFETY: The 2 MiB at `aligned` lie inside `big`, mapped read-write; only `inner` uses
    // them from here on.
    let inner = unsafe { Buf::from_raw(aligned, 2 << 20) };
    let res = pin_huge(inner);
    // `inner` was unmapped by its drop; `big` unmaps the rest (munmap of holes is fine).
    res
}

pub fn bad_arguments() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(PAGE, 0)?;
    m.bytes().fill(1);
    expect_errno(dev.pin(0, PAGE as u64, 0), libc::EFAULT, "null address")?;
    expect_errno(
        dev.pin(usize::MAX - 8, 16, 0),
        libc::EINVAL,
        "addr + len overflow",
    )?;
    expect_errno(
        dev.pin(0xffff_8000_0000_0000, 16, 0),
        libc::EFAULT,
        "kernel address",
    )?;
    expect_errno(dev.pin(m.addr(), 0, 0), libc::EINVAL, "zero length")?;
    expect_errno(dev.pin(m.addr(), 16, 1 << 7), libc::EINVAL, "unknown flag")?;
    let iov = [libc::iovec {
        iov_base: m.addr() as *mut libc::c_void,
        iov_len: 1,
    }; 4];
    expect_errno(
        dev.pin(iov.as_ptr() as usize, 1025, uapi::PINDIO_PIN_IOVEC),
        libc::EINVAL,
        "1025 segments",
    )?;
    expect_errno(
        dev.pin(0, 4, uapi::PINDIO_PIN_IOVEC),
        libc::EFAULT,
        "iovec at NULL",
    )?;
    // Read-only memory cannot be pinned for the device to write.
    // SAFETY: Our own mapping.
    unsafe { libc::mprotect(m.addr() as *mut libc::c_void, PAGE, libc::PROT_READ) };
    expect_errno(
        dev.pin(m.addr(), 16, uapi::PINDIO_PIN_WRITE),
        libc::EFAULT,
        "write pin of R/O",
    )?;
    // Handles and ranges that do not exist.
    let pin = dev.pin(m.addr(), 100, 0)?;
    let mut buf = [0u8; 101];
    expect_errno(
        dev.read_pinned(pin.handle, 0, &mut buf),
        libc::EINVAL,
        "read past the pin",
    )?;
    expect_errno(
        dev.read_pinned(pin.handle, u64::MAX, &mut buf[..2]),
        libc::EINVAL,
        "offset overflow",
    )?;
    // SAFETY: A null destination: the kernel must fail the copy.
    let bad = unsafe { std::slice::from_raw_parts_mut(8 as *mut u8, 10) };
    expect_errno(
        dev.read_pinned(pin.handle, 0, bad),
        libc::EFAULT,
        "bad destination",
    )?;
    expect_errno(
        dev.read_pinned(pin.handle + 1, 0, &mut buf[..1]),
        libc::ENOENT,
        "unknown handle",
    )?;
    expect_errno(
        dev.unpin(pin.handle + 1),
        libc::ENOENT,
        "unpin unknown handle",
    )?;
    dev.unpin(pin.handle)?;
    // Short struct, and an oversized one with a non-zero tail.
    for (size, errno) in [(8u32, libc::EINVAL), (64, libc::E2BIG)] {
        let mut raw = [0u8; 64];
        raw[..4].copy_from_slice(&size.to_ne_bytes());
        raw[63] = 1;
        // SAFETY: `raw` is 64 writable bytes and `size` never says more.
        let res = unsafe { dev.ioctl_raw(uapi::PINDIO_IOC_PIN, raw.as_mut_ptr().cast()) };
        expect_errno(res, errno, &format!("struct size {size}"))?;
    }
    Ok(())
}

pub fn limits() -> Result<()> {
    let dev = device()?;
    let max_handles = uapi::PINDIO_MAX_PIN_HANDLES as usize;
    let mut m = Buf::with_flags(PAGE, 0)?;
    m.bytes().fill(1);
    let mut handles = Vec::new();
    for _ in 0..max_handles {
        handles.push(dev.pin(m.addr(), 1, 0)?.handle);
    }
    expect_errno(dev.pin(m.addr(), 1, 0), libc::EMFILE, "one handle too many")?;
    for h in handles.drain(..) {
        dev.unpin(h)?;
    }
    // One page over the page budget, refused before pinning.
    let max_pages = uapi::PINDIO_MAX_PINNED_PAGES as usize;
    let big = Buf::with_flags((max_pages + 1) * PAGE, libc::MAP_NORESERVE)?;
    expect_errno(
        dev.pin(big.addr(), ((max_pages + 1) * PAGE) as u64, 0),
        libc::ENOSPC,
        "pages",
    )?;
    // The budget is per file and counts what is held: half, then more than the other half.
    let half = (max_pages / 2) * PAGE;
    let first = dev.pin(big.addr(), half as u64, 0)?;
    expect_errno(
        dev.pin(big.addr() + half, (half + 2 * PAGE) as u64, 0),
        libc::ENOSPC,
        "pages over the rest of the budget",
    )?;
    dev.unpin(first.handle)?;
    Ok(())
}

pub fn pin_bench() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::with_flags(256 * PAGE, 0)?;
    m.bytes().fill(3);
    let (get, put) = dev.pin_bench(m.addr(), (256 * PAGE) as u64, 16, 0)?;
    ensure!(get > 0 && put > 0, "get {get} ns, put {put} ns");
    let len = (256 * PAGE) as u64;
    expect_errno(
        dev.pin_bench(m.addr(), len, 0, 0),
        libc::EINVAL,
        "0 pages per call",
    )?;
    let over = uapi::PINDIO_PIN_BENCH_MAX_BYTES as u64 + 1;
    expect_errno(
        dev.pin_bench(m.addr(), over, 1, 0),
        libc::EINVAL,
        "over the maximum",
    )?;
    let iov = uapi::PINDIO_PIN_IOVEC;
    expect_errno(
        dev.pin_bench(m.addr(), len, 1, iov),
        libc::EINVAL,
        "iovec flag",
    )?;
    expect_errno(dev.pin_bench(0, len, 1, 0), libc::EFAULT, "unmapped")?;
    // A hole in the middle: whatever was pinned before it is released (checked by the balance).
    // SAFETY: Our own mapping.
    unsafe { libc::munmap((m.addr() + 128 * PAGE) as *mut libc::c_void, PAGE) };
    expect_errno(dev.pin_bench(m.addr(), len, 16, 0), libc::EFAULT, "hole")
}
