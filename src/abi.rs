// SPDX-License-Identifier: GPL-2.0

//! The ioctl ABI rules that need no kernel: command decoding and argument sizes.
//!
//! Plain `core` Rust, shared by `#[path]` with the host crate in `tools/` so that `cargo test`
//! covers it. The definitions themselves come from the uapi header through `crate::uapi`.

#![deny(unsafe_code)]

use crate::uapi;

/// A command of `/dev/pindio`, decoded from an ioctl number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `PINDIO_IOC_VERSION`.
    Version,
    /// `PINDIO_IOC_PIN`.
    Pin,
    /// `PINDIO_IOC_READ_PINNED`.
    ReadPinned,
    /// `PINDIO_IOC_UNPIN`.
    Unpin,
    /// `PINDIO_IOC_PIN_BENCH`.
    PinBench,
    /// `PINDIO_IOC_DIO`.
    Dio,
    /// `PINDIO_IOC_DIO_BATCH`.
    DioBatch,
    /// `PINDIO_IOC_LOOP_ADD`.
    LoopAdd,
    /// `PINDIO_IOC_LOOP_DEL`.
    LoopDel,
    /// `PINDIO_IOC_LOOP_INFO`.
    LoopInfo,
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
    /// A bad flag, length or range in the argument: `EINVAL`.
    Invalid,
}

/// The ABI version this build implements.
pub(crate) const ABI_VERSION: u32 = uapi::PINDIO_ABI_VERSION;

/// The feature bits this build implements.
pub(crate) const FEATURES: u64 = (uapi::PINDIO_FEAT_VERSION
    | uapi::PINDIO_FEAT_PIN
    | uapi::PINDIO_FEAT_PIN_BENCH
    | uapi::PINDIO_FEAT_DIO
    | uapi::PINDIO_FEAT_LOOP) as u64;

/// The size field of an ioctl number (`_IOC_SIZEMASK << _IOC_SIZESHIFT` in asm-generic/ioctl.h).
const IOC_SIZE_FIELD: u32 = 0x3fff << 16;

/// The number field of an ioctl number (`_IOC_NRMASK`).
const IOC_NR_FIELD: u32 = 0xff;

/// Every command with its number as the uapi header defines it, in the order of their `_IOC_NR`
/// (0, 1, 2, ...), so that a command is found by its number.
const COMMANDS: &[(u32, Command)] = &[
    (uapi::PINDIO_IOC_VERSION, Command::Version),
    (uapi::PINDIO_IOC_PIN, Command::Pin),
    (uapi::PINDIO_IOC_READ_PINNED, Command::ReadPinned),
    (uapi::PINDIO_IOC_UNPIN, Command::Unpin),
    (uapi::PINDIO_IOC_PIN_BENCH, Command::PinBench),
    (uapi::PINDIO_IOC_DIO, Command::Dio),
    (uapi::PINDIO_IOC_DIO_BATCH, Command::DioBatch),
    (uapi::PINDIO_IOC_LOOP_ADD, Command::LoopAdd),
    (uapi::PINDIO_IOC_LOOP_DEL, Command::LoopDel),
    (uapi::PINDIO_IOC_LOOP_INFO, Command::LoopInfo),
];

// Each command sits at the index of its number.
const _: () = {
    let mut i = 0;
    while i < COMMANDS.len() {
        assert!((COMMANDS[i].0 & IOC_NR_FIELD) as usize == i);
        i += 1;
    }
};

/// Decodes an ioctl number.
///
/// A command is matched by type, number and direction; its size bits are ignored because the
/// argument struct carries its own `size` (see the uapi header).
pub(crate) fn decode(cmd: u32) -> Result<Command, AbiError> {
    // Looked up by number, then checked whole: one comparison, not a search.
    match COMMANDS.get((cmd & IOC_NR_FIELD) as usize) {
        Some(&(known, command)) if (known ^ cmd) & !IOC_SIZE_FIELD == 0 => Ok(command),
        _ => Err(AbiError::UnknownCommand),
    }
}

/// A validated `struct pindio_pin` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PinRequest {
    /// The device will write the pages.
    pub(crate) write: bool,
    /// `FOLL_LONGTERM`.
    pub(crate) longterm: bool,
    /// `Some(nr_segs)` for an iovec array at `addr`, `None` for a single range of `len` bytes.
    pub(crate) iovec: Option<u32>,
}

