// SPDX-License-Identifier: GPL-2.0

//! Stacked block devices, `/dev/pindio-loopN`: bio-based disks that remap each bio to a window
//! of a backing block device, as dm-linear does: the bio is cloned over its own vectors (its
//! pages listed, never pinned or copied), moved by the window's start and submitted to the
//! backing device, and ends when the clone does, with its status. It is the loop driver's job
//! with the design Kent Overstreet describes (seed 003): "bios can be created and submitted
//! without caring about the constraints of the underlying device", with no workqueue and no
//! backing file's `read_iter`. Being bio-based, the device holds no tag or request while it
//! submits: a bio the backing device splits, or a stack of these devices, cannot wait on what
//! the waiting task itself holds (see `docs/design.md`).
//!
//! The backing device is claimed exclusively for the device's life, with one holder for all
//! the stacked devices (several windows may share a device, as dm's tables do): it cannot be
//! mounted, made a swap device or opened `O_EXCL` meanwhile, and one that is cannot be stacked
//! on. A write is refused while the device or the backing device is read-only now.

#![deny(unsafe_code)]

use crate::abi::{self, LoopWindow};
use crate::abstractions::{
    block::{BlockFile, HeldBlockFile, Holder},
    disk::{BioOp, DeletedDisk, DiskBio, GenDisk, Operations, QueueRef, RemapSet, StackedLimits},
};
use crate::uapi;
use kernel::prelude::*;

/// Devices at most at once.
pub(crate) const MAX_DEVICES: usize = uapi::PINDIO_LOOP_MAX as usize;

/// What claims the backing devices of all the stacked devices.
static HOLDER: Holder = Holder::new();

/// What the bios of one stacked device are remapped with.
#[pin_data]
pub(crate) struct Backing {
    /// The backing device, claimed for the stacked device's life.
    dev: HeldBlockFile,
    window: LoopWindow,
    /// The backing device was claimed for reading only: the stacked device is never writable,
    /// whatever `BLKROSET` makes of it.
    read_only: bool,
    /// The clones come from here (see [`RemapSet`]).
    #[pin]
    bios: RemapSet,
}

/// The driver of the stacked devices.
pub(crate) struct LoopDriver;

impl Operations for LoopDriver {
    type QueueData = Backing;

    fn submit_bio<'q>(backing: QueueRef<'q, Backing>, bio: DiskBio<'q>) {
        let write = match bio.op() {
            BioOp::Read => false,
            BioOp::Write | BioOp::Discard | BioOp::SecureErase | BioOp::WriteZeroes => true,
            BioOp::Other => return bio.end(Err(EOPNOTSUPP)),
        };
        // An empty flush writes nothing (as `bio_check_ro` lets it through); any other write
        // is refused while the stacked disk or the backing device is read-only now, as
        // `blkdev_write_iter` refuses a write to either (`bio_check_ro` only warns of one), and
        // always if the backing device was claimed for reading only. `EIO`, as md ends a write
        // to a read-only array: a bio's status has no `EROFS`.
        if write
            && bio.bytes() != 0
            && (backing.read_only || bio.disk_read_only() || backing.dev.get().read_only_now())
        {
            return bio.end(Err(EIO));
        }
        let Some(sector) = abi::map_sector(&backing.window, bio.sector(), bio.bytes()) else {
            return bio.end(Err(EIO));
        };
        let dev = backing.map(|b| b.dev.get());
        bio.remap(dev, backing.map(|b| &b.bios), sector)
    }
}

/// One stacked device.
struct Device {
    disk: GenDisk<LoopDriver>,
    backing_devt: u32,
}

/// A removed device whose bios may still be in flight: dropping it waits for them.
pub(crate) struct Removed {
    _disk: DeletedDisk<LoopDriver>,
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

/// The stacked devices, by index: a fixed table, so that no allocation can leave it short.
pub(crate) struct Devices {
    slots: [Option<Device>; MAX_DEVICES],
}

impl Devices {
    /// None yet.
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { None }; MAX_DEVICES],
        }
    }

    /// Makes a device stacked on `file` (`PINDIO_IOC_LOOP_ADD`); returns its index. The backing
    /// device is claimed (`EBUSY` if something else claims it); a zoned one is refused
    /// (`EOPNOTSUPP`): its sequential zones would fail the writes of a disk that does not say
    /// it is zoned.
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
        let index = self.slots.iter().position(Option::is_none).ok_or(ENOSPC)?;
        let read_only = window.read_only || !info.writable || file.read_only_now();
        let limits = StackedLimits::new(file, window.start_sector);
        if limits.zoned() {
            return Err(EOPNOTSUPP);
        }
        let dev = HeldBlockFile::claim(file, !read_only, &HOLDER)?;
        let backing = try_pin_init!(Backing {
            dev,
            window,
            read_only,
            bios <- RemapSet::new(),
        }? Error);
        let disk = GenDisk::new(
            backing,
            limits,
            window.nr_sectors,
            read_only,
            fmt!("pindio-loop{index}"),
        )?;
        let backing_devt = file.devt();
        *self.slots.get_mut(index).ok_or(EINVAL)? = Some(Device { disk, backing_devt });
        Ok(index)
    }

    /// Removes device `index` (`PINDIO_IOC_LOOP_DEL`): `EBUSY` if it is open. The disk is
    /// deleted, and its index and name free, when this returns; dropping the result waits for
    /// its bios in flight and lets the backing device go, which the caller does once it has let
    /// go of the table, so that a slow backing device holds up no other device's ioctl.
    pub(crate) fn remove(&mut self, index: usize) -> Result<Removed> {
        let slot = self.slots.get_mut(index).ok_or(ENXIO)?;
        slot.as_ref().ok_or(ENXIO)?.disk.begin_removal()?;
        let dev = slot.take().ok_or(ENXIO)?;
        Ok(Removed {
            _disk: dev.disk.delete(),
        })
    }

    /// Describes device `index` (`PINDIO_IOC_LOOP_INFO`), as it is now: read-only if the
    /// stacked disk or the backing device is.
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
            read_only: dev.disk.read_only() || backing.dev.get().read_only_now(),
            devt: dev.disk.devt(),
            backing_devt: dev.backing_devt,
            offset: backing.window.start_sector << 9,
            sizelimit: backing.window.nr_sectors << 9,
        })
    }

    /// Removes every device, open or not (module unload: none is open, or the module would be
    /// held).
    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            drop(slot.take());
        }
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
