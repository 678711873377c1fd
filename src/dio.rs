// SPDX-License-Identifier: GPL-2.0

//! Direct I/O: bios built straight from pinned user pages, submitted through the block layer.
//!
//! A [`Dio`] (made by [`Dio::new`] for a checked [`Target`]) goes through three steps, in
//! place, so that many of them can have their bios in flight at once (`PINDIO_IOC_DIO_BATCH`):
//!
//! 1. [`Dio::prepare`]: checks the range and the alignment (before anything is pinned), keeps
//!    the page cache coherent, and pins all the memory into batches it owns;
//! 2. [`Dio::submit`]: cuts the pages into bios ([`BioPlanner`]) and submits them, each bio
//!    accounted in the request's [`DioCtx`]; or, for an I/O that fits one bio and is waited
//!    for alone (`PINDIO_IOC_DIO`), [`Dio::submit_wait`]: that bio with `submit_bio_wait`;
//! 3. [`Dio::finish`]: waits for every submitted bio, then releases the pins (dirtying the pages
//!    of a read first) by dropping the batches, and invalidates the page cache after a write.
//!
//! The common case of `PINDIO_IOC_DIO`, a single buffer of at most [`INLINE_VECS`] pages, goes
//! through [`simple`] instead, which does the three steps in one, as `__blkdev_direct_IO_simple`
//! does, with no I/O state besides its pinned batch and its bio.
//!
//! The bios only borrow the pages: the batches own the pins and are dropped after the last bio
//! completed, so every page is released exactly once on every path.

use crate::abi::DioRequest;
use crate::extract::{errno_result, Dir, HeapSlots, PageSlots, PinnedBatch, UserPages, UserRange};
use crate::ffi::helpers;
use crate::plan::{BioPlanner, DevLimits};
use core::{cell::Cell, marker::PhantomData, mem::MaybeUninit, pin::Pin, ptr};
use kernel::{
    alloc::flags::__GFP_NOWARN,
    bindings,
    fs::LocalFile,
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Full, Relaxed},
        SpinLock,
    },
    types::Opaque,
    uaccess::UserPtr,
};
use pin_init::Zeroable;

/// A file looked up by descriptor for the length of one system call (`fdget`), as `pread`
/// gets its file: while the calling task's descriptor table is not shared, no reference is
/// taken, as nothing else can close the descriptor before the call returns.
///
/// # Invariants
///
/// `fd` came from `fdget`, and `file` is its file (not null). It is put once, on drop, before
/// the system call that got it returns (see [`FdFile::get`]); it is not `Send`.
pub(crate) struct FdFile {
    fd: bindings::fd,
    file: *mut bindings::file,
}

impl FdFile {
    /// The file open at `fd`; `EBADF` if there is none.
    ///
    /// # Safety
    ///
    /// The caller drops it before the current system call returns, and neither closes `fd`
    /// nor clones the task in between (the rules of `fdget`).
    pub(crate) unsafe fn get(fd: i32) -> Result<Self> {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        let mut f = bindings::fd::default();
        // SAFETY: `f` is valid for writes; the caller keeps fdget's rules.
        let file = unsafe { helpers::pindio_fdget(fd, &mut f) };
        if file.is_null() {
            return Err(EBADF);
        }
        // INVARIANT: from `fdget`, with its file; the caller puts it in time.
        Ok(Self { fd: f, file })
    }
}

impl Drop for FdFile {
    fn drop(&mut self) {
        // SAFETY: From `fdget`, put once (type invariant).
        unsafe { helpers::pindio_fdput(self.fd) };
    }
}

/// A block device the caller opened itself, as the target of a direct I/O, for as long as
/// `'f`.
///
/// # Invariants
///
/// `file` is valid for `'f`: held by `_owner`, or else borrowed from an [`FdFile`] that lives
/// for `'f`. `bdev` is its block device (`file_bdev()`). `write` says whether it was checked for
/// writing (else for reading).
#[derive(Clone)]
pub(crate) struct Target<'f> {
    file: *mut bindings::file,
    _owner: Option<ARef<LocalFile>>,
    borrowed: PhantomData<&'f FdFile>,
    bdev: *mut bindings::block_device,
    limits: DevLimits,
    write: bool,
}

impl Target<'static> {
    /// The block device open at `fd`, checked for a transfer in `dir`; it takes a reference to
    /// the file (`fget`).
    ///
    /// `EBADF` if `fd` is not open, or not open for reading (for a read) or writing (for a
    /// write); `ENOTBLK` if it is not a block device; `EPERM` for a write to a read-only device;
    /// `ETXTBSY` for a write to an active swap device.
    pub(crate) fn from_fd(fd: i32, write: bool) -> Result<Self> {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        Self::from_file(LocalFile::fget(fd).map_err(|_| EBADF)?, write)
    }

    /// The block device `file` is open on, checked for a transfer in `dir` as [`Target::from_fd`]
    /// does.
    pub(crate) fn from_file(file: ARef<LocalFile>, write: bool) -> Result<Self> {
        let f = file.as_ptr();
        // SAFETY: `f` is valid while `file` holds its reference, which the target keeps.
        unsafe { Self::new(f, Some(file), write) }
    }
}

impl<'f> Target<'f> {
    /// The block device of `file`, borrowed, checked for a transfer in `dir` as
    /// [`Target::from_fd`] does.
    pub(crate) fn borrowed(file: &'f FdFile, write: bool) -> Result<Self> {
        // SAFETY: The file of an `FdFile` is valid while it lives, for `'f`.
        unsafe { Self::new(file.file, None, write) }
    }

    /// # Safety
    ///
    /// `f` is a valid file for `'f`, held by `owner` if it is given.
    unsafe fn new(
        f: *mut bindings::file,
        owner: Option<ARef<LocalFile>>,
        write: bool,
    ) -> Result<Self> {
        let (mut modes, mut lbs, mut dma_mask, mut dev_bytes) = (0, 0, 0, 0);
        // SAFETY: `f` is a valid file (the function's safety requirements); the out pointers
        // are valid for writes.
        let bdev = unsafe {
            helpers::pindio_file_bdev(f, &mut modes, &mut lbs, &mut dma_mask, &mut dev_bytes)
        };
        if bdev.is_null() {
            return Err(ENOTBLK);
        }
        let need = if write {
            helpers::TARGET_WRITE
        } else {
            helpers::TARGET_READ
        };
        if modes & need == 0 {
            return Err(EBADF);
        }
        if write && modes & helpers::TARGET_RO != 0 {
            return Err(EPERM);
        }
        // As blkdev_write_iter: swap owns an active swap device's blocks.
        if write && modes & helpers::TARGET_SWAP != 0 {
            return Err(ETXTBSY);
        }
        let limits = DevLimits {
            lbs: lbs.into(),
            dma_mask: dma_mask.into(),
            dev_bytes: dev_bytes.try_into()?,
        };
        // INVARIANT: `f` is valid for `'f` (held by `owner` if given), `bdev` its block device,
        // checked for `write`.
        Ok(Self {
            file: f,
            _owner: owner,
            borrowed: PhantomData,
            bdev,
            limits,
            write,
        })
    }

