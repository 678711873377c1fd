// SPDX-License-Identifier: GPL-2.0

//! The module's global state: what outlives the ioctl that makes it and is found again by a
//! later one, from any open file of `/dev/pindio`. The kernel crate's `global_lock!` needs its
//! `init` called once before use, which [`init`] does.

use crate::loopdev::Devices;
use core::pin::Pin;
use kernel::sync::atomic::{Atomic, Full};

kernel::global_lock! {
    // SAFETY: `init` initialises it, once, from the module's init, before anything can lock it.
    /// The stacked devices (`/dev/pindio-loopN`).
    pub(crate) unsafe(uninit) static LOOP_DEVICES: Mutex<Devices> = Devices::new();
}

/// Initialises the global state; the module's init calls it before it registers anything that
/// could use that state. Later calls do nothing.
pub(crate) fn init() {
    static DONE: Atomic<i32> = Atomic::new(0);
    if DONE.xchg(1, Full) == 0 {
        // SAFETY: The first call, made before anything locks it (see above); `DONE` keeps it the
        // only one.
        unsafe { LOOP_DEVICES.init() };
    }
}