/// Checks the flags and sizes of a `struct pindio_pin` (everything that can be checked before
/// user memory is touched).
pub(crate) fn check_pin(flags: u32, addr: u64, len: u64) -> Result<PinRequest, AbiError> {
    if flags & !uapi::PINDIO_PIN_FLAGS != 0 || len == 0 {
        return Err(AbiError::Invalid);
    }
    let iovec = if flags & uapi::PINDIO_PIN_IOVEC != 0 {
        Some(u32::try_from(len).map_err(|_| AbiError::Invalid)?)
    } else {
        addr.checked_add(len).ok_or(AbiError::Invalid)?;
        None
    };
    Ok(PinRequest {
        write: flags & uapi::PINDIO_PIN_WRITE != 0,
        longterm: flags & uapi::PINDIO_PIN_LONGTERM != 0,
        iovec,
    })
}

/// Checks a `struct pindio_pin_bench`: the flags and range of a pin, a bounded length, and a
/// non-zero batch size. Returns the request and the pages per call.
pub(crate) fn check_pin_bench(
    flags: u32,
    addr: u64,
    len: u64,
    pages_per_call: u32,
    reserved: u32,
) -> Result<(PinRequest, usize), AbiError> {
    if flags & uapi::PINDIO_PIN_IOVEC != 0
        || len > u64::from(uapi::PINDIO_PIN_BENCH_MAX_BYTES)
        || pages_per_call == 0
        || reserved != 0
    {
        return Err(AbiError::Invalid);
    }
    let per_call = usize::try_from(pages_per_call).map_err(|_| AbiError::Invalid)?;
    Ok((check_pin(flags, addr, len)?, per_call))
}

/// A validated `struct pindio_dio` request (the parts that need no device or memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DioRequest {
    /// Memory to device.
    pub(crate) write: bool,
    /// `REQ_FUA` on the write bios.
    pub(crate) fua: bool,
    /// `Some(nr_segs)` for an iovec array at `buf`, `None` for a single buffer of `len` bytes.
    pub(crate) iovec: Option<u32>,
}

/// Checks the flags and sizes of a `struct pindio_dio`; device offsets and alignment are checked
/// against the device later, but still before any memory is pinned.
pub(crate) fn check_dio(
    flags: u32,
    reserved: u32,
    buf: u64,
    len: u64,
) -> Result<DioRequest, AbiError> {
    let write = flags & uapi::PINDIO_DIO_WRITE != 0;
    let fua = flags & uapi::PINDIO_DIO_FUA != 0;
    if flags & !uapi::PINDIO_DIO_FLAGS != 0 || reserved != 0 || len == 0 || (fua && !write) {
        return Err(AbiError::Invalid);
    }
    let iovec = if flags & uapi::PINDIO_DIO_IOVEC != 0 {
        Some(u32::try_from(len).map_err(|_| AbiError::Invalid)?)
    } else {
        buf.checked_add(len).ok_or(AbiError::Invalid)?;
        None
    };
    Ok(DioRequest { write, fua, iovec })
}

/// Checks a `struct pindio_dio_batch`: returns the number of requests and the entry stride.
pub(crate) fn check_dio_batch(
    nr: u32,
    entry_size: u32,
    reserved: u32,
) -> Result<(usize, usize), AbiError> {
    if nr == 0 || nr > uapi::PINDIO_DIO_BATCH_MAX || reserved != 0 {
        return Err(AbiError::Invalid);
    }
    let stride = check_struct_size(entry_size, uapi::PINDIO_DIO_SIZE_VER0 as usize)
        .map_err(|_| AbiError::Invalid)?;
    let nr = usize::try_from(nr).map_err(|_| AbiError::Invalid)?;
    Ok((nr, stride))
}

/// The window of a backing device a stacked device maps, in 512-byte sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoopWindow {
    /// The first sector of the window on the backing device.
    pub(crate) start_sector: u64,
    /// The window's length, which is the stacked device's size.
    pub(crate) nr_sectors: u64,
    /// `PINDIO_LOOP_READ_ONLY` was asked for.
    pub(crate) read_only: bool,
}

