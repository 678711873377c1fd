// SPDX-License-Identifier: GPL-2.0

//! Extensible ioctl argument structs, read and written back the way `copy_struct_from_user` does.
//!
//! Every argument struct of the uapi header starts with `__u32 size`. A struct of the kernel's
//! own size is read in one copy. Otherwise the size is read first, checked, and then the rest of
//! the struct is copied from the bytes after it. Either way every byte used is read exactly once:
//! a caller changing `size` concurrently cannot make two reads disagree.

#![deny(unsafe_code)]

use crate::abi::{self, AbiError};
use crate::abstractions::uapi::{copy_struct_from_user, ExtStruct};
use core::mem::size_of;
use kernel::{
    prelude::*,
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
        if UserSlice::new(ptr, size_of::<T>())
            .reader()
            .read_slice(val.as_bytes_mut())
            .is_ok()
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
