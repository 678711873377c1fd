// SPDX-License-Identifier: GPL-2.0

//! Direct I/O: bios built straight from pinned user pages, submitted through the block layer.
//!
//! There are two paths, as `block/fops.c` has:
//!
//! - [`simple`]: a single buffer of at most `BIO_MAX_VECS` pages, waited for, as
//!   `__blkdev_direct_IO_simple` does it: checked, pinned, sent as one bio on the stack with
//!   `submit_bio_wait`, released. Up to [`INLINE_VECS`] pages, its page slots and bio vectors
//!   are on the stack too, and nothing is allocated.
//! - the general one, a typestate: [`Prepared::new`] checks the I/O (before anything is pinned),
//!   keeps the page cache coherent and pins all the memory; [`Prepared::submit`] moves what the
//!   I/O owns into an [`InFlight`] and cuts the pages into bios ([`BioPlanner`]) that complete
//!   into it; [`Submitted::finish`] waits for every bio, releases the pins (dirtying the pages of
//!   a read first) and invalidates the page cache after a write. Each step consumes the one
//!   before, so no step can be repeated or skipped. Many I/Os can be in flight at once
//!   (`PINDIO_IOC_DIO_BATCH`).
//!
//! [`run`] picks the path for `PINDIO_IOC_DIO`.
//!
//! The bios only borrow the pages: the batches own the pins, and the [`InFlight`] that owns the
//! batches waits for every bio before it lets them go, whatever happens to it.

#![deny(unsafe_code)]

use crate::abi::DioRequest;
use crate::abstractions::{
    bio::{self, AddPage, Bio, InFlight, Opf, Submitter, BIO_MAX_VECS, SECTOR_SHIFT},
    block::{self, BlockFile},
    file::FdFile,
    pages::{Direction, FromDevice, PinnedBatch, Slots, ToDevice, UserPages, UserRange},
};
use crate::plan::{BioPlanner, DevLimits};
use core::marker::PhantomData;
use kernel::{
    fs::LocalFile,
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::aref::ARef,
    uaccess::UserPtr,
};

/// Pages of the simple path that need no allocation: 64 KiB at any page offset spans 17 pages.
pub(crate) const INLINE_VECS: usize = 17;

/// The direction of a direct I/O, as the type of its memory's pages ([`Direction`]): a write
/// ([`ToDevice`]) or a read ([`FromDevice`]). Its target, its pages and its bios all carry it, so
/// none can be of the other.
pub(crate) trait DioDir: Direction {
    /// Whether it is a write.
    const WRITE: bool;

    /// The operation and flags of its bios; `fua` only counts for a write.
    fn opf(fua: bool) -> Opf<Self>;

    /// The I/O as the direction-erased state of the general path.
    fn wrap(io: Io<Self>) -> DioData;

    /// The target of the request before, if it was of this direction: its fd and target.
    fn last(last: &LastTarget) -> Option<(i32, &Target<'static, Self>)>;

    /// `target`, open at `fd`, as the target of the request before the next.
    fn to_last(fd: i32, target: Target<'static, Self>) -> LastTarget;
}

impl DioDir for ToDevice {
    const WRITE: bool = true;

    fn opf(fua: bool) -> Opf<Self> {
        Opf::sync_write(fua)
    }

    fn wrap(io: Io<Self>) -> DioData {
        DioData::Write(io)
    }

    fn last(last: &LastTarget) -> Option<(i32, &Target<'static, Self>)> {
        match last {
            LastTarget::Write(fd, t) => Some((*fd, t)),
            LastTarget::Read(..) => None,
        }
    }

    fn to_last(fd: i32, target: Target<'static, Self>) -> LastTarget {
        LastTarget::Write(fd, target)
    }
}

impl DioDir for FromDevice {
    const WRITE: bool = false;

    fn opf(_fua: bool) -> Opf<Self> {
        Opf::sync_read()
    }

    fn wrap(io: Io<Self>) -> DioData {
        DioData::Read(io)
    }

    fn last(last: &LastTarget) -> Option<(i32, &Target<'static, Self>)> {
        match last {
            LastTarget::Read(fd, t) => Some((*fd, t)),
            LastTarget::Write(..) => None,
        }
    }

    fn to_last(fd: i32, target: Target<'static, Self>) -> LastTarget {
        LastTarget::Read(fd, target)
    }
}

/// A block device the caller opened itself, checked as the target of a direct I/O in direction
/// `D`, for as long as `'f`.
pub(crate) struct Target<'f, D: DioDir> {
    dev: BlockFile<'f>,
    _dir: PhantomData<fn() -> D>,
}

impl<D: DioDir> Clone for Target<'_, D> {
    fn clone(&self) -> Self {
        Self {
            dev: self.dev.clone(),
            _dir: PhantomData,
        }
    }
}

