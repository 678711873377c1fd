// SPDX-License-Identifier: GPL-2.0

//! blk-mq block devices: a tag set, a disk with the queue limits and features its driver gives
//! it, and the requests the driver is handed, each ended exactly once.
//!
//! Shaped like `kernel::block::mq`, which in Linux 7.3 cannot express a device stacked on
//! another yet: its `GenDiskBuilder` sets the block sizes only (not the transfer size, DMA
//! alignment, write cache and FUA features, or read-only state), its `Request` tells neither the
//! operation, the position nor the data, and ends a request only with success.
//!
//! - A [`Request`] is owned by the driver from `queue_rq` on: ending it consumes it, and
//!   dropping it ends it with an I/O error, so it cannot end twice or never.
//! - A [`GenDisk`] owns its queue data, which every request of the disk borrows; dropping the
//!   disk deletes it (`del_gendisk`), which waits for the requests in flight, before the queue
//!   data goes. [`GenDisk::begin_removal`] refuses the removal of an open disk and every open
//!   after it.
//!
//! C: `include/linux/blk-mq.h`, `block/blk-mq.c`, `block/genhd.c`.

use crate::ffi::helpers;
use core::{fmt::Write, marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    fmt,
    prelude::*,
    static_lock_class,
    str::NullTerminatedFormatter,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
    types::{Opaque, ScopeGuard},
};

/// A blk-mq driver.
pub(crate) trait Operations: Sized + 'static {
    /// What every request of a disk is handled with; the disk owns it.
    type QueueData: Send + Sync;

    /// Handles `rq`: ends it, or hands it to what will end it. May sleep: the tag sets of this
    /// module are `BLK_MQ_F_BLOCKING`. `data` stays valid until every request of the disk has
    /// ended, `rq` included, so what is handed on with the request may borrow from it.
    fn queue_rq(data: QueueRef<'_, Self::QueueData>, rq: Request);
}

/// A borrow of (a part of) a disk's queue data, as [`Operations::queue_rq`] is given it: what it
/// points to stays valid until every request of the disk has ended, longer than `'q`, so a
/// request handed on may use it until it ends (see [`super::bio::forward`]).
///
/// # Invariants
///
/// `data` is, or lives as long as, the queue data of a [`GenDisk`], which is freed only after
/// the disk was deleted, when every request of it has ended.
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
    /// `data` lives until every request of the disk it serves has ended.
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

/// The `blk_mq_ops` of a driver `T`.
struct OperationsVTable<T: Operations>(PhantomData<T>);

impl<T: Operations> OperationsVTable<T> {
    /// # Safety
    ///
    /// Called by blk-mq with a hardware context of a queue made by [`GenDisk::new`] for `T`
    /// and the request it dispatches.
    unsafe extern "C" fn queue_rq_callback(
        hctx: *mut bindings::blk_mq_hw_ctx,
        bd: *const bindings::blk_mq_queue_data,
    ) -> bindings::blk_status_t {
        // SAFETY: By the function's safety requirements `bd` is valid, its request is a request
        // of this queue that blk-mq hands to the driver, and the queue's `queuedata` is the
        // `T::QueueData` that the `GenDisk` owns until the queue has no request left.
        let (rq, data) = unsafe {
            let rq = (*bd).rq;
            bindings::blk_mq_start_request(rq);
            (rq, &*(*(*hctx).queue).queuedata.cast::<T::QueueData>())
        };
        if let Some(rq) = NonNull::new(rq) {
            // INVARIANT: started above and not ended; the driver owns it from here on.
            // SAFETY: The queue data is freed only once the disk was deleted (`GenDisk`'s drop),
            // when every request of it has ended.
            let data = unsafe { QueueRef::new(data) };
            T::queue_rq(data, Request { rq });
        }
        bindings::BLK_STS_OK as bindings::blk_status_t
    }

