// SPDX-License-Identifier: GPL-2.0

//! `pindio`: the command line of the `/dev/pindio` test device.

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use pindio::{gup_test, uapi, Device};
use std::{io, ptr};

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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
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
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
}

/// A populated anonymous buffer of `len` bytes.
fn buffer(len: usize) -> Result<&'static mut [u8]> {
    // SAFETY: A fresh anonymous mapping; it is never unmapped (the process is short-lived).
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).context("mmap");
    }
    // SAFETY: The mapping is readable and writable for `len` bytes and lives forever.
    let buf = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), len) };
    for (i, b) in buf.iter_mut().enumerate() {
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
    let buf = buffer(offset + size)?;
    let mut flags = 0;
    if write {
        flags |= uapi::PINDIO_PIN_WRITE;
    }
    if longterm {
        flags |= uapi::PINDIO_PIN_LONGTERM;
    }
    let (before, _) = pindio::foll_pin_counts()?;
    let addr = buf.as_ptr() as usize + offset;
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
    if back[..] != buf[offset..offset + size] {
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

fn bench_pin(dev: &Device, mib: usize, pages_per_call: &[u32], rounds: u32) -> Result<()> {
    let len = mib << 20;
    let buf = buffer(len)?;
    let addr = buf.as_ptr() as usize;
    println!("pin benchmark: {mib} MiB, best of {rounds} rounds, read-only pins (times in us)");
    println!(
        "{:>14} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "pages/call", "pindio get", "gup_test get", "pindio put", "gup_test put", "get ratio"
    );
    for &ppc in pages_per_call {
        let (mut ours, mut theirs) = ((u64::MAX, u64::MAX), (u64::MAX, u64::MAX));
        for _ in 0..rounds {
            let (g, p) = dev
                .pin_bench(addr, len as u64, ppc, 0)
                .context("PINDIO_IOC_PIN_BENCH")?;
            ours = (ours.0.min(g / 1000), ours.1.min(p / 1000));
            let (g, p) = gup_test::pin_fast_benchmark(addr, len as u64, ppc, 0)
                .context("gup_test PIN_FAST_BENCHMARK (is debugfs mounted?)")?;
            theirs = (theirs.0.min(g), theirs.1.min(p));
        }
        println!(
            "{ppc:>14} {:>12} {:>12} {:>12} {:>12} {:>10.3}",
            ours.0,
            theirs.0,
            ours.1,
            theirs.1,
            ours.0 as f64 / theirs.0.max(1) as f64
        );
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
        Command::Bench(Bench::Pin {
            mib,
            pages_per_call,
            rounds,
        }) => bench_pin(&dev, mib, &pages_per_call, rounds),
    }
}