impl<D: DioDir> Target<'static, D> {
    /// The block device open at `fd`, holding a reference to its file (`fget`), checked as
    /// [`Target::new`] checks it.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        Self::from_file(LocalFile::fget(fd).map_err(|_| EBADF)?)
    }

    /// The block device `file` is open on, checked as [`Target::new`] checks it.
    pub(crate) fn from_file(file: ARef<LocalFile>) -> Result<Self> {
        Self::new(BlockFile::owned(file)?)
    }
}

impl<'f, D: DioDir> Target<'f, D> {
    /// `dev`, checked for a transfer in direction `D`, as `blkdev_read_iter` and
    /// `blkdev_write_iter` check it: `EBADF` if its file is not open for reading (for a read)
    /// or writing (for a write); `EPERM` for a write to a read-only device; `ETXTBSY` for a
    /// write to an active swap device.
    pub(crate) fn new(dev: BlockFile<'f>) -> Result<Self> {
        let info = *dev.info();
        let write = D::WRITE;
        if !(if write { info.writable } else { info.readable }) {
            return Err(EBADF);
        }
        if write && info.read_only {
            return Err(EPERM);
        }
        // As blkdev_write_iter: swap owns an active swap device's blocks.
        if write && info.swap {
            return Err(ETXTBSY);
        }
        Ok(Self {
            dev,
            _dir: PhantomData,
        })
    }

    /// What the device asks of a direct I/O.
    fn limits(&self) -> DevLimits {
        let info = self.dev.info();
        DevLimits {
            lbs: info.logical_block_size.into(),
            dma_mask: info.dma_alignment.into(),
            dev_bytes: info.nr_bytes,
        }
    }

    /// The same target, holding a reference to its file, for an I/O whose bios outlive `'f`.
    fn to_owned(&self) -> Target<'static, D> {
        Target {
            dev: self.dev.to_owned(),
            _dir: PhantomData,
        }
    }
}

