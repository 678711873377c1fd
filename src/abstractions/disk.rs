// SPDX-License-Identifier: GPL-2.0

//! Bio-based disks: a disk whose driver is handed each bio as it is submitted
//! (`block_device_operations.submit_bio`), as device mapper's and md's are, with the queue
//! limits and features of the block device it is stacked on.
//!
//! A bio-based driver holds nothing of the block layer's while it handles a bio: no tag, no
//! request. A bio it remaps ([`DiskBio::remap`]) and submits from `submit_bio` goes on the
//! submitting task's `current->bio_list`, which `__submit_bio_noacct` hands to the lower device
//! once the driver returned, lower devices first: the recursion stays flat however deep the
//! stack, and no bio waits for a resource that a bio parked behind it holds.
//!
//! - A [`DiskBio`] is owned by the driver from `submit_bio` on: ending it consumes it, and
//!   dropping it ends it with an I/O error, so it cannot end twice or never.
//! - A [`GenDisk`] owns its queue data, which every bio of the disk borrows until it ends;
//!   dropping the disk deletes it (`del_gendisk`, after which no bio enters), then waits until
//!   every bio handed to the driver has ended, before the queue data goes.
//!   [`GenDisk::begin_removal`] refuses the removal of an open disk and every open after it.
//!
//! C: `include/linux/blkdev.h`, `block/genhd.c`, `block/blk-core.c`, `block/blk-settings.c`.

use super::bio::IoCompletion;
use super::block::BlockFile;
use crate::ffi::helpers;
use core::{
    fmt::Write,
    marker::{PhantomData, PhantomPinned},
    mem::ManuallyDrop,
    ptr::NonNull,
};
use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    ffi::c_ulong,
    fmt,
    prelude::*,
    static_lock_class,
    str::NullTerminatedFormatter,
    sync::atomic::{Atomic, Full, Relaxed},
    types::{Opaque, ScopeGuard},
};

/// A bio-based block driver.
pub(crate) trait Operations: Sized + 'static {
    /// What every bio of a disk is handled with; the disk owns it.
    type QueueData: Send + Sync;

    /// Handles `bio`: ends it, or hands it on to what will end it. Called in the submitter's
    /// task, from `submit_bio_noacct`, possibly with its plug and inside a filesystem's
    /// writeback: it must not wait for I/O it submits itself (that is issued once it
    /// returns), and allocates as a bio submitter does (`GFP_NOIO`, `GFP_NOWAIT` for a
    /// `REQ_NOWAIT` bio). `data` stays valid until every bio of the disk has ended, `bio`
    /// included, so what is handed on with the bio may borrow from it. Both carry the lifetime
    /// `'q` of this call, which the driver cannot name outside it: the bio cannot be kept past
    /// the call (in a `static`, in the queue data) and remapped over another disk's data later,
    /// which that disk does not wait for.
    fn submit_bio<'q>(data: QueueRef<'q, Self::QueueData>, bio: DiskBio<'q>);
}

/// A borrow of (a part of) a disk's queue data, as [`Operations::submit_bio`] is given it: what
/// it points to stays valid until every bio of the disk has ended, longer than `'q`, so a bio
/// handed on may use it until it ends (see [`DiskBio::remap`]).
///
/// # Invariants
///
/// `data` is, or lives as long as, the queue data of a [`GenDisk`], which is freed only after
/// every bio handed to the disk's driver has ended.
pub(crate) struct QueueRef<'q, T: ?Sized> {
    data: &'q T,
}

impl<T: ?Sized> Clone for QueueRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for QueueRef<'_, T> {}

impl<'q, T: ?Sized> QueueRef<'q, T> {
    /// # Safety
    ///
    /// `data` lives until every bio of the disk it serves has ended.
    unsafe fn new(data: &'q T) -> Self {
        // INVARIANT: by the function's safety requirements.
        Self { data }
    }

