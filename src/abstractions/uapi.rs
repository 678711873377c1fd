// SPDX-License-Identifier: GPL-2.0

//! The argument structs of pindio's uapi header as byte-copyable types ([`ExtStruct`]), and
//! `copy_struct_from_user` for reading them at any size a caller may have.
//!
//! C: `include/linux/uaccess.h`, `include/uapi/linux/pindio.h`.

use crate::ffi::helpers;
use crate::uapi;
use core::mem::size_of;
use kernel::{
    error::to_result,
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::UserPtr,
};

/// An argument struct of the uapi header.
///
/// # Safety
///
/// Implementers are `#[repr(C)]` structs of integer members with no padding (so every byte
/// pattern is valid and every byte is initialised), whose first member is `__u32 size`, and whose
/// `SIZE_VER0` is the size the header first published.
pub(crate) unsafe trait ExtStruct: FromBytes + AsBytes + Default {
    /// The first published size (`PINDIO_<NAME>_SIZE_VER0`).
    const SIZE_VER0: usize;
}

/// Declares argument structs of the uapi header as [`ExtStruct`]s, given their member types.
macro_rules! ext_structs {
    ($($name:ident = $ver0:ident { $($ty:ty),* $(,)? })*) => {$(
        // No padding: the size is the sum of the members, and this build's struct is VER0.
        const _: () = assert!(size_of::<uapi::$name>() == 0 $(+ size_of::<$ty>())*);
        const _: () = assert!(size_of::<uapi::$name>() == uapi::$ver0 as usize);
        // SAFETY: A `#[repr(C)]` struct of integers with no padding (asserted above): every byte
        // pattern is a valid value.
        unsafe impl FromBytes for uapi::$name {}
        // SAFETY: As above: no padding, so every byte is initialised.
        unsafe impl AsBytes for uapi::$name {}
        // SAFETY: As above, and every struct of the header starts with `__u32 size`; `$ver0` is
        // its first published size.
        unsafe impl ExtStruct for uapi::$name {
            const SIZE_VER0: usize = uapi::$ver0 as usize;
        }
    )*};
}

ext_structs! {
    pindio_version = PINDIO_VERSION_SIZE_VER0 { u32, u32, u64 }
    pindio_pin = PINDIO_PIN_SIZE_VER0 { u32, u32, u64, u64, u32, u32, u64 }
    pindio_read_pinned = PINDIO_READ_PINNED_SIZE_VER0 { u32, u32, u64, u64, u64 }
    pindio_unpin = PINDIO_UNPIN_SIZE_VER0 { u32, u32 }
    pindio_pin_bench = PINDIO_PIN_BENCH_SIZE_VER0 { u32, u32, u64, u64, u32, u32, u64, u64 }
    pindio_dio = PINDIO_DIO_SIZE_VER0 { u32, u32, i32, u32, u64, u64, u64, i64 }
    pindio_dio_batch = PINDIO_DIO_BATCH_SIZE_VER0 { u32, u32, u64, u32, u32 }
    pindio_loop_add = PINDIO_LOOP_ADD_SIZE_VER0 { u32, u32, i32, u32, u64, u64 }
    pindio_loop_del = PINDIO_LOOP_DEL_SIZE_VER0 { u32, u32, u32, u32 }
    pindio_loop_info = PINDIO_LOOP_INFO_SIZE_VER0 { u32, u32, u32, u32, u32, u32, u64, u64 }
}

/// Copies a `usize`-byte user struct at `src` into `dst` (`copy_struct_from_user`): a shorter
/// user struct leaves the rest of `dst` zero, a longer one must have only zero bytes past
/// `dst.len()` (`E2BIG` otherwise); `EFAULT` on bad memory.
pub(crate) fn copy_struct_from_user(dst: &mut [u8], src: UserPtr, usize: usize) -> Result {
    // SAFETY: `dst` is valid for writes of `dst.len()` bytes for the duration of the call; `src`
    // is a user pointer, which the helper accesses only through `copy_from_user` and
    // `check_zeroed_user`, and those fail with `EFAULT` on bad user memory instead of faulting.
    to_result(unsafe {
        helpers::pindio_copy_struct_from_user(
            dst.as_mut_ptr().cast(),
            dst.len(),
            src.as_const_ptr(),
            usize,
        )
    })
}