    /// # Safety
    ///
    /// Called by blk-mq for a request of a queue made by [`GenDisk::new`] that
    /// [`end_from_completion`] completed with `blk_mq_complete_request`, its status in the
    /// request's data.
    unsafe extern "C" fn complete_callback(rq: *mut bindings::request) {
        // SAFETY: By the function's safety requirements: the request's data holds its status,
        // and the request is ended once, here.
        unsafe {
            let status = *bindings::blk_mq_rq_to_pdu(rq).cast::<bindings::blk_status_t>();
            bindings::blk_mq_end_request(rq, status);
        }
    }

    const VTABLE: bindings::blk_mq_ops = bindings::blk_mq_ops {
        queue_rq: Some(Self::queue_rq_callback),
        queue_rqs: None,
        commit_rqs: None,
        get_budget: None,
        put_budget: None,
        set_rq_budget_token: None,
        get_rq_budget_token: None,
        timeout: None,
        poll: None,
        complete: Some(Self::complete_callback),
        init_hctx: None,
        exit_hctx: None,
        init_request: None,
        exit_request: None,
        cleanup_rq: None,
        busy: None,
        map_queues: None,
        #[cfg(CONFIG_BLK_DEBUG_FS)]
        show_rq: None,
    };

    const fn build() -> &'static bindings::blk_mq_ops {
        &Self::VTABLE
    }
}

/// A blk-mq tag set for the disks of driver `T`, devices stacked on others: `nr_hw_queues`
/// hardware queues of `depth` tags, whose `queue_rq` may sleep (`BLK_MQ_F_BLOCKING`), with no I/O
/// scheduler by default; each request's data is the status it ends
/// with when it is completed through `blk_mq_complete_request` (see [`end_from_completion`]).
///
/// # Invariants
///
/// `inner` was set up by `blk_mq_alloc_tag_set` with `T`'s operations, and is freed on drop.
#[pin_data(PinnedDrop)]
pub(crate) struct TagSet<T: Operations> {
    #[pin]
    inner: Opaque<bindings::blk_mq_tag_set>,
    _p: PhantomData<T>,
}

impl<T: Operations> TagSet<T> {
    /// A tag set of `nr_hw_queues` queues of `depth` requests each.
    pub(crate) fn new(nr_hw_queues: u32, depth: u32) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inner <- Opaque::try_ffi_init(move |set: *mut bindings::blk_mq_tag_set| {
                let init = bindings::blk_mq_tag_set {
                    ops: OperationsVTable::<T>::build(),
                    nr_hw_queues,
                    queue_depth: depth,
                    numa_node: bindings::NUMA_NO_NODE,
                    // A stacked device, as the loop driver's: no I/O scheduler of its own by
                    // default (the backing device has one), and its queues are not drained
                    // when a CPU goes offline (its I/O completes on another device).
                    flags: bindings::BLK_MQ_F_BLOCKING
                        | bindings::BLK_MQ_F_STACKING
                        | bindings::BLK_MQ_F_NO_SCHED_BY_DEFAULT,
                    nr_maps: 1,
                    // The status of a request completed through `blk_mq_complete_request`.
                    cmd_size: core::mem::size_of::<bindings::blk_status_t>() as u32,
                    ..pin_init::zeroed()
                };
                // SAFETY: `set` is valid for writes and pinned; `blk_mq_alloc_tag_set` sets up the
                // tag set it was written with.
                unsafe {
                    set.write(init);
                    to_result(bindings::blk_mq_alloc_tag_set(set))
                }
            }),
            _p: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: Operations> PinnedDrop for TagSet<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Set up (type invariant); the disks that used it hold an `Arc` of it, so none
        // is left.
        unsafe { bindings::blk_mq_free_tag_set(self.inner.get()) };
    }
}

/// What a disk is made with: its size, its queue limits and features, and its state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DiskLimits {
    /// Size in 512-byte sectors.
    pub(crate) capacity_sectors: u64,
    /// Logical and physical block sizes in bytes.
    pub(crate) logical_block_size: u32,
    pub(crate) physical_block_size: u32,
    /// The largest request in sectors (`max_hw_sectors`); 0 for the block layer's default.
    pub(crate) max_hw_sectors: u32,
    /// The DMA alignment mask of memory addresses and lengths.
    pub(crate) dma_alignment: u32,
    /// Preferred minimum and optimal I/O sizes in bytes (0: none).
    pub(crate) io_min: u32,
    pub(crate) io_opt: u32,
    /// A volatile write cache (`REQ_OP_FLUSH` requests), and `REQ_FUA` writes.
    pub(crate) write_cache: bool,
    pub(crate) fua: bool,
    /// Read-only.
    pub(crate) read_only: bool,
}

