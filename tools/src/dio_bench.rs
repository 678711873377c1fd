// SPDX-License-Identifier: GPL-2.0

//! `pindio bench dio`: direct I/O through pindio next to the kernel's own paths on the same
//! device, in the same boot: pread/pwrite(O_DIRECT) for synchronous I/O, io_uring for batches.
//!
//! Each measurement runs for a fixed time and counts operations; the rounds alternate which path
//! goes first. Two ratios are reported: of the best round of each path, and the median of the
//! rounds' paired ratios (each round's two runs are back to back, so slow drift of the host
//! cancels out). Only the ratios mean anything under TCG.

use crate::{dio_req, median, open_blockdev, Buf, Device, DioMem};
use anyhow::{ensure, Context, Result};
use io_uring::{opcode, types, IoUring};
use std::{
    io::{Seek, SeekFrom},
    os::{fd::AsRawFd, unix::fs::FileExt},
    time::{Duration, Instant},
};

/// Requests per pindio batch and io_uring queue depth.
pub const QD: usize = 32;

/// A small xorshift generator for random offsets (no dependency, repeatable).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A random `block`-aligned offset of a device of `size` bytes.
    pub(crate) fn offset(&mut self, size: u64, block: u64) -> u64 {
        (self.next_u64() % (size / block)) * block
    }
}

/// Consecutive 1 MiB offsets of a device of some size, wrapping at its end.
pub(crate) struct Seq {
    pos: u64,
    end: u64,
}

impl Seq {
    pub(crate) fn new(size: u64) -> Self {
        Self {
            pos: 0,
            end: size & !((1 << 20) - 1),
        }
    }

    pub(crate) fn next(&mut self) -> u64 {
        let p = self.pos;
        self.pos = (self.pos + (1 << 20)) % self.end;
        p
    }
}

/// One path of one measurement, to run alone (`--only`, for profiling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Only {
    /// `qd1`, `read`, `write` or `batch`; `idle` runs nothing.
    measure: &'static str,
    /// The kernel's path instead of pindio's.
    kernel: bool,
    /// Of `pindio bench blk` (named `blk-...`).
    blk: bool,
}

impl Only {
    const MEASURES: [&'static str; 5] = ["qd1", "read", "write", "batch", "idle"];

    /// `qd1`, `qd1-kernel`, ..., `idle`; each but `idle` also with `blk-` in front, for
    /// `pindio bench blk`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (s, blk) = match s.strip_prefix("blk-") {
            Some(rest) if rest != "idle" => (rest, true),
            _ => (s, false),
        };
        let (name, kernel) = match s.strip_suffix("-kernel") {
            Some(name) => (name, true),
            None => (s, false),
        };
        match Self::MEASURES.iter().find(|&&m| m == name) {
            Some(&measure) if !(kernel && measure == "idle") => Ok(Self {
                measure,
                kernel,
                blk,
            }),
            _ => Err(format!(
                "not one of qd1, read, write, batch (each also with -kernel), idle: {s}"
            )),
        }
    }
}

/// What one timed run did: the operations (I/O requests) it counted and the wall time they took.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    ops: u64,
    secs: f64,
}

