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
/// The device number of `/dev/vdc`, the guest's throttled disk (an I/O stays in flight for about
/// 200 ms), looked up when the module loads (0 if it was missing).
static VDC: Atomic<u32> = Atomic::new(0);

/// Looks up the suite's devices from the module's init, in the context of the process loading
/// it: KUnit runs the cases in kernel threads, whose root may not see the guest's `/dev`.
pub(crate) fn find_devices() {
    for (path, devt) in [(c"/dev/nullb0", &NULLB0), (c"/dev/vdc", &VDC)] {
        let mut found = 0;
        // SAFETY: The path is NUL-terminated and `found` is valid for writes.
        if unsafe { bindings::lookup_bdev(path.as_char_ptr(), &mut found) } == 0 {
            devt.store(found, Relaxed);
        }
    }
}

#[kunit_tests(pindio_dio)]
mod tests {
    use crate::abi::DioRequest;
    use crate::abstractions::{
        bio::{AddPage, Bio, InFlight, Opf},
        block::BlockFile,
        pages::{FromDevice, HeapSlots, IoPage, KernelPages, LentPage, ToDevice, UserRange},
        pinned::PinnedVec,
    };
    use crate::dio::{self, DioDir, Prepared, Target};
    use crate::ffi::helpers::{BLK_OPEN_READ, BLK_OPEN_WRITE};
    use crate::plan::{BioPlanner, DevLimits};
    use crate::user_mem::{self, pattern};
    use core::ptr::NonNull;
    use kernel::{
        alloc::flags::__GFP_ZERO,
        bindings,
        fs::LocalFile,
        page::{Page, PAGE_SIZE},
        prelude::*,
        sync::{
            aref::ARef,
            atomic::{Atomic, Relaxed},
        },
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
            pr_err!("the device did not exist when the suite was loaded\n");
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

    /// The general path's I/O `req` at `pos` of `file` with the test's user memory `buf` (`len`
    /// bytes, or iovec segments), checked and pinned, in the direction `req.write` says.
    fn prepare(
        file: &ARef<LocalFile>,
        req: DioRequest,
        pos: u64,
        buf: UserPtr,
        len: u64,
    ) -> Result<Prepared> {
        if req.write {
            Prepared::new(
                Target::<ToDevice>::from_file(file.clone())?,
                req,
                pos,
                buf,
                len,
            )
        } else {
            Prepared::new(
                Target::<FromDevice>::from_file(file.clone())?,
                req,
                pos,
                buf,
                len,
            )
        }
    }

    /// One direct I/O of the general path, of `len` bytes at `pos` of `file` with the test's
    /// user memory `buf`.
    fn dio(
        write: bool,
        file: &ARef<LocalFile>,
        pos: u64,
        buf: kernel::uaccess::UserPtr,
        len: usize,
    ) -> Result<usize> {
        let req = DioRequest {
            write,
            fua: false,
            iovec: None,
        };
        prepare(file, req, pos, buf, len.try_into()?)?
            .submit()?
            .finish()
    }

    #[test]
    fn real_bio_round_trip_on_null_blk() -> Result {
        // The guest makes /dev/nullb0 (memory-backed) before loading this suite.
        let file = open_bdev(super::NULLB0.load(Relaxed))
            .inspect_err(|e| pr_err!("open /dev/nullb0: {e:?}\n"))?;
        // 18 pages: more than the simple path takes.
        let len = 64 * 1024 + 4096;
        let buf = user_mem::map(len + PAGE_SIZE)?.wrapping_byte_add(512);
        user_mem::fill(buf, len)?;
        let pos = 200 << 20;
        let n = dio(true, &file, pos, buf, len).inspect_err(|e| pr_err!("write: {e:?}\n"))?;
        assert_eq!(n, len);
        user_mem::put(buf, &KVec::from_elem(0u8, len, GFP_KERNEL)?)?;
        let n = dio(false, &file, pos, buf, len)?;
        assert_eq!(n, len);
        let back = user_mem::get(buf, len)?;
        assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        // Misaligned: refused before anything is pinned.
        let misaligned = dio(false, &file, pos + 100, buf, len);
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
        if write {
            simple_in::<ToDevice>(file, pos, buf, len)
        } else {
            simple_in::<FromDevice>(file, pos, buf, len)
        }
    }

    /// [`simple`] in direction `D`.
    fn simple_in<D: DioDir>(
        file: &ARef<LocalFile>,
        pos: u64,
        buf: UserPtr,
        len: usize,
    ) -> Result<usize> {
        let target = Target::<D>::from_file(file.clone())?;
        let range = UserRange::<D>::new(buf, len)?;
        dio::simple(&target, false, pos, &range)
    }

    #[test]
    fn simple_round_trips_and_refusals() -> Result {
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let buf = user_mem::map(21 * PAGE_SIZE)?;
        let pos = 150 << 20;
        // 3 KiB inside one page; 64 KiB from the middle of a page: 17 pages, the most that
        // go on the stack; 72 KiB from there: 19 pages, slots and vectors allocated.
        for (at, len) in [
            (512, 3072),
            (PAGE_SIZE / 2, 64 * 1024),
            (PAGE_SIZE / 2, 72 * 1024),
        ] {
            let b = buf.wrapping_byte_add(at);
            user_mem::fill(b, len)?;
            assert_eq!(simple(true, &file, pos, b, len)?, len);
            user_mem::put(b, &KVec::from_elem(0u8, len, GFP_KERNEL)?)?;
            assert_eq!(simple(false, &file, pos, b, len)?, len);
            let back = user_mem::get(b, len)?;
            assert!(back.iter().enumerate().all(|(i, &x)| x == pattern(i)));
        }
        // 1 MiB from 512 bytes into a page: 257 pages, more than one bio takes, refused before
        // anything is pinned (the range is not even mapped).
        let big = simple(false, &file, pos, buf.wrapping_byte_add(512), 1 << 20);
        assert_eq!(big.err(), Some(EINVAL));
        // A misaligned device offset.
        assert_eq!(
            simple(false, &file, pos + 100, buf, 4096).err(),
            Some(EINVAL)
        );
        // A hole in the buffer: EFAULT, and the pages before it are released (the guest checks
        // the pin balance after the suite), on the stack and on the heap.
        user_mem::unmap(buf.wrapping_byte_add(20 * PAGE_SIZE), PAGE_SIZE)?;
        for len in [8192, 20 * PAGE_SIZE] {
            let at = buf.wrapping_byte_add(21 * PAGE_SIZE - len);
            assert_eq!(simple(false, &file, pos, at, len).err(), Some(EFAULT));
        }
        Ok(())
    }

    /// Set by the drop of a [`ReadProbe`]: 1 if its page held the data the read was to bring,
    /// 2 if not (the page would have been freed under the read).
    static PROBE: Atomic<u32> = Atomic::new(0);

    /// A page a read fills, and the device it reads from: what an [`InFlight`] owns for its bio.
    struct ReadProbe {
        dev: BlockFile<'static>,
        page: LentPage<FromDevice>,
    }

    impl Drop for ReadProbe {
        fn drop(&mut self) {
            let mut got = [0u8; 64];
            // SAFETY: `got` has room for 64 bytes of the page; nothing writes the page now if
            // the `InFlight` waited for its bio, and if it did not, the test fails anyway.
            let read = unsafe { self.page.read_raw(got.as_mut_ptr(), 0, got.len()) };
            let ok = read.is_ok() && got.iter().enumerate().all(|(i, &b)| b == pattern(i));
            PROBE.store(if ok { 1 } else { 2 }, Relaxed);
        }
    }

    #[test]
    fn a_forgotten_in_flight_io_is_still_waited_for() -> Result {
        // A read of /dev/vdc stays in flight for about 200 ms. The pinned reference to the
        // `InFlight` on the stack that owns its page is forgotten, which safe code may do; that
        // forgets nothing (the value on the stack is still dropped at the end of its scope),
        // and the drop must wait for the bio: the page is dropped after the data arrived, and
        // KASAN stays silent. (`a_forgotten_boxed_in_flight_io_keeps_its_memory` forgets a box.)
        let file = open_bdev(super::VDC.load(Relaxed))?;
        let buf = user_mem::map(PAGE_SIZE)?;
        user_mem::fill(buf, PAGE_SIZE)?;
        assert_eq!(simple(true, &file, 0, buf, PAGE_SIZE)?, PAGE_SIZE);
        let probe = ReadProbe {
            dev: BlockFile::owned(file)?,
            page: LentPage::new(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?),
        };
        PROBE.store(0, Relaxed);
        {
            stack_pin_init!(let io = InFlight::new(probe, |p, sub| {
                let mut bio = Bio::alloc(&p.dev, 1, Opf::sync_read(), 0)?;
                bio.add_page(&p.page.io_page(), PAGE_SIZE, 0)?;
                sub.submit(bio);
                Ok(())
            }));
            #[allow(
                clippy::forget_non_drop,
                reason = "forgetting what safe code holds of a pinned value is the point"
            )]
            core::mem::forget(io);
            assert_eq!(PROBE.load(Relaxed), 0);
        }
        assert_eq!(PROBE.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn a_forgotten_boxed_in_flight_io_keeps_its_memory() -> Result {
        // The same read, owned by a `Pin<KBox<InFlight>>` that is forgotten for real: its drop
        // never runs and its memory is never freed, so the bio completes into memory that is
        // still allocated (KASAN would report a write into freed memory) and the probe's page
        // is not dropped. The test then frees it as the box would have been, which waits.
        let file = open_bdev(super::VDC.load(Relaxed))?;
        let probe = ReadProbe {
            dev: BlockFile::owned(file)?,
            page: LentPage::new(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?),
        };
        PROBE.store(0, Relaxed);
        let io = KBox::pin_init(
            InFlight::new(probe, |p, sub| {
                let mut bio = Bio::alloc(&p.dev, 1, Opf::sync_read(), 0)?;
                bio.add_page(&p.page.io_page(), PAGE_SIZE, 0)?;
                sub.submit(bio);
                Ok(())
            }),
            GFP_KERNEL,
        )?;
        let raw = core::ptr::from_ref::<InFlight<ReadProbe>>(&io).cast_mut();
        core::mem::forget(io);
        // The read of /dev/vdc takes about 200 ms: wait well past it.
        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(600));
        assert_eq!(PROBE.load(Relaxed), 0);
        // SAFETY: `raw` is the forgotten box's allocation, never freed, pinned; rebuilding the
        // box once gives it back its owner, whose drop waits for the bio, then frees it.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(raw)) });
        assert_eq!(PROBE.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn a_pinned_vec_holds_what_it_was_made_for() -> Result {
        let mut v = PinnedVec::<u64>::with_capacity(2)?;
        v.push(1u64)?;
        v.push(2u64)?;
        // Full: never grown, so nothing it holds moves.
        assert_eq!(v.push(3u64).err(), Some(ENOSPC));
        let mut held = v.iter_mut().map(|x| *x);
        assert_eq!(
            (held.next(), held.next(), held.next()),
            (Some(1), Some(2), None)
        );
        Ok(())
    }

    #[test]
    fn an_owned_bio_is_submitted_and_waited_for() -> Result {
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let buf = user_mem::map(PAGE_SIZE)?;
        user_mem::fill(buf, PAGE_SIZE)?;
        let pos = 160 << 20;
        assert_eq!(simple(true, &file, pos, buf, PAGE_SIZE)?, PAGE_SIZE);
        let dev = BlockFile::owned(file)?;
        let mut page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
        let lent = IoPage::exclusive(&mut page);
        let mut bio = Bio::alloc(&dev, 1, Opf::sync_read(), pos >> 9)?;
        // Past the page, or empty: refused.
        assert_eq!(
            bio.add_page(&lent, 512, PAGE_SIZE - 256).err(),
            Some(EINVAL)
        );
        assert_eq!(bio.add_page(&lent, 0, 0).err(), Some(EINVAL));
        bio.add_page(&lent, PAGE_SIZE, 0)?;
        bio.submit_wait()?;
        let mut got = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
        // SAFETY: `got` has room for a page; the read completed, nothing writes the page.
        unsafe { page.read_raw(got.as_mut_ptr(), 0, PAGE_SIZE)? };
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        Ok(())
    }

    #[test]
    fn a_huge_folio_is_one_vector() -> Result {
        // 2 MiB of kmalloc: a large kmalloc is one compound page (a folio of order 9), so its
        // 512 pages continue each other in memory and `bio_add_page` merges them into one
        // vector, as it does for a THP or hugetlb page of user memory.
        const LEN: usize = 2 << 20;
        let dev = BlockFile::owned(open_bdev(super::NULLB0.load(Relaxed))?)?;
        let mut buf = KVec::with_capacity(LEN, GFP_KERNEL)?;
        for i in 0..LEN {
            buf.push(pattern(i), GFP_KERNEL)?;
        }
        let pos: u64 = 192 << 20;
        {
            let mut pages = KernelPages::from_slices(&[&buf[..]])?;
            let batch = pages
                .next_batch(HeapSlots::new(LEN / PAGE_SIZE)?)?
                .ok_or(EINVAL)?;
            assert_eq!(batch.nr_pages(), LEN / PAGE_SIZE);
            let mut bio = Bio::alloc(&dev, 256, Opf::sync_write(false), pos >> 9)?;
            bio.add_batch(&batch)?;
            assert_eq!(bio.nr_vecs(), 1);
            bio.submit_wait()?;
        }
        // Read back into another one, the same way.
        let mut back = KVec::from_elem(0u8, LEN, GFP_KERNEL)?;
        {
            let mut dst = [&mut back[..]];
            let mut pages = KernelPages::from_slices_mut(&mut dst)?;
            let batch = pages
                .next_batch(HeapSlots::new(LEN / PAGE_SIZE)?)?
                .ok_or(EINVAL)?;
            let mut bio = Bio::alloc(&dev, 256, Opf::sync_read(), pos >> 9)?;
            bio.add_batch(&batch)?;
            assert_eq!(bio.nr_vecs(), 1);
            bio.submit_wait()?;
        }
        assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i)));
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
            let io = prepare(&file, req, pos, uvec, 1)?;
            assert_eq!(io.submit()?.finish()?, len);
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
        let io = prepare(file, req, pos, buf, len.try_into()?)?;
        between()?;
        io.submit()?.finish()
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
        assert_eq!(dio(true, &file, pos, buf, len)?, len);
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
    fn a_write_drops_cached_pages_before_its_bios() -> Result {
        // Pages of the range cached by a buffered read before a direct write are gone once its
        // checks ran, before its bios (the invalidation before a direct write, as
        // kiocb_invalidate_pages does; the one after it cannot stand in for it: a reader
        // could otherwise be served the old bytes while the write is in flight).
        let file = open_bdev(super::NULLB0.load(Relaxed))?;
        let len = 2 * PAGE_SIZE;
        let buf = user_mem::map(len)?;
        let pos = 172 << 20;
        user_mem::fill(buf, len)?;
        let first = i64::try_from(pos)?;
        let last = first + i64::try_from(len)? - 1;
        // SAFETY: The file is an open block device: its mapping is valid while it is open.
        let cached =
            || unsafe { bindings::filemap_range_has_page((*file.as_ptr()).f_mapping, first, last) };
        buffered_read(&file, pos, len)?;
        assert!(cached());
        let n = write_with_between(&file, pos, buf, len, || {
            assert!(!cached());
            Ok(())
        })?;
        assert_eq!(n, len);
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
