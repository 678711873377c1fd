// SPDX-License-Identifier: GPL-2.0

//! Tests of the defects a review of the module found (issue 13): iovec shapes (one segment,
//! empty segments), swap devices, the `MAX_RW_COUNT` limit, logical blocks larger than a page,
//! high-order allocations, and a direct check that every DIO page is pinned with FOLL_PIN. Each
//! failed (or crashed the kernel) before its fix.

use super::{device, expect_errno, pin_tests::pattern};
use anyhow::{bail, ensure, Context, Result};
use pindio::{dio_req, foll_pin_counts, uapi, Buf, Device, DioMem};
use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    process::Command,
    ptr,
};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
/// `MAX_RW_COUNT` of the kernel: `INT_MAX & PAGE_MASK`.
pub const MAX_RW_COUNT: usize = (i32::MAX as usize) & !(PAGE - 1);

/// Memory-backed null_blk (see scripts/guest-init).
const NULLB: &str = "/dev/nullb0";
/// Memory-backed null_blk with 16 KiB logical blocks.
const NULLB_16K: &str = "/dev/nullb3";
/// null_blk without memory, 4 GiB: large I/Os cost no memory.
const NULLB_4G: &str = "/dev/nullb4";
/// Memory-backed null_blk for the swap test.
const NULLB_SWAP: &str = "/dev/nullb5";

fn open(path: &str, write: bool) -> Result<File> {
    pindio::open_blockdev(path, write, false)
}

fn iov(addr: usize, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    }
}

/// The pins taken and not released since `before`.
fn pins_held(before: (u64, u64)) -> Result<(u64, u64)> {
    let (acq, rel) = foll_pin_counts()?;
    Ok((acq - before.0, rel - before.1))
}

/// `PINDIO_IOC_PIN` of the iovec `v` with `flags`: expects `bytes` bytes on `pages` pages, exactly
/// `pages` pins taken, the pinned bytes equal to `expect`, and every pin gone after the unpin.
fn pin_iovec_exactly(
    dev: &Device,
    v: &[libc::iovec],
    flags: u32,
    bytes: usize,
    pages: u32,
    expect: &[u8],
) -> Result<()> {
    let what = format!("PIN of {} segments, flags {flags:#x}", v.len());
    let before = foll_pin_counts()?;
    let info = dev
        .pin(
            v.as_ptr() as usize,
            v.len() as u64,
            flags | uapi::PINDIO_PIN_IOVEC,
        )
        .with_context(|| what.clone())?;
    ensure!(
        info.bytes == bytes as u64 && info.nr_pages == pages,
        "{what}: {} bytes on {} pages, expected {bytes} on {pages}",
        info.bytes,
        info.nr_pages
    );
    let (acq, _) = pins_held(before)?;
    ensure!(
        acq == u64::from(pages),
        "{what}: {acq} pins taken for {pages} pages"
    );
    let mut got = vec![0u8; bytes];
    dev.read_pinned(info.handle, 0, &mut got)
        .with_context(|| format!("{what}: READ_PINNED"))?;
    ensure!(got == expect, "{what}: the pinned bytes differ");
    dev.unpin(info.handle)?;
    let (acq, rel) = pins_held(before)?;
    ensure!(acq == rel, "{what}: {acq} pins taken, {rel} released");
    Ok(())
}

/// Every combination of the PIN flags that matter to extraction.
const PIN_FLAGS: [u32; 4] = [
    0,
    uapi::PINDIO_PIN_WRITE,
    uapi::PINDIO_PIN_LONGTERM,
    uapi::PINDIO_PIN_WRITE | uapi::PINDIO_PIN_LONGTERM,
];