/// The target of the request before, in a `PINDIO_IOC_DIO_BATCH`, with its fd and direction.
pub(crate) enum LastTarget {
    /// A read's.
    Read(i32, Target<'static, FromDevice>),
    /// A write's.
    Write(i32, Target<'static, ToDevice>),
}

/// The target of the request before, in a `PINDIO_IOC_DIO_BATCH`: a request on the same fd in
/// the same direction uses it again instead of looking the fd up.
#[derive(Default)]
pub(crate) struct TargetCache(Option<LastTarget>);

impl TargetCache {
    /// The target of direction `D` open at `fd`, as [`Target::from_fd`] makes it, or the one of
    /// the request before if it had the same fd and direction.
    fn get<D: DioDir>(&mut self, fd: i32) -> Result<Target<'static, D>> {
        if let Some((last_fd, t)) = self.0.as_ref().and_then(D::last) {
            if last_fd == fd {
                return Ok(t.clone());
            }
        }
        let t = Target::<D>::from_fd(fd)?;
        self.0 = Some(D::to_last(fd, t.clone()));
        Ok(t)
    }
}

/// The range of `len` bytes at `pos` as its first and last byte, for the page-cache calls.
fn byte_range(pos: u64, len: usize) -> Result<(i64, i64)> {
    let start = i64::try_from(pos)?;
    let end = start
        .checked_add(i64::try_from(len)?)
        .and_then(|e| e.checked_sub(1))
        .ok_or(EINVAL)?;
    Ok((start, end))
}

/// The page-cache indices of the first and last page of the bytes `start..=end`.
fn page_range((start, end): (i64, i64)) -> Result<(usize, usize)> {
    Ok((
        usize::try_from(start)? >> PAGE_SHIFT,
        usize::try_from(end)? >> PAGE_SHIFT,
    ))
}

/// The checks of a direct I/O of `bytes` bytes of memory, `aligned` to the device's rules or not,
/// at device offset `pos` of `target` (`EINVAL`: see [`DevLimits`]); then, as the kernel's
/// block-device direct I/O does, the dirty cached pages of the range are written back and,
/// before a write, dropped, so buffered readers see the new data. All before anything is
/// pinned; `EBUSY` if a cached page could not be dropped.
fn checked_coherent<D: DioDir>(
    target: &Target<'_, D>,
    pos: u64,
    aligned: bool,
    bytes: usize,
) -> Result {
    if !aligned || !target.limits().check_range(pos, u64::try_from(bytes)?) {
        return Err(EINVAL);
    }
    let range = byte_range(pos, bytes)?;
    target.dev.write_and_wait_range(range.0, range.1)?;
    if D::WRITE {
        let (first, last) = page_range(range)?;
        target.dev.invalidate_pages(first, last)?;
    }
    Ok(())
}

/// [`checked_coherent`] for the single buffer `range`, whose one segment is checked for the
/// device's alignment.
fn range_checked_coherent<D: DioDir>(
    target: &Target<'_, D>,
    pos: u64,
    range: &UserRange<D>,
) -> Result {
    let aligned = target
        .limits()
        .check_segment(u64::try_from(range.addr())?, u64::try_from(range.len())?);
    checked_coherent(target, pos, aligned, range.len())
}

/// After a direct write: drop cached pages a buffered reader brought in meanwhile, as
/// `kiocb_invalidate_post_direct_write` does (not exported). If that fails, the cache may hold
/// stale data: as `dio_warn_stale_pagecache`, the error is recorded in the mapping, so the next
/// `fsync` of the device reports `EIO`, and a warning is printed once, so that a caller cannot
/// flood the log with it.
fn coherent_after_write(dev: &BlockFile<'_>, pos: u64, len: usize) {
    // The range was checked before the I/O: it cannot fail here.
    let Ok((first, last)) = byte_range(pos, len).and_then(page_range) else {
        return;
    };
    if dev.invalidate_pages(first, last).is_err() {
        dev.set_wb_err(EIO);
        kernel::pr_crit_once!(
            "page cache invalidation failure on direct I/O: stale data possible\n"
        );
    }
}

/// A direct I/O in direction `D` of the single buffer `range` at device offset `pos` of
/// `target`, waited for, as `__blkdev_direct_IO_simple` does it, for a buffer of at most
/// `BIO_MAX_VECS` pages (`EINVAL` for a larger one): checked as [`Prepared::new`] checks it,
/// pinned whole, sent as one bio on the stack with `submit_bio_wait` (`REQ_FUA` on a write if
/// `fua`), and released (the pages of a read dirtied first). Up to [`INLINE_VECS`] pages the
/// page slots and the bio's vectors are on the stack; beyond, both are allocated for the call.
/// Returns the bytes transferred.
pub(crate) fn simple<D: DioDir>(
    target: &Target<'_, D>,
    fua: bool,
    pos: u64,
    range: &UserRange<D>,
) -> Result<usize> {
    let pages = range.nr_pages();
    if pages > BIO_MAX_VECS {
        return Err(EINVAL);
    }
    range_checked_coherent(target, pos, range)?;
    let (dev, opf, sector) = (&target.dev, D::opf(fua), pos >> SECTOR_SHIFT);
    let mut slots = Slots::<INLINE_VECS>::new(pages)?;
    let batch = range.pin(&mut slots)?;
    let done = if pages <= INLINE_VECS {
        bio::submit_wait_on_stack::<INLINE_VECS, D>(dev, opf, sector, |bio| bio.add_batch(&batch))
    } else {
        bio::submit_wait_alloc(dev, pages, opf, sector, |bio| bio.add_batch(&batch))
    };
    // The bio is gone: the pins can go, the pages of a read dirtied first.
    drop(batch);
    if D::WRITE {
        coherent_after_write(dev, pos, range.len());
    }
    done.map(|()| range.len())
}

/// `PINDIO_IOC_DIO`: the direct I/O `req` between `len` bytes (or `len` iovec segments) at
/// `buf` and device offset `pos` of the block device open at `file`, waited for; the bytes
/// transferred. A single buffer of at most `BIO_MAX_VECS` pages goes the [`simple`] way, any
/// other I/O the general one, which holds a reference to the file while its bios are in flight.
pub(crate) fn run(
    file: &FdFile,
    req: DioRequest,
    pos: u64,
    buf: UserPtr,
    len: u64,
) -> Result<usize> {
    if req.write {
        run_in::<ToDevice>(file, req, pos, buf, len)
    } else {
        run_in::<FromDevice>(file, req, pos, buf, len)
    }
}

/// [`run`] in direction `D` (`req.write` says which).
fn run_in<D: DioDir>(
    file: &FdFile,
    req: DioRequest,
    pos: u64,
    buf: UserPtr,
    len: u64,
) -> Result<usize> {
    let target = Target::<D>::new(BlockFile::borrowed(file.file())?)?;
    let io = match req.iovec {
        None => {
            let range = UserRange::<D>::new(buf, len.try_into()?)?;
            if range.nr_pages() <= BIO_MAX_VECS {
                return simple(&target, req.fua, pos, &range);
            }
            Prepared::from_range(target.to_owned(), req.fua, pos, range)?
        }
        Some(_) => Prepared::new(target.to_owned(), req, pos, buf, len)?,
    };
    io.submit()?.finish()
}

/// Pages whose slots the general path keeps inline, in the I/O state: as many as a bio keeps
/// vectors inline (`BIO_INLINE_VECS`). A larger state would cost more in moves than the
/// allocation it saves.
const DIO_INLINE_PAGES: usize = 4;

/// The page slots of the general path: a batch of a few pages keeps them inline, in the I/O
/// state, and allocates nothing.
type DioSlots = Slots<DIO_INLINE_PAGES>;

/// The memory of a direct I/O, pinned for `D`: one batch for a single buffer, more for an iovec
/// whose segments do not join on page boundaries (`more` is allocated only then).
struct PinnedMem<D: DioDir> {
    first: Option<PinnedBatch<DioSlots, D>>,
    more: KVec<PinnedBatch<DioSlots, D>>,
    /// Pages pinned in all the batches.
    pages: usize,
}

impl<D: DioDir> PinnedMem<D> {
    /// Pins all of `src` into batches. On error what was pinned is released.
    fn pin_all(src: &mut UserPages<D>) -> Result<Self> {
        let mut mem = Self {
            first: None,
            more: KVec::new(),
            pages: 0,
        };
        while src.remaining() > 0 {
            // A batch takes the pages of the current segment, and of the next ones while they
            // join on page boundaries and slots remain.
            let slots = DioSlots::new(src.next_segment_pages().max(1))?;
            let mut batch = src.empty_batch(slots);
            src.fill(&mut batch, usize::MAX)?;
            if batch.len() == 0 {
                return Err(EFAULT);
            }
            mem.pages = mem.pages.checked_add(batch.nr_pages()).ok_or(EINVAL)?;
            if mem.first.is_none() {
                mem.first = Some(batch);
            } else {
                mem.more.push(batch, GFP_KERNEL)?;
            }
        }
        Ok(mem)
    }

