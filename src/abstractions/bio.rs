// SPDX-License-Identifier: GPL-2.0

//! Bios: built from borrowed pages (`bio_add_page`), then either submitted and waited for, or
//! submitted into an [`InFlight`] that owns what they use and outlives them.
//!
//! A [`Bio`] is owned until it is submitted; dropped before that, it is put. Submitting it
//! consumes it, so a bio cannot be submitted twice or changed while in flight:
//!
//! - [`Bio::submit_wait`] (`submit_bio_wait`) returns once it completed; [`submit_wait_on_stack`]
//!   does the same for a bio of a few vectors on the caller's stack, as
//!   `__blkdev_direct_IO_simple` does, allocating nothing.
//! - [`Submitter::submit`] hands it to the block layer with a completion that accounts it in an
//!   [`InFlight`]. The bios may only borrow from the data the [`InFlight`] owns, and the
//!   [`InFlight`] is pinned: it cannot be freed, whatever safe code does with it (`mem::forget`
//!   included), before its drop has waited for every bio.
//!
//! C: `include/linux/bio.h`, `block/bio.c`.

use super::block::BlockFile;
use super::pages::{Batch, Direction, FromDevice, IoPage, PageSlots, Release, ToDevice};
use core::{
    marker::{PhantomData, PhantomPinned},
    mem::{ManuallyDrop, MaybeUninit},
    pin::Pin,
    ptr::{self, NonNull},
};
use kernel::{
    alloc::flags::__GFP_NOWARN,
    bindings,
    error::to_result,
    prelude::*,
    sync::atomic::{Atomic, Full, Relaxed},
    types::Opaque,
};

/// Bits of a sector number: sectors are 512 bytes.
pub(crate) const SECTOR_SHIFT: u32 = bindings::SECTOR_SHIFT;

/// Vectors of one bio at most.
pub(crate) const BIO_MAX_VECS: usize = bindings::BIO_MAX_VECS as usize;

/// The operation and flags of a bio (`blk_opf_t`) that moves data in direction `D`: a write
/// ([`ToDevice`]: the device reads the memory) or a read ([`FromDevice`]: the device writes it).
pub(crate) struct Opf<D: Direction>(u32, PhantomData<fn() -> D>);

impl<D: Direction> Clone for Opf<D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D: Direction> Copy for Opf<D> {}

impl Opf<FromDevice> {
    /// A synchronous read (`REQ_OP_READ | REQ_SYNC`), as a direct read is.
    pub(crate) fn sync_read() -> Self {
        Self(
            bindings::req_op_REQ_OP_READ | 1 << bindings::req_flag_bits___REQ_SYNC,
            PhantomData,
        )
    }
}

impl Opf<ToDevice> {
    /// A synchronous write (`REQ_OP_WRITE | REQ_SYNC | REQ_IDLE`, as `dio_bio_write_op` makes
    /// it), forced to stable storage (`REQ_FUA`) if `fua`.
    pub(crate) fn sync_write(fua: bool) -> Self {
        let mut opf = bindings::req_op_REQ_OP_WRITE
            | 1 << bindings::req_flag_bits___REQ_SYNC
            | 1 << bindings::req_flag_bits___REQ_IDLE;
        if fua {
            opf |= 1 << bindings::req_flag_bits___REQ_FUA;
        }
        Self(opf, PhantomData)
    }
}

/// Keeps [`AddPage`] to the bios of this module: its [`AddPage::add_batch`] relies on
/// [`AddPage::raw_bio`] being a bio it may add pages to.
mod sealed {
    pub(crate) trait Sealed {}
}

/// A bio that moves data in direction `D` and that pages lent for `'p` can be added to. Sealed:
/// only the bios of this module are.
pub(crate) trait AddPage<'p, D: Direction>: sealed::Sealed {
    /// Adds `len` bytes at `offset` of `page` (`bio_add_page`): merged into the last vector if
    /// they continue it in memory, else as a new vector. `EINVAL` if the bio has no room for
    /// them, or if they do not lie within the page.
    fn add_page(&mut self, page: &IoPage<'p, D>, len: usize, offset: usize) -> Result;

    /// Adds every page of `batch`, extracted for `D`, in order, as [`AddPage::add_page`] adds
    /// one; `EINVAL` if the bio has no room for them all.
    fn add_batch<S: PageSlots, R: Release<Dir = D>>(&mut self, batch: &'p Batch<S, R>) -> Result {
        let bio = self.raw_bio();
        batch.raw_segments().try_for_each(|(page, offset, len)| {
            let (len32, offset32) = (len.try_into()?, offset.try_into()?);
            // The page is valid while the batch is borrowed, for `'p`, which the bio's pages
            // outlive, and lent for `D`, the bio's direction; each segment lies within its
            // page (type invariant of `Batch`).
            // SAFETY: `raw_bio` is a bio not submitted that only this borrow of `self` uses.
            let added = unsafe { bindings::bio_add_page(bio, page, len32, offset32) };
            if usize::try_from(added).ok() != Some(len) {
                return Err(EINVAL);
            }
            Ok(())
        })
    }

    /// The bio, not submitted, for [`AddPage::add_batch`].
    #[doc(hidden)]
    fn raw_bio(&mut self) -> *mut bindings::bio;
}