    /// Whether it was checked for a write (else for a read).
    pub(crate) fn write(&self) -> bool {
        self.write
    }

    /// The page cache of the block device.
    fn mapping(&self) -> *mut bindings::address_space {
        // SAFETY: The file is valid while the target lives (type invariant); `f_mapping` is set
        // at open.
        unsafe { (*self.file).f_mapping }
    }
}

/// A completion whose waiter sleeps as one waiting for I/O (`wait_for_completion_io`, as
/// `submit_bio_wait` does), so that a direct I/O's wait counts as iowait. Otherwise the kernel
/// crate's `Completion`, but initialised only when first needed ([`IoCompletion::init`]): an I/O
/// waited for with `submit_bio_wait` never uses it.
///
/// # Invariants
///
/// `inner` is a completion initialised by `init_completion` once [`IoCompletion::init`] ran;
/// before that it is uninitialised and nothing uses it (its owner tracks which).
#[pin_data]
struct IoCompletion {
    #[pin]
    inner: Opaque<bindings::completion>,
}

// SAFETY: A `struct completion` may be completed and waited for from any task.
unsafe impl Send for IoCompletion {}
// SAFETY: As above: its operations take the completion's own lock.
unsafe impl Sync for IoCompletion {}

impl IoCompletion {
    /// Not initialised yet.
    fn uninit() -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- Opaque::ffi_init(|_| {}),
        })
    }

    /// Makes it a completion not yet done (`init_completion`).
    ///
    /// # Safety
    ///
    /// Called once, before any other use, while nothing else accesses it.
    unsafe fn init(&self) {
        // SAFETY: `inner` is valid for writes and unused (the function's safety requirements).
        unsafe { bindings::init_completion(self.inner.get()) };
    }

    /// Marks it done for good and wakes every waiter (`complete_all`).
    ///
    /// # Safety
    ///
    /// [`IoCompletion::init`] ran.
    unsafe fn complete_all(&self) {
        // SAFETY: `inner` is an initialised completion (type invariant, as `init` ran).
        unsafe { bindings::complete_all(self.inner.get()) };
    }

    /// Waits, uninterruptibly and as I/O, until it is done.
    ///
    /// # Safety
    ///
    /// [`IoCompletion::init`] ran.
    unsafe fn wait_io(&self) {
        // SAFETY: As above.
        unsafe { bindings::wait_for_completion_io(self.inner.get()) };
    }
}

/// Vectors of the bio a [`DioCtx`] carries inline: 64 KiB at any page offset spans 17 pages.
pub(crate) const INLINE_VECS: usize = 17;

/// Vectors of one bio at most (`BIO_MAX_VECS`), and so pages of a [`BigBuf`].
pub(crate) const BIG_VECS: usize = bindings::BIO_MAX_VECS as usize;

/// The memory a direct I/O of up to [`BIG_VECS`] pages needs beyond its context: slots for the
/// pins and the vectors of its one bio (as `__blkdev_direct_IO_simple` allocates its vectors,
/// with the pages pinned into their tail). An open file keeps one for reuse ([`Spare`]), so that
/// a large I/O allocates nothing either, once the file has one.
///
/// Between I/Os the slots and vectors hold stale values that nothing reads.
#[derive(Zeroable)]
pub(crate) struct BigBuf {
    pages: [*mut bindings::page; BIG_VECS],
    vecs: Opaque<[bindings::bio_vec; BIG_VECS]>,
}

// SAFETY: A `BigBuf` owns nothing its pointers point to (the I/O using it owns the pins), so it
// may be handed from thread to thread between I/Os.
unsafe impl Send for BigBuf {}

/// The spare [`BigBuf`] of an open file: lent to one I/O at a time.
pub(crate) type Spare = SpinLock<Option<KBox<BigBuf>>>;

/// A [`BigBuf`] lent to one I/O: the file's spare, or a new one when another I/O has it. Dropped,
/// it goes back to the file unless the file has one again (then it is freed).
pub(crate) struct Lent<'f> {
    spare: &'f Spare,
    buf: Option<KBox<BigBuf>>,
}

impl<'f> Lent<'f> {
    /// Will lend the file's spare, if it has one, when [`Lent::get`] first asks for it (a small
    /// I/O never takes the lock); [`Lent::get`] allocates otherwise.
    pub(crate) fn from(spare: &'f Spare) -> Self {
        Self { spare, buf: None }
    }

    /// The buffer: the file's spare, or a new one (zeroed), on first use.
    fn get(&mut self) -> Result<&mut BigBuf> {
        if self.buf.is_none() {
            self.buf = self.spare.lock().take();
        }
        if self.buf.is_none() {
            self.buf = Some(KBox::zeroed(GFP_KERNEL)?);
        }
        self.buf.as_deref_mut().ok_or(ENOMEM)
    }
}

impl Drop for Lent<'_> {
    #[inline]
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else {
            return;
        };
        let mut spare = self.spare.lock();
        if spare.is_none() {
            *spare = Some(buf);
        }
        // Otherwise `buf` is freed here, after the guard (declared later, dropped first).
    }
}

/// What became of the inline bio of a [`DioCtx`].
const INLINE_FREE: i32 = 0;
const INLINE_OPEN: i32 = 1;
const INLINE_SUBMITTED: i32 = 2;

