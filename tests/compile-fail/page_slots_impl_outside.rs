// SPDX-License-Identifier: GPL-2.0
//! Page slots made outside the layer that hand a batch another array than the one extraction
//! filled: its drop would unpin garbage and leak the real pins. `PageSlots` is sealed.
// expect: E0277
#![deny(unsafe_code)]
use crate::abstractions::pages::{PageSlots, ToDevice, UserRange};
use kernel::{prelude::*, uaccess::UserPtr};

pub(crate) struct Evil;

impl PageSlots for Evil {}

pub(crate) fn misuse(buf: UserPtr) -> Result {
    let range = UserRange::<ToDevice>::new(buf, 4096)?;
    drop(range.pin(Evil)?);
    Ok(())
}
