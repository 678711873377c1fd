// SPDX-License-Identifier: GPL-2.0

//! `pindio`: the command line of the `/dev/pindio` test device.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pindio::Device;

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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dev = Device::open_at(&cli.device).with_context(|| format!("open {}", cli.device))?;
    match cli.command {
        Command::Info => info(&dev),
    }
}