    /// A part of the data, as `f` finds it: a reference `f` returns for any borrow of the data
    /// is into the data (or lives forever), so it lives as long as the data does.
    pub(crate) fn map<U: ?Sized>(self, f: impl for<'a> FnOnce(&'a T) -> &'a U) -> QueueRef<'q, U> {
        // INVARIANT: `f` cannot return a reference that the data does not outlive.
        QueueRef { data: f(self.data) }
    }
}

impl<T: ?Sized> core::ops::Deref for QueueRef<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.data
    }
}

/// What the callbacks of a disk find through its `private_data`: whether its removal began, and
/// the bios its driver was handed and did not end yet.
///
/// # Invariants
///
/// `pending` counts the bios handed to the driver (`submit_bio`) that have not ended, plus one
/// until the disk was deleted; `drained` is completed when it drops to zero. `removing` is set
/// (1) only with the disk's `open_mutex` held, when it had no opener.
#[pin_data]
struct DiskState {
    removing: Atomic<i32>,
    pending: Atomic<i32>,
    #[pin]
    drained: IoCompletion,
    /// Reached through the disk's raw `private_data` while the [`GenDisk`] holds it.
    #[pin]
    _pin: PhantomPinned,
}

impl DiskState {
    fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            removing: Atomic::new(0),
            pending: Atomic::new(1),
            drained <- IoCompletion::new(),
            _pin: PhantomPinned,
        })
    }

    /// Drops one count (an ended bio's, or the disk's own); the last one completes `drained`.
    fn put(&self) {
        if self.pending.fetch_sub(1, Full) <= 1 {
            self.drained.complete_all();
        }
    }

    /// The state of the disk `bio` was submitted to.
    ///
    /// # Safety
    ///
    /// `bio` is a bio handed to the driver of a [`GenDisk`] and not ended: its disk lives, and
    /// so does the state, until it has ended.
    unsafe fn of<'a>(bio: *mut bindings::bio) -> &'a Self {
        // SAFETY: By the function's safety requirements; `private_data` is the state (type
        // invariant of `GenDisk`).
        unsafe { &*(*(*(*bio).bi_bdev).bd_disk).private_data.cast::<Self>() }
    }
}

/// The `block_device_operations` of the disks of a driver `T`.
struct DiskOps<T: Operations>(PhantomData<T>);

impl<T: Operations> DiskOps<T> {
    /// `submit_bio` of a disk of `T`.
    ///
    /// # Safety
    ///
    /// Called by the block layer (`__submit_bio`) with a bio of a disk of [`GenDisk<T>`], within
    /// the disk's queue usage (`bio_queue_enter` .. `blk_queue_exit`).
    unsafe extern "C" fn submit_bio(bio: *mut bindings::bio) {
        // SAFETY: By the function's safety requirements the bio and its disk are valid; the
        // disk's `private_data` is its `DiskState` and its queue's `queuedata` the `T::QueueData`
        // (type invariants of `GenDisk`).
        let (state, data, io_stat) = unsafe {
            let disk = (*(*bio).bi_bdev).bd_disk;
            (
                &*(*disk).private_data.cast::<DiskState>(),
                &*(*(*disk).queue).queuedata.cast::<T::QueueData>(),
                (*(*disk).queue).limits.features & helpers::BLK_FEAT_IO_STAT != 0,
            )
        };
        // Counted while the queue is entered: `del_gendisk` freezes the queue, which waits for
        // this call to return, before `GenDisk`'s drop puts the disk's own count. The increment
        // is ordered before that: it precedes `blk_queue_exit`, whose `percpu_ref_put` on the
        // killed reference is a fully ordered read-modify-write, which the freeze waits to see.
        state.pending.fetch_add(1, Relaxed);
        // SAFETY: A bio of a bio-based disk that accounts its I/O (`BLK_FEAT_IO_STAT`).
        let start = io_stat.then(|| unsafe { bindings::bio_start_io_acct(bio) });
        // INVARIANT: handed to the driver and counted in `pending`; the driver owns it now.
        let bio = DiskBio {
            // SAFETY: Valid (the function's safety requirements), so not null.
            bio: unsafe { NonNull::new_unchecked(bio) },
            start,
            _call: PhantomData,
        };
        // SAFETY: The queue data is freed only once every bio counted in `pending` has ended
        // (`GenDisk`'s drop).
        T::submit_bio(unsafe { QueueRef::new(data) }, bio);
    }

