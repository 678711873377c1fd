// SPDX-License-Identifier: GPL-2.0
//! A batch pinned and dropped (unpinned) inside `fill`, whose bio is submitted after `fill`
//! returned: the device would write pages no longer pinned. `StackBio<'p>` takes only pages
//! borrowed for the `'p` its caller chose, which outlives the call.
// expect: E0597
#![deny(unsafe_code)]
use crate::abstractions::{
    bio::{self, AddPage, Opf},
    block::BlockFile,
    pages::{FromDevice, StackSlots, UserRange},
};
use kernel::{prelude::*, uaccess::UserPtr};

pub(crate) fn misuse(dev: &BlockFile<'_>, buf: UserPtr) -> Result {
    bio::submit_wait_on_stack::<4, FromDevice>(dev, Opf::sync_read(), 0, |bio| {
        let range = UserRange::<FromDevice>::new(buf, 4096)?;
        let batch = range.pin(StackSlots::<4>::new())?;
        bio.add_batch(&batch)
    })
}
