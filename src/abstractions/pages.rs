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

/// Which way the data moves, seen from the memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The device reads the memory (memory-to-device, e.g. a write to a disk).
    ToDevice,
    /// The device writes the memory (device-to-memory, e.g. a read from a disk): user pages are
    /// pinned with `FOLL_WRITE` and dirtied before they are unpinned.
    FromDevice,
}

impl Dir {
    /// The `iov_iter` direction: memory is the source or the destination of the data.
    fn iter_dir(self) -> u32 {
        match self {
            Dir::ToDevice => bindings::ITER_SOURCE,
            Dir::FromDevice => bindings::ITER_DEST,
        }
    }
}

/// Room for the page pointers of one batch.
pub(crate) trait PageSlots {
    /// The slots, each of which a batch may fill with one page.
    fn slots(&mut self) -> &mut [*mut bindings::page];

    /// The slots, to read.
    fn slots_ref(&self) -> &[*mut bindings::page];
}

/// Slots for `N` pages, meant to live on the caller's stack.
pub(crate) struct StackSlots<const N: usize>([*mut bindings::page; N]);

impl<const N: usize> StackSlots<N> {
    /// Empty slots for `N` pages.
    pub(crate) fn new() -> Self {
        Self([ptr::null_mut(); N])
    }
}

impl<const N: usize> PageSlots for StackSlots<N> {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        &mut self.0
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        &self.0
    }
}

/// Slots allocated once, for as many pages as a large extraction wants per batch.
pub(crate) struct HeapSlots(KVVec<*mut bindings::page>);

impl HeapSlots {
    /// Slots for `pages` pages (a number the caller of an ioctl chose: no warning if there is
    /// no memory for them, only `ENOMEM`).
    pub(crate) fn new(pages: usize) -> Result<Self> {
        let gfp = GFP_KERNEL | __GFP_NOWARN;
        let mut v = KVVec::with_capacity(pages, gfp)?;
        v.resize(pages, ptr::null_mut(), gfp)?;
        Ok(Self(v))
    }
}

impl PageSlots for HeapSlots {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        &mut self.0
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        &self.0
    }
}

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

impl<const N: usize> PageSlots for Slots<N> {
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

impl PageSlots for [*mut bindings::page] {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        self
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        self
    }
}

impl<T: PageSlots + ?Sized> PageSlots for &mut T {
    fn slots(&mut self) -> &mut [*mut bindings::page] {
        (**self).slots()
    }

    fn slots_ref(&self) -> &[*mut bindings::page] {
        (**self).slots_ref()
    }
}

// SAFETY: `HeapSlots` only stores page pointers; which thread frees the array does not matter.
unsafe impl Send for HeapSlots {}
// SAFETY: `&HeapSlots` gives no access to the pointers.
unsafe impl Sync for HeapSlots {}

/// How a batch gives its pages back.
pub(crate) trait Release {
    /// Releases `pages`, each holding whatever this kind of extraction took on it.
    ///
    /// # Safety
    ///
    /// Each of `pages` must hold one such reference, which this call consumes.
    unsafe fn release(&self, pages: &mut [*mut bindings::page]);
}

/// Pages pinned with FOLL_PIN: released by unpinning, dirtied first if `dirty`.
pub(crate) struct Pinned {
    dirty: bool,
}

impl Release for Pinned {
    unsafe fn release(&self, pages: &mut [*mut bindings::page]) {
        // The `no_dirty` mutant (`make mutants`) forgets to dirty the pages of a read.
        let dirty = self.dirty && !cfg!(pindio_mutant = "no_dirty");
        #[cfg(pindio_mutant = "foll_get")]
        {
            for &page in pages.iter() {
                // SAFETY: The `foll_get` mutant took one reference on each page, dropped here.
                unsafe {
                    if dirty {
                        bindings::set_page_dirty_lock(page);
                    }
                    helpers::pindio_put_page(page)
                };
            }
            return;
        }
        // SAFETY: The caller guarantees each page holds one FOLL_PIN pin, which this drops;
        // `pages` is valid for `pages.len()` entries.
        #[allow(unreachable_code)]
        unsafe {
            bindings::unpin_user_pages_dirty_lock(pages.as_mut_ptr(), pages.len(), dirty)
        };
    }
}