/// The completion accounting of one direct I/O: the bios in flight and the first error, and a
/// bio for an I/O that fits in one, so that it allocates no bio (as `__blkdev_direct_IO_simple`
/// keeps its bio on the stack): over the context's own [`INLINE_VECS`] vectors, or over the
/// vectors of a [`BigBuf`] the I/O holds. It also has page slots for the pins of such an I/O, so
/// that they are not moved around with the I/O's state.
///
/// # Invariants
///
/// `pending` counts the submitted bios that have not completed, plus one while the submitter
/// may still submit; `done` is completed when it drops to zero. `done` is initialised once
/// `armed` is set, which [`DioCtx::arm`] does before the first bio is accounted: `pending` can
/// only leave 1, and drop to zero, after that. `status` is 0 or the first
/// negative errno of a bio. `inline` says whether `bio` is unused ([`INLINE_FREE`]: not
/// initialised), being filled, or submitted (initialised by `bio_init` over `vecs`, or over
/// vectors that outlive every wait of the context). `slots` is lent to one I/O at most, once
/// `slots_lent` is set (by [`DioCtx::take_slots`], which initialises it).
///
/// Completions touch `done`, `pending` and `status` only, which are atomic. `armed`, `inline` and
/// `slots_lent` belong to the submitter (the task running the I/Os of the context), so they are
/// plain cells: no locked instruction or out-of-line atomic per I/O for them. A `Cell` makes the
/// context `!Sync`, so no other task can reach them through a shared reference.
#[pin_data]
pub(crate) struct DioCtx {
    #[pin]
    done: IoCompletion,
    armed: Cell<bool>,
    pending: Atomic<i32>,
    status: Atomic<i32>,
    inline: Cell<i32>,
    #[pin]
    bio: Opaque<bindings::bio>,
    #[pin]
    vecs: Opaque<[bindings::bio_vec; INLINE_VECS]>,
    slots_lent: Cell<bool>,
    #[pin]
    slots: Opaque<[*mut bindings::page; INLINE_VECS]>,
}

impl DioCtx {
    /// No bio yet; the submitter's reference is taken. The bio, its vectors and the page slots
    /// are left uninitialised (`bio_init` and [`DioCtx::take_slots`] initialise them): written
    /// as `Opaque::uninit()` values, they were zeroed, 368 bytes per I/O.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            done <- IoCompletion::uninit(),
            armed: Cell::new(false),
            pending: Atomic::new(1),
            status: Atomic::new(0),
            inline: Cell::new(INLINE_FREE),
            bio <- Opaque::ffi_init(|_| {}),
            vecs <- Opaque::ffi_init(|_| {}),
            slots_lent: Cell::new(false),
            slots <- Opaque::ffi_init(|_| {}),
        })
    }

    /// The first `n` of the context's [`INLINE_VECS`] page slots (all of them if `n` is more),
    /// emptied, for the one I/O that asks first. Only those are written: a 4 KiB I/O empties one.
    #[allow(
        clippy::mut_from_ref,
        reason = "lent once: `slots_lent` is claimed before the borrow is made"
    )]
    fn take_slots<'c>(self: Pin<&'c Self>, n: usize) -> Option<&'c mut [*mut bindings::page]> {
        let ctx = self.get_ref();
        if ctx.slots_lent.replace(true) {
            return None;
        }
        let n = n.min(INLINE_VECS);
        let slots = ctx.slots.get().cast::<*mut bindings::page>();
        // SAFETY: `slots` points to `INLINE_VECS >= n` slots, valid for writes and lent once
        // (claimed above, type invariant), so this is the only reference to them for as long as
        // the context lives; the first `n` are initialised here.
        unsafe {
            // One store for a one-page I/O: the loop becomes a `memset` call.
            if n == 1 {
                slots.write(ptr::null_mut());
            } else {
                for i in 0..n {
                    slots.add(i).write(ptr::null_mut());
                }
            }
            Some(core::slice::from_raw_parts_mut(slots, n))
        }
    }

    /// Readies the completion for bios to be accounted (once; the submitter, before the first).
    fn arm(&self) {
        if !self.armed.replace(true) {
            // SAFETY: Once (guarded by `armed`), before any bio is accounted, so before any
            // other use of `done` (type invariant); only the submitter gets here.
            unsafe { self.done.init() };
        }
    }

    /// Drops one reference (a completed bio's, or the submitter's); the last one completes.
    fn put(&self) {
        // The `completion_early` mutant (`make mutants`) counts one bio short.
        let last = if cfg!(pindio_mutant = "completion_early") {
            2
        } else {
            1
        };
        if self.pending.fetch_sub(1, Full) <= last {
            // SAFETY: `pending` left 1 before (a bio was accounted), so `done` is initialised
            // (type invariant).
            unsafe { self.done.complete_all() };
        }
    }

    /// Records `err` unless an earlier error was recorded: the first error wins.
    fn fail(&self, err: i32) {
        let _ = self.status.cmpxchg(0, err, Full);
    }

    /// Drops the submitter's reference and waits until every submitted bio completed; then
    /// releases the inline bio if it was used. The submitter calls it once, when it submits no
    /// more.
    fn wait(&self) {
        // Only the submitter's reference left: every bio submitted has completed and is done
        // with the context (its `put` was its last access), so there is nothing to wait for.
        // Otherwise the last bio to complete wakes the submitter.
        if self.pending.load(Acquire) != 1 {
            self.put();
            // SAFETY: `pending` left 1: a bio was accounted, so `done` is initialised (type
            // invariant).
            unsafe { self.done.wait_io() };
        }
        if self.inline.replace(INLINE_FREE) == INLINE_SUBMITTED {
            // SAFETY: By the type invariant the inline bio was initialised, and it completed
            // (every bio did): nothing refers to it any more.
            unsafe { bindings::bio_uninit(self.bio.get()) };
        }
    }
}

/// Makes `$ctx`, a fresh [`DioCtx`] pinned on the caller's stack (`Pin<&DioCtx>`), as
/// `stack_pin_init!` does, but without first writing the whole slot: that costs a memset of the
/// context's 550 bytes per I/O.
macro_rules! stack_dio_ctx {
    (let $ctx:ident) => {
        let mut slot = ::core::mem::MaybeUninit::<$crate::dio::DioCtx>::uninit();
        // SAFETY: `slot` is valid for writes and pinned from here on (below); `DioCtx::new`
        // cannot fail.
        unsafe { ::pin_init::raw_init(slot.as_mut_ptr(), $crate::dio::DioCtx::new()) };
        // SAFETY: Initialised above. `slot` is a local of the caller's frame that the caller
        // cannot name (macro hygiene), so it is neither moved nor reused before it goes out of
        // scope; a `DioCtx` needs no drop.
        let $ctx = unsafe { ::core::pin::Pin::new_unchecked(slot.assume_init_ref()) };
    };
}
pub(crate) use stack_dio_ctx;

/// Contexts for `n` direct I/Os in one allocation (`PINDIO_IOC_DIO_BATCH`): about 140 KiB for a
/// full batch, so virtually contiguous memory is enough (`KVVec`), as an order-6 page block may
/// not be found.
///
/// # Invariants
///
/// The vector is never grown or shrunk, so its elements are pinned where they are until it is
/// dropped.
pub(crate) struct DioCtxs(KVVec<DioCtx>);

