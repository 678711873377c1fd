// SPDX-License-Identifier: GPL-2.0
//! A driver that keeps a bio it was handed past the call of `submit_bio` (here in its queue
//! data), to end or remap it later, maybe with another disk's data, which that disk would not
//! wait for. The bio carries the lifetime of the call, invariant, and cannot become `'static`.
// expect: E0521
#![deny(unsafe_code)]
use crate::abstractions::disk::{DiskBio, Operations, QueueRef};
use kernel::{prelude::*, sync::SpinLock};

pub(crate) struct Keeper;

impl Operations for Keeper {
    type QueueData = SpinLock<Option<DiskBio<'static>>>;

    fn submit_bio<'q>(data: QueueRef<'q, Self::QueueData>, bio: DiskBio<'q>) {
        *data.lock() = Some(bio);
    }
}