/// `bio_add_page` of `len` bytes at `offset` of `page` to `bio`.
///
/// # Safety
///
/// `bio` is a valid bio, not submitted, that the caller alone uses, whose direction is the
/// page's; `page` outlives every use of the bio.
unsafe fn add_page_raw<D: Direction>(
    bio: *mut bindings::bio,
    page: &IoPage<'_, D>,
    len: usize,
    offset: usize,
) -> Result {
    if len == 0
        || offset
            .checked_add(len)
            .is_none_or(|end| end > kernel::page::PAGE_SIZE)
    {
        return Err(EINVAL);
    }
    let len32 = u32::try_from(len)?;
    // SAFETY: By the function's safety requirements; the bytes lie within the page (checked
    // above), which stays valid while the bio uses it.
    let added = unsafe { bindings::bio_add_page(bio, page.as_ptr(), len32, offset.try_into()?) };
    if usize::try_from(added).ok() != Some(len) {
        return Err(EINVAL);
    }
    Ok(())
}

/// An owned bio in direction `D`, not yet submitted, whose device and pages are borrowed for
/// `'p`.
///
/// # Invariants
///
/// `bio` was allocated by `bio_alloc_bioset` with an operation of direction `D` and is owned
/// here: not submitted, no other reference to it. Its device and every page added to it are
/// valid for `'p`, and every page was lent for `D`.
pub(crate) struct Bio<'p, D: Direction> {
    bio: NonNull<bindings::bio>,
    _pages: PhantomData<IoPage<'p, D>>,
}

impl<'p, D: Direction> Bio<'p, D> {
    /// A bio of room for `nr_vecs` vectors (at most [`BIO_MAX_VECS`]) for `dev`, at `sector`,
    /// from the filesystem bioset (`bio_alloc_bioset`, `GFP_KERNEL`). The bio does not hold the
    /// device open: `dev` must outlive it, as its pages do.
    pub(crate) fn alloc(
        dev: &'p BlockFile<'_>,
        nr_vecs: usize,
        opf: Opf<D>,
        sector: u64,
    ) -> Result<Self> {
        if nr_vecs > BIO_MAX_VECS {
            return Err(EINVAL);
        }
        // SAFETY: The device is valid while `dev` lives (its type invariant); `fs_bio_set` is
        // the kernel's bioset, initialised at boot.
        let bio = unsafe {
            bindings::bio_alloc_bioset(
                dev.as_raw(),
                nr_vecs.try_into()?,
                opf.0,
                bindings::GFP_KERNEL,
                &raw mut bindings::fs_bio_set,
            )
        };
        let bio = NonNull::new(bio).ok_or(ENOMEM)?;
        // SAFETY: A new bio, ours alone.
        unsafe { (*bio.as_ptr()).bi_iter.bi_sector = sector };
        // INVARIANT: allocated with `opf`, of direction `D`, and owned; no page added yet.
        Ok(Self {
            bio,
            _pages: PhantomData,
        })
    }

    /// The vectors in use (`bi_vcnt`): pages that continue the last vector in memory were
    /// merged into it.
    #[allow(dead_code, reason = "KUnit checks the merging of large folios with it")]
    pub(crate) fn nr_vecs(&self) -> usize {
        // SAFETY: Owned and not submitted (type invariant): nothing changes it meanwhile.
        usize::from(unsafe { (*self.bio.as_ptr()).bi_vcnt })
    }

    /// Submits the bio and waits for it to complete (`submit_bio_wait`); its error, if any.
    #[allow(
        dead_code,
        reason = "the DIO path waits on the stack or in an InFlight; KUnit uses it"
    )]
    pub(crate) fn submit_wait(self) -> Result {
        let bio = ManuallyDrop::new(self).bio.as_ptr();
        // SAFETY: An owned bio (type invariant), whose pages stay valid until this returns;
        // `submit_bio_wait` returns once the bio completed.
        let ret = unsafe { bindings::submit_bio_wait(bio) };
        // SAFETY: Completed: nothing in the block layer refers to it; this drops our reference.
        unsafe { bindings::bio_put(bio) };
        to_result(ret)
    }
}