/// Checks a `struct pindio_loop_add` against its backing device, of `dev_bytes` bytes in logical
/// blocks of `lbs` bytes: the window `offset..offset + sizelimit` (`sizelimit` 0: to the end)
/// must be whole blocks, start before the end, and not go past it.
pub(crate) fn check_loop_add(
    flags: u32,
    reserved: u32,
    offset: u64,
    sizelimit: u64,
    lbs: u32,
    dev_bytes: u64,
) -> Result<LoopWindow, AbiError> {
    let lbs = u64::from(lbs);
    if flags & !uapi::PINDIO_LOOP_FLAGS != 0
        || reserved != 0
        || lbs < 512
        || !lbs.is_power_of_two()
        || offset & (lbs - 1) != 0
        || sizelimit & (lbs - 1) != 0
        || offset >= dev_bytes
    {
        return Err(AbiError::Invalid);
    }
    let len = match sizelimit {
        0 => dev_bytes - offset,
        n if offset.checked_add(n).is_some_and(|end| end <= dev_bytes) => n,
        _ => return Err(AbiError::Invalid),
    };
    Ok(LoopWindow {
        start_sector: offset >> 9,
        nr_sectors: len >> 9,
        read_only: flags & uapi::PINDIO_LOOP_READ_ONLY != 0,
    })
}

/// Checks a `struct pindio_loop_del`: returns the index.
pub(crate) fn check_loop_del(index: u32, flags: u32, reserved: u32) -> Result<usize, AbiError> {
    if flags != 0 || reserved != 0 {
        return Err(AbiError::Invalid);
    }
    usize::try_from(index).map_err(|_| AbiError::Invalid)
}