impl DioCtxs {
    /// `n` fresh contexts.
    pub(crate) fn new(n: usize) -> Result<Self> {
        let mut v = KVVec::<DioCtx>::with_capacity(n, GFP_KERNEL | __GFP_NOWARN)?;
        let slots = v.spare_capacity_mut().get_mut(..n).ok_or(ENOMEM)?;
        for slot in slots.iter_mut() {
            // SAFETY: `slot` is valid for writes and not moved afterwards (type invariant).
            unsafe { pin_init::raw_init(slot.as_mut_ptr(), DioCtx::new()) };
        }
        // SAFETY: The first `n` spare slots were initialised above.
        unsafe { v.inc_len(n) };
        Ok(Self(v))
    }

    /// The contexts, pinned.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Pin<&DioCtx>> {
        // SAFETY: The elements never move (type invariant).
        self.0.iter().map(|c| unsafe { Pin::new_unchecked(c) })
    }
}

/// Accounts the completion of `bio` in its [`DioCtx`]: records its error, if any.
///
/// # Safety
///
/// `bio` is a completed bio submitted by [`Dio::submit`], whose `bi_private` points to the
/// request's pinned [`DioCtx`], which stays alive until `put` lets the submitter past its wait.
unsafe fn account<'a>(bio: *mut bindings::bio) -> &'a DioCtx {
    // SAFETY: By the function's safety requirements, `bio` is valid and `bi_private` points to
    // a live `DioCtx`.
    let (ctx, status) = unsafe { (&*(*bio).bi_private.cast::<DioCtx>(), (*bio).bi_status) };
    if status != 0 {
        // SAFETY: No preconditions.
        ctx.fail(unsafe { bindings::blk_status_to_errno(status) });
    }
    ctx
}

/// `bi_end_io` of pindio's allocated bios: accounts the completion and puts the bio.
///
/// # Safety
///
/// As [`account`]; the bio was allocated by [`OpenBio::alloc`].
unsafe extern "C" fn end_io(bio: *mut bindings::bio) {
    // SAFETY: The caller's guarantees are `account`'s.
    let ctx = unsafe { account(bio) };
    // SAFETY: The bio is ours and done; this drops the only reference. The pages it pointed to
    // are owned (pinned) by the request, not by the bio.
    unsafe { bindings::bio_put(bio) };
    ctx.put();
}

/// `bi_end_io` of the inline bio of a [`DioCtx`]: accounts the completion; the context
/// uninitialises the bio once the submitter stopped waiting.
///
/// # Safety
///
/// As [`account`].
unsafe extern "C" fn end_io_inline(bio: *mut bindings::bio) {
    // SAFETY: The caller's guarantees are `account`'s.
    let ctx = unsafe { account(bio) };
    ctx.put();
}

/// Slots for the pages of one batch: borrowed for the first batch of an I/O that fits in one
/// bio (those of its [`DioCtx`], up to 64 KiB at any page offset, or of a lent [`BigBuf`], up to
/// [`BIG_VECS`] pages), allocated otherwise. Small either way, so that the batches and the I/O
/// state that holds them are cheap to move.
pub(crate) enum Slots<'c> {
    /// Slots the batch borrows.
    Borrowed(&'c mut [*mut bindings::page]),
    /// Slots allocated for the batch.
    Heap(HeapSlots),
}

impl PageSlots for Slots<'_> {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        match self {
            Self::Borrowed(b) => b,
            Self::Heap(h) => h.slots(),
        }
    }
}

/// The pinned memory of a direct I/O: one batch for a single buffer (nothing allocated for it),
/// more for an iovec whose segments do not join on page boundaries (`more` is allocated only
/// then).
struct PinnedMem<'c> {
    first: Option<PinnedBatch<Slots<'c>>>,
    more: Option<KVec<PinnedBatch<Slots<'c>>>>,
    /// Pages pinned in all the batches.
    pages: usize,
}

impl<'c> PinnedMem<'c> {
    /// Nothing pinned.
    fn empty() -> Self {
        Self {
            first: None,
            more: None,
            pages: 0,
        }
    }

    /// Pins all of `src` into batches it adds in place, the first one into `first` if given.
    /// On error what was pinned stays in the batches, released when they are.
    fn pin_all(
        &mut self,
        src: &mut UserPages,
        mut first: Option<&'c mut [*mut bindings::page]>,
    ) -> Result {
        while src.remaining() > 0 {
            // A batch takes the pages of the current segment, and of the next ones while they
            // join on page boundaries and slots remain.
            let slots = match first.take() {
                Some(b) => Slots::Borrowed(b),
                None => Slots::Heap(HeapSlots::new(src.next_segment_pages().max(1))?),
            };
            let batch = src.empty_batch(slots);
            let batch = if self.first.is_none() {
                self.first.insert(batch)
            } else {
                let more = self.more.get_or_insert_with(KVec::new);
                more.push(batch, GFP_KERNEL)?;
                more.last_mut().ok_or(ENOMEM)?
            };
            src.fill(batch, usize::MAX)?;
            if batch.len() == 0 {
                return Err(EFAULT);
            }
            // At most the pages of the user ranges, which access_ok bounds: no overflow.
            self.pages = self.pages.wrapping_add(batch.nr_pages());
        }
        Ok(())
    }

    /// Releases every batch, in place.
    fn release(&mut self) {
        self.first = None;
        // Tested first: dropping the `None` of a single buffer is otherwise a call.
        if self.more.is_some() {
            self.more = None;
        }
        self.pages = 0;
    }

    /// Calls `f` on each batch, in order, until it fails. Two plain loops rather than a chained
    /// iterator: a single buffer's one batch is then a test and a call.
    fn try_for_each(&mut self, mut f: impl FnMut(&mut PinnedBatch<Slots<'c>>) -> Result) -> Result {
        if let Some(first) = &mut self.first {
            f(first)?;
        }
        if let Some(more) = &mut self.more {
            for batch in more.iter_mut() {
                f(batch)?;
            }
        }
        Ok(())
    }
}

/// One direct I/O, from [`Dio::new`] and [`Dio::prepare`] to [`Dio::finish`].
///
/// # Invariants
///
/// Every bio submitted for it points only to pages of `mem`, and is accounted in `ctx` (only
/// once `accounted` is set) or (one bio, [`Dio::submit_wait`], never with `accounted`) complete
/// before its submission returns.
/// Dropped without [`Dio::finish`] (an error path), it still waits for those bios before `mem`
/// releases the pages: no page is unpinned under a bio in flight.
pub(crate) struct Dio<'c> {
    target: Target<'c>,
    ctx: Pin<&'c DioCtx>,
    req: DioRequest,
    pos: u64,
    len: usize,
    submitted: Result,
    /// Whether [`Dio::submit`] ran: only then may bios be accounted in `ctx`.
    accounted: bool,
    waited: bool,
    mem: PinnedMem<'c>,
    /// The vectors of a lent [`BigBuf`], for the context's bio when the I/O fits in it.
    big_vecs: Option<&'c Opaque<[bindings::bio_vec; BIG_VECS]>>,
}

