// SPDX-License-Identifier: GPL-2.0

//! User memory for KUnit cases: anonymous mappings in the test's own mm (`kunit_vm_mmap`).

use crate::ffi::helpers::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use kernel::{
    bindings,
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// Maps `len` bytes of anonymous, private, read-write user memory for the running KUnit case.
///
/// KUnit unmaps it, and drops the mm it attached, when the case ends.
pub(crate) fn map(len: usize) -> Result<UserPtr> {
    // SAFETY: No preconditions; returns the running test or null outside of one.
    let test = unsafe { bindings::kunit_get_current_test() };
    if test.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: `test` is the running test, valid for its whole duration. A null `file` with
    // `MAP_ANONYMOUS` asks for anonymous memory.
    let addr = unsafe {
        bindings::kunit_vm_mmap(
            test,
            core::ptr::null_mut(),
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_ANONYMOUS | MAP_PRIVATE,
            0,
        )
    };
    // kunit_vm_mmap() returns 0 when it cannot attach an mm, else vm_mmap()'s address or -errno.
    let max_errno = usize::try_from(bindings::MAX_ERRNO)?;
    if addr == 0 || addr > usize::MAX - max_errno {
        return Err(ENOMEM);
    }
    Ok(UserPtr::from_addr(addr))
}

/// Writes `bytes` to user memory at `ptr`.
pub(crate) fn put(ptr: UserPtr, bytes: &[u8]) -> Result {
    UserSlice::new(ptr, bytes.len()).writer().write_slice(bytes)
}

/// Reads `len` bytes of user memory at `ptr`.
pub(crate) fn get(ptr: UserPtr, len: usize) -> Result<KVec<u8>> {
    let mut out = KVec::new();
    UserSlice::new(ptr, len).read_all(&mut out, GFP_KERNEL)?;
    Ok(out)
}

/// Unmaps `len` bytes at `ptr` of the test's mm (to make holes in a mapping).
pub(crate) fn unmap(ptr: UserPtr, len: usize) -> Result {
    // SAFETY: vm_munmap works on `current->mm`, the test's own; any range is valid to ask for.
    kernel::error::to_result(unsafe { bindings::vm_munmap(ptr.as_const_ptr() as usize, len) })
}

/// Fills `len` bytes at `ptr` with [`pattern`] bytes.
pub(crate) fn fill(ptr: UserPtr, len: usize) -> Result {
    let mut bytes = KVec::with_capacity(len, GFP_KERNEL)?;
    for i in 0..len {
        bytes.push(pattern(i), GFP_KERNEL)?;
    }
    put(ptr, &bytes)
}

/// The byte [`fill`] puts at offset `i`.
pub(crate) fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Writes an array of `struct iovec` for the `(address, length)` segments `segs` to user memory
/// at `at`.
pub(crate) fn put_iovec(at: UserPtr, segs: &[(usize, usize)]) -> Result {
    let mut uvec = KVec::new();
    for &(addr, len) in segs {
        uvec.extend_from_slice(&addr.to_ne_bytes(), GFP_KERNEL)?;
        uvec.extend_from_slice(&len.to_ne_bytes(), GFP_KERNEL)?;
    }
    put(at, &uvec)
}
