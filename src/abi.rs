// SPDX-License-Identifier: GPL-2.0

//! The ioctl ABI rules that need no kernel: command decoding and argument sizes.
//!
//! Plain `core` Rust, shared by `#[path]` with the host crate in `tools/` so that `cargo test`
//! covers it. The definitions themselves come from the uapi header through `crate::uapi`.

use crate::uapi;

/// A command of `/dev/pindio`, decoded from an ioctl number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `PINDIO_IOC_VERSION`.
    Version,
}

/// Why an ioctl was refused before any work was done; each maps to one errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AbiError {
    /// Unknown command: `ENOTTY`.
    UnknownCommand,
    /// Argument struct smaller than its first published size: `EINVAL`.
    TooSmall,
    /// Argument struct larger than `PINDIO_STRUCT_SIZE_MAX`: `E2BIG`.
    TooBig,
}

/// The ABI version this build implements.
pub(crate) const ABI_VERSION: u32 = uapi::PINDIO_ABI_VERSION;

/// The feature bits this build implements.
pub(crate) const FEATURES: u64 = uapi::PINDIO_FEAT_VERSION as u64;

/// The size field of an ioctl number (`_IOC_SIZEMASK << _IOC_SIZESHIFT` in asm-generic/ioctl.h).
const IOC_SIZE_FIELD: u32 = 0x3fff << 16;

/// Every command with its number as the uapi header defines it.
const COMMANDS: &[(u32, Command)] = &[(uapi::PINDIO_IOC_VERSION, Command::Version)];

/// Decodes an ioctl number.
///
/// A command is matched by type, number and direction; its size bits are ignored because the
/// argument struct carries its own `size` (see the uapi header).
pub(crate) fn decode(cmd: u32) -> Result<Command, AbiError> {
    COMMANDS
        .iter()
        .find(|(known, _)| (known ^ cmd) & !IOC_SIZE_FIELD == 0)
        .map(|&(_, command)| command)
        .ok_or(AbiError::UnknownCommand)
}

/// Checks the `size` a caller put in an argument struct whose first published size is `size_ver0`.
///
/// Returns the size as a `usize`. Bytes past the kernel's struct are checked for zero by the
/// copy itself (`copy_struct_from_user`), not here.
pub(crate) fn check_struct_size(size: u32, size_ver0: usize) -> Result<usize, AbiError> {
    let size = usize::try_from(size).map_err(|_| AbiError::TooBig)?;
    if size < size_ver0 {
        return Err(AbiError::TooSmall);
    }
    if size > uapi::PINDIO_STRUCT_SIZE_MAX as usize {
        return Err(AbiError::TooBig);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_version_whatever_its_size_bits() {
        assert_eq!(decode(uapi::PINDIO_IOC_VERSION), Ok(Command::Version));
        // A future, larger struct pindio_version changes only the size bits.
        let grown = (uapi::PINDIO_IOC_VERSION & !IOC_SIZE_FIELD) | (64 << 16);
        assert_eq!(decode(grown), Ok(Command::Version));
    }

    #[test]
    fn rejects_other_type_number_or_direction() {
        let version = uapi::PINDIO_IOC_VERSION;
        assert_eq!(decode(version ^ (1 << 8)), Err(AbiError::UnknownCommand)); // type
        assert_eq!(decode(version + 1), Err(AbiError::UnknownCommand)); // number
        assert_eq!(decode(version ^ (1 << 30)), Err(AbiError::UnknownCommand)); // direction
        assert_eq!(decode(0), Err(AbiError::UnknownCommand));
    }

    #[test]
    fn struct_size_bounds() {
        let ver0 = uapi::PINDIO_VERSION_SIZE_VER0 as usize;
        let max = uapi::PINDIO_STRUCT_SIZE_MAX;
        assert_eq!(check_struct_size(0, ver0), Err(AbiError::TooSmall));
        assert_eq!(check_struct_size(15, ver0), Err(AbiError::TooSmall));
        assert_eq!(check_struct_size(16, ver0), Ok(16));
        assert_eq!(check_struct_size(max, ver0), Ok(max as usize));
        assert_eq!(check_struct_size(max + 1, ver0), Err(AbiError::TooBig));
        assert_eq!(check_struct_size(u32::MAX, ver0), Err(AbiError::TooBig));
    }
}
