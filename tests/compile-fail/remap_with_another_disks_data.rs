// SPDX-License-Identifier: GPL-2.0
//! A bio of one disk remapped over the device and bio set of another: the clone would be counted
//! by neither, and the other disk could free its bio set and backing device under it. `remap`
//! wants the data of the bio's own call (`'q`, invariant in the bio), and a bio of a call cannot
//! be kept into a later one.
// expect: E0521
#![deny(unsafe_code)]
use crate::abstractions::{
    block::BlockFile,
    disk::{DiskBio, QueueRef, RemapSet},
};
use kernel::{prelude::*, sync::SpinLock};

/// Bios of disk B, kept for disk A's calls.
pub(crate) struct Shared {
    kept: SpinLock<Option<DiskBio<'static>>>,
}

/// In disk B's call: keep the bio.
pub(crate) fn b_keeps<'q>(shared: &'static Shared, bio: DiskBio<'q>) {
    *shared.kept.lock() = Some(bio);
}

/// In disk A's call: remap B's bio over A's data.
pub(crate) fn a_remaps<'q>(
    shared: &'static Shared,
    dev: QueueRef<'q, BlockFile<'static>>,
    set: QueueRef<'q, RemapSet>,
) {
    if let Some(bio) = shared.kept.lock().take() {
        bio.remap(dev, set, 0);
    }
}
