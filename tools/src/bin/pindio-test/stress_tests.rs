// SPDX-License-Identifier: GPL-2.0

//! Failure and interference: fault injection swept over every ioctl path, and
//! memory-management operations (compaction, migration, THP split, `MADV_DONTNEED`, `mremap`)
//! racing direct I/O and held pins.

use super::{device, pin_tests::pattern};
use anyhow::{bail, ensure, Context, Result};
use pindio::{dio_req, foll_pin_counts, uapi, Buf, Device, DioMem, KernelLog};
use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
    ptr,
    sync::atomic::{AtomicBool, Ordering},
};

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
const NULLB: &str = "/dev/nullb0";
/// The virtio disk: the target of the fault-injection sweep.
const VDA: &str = "/dev/vda";
/// `MPOL_MF_MOVE` of linux/mempolicy.h: move the pages of this process only.
const MPOL_MF_MOVE: i32 = 1 << 1;

fn knob(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value} to {path}"))
}

/// `/proc/thread-self/fail-nth`: the N-th fault-injection point this thread reaches fails.
/// Read and written with plain `pread`/`pwrite` on a descriptor opened beforehand, so that
/// nothing between arming it and the ioctl under test allocates.
struct FailNth(File);

impl FailNth {
    fn open() -> Result<Self> {
        Ok(Self(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/proc/thread-self/fail-nth")?,
        ))
    }

    fn arm(&self, n: u32) -> io::Result<()> {
        let mut buf = [0u8; 16];
        let mut len = 0;
        for d in n.to_string().bytes() {
            buf[len] = d;
            len += 1;
        }
        self.0.write_at(&buf[..len], 0).map(|_| ())
    }

    /// The calls still to go before the fault; 0 once it was injected.
    fn remaining(&self) -> io::Result<u32> {
        let mut buf = [0u8; 16];
        let n = self.0.read_at(&mut buf, 0)?;
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| io::Error::other("bad fail-nth"))
    }
}

/// failslab, fail_page_alloc (sleeping allocations included) and fail_make_request (on vda)
/// armed for fail-nth only (probability 0), quiet; undone on drop. The direct I/Os go to the
/// virtio disk, not to null_blk: fail-nth counts every injection point of the thread, and
/// null_blk's own (request timeouts, requeues) would turn one into a 30 s timeout.
struct Injectors;

const FAULTS: [&str; 3] = ["failslab", "fail_page_alloc", "fail_make_request"];

impl Injectors {
    fn new() -> Result<Self> {
        for f in FAULTS {
            let d = format!("/sys/kernel/debug/{f}");
            knob(&format!("{d}/probability"), "0")?;
            knob(&format!("{d}/verbose"), "0")?;
            knob(&format!("{d}/times"), "-1")?;
            if f != "fail_make_request" {
                knob(&format!("{d}/ignore-gfp-wait"), "N")?;
            }
        }
        knob("/sys/kernel/debug/fail_page_alloc/min-order", "0")?;
        knob("/sys/block/vda/make-it-fail", "1")?;
        Ok(Self)
    }
}

impl Drop for Injectors {
    fn drop(&mut self) {
        let _ = knob("/sys/block/vda/make-it-fail", "0");
        for f in ["failslab", "fail_page_alloc"] {
            let _ = knob(&format!("/sys/kernel/debug/{f}/ignore-gfp-wait"), "Y");
        }
        let _ = knob("/sys/kernel/debug/fail_page_alloc/min-order", "1");
    }
}

/// One ioctl path under fault injection: `prepare` makes everything the call needs (memory
/// populated, files open), `call` makes the ioctl and nothing else, `verify` checks a success.
struct Path<P> {
    name: &'static str,
    prepare: fn() -> Result<P>,
    call: fn(&P) -> io::Result<i32>,
    verify: fn(&P, i32) -> Result<()>,
}

