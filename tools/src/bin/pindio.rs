// SPDX-License-Identifier: GPL-2.0

//! `pindio`: the command line of the `/dev/pindio` test device.

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use pindio::{dio_bench, dio_req, gup_test, median, open_blockdev, uapi, Buf, Device, DioMem};
use std::{
    fs::File,
    os::fd::AsRawFd,
    os::unix::fs::FileExt,
    time::{Duration, Instant},
};

#[derive(Parser)]
#[command(version, about = "Drive the pindio test device (/dev/pindio)")]
struct Cli {
    /// The device node.
    #[arg(long, default_value = pindio::DEVICE_PATH)]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the module's ABI version and what it can do.
    Info,
    /// Pin a buffer of ours, show what was pinned, read it back through the pin, unpin.
    Pin {
        /// Bytes to pin.
        #[arg(long, default_value_t = 3 * 4096 + 100)]
        size: usize,
        /// Offset of the buffer into its first page.
        #[arg(long, default_value_t = 100)]
        offset: usize,
        /// Pin for the device to write (FOLL_WRITE).
        #[arg(long)]
        write: bool,
        /// FOLL_LONGTERM.
        #[arg(long)]
        longterm: bool,
    },
    /// Write a pattern to a block device through PINDIO_IOC_DIO.
    Write(DioArgs),
    /// Read from a block device through PINDIO_IOC_DIO; show a summary (or check the pattern).
    Read(DioArgs),
    /// Write a pattern through pindio, read it back through pindio and pread(O_DIRECT), compare.
    Verify(DioArgs),
    /// Stacked block devices (/dev/pindio-loopN), in the manner of losetup.
    #[command(subcommand)]
    Loop(Loop),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Loop {
    /// Make /dev/pindio-loopN on a block device; prints its path.
    Add {
        /// The backing block device (opened by this tool, read-write unless --read-only).
        dev: String,
        /// Where the device starts on the backing device (suffixes K, M, G).
        #[arg(long, default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// The device's size; 0 for everything after --offset.
        #[arg(long, default_value = "0", value_parser = parse_size)]
        sizelimit: u64,
        /// A read-only device.
        #[arg(long)]
        read_only: bool,
    },
    /// List the stacked devices.
    List,
    /// Remove /dev/pindio-loopN (refused while it is open).
    Del {
        /// N.
        index: u32,
    },
}

/// Where and how a direct I/O goes.
#[derive(Args)]
struct DioArgs {
    /// The block device (opened by this tool, which passes the fd).
    dev: String,
    /// Byte offset on the device (suffixes K, M, G).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    offset: u64,
    /// Bytes to transfer (suffixes K, M, G).
    #[arg(long, default_value = "4K", value_parser = parse_size)]
    size: u64,
    /// Byte offset of the buffer into its first page (a multiple of the DMA alignment).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    mem_offset: u64,
    /// Split the buffer into an iovec of these segment sizes (comma-separated, suffixes allowed;
    /// each starts 512 bytes past a page boundary so the segments cross pages unevenly). Their
    /// sum is the size.
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    iovec: Vec<u64>,
    /// Pattern seed: byte i of the device range is ((offset + i) % 251) ^ seed.
    #[arg(long, default_value_t = 0x5a)]
    seed: u8,
    /// Write with REQ_FUA.
    #[arg(long)]
    fua: bool,
    /// read: also check that the bytes read are the pattern.
    #[arg(long)]
    check: bool,
}

#[derive(Subcommand)]
enum Bench {
    /// pindio's stacked device against a peer (`--peer`: the loop driver with direct I/O on,
    /// dm-linear or the raw device) on the same backing block device (DEV), in the same boot;
    /// `--only`'s `-kernel` side is the peer's.
    Blk {
        #[command(flatten)]
        run: BenchRun,
        /// loop, dm-linear or raw.
        #[arg(long, default_value = "loop", value_parser = pindio::blk_bench::Peer::parse)]
        peer: pindio::blk_bench::Peer,
    },
    /// Time pinning + releasing a buffer: PINDIO_IOC_PIN_BENCH next to gup_test's
    /// PIN_FAST_BENCHMARK on the same buffer, in the same boot.
    Pin {
        /// Buffer size in MiB.
        #[arg(long, default_value_t = 512)]
        mib: usize,
        /// Pages per call (comma-separated list).
        #[arg(long, value_delimiter = ',', default_value = "1,512")]
        pages_per_call: Vec<u32>,
        /// Rounds per setting; the best of them is reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Back the buffer with huge pages (MADV_HUGEPAGE) instead of small ones
        /// (MADV_NOHUGEPAGE, the default: khugepaged cannot change it between rounds).
        #[arg(long)]
        thp: bool,
    },
    /// Direct I/O through pindio next to the kernel's own paths on the same device, in the same
    /// boot: pread/pwrite(O_DIRECT) and io_uring.
    Dio(BenchRun),
}

/// The device and the timing of a comparison of two paths.
#[derive(Args)]
struct BenchRun {
    /// The block device (null_blk with memory_backed=0 measures the I/O paths alone).
    dev: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Rounds per measurement, alternating the two paths; the best is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Run one path alone for `--secs` and print its rate (for `make profile`): qd1, read,
    /// write or batch (pindio), the same with `-kernel` (the kernel's path), or idle.
    #[arg(long, value_parser = dio_bench::Only::parse)]
    only: Option<dio_bench::Only>,
}

/// A populated anonymous buffer of at least `len` bytes, filled with `i % 251` at byte `i`;
/// with `thp` false, of small pages only (`MADV_NOHUGEPAGE`), else huge pages where possible
/// (`MADV_HUGEPAGE`).
fn buffer(len: usize, thp: bool) -> Result<Buf> {
    let advice = if thp {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    let mut buf = Buf::advised(len, advice).context("mmap")?;
    for (i, b) in buf.bytes().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    Ok(buf)
}

fn info(dev: &Device) -> Result<()> {
    let v = dev.version().context("PINDIO_IOC_VERSION")?;
    println!("pindio module ABI version {}", v.abi_version);
    if v.abi_version != pindio::ABI_VERSION {
        println!(
            "  (this tool was built for ABI version {}; results may be wrong)",
            pindio::ABI_VERSION
        );
    }
    println!("features:");
    for word in pindio::feature_words(v.features) {
        println!("  - {word}");
    }
    let missing = pindio::FEATURES & !v.features;
    if missing != 0 {
        println!("this tool knows features the module lacks:");
        for word in pindio::feature_words(missing) {
            println!("  - {word}");
        }
    }
    Ok(())
}

fn pin(dev: &Device, size: usize, offset: usize, write: bool, longterm: bool) -> Result<()> {
    ensure!(size > 0, "--size must be above 0");
    let mut buf = buffer(offset + size, false)?;
    let mut flags = 0;
    if write {
        flags |= uapi::PINDIO_PIN_WRITE;
    }
    if longterm {
        flags |= uapi::PINDIO_PIN_LONGTERM;
    }
    let (before, _) = pindio::foll_pin_counts()?;
    let addr = buf.addr() + offset;
    let pin = dev
        .pin(addr, size as u64, flags)
        .context("PINDIO_IOC_PIN")?;
    let (after, _) = pindio::foll_pin_counts()?;
    println!(
        "pinned {} bytes at {addr:#x} on {} pages (handle {}); nr_foll_pin_acquired went up by {}",
        pin.bytes,
        pin.nr_pages,
        pin.handle,
        after - before
    );
    let mut back = vec![0u8; size];
    dev.read_pinned(pin.handle, 0, &mut back)
        .context("PINDIO_IOC_READ_PINNED")?;
    if back[..] != buf.bytes()[offset..offset + size] {
        bail!("the pinned pages do not hold what the buffer holds");
    }
    println!("read {size} bytes back through the pin: they match the buffer");
    dev.unpin(pin.handle).context("PINDIO_IOC_UNPIN")?;
    let (acquired, released) = pindio::foll_pin_counts()?;
    println!(
        "unpinned; pin balance: acquired {acquired}, released {released} ({})",
        if acquired == released {
            "balanced"
        } else {
            "NOT balanced"
        }
    );
    Ok(())
}

/// A size such as 4096, 4K, 1M or 2G.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|e| format!("{s}: {e}"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{s}: too large"))
}

/// The pattern byte at device offset `pos`.
fn pattern_byte(pos: u64, seed: u8) -> u8 {
    (pos % 251) as u8 ^ seed
}

/// The memory of one I/O: a buffer, and the `(offset in buf, len)` pieces the device bytes map
/// to, in order.
struct IoMem {
    buf: Buf,
    pieces: Vec<(usize, usize)>,
    iov: Vec<libc::iovec>,
    use_iovec: bool,
}

impl IoMem {
    fn new(a: &DioArgs) -> Result<Self> {
        let size = usize::try_from(a.size)?;
        let mut pieces = Vec::new();
        if a.iovec.is_empty() {
            pieces.push((a.mem_offset as usize, size));
        } else {
            let mut at = 0usize;
            for &len in &a.iovec {
                // Each segment 512 bytes past a page boundary, one page apart from the last.
                let start = at.next_multiple_of(4096) + 512;
                pieces.push((start, len as usize));
                at = start + len as usize + 4096;
            }
            let total: u64 = a.iovec.iter().sum();
            ensure!(
                total == a.size,
                "--iovec sums to {total}, --size is {}",
                a.size
            );
        }
        let end = pieces.iter().map(|(o, l)| o + l).max().unwrap_or(0);
        let buf = Buf::new(end)?;
        let iov = pieces
            .iter()
            .map(|&(o, l)| libc::iovec {
                iov_base: (buf.addr() + o) as *mut libc::c_void,
                iov_len: l,
            })
            .collect();
        Ok(Self {
            buf,
            pieces,
            iov,
            use_iovec: !a.iovec.is_empty(),
        })
    }