impl<'c> Dio<'c> {
    /// The direct I/O `req` at device offset `pos` of `target`, whose bios will complete into
    /// `ctx`, which must be fresh ([`DioCtx::new`]). Nothing is checked or pinned yet: that is
    /// [`Dio::prepare`], which works in place, so that the I/O state is not moved around once
    /// it holds pins.
    pub(crate) fn new(req: DioRequest, target: Target<'c>, pos: u64, ctx: Pin<&'c DioCtx>) -> Self {
        // INVARIANT: no bio yet.
        Self {
            target,
            ctx,
            req,
            pos,
            len: 0,
            submitted: Ok(()),
            accounted: false,
            waited: false,
            mem: PinnedMem::empty(),
            big_vecs: None,
        }
    }

    /// Checks the I/O with memory at `buf` (`len` bytes, or `len` iovec segments), keeps the
    /// page cache coherent for it, and pins the memory; once, before [`Dio::submit`]. Nothing is
    /// pinned unless every check passed. A single buffer of more than [`INLINE_VECS`] and at
    /// most [`BIG_VECS`] pages uses the buffer of `lent`, if given, for its pins and its one bio.
    pub(crate) fn prepare(
        &mut self,
        buf: UserPtr,
        len: u64,
        lent: Option<&'c mut Lent<'_>>,
    ) -> Result {
        let dir = mem_dir(self.req.write);
        match self.req.iovec {
            None => self.prepare_range(UserRange::new(buf, len.try_into()?, dir)?, lent),
            Some(nr_segs) => self.prepare_iovec(UserPages::new_iovec(buf, nr_segs, dir, false)?),
        }
    }

    /// [`Dio::prepare`] of a single buffer the caller already made into `range`: pinned whole
    /// into one batch, on the context's slots if it spans at most [`INLINE_VECS`] pages, else on
    /// those of `lent` if given and it spans at most [`BIG_VECS`], else on slots allocated for it.
    pub(crate) fn prepare_range(
        &mut self,
        range: UserRange,
        lent: Option<&'c mut Lent<'_>>,
    ) -> Result {
        if self.mem.pages != 0 {
            return Err(EBUSY);
        }
        range_checked_coherent(&self.target, self.req.write, self.pos, &range)?;
        self.len = range.len();
        let span = range.nr_pages();
        let slots = match lent {
            _ if span <= INLINE_VECS => self.ctx.take_slots(span).map(Slots::Borrowed),
            Some(lent) if span <= BIG_VECS => {
                let BigBuf { pages, vecs } = lent.get()?;
                self.big_vecs = Some(&*vecs);
                Some(Slots::Borrowed(&mut pages[..]))
            }
            _ => None,
        };
        let slots = match slots {
            Some(slots) => slots,
            None => Slots::Heap(HeapSlots::new(span)?),
        };
        let batch = range.pin(slots)?;
        self.mem.pages = batch.nr_pages();
        self.mem.first = Some(batch);
        Ok(())
    }

    /// [`Dio::prepare`] of an iovec: pinned into batches of segments that join on page
    /// boundaries, the first one on the context's slots if its segment fits them.
    fn prepare_iovec(&mut self, mut src: UserPages) -> Result {
        if self.mem.pages != 0 {
            return Err(EBUSY);
        }
        let bytes = src.remaining();
        let limits = &self.target.limits;
        // Empty segments carry no data: skipped, wherever they point.
        let aligned = src
            .user_segments()
            .all(|(addr, len)| len == 0 || limits.check_segment(addr as u64, len as u64));
        checked_coherent(&self.target, self.req.write, self.pos, aligned, bytes)?;
        self.len = bytes;
        // A segment may join the next ones: the first batch gets all of the context's slots.
        let first = if src.next_segment_pages() <= INLINE_VECS {
            self.ctx.take_slots(INLINE_VECS)
        } else {
            None
        };
        self.mem.pin_all(&mut src, first)
    }

    /// The vectors of the context's own bio, if all the pages go in it: its inline ones, or those
    /// of the lent buffer.
    fn inline_vecs(&self) -> Option<(*mut bindings::bio_vec, usize)> {
        if self.mem.pages <= INLINE_VECS {
            Some((self.ctx.vecs.get().cast(), INLINE_VECS))
        } else {
            self.big_vecs
                .filter(|_| self.mem.pages <= BIG_VECS)
                .map(|v| (v.get().cast(), BIG_VECS))
        }
    }

    /// Whether the I/O goes out as one bio, which needs no plug to gather it with others.
    pub(crate) fn one_bio(&self) -> bool {
        self.inline_vecs().is_some()
    }

    /// Submits an I/O that fits in one bio ([`Dio::one_bio`]) and waits for it, as
    /// `__blkdev_direct_IO_simple` does (`submit_bio_wait`): the bio is done when this returns,
    /// so nothing is accounted in the context. An error becomes the result of [`Dio::finish`].
    pub(crate) fn submit_wait(&mut self) {
        // Not after [`Dio::submit`]: the bios it sent out must still be waited for.
        if self.waited || self.accounted {
            self.submitted = Err(EBUSY);
            return;
        }
        self.submitted = self.submit_one_wait();
        // Nothing is in flight, nothing more is submitted ([`Dio::submit`] refuses), and the
        // context accounted nothing: there is nothing to wait for.
        self.waited = true;
    }

    fn submit_one_wait(&mut self) -> Result {
        self.one_bio_filled()?.ok_or(EINVAL)?.submit_wait()
    }