/// Runs `path` with the 1st, 2nd, ... injection point failing, until a pass injects nothing.
/// Every pass must succeed (verified) or fail with ENOMEM or EIO, and leave no pin, no splat.
/// Returns how many injection points the path has.
fn sweep<P>(path: &Path<P>, fail: &FailNth, kmsg: &mut KernelLog) -> Result<u32> {
    for n in 1..5000u32 {
        let p = (path.prepare)()?;
        let before = foll_pin_counts()?;
        fail.arm(n)?;
        let res = (path.call)(&p);
        let left = fail.remaining()?;
        fail.arm(0)?;
        let what = format!("{} with injection point {n} failing", path.name);
        match res {
            Ok(v) => (path.verify)(&p, v).with_context(|| what.clone())?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EIO)) => {}
            Err(e) => bail!("{what}: {e}, expected success, ENOMEM or EIO"),
        }
        drop(p);
        let (acq, rel) = foll_pin_counts()?;
        ensure!(
            acq - before.0 == rel - before.1,
            "{what}: {} pins taken, {} released",
            acq - before.0,
            rel - before.1
        );
        if let Some(splat) = kmsg.splat() {
            bail!("{what}: kernel log: {splat}");
        }
        if left > 0 {
            return Ok(n - 1);
        }
    }
    bail!("{}: more than 5000 injection points", path.name)
}

/// A pin through a fresh device file (closing it releases whatever it holds).
struct PinCase {
    dev: Device,
    mem: Buf,
    iov: Vec<libc::iovec>,
    flags: u32,
}

fn pin_case(iovec: bool, longterm: bool) -> Result<PinCase> {
    let mut mem = Buf::new(16 * PAGE)?;
    mem.bytes().copy_from_slice(&pattern(3, 16 * PAGE));
    let a = mem.addr();
    let iov = if iovec {
        vec![
            libc::iovec {
                iov_base: (a + 100) as _,
                iov_len: 5000,
            },
            libc::iovec {
                iov_base: a as _,
                iov_len: 0,
            },
            libc::iovec {
                iov_base: (a + 4 * PAGE) as _,
                iov_len: 8 * PAGE,
            },
        ]
    } else {
        Vec::new()
    };
    let mut flags = uapi::PINDIO_PIN_WRITE;
    if iovec {
        flags |= uapi::PINDIO_PIN_IOVEC;
    }
    if longterm {
        flags |= uapi::PINDIO_PIN_LONGTERM;
    }
    Ok(PinCase {
        dev: Device::open()?,
        mem,
        iov,
        flags,
    })
}

fn pin_call(c: &PinCase) -> io::Result<i32> {
    let (addr, len) = if c.iov.is_empty() {
        (c.mem.addr(), 16 * PAGE as u64)
    } else {
        (c.iov.as_ptr() as usize, c.iov.len() as u64)
    };
    c.dev.pin(addr, len, c.flags).map(|_| 0)
}

fn pin_verify(c: &PinCase, _: i32) -> Result<()> {
    // The first 5000 bytes pinned: from the buffer's start, or from the iovec's first segment.
    let first = if c.iov.is_empty() { 0 } else { 100 };
    let mut got = vec![0u8; 5000];
    // The pin is the file's first, handle 1.
    c.dev.read_pinned(1, 0, &mut got)?;
    ensure!(
        got[..] == pattern(3, 16 * PAGE)[first..first + 5000],
        "pinned bytes differ"
    );
    Ok(())
}

/// A direct I/O of `len` bytes at page offset `mem_off`, one buffer or four segments, through
/// PINDIO_IOC_DIO, or eight requests through PINDIO_IOC_DIO_BATCH.
struct DioCase {
    dev: Device,
    file: File,
    mem: Buf,
    reqs: std::cell::RefCell<Vec<uapi::pindio_dio>>,
    /// The iovec array an iovec request points to: kept alive with the request.
    _iov: Vec<libc::iovec>,
    data: Vec<u8>,
    len: usize,
    write: bool,
    at: u64,
}

const DIO_AT: u64 = 20 << 20;