    /// `open` of a disk: `ENXIO` once its removal began.
    ///
    /// # Safety
    ///
    /// Called by the block layer, with `disk->open_mutex` held, for a live disk of
    /// [`GenDisk<T>`].
    unsafe extern "C" fn open(disk: *mut bindings::gendisk, _mode: bindings::blk_mode_t) -> i32 {
        // SAFETY: By the function's safety requirements; the state lives as long as the
        // `GenDisk`, which deletes the disk (after which it is not opened) before it goes.
        let state = unsafe { &*(*disk).private_data.cast::<DiskState>() };
        if state.removing.load(Relaxed) != 0 {
            ENXIO.to_errno()
        } else {
            0
        }
    }

    /// The table; `owner` keeps the module (and so this table) loaded while a disk is open.
    const TABLE: bindings::block_device_operations = bindings::block_device_operations {
        submit_bio: Some(Self::submit_bio),
        open: Some(Self::open),
        release: None,
        ioctl: None,
        compat_ioctl: None,
        check_events: None,
        unlock_native_capacity: None,
        getgeo: None,
        set_read_only: None,
        swap_slot_free_notify: None,
        report_zones: None,
        devnode: None,
        alternative_gpt_sector: None,
        get_unique_id: None,
        owner: &raw mut bindings::__this_module,
        pr_ops: core::ptr::null_mut(),
        free_disk: None,
        poll_bio: None,
    };

    const fn build() -> &'static bindings::block_device_operations {
        &Self::TABLE
    }
}

/// The queue limits and features of a disk stacked on one block device: the stacking driver's
/// defaults (`blk_set_stacking_limits`), with `BLK_FEAT_NOWAIT` and `BLK_FEAT_IO_STAT`, stacked
/// on the device at a start sector (`queue_limits_stack_bdev`), as dm and md stack theirs. The
/// device's block sizes, transfer sizes, DMA alignment, discard and write-zeroes limits are
/// taken, its write cache, FUA, rotational, stable-writes and zoned features inherited,
/// `NOWAIT` kept only if it has it too, and the alignment offset of the start computed.
pub(crate) struct StackedLimits {
    lim: bindings::queue_limits,
}

impl StackedLimits {
    /// The limits of a disk stacked on `dev` from `start_sector` on.
    pub(crate) fn new(dev: &BlockFile<'_>, start_sector: u64) -> Self {
        let mut lim: bindings::queue_limits = pin_init::zeroed();
        // SAFETY: `lim` is valid for writes; the device is open (type invariant of `BlockFile`),
        // so its queue and limits are valid; the prefix is a C string.
        unsafe {
            bindings::blk_set_stacking_limits(&mut lim);
            lim.features |= helpers::BLK_FEAT_NOWAIT | helpers::BLK_FEAT_IO_STAT;
            bindings::queue_limits_stack_bdev(
                &mut lim,
                dev.as_raw(),
                start_sector,
                c"pindio".as_char_ptr(),
            );
        }
        Self { lim }
    }

    /// Whether the device below is zoned (`BLK_FEAT_ZONED` inherited).
    pub(crate) fn zoned(&self) -> bool {
        self.lim.features & helpers::BLK_FEAT_ZONED != 0
    }
}

/// A bio-based disk of driver `T`, added to the system, with its queue data.
///
/// # Invariants
///
/// `disk` was allocated by `__blk_alloc_disk`, with `T`'s operations, `data` as its queue's
/// `queuedata` and `state` as its `private_data`, and added; it is deleted, then every bio
/// handed to `T` ends, then it is put, on drop, before `data` and `state` are freed.
pub(crate) struct GenDisk<T: Operations> {
    disk: NonNull<bindings::gendisk>,
    /// Taken once, by `delete` or `drop`, into the [`DeletedDisk`] that waits for the bios.
    parts: ManuallyDrop<DiskParts<T>>,
}