    /// The batches, in order.
    fn batches(&self) -> impl Iterator<Item = &PinnedBatch<DioSlots, D>> {
        Iterator::chain(self.first.iter(), self.more.iter())
    }

    /// Releases every batch (unpinning the pages, dirtied first after a read).
    fn release(&mut self) {
        self.first = None;
        self.more.clear();
        self.pages = 0;
    }
}

/// A direct I/O of the general path in direction `D`: the device (a reference to its file) and
/// the pinned memory its bios use while they are in flight.
pub(crate) struct Io<D: DioDir> {
    target: Target<'static, D>,
    fua: bool,
    pos: u64,
    len: usize,
    mem: PinnedMem<D>,
}

impl<D: DioDir> Io<D> {
    /// Cuts the pinned pages into bios and submits them. On error the bios submitted so far stay
    /// in flight.
    fn submit_bios<'s>(&'s self, sub: &mut Submitter<'s>) -> Result {
        let opf = D::opf(self.fua);
        let mut sector = self.pos >> SECTOR_SHIFT;
        let lbs = self.target.limits().lbs.try_into()?;
        let mut planner = BioPlanner::new(lbs, PAGE_SIZE).ok_or(EINVAL)?;
        let mut bio: Option<Bio<'s, D>> = None;
        let mut pieces_left = self.mem.pages;
        for batch in self.mem.batches() {
            for (page, mut off, mut len) in batch.segments() {
                pieces_left = pieces_left.saturating_sub(1);
                while len > 0 {
                    let open = match bio.as_mut() {
                        Some(open) => open,
                        None => {
                            let vecs = pieces_left.saturating_add(1).min(BIO_MAX_VECS);
                            planner.open(vecs);
                            bio.insert(Bio::alloc(&self.target.dev, vecs, opf, sector)?)
                        }
                    };
                    let (take, full) = planner.place(len).ok_or(EINVAL)?;
                    if take > 0 {
                        open.add_page(&page, take, off)?;
                    }
                    off += take;
                    len -= take;
                    if full {
                        sector += u64::try_from(planner.bytes())? >> SECTOR_SHIFT;
                        if let Some(full) = bio.take() {
                            sub.submit(full);
                        }
                    }
                }
            }
        }
        if let Some(last) = bio.take() {
            sub.submit(last);
        }
        Ok(())
    }

