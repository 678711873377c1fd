// SPDX-License-Identifier: GPL-2.0

//! Files looked up by descriptor for the length of one system call, as `fdget` looks them up.
//!
//! C: `include/linux/file.h`.

use crate::ffi::helpers;
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{bindings, fs::LocalFile, prelude::*};

/// The file open at a descriptor, found with `fdget`: while the calling task's descriptor table
/// is not shared, no reference is taken, as nothing else can close the descriptor before the
/// system call returns. Only [`with_fd`] makes one, and only lends it to a closure.
///
/// # Invariants
///
/// `fd` came from `fdget` in the current task, during the current system call, and `file` is its
/// (non-null) file, valid until `fd` is put, which happens once, on drop. It does not leave the
/// task (neither `Send` nor `Sync`).
pub(crate) struct FdFile {
    fd: bindings::fd,
    file: NonNull<bindings::file>,
    _not_send: PhantomData<*mut ()>,
}

impl FdFile {
    /// The file, as the kernel crate's `LocalFile` (no reference of its own).
    pub(crate) fn file(&self) -> &LocalFile {
        // SAFETY: `file` is valid while `self` lives (type invariant), which the returned
        // borrow cannot outlive; `LocalFile` is not `Send`, as the `fdget` rules require.
        unsafe { LocalFile::from_raw_file(self.file.as_ptr()) }
    }
}

impl Drop for FdFile {
    fn drop(&mut self) {
        // SAFETY: From `fdget`, put once (type invariant).
        unsafe { helpers::pindio_fdput(self.fd) };
    }
}

/// Runs `f` with the file open at `fd`, looked up with `fdget` and put with `fdput` when `f`
/// returns; `EBADF` if `fd` is not open.
///
/// The rules of `fdget` are kept by construction: the file is only lent to `f` (the borrow
/// checker keeps it from escaping), and `f` runs inside the caller's system call, in which
/// pindio neither closes descriptors nor clones the task.
pub(crate) fn with_fd<R>(fd: i32, f: impl FnOnce(&FdFile) -> Result<R>) -> Result<R> {
    let fd = u32::try_from(fd).map_err(|_| EBADF)?;
    let mut raw = bindings::fd::default();
    // SAFETY: `raw` is valid for writes; it is put by `FdFile::drop` before this returns.
    let file = unsafe { helpers::pindio_fdget(fd, &mut raw) };
    let file = NonNull::new(file).ok_or(EBADF)?;
    // INVARIANT: from `fdget` in this task, with its file; dropped before this returns.
    let fd = FdFile {
        fd: raw,
        file,
        _not_send: PhantomData,
    };
    f(&fd)
}