fn dio_case(len: usize, write: bool, segments: usize, batch: usize) -> Result<DioCase> {
    let file = pindio::open_blockdev(VDA, true, false)?;
    let total = len * batch.max(1);
    let data = pattern(0x3c, total);
    let mut mem = Buf::new(total + PAGE)?;
    if write {
        mem.bytes()[512..512 + total].copy_from_slice(&data);
    } else {
        // The device holds the data; memory holds something else.
        file.write_all_at(&data, DIO_AT)?;
        file.sync_all()?;
        mem.bytes().fill(0xee);
    }
    let base = mem.addr() + 512;
    let fd = file.as_raw_fd();
    let iov: Vec<libc::iovec> = (0..segments)
        .map(|i| libc::iovec {
            iov_base: (base + i * len / segments) as _,
            iov_len: len / segments,
        })
        .collect();
    let reqs = if batch > 0 {
        (0..batch)
            .map(|i| {
                dio_req(
                    fd,
                    write,
                    DIO_AT + (i * len) as u64,
                    DioMem::Buf(base + i * len, len),
                )
            })
            .collect()
    } else if segments > 0 {
        vec![dio_req(fd, write, DIO_AT, DioMem::Iovec(&iov))]
    } else {
        vec![dio_req(fd, write, DIO_AT, DioMem::Buf(base, len))]
    };
    Ok(DioCase {
        dev: Device::open()?,
        file,
        mem,
        reqs: std::cell::RefCell::new(reqs),
        _iov: iov,
        data,
        len: total,
        write,
        at: DIO_AT,
    })
}

fn dio_call(c: &DioCase) -> io::Result<i32> {
    let mut reqs = c.reqs.borrow_mut();
    if reqs.len() > 1 {
        c.dev.dio_batch(&mut reqs)?;
        // A request that failed under injection is the call's failure here.
        match reqs.iter().find(|r| r.result < 0) {
            Some(r) => Err(io::Error::from_raw_os_error(-r.result as i32)),
            None => Ok(0),
        }
    } else {
        c.dev.dio(&mut reqs[0]).map(|n| n as i32)
    }
}

fn dio_verify(c: &DioCase, _: i32) -> Result<()> {
    if c.write {
        let mut back = vec![0u8; c.len];
        c.file.read_exact_at(&mut back, c.at)?;
        ensure!(back == c.data, "the device does not hold what was written");
    } else {
        let got = &c.mem.addr();
        // SAFETY: Our mapping, `c.len` bytes from offset 512.
        let got = unsafe { std::slice::from_raw_parts((*got + 512) as *const u8, c.len) };
        ensure!(got == &c.data[..], "the memory does not hold what was read");
    }
    Ok(())
}

