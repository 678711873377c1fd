// SPDX-License-Identifier: GPL-2.0

//! Pins held by an open file of `/dev/pindio`: `PINDIO_IOC_PIN`, `_READ_PINNED`, `_UNPIN`.
//!
//! A [`HeldPin`] owns its batches of pinned pages; dropping it (UNPIN, or closing the file, which
//! drops the whole [`Pins`] table) unpins each page exactly once.

#![deny(unsafe_code)]

use crate::abi::PinRequest;
use crate::abstractions::pages::{
    Direction, FromDevice, HeapSlots, PinnedBatch, ToDevice, UserPages,
};
use crate::segments::pages_spanned;
use crate::uapi;
use kernel::{
    page::PAGE_SIZE,
    prelude::*,
    time::{Instant, Monotonic},
    uaccess::{UserPtr, UserSliceWriter},
};

/// Pages spanned by `len` bytes at `addr`.
fn range_pages(addr: UserPtr, len: u64) -> Result<usize> {
    let start = u64::try_from(addr.as_const_ptr() as usize)?;
    let pages = pages_spanned(start, len, PAGE_SIZE as u64).ok_or(EINVAL)?;
    Ok(pages.try_into()?)
}

/// User memory pinned for `D` until dropped.
pub(crate) struct PinOf<D: Direction> {
    batches: KVec<PinnedBatch<HeapSlots, D>>,
    pages: usize,
    bytes: usize,
}

impl<D: Direction> PinOf<D> {
    /// Pins what `req` describes, taking at most `max_pages` pages: all of it, or nothing.
    fn new(req: PinRequest, addr: UserPtr, len: u64, max_pages: usize) -> Result<Self> {
        let mut src = match req.iovec {
            Some(nr_segs) => UserPages::<D>::new_iovec(addr, nr_segs, req.longterm)?,
            None => {
                // A range over the budget is refused before anything is pinned.
                if range_pages(addr, len)? > max_pages {
                    return Err(ENOSPC);
                }
                UserPages::<D>::new(addr, len.try_into()?, req.longterm)?
            }
        };
        // A pin of no bytes would hold no page, only a handle: refused, as a zero length is.
        if src.remaining() == 0 {
            return Err(EINVAL);
        }
        let mut pin = PinOf {
            batches: KVec::new(),
            pages: 0,
            bytes: 0,
        };
        while src.remaining() > 0 {
            let budget = max_pages - pin.pages;
            if budget == 0 {
                return Err(ENOSPC);
            }
            let slots = HeapSlots::new(src.next_segment_pages().clamp(1, budget))?;
            pin.batches.reserve(1, GFP_KERNEL)?;
            let Some(batch) = src.next_batch(slots)? else {
                break;
            };
            pin.pages += batch.nr_pages();
            pin.bytes += batch.len();
            pin.batches.push(batch, GFP_KERNEL)?;
        }
        Ok(pin)
    }

    /// Copies `len` bytes the pinned pages hold now, from `offset`, to `out`, through a bounce
    /// page: the memory may change under the copy.
    fn read(&self, offset: usize, len: usize, out: &mut UserSliceWriter) -> Result {
        if offset.checked_add(len).is_none_or(|end| end > self.bytes) {
            return Err(EINVAL);
        }
        let mut bounce = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
        let (mut skip, mut left) = (offset, len);
        for batch in self.batches.iter() {
            let mut at = skip;
            while left > 0 && at < batch.len() {
                let n = (batch.len() - at).min(left).min(PAGE_SIZE);
                let chunk = bounce.get_mut(..n).ok_or(EINVAL)?;
                batch.copy_out(at, chunk)?;
                out.write_slice(chunk)?;
                at += n;
                left -= n;
            }
            skip = skip.saturating_sub(batch.len());
            if left == 0 {
                return Ok(());
            }
        }
        if left == 0 {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }
}

/// User memory pinned until dropped: for the device to read it, or (`PINDIO_PIN_WRITE`) to
/// write it, when its pages are dirtied as they are unpinned.
pub(crate) enum HeldPin {
    /// Pinned without `FOLL_WRITE`.
    ToDevice(PinOf<ToDevice>),
    /// Pinned with `FOLL_WRITE`.
    FromDevice(PinOf<FromDevice>),
}

impl HeldPin {
    /// Pins what `req` describes, taking at most `max_pages` pages: all of it, or nothing.
    fn new(req: PinRequest, addr: UserPtr, len: u64, max_pages: usize) -> Result<Self> {
        Ok(if req.write {
            Self::FromDevice(PinOf::new(req, addr, len, max_pages)?)
        } else {
            Self::ToDevice(PinOf::new(req, addr, len, max_pages)?)
        })
    }

    /// Pages and bytes pinned.
    fn counts(&self) -> (usize, usize) {
        match self {
            Self::ToDevice(p) => (p.pages, p.bytes),
            Self::FromDevice(p) => (p.pages, p.bytes),
        }
    }

