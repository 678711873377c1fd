// SPDX-License-Identifier: GPL-2.0

//! Page extraction with FOLL_PIN semantics.
//!
//! A [`UserPages`] source pins user memory (a single range or an iovec) as it is extracted; a
//! [`UserRange`] is a single range pinned whole at once (a direct I/O of one buffer); a
//! [`KernelPages`] source only lists the pages of kernel memory (a kvec or bvec). Which of the two
//! happened is carried in the type of the batch, [`PinnedBatch`] or [`ListedBatch`]: dropping a
//! batch releases exactly the pages it holds (unpinning them, dirtied first after a
//! device-to-memory transfer) or, for listed pages, nothing. A batch is walked as an iterator of
//! `(page, offset, len)` segments; there is no hidden cursor.
//!
//! Batches take their page-pointer array from a [`PageSlots`]: [`StackSlots`] (a few pages, on
//! the stack) for small extractions, or [`HeapSlots`], allocated once and reused by every batch, for
//! large ones. A batch borrows its slots, so the borrow checker forbids a second batch on the same
//! slots while the first still holds pages. No allocation happens per batch.

use crate::ffi::helpers;
use crate::segments::Segments;
use core::{
    marker::PhantomData,
    mem::{size_of, MaybeUninit},
    ptr,
    ptr::NonNull,
};
use kernel::{
    alloc::flags::__GFP_NOWARN,
    bindings,
    error::to_result,
    page::{BorrowedPage, Page, PAGE_SIZE},
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// Keeps the traits of this module to its own types: a batch trusts its slots to be the array
/// extraction filled and its release to be what the extraction took, and the bios of
/// [`super::bio`] trust a direction to say what the device does to the memory.
mod sealed {
    use kernel::bindings;

    pub(crate) trait Slots {
        /// The slots, each of which a batch may fill with one page. Every call returns the same
        /// array (as long as `self` is not moved), which nothing but these calls reads or
        /// writes.
        fn slots(&mut self) -> &mut [*mut bindings::page];

        /// The slots, to read: the array [`Slots::slots`] returns.
        fn slots_ref(&self) -> &[*mut bindings::page];
    }

    pub(crate) trait Release {}

    pub(crate) trait Direction {
        /// The `iov_iter` direction of the memory: `ITER_SOURCE` or `ITER_DEST`.
        const ITER: u32;
        /// `FOLL_WRITE` if the device writes the memory, else 0.
        const FOLL: u32;
    }
}

/// Which way the data moves, seen from the memory, as a type: [`ToDevice`] or [`FromDevice`]
/// (as `kernel::iov` has `IovIterSource` and `IovIterDest`). Pages extracted for one direction
/// can only go into bios of that direction: a bio that writes memory ([`FromDevice`], a read
/// from a disk) takes only pages pinned with `FOLL_WRITE` or lent mutably. Sealed.
pub(crate) trait Direction: sealed::Direction + Sized + 'static {}

/// The device reads the memory (memory-to-device, e.g. a write to a disk): user pages are
/// pinned without `FOLL_WRITE` (untouched anonymous memory may be the shared zero page), kernel
/// memory is lent shared.
pub(crate) enum ToDevice {}

/// The device writes the memory (device-to-memory, e.g. a read from a disk): user pages are
/// pinned with `FOLL_WRITE` and dirtied before they are unpinned, kernel memory is lent
/// mutably.
pub(crate) enum FromDevice {}

impl sealed::Direction for ToDevice {
    const ITER: u32 = bindings::ITER_SOURCE;
    const FOLL: u32 = 0;
}
impl Direction for ToDevice {}

impl sealed::Direction for FromDevice {
    const ITER: u32 = bindings::ITER_DEST;
    const FOLL: u32 = bindings::FOLL_WRITE;
}
impl Direction for FromDevice {}

/// A page lent to a device for `'p`, for a transfer in direction `D`: for [`FromDevice`], one
/// the device may write.
///
/// # Invariants
///
/// `page` is a valid page for `'p`. For [`FromDevice`], its memory may be written by a device
/// for `'p`: it was lent mutably (`&mut Page`, a kernel buffer borrowed mutably) or pinned with
/// `FOLL_WRITE`.
pub(crate) struct IoPage<'p, D: Direction> {
    page: BorrowedPage<'p>,
    _dir: PhantomData<fn() -> D>,
}

impl<'p, D: Direction> IoPage<'p, D> {
    /// # Safety
    ///
    /// `page` is valid for `'p`, and for [`FromDevice`] a device may write it for `'p`.
    unsafe fn from_raw(page: NonNull<bindings::page>) -> Self {
        // INVARIANT: by the function's safety requirements.
        Self {
            // SAFETY: The page is valid for `'p`, by the function's safety requirements.
            page: unsafe { BorrowedPage::from_raw(page) },
            _dir: PhantomData,
        }
    }
}

impl<'p> IoPage<'p, ToDevice> {
    /// `page`, for a device to read.
    pub(crate) fn shared(page: &'p Page) -> Self {
        // SAFETY: `page` owns a reference to a valid page (so not null), which outlives the
        // borrow; a device only reads it.
        unsafe { Self::from_raw(NonNull::new_unchecked(page.as_ptr())) }
    }
}

impl<'p> IoPage<'p, FromDevice> {
    /// `page`, for a device to write: borrowed mutably, so nothing else uses it meanwhile.
    pub(crate) fn exclusive(page: &'p mut Page) -> Self {
        // SAFETY: As for `shared`, and the page is borrowed mutably for `'p`: the device may
        // write it.
        unsafe { Self::from_raw(NonNull::new_unchecked(page.as_ptr())) }
    }
}

/// The page itself (its contents are only reached by `Page`'s unsafe methods, whose callers
/// account for a device writing it).
impl<D: Direction> core::ops::Deref for IoPage<'_, D> {
    type Target = Page;

    fn deref(&self) -> &Page {
        &self.page
    }
}

/// A page owned here and lent to devices for direction `D`: for [`FromDevice`], devices may
/// write it whenever it is borrowed ([`LentPage::io_page`]), so its contents are only read
/// with `Page`'s unsafe methods, whose callers know when no device writes it.
pub(crate) struct LentPage<D: Direction> {
    page: Page,
    _dir: PhantomData<fn() -> D>,
}

