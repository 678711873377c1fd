// SPDX-License-Identifier: GPL-2.0

//! Extensible ioctl argument structs, read and written back the way `copy_struct_from_user` does.
//!
//! Every argument struct of the uapi header starts with `__u32 size`. A struct of the kernel's
//! own size is read in one copy. Otherwise the size is read first, checked, and then the rest of
//! the struct is copied from the bytes after it. Either way every byte used is read exactly once:
//! a caller changing `size` concurrently cannot make two reads disagree.

use crate::abi::{self, AbiError};
use crate::ffi::helpers;
use crate::uapi;
use core::mem::size_of;
use kernel::{
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

impl From<AbiError> for Error {
    fn from(err: AbiError) -> Self {
        match err {
            AbiError::UnknownCommand => ENOTTY,
            AbiError::TooSmall => EINVAL,
            AbiError::TooBig => E2BIG,
            AbiError::Invalid => EINVAL,
        }
    }
}

/// Size of the leading `size` member of every argument struct.
const SIZE_FIELD: usize = size_of::<u32>();

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

    /// Copies the whole struct, as this build has it, from `ptr` into `dst`; `EFAULT` on bad
    /// memory.
    fn copy_in(dst: &mut Self, ptr: UserPtr) -> Result {
        UserSlice::new(ptr, size_of::<Self>())
            .reader()
            .read_slice(dst.as_bytes_mut())
    }
}

/// Declares argument structs of the uapi header as [`ExtStruct`]s, given their member types (and
/// optionally their own [`ExtStruct::copy_in`]).
macro_rules! ext_structs {
    ($($name:ident = $ver0:ident { $($ty:ty),* $(,)? } $([$copy:path])?)*) => {$(
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
            $(
                fn copy_in(dst: &mut Self, ptr: UserPtr) -> Result {
                    $copy(dst, ptr)
                }
            )?
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
        [copy_in_dio]
    pindio_dio_batch = PINDIO_DIO_BATCH_SIZE_VER0 { u32, u32, u64, u32, u32 }
}

/// [`ExtStruct::copy_in`] of the argument of every direct I/O (a batch reads up to
/// `PINDIO_DIO_BATCH_MAX` of them per call): unrolled loads in one user access, where the
/// generic copy is an out-of-line loop (about 20 translated blocks per call under TCG).
fn copy_in_dio(dst: &mut uapi::pindio_dio, src: UserPtr) -> Result {
    let dst = core::ptr::from_mut(dst).cast();
    // SAFETY: `dst` is valid for writes of a whole `pindio_dio` (the helper's struct, from the
    // same uapi header); the helper reads `src` only with `unsafe_get_user` in a user access,
    // which fails with `EFAULT` on bad memory instead of faulting.
    let ret = unsafe { helpers::pindio_read_dio(dst, src.as_const_ptr()) };
    if ret != 0 {
        return Err(EFAULT);
    }
    Ok(())
}

/// An argument struct read from user space, remembering where it came from and how large the
/// caller said it is, so it can be written back once.
pub(crate) struct ExtArg<T: ExtStruct> {
    ptr: UserPtr,
    user_size: usize,
    /// The kernel's copy. Members the caller does not know are zero.
    pub(crate) val: T,
}

impl<T: ExtStruct> ExtArg<T> {
    /// Reads the struct at `ptr`.
    ///
    /// Fails with `EFAULT` on bad memory, `EINVAL` if `size` is below `T::SIZE_VER0`, `E2BIG` if it
    /// is above `PINDIO_STRUCT_SIZE_MAX` or if bytes past the kernel's struct are not zero.
    #[inline]
    pub(crate) fn read(ptr: UserPtr) -> Result<Self> {
        // The common case, a caller with this very header, in one copy: taken only if the size
        // read with the rest is the kernel's, so every byte used comes from that one read.
        let mut val = T::default();
        if T::copy_in(&mut val, ptr).is_ok()
            && val
                .as_bytes()
                .first_chunk::<SIZE_FIELD>()
                .and_then(|size| usize::try_from(u32::from_ne_bytes(*size)).ok())
                == Some(size_of::<T>())
        {
            return Ok(Self {
                ptr,
                user_size: size_of::<T>(),
                val,
            });
        }
        Self::read_sized(ptr)
    }

    /// Reads the struct at `ptr` as [`ExtArg::read`] does, in two steps: the size, then as many
    /// bytes as it says.
    fn read_sized(ptr: UserPtr) -> Result<Self> {
        let size = UserSlice::new(ptr, SIZE_FIELD).reader().read::<u32>()?;
        let user_size = abi::check_struct_size(size, T::SIZE_VER0)?;
        let mut val = T::default();
        // `ExtStruct` guarantees the leading `__u32 size`, so neither split can fail.
        let (head, rest) = val
            .as_bytes_mut()
            .split_at_mut_checked(SIZE_FIELD)
            .ok_or(EINVAL)?;
        head.copy_from_slice(&size.to_ne_bytes());
        let rest_size = user_size.checked_sub(SIZE_FIELD).ok_or(EINVAL)?;
        copy_struct_from_user(rest, ptr.wrapping_byte_add(SIZE_FIELD), rest_size)?;
        Ok(Self {
            ptr,
            user_size,
            val,
        })
    }

    /// Writes the struct back: the first `min(size, size_of::<T>())` bytes, so a caller with an
    /// older, smaller struct gets no more than it asked for.
    pub(crate) fn write_back(self) -> Result {
        let len = self.user_size.min(size_of::<T>());
        let bytes = self.val.as_bytes().get(..len).ok_or(EINVAL)?;
        UserSlice::new(self.ptr, len).writer().write_slice(bytes)
    }
}

/// Copies a `usize`-byte user struct into `dst` (`copy_struct_from_user()`): a shorter user struct
/// leaves the rest of `dst` zero, a longer one must have only zero bytes past `dst.len()`.
fn copy_struct_from_user(dst: &mut [u8], src: UserPtr, usize: usize) -> Result {
    // SAFETY: `dst` is valid for writes of `dst.len()` bytes for the duration of the call; `src` is
    // a user pointer, which the helper accesses only through `copy_from_user`/`check_zeroed_user`,
    // and those fail with `EFAULT` on bad user memory instead of faulting.
    let ret = unsafe {
        helpers::pindio_copy_struct_from_user(
            dst.as_mut_ptr().cast(),
            dst.len(),
            src.as_const_ptr(),
            usize,
        )
    };
    kernel::error::to_result(ret)
}
