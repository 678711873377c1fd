// SPDX-License-Identifier: GPL-2.0

//! Values pinned in place in one allocation: a vector that never moves its elements.

use core::pin::Pin;
use kernel::{alloc::flags::__GFP_NOWARN, prelude::*};

/// Up to a fixed number of values, each initialised in place and pinned there, in one virtually
/// contiguous allocation (`kvmalloc`): the states of the many I/Os of one request, where an
/// allocation each would cost more than the work it holds.
///
/// # Invariants
///
/// The vector's buffer is never reallocated (it is made with its capacity and never grown past
/// it, nor shrunk): an element stays where it was initialised until the vector is dropped, which
/// drops it in place before the memory is freed.
pub(crate) struct PinnedVec<T>(KVVec<T>);

impl<T> PinnedVec<T> {
    /// Room for `n` values (a number the caller of an ioctl chose: no warning if there is no
    /// memory for them, only `ENOMEM`).
    pub(crate) fn with_capacity(n: usize) -> Result<Self> {
        // INVARIANT: made with its capacity.
        Ok(Self(KVVec::with_capacity(n, GFP_KERNEL | __GFP_NOWARN)?))
    }

    /// Initialises one more value in place, after the others; `ENOSPC` when there is no room
    /// left.
    pub(crate) fn push(&mut self, init: impl PinInit<T>) -> Result {
        let slot = self.0.spare_capacity_mut().first_mut().ok_or(ENOSPC)?;
        // SAFETY: `slot` is valid for writes and, once initialised, never moves (type
        // invariant); `init` cannot fail.
        unsafe { pin_init::raw_init(slot.as_mut_ptr(), init) };
        // SAFETY: The first spare slot was initialised above.
        unsafe { self.0.inc_len(1) };
        Ok(())
    }

    /// The values, in order, pinned.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = Pin<&mut T>> {
        // SAFETY: The values never move (type invariant), and no unpinned `&mut T` is handed out.
        self.0.iter_mut().map(|v| unsafe { Pin::new_unchecked(v) })
    }
}