impl<D: Direction> LentPage<D> {
    /// `page`, to be lent for `D`.
    pub(crate) fn new(page: Page) -> Self {
        Self {
            page,
            _dir: PhantomData,
        }
    }

    /// The page, lent for `D` while `self` is borrowed.
    pub(crate) fn io_page(&self) -> IoPage<'_, D> {
        // SAFETY: The page is owned here, valid while `self` is borrowed; for `FromDevice`,
        // lending it to devices to write is what it is for, and nothing reads it but through
        // `Page`'s unsafe methods.
        unsafe { IoPage::from_raw(NonNull::new_unchecked(self.page.as_ptr())) }
    }
}

impl<D: Direction> core::ops::Deref for LentPage<D> {
    type Target = Page;

    fn deref(&self) -> &Page {
        &self.page
    }
}

/// Room for the page pointers of one batch. Sealed: a batch unpins what its slots return, so
/// only the slots of this module are.
pub(crate) trait PageSlots: sealed::Slots {}

/// Slots for `N` pages, meant to live on the caller's stack. `N` is at least 1 (checked when
/// the program is built).
pub(crate) struct StackSlots<const N: usize>([*mut bindings::page; N]);

impl<const N: usize> StackSlots<N> {
    /// Empty slots for `N` pages. `StackSlots::<0>::new()` does not build (the check runs
    /// where the call is compiled to code, as every function the module uses is): no
    /// extraction can fill zero slots (`want_pages_array` warns).
    pub(crate) fn new() -> Self {
        const { assert!(N > 0, "StackSlots need room for at least one page") };
        Self([ptr::null_mut(); N])
    }
}

impl<const N: usize> sealed::Slots for StackSlots<N> {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        &mut self.0
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        &self.0
    }
}
impl<const N: usize> PageSlots for StackSlots<N> {}

/// Slots allocated once, for as many pages as a large extraction wants per batch.
///
/// # Invariants
///
/// The array has at least one slot.
pub(crate) struct HeapSlots(KVVec<*mut bindings::page>);

impl HeapSlots {
    /// Slots for `pages` pages (a number the caller of an ioctl chose: no warning if there is
    /// no memory for them, only `ENOMEM`); `EINVAL` for 0.
    pub(crate) fn new(pages: usize) -> Result<Self> {
        if pages == 0 {
            return Err(EINVAL);
        }
        let gfp = GFP_KERNEL | __GFP_NOWARN;
        let mut v = KVVec::with_capacity(pages, gfp)?;
        v.resize(pages, ptr::null_mut(), gfp)?;
        // INVARIANT: `pages > 0` slots.
        Ok(Self(v))
    }
}

impl sealed::Slots for HeapSlots {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        &mut self.0
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        &self.0
    }
}
impl PageSlots for HeapSlots {}

/// Slots for up to `N` pages inline (on the stack, or in whatever holds them), allocated
/// ([`HeapSlots`]) for more.
pub(crate) enum Slots<const N: usize> {
    /// Inline slots.
    Inline(StackSlots<N>),
    /// Allocated slots.
    Heap(HeapSlots),
}

impl<const N: usize> Slots<N> {
    /// Slots for `pages` pages: inline if they fit, else allocated.
    pub(crate) fn new(pages: usize) -> Result<Self> {
        if pages <= N {
            Ok(Self::Inline(StackSlots::new()))
        } else {
            Ok(Self::Heap(HeapSlots::new(pages)?))
        }
    }
}

impl<const N: usize> sealed::Slots for Slots<N> {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        match self {
            Self::Inline(s) => s.slots(),
            Self::Heap(h) => h.slots(),
        }
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        match self {
            Self::Inline(s) => s.slots_ref(),
            Self::Heap(h) => h.slots_ref(),
        }
    }
}
impl<const N: usize> PageSlots for Slots<N> {}

impl<T: PageSlots + ?Sized> sealed::Slots for &mut T {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        (**self).slots()
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        (**self).slots_ref()
    }
}
impl<T: PageSlots + ?Sized> PageSlots for &mut T {}

// SAFETY: `HeapSlots` only stores page pointers, plain values; which thread frees the array
// does not matter.
unsafe impl Send for HeapSlots {}
// SAFETY: `&HeapSlots` only reads the pointers (`slots_ref`), plain values that may be read from
// any thread; nothing is reached through them without a batch, which has its own bounds.
unsafe impl Sync for HeapSlots {}

/// How a batch gives its pages back, and which way its pages may be used. Sealed: a batch
/// trusts it to release exactly what the extraction took.
pub(crate) trait Release: sealed::Release {
    /// The direction the pages were extracted for.
    type Dir: Direction;

    /// Releases `pages`, each holding whatever this kind of extraction took on it.
    ///
    /// # Safety
    ///
    /// Each of `pages` must hold one such reference, which this call consumes.
    unsafe fn release(&self, pages: &mut [*mut bindings::page]);
}

/// Pages pinned with FOLL_PIN for direction `D`: released by unpinning, dirtied first for
/// [`FromDevice`].
pub(crate) struct Pinned<D: Direction>(PhantomData<fn() -> D>);

impl<D: Direction> sealed::Release for Pinned<D> {}

impl<D: Direction> Release for Pinned<D> {
    type Dir = D;

    unsafe fn release(&self, pages: &mut [*mut bindings::page]) {
        let dirty = D::FOLL & bindings::FOLL_WRITE != 0;
        // SAFETY: The caller guarantees each page holds one FOLL_PIN pin, which this drops;
        // `pages` is valid for `pages.len()` entries.
        unsafe { bindings::unpin_user_pages_dirty_lock(pages.as_mut_ptr(), pages.len(), dirty) };
    }
}

/// `pin_user_pages_fast`: pins `nr_pages` pages of user memory from `start` into `pages`.
///
/// # Safety
///
/// `pages` has room for `nr_pages` pages.
unsafe fn pin_user_pages_fast(
    start: usize,
    nr_pages: i32,
    gup_flags: u32,
    pages: *mut *mut bindings::page,
) -> i32 {
    // SAFETY: By the function's safety requirements.
    unsafe { bindings::pin_user_pages_fast(start, nr_pages, gup_flags, pages) }
}

