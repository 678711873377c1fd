// SPDX-License-Identifier: GPL-2.0

//! KUnit suite for the direct-I/O path: the pure planning logic of `src/plan.rs` (pages into
//! bios under the device's limits and alignment), and one real bio round trip through
//! `src/dio.rs` on the guest's memory-backed null_blk device, opened by the suite itself.

use kernel::{
    bindings,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
};

/// The device number of `/dev/nullb0`, looked up when the module loads (0 if it was missing).
static NULLB0: Atomic<u32> = Atomic::new(0);

/// Looks up `/dev/nullb0` from the module's init, in the context of the process loading it:
/// KUnit runs the cases in kernel threads, whose root may not see the guest's `/dev`.
pub(crate) fn find_devices() {
    let mut devt = 0;
    // SAFETY: The path is NUL-terminated and `devt` is valid for writes.
    if unsafe { bindings::lookup_bdev(c"/dev/nullb0".as_char_ptr(), &mut devt) } == 0 {
        NULLB0.store(devt, Relaxed);
    }
}

#[kunit_tests(pindio_dio)]
mod tests {
    use crate::abi::DioRequest;
    use crate::dio::{self, Dio, Lent, Spare, Target};
    use crate::extract::UserRange;
    use crate::ffi::helpers::{BLK_OPEN_READ, BLK_OPEN_WRITE};
    use crate::plan::{BioPlanner, DevLimits};
    use crate::user_mem::{self, pattern};
    use core::ptr::NonNull;
    use kernel::{
        bindings,
        fs::LocalFile,
        new_spinlock,
        page::PAGE_SIZE,
        prelude::*,
        sync::{aref::ARef, atomic::Relaxed},
        uaccess::UserPtr,
    };
    use pin_init::stack_pin_init;

    const LIMITS: DevLimits = DevLimits {
        lbs: 512,
        dma_mask: 511,
        dev_bytes: 1 << 20,
    };

    #[test]
    fn range_and_segment_checks() {
        assert!(LIMITS.check_range(0, 512));
        assert!(LIMITS.check_range((1 << 20) - 512, 512));
        assert!(!LIMITS.check_range((1 << 20) - 512, 1024));
        assert!(!LIMITS.check_range(0, 0));
        assert!(!LIMITS.check_range(256, 512));
        assert!(!LIMITS.check_range(u64::MAX - 511, 1024));
        assert!(LIMITS.check_segment(0x1200, 1536));
        assert!(!LIMITS.check_segment(0x1201, 512));
        assert!(!LIMITS.check_segment(0x1200, 500));
    }

    /// Bytes of each bio when `pieces` (page pieces in order) are cut into bios of `max_vecs`.
    fn cut(pieces: &[usize], lbs: usize, max_vecs: usize, bios: &mut KVec<usize>) -> Result {
        let mut p = BioPlanner::new(lbs, PAGE_SIZE).ok_or(EINVAL)?;
        let mut open = false;
        for &piece in pieces {
            let mut len = piece;
            while len > 0 {
                if !open {
                    p.open(max_vecs);
                    open = true;
                }
                let (take, full) = p.place(len).ok_or(EINVAL)?;
                len -= take;
                if full {
                    bios.push(p.bytes(), GFP_KERNEL)?;
                    open = false;
                }
            }
        }
        if open {
            bios.push(p.bytes(), GFP_KERNEL)?;
        }
        Ok(())
    }

    #[test]
    fn bios_fill_to_max_vecs() -> Result {
        let pieces = [PAGE_SIZE; 600];
        let mut bios = KVec::new();
        cut(&pieces, 512, 256, &mut bios)?;
        assert_eq!(bios[..], [256 * PAGE_SIZE, 256 * PAGE_SIZE, 88 * PAGE_SIZE]);
        Ok(())
    }

    #[test]
    fn bios_end_on_block_boundaries() -> Result {
        // A 4 KiB-block device and memory starting 512 bytes before a page end: pieces of 512,
        // then whole pages, then 3584; bios of 3 vectors are cut inside pages.
        let mut pieces = KVec::new();
        pieces.push(512, GFP_KERNEL)?;
        for _ in 0..9 {
            pieces.push(PAGE_SIZE, GFP_KERNEL)?;
        }
        pieces.push(PAGE_SIZE - 512, GFP_KERNEL)?;
        let mut bios = KVec::new();
        cut(&pieces, 4096, 3, &mut bios)?;
        assert_eq!(bios.iter().sum::<usize>(), 10 * PAGE_SIZE);
        assert!(bios.iter().all(|&b| b > 0 && b % 4096 == 0));
        assert_eq!(bios[0], 2 * 4096);
        Ok(())
    }