    fn mem(&self) -> DioMem<'_> {
        match self.pieces[..] {
            [(o, l)] if !self.use_iovec => DioMem::Buf(self.buf.addr() + o, l),
            _ => DioMem::Iovec(&self.iov),
        }
    }

    /// Fills the pieces with the pattern of device range starting at `pos`.
    fn fill(&mut self, pos: u64, seed: u8) {
        let mut dev = pos;
        for (o, l) in self.pieces.clone() {
            for (i, b) in self.buf.bytes()[o..o + l].iter_mut().enumerate() {
                *b = pattern_byte(dev + i as u64, seed);
            }
            dev += l as u64;
        }
    }

    /// The bytes of the pieces, in device order.
    fn gather(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for (o, l) in self.pieces.clone() {
            out.extend_from_slice(&self.buf.bytes()[o..o + l]);
        }
        out
    }
}

/// The first byte where `got` differs from the pattern of device offset `pos`.
fn first_mismatch(got: &[u8], pos: u64, seed: u8) -> Option<usize> {
    got.iter()
        .enumerate()
        .position(|(i, &b)| b != pattern_byte(pos + i as u64, seed))
}

/// One direct I/O through the device; returns the bytes and the time taken.
fn run_dio(
    dev: &Device,
    f: &File,
    write: bool,
    a: &DioArgs,
    m: &IoMem,
) -> Result<(usize, Duration)> {
    let mut req = dio_req(f.as_raw_fd(), write, a.offset, m.mem());
    if a.fua {
        req.flags |= uapi::PINDIO_DIO_FUA;
    }
    let t = Instant::now();
    let n = dev.dio(&mut req).with_context(|| {
        format!(
            "PINDIO_IOC_DIO {} {}",
            if write { "write" } else { "read" },
            a.dev
        )
    })?;
    Ok((n, t.elapsed()))
}