/// `pin_user_pages_fast`: pins `nr_pages` pages of user memory from `start` into `pages`. In the
/// `foll_get` mutant (`make mutants`), `get_user_pages_fast`: references, not pins.
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
    #[cfg(pindio_mutant = "foll_get")]
    // SAFETY: As below.
    return unsafe { bindings::get_user_pages_fast(start, nr_pages, gup_flags, pages) };
    // SAFETY: By the function's safety requirements.
    #[allow(unreachable_code)]
    unsafe {
        bindings::pin_user_pages_fast(start, nr_pages, gup_flags, pages)
    }
}

/// `page`, borrowed, as the bios of [`super::bio`] take their pages: for memory the caller owns
/// as a [`Page`].
pub(crate) fn borrow_page(page: &Page) -> BorrowedPage<'_> {
    // SAFETY: `page` owns a reference to a valid (so non-null) page, which outlives the
    // returned borrow of it.
    unsafe { BorrowedPage::from_raw(NonNull::new_unchecked(page.as_ptr())) }
}

/// Pages of kernel memory that were only listed: nothing to release, but the pages stay valid
/// only while the buffer they belong to is borrowed (`'a`).
pub(crate) struct Listed<'a>(PhantomData<&'a [u8]>);

impl Release for Listed<'_> {
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