    /// Everything in one bio, if it fits ([`Dio::one_bio`]): the context's own, allocated from
    /// nothing, over its own vectors or those of the lent buffer, with every page added. Every
    /// piece gets a vector and the whole is a number of blocks (checked at prepare), so there is
    /// nothing to cut.
    fn one_bio_filled(&mut self) -> Result<Option<OpenBio<'c>>> {
        let Some((vecs, n)) = self.inline_vecs() else {
            return Ok(None);
        };
        let sector = self.pos >> bindings::SECTOR_SHIFT;
        // SAFETY: `vecs` are the context's or the lent buffer's, `n` of them, both borrowed for
        // `'c`, past every wait of the context and past `submit_bio_wait`'s return.
        let mut bio =
            unsafe { OpenBio::inline(&self.target, self.opf(), sector, self.ctx, vecs, n) }?;
        self.mem.try_for_each(|batch| bio.add_all(batch))?;
        Ok(Some(bio))
    }

    /// The operation and flags of the I/O's bios.
    fn opf(&self) -> u32 {
        opf(&self.req)
    }

    /// Cuts the pinned pages into bios and submits them, each accounted in the context.
    ///
    /// On error the bios submitted so far stay in flight and accounted; the error becomes the
    /// result of [`Dio::finish`] unless a bio failed first.
    pub(crate) fn submit(&mut self) {
        // Once waited for, no bio may go out: nothing would wait for it.
        if self.waited {
            self.submitted = Err(EBUSY);
            return;
        }
        self.accounted = true;
        self.submitted = self.submit_bios();
    }

    fn submit_bios(&mut self) -> Result {
        let ctx = self.ctx;
        if let Some(mut bio) = self.one_bio_filled()? {
            bio.submit(ctx);
            return Ok(());
        }
        let opf = self.opf();
        let mut sector = self.pos >> bindings::SECTOR_SHIFT;
        let target = &self.target;
        let lbs = self.target.limits.lbs.try_into()?;
        let mut planner = BioPlanner::new(lbs, PAGE_SIZE).ok_or(EINVAL)?;
        let mut bio = OpenBio::none();
        let mut pieces_left = self.mem.pages;
        self.mem.try_for_each(|batch| {
            for (page, mut off, mut len) in batch.segments() {
                pieces_left = pieces_left.saturating_sub(1);
                while len > 0 {
                    if bio.bio.is_null() {
                        let vecs = (pieces_left + 1).min(bindings::BIO_MAX_VECS as usize);
                        bio = OpenBio::alloc(target, vecs, opf, sector, ctx)?;
                        planner.open(vecs);
                    }
                    let (take, full) = planner.place(len).ok_or(EINVAL)?;
                    if take > 0 {
                        bio.add(page.as_ptr(), take, off)?;
                    }
                    off += take;
                    len -= take;
                    if full {
                        sector += u64::try_from(planner.bytes())? >> bindings::SECTOR_SHIFT;
                        bio.submit(ctx);
                    }
                }
            }
            Ok(())
        })?;
        bio.submit(ctx);
        Ok(())
    }

    /// Waits for every bio submitted (once). Without [`Dio::submit`] the context accounted
    /// nothing: there is nothing to wait for (a bio of [`Dio::submit_wait`] is complete already).
    fn wait(&mut self) {
        if !self.waited {
            self.waited = true;
            if self.accounted {
                self.ctx.wait();
            }
        }
    }

    /// Waits for every bio, releases the pinned pages (dirtying those of a read), and invalidates
    /// the page cache over a written range. Returns the bytes done, or the first error: of a bio,
    /// or else of the submission.
    pub(crate) fn finish(&mut self) -> Result<usize> {
        self.wait();
        // Every bio completed: the pins can go, the pages of a read dirtied first.
        self.mem.release();
        if self.req.write {
            coherent_after_write(&self.target, self.pos, self.len);
        }
        if self.accounted {
            let status = self.ctx.status.load(Relaxed);
            if status != 0 {
                return Err(Error::from_errno(status));
            }
        }
        core::mem::replace(&mut self.submitted, Ok(()))?;
        Ok(self.len)
    }
}

impl Drop for Dio<'_> {
    fn drop(&mut self) {
        // The bios in flight point to the pages `mem` releases after this.
        self.wait();
    }
}

/// A bio being filled, not yet submitted; dropped unsubmitted, it is released.
///
/// # Invariants
///
/// `bio` is null, or a bio not yet submitted: allocated by [`OpenBio::alloc`] (then `ctx` is
/// null), or the inline bio of `ctx`, initialised by [`OpenBio::inline`].
struct OpenBio<'c> {
    bio: *mut bindings::bio,
    ctx: Option<Pin<&'c DioCtx>>,
}

impl<'c> OpenBio<'c> {
    /// No bio.
    fn none() -> Self {
        Self {
            bio: ptr::null_mut(),
            ctx: None,
        }
    }

    /// Sets where `bio` goes and how it completes into `ctx`.
    ///
    /// # Safety
    ///
    /// `bio` is a bio being set up, ours alone; `ctx` outlives it (the submitter waits for
    /// every bio in `Dio::finish` or on drop).
    unsafe fn setup(
        bio: *mut bindings::bio,
        sector: u64,
        end: unsafe extern "C" fn(*mut bindings::bio),
        ctx: Pin<&DioCtx>,
    ) {
        // SAFETY: By the function's safety requirements.
        unsafe {
            (*bio).bi_iter.bi_sector = sector;
            (*bio).bi_end_io = Some(end);
            (*bio).bi_private = ptr::from_ref(ctx.get_ref()).cast_mut().cast();
        }
    }

    /// A bio of `vecs` vectors from the filesystem bioset, for `target` at `sector`, completing
    /// into `ctx`.
    fn alloc(
        target: &Target<'_>,
        vecs: usize,
        opf: u32,
        sector: u64,
        ctx: Pin<&DioCtx>,
    ) -> Result<Self> {
        // SAFETY: `bdev` is valid (type invariant of `Target`); `fs_bio_set` is the kernel's
        // bioset, initialised at boot. With GFP_KERNEL the mempool does not fail for
        // `vecs <= BIO_MAX_VECS`, but a null return is handled anyway.
        let bio = unsafe {
            bindings::bio_alloc_bioset(
                target.bdev,
                vecs.try_into()?,
                opf,
                bindings::GFP_KERNEL,
                &raw mut bindings::fs_bio_set,
            )
        };
        if bio.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: A fresh bio, ours alone; `ctx` outlives it (see `Dio`).
        unsafe { Self::setup(bio, sector, end_io, ctx) };
        // INVARIANT: allocated, not submitted.
        Ok(Self { bio, ctx: None })
    }

    /// The inline bio of `ctx` (at most once per context) over `n` vectors at `vecs`, for
    /// `target` at `sector`.
    ///
    /// # Safety
    ///
    /// `vecs` is valid for `n` vectors, which nothing else uses until the context's bios were
    /// waited for ([`DioCtx::wait`]).
    unsafe fn inline(
        target: &Target<'_>,
        opf: u32,
        sector: u64,
        ctx: Pin<&'c DioCtx>,
        vecs: *mut bindings::bio_vec,
        n: usize,
    ) -> Result<Self> {
        let n = u16::try_from(n)?;
        if ctx.inline.get() != INLINE_FREE {
            return Err(EBUSY);
        }
        ctx.inline.set(INLINE_OPEN);
        let bio = ctx.bio.get();
        // SAFETY: The inline bio is ours (claimed above) and lives as long as `ctx`; the
        // vectors are valid and ours by the function's safety requirements; `bdev` is valid
        // (type invariant of `Target`).
        unsafe { bindings::bio_init(bio, target.bdev, vecs, n, opf) };
        // SAFETY: As above.
        unsafe { Self::setup(bio, sector, end_io_inline, ctx) };
        // INVARIANT: the inline bio of `ctx`, initialised, not submitted.
        Ok(Self {
            bio,
            ctx: Some(ctx),
        })
    }

