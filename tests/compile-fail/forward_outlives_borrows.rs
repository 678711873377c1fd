// SPDX-License-Identifier: GPL-2.0
//! Bios forwarded over a device and a bio set that the caller drops while the bios are in
//! flight. `forward` takes them only as parts of a disk's queue data (`QueueRef`), which lives
//! until every request has ended, and only blk-mq makes one.
// expect: E0624
#![deny(unsafe_code)]
use crate::abstractions::{
    bio::{self, BioSet},
    blk_mq::{QueueRef, Request},
    block::BlockFile,
};
use kernel::{fs::LocalFile, prelude::*, sync::aref::ARef};

pub(crate) fn misuse(rq: Request, file: ARef<LocalFile>) -> Result {
    let dev = BlockFile::owned(file)?;
    let set = KBox::pin_init(BioSet::new(), GFP_KERNEL)?;
    bio::forward(rq, QueueRef::new(&dev), QueueRef::new(&*set), 0);
    Ok(())
}