/// Pages of kernel memory that were only listed, for direction `D`: nothing to release, but the
/// pages stay valid only while the buffer they belong to is borrowed (`'a`; mutably for
/// [`FromDevice`]).
pub(crate) struct Listed<'a, D: Direction>(PhantomData<&'a [u8]>, PhantomData<fn() -> D>);

impl<D: Direction> sealed::Release for Listed<'_, D> {}

impl<D: Direction> Release for Listed<'_, D> {
    type Dir = D;

    unsafe fn release(&self, _pages: &mut [*mut bindings::page]) {}
}

/// One batch of extracted pages.
///
/// # Invariants
///
/// - The first `nr` entries of `slots` are valid pages, each holding what `R` releases (one pin
///   for [`Pinned`], nothing for [`Listed`]), and they stay valid until the batch is dropped.
/// - The batch covers `len` bytes starting `offset0` bytes into the first page, contiguously over
///   the `nr` pages; `nr` is the number of pages those bytes span.
pub(crate) struct Batch<S: PageSlots, R: Release> {
    slots: S,
    nr: usize,
    offset0: usize,
    len: usize,
    release: R,
}

/// A batch of user pages pinned for direction `D`.
pub(crate) type PinnedBatch<S, D> = Batch<S, Pinned<D>>;
/// A batch of listed kernel pages for direction `D`, valid while the kernel buffer is borrowed
/// for `'a`.
pub(crate) type ListedBatch<'a, S, D> = Batch<S, Listed<'a, D>>;

impl<S: PageSlots, R: Release> Batch<S, R> {
    /// The batch an extraction call filled in `slots`: `len` bytes from `offset0` into the
    /// first page. Zero bytes (the kernel extracted nothing) is `EFAULT`.
    ///
    /// # Safety
    ///
    /// The first slots hold the pages those bytes span, each holding what `R` releases and
    /// staying valid until then.
    unsafe fn new(slots: S, offset0: usize, len: usize, release: R) -> Result<Self> {
        if len == 0 {
            return Err(EFAULT);
        }
        let nr = offset0.checked_add(len).ok_or(EINVAL)?.div_ceil(PAGE_SIZE);
        // INVARIANT: by the caller's guarantee, the first `nr` slots hold the pages spanned.
        Ok(Self {
            slots,
            nr,
            offset0,
            len,
            release,
        })
    }

    /// Number of pages in the batch.
    pub(crate) fn nr_pages(&self) -> usize {
        self.nr
    }

    /// Number of bytes the batch covers.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The batch as `(page, offset, len)` segments, in order; the pages are borrowed from the
    /// batch, which holds them for its direction.
    pub(crate) fn segments(&self) -> impl Iterator<Item = (IoPage<'_, R::Dir>, usize, usize)> {
        self.raw_segments().filter_map(|(page, offset, len)| {
            let page = NonNull::new(page)?;
            // A batch of direction `FromDevice` was pinned with `FOLL_WRITE` or listed from a
            // buffer borrowed mutably.
            // SAFETY: The page is valid until the batch is dropped (type invariant), which
            // outlives the borrow of `self` the returned page carries; writable as above.
            let page = unsafe { IoPage::from_raw(page) };
            Some((page, offset, len))
        })
    }

    /// [`Batch::segments`] with the pages as the pointers C takes, for the bios of
    /// [`super::bio`]: valid while the batch lives (type invariant).
    pub(super) fn raw_segments(
        &self,
    ) -> impl Iterator<Item = (*mut bindings::page, usize, usize)> + '_ {
        let pages = self.slots.slots_ref().get(..self.nr).unwrap_or(&[]);
        Iterator::zip(
            pages.iter(),
            Segments::new(self.offset0, self.len, PAGE_SIZE),
        )
        .map(|(&page, seg)| (page, seg.offset, seg.len))
    }

    /// Copies the bytes at `offset` of the batch's memory into `dst`, as they are now. The
    /// memory may change under the copy (user space may write it, a device may be filling it):
    /// the copy is made in C (`memcpy_from_page`), as `copy_to_user` from a user-mapped page
    /// would be. `EINVAL` if the batch has fewer bytes.
    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(EINVAL);
        }
        let (mut skip, mut done) = (offset, 0);
        for (page, seg_off, seg_len) in self.segments() {
            if done == dst.len() {
                break;
            }
            if skip >= seg_len {
                skip -= seg_len;
                continue;
            }
            let n = (seg_len - skip).min(dst.len() - done);
            let to = dst.get_mut(done..done + n).ok_or(EINVAL)?;
            // SAFETY: `to` is valid for writes of `n` bytes; the page is valid while the batch
            // lives (type invariant), and `seg_off + skip + n` lies within it (a segment of it).
            unsafe {
                helpers::pindio_memcpy_from_page(
                    to.as_mut_ptr().cast(),
                    page.as_ptr(),
                    seg_off + skip,
                    n,
                )
            };
            skip = 0;
            done += n;
        }
        Ok(())
    }
}

impl<S: PageSlots, R: Release> Drop for Batch<S, R> {
    fn drop(&mut self) {
        let nr = self.nr;
        if let Some(pages) = self.slots.slots().get_mut(..nr) {
            // SAFETY: By the type invariant each of the first `nr` pages holds what `R` releases,
            // and the batch is being dropped, so nothing uses them afterwards.
            unsafe { self.release.release(pages) };
        }
    }
}

impl<S: PageSlots, D: Direction> Batch<S, Pinned<D>> {
    /// Unpins the pages without dirtying them (`unpin_user_pages`), as gup_test releases the
    /// pins of its benchmark: for pins no device wrote through.
    pub(crate) fn unpin_clean(mut self) {
        let nr = self.nr;
        if let Some(pages) = self.slots.slots().get_mut(..nr) {
            // SAFETY: By the type invariant each of the first `nr` pages holds one FOLL_PIN pin,
            // which this drops; the batch then holds none.
            unsafe { bindings::unpin_user_pages(pages.as_mut_ptr(), pages.len()) };
        }
        // INVARIANT: nothing left to release: the drop below unpins nothing.
        self.nr = 0;
        self.len = 0;
    }
}

