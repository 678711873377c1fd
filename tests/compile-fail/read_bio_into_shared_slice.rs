// SPDX-License-Identifier: GPL-2.0
//! A read bio writing kernel memory lent through a shared borrow (`&[u8]`): the buffers of a
//! read must be lent mutably (`KernelPages::from_slices_mut`).
// expect: E0271
#![deny(unsafe_code)]
use crate::abstractions::{
    bio::{AddPage, Bio, Opf},
    block::BlockFile,
    pages::{HeapSlots, KernelPages},
};
use kernel::prelude::*;

pub(crate) fn misuse(dev: &BlockFile<'_>, buf: &[u8]) -> Result {
    let mut pages = KernelPages::from_slices(&[buf])?;
    let batch = pages.next_batch(HeapSlots::new(1)?)?.ok_or(EINVAL)?;
    let mut bio = Bio::alloc(dev, 1, Opf::sync_read(), 0)?;
    bio.add_batch(&batch)?;
    bio.submit_wait()
}