    /// Opens the block device `devt` for reading and writing.
    fn open_bdev(devt: u32) -> Result<ARef<LocalFile>> {
        if devt == 0 {
            pr_err!("/dev/nullb0 did not exist when the suite was loaded\n");
            return Err(ENODEV);
        }
        // SAFETY: No holder, no ops: a plain open of the device number.
        let f = unsafe {
            bindings::bdev_file_open_by_dev(
                devt,
                BLK_OPEN_READ | BLK_OPEN_WRITE,
                core::ptr::null_mut(),
                core::ptr::null(),
            )
        };
        if f.is_null() {
            return Err(ENODEV);
        }
        kernel::error::from_err_ptr(f)?;
        let f = NonNull::new(f).ok_or(ENODEV)?;
        // SAFETY: bdev_file_open_by_path returned a file with one reference, which the `ARef`
        // takes over (fput on drop); `LocalFile` is a transparent wrapper of `struct file`.
        Ok(unsafe { ARef::from_raw(f.cast()) })
    }

    /// One direct I/O of `len` bytes at `pos` of `target` with the test's user memory `buf`,
    /// borrowing the memory of `spare` if given.
    fn dio(
        write: bool,
        target: Target<'_>,
        pos: u64,
        buf: kernel::uaccess::UserPtr,
        len: usize,
        spare: Option<&Spare>,
    ) -> Result<usize> {
        let req = DioRequest {
            write,
            fua: false,
            iovec: None,
        };
        let mut lent = spare.map(Lent::from);
        dio::stack_dio_ctx!(let ctx);
        let mut io = Dio::new(req, target, pos, ctx);
        io.prepare(buf, len.try_into()?, lent.as_mut())?;
        dio::plugged(|| io.submit());
        io.finish()
    }

    #[test]
    fn real_bio_round_trip_on_null_blk() -> Result {
        // The guest makes /dev/nullb0 (memory-backed) before loading this suite.
        let file = open_bdev(super::NULLB0.load(Relaxed))
            .inspect_err(|e| pr_err!("open /dev/nullb0: {e:?}\n"))?;
        // 18 pages: more than the context's own vectors, so the write borrows a file's spare
        // memory (which it gives back) and the read allocates its slots and bio.
        let len = 64 * 1024 + 4096;
        let buf = user_mem::map(len + PAGE_SIZE)?.wrapping_byte_add(512);
        user_mem::fill(buf, len)?;
        let pos = 200 << 20;
        let target =
            Target::from_file(file.clone(), true).inspect_err(|e| pr_err!("target: {e:?}\n"))?;
        stack_pin_init!(let spare = new_spinlock!(None));
        let n = dio(true, target, pos, buf, len, Some(&spare))
            .inspect_err(|e| pr_err!("write: {e:?}\n"))?;
        assert_eq!(n, len);
        assert!(spare.lock().is_some());
        user_mem::put(buf, &KVec::from_elem(0u8, len, GFP_KERNEL)?)?;
        let n = dio(
            false,
            Target::from_file(file.clone(), false)?,
            pos,
            buf,
            len,
            None,
        )?;
        assert_eq!(n, len);
        let back = user_mem::get(buf, len)?;
        assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        // Misaligned: refused before anything is pinned.
        let misaligned = dio(
            false,
            Target::from_file(file, false)?,
            pos + 100,
            buf,
            len,
            None,
        );
        assert_eq!(misaligned.err(), Some(EINVAL));
        Ok(())
    }

    /// [`dio::simple`]: `len` bytes at `pos` of `file` with the test's user memory `buf`.
    fn simple(
        write: bool,
        file: &ARef<LocalFile>,
        pos: u64,
        buf: UserPtr,
        len: usize,
    ) -> Result<usize> {
        let req = DioRequest {
            write,
            fua: false,
            iovec: None,
        };
        let target = Target::from_file(file.clone(), write)?;
        let range = UserRange::new(buf, len, dio::mem_dir(write))?;
        dio::stack_dio_ctx!(let ctx);
        dio::simple(&target, req, pos, &range, ctx)
    }