/// Where a request of `nr_bytes` bytes at `sector` of a stacked device lies on its backing
/// device: `None` if any of it falls outside the window.
pub(crate) fn map_sector(window: &LoopWindow, sector: u64, nr_bytes: u32) -> Option<u64> {
    let end = sector.checked_add(u64::from(nr_bytes).div_ceil(512))?;
    if end > window.nr_sectors {
        return None;
    }
    window.start_sector.checked_add(sector)
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
        assert_eq!(decode(version + 0x7f), Err(AbiError::UnknownCommand)); // number
        assert_eq!(decode(version ^ (1 << 30)), Err(AbiError::UnknownCommand)); // direction
        assert_eq!(decode(0), Err(AbiError::UnknownCommand));
    }

    #[test]
    fn pin_requests() {
        let (w, lt, iov) = (
            uapi::PINDIO_PIN_WRITE,
            uapi::PINDIO_PIN_LONGTERM,
            uapi::PINDIO_PIN_IOVEC,
        );
        let req = check_pin(w | lt, 4096, 100).unwrap();
        assert!(req.write && req.longterm && req.iovec.is_none());
        assert_eq!(check_pin(iov, 4096, 3).unwrap().iovec, Some(3));
        assert_eq!(check_pin(0, 4096, 0), Err(AbiError::Invalid));
        assert_eq!(check_pin(1 << 3, 4096, 1), Err(AbiError::Invalid));
        assert_eq!(check_pin(0, u64::MAX - 10, 11), Err(AbiError::Invalid));
        assert_eq!(check_pin(iov, 0, 1 << 32), Err(AbiError::Invalid));
    }

    #[test]
    fn pin_bench_requests() {
        let max = uapi::PINDIO_PIN_BENCH_MAX_BYTES as u64;
        assert_eq!(check_pin_bench(0, 4096, max, 512, 0).map(|r| r.1), Ok(512));
        assert_eq!(
            check_pin_bench(0, 4096, max + 1, 1, 0),
            Err(AbiError::Invalid)
        );
        assert_eq!(check_pin_bench(0, 4096, 4096, 0, 0), Err(AbiError::Invalid));
        assert_eq!(check_pin_bench(0, 4096, 4096, 1, 1), Err(AbiError::Invalid));
        let iov = uapi::PINDIO_PIN_IOVEC;
        assert_eq!(check_pin_bench(iov, 4096, 1, 1, 0), Err(AbiError::Invalid));
    }

    #[test]
    fn dio_requests() {
        let (w, iov, fua) = (
            uapi::PINDIO_DIO_WRITE,
            uapi::PINDIO_DIO_IOVEC,
            uapi::PINDIO_DIO_FUA,
        );
        let req = check_dio(w | fua, 0, 4096, 512).unwrap();
        assert!(req.write && req.fua && req.iovec.is_none());
        assert_eq!(check_dio(iov, 0, 4096, 3).unwrap().iovec, Some(3));
        assert!(!check_dio(0, 0, 4096, 512).unwrap().write);
        assert_eq!(check_dio(fua, 0, 4096, 512), Err(AbiError::Invalid));
        assert_eq!(check_dio(1 << 3, 0, 4096, 512), Err(AbiError::Invalid));
        assert_eq!(check_dio(0, 1, 4096, 512), Err(AbiError::Invalid));
        assert_eq!(check_dio(0, 0, 4096, 0), Err(AbiError::Invalid));
        assert_eq!(check_dio(0, 0, u64::MAX - 10, 512), Err(AbiError::Invalid));
        assert_eq!(check_dio(iov, 0, 0, 1 << 32), Err(AbiError::Invalid));
    }

    #[test]
    fn dio_batches() {
        let ver0 = uapi::PINDIO_DIO_SIZE_VER0;
        let max = uapi::PINDIO_DIO_BATCH_MAX;
        assert_eq!(check_dio_batch(32, ver0, 0), Ok((32, ver0 as usize)));
        assert_eq!(check_dio_batch(max, ver0 + 8, 0), Ok((max as usize, 56)));
        assert_eq!(check_dio_batch(0, ver0, 0), Err(AbiError::Invalid));
        assert_eq!(check_dio_batch(max + 1, ver0, 0), Err(AbiError::Invalid));
        assert_eq!(check_dio_batch(1, ver0 - 8, 0), Err(AbiError::Invalid));
        assert_eq!(check_dio_batch(1, 8192, 0), Err(AbiError::Invalid));
        assert_eq!(check_dio_batch(1, ver0, 1), Err(AbiError::Invalid));
    }

    #[test]
    fn loop_windows() {
        let ro = uapi::PINDIO_LOOP_READ_ONLY;
        let mib = 1 << 20;
        let w = check_loop_add(0, 0, 0, 0, 512, mib).unwrap();
        assert_eq!(
            (w.start_sector, w.nr_sectors, w.read_only),
            (0, 2048, false)
        );
        let w = check_loop_add(ro, 0, 4096, 8192, 4096, mib).unwrap();
        assert_eq!((w.start_sector, w.nr_sectors, w.read_only), (8, 16, true));
        // The last block: the window ends at the end; one block more goes past it.
        assert_eq!(
            check_loop_add(0, 0, mib - 512, 0, 512, mib)
                .unwrap()
                .nr_sectors,
            1
        );
        assert_eq!(
            check_loop_add(0, 0, mib - 512, 512, 512, mib)
                .unwrap()
                .nr_sectors,
            1
        );
        let bad = Err(AbiError::Invalid);
        assert_eq!(check_loop_add(0, 0, mib - 512, 1024, 512, mib), bad);
        assert_eq!(check_loop_add(0, 0, mib, 0, 512, mib), bad);
        assert_eq!(check_loop_add(0, 0, 0, mib + 512, 512, mib), bad);
        assert_eq!(check_loop_add(0, 0, 512, u64::MAX - 511, 512, mib), bad);
        // Whole blocks of the backing device: 4 KiB blocks refuse 512-byte steps.
        assert_eq!(check_loop_add(0, 0, 512, 0, 4096, mib), bad);
        assert_eq!(check_loop_add(0, 0, 0, 512, 4096, mib), bad);
        assert_eq!(check_loop_add(0, 0, 1, 0, 512, mib), bad);
        assert_eq!(check_loop_add(1 << 1, 0, 0, 0, 512, mib), bad);
        assert_eq!(check_loop_add(0, 1, 0, 0, 512, mib), bad);
        assert_eq!(check_loop_add(0, 0, 0, 0, 512, 0), bad);
    }

    #[test]
    fn loop_deletions_and_sectors() {
        assert_eq!(check_loop_del(3, 0, 0), Ok(3));
        assert_eq!(check_loop_del(3, 1, 0), Err(AbiError::Invalid));
        assert_eq!(check_loop_del(3, 0, 1), Err(AbiError::Invalid));
        let w = LoopWindow {
            start_sector: 100,
            nr_sectors: 16,
            read_only: false,
        };
        assert_eq!(map_sector(&w, 0, 512), Some(100));
        assert_eq!(map_sector(&w, 15, 512), Some(115));
        assert_eq!(map_sector(&w, 0, 16 * 512), Some(100));
        assert_eq!(map_sector(&w, 15, 1024), None);
        assert_eq!(map_sector(&w, 16, 0), Some(116));
        assert_eq!(map_sector(&w, 17, 0), None);
        assert_eq!(map_sector(&w, u64::MAX, 512), None);
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