/// Fault injection (failslab, fail_page_alloc, fail_make_request), swept over every ioctl path:
/// each injection point in turn fails once, until a pass reaches none.
pub fn fault_injection_sweep() -> Result<()> {
    let _inj = Injectors::new()?;
    let fail = FailNth::open()?;
    let mut kmsg = KernelLog::open()?;
    let pins: [(&str, bool, bool); 4] = [
        ("PIN range", false, false),
        ("PIN range longterm", false, true),
        ("PIN iovec", true, false),
        ("PIN iovec longterm", true, true),
    ];
    let mut report = Vec::new();
    for (name, iovec, longterm) in pins {
        let path = Path {
            name,
            prepare: match (iovec, longterm) {
                (false, false) => || pin_case(false, false),
                (false, true) => || pin_case(false, true),
                (true, false) => || pin_case(true, false),
                (true, true) => || pin_case(true, true),
            },
            call: pin_call,
            verify: pin_verify,
        };
        report.push((name, sweep(&path, &fail, &mut kmsg)?));
    }
    type Prepare = fn() -> Result<DioCase>;
    let dios: [(&str, Prepare); 9] = [
        ("DIO simple read (8 KiB)", || dio_case(8 << 10, false, 0, 0)),
        ("DIO simple write (8 KiB)", || dio_case(8 << 10, true, 0, 0)),
        ("DIO one bio read (256 KiB)", || {
            dio_case(256 << 10, false, 0, 0)
        }),
        ("DIO one bio write (256 KiB)", || {
            dio_case(256 << 10, true, 0, 0)
        }),
        ("DIO multi-bio read (2 MiB)", || {
            dio_case(2 * MIB, false, 0, 0)
        }),
        ("DIO multi-bio write (2 MiB)", || {
            dio_case(2 * MIB, true, 0, 0)
        }),
        ("DIO iovec read (4 segments)", || {
            dio_case(64 << 10, false, 4, 0)
        }),
        ("DIO iovec write (4 segments)", || {
            dio_case(64 << 10, true, 4, 0)
        }),
        ("DIO_BATCH (8 writes)", || dio_case(16 << 10, true, 0, 8)),
    ];
    for (name, prepare) in dios {
        let path = Path {
            name,
            prepare,
            call: dio_call,
            verify: dio_verify,
        };
        report.push((name, sweep(&path, &fail, &mut kmsg)?));
    }
    for (name, points) in report {
        println!("# fault injection: {name}: {points} injection points, each failed once");
        ensure!(
            points > 0,
            "{name}: no injection point reached: the sweep tests nothing"
        );
    }
    Ok(())
}

/// `move_pages(2)` of `pages` to `node`, or with no node only their nodes; the per-page status
/// (the node, or a negative errno).
fn move_pages(pages: &[usize], node: Option<i32>) -> Vec<i32> {
    let ptrs: Vec<*mut libc::c_void> = pages.iter().map(|&p| p as *mut libc::c_void).collect();
    let nodes = node.map(|n| vec![n; pages.len()]);
    let mut status = vec![0i32; pages.len()];
    // SAFETY: Arrays of `pages.len()` entries each (a null node array only queries); pid 0 is
    // this process.
    unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            pages.len(),
            ptrs.as_ptr(),
            nodes.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
            status.as_mut_ptr(),
            if node.is_some() { MPOL_MF_MOVE } else { 0 },
        )
    };
    status
}

/// One memory-management operation on the `len` bytes at `addr`, chosen by `round`.
fn disturb(round: usize, addr: usize, len: usize) {
    let pages: Vec<usize> = (addr..addr + len).step_by(PAGE).collect();
    match round % 4 {
        0 => {
            let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
        }
        1 => {
            // Every page to the other node, and back next time.
            let node = move_pages(&pages[..1], None).first().copied().unwrap_or(0);
            move_pages(&pages, Some(1 - node.clamp(0, 1)));
        }
        2 => {
            let cmd = format!("{},{:#x},{:#x}", std::process::id(), addr, addr + len);
            let _ = std::fs::write("/sys/kernel/debug/split_huge_pages", cmd);
        }
        _ => {
            let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
            move_pages(&pages, Some(0));
        }
    }
}