fn shape(a: &DioArgs, m: &IoMem) -> String {
    if !m.use_iovec {
        format!("one buffer at page offset {}", a.mem_offset)
    } else {
        format!("an iovec of {} segments ({:?})", m.pieces.len(), a.iovec)
    }
}

fn dio_write(dev: &Device, a: &DioArgs) -> Result<()> {
    let f = open_blockdev(&a.dev, true, false)?;
    let mut m = IoMem::new(a)?;
    m.fill(a.offset, a.seed);
    let (n, t) = run_dio(dev, &f, true, a, &m)?;
    println!(
        "wrote {n} bytes at offset {} of {} from {}{} in {} us (pattern seed {:#x})",
        a.offset,
        a.dev,
        shape(a, &m),
        if a.fua { ", FUA" } else { "" },
        t.as_micros(),
        a.seed
    );
    Ok(())
}

fn dio_read(dev: &Device, a: &DioArgs) -> Result<()> {
    let f = open_blockdev(&a.dev, false, false)?;
    let mut m = IoMem::new(a)?;
    let (n, t) = run_dio(dev, &f, false, a, &m)?;
    let got = m.gather();
    let head: Vec<String> = got.iter().take(16).map(|b| format!("{b:02x}")).collect();
    println!(
        "read {n} bytes at offset {} of {} into {} in {} us; first bytes: {}",
        a.offset,
        a.dev,
        shape(a, &m),
        t.as_micros(),
        head.join(" ")
    );
    if a.check {
        match first_mismatch(&got, a.offset, a.seed) {
            None => println!("all {n} bytes are the pattern (seed {:#x})", a.seed),
            Some(i) => bail!(
                "byte {i} (device offset {}) is not the pattern",
                a.offset + i as u64
            ),
        }
    }
    Ok(())
}

