// SPDX-License-Identifier: GPL-2.0

//! Stacked block devices, `/dev/pindio-loopN`: blk-mq disks that forward each request to a window
//! of a backing block device as one bio of the request's own pages, listed, never pinned or
//! copied. It is the loop driver's job with the design Kent Overstreet describes (seed 003): the
//! bio is built first and the request's pages go straight into it, with no workqueue and no
//! backing file's `read_iter`; the request completes from the bio's completion.

#![deny(unsafe_code)]

use crate::abi::{self, LoopWindow};
use crate::abstractions::{
    bio::{self, BioSet},
    blk_mq::{DiskLimits, GenDisk, Operations, QueueRef, ReqOp, Request, TagSet},
    block::{BlockFile, HeldBlockFile},
};
use crate::uapi;
use kernel::{prelude::*, sync::Arc};

/// Devices at most at once.
pub(crate) const MAX_DEVICES: usize = uapi::PINDIO_LOOP_MAX as usize;

/// Requests in flight per device at most (the loop driver's default queue depth).
const QUEUE_DEPTH: u32 = 128;

/// What the requests of one stacked device are forwarded with.
#[pin_data]
pub(crate) struct Backing {
    /// The backing device, held open for the stacked device's life.
    dev: HeldBlockFile,
    window: LoopWindow,
    /// Writes are refused (`PINDIO_LOOP_READ_ONLY`, a read-only fd or backing device).
    read_only: bool,
    /// The bios of the forwarded requests come from here (see [`BioSet`]).
    #[pin]
    bios: BioSet,
}

/// The driver of the stacked devices.
pub(crate) struct LoopDriver;

impl Operations for LoopDriver {
    type QueueData = Backing;

    fn queue_rq(backing: QueueRef<'_, Backing>, rq: Request) {
        let sector = match rq.op() {
            ReqOp::Flush => 0,
            ReqOp::Other => return rq.end(Err(EOPNOTSUPP)),
            op => {
                if op == ReqOp::Write && backing.read_only {
                    return rq.end(Err(EROFS));
                }
                match abi::map_sector(&backing.window, rq.sector(), rq.bytes()) {
                    Some(sector) => sector,
                    None => return rq.end(Err(EIO)),
                }
            }
        };
        let dev = backing.map(|b| b.dev.get());
        bio::forward(rq, dev, backing.map(|b| &b.bios), sector)
    }
}

/// One stacked device.
struct Device {
    disk: GenDisk<LoopDriver>,
    backing_devt: u32,
}

/// What `PINDIO_IOC_LOOP_INFO` reports of a device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Info {
    pub(crate) read_only: bool,
    pub(crate) devt: u32,
    pub(crate) backing_devt: u32,
    pub(crate) offset: u64,
    pub(crate) sizelimit: u64,
}

/// The stacked devices, by index.
pub(crate) struct Devices {
    slots: KVec<Option<Device>>,
}

impl Devices {
    /// None yet.
    pub(crate) const fn new() -> Self {
        Self { slots: KVec::new() }
    }

    /// Makes a device stacked on `file` (`PINDIO_IOC_LOOP_ADD`); returns its index.
    pub(crate) fn add(
        &mut self,
        file: &BlockFile<'_>,
        flags: u32,
        reserved: u32,
        offset: u64,
        sizelimit: u64,
    ) -> Result<usize> {
        let info = *file.info();
        if !info.readable {
            return Err(EBADF);
        }
        let window = abi::check_loop_add(
            flags,
            reserved,
            offset,
            sizelimit,
            info.logical_block_size,
            info.nr_bytes,
        )?;
        if self.slots.is_empty() {
            for _ in 0..MAX_DEVICES {
                self.slots.push(None, GFP_KERNEL)?;
            }
        }
        let index = self.slots.iter().position(Option::is_none).ok_or(ENOSPC)?;
        let read_only = window.read_only || !info.writable || info.read_only;
        let q = file.queue_limits();
        let limits = DiskLimits {
            capacity_sectors: window.nr_sectors,
            logical_block_size: info.logical_block_size,
            physical_block_size: q.physical_block_size.max(info.logical_block_size),
            max_hw_sectors: q.max_sectors,
            dma_alignment: info.dma_alignment,
            io_min: q.io_min,
            io_opt: q.io_opt,
            write_cache: q.write_cache,
            fua: q.fua,
            read_only,
        };
        let tagset = Arc::pin_init(TagSet::new(1, QUEUE_DEPTH), GFP_KERNEL)?;
        let backing = try_pin_init!(Backing {
            dev: HeldBlockFile::new(file),
            window,
            read_only,
            bios <- BioSet::new(),
        }? Error);
        let disk = GenDisk::new(tagset, backing, &limits, fmt!("pindio-loop{index}"))?;
        let backing_devt = file.devt();
        *self.slots.get_mut(index).ok_or(EINVAL)? = Some(Device { disk, backing_devt });
        Ok(index)
    }

    /// Removes device `index` (`PINDIO_IOC_LOOP_DEL`): `EBUSY` if it is open. Returns once its
    /// requests in flight completed and its backing file is let go.
    pub(crate) fn remove(&mut self, index: usize) -> Result {
        let slot = self.slots.get_mut(index).ok_or(ENXIO)?;
        slot.as_ref().ok_or(ENXIO)?.disk.begin_removal()?;
        drop(slot.take());
        Ok(())
    }

    /// Describes device `index` (`PINDIO_IOC_LOOP_INFO`).
    pub(crate) fn info(&self, index: usize) -> Result<Info> {
        if index >= MAX_DEVICES {
            return Err(EINVAL);
        }
        let dev = self
            .slots
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(ENXIO)?;
        let backing = dev.disk.data();
        Ok(Info {
            read_only: backing.read_only,
            devt: dev.disk.devt(),
            backing_devt: dev.backing_devt,
            offset: backing.window.start_sector << 9,
            sizelimit: backing.window.nr_sectors << 9,
        })
    }

    /// Removes every device, open or not (module unload: none is open, or the module would be
    /// held), and frees the table: the static that holds it is never dropped.
    pub(crate) fn clear(&mut self) {
        self.slots = KVec::new();
    }
}

/// Keeps the stacked devices for as long as the module is loaded: dropping it removes them all.
pub(crate) struct Registration;

impl Registration {
    /// Sets up the registry of stacked devices.
    pub(crate) fn new() -> Self {
        crate::abstractions::global::init();
        Registration
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        crate::abstractions::global::LOOP_DEVICES.lock().clear();
    }
}