/// A one-segment iovec, for PIN (every flag combination), for DIO (read and write, single
/// page and multi-bio), and through the CLI: it oopsed the kernel (NULL fast iovec array).
pub fn iovec_one_segment() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::new(4 * MIB)?;
    let data = pattern(0x41, 4 * MIB);
    m.bytes().copy_from_slice(&data);
    for flags in PIN_FLAGS {
        for (off, len, pages) in [(0, PAGE, 1), (100, 5000, 2), (0, 3 * PAGE, 3)] {
            let v = [iov(m.addr() + off, len)];
            pin_iovec_exactly(&dev, &v, flags, len, pages, &data[off..off + len])?;
        }
    }
    let f = open(NULLB, true)?;
    for (off, len) in [(0usize, PAGE), (512, 64 * 1024), (0, 4 * MIB)] {
        let at = 7 * MIB as u64;
        let v = [iov(m.addr() + off, len)];
        let n = dev
            .dio(&mut dio_req(f.as_raw_fd(), true, at, DioMem::Iovec(&v)))
            .with_context(|| format!("one-segment iovec write of {len} bytes"))?;
        ensure!(n == len, "one-segment write returned {n}, expected {len}");
        let mut back = vec![0u8; len];
        f.read_exact_at(&mut back, at)?;
        ensure!(
            back == data[off..off + len],
            "one-segment write: device differs"
        );
        let mut r = Buf::new(len + off)?;
        let v = [iov(r.addr() + off, len)];
        let n = dev.dio(&mut dio_req(f.as_raw_fd(), false, at, DioMem::Iovec(&v)))?;
        ensure!(
            n == len && r.bytes()[off..off + len] == data[off..off + len],
            "one-segment iovec read of {len} bytes differs"
        );
    }
    // The command of the bug report, and its read-back check.
    for args in [
        &["write", NULLB, "--size", "4K", "--iovec", "4K"][..],
        &["verify", NULLB, "--size", "4K", "--iovec", "4K"][..],
    ] {
        let out = Command::new("pindio")
            .args(args)
            .output()
            .context("run pindio")?;
        ensure!(
            out.status.success(),
            "pindio {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Empty segments first, in the middle and last, at page-aligned and unaligned addresses, for
/// every PIN flag combination (the FOLL_LONGTERM path leaked a pin on an unaligned one, and
/// failed with EFAULT on an aligned one) and for DIO; an all-empty iovec is EINVAL and pins
/// nothing.
pub fn iovec_empty_segments() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::new(4 * PAGE)?;
    let data = pattern(0x17, 4 * PAGE);
    m.bytes().copy_from_slice(&data);
    let b = m.addr();
    let cases: [(&[libc::iovec], usize, u32, Vec<u8>); 4] = [
        // The review's case: an unaligned empty segment before a page.
        (
            &[iov(b + 8, 0), iov(b, PAGE)],
            PAGE,
            1,
            data[..PAGE].to_vec(),
        ),
        (
            &[iov(b, 0), iov(b + PAGE, PAGE)],
            PAGE,
            1,
            data[PAGE..2 * PAGE].to_vec(),
        ),
        (
            &[
                iov(b + 100, 0),
                iov(b + 2 * PAGE, 512),
                iov(0, 0),
                iov(b + 3, 0),
                iov(b + 3 * PAGE + 512, 1024),
                iov(b + PAGE - 1, 0),
            ],
            1536,
            2,
            [
                &data[2 * PAGE..2 * PAGE + 512],
                &data[3 * PAGE + 512..3 * PAGE + 1536],
            ]
            .concat(),
        ),
        (
            &[iov(b, PAGE), iov(b + 8, 0)],
            PAGE,
            1,
            data[..PAGE].to_vec(),
        ),
    ];
    for flags in PIN_FLAGS {
        for (v, bytes, pages, expect) in &cases {
            pin_iovec_exactly(&dev, v, flags, *bytes, *pages, expect)?;
        }
    }
    // Refusals (after the cases above: one of them has a single segment, which oopsed).
    for flags in PIN_FLAGS {
        let before = foll_pin_counts()?;
        for v in [
            &[iov(b + 8, 0)][..],
            &[iov(b, 0), iov(b + 8, 0), iov(0, 0)][..],
        ] {
            expect_errno(
                dev.pin(
                    v.as_ptr() as usize,
                    v.len() as u64,
                    flags | uapi::PINDIO_PIN_IOVEC,
                ),
                libc::EINVAL,
                "PIN of an iovec of 0 bytes",
            )?;
        }
        // An empty segment is still checked as readv(2) checks it: a kernel address is EFAULT.
        let v = [iov(b, PAGE), iov(0xffff_8000_0000_0000, 0)];
        expect_errno(
            dev.pin(v.as_ptr() as usize, 2, flags | uapi::PINDIO_PIN_IOVEC),
            libc::EFAULT,
            "PIN with an empty segment at a kernel address",
        )?;
        let (acq, rel) = pins_held(before)?;
        ensure!(acq == 0 && rel == 0, "refused PINs took {acq} pins");
    }
    // Direct I/O with empty segments anywhere, even at unaligned addresses.
    let f = open(NULLB, true)?;
    let at = 9 * MIB as u64;
    let v = [
        iov(b + 8, 0),
        iov(b, PAGE),
        iov(b + 3, 0),
        iov(b + PAGE, 512),
        iov(b + 1, 0),
    ];
    let n = dev.dio(&mut dio_req(f.as_raw_fd(), true, at, DioMem::Iovec(&v)))?;
    ensure!(n == PAGE + 512, "DIO with empty segments returned {n}");
    let mut back = vec![0u8; PAGE + 512];
    f.read_exact_at(&mut back, at)?;
    ensure!(
        back == data[..PAGE + 512],
        "DIO with empty segments: device differs"
    );
    let v = [iov(b + 8, 0), iov(b, 0)];
    expect_errno(
        dev.dio(&mut dio_req(f.as_raw_fd(), true, at, DioMem::Iovec(&v))),
        libc::EINVAL,
        "DIO of an iovec of 0 bytes",
    )?;
    Ok(())
}

/// A PIN of 0 bytes is refused and uses up no handle: after many refused ones, all
/// PINDIO_MAX_PIN_HANDLES pins still fit.
pub fn pin_zero_bytes_keeps_no_handle() -> Result<()> {
    let dev = device()?;
    let m = Buf::new(PAGE)?;
    let empty = [iov(m.addr(), 0), iov(m.addr() + 5, 0)];
    for _ in 0..2 * uapi::PINDIO_MAX_PIN_HANDLES {
        expect_errno(
            dev.pin(empty.as_ptr() as usize, 2, uapi::PINDIO_PIN_IOVEC),
            libc::EINVAL,
            "PIN of 0 bytes",
        )?;
    }
    for i in 0..uapi::PINDIO_MAX_PIN_HANDLES {
        dev.pin(m.addr(), PAGE as u64, 0)
            .with_context(|| format!("pin {i} after the refused ones"))?;
    }
    expect_errno(
        dev.pin(m.addr(), PAGE as u64, 0),
        libc::EMFILE,
        "one pin too many",
    )
}

/// Swap on a null_blk, undone on drop.
pub(super) struct SwapOn(&'static str);

impl SwapOn {
    pub(super) fn new(path: &'static str) -> Result<Self> {
        for cmd in [["mkswap", path], ["swapon", path]] {
            let out = Command::new(cmd[0]).arg(cmd[1]).output().context(cmd[0])?;
            ensure!(
                out.status.success(),
                "{} {path}: {}",
                cmd[0],
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self(path))
    }
}

impl Drop for SwapOn {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(self.0).status();
    }
}

/// A write to an active swap device is refused with ETXTBSY, as `write(2)` on it is, and
/// changes nothing; reads still work; after swapoff writes work again.
pub fn dio_swap_device_etxtbsy() -> Result<()> {
    let dev = device()?;
    let mut m = Buf::new(2 * PAGE)?;
    m.bytes().fill(0xee);
    let at = 8 * MIB as u64;
    {
        let swap = SwapOn::new(NULLB_SWAP)?;
        let f = open(swap.0, true)?;
        let fd = f.as_raw_fd();
        let mut before = vec![0u8; PAGE];
        f.read_exact_at(&mut before, at)?;
        // What the kernel itself says to write(2) on an active swap device.
        let e = f
            .write_at(&[0u8; 512], at)
            .err()
            .and_then(|e| e.raw_os_error());
        ensure!(e == Some(libc::ETXTBSY), "write(2) to a swap device: {e:?}");
        for len in [PAGE, 2 * PAGE] {
            expect_errno(
                dev.dio(&mut dio_req(fd, true, at, DioMem::Buf(m.addr(), len))),
                libc::ETXTBSY,
                "DIO write to an active swap device",
            )?;
        }
        let v = [iov(m.addr(), 512)];
        expect_errno(
            dev.dio(&mut dio_req(fd, true, at, DioMem::Iovec(&v))),
            libc::ETXTBSY,
            "iovec DIO write to an active swap device",
        )?;
        let mut reqs = [dio_req(fd, true, at, DioMem::Buf(m.addr(), PAGE))];
        dev.dio_batch(&mut reqs)?;
        ensure!(
            reqs[0].result == -i64::from(libc::ETXTBSY),
            "batched write to a swap device: result {}",
            reqs[0].result
        );
        let n = dev.dio(&mut dio_req(fd, false, at, DioMem::Buf(m.addr(), PAGE)))?;
        ensure!(
            n == PAGE && m.bytes()[..PAGE] == before[..],
            "read of a swap device"
        );
        let mut after = vec![0u8; PAGE];
        pindio::open_blockdev(NULLB_SWAP, false, false)?.read_exact_at(&mut after, at)?;
        ensure!(after == before, "a refused write changed the swap device");
    }
    let f = open(NULLB_SWAP, true)?;
    let n = dev.dio(&mut dio_req(
        f.as_raw_fd(),
        true,
        at,
        DioMem::Buf(m.addr(), PAGE),
    ))?;
    ensure!(n == PAGE, "write after swapoff: {n}");
    Ok(())
}

/// `len` bytes of address space, every 2 MiB of it mapped to the same 2 MiB of a memfd: buffers
/// of gigabytes that take 2 MiB of memory.
struct BigRegion {
    addr: usize,
    len: usize,
}

impl BigRegion {
    fn new(len: usize) -> Result<Self> {
        const CHUNK: usize = 2 * MIB;
        let len = len.next_multiple_of(CHUNK);
        // SAFETY: A plain memfd.
        let fd = unsafe { libc::memfd_create(c"pindio-big".as_ptr(), 0) };
        ensure!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: `fd` is ours.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: Resizes our memfd.
        ensure!(
            unsafe { libc::ftruncate(fd.as_raw_fd(), CHUNK as i64) } == 0,
            "ftruncate"
        );
        // SAFETY: A fresh reservation of address space, replaced below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        ensure!(
            base != libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        let region = Self {
            addr: base as usize,
            len,
        };
        for at in (0..len).step_by(CHUNK) {
            // SAFETY: Replaces a part of our own reservation.
            let p = unsafe {
                libc::mmap(
                    (region.addr + at) as *mut libc::c_void,
                    CHUNK,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            ensure!(
                p != libc::MAP_FAILED,
                "mmap: {}",
                io::Error::last_os_error()
            );
        }
        Ok(region)
    }
}

impl Drop for BigRegion {
    fn drop(&mut self) {
        // SAFETY: Our own mapping.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// An I/O above `MAX_RW_COUNT` is refused with EINVAL, as the header promises, instead of being
/// cut short to `MAX_RW_COUNT` and reported as a success; `MAX_RW_COUNT` itself is done whole.
pub fn dio_above_max_rw_count_einval() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB_4G, true)?;
    let fd = f.as_raw_fd();
    let r = BigRegion::new(3 << 30)?;
    let before = foll_pin_counts()?;
    for (write, len) in [
        (true, 3usize << 30),
        (false, 3 << 30),
        (true, MAX_RW_COUNT + PAGE),
        (false, MAX_RW_COUNT + 512),
    ] {
        expect_errno(
            dev.dio(&mut dio_req(fd, write, 0, DioMem::Buf(r.addr, len))),
            libc::EINVAL,
            &format!("single buffer of {len:#x} bytes"),
        )?;
    }
    let half = 3usize << 29;
    let v = [iov(r.addr, half), iov(r.addr, half)];
    for write in [true, false] {
        expect_errno(
            dev.dio(&mut dio_req(fd, write, 0, DioMem::Iovec(&v))),
            libc::EINVAL,
            "iovec of 3 GiB",
        )?;
    }
    let v = [iov(r.addr, half), iov(r.addr, MAX_RW_COUNT - half + PAGE)];
    expect_errno(
        dev.pin(v.as_ptr() as usize, 2, uapi::PINDIO_PIN_IOVEC),
        libc::EINVAL,
        "PIN of an iovec above MAX_RW_COUNT",
    )?;
    let (acq, _) = pins_held(before)?;
    ensure!(acq == 0, "refused I/Os took {acq} pins");
    // MAX_RW_COUNT exactly, as an iovec and as one buffer, is done whole.
    let v = [iov(r.addr, half), iov(r.addr, MAX_RW_COUNT - half)];
    let n = dev.dio(&mut dio_req(fd, true, 0, DioMem::Iovec(&v)))?;
    ensure!(n == MAX_RW_COUNT, "iovec of MAX_RW_COUNT: {n:#x}");
    let n = dev.dio(&mut dio_req(fd, true, 0, DioMem::Buf(r.addr, MAX_RW_COUNT)))?;
    ensure!(n == MAX_RW_COUNT, "buffer of MAX_RW_COUNT: {n:#x}");
    Ok(())
}

/// A device whose logical block (16 KiB) is larger than a page: an I/O cut into several bios
/// must cut them on block boundaries. The review's case (1 MiB page-aligned, then 2 MiB at page
/// offset 512) wrote the first bio, then failed with EINVAL.
pub fn dio_large_logical_block() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB_16K, true)?;
    let fd = f.as_raw_fd();
    let mut a = Buf::new(MIB)?;
    let mut b = Buf::new(2 * MIB + PAGE)?;
    let data = pattern(0x63, 3 * MIB);
    a.bytes().copy_from_slice(&data[..MIB]);
    b.bytes()[512..512 + 2 * MIB].copy_from_slice(&data[MIB..]);
    let v = [iov(a.addr(), MIB), iov(b.addr() + 512, 2 * MIB)];
    let at = 16 * MIB as u64;
    let n = dev
        .dio(&mut dio_req(fd, true, at, DioMem::Iovec(&v)))
        .context("iovec write to a 16 KiB-block device")?;
    ensure!(n == 3 * MIB, "write returned {n}");
    let mut back = vec![0u8; 3 * MIB];
    f.read_exact_at(&mut back, at)?;
    ensure!(back == data, "the device does not hold the iovec's bytes");
    a.bytes().fill(0);
    b.bytes().fill(0);
    let n = dev.dio(&mut dio_req(fd, false, at, DioMem::Iovec(&v)))?;
    ensure!(
        n == 3 * MIB
            && a.bytes()[..] == data[..MIB]
            && b.bytes()[512..512 + 2 * MIB] == data[MIB..],
        "iovec read from a 16 KiB-block device differs"
    );
    // One buffer of 3 MiB at page offset 512: several bios. Written and read back with the
    // same layout, and read with pread(O_DIRECT): null_blk with blocks above 512 bytes only
    // marks the first sector of each piece it copies as written, so it reads back zeros where a
    // later read cuts its pieces elsewhere than the write did (a null_blk bug, not pindio's).
    let other = pattern(0x1e, 3 * MIB);
    let mut c = Buf::new(3 * MIB + PAGE)?;
    c.bytes()[512..512 + 3 * MIB].copy_from_slice(&other);
    let n = dev.dio(&mut dio_req(
        fd,
        true,
        at,
        DioMem::Buf(c.addr() + 512, 3 * MIB),
    ))?;
    ensure!(n == 3 * MIB, "buffer write returned {n}");
    let direct = pindio::open_blockdev(NULLB_16K, false, true)?;
    let mut d = Buf::new(3 * MIB)?;
    direct.read_exact_at(d.bytes(), at)?;
    ensure!(
        d.bytes()[..] == other[..],
        "buffer write to a 16 KiB-block device differs"
    );
    c.bytes().fill(0);
    let n = dev.dio(&mut dio_req(
        fd,
        false,
        at,
        DioMem::Buf(c.addr() + 512, 3 * MIB),
    ))?;
    ensure!(
        n == 3 * MIB && c.bytes()[512..512 + 3 * MIB] == other[..],
        "buffer read from a 16 KiB-block device differs"
    );
    // Less than a block, or a segment that is not whole blocks: EINVAL, nothing written.
    for (v, what) in [
        (vec![iov(a.addr(), 8192)], "half a block"),
        (
            vec![iov(a.addr(), 8192), iov(b.addr(), 8192)],
            "two half blocks",
        ),
    ] {
        expect_errno(
            dev.dio(&mut dio_req(fd, true, 0, DioMem::Iovec(&v))),
            libc::EINVAL,
            what,
        )?;
    }
    Ok(())
}

/// Writes `value` to a fault-injection control file.
fn fault_knob(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value} to {path}"))
}

/// Page allocations of order 4 and above fail, for this thread only, until dropped.
struct NoHighOrderPages;

const FAIL_PAGE_ALLOC: &str = "/sys/kernel/debug/fail_page_alloc";

impl NoHighOrderPages {
    fn new() -> Result<Self> {
        for (knob, value) in [
            ("task-filter", "Y"),
            ("ignore-gfp-wait", "N"),
            ("ignore-gfp-highmem", "N"),
            ("min-order", "4"),
            ("verbose", "0"),
            ("interval", "1"),
            ("times", "-1"),
            ("probability", "100"),
        ] {
            fault_knob(&format!("{FAIL_PAGE_ALLOC}/{knob}"), value)?;
        }
        fault_knob("/proc/thread-self/make-it-fail", "1")?;
        Ok(Self)
    }
}

impl Drop for NoHighOrderPages {
    fn drop(&mut self) {
        let _ = fault_knob("/proc/thread-self/make-it-fail", "0");
        let _ = fault_knob(&format!("{FAIL_PAGE_ALLOC}/probability"), "0");
        let _ = fault_knob(&format!("{FAIL_PAGE_ALLOC}/min-order"), "1");
    }
}

/// A full batch (PINDIO_DIO_BATCH_MAX requests) when no page block of order 4 or more can be
/// allocated (a fragmented machine): its contexts (about 140 KiB) must not need one.
pub fn dio_batch_without_high_order_pages() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true)?;
    let n = uapi::PINDIO_DIO_BATCH_MAX as usize;
    let mut m = Buf::new(n * 512)?;
    let mut reqs: Vec<_> = (0..n)
        .map(|i| {
            dio_req(
                f.as_raw_fd(),
                false,
                (i * 512) as u64,
                DioMem::Buf(m.addr() + i * 512, 512),
            )
        })
        .collect();
    m.bytes().fill(1);
    let res = {
        let _fail = NoHighOrderPages::new()?;
        dev.dio_batch(&mut reqs)
    };
    res.context("a full batch without high-order pages")?;
    for (i, r) in reqs.iter().enumerate() {
        ensure!(r.result == 512, "request {i}: result {}", r.result);
    }
    let mut back = vec![0u8; n * 512];
    f.read_exact_at(&mut back, 0)?;
    ensure!(back == m.bytes()[..n * 512], "batch read differs");
    Ok(())
}