impl<D: Direction> sealed::Sealed for Bio<'_, D> {}

impl<'p, D: Direction> AddPage<'p, D> for Bio<'p, D> {
    fn add_page(&mut self, page: &IoPage<'p, D>, len: usize, offset: usize) -> Result {
        // SAFETY: Owned and not submitted, of direction `D` (type invariant); the page is
        // valid for `'p`, which the bio's pages must outlive, and lent for `D`.
        unsafe { add_page_raw(self.bio.as_ptr(), page, len, offset) }
    }

    fn raw_bio(&mut self) -> *mut bindings::bio {
        self.bio.as_ptr()
    }
}

impl<D: Direction> Drop for Bio<'_, D> {
    fn drop(&mut self) {
        // SAFETY: Owned and never submitted (type invariant): ours to put. It holds no page
        // references of its own.
        unsafe { bindings::bio_put(self.bio.as_ptr()) };
    }
}

/// The bio on the stack of [`submit_wait_on_stack`] or [`submit_wait_alloc`], lent to its
/// `fill`, in direction `D`; it takes pages lent for `'p`, a lifetime the caller of those
/// functions chooses, so it outlives the call, and with it the submission and the wait.
///
/// # Invariants
///
/// `bio` is valid and initialised (`bio_init`) with an operation of direction `D` while this
/// lives, not submitted, and used by nothing else. It is submitted and waited for, or dropped,
/// before the function that made it returns, within `'p`.
pub(crate) struct StackBio<'p, D: Direction> {
    bio: *mut bindings::bio,
    // Invariant in `'p`: a `&mut StackBio<'p, D>` cannot be given pages of a shorter life.
    _pages: PhantomData<fn(&'p ()) -> &'p ()>,
    _dir: PhantomData<fn() -> D>,
}

impl<D: Direction> sealed::Sealed for StackBio<'_, D> {}

impl<'p, D: Direction> AddPage<'p, D> for StackBio<'p, D> {
    fn add_page(&mut self, page: &IoPage<'p, D>, len: usize, offset: usize) -> Result {
        // SAFETY: Initialised, not submitted, ours alone, of direction `D` (type invariant).
        // The bio is submitted and waited for, or dropped, within `'p`, which the page
        // outlives.
        unsafe { add_page_raw(self.bio, page, len, offset) }
    }

    fn raw_bio(&mut self) -> *mut bindings::bio {
        self.bio
    }
}

/// Builds one bio of up to `N` vectors on this function's stack for `dev` at `sector`, lets
/// `fill` add its pages, then submits it and waits for it (`submit_bio_wait`), as
/// `__blkdev_direct_IO_simple` does with its on-stack bio: no allocation. Returns the error of
/// `fill`, or the bio's. The bio is gone when this returns. The pages are borrowed for `'p`,
/// which outlives this call: a page that `fill` made and dropped itself cannot be added.
pub(crate) fn submit_wait_on_stack<'p, const N: usize, D: Direction>(
    dev: &BlockFile<'_>,
    opf: Opf<D>,
    sector: u64,
    fill: impl FnOnce(&mut StackBio<'p, D>) -> Result,
) -> Result {
    let mut vecs = MaybeUninit::<[bindings::bio_vec; N]>::uninit();
    // SAFETY: `vecs` has room for `N` vectors and stays in this frame, unused by anything else,
    // until the call returns.
    unsafe { submit_wait_over(dev, vecs.as_mut_ptr().cast(), N, opf, sector, fill) }
}

/// [`submit_wait_on_stack`] for a bio of up to `nr_vecs` vectors (at most [`BIO_MAX_VECS`]),
/// allocated for the call, as `__blkdev_direct_IO_simple` allocates those beyond its inline
/// ones; the bio itself is still on the stack.
pub(crate) fn submit_wait_alloc<'p, D: Direction>(
    dev: &BlockFile<'_>,
    nr_vecs: usize,
    opf: Opf<D>,
    sector: u64,
    fill: impl FnOnce(&mut StackBio<'p, D>) -> Result,
) -> Result {
    if nr_vecs > BIO_MAX_VECS {
        return Err(EINVAL);
    }
    let mut vecs = KVec::<bindings::bio_vec>::with_capacity(nr_vecs, GFP_KERNEL | __GFP_NOWARN)?;
    let spare = vecs.spare_capacity_mut();
    if spare.len() < nr_vecs {
        return Err(ENOMEM);
    }
    // SAFETY: `spare` has room for at least `nr_vecs` vectors, in `vecs`' heap buffer, which
    // nothing else uses and which is freed only after the call returns.
    unsafe { submit_wait_over(dev, spare.as_mut_ptr().cast(), nr_vecs, opf, sector, fill) }
}

