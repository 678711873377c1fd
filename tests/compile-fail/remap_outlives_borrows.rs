// SPDX-License-Identifier: GPL-2.0
//! A bio remapped over a device and a bio set that the caller drops while the clone is in
//! flight. `remap` takes them only as parts of a disk's queue data (`QueueRef`), which lives
//! until every bio of the disk has ended, and only the disk's `submit_bio` makes one.
// expect: E0624
#![deny(unsafe_code)]
use crate::abstractions::{
    block::BlockFile,
    disk::{DiskBio, QueueRef, RemapSet},
};
use kernel::{fs::LocalFile, prelude::*, sync::aref::ARef};

pub(crate) fn misuse(bio: DiskBio, file: ARef<LocalFile>) -> Result {
    let dev = BlockFile::owned(file)?;
    let set = KBox::pin_init(RemapSet::new(), GFP_KERNEL)?;
    bio.remap(QueueRef::new(&dev), QueueRef::new(&*set), 0);
    Ok(())
}
