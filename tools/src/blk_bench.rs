// SPDX-License-Identifier: GPL-2.0

//! `pindio bench blk`: pindio's stacked device against a peer on the same backing block device:
//! the loop driver with direct I/O on (util-linux's `losetup --direct-io=on`, at the backing's
//! logical block size), dm-linear (`dmsetup`), or the raw device, driven the same way:
//! pread(O_DIRECT) one at a time, io_uring 32 at a time, and 1 MiB sequential reads and writes.
//! Rates, ratios and rounds are those of `pindio bench dio` (see [`crate::dio_bench`]).

use crate::dio_bench::{measure, rate, report, Only, Rng, Seq, QD};
use crate::{host::KernelLoop, open_blockdev, Buf, Device};
use anyhow::{bail, ensure, Context, Result};
use io_uring::{opcode, types, IoUring};
use std::{
    cell::RefCell,
    fs::File,
    io::{Seek, SeekFrom},
    os::{fd::AsRawFd, unix::fs::FileExt},
};

/// `BLKSSZGET` of `<linux/fs.h>`: the logical block size.
const BLKSSZGET: libc::c_ulong = 0x1268;

/// The logical block size of the block device open as `f`.
fn logical_block_size(f: &File) -> Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through its argument, which points to `size`.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKSSZGET, &mut size) } < 0 {
        bail!("BLKSSZGET: {}", std::io::Error::last_os_error());
    }
    Ok(size as u32)
}

/// One side of the comparison: a device opened for direct I/O, and a ring to drive it.
struct Side {
    file: File,
    ring: IoUring,
}

impl Side {
    fn new(path: &str) -> Result<Self> {
        Ok(Self {
            file: open_blockdev(path, true, true)?,
            ring: IoUring::new(QD as u32 * 2).context("io_uring_setup")?,
        })
    }

    /// `QD` 4 KiB reads at random offsets from `rng`, through io_uring, waited for together.
    fn uring_batch(&mut self, buf: usize, size: u64, rng: &mut Rng) -> Result<()> {
        let fd = self.file.as_raw_fd();
        for i in 0..QD {
            let sqe = opcode::Read::new(types::Fd(fd), (buf + i * 4096) as *mut u8, 4096)
                .offset(rng.offset(size, 4096))
                .build()
                .user_data(i as u64);
            // SAFETY: The buffer stays mapped until the completions are reaped below.
            unsafe { self.ring.submission().push(&sqe) }.context("io_uring SQ full")?;
        }
        self.ring.submit_and_wait(QD)?;
        let done: Vec<i32> = self.ring.completion().map(|c| c.result()).collect();
        ensure!(
            done.len() == QD && done.iter().all(|&r| r == 4096),
            "io_uring reads: {done:?}"
        );
        Ok(())
    }
}

/// What pindio's stacked device is compared with, on the same backing device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The loop driver with direct I/O on (util-linux's `losetup --direct-io=on`).
    Loop,
    /// dm-linear over the whole device (`dmsetup create`), the kernel's own remapper.
    DmLinear,
    /// The backing device itself: the limit.
    Raw,
}

impl Peer {
    /// `loop`, `dm-linear` or `raw`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "loop" => Ok(Self::Loop),
            "dm-linear" => Ok(Self::DmLinear),
            "raw" => Ok(Self::Raw),
            _ => Err(format!("not one of loop, dm-linear, raw: {s}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Loop => "loop",
            Self::DmLinear => "dm-linear",
            Self::Raw => "raw",
        }
    }
}

/// The dm device the comparison makes.
const DM_NAME: &str = "pindio-bench-linear";

/// Makes the device one side of the comparison drives over `backing` (pindio's stacked device,
/// or `peer`), runs `f` on it and removes it again: each measurement makes its own, since
/// dm-linear and pindio's device both claim the backing device and cannot be stacked on it at
/// once. Making and removing are outside the measured time.
fn with_side<T>(
    dev: &Device,
    backing: &str,
    peer: Option<Peer>,
    f: impl FnOnce(&mut Side) -> Result<T>,
) -> Result<T> {
    match peer {
        None => {
            let b = open_blockdev(backing, true, false)?;
            let index = dev
                .loop_add(b.as_raw_fd(), 0, 0, 0)
                .context("PINDIO_IOC_LOOP_ADD")?;
            drop(b);
            let ran = Side::new(&crate::loop_path(index)).and_then(|mut s| f(&mut s));
            let removed = dev.loop_del(index).context("PINDIO_IOC_LOOP_DEL");
            ran.and_then(|v| removed.map(|()| v))
        }
        Some(Peer::Raw) => f(&mut Side::new(backing)?),
        Some(Peer::Loop) => {
            let b = open_blockdev(backing, false, false)?;
            let lo = KernelLoop::new(backing, logical_block_size(&b)?, 0, 0)?;
            f(&mut Side::new(lo.path())?)
        }
        Some(Peer::DmLinear) => {
            let b = open_blockdev(backing, false, false)?;
            let sectors = (&b).seek(SeekFrom::End(0))? >> 9;
            drop(b);
            let table = format!("0 {sectors} linear {backing} 0");
            crate::host::run("dmsetup", &["create", DM_NAME, "--table", &table])?;
            let ran = Side::new(&format!("/dev/mapper/{DM_NAME}")).and_then(|mut s| f(&mut s));
            let removed = crate::host::run("dmsetup", &["remove", DM_NAME]).map(drop);
            ran.and_then(|v| removed.map(|()| v))
        }
    }
}