/// The `block_device_operations` of every disk of this module: `open` refuses a disk being
/// removed. `owner` keeps the module (and so this table) loaded while a disk is open.
struct DiskOps(bindings::block_device_operations);

// SAFETY: A constant table of function pointers and the module's address, never written.
unsafe impl Sync for DiskOps {}

static DISK_OPS: DiskOps = DiskOps(bindings::block_device_operations {
    submit_bio: None,
    open: Some(disk_open),
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
});

/// `open` of a disk: `ENXIO` once its removal began.
///
/// # Safety
///
/// Called by the block layer, with `disk->open_mutex` held, for a live disk of [`GenDisk`],
/// whose `private_data` is its `removing` flag.
unsafe extern "C" fn disk_open(disk: *mut bindings::gendisk, _mode: bindings::blk_mode_t) -> i32 {
    // SAFETY: By the function's safety requirements; the flag lives as long as the `GenDisk`,
    // which deletes the disk (after which it is not opened) before it goes.
    let removing = unsafe { &*(*disk).private_data.cast::<Atomic<i32>>() };
    if removing.load(Relaxed) != 0 {
        ENXIO.to_errno()
    } else {
        0
    }
}

/// A disk of driver `T`, added to the system, with its queue data.
///
/// # Invariants
///
/// `disk` was allocated by `__blk_mq_alloc_disk` on `_tagset` with `data` as its queue data and
/// `removing` as its private data, and added; it is deleted and put on drop, before `data` and
/// `removing` are freed. `removing` is set (1) only with the disk's `open_mutex` held, when
/// it had no opener.
pub(crate) struct GenDisk<T: Operations> {
    disk: NonNull<bindings::gendisk>,
    removing: KBox<Atomic<i32>>,
    data: Pin<KBox<T::QueueData>>,
    _tagset: Arc<TagSet<T>>,
}

// SAFETY: The disk may be deleted from any task; the queue data is `Send + Sync`.
unsafe impl<T: Operations> Send for GenDisk<T> {}
// SAFETY: `&GenDisk` reads the disk's counters and takes its own locks only.
unsafe impl<T: Operations> Sync for GenDisk<T> {}