/// The bio of [`submit_wait_on_stack`] and [`submit_wait_alloc`], over `n` vectors at `vecs`.
///
/// # Safety
///
/// `vecs` is valid for writes of `n` vectors, which nothing else uses until this returns.
unsafe fn submit_wait_over<'p, D: Direction>(
    dev: &BlockFile<'_>,
    vecs: *mut bindings::bio_vec,
    n: usize,
    opf: Opf<D>,
    sector: u64,
    fill: impl FnOnce(&mut StackBio<'p, D>) -> Result,
) -> Result {
    let mut bio = MaybeUninit::<bindings::bio>::uninit();
    let raw = bio.as_mut_ptr();
    // SAFETY: `bio` is valid for writes and stays in this frame, unmoved, until `bio_uninit`
    // below; the vectors are valid by the function's safety requirements, the device while
    // `dev` lives.
    unsafe {
        bindings::bio_init(raw, dev.as_raw(), vecs, n.try_into()?, opf.0);
        (*raw).bi_iter.bi_sector = sector;
    }
    // INVARIANT: initialised above with `opf`, of direction `D`, not submitted; `fill` cannot
    // keep it past its return (it only borrows it).
    let ret = fill(&mut StackBio {
        bio: raw,
        _pages: PhantomData,
        _dir: PhantomData,
    })
    // SAFETY: Initialised and filled; the pages added are borrowed for `'p`, which outlives
    // this call, and `submit_bio_wait` returns once the bio completed.
    .and_then(|()| to_result(unsafe { bindings::submit_bio_wait(raw) }));
    // SAFETY: Initialised above; completed or never submitted, so nothing refers to it.
    unsafe { bindings::bio_uninit(raw) };
    ret
}

/// A completion whose waiter sleeps as one waiting for I/O (`wait_for_completion_io`, as
/// `submit_bio_wait` does), so that the wait counts as iowait.
///
/// # Invariants
///
/// `inner` is initialised by `init_completion`.
#[pin_data]
pub(super) struct IoCompletion {
    #[pin]
    inner: Opaque<bindings::completion>,
}

impl IoCompletion {
    /// Not done yet (`init_completion`).
    pub(super) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes and pinned.
            inner <- Opaque::ffi_init(|slot| unsafe { bindings::init_completion(slot) }),
        })
    }

    /// Marks it done for good and wakes every waiter (`complete_all`).
    pub(super) fn complete_all(&self) {
        // SAFETY: Initialised (type invariant); `complete_all` takes the completion's own lock.
        unsafe { bindings::complete_all(self.inner.get()) };
    }

    /// Waits, uninterruptibly and as I/O, until it is done.
    pub(super) fn wait_io(&self) {
        // SAFETY: As above.
        unsafe { bindings::wait_for_completion_io(self.inner.get()) };
    }
}

// SAFETY: A `struct completion` may be completed and waited for from any task.
unsafe impl Send for IoCompletion {}
// SAFETY: As above: its operations take the completion's own lock.
unsafe impl Sync for IoCompletion {}

/// What the completions of the bios of one [`InFlight`] share: the bios not yet completed and
/// the first error. `Sync`: completions run on any CPU, in interrupt context.
///
/// # Invariants
///
/// `pending` counts the submitted bios that have not completed, plus one while the owner may
/// still submit; `done` is completed when it drops to zero. `status` is 0 or the first negative
/// errno of a bio.
#[pin_data]
struct BioGroup {
    #[pin]
    done: IoCompletion,
    pending: Atomic<i32>,
    status: Atomic<i32>,
    /// Completions reach the group through a raw pointer while the owner holds it: it must not
    /// move, and `&mut` to it must not be assumed unique.
    #[pin]
    _pin: PhantomPinned,
}

impl BioGroup {
    /// Drops one reference (a completed bio's, or the owner's); the last one completes `done`.
    fn put(&self) {
        if self.pending.fetch_sub(1, Full) <= 1 {
            self.done.complete_all();
        }
    }
}

