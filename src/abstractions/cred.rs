// SPDX-License-Identifier: GPL-2.0

//! Capabilities and credentials of the current task.
//!
//! C: `include/linux/capability.h`, `kernel/capability.c`, `include/linux/cred.h`.

use crate::ffi::helpers;
use kernel::bindings;

/// A capability (`CAP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Capability {
    /// `CAP_SYS_ADMIN`: what device mapper asks of whoever makes or removes a device.
    SysAdmin,
}

/// Whether the current task has `cap` in the initial user namespace (`capable`); a task that
/// uses it is marked as having used a privilege (`PF_SUPERPRIV`), as `capable` does.
pub(crate) fn capable(cap: Capability) -> bool {
    let cap = match cap {
        Capability::SysAdmin => bindings::CAP_SYS_ADMIN,
    };
    // SAFETY: No preconditions: it reads the current task's credentials.
    unsafe { bindings::capable(cap as i32) }
}

/// Runs `f` with the kernel's credentials in place of the current task's (`override_creds` of
/// `kernel_cred`, then `revert_creds`), as `scoped_with_kernel_creds` does: a file opened in
/// `f` does not keep the caller's credentials (and its keyrings) alive for as long as it is
/// held.
pub(crate) fn with_kernel_creds<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: `kernel_cred` is the init task's credentials, which live for ever; overriding
    // the current task's subjective credentials with them is undone below, in this task, before
    // it returns to anything that could look at them.
    let old = unsafe { helpers::pindio_override_creds(helpers::pindio_kernel_cred()) };
    let ret = f();
    // SAFETY: `old` is what `override_creds` replaced, in this task.
    unsafe { helpers::pindio_revert_creds(old) };
    ret
}