    /// Once every bio completed: releases the pins (dirtying the pages of a read) and, after a
    /// write, drops the cached pages a buffered reader brought in meanwhile. Does nothing the
    /// second time.
    fn release(&mut self) {
        if self.mem.pages != 0 {
            self.mem.release();
            if D::WRITE {
                coherent_after_write(&self.target.dev, self.pos, self.len);
            }
        }
    }
}

/// What a direct I/O of the general path owns while its bios are in flight, whichever its
/// direction (`PINDIO_IOC_DIO_BATCH` keeps I/Os of both in one array).
pub(crate) enum DioData {
    /// A read.
    Read(Io<FromDevice>),
    /// A write.
    Write(Io<ToDevice>),
}

impl DioData {
    /// [`Io::submit_bios`] of the I/O.
    fn submit_bios<'s>(&'s self, sub: &mut Submitter<'s>) -> Result {
        match self {
            Self::Read(io) => io.submit_bios(sub),
            Self::Write(io) => io.submit_bios(sub),
        }
    }

    /// [`Io::release`] of the I/O; its bytes.
    fn release(&mut self) -> usize {
        match self {
            Self::Read(io) => {
                io.release();
                io.len
            }
            Self::Write(io) => {
                io.release();
                io.len
            }
        }
    }
}

/// A direct I/O of the general path, checked and pinned, not yet submitted. Dropped, it releases
/// its pins.
pub(crate) struct Prepared(DioData);

impl Prepared {
    /// Checks the I/O `req` between device offset `pos` of `target` and the memory at `buf`
    /// (`len` bytes, or `len` iovec segments), keeps the page cache coherent for it, and pins
    /// the memory for `D`. `EINVAL` if `req` is not of the target's direction. Nothing is pinned
    /// unless every check passed.
    pub(crate) fn new<D: DioDir>(
        target: Target<'static, D>,
        req: DioRequest,
        pos: u64,
        buf: UserPtr,
        len: u64,
    ) -> Result<Self> {
        if req.write != D::WRITE {
            return Err(EINVAL);
        }
        let Some(nr_segs) = req.iovec else {
            let range = UserRange::<D>::new(buf, len.try_into()?)?;
            return Self::from_range(target, req.fua, pos, range);
        };
        let mut src = UserPages::<D>::new_iovec(buf, nr_segs, false)?;
        let bytes = src.remaining();
        let limits = target.limits();
        // Empty segments carry no data: skipped, wherever they point.
        let aligned = src.user_segments().all(|(addr, len)| {
            len == 0
                || matches!(
                    (u64::try_from(addr), u64::try_from(len)),
                    (Ok(a), Ok(l)) if limits.check_segment(a, l)
                )
        });
        checked_coherent(&target, pos, aligned, bytes)?;
        let mem = PinnedMem::pin_all(&mut src)?;
        Ok(Self(D::wrap(Io {
            target,
            fua: req.fua,
            pos,
            len: bytes,
            mem,
        })))
    }