// SAFETY: A pinned batch owns its pins; unpinning may happen on any thread. The slots are sent
// along with it (`S: Send`).
unsafe impl<S: PageSlots + Send, D: Direction> Send for Batch<S, Pinned<D>> {}
// SAFETY: `&Batch` reads the counts and the page pointers (`segments`, `raw_segments`) and
// copies from the pages' memory in C (`copy_out`); the pins keep the pages valid whichever
// thread does that, and the memory is only ever copied by C, which tolerates a device or user
// space writing it meanwhile.
unsafe impl<S: PageSlots + Sync, D: Direction> Sync for Batch<S, Pinned<D>> {}

/// An initialised `iov_iter`, owned.
///
/// # Invariants
///
/// `iter` was initialised by `import_ubuf`, `import_iovec`, `iov_iter_kvec` or `iov_iter_bvec`,
/// and the memory its segment array points to outlives it (the owner keeps it).
struct Iter {
    iter: bindings::iov_iter,
}

impl Iter {
    /// Bytes left to extract.
    fn count(&self) -> usize {
        // SAFETY: By the type invariant `iter` is initialised.
        unsafe { helpers::pindio_iov_iter_count(&self.iter) }
    }

    /// Extracts up to `slots.len()` pages with the kernel's `iov_iter_extract_pages`: pins user
    /// pages (FOLL_PIN, FOLL_WRITE for a destination), lists kernel pages.
    ///
    /// Returns the bytes extracted and the offset into the first page.
    /// `EINVAL` for no slots: `want_pages_array` warns when it is given none.
    fn extract(&mut self, slots: &mut [*mut bindings::page]) -> Result<(usize, usize)> {
        if slots.is_empty() {
            return Err(EINVAL);
        }
        let maxpages = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        let mut pages = slots.as_mut_ptr();
        let mut offset0 = 0usize;
        // SAFETY: `iter` is initialised (type invariant). `pages` points to `slots`, an array of
        // `maxpages` entries, so the function fills it instead of allocating one; `offset0` is a
        // valid out parameter.
        let ret = unsafe {
            bindings::iov_iter_extract_pages(
                &mut self.iter,
                &mut pages,
                usize::MAX,
                maxpages,
                0,
                &mut offset0,
            )
        };
        if ret < 0 {
            return Err(errno(ret));
        }
        Ok((ret.try_into()?, offset0))
    }

    /// [`Iter::extract`] of user memory: pins (FOLL_PIN), FOLL_WRITE for a destination.
    fn extract_user(&mut self, slots: &mut [*mut bindings::page]) -> Result<(usize, usize)> {
        self.extract(slots)
    }

    /// Moves past empty segments, as `iov_iter_extract_pages` does (`first_iovec_segment`), so
    /// that the current segment has bytes whenever any are left: an advance by 0 bytes steps over
    /// every empty segment in front of the position, and does nothing to a single range.
    fn skip_empty(&mut self) {
        if self.count() > 0 {
            // SAFETY: `iter` is initialised (type invariant); advancing by 0 bytes stays within it.
            unsafe { bindings::iov_iter_advance(&mut self.iter, 0) };
        }
    }

    /// The current segment of a user-backed iterator: its address and the bytes left in it.
    fn user_segment(&self) -> (usize, usize) {
        // SAFETY: `iter` is initialised (type invariant); callers use this only on user-backed
        // iterators, whose current segment is a user address and length.
        let addr = unsafe { helpers::pindio_iter_iov_addr(&self.iter) } as usize;
        // SAFETY: As above.
        let len = unsafe { helpers::pindio_iter_iov_len(&self.iter) };
        (addr, len.min(self.count()))
    }

    /// Like [`Iter::extract`] for a user iterator, but with `gup_flags` (`FOLL_LONGTERM`, which
    /// `iov_iter_extract_pages` does not take): pins pages of the first segment that has bytes
    /// with [`pin_user`], as `iov_iter_extract_user_pages` does, and advances past them.
    fn extract_flags(
        &mut self,
        slots: &mut [*mut bindings::page],
        gup_flags: u32,
    ) -> Result<(usize, usize)> {
        self.skip_empty();
        let (addr, seg_len) = self.user_segment();
        let (len, offset0) = pin_user(addr, seg_len, slots, gup_flags)?;
        // SAFETY: `iter` is initialised and has at least `len <= count` bytes left.
        unsafe { bindings::iov_iter_advance(&mut self.iter, len) };
        Ok((len, offset0))
    }
}