/// A batch of pinned user pages.
pub(crate) type PinnedBatch<S> = Batch<S, Pinned>;
/// A batch of listed kernel pages, valid while the kernel buffer is borrowed for `'a`.
pub(crate) type ListedBatch<'a, S> = Batch<S, Listed<'a>>;

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
    /// batch, which holds them.
    pub(crate) fn segments(&self) -> impl Iterator<Item = (BorrowedPage<'_>, usize, usize)> {
        self.raw_segments().filter_map(|(page, offset, len)| {
            let page = NonNull::new(page)?;
            // SAFETY: By the type invariant the page is valid until the batch is dropped,
            // which the borrow of `self` that the returned page carries outlives.
            let page = unsafe { BorrowedPage::from_raw(page) };
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

// SAFETY: A pinned batch owns its pins; unpinning may happen on any thread. The slots are sent
// along with it (`S: Send`).
unsafe impl<S: PageSlots + Send> Send for Batch<S, Pinned> {}
// SAFETY: `&Batch` gives access to nothing but the counts.
unsafe impl<S: PageSlots + Sync> Sync for Batch<S, Pinned> {}

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
    fn extract(&mut self, slots: &mut [*mut bindings::page]) -> Result<(usize, usize)> {
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

    /// [`Iter::extract`] of user memory. In the `foll_get` mutant (`make mutants`),
    /// `iov_iter_get_pages2`: references, not pins.
    fn extract_user(&mut self, slots: &mut [*mut bindings::page]) -> Result<(usize, usize)> {
        #[cfg(pindio_mutant = "foll_get")]
        {
            let maxpages = u32::try_from(slots.len()).unwrap_or(u32::MAX);
            let mut offset0 = 0usize;
            // SAFETY: As in `extract`: `slots` has room for `maxpages` pages.
            let ret = unsafe {
                bindings::iov_iter_get_pages2(
                    &mut self.iter,
                    slots.as_mut_ptr(),
                    usize::MAX,
                    maxpages,
                    &mut offset0,
                )
            };
            if ret < 0 {
                return Err(errno(ret));
            }
            return Ok((ret.try_into()?, offset0));
        }
        #[allow(unreachable_code)]
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
/// (neither `Send` nor `Sync`). `gup_flags` are FOLL_WRITE for [`Dir::FromDevice`], else 0.
pub(crate) struct UserRange {
    addr: usize,
    len: usize,
    gup_flags: u32,
    _task: PhantomData<*mut ()>,
}

impl UserRange {
    /// The `len` bytes at `addr`; `EINVAL` above `MAX_RW_COUNT` (which `read(2)` would cap
    /// instead: pindio does an I/O whole or not at all), `EFAULT` if they are not a user range
    /// (`access_ok`) or the task has no user memory.
    pub(crate) fn new(addr: UserPtr, len: usize, dir: Dir) -> Result<Self> {
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
            gup_flags: gup_flags(dir, false),
            _task: PhantomData,
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
    /// for [`Dir::FromDevice`]), with the pages pinned before it released.
    pub(crate) fn pin<S: PageSlots>(&self, mut slots: S) -> Result<PinnedBatch<S>> {
        let want = self.nr_pages();
        let offset0 = if want == 0 { 0 } else { self.addr % PAGE_SIZE };
        let free = slots.slots().get_mut(..want).ok_or(EINVAL)?;
        let (pinned, err) = pin_pages(self.addr - offset0, free, self.gup_flags, want);
        // INVARIANT: the kernel pinned `pinned` pages into the first slots, one FOLL_PIN pin
        // each; the bytes of the range on them, from `offset0` into the first, span all of them
        // (the range spans `want >= pinned` pages).
        // The `partial_pin_leak` mutant (`make mutants`) loses one page of a partial pin.
        let nr = if err.is_some() && cfg!(pindio_mutant = "partial_pin_leak") {
            pinned.saturating_sub(1)
        } else {
            pinned
        };
        let batch = Batch {
            slots,
            nr,
            offset0,
            len: self
                .len
                .min(pinned.saturating_mul(PAGE_SIZE).saturating_sub(offset0)),
            release: Pinned {
                dirty: self.gup_flags & bindings::FOLL_WRITE != 0,
            },
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
/// from `cur`; `iter` then only checked it). `gup_flags` are FOLL_WRITE for [`Dir::FromDevice`]
/// and FOLL_LONGTERM on request.
pub(crate) struct UserPages {
    iter: Iter,
    iov: KVVec<bindings::iovec>,
    ubuf: (usize, usize),
    cur: Option<(usize, usize)>,
    gup_flags: u32,
}

// `UserPages` is neither `Send` nor `Sync` (it holds a raw pointer): its addresses belong to the
// mm of the task that made it, and pinning works on `current->mm`, so it stays on that task.

impl UserPages {
    /// A single user range of `len` bytes at `addr`.
    ///
    /// Fails with `EFAULT` if the range is not a user range (`access_ok`), and with `EINVAL`
    /// above `MAX_RW_COUNT` (which `import_ubuf` would cap as for `read(2)`).
    pub(crate) fn new(addr: UserPtr, len: usize, dir: Dir, longterm: bool) -> Result<Self> {
        user_task()?;
        if len > helpers::MAX_RW_COUNT {
            return Err(EINVAL);
        }
        let mut iter = MaybeUninit::<bindings::iov_iter>::uninit();
        // SAFETY: `iter` is valid for writes; `addr` is only recorded, and checked by access_ok.
        let ret = unsafe {
            bindings::import_ubuf(
                dir.iter_dir().try_into()?,
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
            gup_flags: gup_flags(dir, longterm),
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
    pub(crate) fn new_iovec(uvec: UserPtr, nr_segs: u32, dir: Dir, longterm: bool) -> Result<Self> {
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
        unsafe {
            bindings::iov_iter_init(iter.as_mut_ptr(), dir.iter_dir(), iov.as_ptr(), n, total)
        };
        // SAFETY: iov_iter_init initialised `iter`.
        let iter = unsafe { iter.assume_init() };
        let iter = Iter { iter };
        // INVARIANT: an ITER_IOVEC iterator into `iov`'s heap buffer, all of it left.
        Ok(Self {
            iter,
            iov,
            ubuf: (0, 0),
            cur: None,
            gup_flags: gup_flags(dir, longterm),
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
    pub(crate) fn empty_batch<S: PageSlots>(&self, slots: S) -> PinnedBatch<S> {
        // INVARIANT: no pages, no bytes.
        Batch {
            slots,
            nr: 0,
            offset0: 0,
            len: 0,
            release: Pinned {
                dirty: self.gup_flags & bindings::FOLL_WRITE != 0,
            },
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
        batch: &mut PinnedBatch<S>,
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
        batch: &mut PinnedBatch<S>,
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
    pub(crate) fn next_batch<S: PageSlots>(&mut self, slots: S) -> Result<Option<PinnedBatch<S>>> {
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

/// Kernel memory whose pages are listed, not pinned, as it is extracted; borrowed for `'a`.
///
/// # Invariants
///
/// `iter` is an `ITER_KVEC` or `ITER_BVEC` iterator over the heap array in `segs` (owned here, so
/// moving `self` does not move it), whose buffers are borrowed for `'a`.
pub(crate) struct KernelPages<'a> {
    iter: Iter,
    _segs: KernelSegs,
    _buf: PhantomData<&'a [u8]>,
}

/// The segment array a kernel iterator points into.
enum KernelSegs {
    Kvec(KVec<bindings::kvec>),
    Bvec(KVec<bindings::bio_vec>),
}

impl<'a> KernelPages<'a> {
    /// The buffers `bufs` (kmalloc'ed or vmalloc'ed memory) as the source of a transfer to a
    /// device ([`Dir::ToDevice`]), as a kvec iterator: the device only reads them, so shared
    /// borrows are enough.
    pub(crate) fn from_slices(bufs: &[&'a [u8]]) -> Result<Self> {
        Self::from_kvecs(bufs.iter().map(|b| (b.as_ptr(), b.len())), Dir::ToDevice)
    }

    /// The buffers `bufs` as the destination of a transfer from a device
    /// ([`Dir::FromDevice`]): the device writes them, so they are borrowed mutably, as
    /// `kernel::iov::IovIterDest` borrows its buffer.
    pub(crate) fn from_slices_mut(bufs: &'a mut [&'a mut [u8]]) -> Result<Self> {
        Self::from_kvecs(bufs.iter().map(|b| (b.as_ptr(), b.len())), Dir::FromDevice)
    }

    /// A kvec iterator in `dir` over the buffers `(address, length)` of `bufs`, borrowed for
    /// `'a` by the caller (mutably for [`Dir::FromDevice`]).
    fn from_kvecs(
        bufs: impl ExactSizeIterator<Item = (*const u8, usize)>,
        dir: Dir,
    ) -> Result<Self> {
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
                dir.iter_dir(),
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
        })
    }

    /// The `(page, offset, len)` pieces `pages`, as a bvec iterator.
    pub(crate) fn from_pages(pages: &[(&'a Page, usize, usize)], dir: Dir) -> Result<Self> {
        let mut bvecs = KVec::with_capacity(pages.len(), GFP_KERNEL)?;
        let mut count = 0usize;
        for &(page, offset, len) in pages {
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
        // pieces of pages borrowed for `'a`, each within its page (checked above).
        unsafe {
            bindings::iov_iter_bvec(
                iter.as_mut_ptr(),
                dir.iter_dir(),
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
    ) -> Result<Option<ListedBatch<'a, S>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let (len, offset0) = self.iter.extract(slots.slots())?;
        // SAFETY: The kernel listed the pages that `len` bytes from `offset0` span into the first
        // slots; they belong to buffers borrowed for `'a` and hold no reference to release.
        unsafe { Batch::new(slots, offset0, len, Listed(PhantomData)) }.map(Some)
    }
}

/// The flags of a user pin besides FOLL_PIN: FOLL_WRITE when the device writes the memory,
/// FOLL_LONGTERM on request.
fn gup_flags(dir: Dir, longterm: bool) -> u32 {
    let mut flags = 0;
    if dir == Dir::FromDevice {
        flags |= bindings::FOLL_WRITE;
    }
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