impl<T: Operations> GenDisk<T> {
    /// Makes and adds a disk named `name` on `tagset`, whose requests are handled with `data`.
    pub(crate) fn new(
        tagset: Arc<TagSet<T>>,
        data: impl PinInit<T::QueueData, Error>,
        limits: &DiskLimits,
        name: fmt::Arguments<'_>,
    ) -> Result<Self> {
        let data = KBox::pin_init(data, GFP_KERNEL)?;
        let removing = KBox::new(Atomic::new(0), GFP_KERNEL)?;
        let mut lim: bindings::queue_limits = pin_init::zeroed();
        lim.logical_block_size = limits.logical_block_size;
        lim.physical_block_size = limits.physical_block_size;
        lim.max_hw_sectors = limits.max_hw_sectors;
        lim.dma_alignment = limits.dma_alignment;
        lim.io_min = limits.io_min;
        lim.io_opt = limits.io_opt;
        if limits.write_cache {
            lim.features |= helpers::BLK_FEAT_WRITE_CACHE;
        }
        if limits.fua {
            lim.features |= helpers::BLK_FEAT_FUA;
        }
        let queuedata = core::ptr::from_ref::<T::QueueData>(&data).cast_mut();
        // SAFETY: The tag set is set up (its type invariant) and outlives the disk (held in
        // the result); `lim` is valid; the queue data stays at its address (pinned) until the
        // disk is deleted.
        let disk = from_err_ptr(unsafe {
            bindings::__blk_mq_alloc_disk(
                tagset.inner.get(),
                &mut lim,
                queuedata.cast(),
                static_lock_class!().as_ptr(),
            )
        })?;
        // Not added yet: put on any failure below.
        // SAFETY: Allocated above and not added.
        let put = ScopeGuard::new_with_data(disk, |disk| unsafe { bindings::put_disk(disk) });
        // SAFETY: A new disk, ours alone until it is added; `removing` stays at its heap address
        // until the disk is deleted.
        let name_buf = unsafe {
            (*disk).fops = &DISK_OPS.0;
            (*disk).private_data = core::ptr::from_ref(&*removing).cast_mut().cast();
            (*disk).flags |= bindings::GENHD_FL_NO_PART as i32;
            &mut *(&raw mut (*disk).disk_name).cast::<[u8; bindings::DISK_NAME_LEN as usize]>()
        };
        NullTerminatedFormatter::new(name_buf)
            .ok_or(EINVAL)?
            .write_fmt(name)
            .map_err(|_| EINVAL)?;
        // SAFETY: As above; `device_add_disk` adds it whole or not at all.
        unsafe {
            bindings::set_capacity(disk, limits.capacity_sectors);
            bindings::set_disk_ro(disk, limits.read_only);
            to_result(bindings::device_add_disk(
                core::ptr::null_mut(),
                disk,
                core::ptr::null_mut(),
            ))?;
        }
        put.dismiss();
        // INVARIANT: allocated with `data` and `removing`, and added.
        Ok(Self {
            disk: NonNull::new(disk).ok_or(ENOMEM)?,
            removing,
            data,
            _tagset: tagset,
        })
    }

    /// The queue data.
    pub(crate) fn data(&self) -> &T::QueueData {
        &self.data
    }

    /// The disk's device number (`disk_devt`).
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: The disk is added (type invariant), so `part0` is its whole-disk device.
        unsafe { (*(*self.disk.as_ptr()).part0).bd_dev }
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
            self.removing.store(1, Relaxed);
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

impl<T: Operations> Drop for GenDisk<T> {
    fn drop(&mut self) {
        // SAFETY: Added (type invariant). `del_gendisk` waits for the requests in flight and
        // lets no new one in; then nothing uses the queue data or the flag, which go after this.
        unsafe {
            bindings::del_gendisk(self.disk.as_ptr());
            bindings::put_disk(self.disk.as_ptr());
        }
    }
}

/// The operation of a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReqOp {
    /// `REQ_OP_READ`.
    Read,
    /// `REQ_OP_WRITE`.
    Write,
    /// `REQ_OP_FLUSH`: write back the volatile cache.
    Flush,
    /// Anything else (discard, write zeroes, ...), which the disks of this module do not
    /// advertise.
    Other,
}

/// A request a disk's driver was handed, started and not ended yet. Ending it consumes it;
/// dropping it ends it with an I/O error: a request ends exactly once.
///
/// # Invariants
///
/// `rq` is a started request of a disk of this module that nothing has ended, and only this
/// owns it.
pub(crate) struct Request {
    rq: NonNull<bindings::request>,
}

// SAFETY: A request may be ended from any task or interrupt.
unsafe impl Send for Request {}

impl Request {
    fn raw(&self) -> &bindings::request {
        // SAFETY: Valid until ended (type invariant), which consumes `self`.
        unsafe { self.rq.as_ref() }
    }

    /// The operation (`req_op`).
    pub(crate) fn op(&self) -> ReqOp {
        match self.raw().cmd_flags & ((1 << bindings::REQ_OP_BITS) - 1) {
            bindings::req_op_REQ_OP_READ => ReqOp::Read,
            bindings::req_op_REQ_OP_WRITE => ReqOp::Write,
            bindings::req_op_REQ_OP_FLUSH => ReqOp::Flush,
            _ => ReqOp::Other,
        }
    }

    /// Whether a write must be on stable media when it completes (`REQ_FUA`).
    pub(crate) fn fua(&self) -> bool {
        self.raw().cmd_flags & (1 << bindings::req_flag_bits___REQ_FUA) != 0
    }