    /// Adds `len` bytes at `off` of `page` as a vector of its own (`__bio_add_page`: the planner
    /// placed it, so no merge with the previous vector is tried); `EINVAL` if the bio has no
    /// room for it.
    fn add(&mut self, page: *mut bindings::page, len: usize, off: usize) -> Result {
        if self.bio.is_null() {
            return Err(EINVAL);
        }
        let len32 = u32::try_from(len)?;
        let off32 = u32::try_from(off)?;
        // SAFETY: `self.bio` is an open bio (type invariant), ours alone until submitted.
        let full = unsafe {
            let bio = &*self.bio;
            bio.bi_vcnt >= bio.bi_max_vecs || bio.bi_iter.bi_size > u32::MAX - len32
        };
        if full {
            return Err(EINVAL);
        }
        // SAFETY: An open bio with room for one more vector of `len` bytes (checked above); the
        // page is pinned by the request until every bio completed, and `off + len` is within it.
        unsafe { bindings::__bio_add_page(self.bio, page, len32, off32) };
        Ok(())
    }

    /// Adds every page of `batch`, each piece as a vector of its own, checking the room once;
    /// `EINVAL` if the bio has not enough. The vectors are written straight into the bio, as
    /// `iov_iter_extract_bvecs` does for `bio_iov_iter_get_pages`: what `__bio_add_page` would
    /// add per page is only its room checks (done once here) and a P2P DMA page check, which
    /// pages pinned without `FOLL_PCI_P2PDMA` never need.
    fn add_all<S: PageSlots>(&mut self, batch: &mut PinnedBatch<S>) -> Result {
        if self.bio.is_null() {
            return Err(EINVAL);
        }
        let vecs = u16::try_from(batch.nr_pages())?;
        let bytes = u32::try_from(batch.len())?;
        // SAFETY: `self.bio` is an open bio (type invariant), ours alone until submitted.
        let bio = unsafe { &mut *self.bio };
        let room = bio
            .bi_vcnt
            .checked_add(vecs)
            .is_some_and(|v| v <= bio.bi_max_vecs)
            && bio.bi_iter.bi_size.checked_add(bytes).is_some();
        if !room {
            return Err(EINVAL);
        }
        // SAFETY: `bi_io_vec` has `bi_max_vecs` vectors, the first `bi_vcnt` of them in use.
        let free = unsafe { bio.bi_io_vec.add(usize::from(bio.bi_vcnt)) };
        let (mut added, mut size) = (0u16, 0u32);
        for (page, off, len) in batch.raw_segments() {
            // SAFETY: The batch has `vecs` pieces at most, for which the bio has room (checked
            // above); each is at most a page, so both fit `u32`, and `bytes` in all. The pages
            // are pinned by the request until every bio completed.
            unsafe {
                free.add(usize::from(added)).write(bindings::bio_vec {
                    bv_page: page,
                    bv_len: len as u32,
                    bv_offset: off as u32,
                })
            };
            added = added.wrapping_add(1);
            size = size.wrapping_add(len as u32);
        }
        // Within the room checked above: `added <= vecs`, `size <= bytes`.
        bio.bi_vcnt = bio.bi_vcnt.saturating_add(added);
        bio.bi_iter.bi_size = bio.bi_iter.bi_size.saturating_add(size);
        Ok(())
    }

    /// Submits the inline bio and waits for it (`submit_bio_wait`), then releases it; returns its
    /// error. Its `bi_private` and `bi_end_io` are `submit_bio_wait`'s own, so it is not
    /// accounted in the context.
    fn submit_wait(mut self) -> Result {
        let bio = core::mem::take(&mut self.bio);
        let Some(ctx) = self.ctx.take() else {
            // Only the inline bio of a context is released here; an allocated one goes back
            // unsubmitted (on drop).
            self.bio = bio;
            return Err(EINVAL);
        };
        // SAFETY: A filled bio, ours alone (type invariant); `submit_bio_wait` returns once it
        // completed, and then nothing in the block layer refers to it.
        let ret = unsafe { bindings::submit_bio_wait(bio) };
        // SAFETY: The inline bio of `ctx`, initialised and completed; nothing refers to it.
        unsafe { bindings::bio_uninit(bio) };
        ctx.inline.set(INLINE_FREE);
        errno_result(ret)
    }

    /// Submits the bio, accounted in `ctx`; `self` is left with no bio.
    fn submit(&mut self, ctx: Pin<&DioCtx>) {
        let bio = core::mem::take(&mut self.bio);
        if bio.is_null() {
            return;
        }
        if let Some(inline) = self.ctx.take() {
            inline.inline.set(INLINE_SUBMITTED);
        }
        ctx.arm();
        ctx.pending.fetch_add(1, Full);
        // SAFETY: A filled bio whose `bi_end_io` accounts it in `ctx`; submitting passes it to
        // the block layer until `bi_end_io`.
        unsafe { bindings::submit_bio(bio) };
    }
}

impl Drop for OpenBio<'_> {
    fn drop(&mut self) {
        if self.bio.is_null() {
            return;
        }
        match self.ctx {
            Some(ctx) => {
                // SAFETY: By the type invariant the initialised, never submitted inline bio.
                unsafe { bindings::bio_uninit(self.bio) };
                ctx.inline.set(INLINE_FREE);
            }
            // SAFETY: By the type invariant an allocated bio that was never submitted: ours to
            // put. It holds no page references.
            None => unsafe { bindings::bio_put(self.bio) },
        }
    }
}

/// Which way the data of a direct I/O moves, seen from the memory: a read from the device
/// writes the memory.
pub(crate) fn mem_dir(write: bool) -> Dir {
    if write {
        Dir::ToDevice
    } else {
        Dir::FromDevice
    }
}

/// The operation and flags of the bios of `req`.
fn opf(req: &DioRequest) -> u32 {
    if !req.write {
        return bindings::req_op_REQ_OP_READ | 1 << bindings::req_flag_bits___REQ_SYNC;
    }
    let mut opf = bindings::req_op_REQ_OP_WRITE
        | 1 << bindings::req_flag_bits___REQ_SYNC
        | 1 << bindings::req_flag_bits___REQ_IDLE;
    if req.fua {
        opf |= 1 << bindings::req_flag_bits___REQ_FUA;
    }
    opf
}