/// Every page of a direct I/O is pinned with FOLL_PIN (not merely referenced with FOLL_GET):
/// `nr_foll_pin_acquired` rises by one per page, for a read and a write, a buffer and an iovec,
/// and `nr_foll_pin_released` follows.
pub fn dio_pins_every_page() -> Result<()> {
    let dev = device()?;
    let f = open(NULLB, true)?;
    let fd = f.as_raw_fd();
    let m = Buf::new(300 * PAGE)?;
    let v = [
        iov(m.addr() + 512, PAGE),
        iov(m.addr() + 4 * PAGE, 2 * PAGE),
    ];
    for (mem, pages) in [
        (DioMem::Buf(m.addr(), PAGE), 1u64),
        (DioMem::Buf(m.addr() + 512, 16 * PAGE), 17),
        (DioMem::Buf(m.addr(), 300 * PAGE), 300),
        (DioMem::Iovec(&v), 4),
    ] {
        for write in [false, true] {
            let before = foll_pin_counts()?;
            let len = dev.dio(&mut dio_req(fd, write, 0, mem))?;
            let (acq, rel) = pins_held(before)?;
            if acq != pages || rel != pages {
                bail!("DIO of {len} bytes (write {write}): {acq} pins taken, {rel} released, expected {pages}");
            }
        }
    }
    Ok(())
}

