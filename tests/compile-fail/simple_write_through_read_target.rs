// SPDX-License-Identifier: GPL-2.0
//! A direct write through a target checked only for reading, which would skip the write checks
//! (EBADF, EPERM, ETXTBSY). A target's direction is its type, and the pages' must be the same.
// expect: E0308
#![deny(unsafe_code)]
use crate::abstractions::pages::{FromDevice, ToDevice, UserRange};
use crate::dio::{self, Target};
use kernel::{fs::LocalFile, prelude::*, sync::aref::ARef, uaccess::UserPtr};

pub(crate) fn misuse(file: ARef<LocalFile>, buf: UserPtr) -> Result<usize> {
    let target = Target::<FromDevice>::from_file(file)?;
    let range = UserRange::<ToDevice>::new(buf, 4096)?;
    dio::simple(&target, false, 0, &range)
}
