// SPDX-License-Identifier: GPL-2.0

//! The in-guest test program: drives `/dev/pindio` and prints KTAP.
//!
//! Usage: `pindio-test [case...]` (all cases when none is named). Exits non-zero if any failed.

use anyhow::{bail, ensure, Context, Result};
use pindio::{
    ktap::{self, Case},
    uapi, Device, ExtStruct,
};
use std::{io, mem::size_of, os::unix::fs::FileTypeExt, os::unix::fs::PermissionsExt, ptr};

mod dio_tests;
mod fs_tests;
mod fuzz;
mod loop_tests;
mod pin_tests;
mod review_tests;
mod stack_tests;
mod stress_tests;

fn device() -> Result<Device> {
    Device::open().context("open /dev/pindio")
}

/// Expects `result` to be the error `errno`.
fn expect_errno<T: std::fmt::Debug>(result: io::Result<T>, errno: i32, what: &str) -> Result<()> {
    match result {
        Err(err) if err.raw_os_error() == Some(errno) => Ok(()),
        Err(err) => bail!("{what}: expected errno {errno}, got {err}"),
        Ok(v) => bail!("{what}: expected errno {errno}, got success ({v:?})"),
    }
}

/// A `struct pindio_version` of `size` bytes as a caller with a different header would pass it:
/// the known fields followed by `size - 16` bytes of `tail`.
fn version_buffer(size: u32, tail: u8) -> Vec<u8> {
    let mut buf = vec![tail; size.max(4) as usize];
    buf[..4].copy_from_slice(&size.to_ne_bytes());
    for b in buf
        .iter_mut()
        .take(size_of::<uapi::pindio_version>())
        .skip(4)
    {
        *b = 0;
    }
    buf
}

fn version_raw(dev: &Device, buf: &mut [u8]) -> io::Result<i32> {
    // SAFETY: `buf` is live and writable for its whole length, and its `size` member never says
    // more than that length.
    unsafe { dev.ioctl_raw(uapi::PINDIO_IOC_VERSION, buf.as_mut_ptr().cast()) }
}

fn device_node() -> Result<()> {
    let meta = std::fs::metadata(pindio::DEVICE_PATH).context("stat /dev/pindio")?;
    ensure!(meta.file_type().is_char_device(), "not a character device");
    let mode = meta.permissions().mode() & 0o7777;
    ensure!(mode == 0o600, "mode is {mode:o}, expected 600");
    Ok(())
}

fn version() -> Result<()> {
    let v = device()?.version().context("PINDIO_IOC_VERSION")?;
    ensure!(
        v.abi_version == pindio::ABI_VERSION,
        "ABI version {}, this program was built for {}",
        v.abi_version,
        pindio::ABI_VERSION
    );
    ensure!(
        v.features == pindio::FEATURES,
        "features {:#x}, expected {:#x}",
        v.features,
        pindio::FEATURES
    );
    ensure!(
        v.size == uapi::PINDIO_VERSION_SIZE_VER0,
        "size changed to {}",
        v.size
    );
    Ok(())
}

fn unknown_ioctl_enotty() -> Result<()> {
    let dev = device()?;
    let version = uapi::PINDIO_IOC_VERSION;
    let cases = [
        (version + 0x7f, "unknown command number"),
        (version ^ (1 << 8), "another ioctl type"),
        (version & !(3 << 30), "wrong direction (_IOC_NONE)"),
        (0x5401, "TCGETS"),
    ];
    for (cmd, what) in cases {
        let mut v = uapi::pindio_version::sized();
        expect_errno(dev.ioctl(cmd, &mut v), libc::ENOTTY, what)?;
    }
    Ok(())
}

fn version_short_struct_einval() -> Result<()> {
    let dev = device()?;
    for size in [0u32, 4, uapi::PINDIO_VERSION_SIZE_VER0 - 1] {
        let mut buf = version_buffer(size, 0);
        buf.resize(size_of::<uapi::pindio_version>(), 0);
        expect_errno(
            version_raw(&dev, &mut buf),
            libc::EINVAL,
            &format!("size {size}"),
        )?;
    }
    Ok(())
}

fn version_oversized_struct() -> Result<()> {
    let dev = device()?;
    // A newer caller: zero tail is accepted, and the kernel writes nothing past its own struct.
    let mut buf = version_buffer(64, 0);
    version_raw(&dev, &mut buf).context("64-byte struct with zero tail")?;
    ensure!(
        buf[16..].iter().all(|&b| b == 0),
        "kernel wrote past its struct"
    );
    ensure!(u32::from_ne_bytes(buf[4..8].try_into()?) == pindio::ABI_VERSION);
    // Unknown non-zero bytes: E2BIG.
    let mut buf = version_buffer(64, 0);
    buf[40] = 1;
    expect_errno(version_raw(&dev, &mut buf), libc::E2BIG, "non-zero tail")?;
    // Larger than PINDIO_STRUCT_SIZE_MAX: E2BIG without reading it.
    let mut buf = version_buffer(uapi::PINDIO_STRUCT_SIZE_MAX + 1, 0);
    expect_errno(
        version_raw(&dev, &mut buf),
        libc::E2BIG,
        "size above the maximum",
    )?;
    Ok(())
}