/// What a disk's callbacks and bios use: its state and its queue data.
struct DiskParts<T: Operations> {
    state: Pin<KBox<DiskState>>,
    data: Pin<KBox<T::QueueData>>,
}

// SAFETY: The disk may be deleted from any task; the queue data is `Send + Sync`.
unsafe impl<T: Operations> Send for GenDisk<T> {}
// SAFETY: `&GenDisk` reads the disk's state and takes its own locks only.
unsafe impl<T: Operations> Sync for GenDisk<T> {}

impl<T: Operations> GenDisk<T> {
    /// Makes and adds a disk named `name` of `capacity_sectors`, with `limits`, whose bios are
    /// handled with `data`.
    pub(crate) fn new(
        data: impl PinInit<T::QueueData, Error>,
        limits: StackedLimits,
        capacity_sectors: u64,
        read_only: bool,
        name: fmt::Arguments<'_>,
    ) -> Result<Self> {
        let data = KBox::pin_init(data, GFP_KERNEL)?;
        let state = KBox::pin_init(DiskState::new(), GFP_KERNEL)?;
        let mut lim = limits.lim;
        // SAFETY: `lim` is valid; `__blk_alloc_disk` copies it.
        let disk = from_err_ptr(unsafe {
            bindings::__blk_alloc_disk(
                &mut lim,
                bindings::NUMA_NO_NODE,
                static_lock_class!().as_ptr(),
            )
        })?;
        // Not added yet: put on any failure below.
        // SAFETY: Allocated above and not added.
        let put = ScopeGuard::new_with_data(disk, |disk| unsafe { bindings::put_disk(disk) });
        let queuedata = core::ptr::from_ref::<T::QueueData>(&data).cast_mut();
        let private = core::ptr::from_ref::<DiskState>(&state).cast_mut();
        // SAFETY: A new disk, ours alone until it is added; the queue data and the state stay at
        // their heap addresses (pinned) until the disk is deleted and drained.
        let name_buf = unsafe {
            (*disk).fops = DiskOps::<T>::build();
            (*(*disk).queue).queuedata = queuedata.cast();
            (*disk).private_data = private.cast();
            (*disk).flags |= bindings::GENHD_FL_NO_PART as i32;
            &mut *(&raw mut (*disk).disk_name).cast::<[u8; bindings::DISK_NAME_LEN as usize]>()
        };
        NullTerminatedFormatter::new(name_buf)
            .ok_or(EINVAL)?
            .write_fmt(name)
            .map_err(|_| EINVAL)?;
        // SAFETY: As above; `device_add_disk` adds it whole or not at all.
        unsafe {
            bindings::set_capacity(disk, capacity_sectors);
            bindings::set_disk_ro(disk, read_only);
            to_result(bindings::device_add_disk(
                core::ptr::null_mut(),
                disk,
                core::ptr::null_mut(),
            ))?;
        }
        put.dismiss();
        // INVARIANT: allocated with `T`'s operations, `data` and `state`, and added.
        Ok(Self {
            disk: NonNull::new(disk).ok_or(ENOMEM)?,
            parts: ManuallyDrop::new(DiskParts { state, data }),
        })
    }

    /// The queue data.
    pub(crate) fn data(&self) -> &T::QueueData {
        &self.parts.data
    }