/// Pins (FOLL_PIN and `gup_flags`) the pages of up to `len` bytes of user memory at `addr` in the
/// current task's mm into `slots`, with `pin_user_pages_fast`, the call `iov_iter_extract_pages`
/// makes for user memory. Returns the bytes pinned (fewer if the kernel pinned fewer pages than
/// asked, never 0) and the offset into the first page. Every page it pins carries at least one
/// of those bytes, so the caller's batch accounts for all of them; `EINVAL` for `len == 0`, for
/// which it pins nothing (no byte would hold the page of a misaligned address).
fn pin_user(
    addr: usize,
    len: usize,
    slots: &mut [*mut bindings::page],
    gup_flags: u32,
) -> Result<(usize, usize)> {
    if len == 0 {
        return Err(EINVAL);
    }
    let offset0 = addr % PAGE_SIZE;
    let want = offset0
        .checked_add(len)
        .ok_or(EINVAL)?
        .div_ceil(PAGE_SIZE)
        .min(slots.len());
    // SAFETY: `slots` has room for `want` pages. The address is a user address its source was
    // made with (access_ok checked at import), and pin_user_pages_fast checks it again.
    let ret = unsafe {
        pin_user_pages_fast(
            addr - offset0,
            want.try_into()?,
            gup_flags,
            slots.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    if ret == 0 {
        return Err(EFAULT);
    }
    let pinned = usize::try_from(ret)?;
    Ok((len.min(pinned * PAGE_SIZE - offset0), offset0))
}

/// Pins the pages of user memory from the page-aligned address `start` in the current task's mm
/// into all of `free`, with `pin_user_pages_fast` calls of at most `per_call` pages each, until
/// every page is pinned or a call fails. Returns how many pages were pinned (the first slots of
/// `free`, one FOLL_PIN pin each, which the caller now owns) and the error that stopped it.
///
/// pin_user_pages_fast checks every address; one that does not fit is `EFAULT`.
fn pin_pages(
    start: usize,
    free: &mut [*mut bindings::page],
    gup_flags: u32,
    per_call: usize,
) -> (usize, Option<Error>) {
    let per_call = per_call.clamp(1, i32::MAX as usize);
    let mut pinned = 0usize;
    while let Some(rest) = free.get_mut(pinned..).filter(|r| !r.is_empty()) {
        let n = rest.len().min(per_call);
        let Some(addr) = pinned
            .checked_mul(PAGE_SIZE)
            .and_then(|off| start.checked_add(off))
        else {
            return (pinned, Some(EFAULT));
        };
        let Ok(nr) = i32::try_from(n) else {
            return (pinned, Some(EINVAL));
        };
        // SAFETY: `rest` has room for `n <= rest.len()` pages; pin_user_pages_fast fails on an
        // address that is not user memory of the current mm.
        let ret = unsafe { pin_user_pages_fast(addr, nr, gup_flags, rest.as_mut_ptr()) };
        match usize::try_from(ret) {
            Ok(0) => return (pinned, Some(EFAULT)),
            Ok(got) => pinned += got.min(n),
            Err(_) => return (pinned, Some(Error::from_errno(ret))),
        }
    }
    (pinned, None)
}

/// A single range of user memory, checked as `import_ubuf` checks it, to be pinned whole into
/// one batch ([`UserRange::pin`]): what a direct I/O of one buffer needs of a [`UserPages`],
/// without an `iov_iter` or a cursor, as it pins all of its memory at once.
///
/// # Invariants
///
/// `addr..addr + len` passed access_ok (it does not wrap) and `len <= MAX_RW_COUNT`. The task
/// that made it has an mm, which `current->mm` stays while it lives: it cannot leave that task
/// (neither `Send` nor `Sync`).
pub(crate) struct UserRange<D: Direction> {
    addr: usize,
    len: usize,
    _task: PhantomData<*mut ()>,
    _dir: PhantomData<fn() -> D>,
}

impl<D: Direction> UserRange<D> {
    /// The `len` bytes at `addr`; `EINVAL` above `MAX_RW_COUNT` (which `read(2)` would cap
    /// instead: pindio does an I/O whole or not at all), `EFAULT` if they are not a user range
    /// (`access_ok`) or the task has no user memory.
    pub(crate) fn new(addr: UserPtr, len: usize) -> Result<Self> {
        // SAFETY: No preconditions: the helper only looks at `current->mm` and compares the
        // range against the user limit.
        let ret = unsafe { helpers::pindio_check_ubuf(addr.as_const_ptr(), len) };
        if ret < 0 {
            return Err(errno(ret));
        }
        // INVARIANT: the helper found an mm, checked the range with access_ok and its length.
        Ok(Self {
            addr: addr.as_const_ptr() as usize,
            len,
            _task: PhantomData,
            _dir: PhantomData,
        })
    }

    /// The address of the first byte.
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// The bytes of the range.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pages the range spans.
    pub(crate) fn nr_pages(&self) -> usize {
        // The range does not wrap (type invariant), so neither does this.
        (self.addr % PAGE_SIZE)
            .saturating_add(self.len)
            .div_ceil(PAGE_SIZE)
    }

    /// Pins every page of the range into the first [`UserRange::nr_pages`] slots of `slots`,
    /// as one batch. `EINVAL` if there are fewer slots; if not every page could be pinned, the
    /// error of the call that failed (`EFAULT` for memory that is not mapped, or not writable
    /// for [`FromDevice`]), with the pages pinned before it released.
    pub(crate) fn pin<S: PageSlots>(&self, mut slots: S) -> Result<PinnedBatch<S, D>> {
        let want = self.nr_pages();
        let offset0 = if want == 0 { 0 } else { self.addr % PAGE_SIZE };
        let free = slots.slots().get_mut(..want).ok_or(EINVAL)?;
        let (pinned, err) = pin_pages(self.addr - offset0, free, D::FOLL, want);
        // INVARIANT: the kernel pinned `pinned` pages into the first slots, one FOLL_PIN pin
        // each; the bytes of the range on them, from `offset0` into the first, span all of them
        // (the range spans `want >= pinned` pages).
        let batch = Batch {
            slots,
            nr: pinned,
            offset0,
            len: self
                .len
                .min(pinned.saturating_mul(PAGE_SIZE).saturating_sub(offset0)),
            release: Pinned(PhantomData),
        };
        match err {
            // Dropping the batch releases what was pinned.
            Some(err) => Err(err),
            None => Ok(batch),
        }
    }
}

/// User memory, pinned (FOLL_PIN) as it is extracted.
///
/// # Invariants
///
/// The task that made it has an mm (a user address space), which `current->mm` stays while it
/// lives: it cannot leave that task (not `Send`). `iter` is user-backed (`ITER_UBUF` or
/// `ITER_IOVEC`). If `iov` is not empty, it is the array of iovecs, read from user memory once,
/// that the `ITER_IOVEC` `iter` points into: its heap buffer is neither grown nor freed while
/// `iter` lives. If it is empty, `iter` is an `ITER_UBUF` over the single segment `ubuf`, and
/// `cur` is the address and length of what is left of it (a single range is pinned straight
/// from `cur`; `iter` then only checked it). `gup_flags` are FOLL_WRITE for [`FromDevice`]
/// and FOLL_LONGTERM on request.
pub(crate) struct UserPages<D: Direction> {
    iter: Iter,
    iov: KVVec<bindings::iovec>,
    ubuf: (usize, usize),
    cur: Option<(usize, usize)>,
    gup_flags: u32,
    _dir: PhantomData<fn() -> D>,
}

// `UserPages` is neither `Send` nor `Sync` (it holds a raw pointer): its addresses belong to the
// mm of the task that made it, and pinning works on `current->mm`, so it stays on that task.

impl<D: Direction> UserPages<D> {
    /// A single user range of `len` bytes at `addr`.
    ///
    /// Fails with `EFAULT` if the range is not a user range (`access_ok`), and with `EINVAL`
    /// above `MAX_RW_COUNT` (which `import_ubuf` would cap as for `read(2)`).
    pub(crate) fn new(addr: UserPtr, len: usize, longterm: bool) -> Result<Self> {
        user_task()?;
        if len > helpers::MAX_RW_COUNT {
            return Err(EINVAL);
        }
        let mut iter = MaybeUninit::<bindings::iov_iter>::uninit();
        // SAFETY: `iter` is valid for writes; `addr` is only recorded, and checked by access_ok.
        let ret = unsafe {
            bindings::import_ubuf(
                D::ITER.try_into()?,
                addr.as_mut_ptr(),
                len,
                iter.as_mut_ptr(),
            )
        };
        to_result(ret)?;
        // SAFETY: import_ubuf succeeded, so it initialised `iter`.
        let iter = unsafe { iter.assume_init() };
        let iter = Iter { iter };
        let ubuf = (addr.as_const_ptr() as usize, iter.count());
        // INVARIANT: an ITER_UBUF iterator over `ubuf`, all of it left; no iovec array.
        Ok(Self {
            iter,
            iov: KVVec::new(),
            ubuf,
            cur: Some(ubuf),
            gup_flags: gup_flags::<D>(longterm),
            _dir: PhantomData,
        })
    }

    /// An array of `nr_segs` `struct iovec` at `uvec` in user memory, read once.
    ///
    /// Checked as `import_iovec` checks it for `readv(2)`, but a total above `MAX_RW_COUNT` is
    /// refused instead of cut short, since a pin or a direct I/O is done whole or not at all:
    /// `EINVAL` for no or more than `UIO_MAXIOV` segments, a length that is negative as an
    /// `ssize_t`, or a total above `MAX_RW_COUNT`; `EFAULT` if the array cannot be read or a
    /// segment is not user memory (`access_ok`). Empty segments are allowed anywhere and are
    /// skipped when pinning. One segment is an iovec like any other (`import_iovec` would make it
    /// an `ITER_UBUF` through the caller's array).
    pub(crate) fn new_iovec(uvec: UserPtr, nr_segs: u32, longterm: bool) -> Result<Self> {
        user_task()?;
        if nr_segs == 0 || nr_segs > bindings::UIO_MAXIOV {
            return Err(EINVAL);
        }
        let n = usize::try_from(nr_segs)?;
        let mut iov = KVVec::<bindings::iovec>::with_capacity(n, GFP_KERNEL | __GFP_NOWARN)?;
        let bytes = n.checked_mul(size_of::<bindings::iovec>()).ok_or(EINVAL)?;
        let spare = iov
            .spare_capacity_mut()
            .as_mut_ptr()
            .cast::<MaybeUninit<u8>>();
        // SAFETY: The vector has room for `n` iovecs, `bytes` bytes valid for writes; they are
        // seen as bytes that may be uninitialised, which the copy fills.
        let raw = unsafe { core::slice::from_raw_parts_mut(spare, bytes) };
        UserSlice::new(uvec, bytes).reader().read_raw(raw)?;
        // SAFETY: The copy initialised the first `n` iovecs (an address and a length, for which
        // every bit pattern is valid).
        unsafe { iov.inc_len(n) };
        if iov.iter().any(|v| isize::try_from(v.iov_len).is_err()) {
            return Err(EINVAL);
        }
        let mut total = 0usize;
        for v in iov.iter() {
            // SAFETY: No preconditions: access_ok compares the range with the user limit.
            if !unsafe { helpers::pindio_access_ok(v.iov_base, v.iov_len) } {
                return Err(EFAULT);
            }
            total = total
                .checked_add(v.iov_len)
                .filter(|&t| t <= helpers::MAX_RW_COUNT)
                .ok_or(EINVAL)?;
        }
        let mut iter = MaybeUninit::<bindings::iov_iter>::uninit();
        // SAFETY: `iter` is valid for writes; `iov` holds `n` iovecs of user ranges (checked
        // above) totalling `total` bytes, in a heap buffer that moves into `Self` unchanged.
        unsafe { bindings::iov_iter_init(iter.as_mut_ptr(), D::ITER, iov.as_ptr(), n, total) };
        // SAFETY: iov_iter_init initialised `iter`.
        let iter = unsafe { iter.assume_init() };
        let iter = Iter { iter };
        // INVARIANT: an ITER_IOVEC iterator into `iov`'s heap buffer, all of it left.
        Ok(Self {
            iter,
            iov,
            ubuf: (0, 0),
            cur: None,
            gup_flags: gup_flags::<D>(longterm),
            _dir: PhantomData,
        })
    }

    /// Bytes not yet extracted.
    pub(crate) fn remaining(&self) -> usize {
        match self.cur {
            Some((_, left)) => left,
            None => self.iter.count(),
        }
    }

    /// The address and length of what is left of the current segment, past any empty ones;
    /// only while bytes remain (an exhausted iovec iterator points past its array).
    fn current_segment(&mut self) -> (usize, usize) {
        match self.cur {
            Some(cur) => cur,
            None => {
                self.iter.skip_empty();
                self.iter.user_segment()
            }
        }
    }

    /// The segments `(address, length)` the source was made from, whatever was extracted since;
    /// empty ones included.
    pub(crate) fn user_segments(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let ubuf = self.iov.is_empty().then_some(self.ubuf);
        let iovs = self.iov.iter().map(|v| (v.iov_base as usize, v.iov_len));
        Iterator::chain(ubuf.into_iter(), iovs)
    }

    /// Pages the next batch can span at most: those of the current segment (0 when nothing is
    /// left).
    pub(crate) fn next_segment_pages(&mut self) -> usize {
        if self.remaining() == 0 {
            return 0;
        }
        let (addr, len) = self.current_segment();
        (addr % PAGE_SIZE).saturating_add(len).div_ceil(PAGE_SIZE)
    }

    /// An empty batch on `slots`, for [`UserPages::extend`] to fill.
    pub(crate) fn empty_batch<S: PageSlots>(&self, slots: S) -> PinnedBatch<S, D> {
        // INVARIANT: no pages, no bytes.
        Batch {
            slots,
            nr: 0,
            offset0: 0,
            len: 0,
            release: Pinned(PhantomData),
        }
    }

    /// Pins up to `max_pages` more pages, in one extraction call, into the free slots of `batch`,
    /// continuing it (as `bio_iov_iter_get_pages` fills a bio call after call).
    ///
    /// Returns the bytes added, possibly fewer than asked (partial extraction). It adds nothing
    /// (returns 0) once everything was extracted, when `batch` has no free slot, or when the
    /// next bytes would not continue the batch: a batch is one run of bytes over its pages, so
    /// a non-empty batch grows only if it ends on a page boundary and the next bytes start one.
    /// On error, `batch` keeps what it held before the call.
    pub(crate) fn extend<S: PageSlots>(
        &mut self,
        batch: &mut PinnedBatch<S, D>,
        max_pages: usize,
    ) -> Result<usize> {
        // Nothing left: an exhausted iovec iterator has no current segment to look at.
        if self.remaining() == 0 {
            return Ok(0);
        }
        let (addr, seg_len) = self.current_segment();
        if batch.nr > 0 && ((batch.offset0 + batch.len) % PAGE_SIZE != 0 || addr % PAGE_SIZE != 0) {
            return Ok(0);
        }
        let nr = batch.nr;
        let Some(free) = batch.slots.slots().get_mut(nr..) else {
            return Ok(0);
        };
        let want = free.len().min(max_pages);
        let Some(free) = free.get_mut(..want).filter(|f| !f.is_empty()) else {
            return Ok(0);
        };
        let (len, offset0) = match self.cur {
            // A single range: pinned straight from where it stands.
            Some(_) => {
                let pinned = pin_user(addr, seg_len, free, self.gup_flags)?;
                self.cur = Some((addr + pinned.0, seg_len - pinned.0));
                pinned
            }
            None if self.gup_flags & bindings::FOLL_LONGTERM != 0 => {
                self.iter.extract_flags(free, self.gup_flags)?
            }
            None => self.iter.extract_user(free)?,
        };
        if len == 0 {
            return Err(EFAULT);
        }
        // INVARIANT: the kernel pinned the pages spanned by `len` bytes from `offset0` into the
        // slots right after the batch's `nr` pages, one FOLL_PIN pin each. An empty batch takes
        // the offset; a non-empty one ends a page and the new bytes start one (checked above),
        // so `offset0` is 0 and the batch stays one run of bytes.
        if nr == 0 {
            batch.offset0 = offset0;
        }
        batch.nr = nr + (offset0 + len).div_ceil(PAGE_SIZE);
        batch.len += len;
        Ok(len)
    }

    /// Pins pages into the free slots of `batch`, at most `per_call` pages per extraction call,
    /// until the batch is full, everything was extracted, or the next bytes would not continue
    /// the batch (see [`UserPages::extend`]). A single range is pinned in a tight loop of
    /// `pin_user_pages_fast` calls, as gup_test's benchmark does; an iovec goes through
    /// [`UserPages::extend`] call after call.
    ///
    /// Returns the bytes added. An extraction that fails after some pages were added stops
    /// there: the batch keeps them (a partial extraction) and the next call reports the error.
    pub(crate) fn fill<S: PageSlots>(
        &mut self,
        batch: &mut PinnedBatch<S, D>,
        per_call: usize,
    ) -> Result<usize> {
        let Some((addr, left)) = self.cur else {
            let mut added = 0;
            loop {
                match self.extend(batch, per_call) {
                    Ok(0) => return Ok(added),
                    Ok(n) => added += n,
                    Err(e) if added == 0 => return Err(e),
                    Err(_) => return Ok(added),
                }
            }
        };
        let nr = batch.nr;
        if left == 0
            || (nr > 0 && ((batch.offset0 + batch.len) % PAGE_SIZE != 0 || addr % PAGE_SIZE != 0))
        {
            return Ok(0);
        }
        let offset0 = addr % PAGE_SIZE;
        let Some(free) = batch.slots.slots().get_mut(nr..) else {
            return Ok(0);
        };
        let want = offset0
            .saturating_add(left)
            .div_ceil(PAGE_SIZE)
            .min(free.len());
        let free = free.get_mut(..want).unwrap_or(&mut []);
        let (pinned, err) = pin_pages(addr - offset0, free, self.gup_flags, per_call);
        if pinned == 0 {
            return Err(err.unwrap_or(EFAULT));
        }
        // At least one page pinned, `offset0` into the first: more than 0 bytes, at most `left`.
        let len = left.min(pinned.saturating_mul(PAGE_SIZE).saturating_sub(offset0));
        self.cur = Some((addr.checked_add(len).ok_or(EFAULT)?, left - len));
        // INVARIANT: the kernel pinned `pinned` pages spanned by `len` bytes from `offset0` into
        // the slots right after the batch's `nr` pages, one FOLL_PIN pin each; as in `extend`,
        // a non-empty batch ends a page and the new bytes start one, so it stays one run.
        if nr == 0 {
            batch.offset0 = offset0;
        }
        // Within the slots, and within the user range.
        batch.nr = nr + pinned;
        batch.len += len;
        Ok(len)
    }

    /// Pins the next batch into `slots`: as many pages as fit and the kernel gives in one call
    /// (possibly fewer than asked: partial extraction). `None` once everything was extracted.
    pub(crate) fn next_batch<S: PageSlots>(
        &mut self,
        slots: S,
    ) -> Result<Option<PinnedBatch<S, D>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let mut batch = self.empty_batch(slots);
        if self.extend(&mut batch, usize::MAX)? == 0 {
            // No slot to extract into.
            return Err(EINVAL);
        }
        Ok(Some(batch))
    }
}

/// Kernel memory whose pages are listed, not pinned, as it is extracted, for direction `D`;
/// borrowed for `'a` (mutably for [`FromDevice`]).
///
/// # Invariants
///
/// `iter` is an `ITER_KVEC` or `ITER_BVEC` iterator in direction `D` over the heap array in
/// `segs` (owned here, so moving `self` does not move it), whose buffers are borrowed for `'a`,
/// mutably for [`FromDevice`].
pub(crate) struct KernelPages<'a, D: Direction> {
    iter: Iter,
    _segs: KernelSegs,
    _buf: PhantomData<&'a [u8]>,
    _dir: PhantomData<fn() -> D>,
}