impl Run {
    fn rate(self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// Runs `op` (which does `n` operations, I/O requests, per call) for `secs`.
pub(crate) fn rate(secs: f64, n: u64, mut op: impl FnMut() -> Result<()>) -> Result<Run> {
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < limit {
        op()?;
        ops += n;
    }
    Ok(Run {
        ops,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// The rates of both paths over some rounds.
pub(crate) struct Compared {
    /// The best round of each path.
    best: (f64, f64),
    /// The median over the rounds of ours / theirs.
    paired: f64,
}

/// Compares the paths of `measure` over `rounds` rounds ([`compare`]), or, if `only` selects one
/// of them, runs that one once and prints what it counted, for `scripts/tbprof/report`
/// ("<case>: <ops> ops in <secs> s, <rate> ops/s"); `None` then, and when `only` selects
/// another measurement.
pub(crate) fn measure(
    measure: &str,
    rounds: u32,
    only: Option<Only>,
    mut ours: impl FnMut() -> Result<Run>,
    mut theirs: impl FnMut() -> Result<Run>,
) -> Result<Option<Compared>> {
    let Some(only) = only else {
        return compare(rounds, ours, theirs).map(Some);
    };
    if only.measure == measure {
        let (run, side) = if only.kernel {
            (theirs()?, "-kernel")
        } else {
            (ours()?, "")
        };
        let bench = if only.blk { "blk-" } else { "" };
        println!(
            "{bench}{measure}{side}: {} ops in {:.6} s, {:.0} ops/s",
            run.ops,
            run.secs,
            run.rate()
        );
    }
    Ok(None)
}

/// Runs `rounds` rounds of each path, alternating which runs first.
fn compare(
    rounds: u32,
    mut ours: impl FnMut() -> Result<Run>,
    mut theirs: impl FnMut() -> Result<Run>,
) -> Result<Compared> {
    let (mut a, mut b) = (0f64, 0f64);
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let (x, y) = if r % 2 == 0 {
            let x = ours()?.rate();
            (x, theirs()?.rate())
        } else {
            let y = theirs()?.rate();
            (ours()?.rate(), y)
        };
        a = a.max(x);
        b = b.max(y);
        ratios.push(x / y.max(f64::MIN_POSITIVE));
    }
    Ok(Compared {
        best: (a, b),
        paired: median(&mut ratios),
    })
}

/// One line of results: what, our best rate, theirs, the ratio of the two, the median ratio.
pub(crate) fn report(what: &str, unit: &str, scale: f64, c: Compared, kernel: &str) {
    let (ours, theirs) = c.best;
    println!(
        "{what:<34} {:>12.0} {:>12.0} {unit:<6} {:>7.3} {:>7.3}   (kernel path: {kernel})",
        ours / scale,
        theirs / scale,
        ours / theirs.max(f64::MIN_POSITIVE),
        c.paired
    );
}

/// Runs the whole benchmark on the block device at `path`, or only the path `only` selects.
pub fn run(dev: &Device, path: &str, secs: f64, rounds: u32, only: Option<Only>) -> Result<()> {
    let f = open_blockdev(path, true, false)?;
    let direct = open_blockdev(path, true, true)?;
    // A block device's size: its metadata says 0, its end is where a seek ends.
    let size = (&f).seek(SeekFrom::End(0))?;
    ensure!(size >= 64 << 20, "{path} is too small ({size} bytes)");
    let fd = f.as_raw_fd();
    let mut buf = Buf::new(QD * 4096 + (1 << 20))?;
    let addr = buf.addr();
    if only.is_none() {
        println!(
            "direct-I/O benchmark on {path} ({} MiB), {rounds} rounds of {secs} s each \
             (rates: the best round; ratio: of the best rounds; median: of the rounds' ratios)",
            size >> 20
        );
        println!(
            "{:<34} {:>12} {:>12} {:<6} {:>7} {:>7}",
            "", "pindio", "kernel", "unit", "ratio", "median"
        );
    }

    // 4 KiB random reads, one at a time.
    // The same offsets for both paths.
    let (mut rng, mut rng2) = (Rng(0x9e37_79b9_7f4a_7c15), Rng(0x9e37_79b9_7f4a_7c15));
    let qd1 = measure(
        "qd1",
        rounds,
        only,
        || {
            rate(secs, 1, || {
                let mut req = dio_req(fd, false, rng.offset(size, 4096), DioMem::Buf(addr, 4096));
                dev.dio(&mut req).context("PINDIO_IOC_DIO")?;
                Ok(())
            })
        },
        || {
            let b = &mut buf.bytes()[..4096];
            rate(secs, 1, || {
                direct.read_exact_at(b, rng2.offset(size, 4096))?;
                Ok(())
            })
        },
    )?;
    if let Some(qd1) = qd1 {
        report("4 KiB random read, QD1", "IOPS", 1.0, qd1, "pread O_DIRECT");
    }

    // 1 MiB sequential reads and writes.
    for write in [false, true] {
        // The same offsets for both paths.
        let (mut ours, mut theirs) = (Seq::new(size), Seq::new(size));
        let mut next = || ours.next();
        let mut next2 = || theirs.next();
        let r = measure(
            if write { "write" } else { "read" },
            rounds,
            only,
            || {
                rate(secs, 1, || {
                    let mut req = dio_req(fd, write, next(), DioMem::Buf(addr, 1 << 20));
                    dev.dio(&mut req).context("PINDIO_IOC_DIO")?;
                    Ok(())
                })
            },
            || {
                let b = &mut buf.bytes()[..1 << 20];
                rate(secs, 1, || {
                    if write {
                        direct.write_all_at(b, next2())?;
                    } else {
                        direct.read_exact_at(b, next2())?;
                    }
                    Ok(())
                })
            },
        )?;
        let (what, kernel) = if write {
            ("1 MiB sequential write", "pwrite O_DIRECT")
        } else {
            ("1 MiB sequential read", "pread O_DIRECT")
        };
        if let Some(r) = r {
            // Rates are of 1 MiB I/Os; MB/s = ops/s * 2^20 / 1e6.
            report(what, "MB/s", 1e6 / (1 << 20) as f64, r, kernel);
        }
    }

    // 4 KiB random reads, 32 at a time.
    let mut ring = IoUring::new(QD as u32 * 2).context("io_uring_setup")?;
    let dfd = direct.as_raw_fd();
    let batch = measure(
        "batch",
        rounds,
        only,
        || {
            rate(secs, QD as u64, || {
                let mut reqs: Vec<_> = (0..QD)
                    .map(|i| {
                        let off = rng.offset(size, 4096);
                        dio_req(fd, false, off, DioMem::Buf(addr + i * 4096, 4096))
                    })
                    .collect();
                dev.dio_batch(&mut reqs).context("PINDIO_IOC_DIO_BATCH")?;
                ensure!(
                    reqs.iter().all(|r| r.result == 4096),
                    "a batched read failed"
                );
                Ok(())
            })
        },
        || {
            rate(secs, QD as u64, || {
                for i in 0..QD {
                    let sqe = opcode::Read::new(types::Fd(dfd), (addr + i * 4096) as *mut u8, 4096)
                        .offset(rng2.offset(size, 4096))
                        .build()
                        .user_data(i as u64);
                    // SAFETY: The buffer stays mapped until the completions are reaped below.
                    unsafe { ring.submission().push(&sqe) }.context("io_uring SQ full")?;
                }
                ring.submit_and_wait(QD)?;
                let done: Vec<i32> = ring.completion().map(|c| c.result()).collect();
                ensure!(
                    done.len() == QD && done.iter().all(|&r| r == 4096),
                    "io_uring reads: {done:?}"
                );
                Ok(())
            })
        },
    )?;
    if let Some(batch) = batch {
        report(
            "4 KiB random read, 32 per batch",
            "IOPS",
            1.0,
            batch,
            "io_uring QD32",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Only;

    #[test]
    fn only_parses_each_path_and_rejects_the_rest() {
        assert_eq!(
            Only::parse("qd1"),
            Ok(Only {
                measure: "qd1",
                kernel: false,
                blk: false
            })
        );
        assert_eq!(
            Only::parse("batch-kernel"),
            Ok(Only {
                measure: "batch",
                kernel: true,
                blk: false
            })
        );
        assert_eq!(
            Only::parse("blk-read-kernel"),
            Ok(Only {
                measure: "read",
                kernel: true,
                blk: true
            })
        );
        assert_eq!(
            Only::parse("idle"),
            Ok(Only {
                measure: "idle",
                kernel: false,
                blk: false
            })
        );
        for bad in [
            "",
            "idle-kernel",
            "qd2",
            "-kernel",
            "read-kernel-kernel",
            "QD1",
            "blk-idle",
            "blk-",
            "blk-blk-qd1",
        ] {
            assert!(Only::parse(bad).is_err(), "{bad}");
        }
    }
}