fn version_bad_pointer_efault() -> Result<()> {
    let dev = device()?;
    // SAFETY: A null pointer: the kernel must fail the copy, nothing is written.
    expect_errno(
        unsafe { dev.ioctl_raw(uapi::PINDIO_IOC_VERSION, ptr::null_mut()) },
        libc::EFAULT,
        "null argument",
    )?;
    // SAFETY: A kernel address: copy_from_user refuses it.
    expect_errno(
        unsafe { dev.ioctl_raw(uapi::PINDIO_IOC_VERSION, usize::MAX as *mut libc::c_void) },
        libc::EFAULT,
        "kernel address",
    )
}

const CASES: &[Case] = &[
    Case {
        name: "pin_read_pinned_matches",
        run: pin_tests::read_pinned_matches,
    },
    Case {
        name: "pin_ro_sees_parent_write",
        run: pin_tests::ro_pin_sees_parent_write,
    },
    Case {
        name: "pin_fork_child_write_not_seen",
        run: pin_tests::fork_child_write_not_seen,
    },
    Case {
        name: "pin_fork_then_parent_write_seen",
        run: pin_tests::fork_then_parent_write_seen,
    },
    Case {
        name: "pin_survives_munmap",
        run: pin_tests::survives_munmap,
    },
    Case {
        name: "pin_released_at_close",
        run: pin_tests::released_at_close,
    },
    Case {
        name: "pin_iovec_odd_segments",
        run: pin_tests::iovec_odd_segments,
    },
    Case {
        name: "pin_hugetlb",
        run: pin_tests::hugetlb,
    },
    Case {
        name: "pin_thp",
        run: pin_tests::thp,
    },
    Case {
        name: "pin_bad_arguments",
        run: pin_tests::bad_arguments,
    },
    Case {
        name: "pin_limits",
        run: pin_tests::limits,
    },
    Case {
        name: "pin_bench",
        run: pin_tests::pin_bench,
    },
    Case {
        name: "dio_round_trip_null_blk",
        run: dio_tests::round_trip_null_blk,
    },
    Case {
        name: "dio_round_trip_virtio_blk",
        run: dio_tests::round_trip_virtio_blk,
    },
    Case {
        name: "dio_iovec_uneven_segments",
        run: dio_tests::iovec_uneven_segments,
    },
    Case {
        name: "dio_last_block_and_past_the_end",
        run: dio_tests::last_block_and_past_the_end,
    },
    Case {
        name: "dio_page_cache_coherency",
        run: dio_tests::page_cache_coherency,
    },
    Case {
        name: "dio_bad_arguments",
        run: dio_tests::bad_arguments,
    },
    Case {
        name: "dio_read_only_disk",
        run: dio_tests::read_only_disk,
    },
    Case {
        name: "dio_device_error_eio",
        run: dio_tests::device_error_eio,
    },
    Case {
        name: "dio_unmap_during_io",
        run: dio_tests::unmap_during_io,
    },
    Case {
        name: "dio_fork_write_child_modifies",
        run: dio_tests::fork_write_child_modifies,
    },
    Case {
        name: "dio_fork_child_writes_parent_modifies",
        run: dio_tests::fork_child_writes_parent_modifies,
    },
    Case {
        name: "dio_fork_read_parent_touches",
        run: dio_tests::fork_read_parent_touches,
    },
    Case {
        name: "dio_batch_mixed_with_one_bad",
        run: dio_tests::batch_mixed_with_one_bad,
    },
    Case {
        name: "dio_batch_array_is_read_whole_before_anything_starts",
        run: dio_tests::batch_array_is_read_whole_before_anything_starts,
    },
    Case {
        name: "dio_batch_entry_size_must_be_the_stride",
        run: dio_tests::batch_entry_size_must_be_the_stride,
    },
    Case {
        name: "loop_data_at_mapped_offset",
        run: loop_tests::data_at_mapped_offset,
    },
    Case {
        name: "loop_forwarding_pins_nothing",
        run: loop_tests::forwarding_pins_nothing,
    },
    Case {
        name: "loop_filesystem",
        run: loop_tests::filesystem,
    },
    Case {
        name: "loop_ext4_e2fsck_clean",
        run: fs_tests::ext4_checked,
    },
    Case {
        name: "loop_xfs_xfs_repair_clean",
        run: fs_tests::xfs_checked,
    },
    Case {
        name: "dio_fio_pindio_engine_verify",
        run: fs_tests::fio_engine,
    },
    Case {
        name: "loop_on_kernel_loop_direct_io",
        run: fs_tests::on_kernel_loop,
    },
    Case {
        name: "loop_flush_and_fua_reach_backing",
        run: loop_tests::flush_and_fua_reach_backing,
    },
    Case {
        name: "loop_backing_errors_eio",
        run: loop_tests::backing_errors_eio,
    },
    Case {
        name: "loop_large_logical_blocks",
        run: loop_tests::large_logical_blocks,
    },
    Case {
        name: "loop_read_only",
        run: loop_tests::read_only,
    },
    Case {
        name: "loop_removal_while_open_and_busy",
        run: loop_tests::removal_while_open_and_busy,
    },
    Case {
        name: "loop_bad_arguments",
        run: loop_tests::bad_arguments,
    },
    Case {
        name: "loop_huge_page_buffers",
        run: loop_tests::huge_page_buffers,
    },
    Case {
        name: "stack_swap_device_refused",
        run: stack_tests::swap_device_refused,
    },
    Case {
        name: "stack_backing_made_read_only",
        run: stack_tests::backing_made_read_only,
    },
    Case {
        name: "stack_features_stacked_zoned_refused",
        run: stack_tests::features_stacked_zoned_refused,
    },
    Case {
        name: "stack_discard_and_write_zeroes_in_window",
        run: stack_tests::discard_and_write_zeroes_in_window,
    },
    Case {
        name: "stack_request_flags_kept",
        run: stack_tests::request_flags_kept,
    },
    Case {
        name: "stack_nowait_reads_eagain",
        run: stack_tests::nowait_reads_eagain,
    },
    Case {
        name: "stack_unprivileged_refused",
        run: stack_tests::unprivileged_refused,
    },
    Case {
        name: "stack_three_deep_under_parallel_io",
        run: stack_tests::three_deep_under_parallel_io,
    },
    Case {
        name: "stack_split_many_times_no_hang",
        run: stack_tests::split_many_times_no_hang,
    },
    Case {
        name: "dio_pins_every_page",
        run: review_tests::dio_pins_every_page,
    },
    Case {
        name: "iovec_one_segment",
        run: review_tests::iovec_one_segment,
    },
    Case {
        name: "iovec_empty_segments",
        run: review_tests::iovec_empty_segments,
    },
    Case {
        name: "pin_zero_bytes_keeps_no_handle",
        run: review_tests::pin_zero_bytes_keeps_no_handle,
    },
    Case {
        name: "dio_swap_device_etxtbsy",
        run: review_tests::dio_swap_device_etxtbsy,
    },
    Case {
        name: "dio_above_max_rw_count_einval",
        run: review_tests::dio_above_max_rw_count_einval,
    },
    Case {
        name: "dio_large_logical_block",
        run: review_tests::dio_large_logical_block,
    },
    Case {
        name: "dio_batch_without_high_order_pages",
        run: review_tests::dio_batch_without_high_order_pages,
    },
    Case {
        name: "dio_multi_bio_read_waits_for_every_bio",
        run: review_tests::dio_multi_bio_read_waits_for_every_bio,
    },
    Case {
        name: "dio_read_dirties_the_pages_it_filled",
        run: review_tests::dio_read_dirties_the_pages_it_filled,
    },
    Case {
        name: "fault_injection_sweep",
        run: stress_tests::fault_injection_sweep,
    },
    Case {
        name: "mm_races_during_io",
        run: stress_tests::mm_races_during_io,
    },
    Case {
        name: "mm_races_while_pinned",
        run: stress_tests::mm_races_while_pinned,
    },
    Case {
        name: "fuzz_short",
        run: fuzz_short,
    },
    // Last: the rmmod after the suite must remove the device it leaves.
    Case {
        name: "loop_left_for_module_unload",
        run: loop_tests::left_for_module_unload,
    },
    Case {
        name: "device_node_mode_0600",
        run: device_node,
    },
    Case {
        name: "version",
        run: version,
    },
    Case {
        name: "unknown_ioctl_enotty",
        run: unknown_ioctl_enotty,
    },
    Case {
        name: "version_short_struct_einval",
        run: version_short_struct_einval,
    },
    Case {
        name: "version_oversized_struct",
        run: version_oversized_struct,
    },
    Case {
        name: "version_bad_pointer_efault",
        run: version_bad_pointer_efault,
    },
];

/// The fixed-seed fuzz run of `make test` (`make fuzz` runs long ones).
fn fuzz_short() -> Result<()> {
    let args = ["--seed", "1", "--ops", "3000", "--race", "200"].map(String::from);
    ensure!(fuzz::main(&args)?, "the fuzzer found a failure (see above)");
    Ok(())
}

/// After every case: every pin taken was released.
fn pin_balance() -> Result<()> {
    let (acquired, released) = pindio::foll_pin_counts()?;
    ensure!(
        acquired == released,
        "pin balance: nr_foll_pin_acquired {acquired} != nr_foll_pin_released {released}"
    );
    Ok(())
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).collect();
    if filter.first().map(String::as_str) == Some("fuzz") {
        let code = match fuzz::main(&filter[1..]) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(err) => {
                println!("# fuzz: {err:#}");
                1
            }
        };
        std::process::exit(code);
    }
    let failed = ktap::run(CASES, &filter, pin_balance);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