    /// The disk's device number (`disk_devt`).
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: The disk is added (type invariant), so `part0` is its whole-disk device.
        unsafe { (*(*self.disk.as_ptr()).part0).bd_dev }
    }

    /// Whether the disk is read-only now (`get_disk_ro`, which `BLKROSET` changes too).
    pub(crate) fn read_only(&self) -> bool {
        // SAFETY: The disk is added (type invariant), so `part0` is valid.
        unsafe { helpers::pindio_bdev_read_only((*self.disk.as_ptr()).part0) }
    }

    /// Begins the removal of the disk: from now on every open fails (`ENXIO`). `EBUSY`, and
    /// nothing changes, if the disk is open. The caller then drops it.
    pub(crate) fn begin_removal(&self) -> Result {
        let disk = self.disk.as_ptr();
        // SAFETY: The disk is live (type invariant); `open_mutex` is what `open` runs under.
        let openers = unsafe {
            bindings::mutex_lock(&raw mut (*disk).open_mutex);
            helpers::pindio_disk_openers(disk)
        };
        if openers == 0 {
            // INVARIANT: set with `open_mutex` held and no opener.
            self.parts.state.removing.store(1, Relaxed);
        }
        // SAFETY: Locked above, in this task.
        unsafe { bindings::mutex_unlock(&raw mut (*disk).open_mutex) };
        if openers == 0 {
            Ok(())
        } else {
            Err(EBUSY)
        }
    }
}

impl<T: Operations> GenDisk<T> {
    /// Deletes the disk (`del_gendisk`: it is gone from the system, no `submit_bio` runs or
    /// starts after this) and returns what still waits for its bios in flight: dropping that
    /// waits for them, then frees the disk and the queue data. Lets a caller that holds a lock
    /// delete under it and wait after it.
    pub(crate) fn delete(self) -> DeletedDisk<T> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped: this is the only call.
        unsafe { this.take_deleted() }
    }

    /// Deletes the disk and moves its parts into the [`DeletedDisk`] that waits for its bios.
    ///
    /// # Safety
    ///
    /// Called once, after which `self` is not used (nor dropped, unless from its own drop).
    unsafe fn take_deleted(&mut self) -> DeletedDisk<T> {
        // SAFETY: Taken once, by the function's safety requirements.
        let parts = unsafe { ManuallyDrop::take(&mut self.parts) };
        // SAFETY: Added (type invariant), deleted once.
        unsafe { bindings::del_gendisk(self.disk.as_ptr()) };
        // INVARIANT: deleted, not put; its parts.
        DeletedDisk {
            disk: self.disk,
            parts,
        }
    }
}

impl<T: Operations> Drop for GenDisk<T> {
    fn drop(&mut self) {
        // SAFETY: Dropped once, and not used after; the `DeletedDisk` waits and puts.
        drop(unsafe { self.take_deleted() });
    }
}

/// A disk deleted by [`GenDisk::delete`] (or `GenDisk`'s drop) whose bios may still be in flight.
///
/// # Invariants
///
/// `disk` was deleted (`del_gendisk`) and is not put yet; `parts` are its state and queue data,
/// which bios it handed out may still use until `pending` drops to zero.
pub(crate) struct DeletedDisk<T: Operations> {
    disk: NonNull<bindings::gendisk>,
    parts: DiskParts<T>,
}

// SAFETY: As `GenDisk`'s: it is waited for and put from any task.
unsafe impl<T: Operations> Send for DeletedDisk<T> {}

impl<T: Operations> Drop for DeletedDisk<T> {
    fn drop(&mut self) {
        // `del_gendisk` froze the queue, so no `submit_bio` runs or will run; the disk's own
        // count goes and this waits for the bios the driver was handed and has not ended, which
        // may still use the disk (their completion finds its state) and the queue data. After
        // the wait nothing does, and the disk is put before the state and the data are freed.
        self.parts.state.put();
        self.parts.state.drained.wait_io();
        // SAFETY: Deleted (type invariant); no bio of it is left.
        unsafe { bindings::put_disk(self.disk.as_ptr()) };
    }
}

/// The operation of a [`DiskBio`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BioOp {
    /// `REQ_OP_READ`.
    Read,
    /// `REQ_OP_WRITE`, with data, or empty with `REQ_PREFLUSH` (a flush).
    Write,
    /// `REQ_OP_DISCARD`.
    Discard,
    /// `REQ_OP_SECURE_ERASE`.
    SecureErase,
    /// `REQ_OP_WRITE_ZEROES`.
    WriteZeroes,
    /// Anything else (zone management, driver-private operations).
    Other,
}

