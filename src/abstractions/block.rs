// SPDX-License-Identifier: GPL-2.0

//! The block device a file is open on, as a direct I/O sees it: its limits and state, the
//! calls that keep its page cache coherent with I/O that bypasses it, and plugging.
//!
//! C: `include/linux/blkdev.h`, `mm/filemap.c`, `mm/truncate.c`.

use crate::ffi::helpers;
use core::{marker::PhantomData, mem::MaybeUninit, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    fs::LocalFile,
    prelude::*,
    sync::aref::ARef,
};

/// What a direct I/O checks of a block device and of the file open on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BdevInfo {
    /// The file was opened for reading.
    pub(crate) readable: bool,
    /// The file was opened for writing.
    pub(crate) writable: bool,
    /// The device is read-only (`bdev_read_only`).
    pub(crate) read_only: bool,
    /// The device is an active swap device (`IS_SWAPFILE` of its inode), which
    /// `blkdev_write_iter` refuses to write.
    pub(crate) swap: bool,
    /// Logical block size in bytes.
    pub(crate) logical_block_size: u32,
    /// DMA alignment mask of memory addresses and lengths (`bdev_dma_alignment`).
    pub(crate) dma_alignment: u32,
    /// Size of the device in bytes.
    pub(crate) nr_bytes: u64,
}

/// Who claims a block device exclusively (`bdev_file_open_by_dev` with a holder): the devices
/// claimed with one `Holder` may share a block device, and nothing else may claim it (mount it,
/// make it a swap device, open it with `O_EXCL`) while one of them holds it, as device mapper
/// claims its devices with one holder for all its tables.
pub(crate) struct Holder {
    /// Not zero-sized, so that no two holders share an address.
    _byte: u8,
}

impl Holder {
    /// A holder, distinct from every other by its address: it lives in a `static`.
    pub(crate) const fn new() -> Self {
        Self { _byte: 0 }
    }
}

/// A block device a driver holds open, claimed exclusively, for as long as it likes: what a
/// device stacked on it holds. Unlike a [`BlockFile`] lent by `fdget`, it may be used from any
/// task.
///
/// # Invariants
///
/// `inner` holds a file of its own, opened by `bdev_file_open_by_dev` with a holder, which
/// claims the device until the file is released; its position (`f_pos`, the only part of a file
/// that `fdget_pos` rules protect) this module never uses.
pub(crate) struct HeldBlockFile {
    inner: BlockFile<'static>,
}

// SAFETY: The file is held by a reference of its own (type invariant) and used only for its
// block device and page cache, whose calls may be made from any task.
unsafe impl Send for HeldBlockFile {}
// SAFETY: As above: `&HeldBlockFile` only reads what was fixed at its making.
unsafe impl Sync for HeldBlockFile {}

impl HeldBlockFile {
    /// Opens the device `file` is open on again, for reading and, if `write`, writing, claimed
    /// by `holder` (`bdev_file_open_by_dev`), with the kernel's credentials, as dm opens its
    /// devices (the file would otherwise keep the caller's alive): `EBUSY` if another holder
    /// claims it (a mounted filesystem, an active swap device, an `O_EXCL` opener, a device
    /// stacked on it by another driver), `ENXIO` if its number is no longer that device's.
    pub(crate) fn claim(
        file: &BlockFile<'_>,
        write: bool,
        holder: &'static Holder,
    ) -> Result<Self> {
        let mode = helpers::BLK_OPEN_READ | if write { helpers::BLK_OPEN_WRITE } else { 0 };
        let raw = super::cred::with_kernel_creds(|| {
            // SAFETY: No preconditions: the device number is looked up, and the holder is an
            // address that stays valid (and unique to it) for ever.
            from_err_ptr(unsafe {
                bindings::bdev_file_open_by_dev(
                    file.devt(),
                    mode,
                    core::ptr::from_ref(holder).cast_mut().cast(),
                    core::ptr::null(),
                )
            })
        })?;
        let raw = NonNull::new(raw).ok_or(ENODEV)?;
        // SAFETY: `bdev_file_open_by_dev` returned a file with a reference that is ours, which
        // the `ARef` takes over and releases (`fput`, which ends the claim).
        let owned =
            unsafe { ARef::from_raw(NonNull::from(LocalFile::from_raw_file(raw.as_ptr()))) };
        let inner = BlockFile::owned(owned)?;
        // The number was looked up again: it must still be the device `file` is open on (the
        // caller's file holds that device, so its number cannot have been given to another).
        if inner.bdev != file.bdev {
            return Err(ENXIO);
        }
        // INVARIANT: a file of its own, opened with a holder.
        Ok(Self { inner })
    }

    /// The device.
    pub(crate) fn get(&self) -> &BlockFile<'static> {
        &self.inner
    }
}

/// A block device, seen through a file open on it, for as long as `'f`.
///
/// # Invariants
///
/// `file` is valid for `'f` (held by `_owner` if that is set, else borrowed for `'f`), it is open
/// on a block device, and `bdev` is that device (`file_bdev`), valid as long as the file.
#[derive(Clone)]
pub(crate) struct BlockFile<'f> {
    file: NonNull<bindings::file>,
    bdev: NonNull<bindings::block_device>,
    _owner: Option<ARef<LocalFile>>,
    _borrow: PhantomData<&'f LocalFile>,
    info: BdevInfo,
}

impl BlockFile<'static> {
    /// The block device `file` is open on, holding the reference `file` is; `ENOTBLK` if it is
    /// not open on a block device.
    pub(crate) fn owned(file: ARef<LocalFile>) -> Result<Self> {
        let f = NonNull::new(file.as_ptr()).ok_or(EBADF)?;
        // SAFETY: `file` holds a reference to `f`, which moves into the result.
        unsafe { Self::new(f, Some(file)) }
    }
}