/// `bi_end_io` of the bios of a [`Submitter`]: records the bio's error, puts the bio, then drops
/// its reference to the group.
///
/// # Safety
///
/// `bio` is a completed bio submitted by [`Submitter::submit`]: its `bi_private` points to the
/// pinned [`BioGroup`] that accounted it, which stays valid until the `put` below.
unsafe extern "C" fn end_io(bio: *mut bindings::bio) {
    // SAFETY: By the function's safety requirements.
    let (group, status) = unsafe { (&*(*bio).bi_private.cast::<BioGroup>(), (*bio).bi_status) };
    if status != 0 {
        // SAFETY: No preconditions.
        let err = unsafe { bindings::blk_status_to_errno(status) };
        let _ = group.status.cmpxchg(0, err, Relaxed);
    }
    // SAFETY: The bio is ours (given to the block layer by `Submitter::submit`) and done; this
    // drops the only reference. The pages belong to the group's owner, not to the bio.
    unsafe { bindings::bio_put(bio) };
    // The last access to the group: once the owner sees zero it may free it.
    group.put();
}

/// Submits bios into an [`InFlight`], during [`InFlight::new`] only. `'s` is the borrow of the
/// [`InFlight`]'s data: bios may only borrow from that data, which the [`InFlight`] keeps until
/// they all completed.
pub(crate) struct Submitter<'s> {
    group: &'s BioGroup,
}

impl<'s> Submitter<'s> {
    /// Submits `bio` (`submit_bio`); its completion is accounted in the [`InFlight`].
    pub(crate) fn submit<D: Direction>(&mut self, bio: Bio<'s, D>) {
        let bio = ManuallyDrop::new(bio).bio.as_ptr();
        self.group.pending.fetch_add(1, Full);
        // The group and the data of the `InFlight` (which the bio borrows for `'s`) outlive
        // every bio: `InFlight` waits for them before it is dropped.
        // SAFETY: An owned bio (type invariant of `Bio`), handed to the block layer until
        // `end_io`, which accounts it in the pinned group `bi_private` points to.
        unsafe {
            (*bio).bi_end_io = Some(end_io);
            (*bio).bi_private = ptr::from_ref(self.group).cast_mut().cast();
            bindings::submit_bio(bio);
        }
    }
}

/// Bios in flight and the data `T` they use (the pages they point to, the device they go to):
/// the completion that owns what the bios borrow.
///
/// # Invariants
///
/// Every bio submitted into it borrowed only from `data` (see [`InFlight::new`]) and is
/// accounted in `group`. `submitted` is the error that stopped the submission, if any.
#[pin_data(PinnedDrop)]
pub(crate) struct InFlight<T: 'static> {
    #[pin]
    group: BioGroup,
    data: T,
    submitted: Result,
}

impl<T: 'static> InFlight<T> {
    /// Takes `data`, then runs `submit` to submit bios that borrow from it. An error of `submit`
    /// stops the submission; the bios submitted before it stay in flight, and the error is
    /// reported by [`InFlight::wait`] unless a bio failed.
    ///
    /// `submit` is given the data for a lifetime `'s` it cannot name outside: its bios can only
    /// borrow from the data (or from what lives forever), nothing that could be freed while they
    /// are in flight.
    pub(crate) fn new(
        data: T,
        submit: impl for<'s> FnOnce(&'s T, &mut Submitter<'s>) -> Result,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            group <- pin_init!(BioGroup {
                done <- IoCompletion::new(),
                pending: Atomic::new(1),
                status: Atomic::new(0),
                _pin: PhantomPinned,
            }),
            data,
            submitted: Ok(()),
        })
        .pin_chain(move |this| {
            let shared = this.as_ref().get_ref();
            let submitted = submit(
                &shared.data,
                &mut Submitter {
                    group: &shared.group,
                },
            );
            // The owner submits no more: its reference goes.
            shared.group.put();
            *this.project().submitted = submitted;
            Ok::<(), core::convert::Infallible>(())
        })
    }

    /// Waits until every bio completed; then the data is the caller's alone again. Returns the
    /// first error of a bio, else the error of the submission, with the data.
    pub(crate) fn wait(self: Pin<&mut Self>) -> (Result, &mut T) {
        self.group.done.wait_io();
        let this = self.project();
        let status = this.group.status.load(Relaxed);
        let ret = if status != 0 {
            Err(Error::from_errno(status))
        } else {
            *this.submitted
        };
        (ret, this.data)
    }
}

#[pinned_drop]
impl<T: 'static> PinnedDrop for InFlight<T> {
    fn drop(self: Pin<&mut Self>) {
        // No bio may outlive the data it uses: this runs before `data` is dropped, and before
        // the memory of the `InFlight` can be reused (it is pinned).
        self.group.done.wait_io();
    }
}