/// The checks of a direct I/O of `bytes` bytes of memory, `aligned` to the device's rules or not,
/// at device offset `pos` of `target` (`EINVAL`: see [`DevLimits`]), then the page cache made
/// coherent for it ([`coherent_before`]); all before anything is pinned.
fn checked_coherent(
    target: &Target<'_>,
    write: bool,
    pos: u64,
    aligned: bool,
    bytes: usize,
) -> Result {
    if !aligned || !target.limits.check_range(pos, bytes as u64) {
        return Err(EINVAL);
    }
    // The range is within the device (checked above), whose size is a `loff_t`, and not empty:
    // its first and last byte fit `i64`, so they are computed without overflow checks.
    let end = pos.wrapping_add(bytes as u64).wrapping_sub(1);
    coherent_before(target, write, pos as i64, end as i64)
}

/// [`checked_coherent`] for the single buffer `range`, whose one segment is checked for the
/// device's alignment.
fn range_checked_coherent(target: &Target<'_>, write: bool, pos: u64, range: &UserRange) -> Result {
    let aligned = target
        .limits
        .check_segment(range.addr() as u64, range.len() as u64);
    checked_coherent(target, write, pos, aligned, range.len())
}

/// A direct I/O `req` of the single buffer `range` at device offset `pos` of `target`, waited
/// for, as `__blkdev_direct_IO_simple` does it: what [`Dio`] does in three steps, in one, for a
/// buffer of at most [`INLINE_VECS`] pages (`EINVAL` for a larger one). It is checked as
/// [`Dio::prepare`] checks it, pinned into the page slots of `ctx` (which must be fresh), sent
/// as the context's inline bio with `submit_bio_wait`, and released (the pages of a read
/// dirtied first); returns the bytes transferred. No I/O state is built besides the pinned
/// batch and the bio: this is the common case of `PINDIO_IOC_DIO`.
pub(crate) fn simple(
    target: &Target<'_>,
    req: DioRequest,
    pos: u64,
    range: &UserRange,
    ctx: Pin<&DioCtx>,
) -> Result<usize> {
    range_checked_coherent(target, req.write, pos, range)?;
    let bytes = range.len();
    // A larger buffer gets too few slots, which `pin` refuses.
    let slots = ctx.take_slots(range.nr_pages()).ok_or(EBUSY)?;
    let mut batch = range.pin(slots)?;
    let sector = pos >> bindings::SECTOR_SHIFT;
    // SAFETY: The context's own vectors, which live as long as it and which nothing else uses:
    // the bio is its only one, and `submit_wait` returns only once it completed.
    let mut bio = unsafe {
        OpenBio::inline(
            target,
            opf(&req),
            sector,
            ctx,
            ctx.vecs.get().cast(),
            INLINE_VECS,
        )
    }?;
    bio.add_all(&mut batch)?;
    // The bio is complete (or was never submitted) before the batch releases the pages below;
    // an early return drops `bio` before `batch` too (declared later).
    let done = bio.submit_wait();
    drop(batch);
    if req.write {
        coherent_after_write(target, pos, bytes);
    }
    done.map(|()| bytes)
}

/// The range `[pos, pos + len)` as the first and last byte, for the page-cache calls.
fn byte_range(pos: u64, len: usize) -> Result<(i64, i64)> {
    let start = i64::try_from(pos)?;
    let end = start
        .checked_add(i64::try_from(len)?)
        .and_then(|e| e.checked_sub(1))
        .ok_or(EINVAL)?;
    Ok((start, end))
}

/// The page-cache index of the page holding byte `pos`.
fn page_index(pos: i64) -> Result<usize> {
    Ok(usize::try_from(pos)? >> PAGE_SHIFT)
}

/// Before a direct I/O of the device bytes `start..=end` (both within the device), as the
/// kernel's block-device direct I/O does: write back dirty cached pages of the range; before a
/// write, also invalidate them so buffered readers see the new data.
fn coherent_before(target: &Target<'_>, write: bool, start: i64, end: i64) -> Result {
    let mapping = target.mapping();
    // SAFETY: `mapping` is the page cache of the open block device.
    errno_result(unsafe { bindings::filemap_write_and_wait_range(mapping, start, end) })?;
    if write {
        // Not negative: within the device.
        let (first, last) = (start as usize >> PAGE_SHIFT, end as usize >> PAGE_SHIFT);
        // SAFETY: As above; the page indices cover the byte range.
        errno_result(unsafe { bindings::invalidate_inode_pages2_range(mapping, first, last) })?;
    }
    Ok(())
}

/// After a direct write: drop cached pages a buffered reader brought in meanwhile, as
/// `kiocb_invalidate_post_direct_write` does (not exported). If that fails, the cache may hold
/// stale data: as `dio_warn_stale_pagecache`, the error is recorded in the mapping
/// (`errseq_set(&mapping->wb_err, -EIO)`), so the next `fsync` of the device reports `EIO`, and
/// a warning is printed once, so that a caller cannot flood the log with it.
fn coherent_after_write(target: &Target<'_>, pos: u64, len: usize) {
    let Ok((start, end)) = byte_range(pos, len) else {
        return;
    };
    // The `no_invalidate` mutant (`make mutants`) leaves the cache as it is.
    if cfg!(pindio_mutant = "no_invalidate") {
        return;
    }
    let mapping = target.mapping();
    // SAFETY: `mapping` is the page cache of the open block device.
    let ret = unsafe {
        bindings::invalidate_inode_pages2_range(
            mapping,
            page_index(start).unwrap_or(0),
            page_index(end).unwrap_or(usize::MAX),
        )
    };
    if ret != 0 {
        // SAFETY: `mapping` is valid (see above); `wb_err` is an errseq_t, which errseq_set
        // updates atomically against other writers and readers.
        unsafe { bindings::errseq_set(&raw mut (*mapping).wb_err, EIO.to_errno()) };
        kernel::pr_crit_once!(
            "page cache invalidation failure on direct I/O: stale data possible\n"
        );
    }
}

/// Runs `f` with the current task plugged: the bios it submits are dispatched together when
/// the plug ends (`blk_start_plug` / `blk_finish_plug`).
pub(crate) fn plugged<R>(f: impl FnOnce() -> R) -> R {
    let mut plug = MaybeUninit::<bindings::blk_plug>::uninit();
    // SAFETY: `plug` is valid for writes and stays in this frame, unmoved, until
    // blk_finish_plug below unlinks it from the task.
    unsafe { bindings::blk_start_plug(plug.as_mut_ptr()) };
    let ret = f();
    // SAFETY: Started above in this task and not finished yet.
    unsafe { bindings::blk_finish_plug(plug.as_mut_ptr()) };
    ret
}