    /// [`Prepared::new`] of a single buffer the caller already made into `range`: pinned whole
    /// into one batch; `REQ_FUA` on a write if `fua`.
    pub(crate) fn from_range<D: DioDir>(
        target: Target<'static, D>,
        fua: bool,
        pos: u64,
        range: UserRange<D>,
    ) -> Result<Self> {
        range_checked_coherent(&target, pos, &range)?;
        let batch = range.pin(DioSlots::new(range.nr_pages())?)?;
        let mem = PinnedMem {
            pages: batch.nr_pages(),
            first: Some(batch),
            more: KVec::new(),
        };
        Ok(Self(D::wrap(Io {
            target,
            fua,
            pos,
            len: range.len(),
            mem,
        })))
    }

    /// [`Prepared::new`] of the request `req` of a `PINDIO_IOC_DIO_BATCH` on the block device
    /// open at `fd`, whose target comes from `cache` if the last request of its direction used
    /// the same fd.
    pub(crate) fn in_batch(
        cache: &mut TargetCache,
        fd: i32,
        req: DioRequest,
        pos: u64,
        buf: UserPtr,
        len: u64,
    ) -> Result<Self> {
        if req.write {
            Self::new(cache.get::<ToDevice>(fd)?, req, pos, buf, len)
        } else {
            Self::new(cache.get::<FromDevice>(fd)?, req, pos, buf, len)
        }
    }

    /// Submits the bios of the I/O, under a plug so that they reach the driver together. An
    /// error after the first bio is the result of [`Submitted::finish`]; before that
    /// (no memory for the state of the I/O), it is returned here and the pins are released.
    pub(crate) fn submit(self) -> Result<Submitted> {
        block::plugged(|| KBox::pin_init(self.submit_in_place(), GFP_KERNEL)).map(Submitted)
    }

    /// The state of the I/O in flight, to be pinned where the caller keeps it
    /// (`PINDIO_IOC_DIO_BATCH` keeps all of its I/Os in one allocation): initialising it submits
    /// the bios. [`finish`] ends it.
    pub(crate) fn submit_in_place(self) -> impl PinInit<DioInFlight> {
        InFlight::new(self.0, |data, sub| data.submit_bios(sub))
    }
}

/// A direct I/O of the general path in flight, where its caller keeps it.
pub(crate) type DioInFlight = InFlight<DioData>;

/// Waits for every bio of `io`, releases the pinned pages (dirtying those of a read), and
/// invalidates the page cache over a written range. Returns the bytes done, or the first error:
/// of a bio, or else of the submission. Once done, there is nothing left to release: a second
/// call only reports the same result again.
pub(crate) fn finish(io: Pin<&mut DioInFlight>) -> Result<usize> {
    let (ret, data) = io.wait();
    // Every bio completed: the pins can go, the pages of a read dirtied first.
    let len = data.release();
    ret.map(|()| len)
}

/// A direct I/O whose bios are in flight. Dropped without [`Submitted::finish`], it still waits
/// for them before it releases the pins.
pub(crate) struct Submitted(Pin<KBox<DioInFlight>>);

impl Submitted {
    /// Waits for every bio, releases the pinned pages (dirtying those of a read), and invalidates
    /// the page cache over a written range. Returns the bytes done, or the first error: of a bio,
    /// or else of the submission.
    pub(crate) fn finish(mut self) -> Result<usize> {
        finish(self.0.as_mut())
    }
}