/// The segment array a kernel iterator points into.
enum KernelSegs {
    Kvec(KVec<bindings::kvec>),
    Bvec(KVec<bindings::bio_vec>),
}

impl<'a> KernelPages<'a, ToDevice> {
    /// The buffers `bufs` (kmalloc'ed or vmalloc'ed memory) as the source of a transfer to a
    /// device, as a kvec iterator: the device only reads them, so shared borrows are enough.
    pub(crate) fn from_slices(bufs: &[&'a [u8]]) -> Result<Self> {
        Self::from_kvecs(bufs.iter().map(|b| (b.as_ptr(), b.len())))
    }
}

impl<'a> KernelPages<'a, FromDevice> {
    /// The buffers `bufs` as the destination of a transfer from a device: the device writes
    /// them, so they are borrowed mutably, as `kernel::iov::IovIterDest` borrows its buffer.
    pub(crate) fn from_slices_mut(bufs: &'a mut [&'a mut [u8]]) -> Result<Self> {
        Self::from_kvecs(bufs.iter().map(|b| (b.as_ptr(), b.len())))
    }
}

impl<'a, D: Direction> KernelPages<'a, D> {
    /// A kvec iterator in `D` over the buffers `(address, length)` of `bufs`, borrowed for `'a`
    /// by the caller (mutably for [`FromDevice`]).
    fn from_kvecs(bufs: impl ExactSizeIterator<Item = (*const u8, usize)>) -> Result<Self> {
        let mut kvecs = KVec::with_capacity(bufs.len(), GFP_KERNEL)?;
        let mut count = 0usize;
        for (addr, len) in bufs {
            let kvec = bindings::kvec {
                iov_base: addr.cast_mut().cast(),
                iov_len: len,
            };
            kvecs.push(kvec, GFP_KERNEL)?;
            count = count.checked_add(len).ok_or(EINVAL)?;
        }
        let mut iter = MaybeUninit::<bindings::iov_iter>::uninit();
        // SAFETY: `iter` is valid for writes; `kvecs` holds `kvecs.len()` entries describing
        // buffers borrowed for `'a`.
        unsafe {
            bindings::iov_iter_kvec(
                iter.as_mut_ptr(),
                D::ITER,
                kvecs.as_ptr(),
                kvecs.len(),
                count,
            )
        };
        // SAFETY: iov_iter_kvec initialised `iter`.
        let iter = unsafe { iter.assume_init() };
        // INVARIANT: `iter` points into `kvecs`' heap array, which moves in here unchanged.
        Ok(Self {
            iter: Iter { iter },
            _segs: KernelSegs::Kvec(kvecs),
            _buf: PhantomData,
            _dir: PhantomData,
        })
    }

