// SPDX-License-Identifier: GPL-2.0
//! Slots with no room, which would reach `iov_iter_extract_pages` and the `WARN_ON(!count)` of
//! its `want_pages_array`: `StackSlots::<0>` does not build (`HeapSlots::new(0)` is `EINVAL`).
// expect: E0080
#![deny(unsafe_code)]
use crate::abstractions::pages::{KernelPages, StackSlots};
use kernel::prelude::*;

pub(crate) fn misuse(buf: &[u8]) -> Result {
    let mut pages = KernelPages::from_slices(&[buf])?;
    let _ = pages.next_batch(StackSlots::<0>::new())?;
    Ok(())
}

/// Built, as code the module uses is: the check runs when the function is compiled to code.
#[used]
static BUILT: fn(&[u8]) -> Result = misuse;
