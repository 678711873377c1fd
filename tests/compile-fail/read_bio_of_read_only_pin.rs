// SPDX-License-Identifier: GPL-2.0
//! A read bio (the device writes memory) over pages pinned only for reading: untouched anonymous
//! memory pinned without FOLL_WRITE is the shared zero page. A batch's direction is its type.
// expect: E0271
#![deny(unsafe_code)]
use crate::abstractions::{
    bio::{AddPage, Bio, Opf},
    block::BlockFile,
    pages::{StackSlots, ToDevice, UserRange},
};
use kernel::{prelude::*, uaccess::UserPtr};

pub(crate) fn misuse(dev: &BlockFile<'_>, buf: UserPtr) -> Result {
    let range = UserRange::<ToDevice>::new(buf, 4096)?;
    let batch = range.pin(StackSlots::<1>::new())?;
    let mut bio = Bio::alloc(dev, 1, Opf::sync_read(), 0)?;
    bio.add_batch(&batch)?;
    bio.submit_wait()
}