    /// [`PinOf::read`].
    fn read(&self, offset: usize, len: usize, out: &mut UserSliceWriter) -> Result {
        match self {
            Self::ToDevice(p) => p.read(offset, len, out),
            Self::FromDevice(p) => p.read(offset, len, out),
        }
    }
}

/// The pins of one open file, with its limits.
pub(crate) struct Pins {
    pins: KVec<(u32, HeldPin)>,
    pages: usize,
    last_handle: u32,
}

impl Pins {
    /// No pins.
    pub(crate) fn new() -> Self {
        Self {
            pins: KVec::new(),
            pages: 0,
            last_handle: 0,
        }
    }

    /// Pins `req`; returns its handle, pages and bytes.
    pub(crate) fn pin(
        &mut self,
        req: PinRequest,
        addr: UserPtr,
        len: u64,
    ) -> Result<(u32, usize, usize)> {
        if self.pins.len() >= uapi::PINDIO_MAX_PIN_HANDLES as usize {
            return Err(EMFILE);
        }
        let budget = (uapi::PINDIO_MAX_PINNED_PAGES as usize).saturating_sub(self.pages);
        let pin = HeldPin::new(req, addr, len, budget)?;
        let handle = self.free_handle();
        let (pages, bytes) = pin.counts();
        self.pins.push((handle, pin), GFP_KERNEL)?;
        self.pages += pages;
        self.last_handle = handle;
        Ok((handle, pages, bytes))
    }

    /// The next handle after the last one given out that is not in use (never 0).
    fn free_handle(&self) -> u32 {
        let mut handle = self.last_handle;
        loop {
            handle = handle.wrapping_add(1).max(1);
            if !self.pins.iter().any(|(h, _)| *h == handle) {
                return handle;
            }
        }
    }

    /// `PINDIO_IOC_READ_PINNED`.
    pub(crate) fn read(
        &mut self,
        handle: u32,
        offset: u64,
        len: u64,
        out: &mut UserSliceWriter,
    ) -> Result {
        let (_, pin) = self
            .pins
            .iter_mut()
            .find(|(h, _)| *h == handle)
            .ok_or(ENOENT)?;
        pin.read(offset.try_into()?, len.try_into()?, out)
    }

    /// `PINDIO_IOC_UNPIN`: drops the pin, which unpins its pages.
    pub(crate) fn unpin(&mut self, handle: u32) -> Result {
        let index = self
            .pins
            .iter()
            .position(|(h, _)| *h == handle)
            .ok_or(ENOENT)?;
        let (_, pin) = self.pins.remove(index)?;
        self.pages -= pin.counts().0;
        Ok(())
    }
}

/// `PINDIO_IOC_PIN_BENCH`: pins `len` bytes at `addr` in batches of `per_call` pages, holding
/// every pin, then releases them all, as gup_test's PIN_FAST_BENCHMARK does: the pins are
/// released with `unpin_user_pages`, not dirtied, as gup_test releases them.
///
/// Returns the nanoseconds taken to pin and to release. If not every page could be pinned, the
/// error the kernel gave (`EFAULT`, `ENOMEM`, `EINTR`, ...), with what was pinned released.
pub(crate) fn bench(
    req: PinRequest,
    addr: UserPtr,
    len: u64,
    per_call: usize,
) -> Result<(u64, u64)> {
    if req.write {
        bench_in::<FromDevice>(req, addr, len, per_call)
    } else {
        bench_in::<ToDevice>(req, addr, len, per_call)
    }
}

/// [`bench`] of a pin for `D`.
fn bench_in<D: Direction>(
    req: PinRequest,
    addr: UserPtr,
    len: u64,
    per_call: usize,
) -> Result<(u64, u64)> {
    // One page array for the whole range, one batch filled `per_call` pages per extraction call
    // and released in one call: the shape of gup_test's pages array and unpin_user_pages().
    let mut slots = HeapSlots::new(range_pages(addr, len)?)?;
    let mut src = UserPages::<D>::new(addr, len.try_into()?, req.longterm)?;
    let t0 = Instant::<Monotonic>::now();
    let mut batch = src.empty_batch(&mut slots);
    // A fill stops at the first call that fails and keeps what it pinned; the next one reports
    // that call's error.
    let mut filled = Ok(());
    while src.remaining() > 0 {
        match src.fill(&mut batch, per_call) {
            Ok(0) => filled = Err(EFAULT),
            Ok(_) => continue,
            Err(e) => filled = Err(e),
        }
        break;
    }
    let t1 = Instant::<Monotonic>::now();
    batch.unpin_clean();
    let t2 = Instant::<Monotonic>::now();
    filled?;
    let ns = |d: kernel::time::Delta| u64::try_from(d.as_nanos()).unwrap_or(0);
    Ok((ns(t1 - t0), ns(t2 - t1)))
}