/// A bio a disk's driver was handed, not ended yet. Ending it consumes it; dropping it ends it
/// with an I/O error: a bio ends exactly once, and the disk waits for it before it goes.
///
/// # Invariants
///
/// `bio` was handed to the driver of a [`GenDisk`] by `submit_bio`, is counted in the disk's
/// `pending`, and nothing has ended it; only this owns it. `start` is the time
/// `bio_start_io_acct` returned for it, if its I/O is accounted. `'q` is the call of
/// [`Operations::submit_bio`] it was handed to (invariant: it cannot be shortened or
/// lengthened into another call's).
pub(crate) struct DiskBio<'q> {
    bio: NonNull<bindings::bio>,
    start: Option<c_ulong>,
    _call: PhantomData<fn(&'q ()) -> &'q ()>,
}

// SAFETY: A bio may be ended from any task or interrupt.
unsafe impl Send for DiskBio<'_> {}

impl<'q> DiskBio<'q> {
    /// The bio's `bi_opf`. Its fields are read through the raw pointer, never a `&bio`: a
    /// submitter may have chained other bios to it (`bio_chain`), whose completions write its
    /// `bi_status` concurrently.
    fn opf(&self) -> u32 {
        // SAFETY: Valid until ended (type invariant), which consumes `self`; `bi_opf` is not
        // written while the driver owns the bio.
        unsafe { (*self.bio.as_ptr()).bi_opf }
    }

    /// The operation (`bio_op`).
    pub(crate) fn op(&self) -> BioOp {
        match self.opf() & ((1 << bindings::REQ_OP_BITS) - 1) {
            bindings::req_op_REQ_OP_READ => BioOp::Read,
            bindings::req_op_REQ_OP_WRITE => BioOp::Write,
            bindings::req_op_REQ_OP_DISCARD => BioOp::Discard,
            bindings::req_op_REQ_OP_SECURE_ERASE => BioOp::SecureErase,
            bindings::req_op_REQ_OP_WRITE_ZEROES => BioOp::WriteZeroes,
            _ => BioOp::Other,
        }
    }