    #[test]
    fn simple_round_trips_and_refusals() -> Result {
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let buf = user_mem::map(19 * PAGE_SIZE)?;
        let pos = 150 << 20;
        // 3 KiB inside one page, and 64 KiB from the middle of a page: 17 pages, the most the
        // context's inline bio takes.
        for (at, len) in [(512, 3072), (PAGE_SIZE / 2, 64 * 1024)] {
            let b = buf.wrapping_byte_add(at);
            user_mem::fill(b, len)?;
            assert_eq!(simple(true, &file, pos, b, len)?, len);
            user_mem::put(b, &KVec::from_elem(0u8, len, GFP_KERNEL)?)?;
            assert_eq!(simple(false, &file, pos, b, len)?, len);
            let back = user_mem::get(b, len)?;
            assert!(back.iter().enumerate().all(|(i, &x)| x == pattern(i)));
        }
        // 18 pages: more than the context's slots, refused before anything is pinned.
        let big = simple(
            false,
            &file,
            pos,
            buf.wrapping_byte_add(512),
            17 * PAGE_SIZE,
        );
        assert_eq!(big.err(), Some(EINVAL));
        // A misaligned device offset.
        assert_eq!(
            simple(false, &file, pos + 100, buf, 4096).err(),
            Some(EINVAL)
        );
        // A hole in the buffer: EFAULT, and the page before it is released (the guest checks
        // the pin balance after the suite).
        user_mem::unmap(buf.wrapping_byte_add(18 * PAGE_SIZE), PAGE_SIZE)?;
        let holed = simple(
            false,
            &file,
            pos,
            buf.wrapping_byte_add(17 * PAGE_SIZE),
            8192,
        );
        assert_eq!(holed.err(), Some(EFAULT));
        Ok(())
    }

    /// A 4 KiB read at `pos` of `target` into `buf`, submitted by `steps` in order (true:
    /// `Dio::submit` under a plug, false: `Dio::submit_wait`), then finished.
    fn dio_steps(
        target: Target<'_>,
        pos: u64,
        buf: kernel::uaccess::UserPtr,
        steps: &[bool],
    ) -> Result<usize> {
        let req = DioRequest {
            write: false,
            fua: false,
            iovec: None,
        };
        dio::stack_dio_ctx!(let ctx);
        let mut io = Dio::new(req, target, pos, ctx);
        io.prepare(buf, 4096, None)?;
        for &plugged in steps {
            if plugged {
                dio::plugged(|| io.submit());
            } else {
                io.submit_wait();
            }
        }
        io.finish()
    }

    #[test]
    fn a_second_submission_is_refused() -> Result {
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let buf = user_mem::map(PAGE_SIZE)?;
        let pos = 100 << 20;
        // Each way alone transfers the bytes.
        for steps in [[true], [false]] {
            let n = dio_steps(Target::from_file(file.clone(), false)?, pos, buf, &steps)?;
            assert_eq!(n, 4096);
        }
        // Either way after the other is EBUSY; the bio already out is still waited for before
        // the pins go (the guest checks the pin balance after the suite).
        for steps in [[true, false], [false, true]] {
            let r = dio_steps(Target::from_file(file.clone(), false)?, pos, buf, &steps);
            assert_eq!(r.err(), Some(EBUSY));
        }
        Ok(())
    }

    #[test]
    fn one_segment_iovec_round_trip() -> Result {
        // `PINDIO_DIO_IOVEC` with one segment (it oopsed in import_iovec): written from the
        // pattern, then read back into zeroed memory through the same iovec.
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let buf = user_mem::map(6 * PAGE_SIZE)?;
        let uvec = buf.wrapping_byte_add(5 * PAGE_SIZE);
        let data = buf.wrapping_byte_add(512);
        let len = 4 * PAGE_SIZE;
        user_mem::fill(data, len)?;
        user_mem::put_iovec(uvec, &[(data.as_const_ptr() as usize, len)])?;
        let pos = 180 << 20;
        for write in [true, false] {
            if !write {
                user_mem::put(data, &KVec::from_elem(0u8, len, GFP_KERNEL)?)?;
            }
            let req = DioRequest {
                write,
                fua: false,
                iovec: Some(1),
            };
            dio::stack_dio_ctx!(let ctx);
            let mut io = Dio::new(req, Target::from_file(file.clone(), write)?, pos, ctx);
            io.prepare(uvec, 1, None)?;
            dio::plugged(|| io.submit());
            assert_eq!(io.finish()?, len);
        }
        let back = user_mem::get(data, len)?;
        assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        Ok(())
    }

