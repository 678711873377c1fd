// SPDX-License-Identifier: GPL-2.0
//! A bio a disk's driver was handed, ended twice, or ended and then remapped: ending it
//! consumes it, so the second use is of a moved value.
// expect: E0382
#![deny(unsafe_code)]
use crate::abstractions::{
    block::BlockFile,
    disk::{DiskBio, QueueRef, RemapSet},
};
use kernel::prelude::*;

pub(crate) fn twice(bio: DiskBio) {
    bio.end(Ok(()));
    bio.end(Err(EIO));
}

pub(crate) fn end_then_remap(
    bio: DiskBio,
    dev: QueueRef<'_, BlockFile<'_>>,
    set: QueueRef<'_, RemapSet>,
) {
    bio.end(Ok(()));
    bio.remap(dev, set, 0);
}