    /// The first sector (`bi_iter.bi_sector`).
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: As in `opf`: the iterator is the driver's while it owns the bio.
        unsafe { (*self.bio.as_ptr()).bi_iter.bi_sector }
    }

    /// The bytes it moves, discards or zeroes (`bi_iter.bi_size`); 0 for a flush.
    pub(crate) fn bytes(&self) -> u32 {
        // SAFETY: As above.
        unsafe { (*self.bio.as_ptr()).bi_iter.bi_size }
    }

    /// Whether the submitter asked not to wait (`REQ_NOWAIT`): it then gets `EAGAIN` rather
    /// than a sleep for memory or a tag.
    pub(crate) fn nowait(&self) -> bool {
        self.opf() & (1 << bindings::req_flag_bits___REQ_NOWAIT) != 0
    }

    /// Whether its disk is read-only now (`bdev_read_only`; `BLKROSET` changes it).
    pub(crate) fn disk_read_only(&self) -> bool {
        // SAFETY: The bio's device is valid until it ends (type invariant).
        unsafe { helpers::pindio_bdev_read_only((*self.bio.as_ptr()).bi_bdev) }
    }

    /// Ends it with `result` (`bio_endio`).
    pub(crate) fn end(self, result: Result) {
        let status = match result {
            Ok(()) => bindings::BLK_STS_OK as bindings::blk_status_t,
            // SAFETY: No preconditions.
            Err(e) => unsafe { bindings::errno_to_blk_status(e.to_errno()) },
        };
        self.end_status(status);
    }

    /// Ends it with `status`: its accounting first, then `bio_endio`, then its count in the
    /// disk's `pending`, the last use of the disk.
    fn end_status(self, status: bindings::blk_status_t) {
        let this = ManuallyDrop::new(self);
        let bio = this.bio.as_ptr();
        // `ManuallyDrop` keeps `drop` from ending the bio again; after `bio_endio` only the
        // state is used, which the disk keeps until this count is put.
        // SAFETY: Handed to the driver and not ended (type invariant): the bio, its disk and
        // the disk's state are valid; `bio_endio` ends it once, here.
        unsafe {
            let state = DiskState::of(bio);
            if let Some(start) = this.start {
                bindings::bio_end_io_acct_remapped(bio, start, (*bio).bi_bdev);
            }
            if status != 0 {
                (*bio).bi_status = status;
            }
            bindings::bio_endio(bio);
            state.put();
        }
    }

    /// Remaps it to `dev` at `sector` as a clone from `set` (`bio_alloc_clone`, as device
    /// mapper stacks bios) and submits the clone (`submit_bio_noacct`); the clone's completion
    /// ends it with the clone's status. The clone shares the bio's vectors, so its pages are
    /// listed by reference, never pinned, copied or even looked at one by one, and it carries
    /// the bio's operation and every flag (`REQ_SYNC`, `REQ_FUA`, `REQ_PREFLUSH`, `REQ_NOWAIT`,
    /// `REQ_META`, `REQ_PRIO`, `REQ_IDLE`, `REQ_RAHEAD`, `REQ_BACKGROUND`, `REQ_FAILFAST_*`),
    /// its I/O priority, write hint and cgroup. A bio of `REQ_NOWAIT` is cloned without
    /// sleeping, and ends with `EAGAIN` if that fails.
    ///
    /// The caller checks that the bio lies within `dev`: the block layer checks the clone only
    /// against the end of `dev` (`bio_check_eod`).
    pub(crate) fn remap(
        self,
        dev: QueueRef<'_, BlockFile<'_>>,
        set: QueueRef<'_, RemapSet>,
        sector: u64,
    ) {
        let (gfp, err) = if self.nowait() {
            (bindings::GFP_NOWAIT, EAGAIN)
        } else {
            (helpers::GFP_NOIO, ENOMEM)
        };
        // SAFETY: The bio is valid with its vectors until it ends (type invariant), which only
        // the clone's completion does; the device and the bio set (set up: its type invariant)
        // are queue data, valid until then too (`QueueRef`).
        let clone = unsafe {
            bindings::bio_alloc_clone(dev.as_raw(), self.bio.as_ptr(), gfp, set.inner.get())
        };
        if clone.is_null() {
            return self.end(Err(err));
        }
        let from = self.sector();
        // SAFETY: The bio and its disk are valid (type invariant).
        let from_dev = unsafe { (*(*self.bio.as_ptr()).bi_bdev).bd_dev };
        // SAFETY: A new bio of `set`, ours alone until it is submitted: its front pad is a
        // `RemapPad` (`RemapSet::new`), which takes the bio, now with no lifetime (`'q` only kept
        // it in the call that made it); `remap_end_io` ends it, once.
        unsafe {
            (*clone).bi_iter.bi_sector = sector;
            (*clone).bi_end_io = Some(remap_end_io);
            RemapPad::of(clone).write(RemapPad {
                orig: self.into_unbranded(),
            });
            helpers::pindio_trace_block_bio_remap(clone, from_dev, from);
            bindings::submit_bio_noacct(clone);
        }
    }
}

impl<'q> DiskBio<'q> {
    /// The same bio, for the front pad of its clone, whose completion ends it outside the call.
    fn into_unbranded(self) -> DiskBio<'static> {
        let this = ManuallyDrop::new(self);
        // INVARIANT: the same bio, owned by the result alone (`ManuallyDrop` keeps `self` from
        // ending it).
        DiskBio {
            bio: this.bio,
            start: this.start,
            _call: PhantomData,
        }
    }
}