fn dio_verify(dev: &Device, a: &DioArgs) -> Result<()> {
    dio_write(dev, a)?;
    let f = open_blockdev(&a.dev, false, false)?;
    let mut m = IoMem::new(a)?;
    run_dio(dev, &f, false, a, &m)?;
    if let Some(i) = first_mismatch(&m.gather(), a.offset, a.seed) {
        bail!("pindio read back: byte {i} differs");
    }
    println!("read back through pindio: all {} bytes match", a.size);
    let direct = open_blockdev(&a.dev, false, true)?;
    let mut buf = Buf::new(a.size as usize)?;
    direct
        .read_exact_at(&mut buf.bytes()[..a.size as usize], a.offset)
        .context("pread(O_DIRECT)")?;
    if let Some(i) = first_mismatch(&buf.bytes()[..a.size as usize], a.offset, a.seed) {
        bail!("pread(O_DIRECT) read back: byte {i} differs");
    }
    println!("read back with pread(O_DIRECT): all {} bytes match", a.size);
    Ok(())
}

fn bench_pin(
    dev: &Device,
    mib: usize,
    pages_per_call: &[u32],
    rounds: u32,
    thp: bool,
) -> Result<()> {
    let len = mib << 20;
    let buf = buffer(len, thp)?;
    let addr = buf.addr();
    println!(
        "pin benchmark: {mib} MiB of {} pages, {rounds} rounds (order alternating), \
         read-only pins (times in us: the best round; ratio: of the best rounds; median: of the \
         rounds' ratios)",
        if thp { "huge" } else { "small (4 KiB)" }
    );
    println!(
        "{:>10} {:>11} {:>12} {:>11} {:>12} {:>9} {:>10} {:>9} {:>10}",
        "pages/call",
        "pindio get",
        "gup_test get",
        "pindio put",
        "gup_test put",
        "get ratio",
        "get median",
        "put ratio",
        "put median"
    );
    for &ppc in pages_per_call {
        let (mut ours, mut theirs) = ((u64::MAX, u64::MAX), (u64::MAX, u64::MAX));
        let (mut get_ratios, mut put_ratios) = (Vec::new(), Vec::new());
        // Alternate which goes first, so neither always runs on a cache the other warmed.
        for round in 0..rounds {
            let (mut a, mut b) = ((0, 0), (0, 0));
            for first in [round % 2 == 0, round % 2 == 1] {
                if first {
                    let (g, p) = dev
                        .pin_bench(addr, len as u64, ppc, 0)
                        .context("PINDIO_IOC_PIN_BENCH")?;
                    a = (g / 1000, p / 1000);
                } else {
                    b = gup_test::pin_fast_benchmark(addr, len as u64, ppc, 0)
                        .context("gup_test PIN_FAST_BENCHMARK (is debugfs mounted?)")?;
                }
            }
            ours = (ours.0.min(a.0), ours.1.min(a.1));
            theirs = (theirs.0.min(b.0), theirs.1.min(b.1));
            get_ratios.push(a.0 as f64 / b.0.max(1) as f64);
            put_ratios.push(a.1 as f64 / b.1.max(1) as f64);
        }
        println!(
            "{ppc:>10} {:>11} {:>12} {:>11} {:>12} {:>9.3} {:>10.3} {:>9.3} {:>10.3}",
            ours.0,
            theirs.0,
            ours.1,
            theirs.1,
            ours.0 as f64 / theirs.0.max(1) as f64,
            median(&mut get_ratios),
            ours.1 as f64 / theirs.1.max(1) as f64,
            median(&mut put_ratios),
        );
    }
    Ok(())
}

