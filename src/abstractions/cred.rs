// SPDX-License-Identifier: GPL-2.0

//! Capabilities of the current task.
//!
//! C: `include/linux/capability.h`, `kernel/capability.c`.

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