impl Drop for DiskBio<'_> {
    fn drop(&mut self) {
        // An I/O error, once: `end_status` consumes a copy that owns the bio now.
        let this = DiskBio {
            bio: self.bio,
            start: self.start,
            _call: PhantomData::<fn(&()) -> &()>,
        };
        // SAFETY: No preconditions.
        this.end_status(unsafe { bindings::errno_to_blk_status(EIO.to_errno()) });
    }
}

/// What the front pad of a clone of [`DiskBio::remap`] holds: the bio it ends.
struct RemapPad {
    orig: DiskBio<'static>,
}

impl RemapPad {
    /// The front pad of `clone`, a bio of a [`RemapSet`].
    ///
    /// # Safety
    ///
    /// `clone` was allocated from a [`RemapSet`], whose front pad is a `RemapPad`.
    unsafe fn of(clone: *mut bindings::bio) -> *mut RemapPad {
        // SAFETY: By the function's safety requirements the pad lies right before the bio, in
        // the same allocation (`bio_alloc_bioset` puts the bio `front_pad` bytes in).
        unsafe {
            clone
                .cast::<u8>()
                .sub(RemapSet::FRONT_PAD)
                .cast::<RemapPad>()
        }
    }
}

/// `bi_end_io` of the clones of [`DiskBio::remap`]: puts the clone, then ends the bio it was
/// made of with its status.
///
/// # Safety
///
/// `clone` is a completed clone of [`DiskBio::remap`], whose front pad holds the bio it ends.
unsafe extern "C" fn remap_end_io(clone: *mut bindings::bio) {
    // SAFETY: By the function's safety requirements: the pad was written by `remap` and is read
    // once, here, before the clone (and its pad) is freed by the only reference, ours.
    let (pad, status) = unsafe {
        let pad = RemapPad::of(clone).read();
        let status = (*clone).bi_status;
        bindings::bio_put(clone);
        (pad, status)
    };
    pad.orig.end_status(status);
}

/// A bio set for the clones of [`DiskBio::remap`], with a front pad for the bio each clone ends,
/// as dm's clone bio set, and like it no rescuer: each bio gives one clone, and
/// `__submit_bio_noacct` issues a clone to the lower device before it hands the driver the next
/// bio of its own queue, so at most one clone of a set waits on a task's `current->bio_list`
/// while the next is allocated, and the pool's reserve is freed by clones that were issued.
///
/// # Invariants
///
/// `inner` was set up by `bioset_init` with a front pad of [`RemapSet::FRONT_PAD`] bytes and is
/// torn down on drop.
#[pin_data(PinnedDrop)]
pub(crate) struct RemapSet {
    #[pin]
    inner: Opaque<bindings::bio_set>,
}

impl RemapSet {
    /// The pad before each bio: a [`RemapPad`], whose size keeps the bio aligned.
    const FRONT_PAD: usize = {
        let pad = core::mem::size_of::<RemapPad>();
        assert!(pad % core::mem::align_of::<bindings::bio>() == 0);
        assert!(core::mem::align_of::<RemapPad>() <= core::mem::align_of::<bindings::bio>());
        pad
    };

    /// A bio set of `BIO_POOL_SIZE` reserved clones (bios without vectors of their own).
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // SAFETY: `bs` is valid for writes and pinned; `bioset_init` wants it zeroed (its
            // mempools start counting from what they find).
            inner <- Opaque::try_ffi_init(|bs: *mut bindings::bio_set| to_result(unsafe {
                bs.write_bytes(0, 1);
                bindings::bioset_init(
                    bs,
                    bindings::BIO_POOL_SIZE,
                    Self::FRONT_PAD as u32,
                    0,
                )
            })),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for RemapSet {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Set up (type invariant); its bios are all freed: the disk whose data holds it
        // waits for every bio before the data goes.
        unsafe { bindings::bioset_exit(self.inner.get()) };
    }
}

// SAFETY: A bio set's pools take their own locks; bios are allocated from it on any CPU.
unsafe impl Send for RemapSet {}
// SAFETY: As above.
unsafe impl Sync for RemapSet {}
