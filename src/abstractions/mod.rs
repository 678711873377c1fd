// SPDX-License-Identifier: GPL-2.0

//! Thin safe abstractions over the kernel APIs pindio needs and the kernel crate of Linux 7.3
//! lacks, shaped like `rust/kernel`: each file could be posted on its own.
//!
//! This is the only part of the crate that holds `unsafe` code or names `bindings::` (and the C
//! helpers of `rust-bindings/`). Every type states its `# Invariants`, every `unsafe` block the
//! one it relies on. The logic on top (`device`, `abi`, `uarg`, `pins`, `dio`, `plan`,
//! `segments`) is compiled with `#![deny(unsafe_code)]`.
//!
//! - [`file`]: a file looked up by descriptor for the length of a closure (`fdget`).
//! - [`block`]: the block device a file is open on: its limits and state, its page cache, and
//!   plugging.
//! - [`bio`]: owned bios (`bio_add_page`), submitted and waited for, or submitted into an
//!   [`bio::InFlight`] that owns what they use and waits for them before it is dropped.
//! - [`cred`]: capabilities of the current task.
//! - [`disk`]: bio-based disks of this module's own drivers, the bios they are handed, and
//!   their remapping to another block device.
//! - [`global`]: the module's global state (the stacked devices).
//! - [`pages`]: FOLL_PIN extraction of user memory (a range or an iovec, imported and checked as
//!   `import_iovec` does) into batches that release their pages exactly once, and listed
//!   batches of kernel memory.
//! - [`pinned`]: values initialised and pinned in place in one allocation.
//! - [`uapi`]: the ioctl argument structs of the uapi header as byte-copyable types, and
//!   `copy_struct_from_user`.

pub(crate) mod bio;
pub(crate) mod block;
pub(crate) mod cred;
pub(crate) mod disk;
pub(crate) mod file;
pub(crate) mod global;
#[allow(
    dead_code,
    reason = "listed kernel pages and stack slots have no user in the module yet; KUnit covers them"
)]
pub(crate) mod pages;
pub(crate) mod pinned;
pub(crate) mod uapi;