    /// Whether it is synchronous (`REQ_SYNC`).
    pub(crate) fn sync(&self) -> bool {
        self.raw().cmd_flags & (1 << bindings::req_flag_bits___REQ_SYNC) != 0
    }

    /// The first sector (`blk_rq_pos`).
    pub(crate) fn sector(&self) -> u64 {
        self.raw().__sector
    }

    /// The bytes to transfer (`blk_rq_bytes`).
    pub(crate) fn bytes(&self) -> u32 {
        self.raw().__data_len
    }

    /// Ends it with `result` (`blk_mq_end_request`).
    pub(crate) fn end(self, result: Result) {
        let status = match result {
            Ok(()) => bindings::BLK_STS_OK as bindings::blk_status_t,
            // SAFETY: No preconditions.
            Err(e) => unsafe { bindings::errno_to_blk_status(e.to_errno()) },
        };
        // SAFETY: Started and not ended (type invariant); `into_raw` keeps `drop` from ending it
        // again.
        unsafe { bindings::blk_mq_end_request(self.into_raw().as_ptr(), status) };
    }

    /// Hands it back to blk-mq to be dispatched again later, from kblockd
    /// (`blk_mq_requeue_request`, the requeue list kicked).
    pub(crate) fn requeue(self) {
        // SAFETY: Started and not ended (type invariant): blk-mq takes it back, and `into_raw`
        // keeps `drop` from ending it.
        unsafe { bindings::blk_mq_requeue_request(self.into_raw().as_ptr(), true) };
    }

    /// Gives up ownership: the caller ends the request.
    pub(super) fn into_raw(self) -> NonNull<bindings::request> {
        core::mem::ManuallyDrop::new(self).rq
    }

    /// The request's bios, in order (`__rq_for_each_bio`): they and their vectors, the
    /// request's data, are valid until it ends.
    pub(super) fn bios(&self) -> impl Iterator<Item = NonNull<bindings::bio>> + '_ {
        core::iter::successors(NonNull::new(self.raw().bio), |b| {
            // SAFETY: A bio of the request, valid until it ends, which `&self` outlives.
            NonNull::new(unsafe { b.as_ref().bi_next })
        })
    }
}

/// Ends `rq` with `status` from the completion of another device's I/O, in whatever context
/// that runs. A request of a flush sequence (`RQF_FLUSH_SEQ`) is completed through
/// `blk_mq_complete_request` instead: ending it takes its queue's flush lock, and the
/// completion may run under the other device's flush lock (of the same lock class), as
/// null_blk completes a flush inline. `blk_mq_complete_request_remote` defers it to the block
/// softirq (or another CPU) whenever the machine has more than one CPU, since these tag sets
/// have one hardware queue, whose context then maps several CPUs; on a machine of one CPU it
/// completes inline, under that lock, which lockdep reports as possible recursive locking
/// (nvme-loop gives its flush queues a lock class of their own for this,
/// `blk_mq_hctx_set_fq_lock_class`).
///
/// # Safety
///
/// `rq` is a started request of a disk of this module, not ended, owned by the caller, which
/// gives it up.
pub(super) unsafe fn end_from_completion(
    rq: *mut bindings::request,
    status: bindings::blk_status_t,
) {
    // SAFETY: By the function's safety requirements the request is valid and ours; its data
    // has room for the status (`TagSet::new`), which `complete_callback` ends it with.
    unsafe {
        if (*rq).rq_flags & (1 << bindings::rqf_flags___RQF_FLUSH_SEQ) != 0 {
            *bindings::blk_mq_rq_to_pdu(rq).cast::<bindings::blk_status_t>() = status;
            bindings::blk_mq_complete_request(rq);
        } else {
            bindings::blk_mq_end_request(rq, status);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: Started and not ended (type invariant): it ends here, once.
        unsafe {
            bindings::blk_mq_end_request(
                self.rq.as_ptr(),
                bindings::errno_to_blk_status(EIO.to_errno()),
            )
        };
    }
}