impl<'f> BlockFile<'f> {
    /// The block device `file` is open on, borrowed for `'f`; `ENOTBLK` if it is not open on a
    /// block device.
    pub(crate) fn borrowed(file: &'f LocalFile) -> Result<Self> {
        // SAFETY: `file` is valid for `'f`.
        unsafe { Self::new(NonNull::new(file.as_ptr()).ok_or(EBADF)?, None) }
    }

    /// # Safety
    ///
    /// `file` is valid for `'f`, held by `owner` if it is given.
    unsafe fn new(file: NonNull<bindings::file>, owner: Option<ARef<LocalFile>>) -> Result<Self> {
        let (mut modes, mut lbs, mut dma, mut nr_bytes) = (0, 0, 0, 0);
        // SAFETY: `file` is a valid file (the function's safety requirements); the out pointers
        // are valid for writes.
        let bdev = unsafe {
            helpers::pindio_file_bdev(file.as_ptr(), &mut modes, &mut lbs, &mut dma, &mut nr_bytes)
        };
        let bdev = NonNull::new(bdev).ok_or(ENOTBLK)?;
        let info = BdevInfo {
            readable: modes & helpers::TARGET_READ != 0,
            writable: modes & helpers::TARGET_WRITE != 0,
            read_only: modes & helpers::TARGET_RO != 0,
            swap: modes & helpers::TARGET_SWAP != 0,
            logical_block_size: lbs,
            dma_alignment: dma,
            nr_bytes: nr_bytes.try_into()?,
        };
        // INVARIANT: `file` is valid for `'f` (the function's safety requirements) and open on
        // the block device `bdev`.
        Ok(Self {
            file,
            bdev,
            _owner: owner,
            _borrow: PhantomData,
            info,
        })
    }

    /// The same, holding a reference of its own to the file (`get_file`), for what must outlive
    /// `'f`; the device is not looked at again.
    pub(crate) fn to_owned(&self) -> BlockFile<'static> {
        // SAFETY: The file is valid while `self` lives (type invariant), for this call.
        let file = ARef::from(unsafe { LocalFile::from_raw_file(self.file.as_ptr()) });
        // INVARIANT: `_owner` holds the file, which is open on `bdev`.
        BlockFile {
            file: self.file,
            bdev: self.bdev,
            _owner: Some(file),
            _borrow: PhantomData,
            info: self.info,
        }
    }

    /// The device's limits and state, and the file's open modes, as they were when it was made.
    pub(crate) fn info(&self) -> &BdevInfo {
        &self.info
    }

    /// Whether the device is read-only now (`bdev_read_only`): `BLKROSET` or the driver may
    /// have made it so since the file was opened.
    pub(crate) fn read_only_now(&self) -> bool {
        // SAFETY: The device is valid while `self` lives (type invariant).
        unsafe { helpers::pindio_bdev_read_only(self.bdev.as_ptr()) }
    }

    /// The device number of the device (`bd_dev`).
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: The device is valid while `self` lives (type invariant); `bd_dev` is set when
        // it is made and never changes.
        unsafe { (*self.bdev.as_ptr()).bd_dev }
    }

    /// The block device, for the bios of this crate's [`super::bio`].
    pub(super) fn as_raw(&self) -> *mut bindings::block_device {
        self.bdev.as_ptr()
    }

    /// The page cache of the device.
    fn mapping(&self) -> *mut bindings::address_space {
        // SAFETY: The file is valid while `self` lives (type invariant); `f_mapping` is set at
        // open and not changed for a block device.
        unsafe { (*self.file.as_ptr()).f_mapping }
    }

    /// Writes back the dirty cached pages of the bytes `start..=end` and waits for them
    /// (`filemap_write_and_wait_range`).
    pub(crate) fn write_and_wait_range(&self, start: i64, end: i64) -> Result {
        // SAFETY: `mapping` is the page cache of the open device (type invariant).
        to_result(unsafe { bindings::filemap_write_and_wait_range(self.mapping(), start, end) })
    }

    /// Drops the cached pages `first..=last` (page indices) from the page cache
    /// (`invalidate_inode_pages2_range`); `EBUSY` if one could not be dropped (a dirty page, for
    /// one, as a block device has no `launder_folio`).
    pub(crate) fn invalidate_pages(&self, first: usize, last: usize) -> Result {
        // SAFETY: As above.
        to_result(unsafe { bindings::invalidate_inode_pages2_range(self.mapping(), first, last) })
    }

    /// Records `err` in the page cache's writeback error (`errseq_set(&mapping->wb_err)`), so
    /// that the next `fsync` of the device reports it, as `dio_warn_stale_pagecache` does.
    pub(crate) fn set_wb_err(&self, err: Error) {
        let mapping = self.mapping();
        // SAFETY: `mapping` is valid (see above); `wb_err` is an `errseq_t`, which `errseq_set`
        // updates atomically against other writers and readers.
        unsafe { bindings::errseq_set(&raw mut (*mapping).wb_err, err.to_errno()) };
    }
}

/// Runs `f` with the current task plugged: the bios it submits are dispatched together when the
/// plug ends (`blk_start_plug` / `blk_finish_plug`).
pub(crate) fn plugged<R>(f: impl FnOnce() -> R) -> R {
    let mut plug = MaybeUninit::<bindings::blk_plug>::uninit();
    // SAFETY: `plug` is valid for writes and stays in this frame, unmoved, until
    // `blk_finish_plug` below unlinks it from the task.
    unsafe { bindings::blk_start_plug(plug.as_mut_ptr()) };
    let ret = f();
    // SAFETY: Started above in this task and not finished yet.
    unsafe { bindings::blk_finish_plug(plug.as_mut_ptr()) };
    ret
}