fn loop_cmd(dev: &Device, cmd: Loop) -> Result<()> {
    match cmd {
        Loop::Add {
            dev: path,
            offset,
            sizelimit,
            read_only,
        } => {
            let backing = open_blockdev(&path, !read_only, false)?;
            let flags = if read_only {
                uapi::PINDIO_LOOP_READ_ONLY
            } else {
                0
            };
            let index = dev
                .loop_add(backing.as_raw_fd(), offset, sizelimit, flags)
                .with_context(|| format!("PINDIO_IOC_LOOP_ADD on {path}"))?;
            println!("{}", pindio::loop_path(index));
        }
        Loop::List => {
            println!(
                "{:<18} {:>8} {:>8} {:>12} {:>12} {:>3}",
                "NAME", "DEV", "BACKING", "OFFSET", "SIZE", "RO"
            );
            for l in dev.loops().context("PINDIO_IOC_LOOP_INFO")? {
                println!(
                    "{:<18} {:>8} {:>8} {:>12} {:>12} {:>3}",
                    pindio::loop_path(l.index),
                    pindio::devt_name(l.dev),
                    pindio::devt_name(l.backing_dev),
                    l.offset,
                    l.sizelimit,
                    u32::from(l.flags & uapi::PINDIO_LOOP_READ_ONLY != 0)
                );
            }
        }
        Loop::Del { index } => dev
            .loop_del(index)
            .with_context(|| format!("PINDIO_IOC_LOOP_DEL {index}"))?,
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dev = Device::open_at(&cli.device).with_context(|| format!("open {}", cli.device))?;
    match cli.command {
        Command::Info => info(&dev),
        Command::Pin {
            size,
            offset,
            write,
            longterm,
        } => pin(&dev, size, offset, write, longterm),
        Command::Write(a) => dio_write(&dev, &a),
        Command::Read(a) => dio_read(&dev, &a),
        Command::Verify(a) => dio_verify(&dev, &a),
        Command::Loop(cmd) => loop_cmd(&dev, cmd),
        Command::Bench(Bench::Dio(b)) => dio_bench::run(&dev, &b.dev, b.secs, b.rounds, b.only),
        Command::Bench(Bench::Blk { run: b, peer }) => {
            pindio::blk_bench::run(&dev, &b.dev, peer, b.secs, b.rounds, b.only)
        }
        Command::Bench(Bench::Pin {
            mib,
            pages_per_call,
            rounds,
            thp,
        }) => bench_pin(&dev, mib, &pages_per_call, rounds, thp),
    }
}