    /// The `(page, offset, len)` pieces `pages`, lent for `D` (see [`IoPage`]), as a bvec
    /// iterator.
    pub(crate) fn from_pages(pages: &[(IoPage<'a, D>, usize, usize)]) -> Result<Self> {
        let mut bvecs = KVec::with_capacity(pages.len(), GFP_KERNEL)?;
        let mut count = 0usize;
        for (page, offset, len) in pages {
            let (offset, len) = (*offset, *len);
            if offset.checked_add(len).is_none_or(|end| end > PAGE_SIZE) {
                return Err(EINVAL);
            }
            let bvec = bindings::bio_vec {
                bv_page: page.as_ptr(),
                bv_len: len.try_into()?,
                bv_offset: offset.try_into()?,
            };
            bvecs.push(bvec, GFP_KERNEL)?;
            count = count.checked_add(len).ok_or(EINVAL)?;
        }
        let mut iter = MaybeUninit::<bindings::iov_iter>::uninit();
        // SAFETY: `iter` is valid for writes; `bvecs` holds `bvecs.len()` entries describing
        // pieces of pages lent for `'a` in direction `D`, each within its page (checked above).
        unsafe {
            bindings::iov_iter_bvec(
                iter.as_mut_ptr(),
                D::ITER,
                bvecs.as_ptr(),
                bvecs.len(),
                count,
            )
        };
        // SAFETY: iov_iter_bvec initialised `iter`.
        let iter = unsafe { iter.assume_init() };
        // INVARIANT: `iter` points into `bvecs`' heap array, which moves in here unchanged.
        Ok(Self {
            iter: Iter { iter },
            _segs: KernelSegs::Bvec(bvecs),
            _buf: PhantomData,
            _dir: PhantomData,
        })
    }

    /// Bytes not yet extracted.
    pub(crate) fn remaining(&self) -> usize {
        self.iter.count()
    }

    /// Lists the next batch of pages into `slots`. `None` once everything was extracted.
    pub(crate) fn next_batch<S: PageSlots>(
        &mut self,
        mut slots: S,
    ) -> Result<Option<ListedBatch<'a, S, D>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let (len, offset0) = self.iter.extract(slots.slots())?;
        // SAFETY: The kernel listed the pages that `len` bytes from `offset0` span into the first
        // slots; they belong to buffers borrowed for `'a` (mutably for `FromDevice`) and hold no
        // reference to release.
        unsafe { Batch::new(slots, offset0, len, Listed(PhantomData, PhantomData)) }.map(Some)
    }
}

/// The flags of a user pin for `D` besides FOLL_PIN: FOLL_WRITE when the device writes the
/// memory, FOLL_LONGTERM on request.
fn gup_flags<D: Direction>(longterm: bool) -> u32 {
    let mut flags = D::FOLL;
    if longterm {
        flags |= bindings::FOLL_LONGTERM;
    }
    flags
}

/// Checks that the current task has user memory: pins are taken in `current->mm`, and a kernel
/// thread without one has nothing to pin (`EFAULT`).
fn user_task() -> Result {
    if kernel::current!().mm().is_none() {
        return Err(EFAULT);
    }
    Ok(())
}

/// The error of a C function that returned `-errno` as a `ssize_t`.
fn errno(ret: isize) -> Error {
    i32::try_from(ret).map_or(EINVAL, Error::from_errno)
}