/// virtio-blk throttled to 5 I/Os a second: an I/O stays in flight for about 200 ms.
const SLOW: &str = "/dev/vdc";

/// Waits (up to 200 ms) until `nr_foll_pin_acquired` moved past `before`: an I/O started in
/// another thread holds its pins.
fn wait_pinned(before: (u64, u64)) -> Result<()> {
    let t0 = std::time::Instant::now();
    while foll_pin_counts()?.0 == before.0 && t0.elapsed() < std::time::Duration::from_millis(200) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(())
}

/// A read of several bios from the throttled disk, some of them in flight for hundreds of
/// milliseconds: the call returns only once every bio completed, with all of the data.
pub fn dio_multi_bio_read_waits_for_every_bio() -> Result<()> {
    let dev = device()?;
    let len = MIB + PAGE;
    let data = pattern(0x2d, len);
    let f = open(SLOW, true)?;
    f.write_all_at(&data, 0)?;
    f.sync_all()?;
    let mut m = Buf::new(len)?;
    let n = dev.dio(&mut dio_req(
        f.as_raw_fd(),
        false,
        0,
        DioMem::Buf(m.addr(), len),
    ))?;
    ensure!(n == len, "read returned {n}");
    ensure!(
        m.bytes()[..len] == data[..],
        "the call returned before every bio had brought its data"
    );
    Ok(())
}