    /// A direct write of `len` bytes of `buf` at `pos` of `file`, with `between` run after its
    /// checks (which made the page cache coherent) and before its bios; the bytes written.
    fn write_with_between(
        file: &ARef<LocalFile>,
        pos: u64,
        buf: UserPtr,
        len: usize,
        between: impl FnOnce() -> Result,
    ) -> Result<usize> {
        let req = DioRequest {
            write: true,
            fua: false,
            iovec: None,
        };
        dio::stack_dio_ctx!(let ctx);
        let mut io = Dio::new(req, Target::from_file(file.clone(), true)?, pos, ctx);
        io.prepare(buf, u64::try_from(len)?, None)?;
        between()?;
        dio::plugged(|| io.submit());
        io.finish()
    }

    /// `len` bytes at `pos` of `file` read through the page cache (`kernel_read`).
    fn buffered_read(file: &ARef<LocalFile>, pos: u64, len: usize) -> Result<KVec<u8>> {
        let mut out = KVec::from_elem(0u8, len, GFP_KERNEL)?;
        let mut off = i64::try_from(pos)?;
        // SAFETY: The file is an open block device, readable; `out` has room for `len` bytes.
        let n =
            unsafe { bindings::kernel_read(file.as_ptr(), out.as_mut_ptr().cast(), len, &mut off) };
        if usize::try_from(n).ok() != Some(len) {
            return Err(EIO);
        }
        Ok(out)
    }

    #[test]
    fn a_write_drops_pages_cached_while_it_ran() -> Result {
        // A buffered reader caches the old bytes between the checks of a write (which
        // invalidated the cache before it) and its bios: after the write, the cache must not
        // serve them any more (the invalidation after a direct write).
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let len = 2 * PAGE_SIZE;
        let buf = user_mem::map(len)?;
        let pos = 170 << 20;
        user_mem::put(buf, &KVec::from_elem(0u8, len, GFP_KERNEL)?)?;
        assert_eq!(
            dio(
                true,
                Target::from_file(file.clone(), true)?,
                pos,
                buf,
                len,
                None
            )?,
            len
        );
        user_mem::fill(buf, len)?;
        let n = write_with_between(&file, pos, buf, len, || {
            let old = buffered_read(&file, pos, len)?;
            assert!(old.iter().all(|&b| b == 0));
            Ok(())
        })?;
        assert_eq!(n, len);
        let new = buffered_read(&file, pos, len)?;
        assert!(new.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        Ok(())
    }

    #[test]
    fn a_failed_invalidation_after_a_write_is_reported_by_fsync() -> Result {
        // A buffered write dirties a cached page of the range between the checks of a direct
        // write (which invalidated the cache) and its bios: the invalidation after the write
        // cannot drop that page. The cache may now hold stale data; as
        // dio_warn_stale_pagecache() does, the next fsync must say so, once.
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let len = PAGE_SIZE;
        let buf = user_mem::map(len)?;
        let pos = 175 << 20;
        user_mem::fill(buf, len)?;
        let n = write_with_between(&file, pos, buf, len, || {
            let dirty = [0x77u8; 512];
            let mut off = i64::try_from(pos)?;
            // SAFETY: The file is an open block device, writable; `dirty` has 512 bytes.
            let n = unsafe {
                bindings::kernel_write(file.as_ptr(), dirty.as_ptr().cast(), 512, &mut off)
            };
            assert_eq!(n, 512);
            Ok(())
        })?;
        assert_eq!(n, len);
        // SAFETY: An open file.
        let first = unsafe { bindings::vfs_fsync(file.as_ptr(), 0) };
        // SAFETY: As above.
        let second = unsafe { bindings::vfs_fsync(file.as_ptr(), 0) };
        assert_eq!((first, second), (EIO.to_errno(), 0));
        Ok(())
    }
}