/// Runs the comparison on the block device at `backing` against `peer`, or only the path `only`
/// selects (the `-kernel` side being the peer's).
pub fn run(
    dev: &Device,
    backing: &str,
    peer: Peer,
    secs: f64,
    rounds: u32,
    only: Option<Only>,
) -> Result<()> {
    let b = open_blockdev(backing, false, false)?;
    let size = (&b).seek(SeekFrom::End(0))?;
    drop(b);
    ensure!(size >= 64 << 20, "{backing} is too small ({size} bytes)");
    // One buffer for both sides, lent to each in turn (they never run at once): a 1 MiB I/O
    // costs less when its pages happen to be physically contiguous (fewer vectors and
    // segments), so two buffers would make the sides differ by where their pages landed.
    let buf = RefCell::new(Buf::new(QD * 4096 + (1 << 20))?);
    let addr = buf.borrow().addr();
    let how = |what: &str| format!("{}, {what}", peer.name());
    if only.is_none() {
        println!(
            "stacked devices on {backing} ({} MiB): pindio-loop against {} made over it for \
             each measurement; {rounds} rounds of {secs} s each (rates: the best round; ratio: \
             of the best rounds; median: of the rounds' ratios)",
            size >> 20,
            peer.name()
        );
        println!(
            "{:<34} {:>12} {:>12} {:<6} {:>7} {:>7}",
            "",
            "pindio-loop",
            peer.name(),
            "unit",
            "ratio",
            "median"
        );
    }
    let (mut r1, mut r2) = (Rng(0x9e37_79b9_7f4a_7c15), Rng(0x9e37_79b9_7f4a_7c15));
    let qd1 = |side: &Side, rng: &mut Rng, b: &mut [u8]| {
        rate(secs, 1, || {
            side.file.read_exact_at(b, rng.offset(size, 4096))?;
            Ok(())
        })
    };
    if let Some(c) = measure(
        "qd1",
        rounds,
        only,
        || {
            with_side(dev, backing, None, |s| {
                qd1(s, &mut r1, &mut buf.borrow_mut().bytes()[..4096])
            })
        },
        || {
            with_side(dev, backing, Some(peer), |s| {
                qd1(s, &mut r2, &mut buf.borrow_mut().bytes()[..4096])
            })
        },
    )? {
        report(
            "stacked: 4 KiB rand read, QD1",
            "IOPS",
            1.0,
            c,
            &how("pread O_DIRECT"),
        );
    }
    for write in [false, true] {
        let (mut s1, mut s2) = (Seq::new(size), Seq::new(size));
        let seq = |side: &Side, s: &mut Seq, b: &mut [u8]| {
            rate(secs, 1, || {
                if write {
                    side.file.write_all_at(b, s.next())?;
                } else {
                    side.file.read_exact_at(b, s.next())?;
                }
                Ok(())
            })
        };
        let (name, what, kernel) = if write {
            ("write", "stacked: 1 MiB seq write", "pwrite O_DIRECT")
        } else {
            ("read", "stacked: 1 MiB seq read", "pread O_DIRECT")
        };
        if let Some(c) = measure(
            name,
            rounds,
            only,
            || {
                with_side(dev, backing, None, |d| {
                    seq(d, &mut s1, &mut buf.borrow_mut().bytes()[..1 << 20])
                })
            },
            || {
                with_side(dev, backing, Some(peer), |d| {
                    seq(d, &mut s2, &mut buf.borrow_mut().bytes()[..1 << 20])
                })
            },
        )? {
            report(what, "MB/s", 1e6 / (1 << 20) as f64, c, &how(kernel));
        }
    }
    if let Some(c) = measure(
        "batch",
        rounds,
        only,
        || {
            with_side(dev, backing, None, |s| {
                rate(secs, QD as u64, || s.uring_batch(addr, size, &mut r1))
            })
        },
        || {
            with_side(dev, backing, Some(peer), |s| {
                rate(secs, QD as u64, || s.uring_batch(addr, size, &mut r2))
            })
        },
    )? {
        report(
            "stacked: 4 KiB rand read, QD32",
            "IOPS",
            1.0,
            c,
            &how("io_uring"),
        );
    }
    Ok(())
}
