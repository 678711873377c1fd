// SPDX-License-Identifier: GPL-2.0

//! `pindio bench blk`: pindio's stacked device against the kernel's loop driver with direct I/O
//! on (util-linux's `losetup --direct-io=on`, at the backing's logical block size), both on the same backing block device, driven the same way:
//! pread(O_DIRECT) one at a time, io_uring 32 at a time, and 1 MiB sequential reads and writes.
//! Rates, ratios and rounds are those of `pindio bench dio` (see [`crate::dio_bench`]).

use crate::dio_bench::{measure, rate, report, Only, Rng, Seq, QD};
use crate::{host::KernelLoop, open_blockdev, Buf, Device};
use anyhow::{bail, ensure, Context, Result};
use io_uring::{opcode, types, IoUring};
use std::{
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

/// Runs the comparison on the block device at `backing`, or only the path `only` selects (the
/// `-kernel` side being the loop driver's).
pub fn run(dev: &Device, backing: &str, secs: f64, rounds: u32, only: Option<Only>) -> Result<()> {
    let b = open_blockdev(backing, true, false)?;
    let size = (&b).seek(SeekFrom::End(0))?;
    ensure!(size >= 64 << 20, "{backing} is too small ({size} bytes)");
    let index = dev
        .loop_add(b.as_raw_fd(), 0, 0, 0)
        .context("PINDIO_IOC_LOOP_ADD")?;
    let ours_path = crate::loop_path(index);
    let ran = (|| -> Result<()> {
        let lo = KernelLoop::new(backing, logical_block_size(&b)?, 0, 0)?;
        let (mut ours, mut theirs) = (Side::new(&ours_path)?, Side::new(lo.path())?);
        // A buffer for each side: the closures of a measurement each hold theirs.
        let (mut buf1, mut buf2) = (
            Buf::new(QD * 4096 + (1 << 20))?,
            Buf::new(QD * 4096 + (1 << 20))?,
        );
        let (addr1, addr2) = (buf1.addr(), buf2.addr());
        if only.is_none() {
            println!(
                "stacked devices on {backing} ({} MiB): {ours_path} against {} (loop, direct \
                 I/O on); {rounds} rounds of {secs} s each (rates: the best round; ratio: of \
                 the best rounds; median: of the rounds' ratios)",
                size >> 20,
                lo.path()
            );
            println!(
                "{:<34} {:>12} {:>12} {:<6} {:>7} {:>7}",
                "", "pindio-loop", "loop", "unit", "ratio", "median"
            );
        }
        let (mut r1, mut r2) = (Rng(0x9e37_79b9_7f4a_7c15), Rng(0x9e37_79b9_7f4a_7c15));
        let qd1 = |side: &Side, rng: &mut Rng, b: &mut [u8]| {
            rate(secs, 1, || {
                side.file.read_exact_at(b, rng.offset(size, 4096))?;
                Ok(())
            })
        };
        let (b1, b2) = (&mut buf1.bytes()[..1 << 20], &mut buf2.bytes()[..1 << 20]);
        if let Some(c) = measure(
            "qd1",
            rounds,
            only,
            || qd1(&ours, &mut r1, &mut b1[..4096]),
            || qd1(&theirs, &mut r2, &mut b2[..4096]),
        )? {
            report(
                "stacked: 4 KiB rand read, QD1",
                "IOPS",
                1.0,
                c,
                "loop, pread O_DIRECT",
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
            let (name, what, how) = if write {
                ("write", "stacked: 1 MiB seq write", "loop, pwrite O_DIRECT")
            } else {
                ("read", "stacked: 1 MiB seq read", "loop, pread O_DIRECT")
            };
            if let Some(c) = measure(
                name,
                rounds,
                only,
                || seq(&ours, &mut s1, b1),
                || seq(&theirs, &mut s2, b2),
            )? {
                report(what, "MB/s", 1e6 / (1 << 20) as f64, c, how);
            }
        }
        if let Some(c) = measure(
            "batch",
            rounds,
            only,
            || rate(secs, QD as u64, || ours.uring_batch(addr1, size, &mut r1)),
            || rate(secs, QD as u64, || theirs.uring_batch(addr2, size, &mut r2)),
        )? {
            report(
                "stacked: 4 KiB rand read, QD32",
                "IOPS",
                1.0,
                c,
                "loop, io_uring",
            );
        }
        Ok(())
    })();
    let removed = dev.loop_del(index).context("PINDIO_IOC_LOOP_DEL");
    ran.and(removed)
}