/// A read into a shared mapping of a block device's page cache: while the read is in flight,
/// `msync` writes the page back and cleans it; the read's data then lands in a clean page. The
/// pages of a read must be dirtied when they are unpinned, or the data never reaches the device.
pub fn dio_read_dirties_the_pages_it_filled() -> Result<()> {
    let dev = device()?;
    let data = pattern(0x71, PAGE);
    let src = open(SLOW, true)?;
    src.write_all_at(&data, 64 * 1024)?;
    src.sync_all()?;
    let at = 11 * MIB as u64;
    let target = open(NULLB, true)?;
    target.write_all_at(&[0u8; PAGE], at)?;
    target.sync_all()?;
    // SAFETY: A shared mapping of one page of the device, unmapped below.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            target.as_raw_fd(),
            at as i64,
        )
    };
    ensure!(
        p != libc::MAP_FAILED,
        "mmap: {}",
        io::Error::last_os_error()
    );
    let res = std::thread::scope(|s| -> Result<()> {
        let before = foll_pin_counts()?;
        let fd = src.as_raw_fd();
        let addr = p as usize;
        let t =
            s.spawn(move || dev.dio(&mut dio_req(fd, false, 64 * 1024, DioMem::Buf(addr, PAGE))));
        wait_pinned(before)?;
        // SAFETY: Our mapping.
        ensure!(unsafe { libc::msync(p, PAGE, libc::MS_SYNC) } == 0, "msync");
        let n = t
            .join()
            .map_err(|_| anyhow::anyhow!("I/O thread panicked"))??;
        ensure!(n == PAGE, "read returned {n}");
        Ok(())
    });
    // SAFETY: Our mapping.
    unsafe { libc::munmap(p, PAGE) };
    res?;
    target.sync_all()?;
    let direct = pindio::open_blockdev(NULLB, false, true)?;
    let mut m = Buf::new(PAGE)?;
    direct.read_exact_at(m.bytes(), at)?;
    ensure!(
        m.bytes()[..PAGE] == data[..],
        "the read's data never reached the device: its page was not dirtied"
    );
    Ok(())
}