/// Compaction, migration between the guest's two NUMA nodes and THP splitting of the buffer
/// while multi-bio direct I/Os run on it, and `MADV_DONTNEED` and `mremap` of it: the data of
/// every I/O must be right (for the pages that stayed mapped), and nothing may crash or leak.
pub fn mm_races_during_io() -> Result<()> {
    let dev = device()?;
    let f = pindio::open_blockdev(NULLB, true, false)?;
    let fd = f.as_raw_fd();
    let len = 8 * MIB;
    let at = 150 * MIB as u64;
    let data = pattern(0x4b, len);
    // THP-backed where the kernel gives it (2 MiB aligned inside the mapping).
    let mut m = Buf::advised(len + 2 * MIB, libc::MADV_HUGEPAGE)?;
    let base = (m.addr() + 2 * MIB - 1) & !(2 * MIB - 1);
    let off = base - m.addr();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                disturb(round, base, len);
                round += 1;
            }
        });
        for round in 0..16 {
            let write = round % 2 == 0;
            if write {
                m.bytes()[off..off + len].copy_from_slice(&data);
            } else {
                m.bytes()[off..off + len].fill(0);
            }
            let n = dev.dio(&mut dio_req(fd, write, at, DioMem::Buf(base, len)))?;
            ensure!(n == len, "round {round}: {n} bytes");
            let mut back = vec![0u8; len];
            if write {
                f.read_exact_at(&mut back, at)?;
            } else {
                back.copy_from_slice(&m.bytes()[off..off + len]);
            }
            ensure!(
                back == data,
                "round {round} (write {write}): data differs under mm races"
            );
        }
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    // MADV_DONTNEED and mremap while a read is in flight. After MADV_DONTNEED each page ends up
    // with the data or zero (a page dropped from the mapping after the pin: the read went into
    // the page the mapping no longer has). mremap moves the pages with their mapping and back,
    // so a read that succeeded left the data in every page (all zeros there would be a read
    // that moved nothing). Nothing crashes, no pin stays behind.
    for round in 0..8 {
        let mut m = Buf::new(len)?;
        let addr = m.addr();
        let res = std::thread::scope(|s| {
            let io = s.spawn(|| dev.dio(&mut dio_req(fd, false, at, DioMem::Buf(addr, len))));
            std::thread::sleep(std::time::Duration::from_micros(200 * round as u64));
            // SAFETY: Our own mapping: drop its pages, or move it and back.
            unsafe {
                if round % 2 == 0 {
                    libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED);
                } else {
                    let tmp =
                        libc::mremap(addr as *mut libc::c_void, len, len, libc::MREMAP_MAYMOVE);
                    if tmp != libc::MAP_FAILED && tmp as usize != addr {
                        libc::mremap(
                            tmp,
                            len,
                            len,
                            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                            addr as *mut libc::c_void,
                        );
                    }
                }
            }
            io.join()
        })
        .map_err(|_| anyhow::anyhow!("I/O thread panicked"))?;
        match &res {
            Ok(n) => ensure!(*n == len, "round {round}: {n} bytes"),
            Err(e) => ensure!(e.raw_os_error() == Some(libc::EFAULT), "round {round}: {e}"),
        }
        let moved = round % 2 == 1;
        for (i, page) in m.bytes().chunks(PAGE).enumerate() {
            let want = &data[i * PAGE..(i + 1) * PAGE];
            if moved && res.is_ok() {
                ensure!(
                    page == want,
                    "round {round} (mremap): page {i} does not hold the data read"
                );
            } else {
                ensure!(
                    page == want || page.iter().all(|&b| b == 0),
                    "round {round}: page {i} holds neither the data nor zeros"
                );
            }
        }
    }
    Ok(())
}

/// Pins held while the same operations run: the pinned pages are neither moved nor freed, so
/// READ_PINNED still returns what was pinned, even after the mapping dropped or moved them.
pub fn mm_races_while_pinned() -> Result<()> {
    let len = 4 * MIB;
    let data = pattern(0x59, len);
    for flags in [0, uapi::PINDIO_PIN_WRITE, uapi::PINDIO_PIN_LONGTERM] {
        let dev = device()?;
        let mut m = Buf::advised(len + 2 * MIB, libc::MADV_HUGEPAGE)?;
        let base = (m.addr() + 2 * MIB - 1) & !(2 * MIB - 1);
        let off = base - m.addr();
        m.bytes()[off..off + len].copy_from_slice(&data);
        let pin = dev.pin(base, len as u64, flags)?;
        for round in 0..6 {
            disturb(round, base, len);
        }
        // SAFETY: Our own mapping: its pages are dropped; the pin keeps them.
        unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        let mut got = vec![0u8; len];
        dev.read_pinned(pin.handle, 0, &mut got)?;
        ensure!(
            got == data,
            "flags {flags:#x}: pinned pages changed under mm operations"
        );
        dev.unpin(pin.handle)?;
    }
    Ok(())
}
