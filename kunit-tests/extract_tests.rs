// SPDX-License-Identifier: GPL-2.0

//! KUnit suite for `src/extract.rs`: listing kernel pages, pinning user pages, releasing them.
//! Modelled on `lib/tests/kunit_iov_iter.c`.

use kernel::prelude::*;

#[kunit_tests(pindio_extract)]
mod tests {
    use crate::abstractions::pages::{
        Batch, Direction, FromDevice, HeapSlots, IoPage, KernelPages, PageSlots, Release,
        StackSlots, ToDevice, UserPages, UserRange,
    };

    /// Pages of the stack slots the cases use.
    const STACK_PAGES: usize = 16;
    use crate::ffi::helpers::pindio_page_maybe_dma_pinned;
    use crate::user_mem::{self, pattern};
    use kernel::{
        bindings,
        page::{Page, PAGE_SIZE},
        prelude::*,
        uaccess::UserPtr,
    };

    /// Whether `page` holds FOLL_PIN pins.
    fn pinned(page: *mut bindings::page) -> bool {
        // SAFETY: The callers pass pages that are still mapped (and so valid) in the test's mm or
        // owned by the test.
        unsafe { pindio_page_maybe_dma_pinned(page) }
    }

    /// Walks `batch`, checks each segment's bytes against `expect(byte_index)`, and returns the
    /// raw pages (to check their pin state after the batch is gone) and the bytes covered.
    fn walk<S: PageSlots, R: Release>(
        batch: &mut Batch<S, R>,
        start: usize,
        expect: impl Fn(usize) -> u8,
        pages: &mut KVec<*mut bindings::page>,
    ) -> Result<usize> {
        let mut at = start;
        let mut buf = [0u8; PAGE_SIZE];
        for (page, offset, len) in batch.segments() {
            // SAFETY: `buf` has room for `len <= PAGE_SIZE` bytes; nothing writes the page now.
            unsafe { page.read_raw(buf.as_mut_ptr(), offset, len)? };
            for (i, b) in buf[..len].iter().enumerate() {
                if *b != expect(at + i) {
                    pr_err!(
                        "byte {} is {:#x}, expected {:#x}\n",
                        at + i,
                        b,
                        expect(at + i)
                    );
                    return Err(EINVAL);
                }
            }
            pages.push(page.as_ptr(), GFP_KERNEL)?;
            at += len;
        }
        Ok(at - start)
    }

    #[test]
    fn kvec_lists_pages_and_pins_nothing() -> Result {
        let mut buf = KVec::with_capacity(3 * PAGE_SIZE + 123, GFP_KERNEL)?;
        for i in 0..3 * PAGE_SIZE + 123 {
            buf.push(pattern(i), GFP_KERNEL)?;
        }
        let mut src = KernelPages::from_slices(&[&buf[5..]])?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut done = 0;
        while let Some(mut batch) = src.next_batch(&mut slots)? {
            done += walk(&mut batch, 5 + done, pattern, &mut pages)?;
            assert!(!pages.iter().any(|&p| pinned(p)));
        }
        assert_eq!(done, buf.len() - 5);
        Ok(())
    }

    #[test]
    fn bvec_lists_pieces_of_pages() -> Result {
        let p0 = Page::alloc_page(GFP_KERNEL)?;
        let p1 = Page::alloc_page(GFP_KERNEL)?;
        let fill = [0x5au8; PAGE_SIZE];
        // SAFETY: The pages are ours and `fill` is a whole page.
        unsafe { p0.write_raw(fill.as_ptr(), 0, PAGE_SIZE)? };
        // SAFETY: As above.
        unsafe { p1.write_raw(fill.as_ptr(), 0, PAGE_SIZE)? };
        let pieces = [
            (IoPage::shared(&p0), 100, 200),
            (IoPage::shared(&p1), 0, PAGE_SIZE),
            (IoPage::shared(&p0), 4000, 96),
        ];
        let mut src = KernelPages::from_pages(&pieces)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut done = 0;
        while let Some(mut batch) = src.next_batch(&mut slots)? {
            done += walk(&mut batch, 0, |_| 0x5a, &mut pages)?;
        }
        assert_eq!(done, 200 + PAGE_SIZE + 96);
        assert_eq!(pages[0], p0.as_ptr());
        assert!(!pinned(p0.as_ptr()) && !pinned(p1.as_ptr()));
        assert!(KernelPages::from_pages(&[(IoPage::shared(&p0), 4000, 97)]).is_err());
        Ok(())
    }

    #[test]
    fn user_range_is_pinned_then_released() -> Result {
        let base = user_mem::map(4 * PAGE_SIZE)?;
        user_mem::fill(base, 4 * PAGE_SIZE)?;
        let mut src =
            UserPages::<ToDevice>::new(base.wrapping_byte_add(100), 3 * PAGE_SIZE, false)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut batch = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
        assert_eq!(batch.nr_pages(), 4);
        assert_eq!(walk(&mut batch, 100, pattern, &mut pages)?, 3 * PAGE_SIZE);
        assert!(pages.iter().all(|&p| pinned(p)));
        drop(batch);
        assert!(!pages.iter().any(|&p| pinned(p)));
        assert!(src.next_batch(&mut slots)?.is_none());
        Ok(())
    }

    #[test]
    fn whole_user_range_is_pinned_at_once_then_released() -> Result {
        let base = user_mem::map(4 * PAGE_SIZE)?;
        user_mem::fill(base, 4 * PAGE_SIZE)?;
        let range = UserRange::<FromDevice>::new(base.wrapping_byte_add(100), 3 * PAGE_SIZE)?;
        assert_eq!(
            (range.addr(), range.len()),
            (base.as_const_ptr() as usize + 100, 3 * PAGE_SIZE)
        );
        assert_eq!(range.nr_pages(), 4);
        // Fewer slots than pages: refused, nothing pinned (the guest checks the pin balance
        // after the suite).
        assert_eq!(range.pin(StackSlots::<3>::new()).err(), Some(EINVAL));
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut batch = range.pin(&mut slots)?;
        assert_eq!((batch.nr_pages(), batch.len()), (4, 3 * PAGE_SIZE));
        let mut pages = KVec::new();
        assert_eq!(walk(&mut batch, 100, pattern, &mut pages)?, 3 * PAGE_SIZE);
        assert!(pages.iter().all(|&p| pinned(p)));
        drop(batch);
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }

    #[test]
    fn user_range_with_a_hole_keeps_no_pin() -> Result {
        // Six pages with a hole at pages 3 and 4: the kernel pins pages 0-2, then fails; the
        // range gives the error and releases those three.
        let base = user_mem::map(6 * PAGE_SIZE)?;
        user_mem::fill(base, 6 * PAGE_SIZE)?;
        user_mem::unmap(base.wrapping_byte_add(3 * PAGE_SIZE), 2 * PAGE_SIZE)?;
        // The pages before the hole, to look at afterwards: pinned and released once first.
        let mut pages = KVec::new();
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut head = UserRange::<ToDevice>::new(base, 3 * PAGE_SIZE)?.pin(&mut slots)?;
        walk(&mut head, 0, pattern, &mut pages)?;
        drop(head);
        let range = UserRange::<ToDevice>::new(base, 6 * PAGE_SIZE)?;
        assert_eq!(range.pin(&mut slots).err(), Some(EFAULT));
        assert_eq!(pages.len(), 3);
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }

    #[test]
    fn user_range_is_checked_as_import_ubuf_checks_it() -> Result {
        let far = UserPtr::from_addr(PAGE_SIZE);
        // No mm yet (KUnit attaches one at the first mapping): nothing to pin in.
        assert_eq!(
            UserRange::<ToDevice>::new(far, PAGE_SIZE).err(),
            Some(EFAULT)
        );
        user_mem::map(PAGE_SIZE)?;
        // A kernel address fails access_ok.
        let kaddr = UserPtr::from_addr(usize::MAX - PAGE_SIZE + 1);
        assert_eq!(UserRange::<ToDevice>::new(kaddr, 16).err(), Some(EFAULT));
        // A length above MAX_RW_COUNT is refused, not capped as for read(2): pindio does an
        // I/O whole or not at all.
        assert_eq!(
            UserRange::<ToDevice>::new(far, usize::MAX).err(),
            Some(EINVAL)
        );
        // An unmapped user address passes the checks; pinning it fails.
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let range = UserRange::<FromDevice>::new(far, PAGE_SIZE)?;
        assert_eq!(range.pin(&mut slots).err(), Some(EFAULT));
        Ok(())
    }

    #[test]
    fn longterm_write_pin_carries_device_data_to_user() -> Result {
        let base = user_mem::map(2 * PAGE_SIZE)?;
        user_mem::fill(base, 2 * PAGE_SIZE)?;
        let mut src = UserPages::<FromDevice>::new(base, 2 * PAGE_SIZE, true)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let batch = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
        let ones = [1u8; PAGE_SIZE];
        for (page, offset, len) in batch.segments() {
            // SAFETY: `ones` holds `len <= PAGE_SIZE` bytes; the test's mm does not touch the
            // pages while the "device" writes them.
            unsafe { page.write_raw(ones.as_ptr(), offset, len)? };
        }
        drop(batch);
        let back = user_mem::get(base, 2 * PAGE_SIZE)?;
        assert!(back.iter().all(|&b| b == 1));
        Ok(())
    }

    /// Extracts `n` pages of user memory with `slots`, checking every byte; returns the batches.
    fn extract_pages(n: usize, slots: &mut dyn PageSlots) -> Result<usize> {
        let base = user_mem::map(n * PAGE_SIZE)?;
        user_mem::fill(base, n * PAGE_SIZE)?;
        let mut src = UserPages::<ToDevice>::new(base, n * PAGE_SIZE, false)?;
        let mut pages = KVec::new();
        let (mut done, mut batches) = (0, 0);
        while let Some(mut batch) = src.next_batch(&mut *slots)? {
            done += walk(&mut batch, done, pattern, &mut pages)?;
            batches += 1;
        }
        if done != n * PAGE_SIZE || pages.iter().any(|&p| pinned(p)) {
            return Err(EINVAL);
        }
        Ok(batches)
    }

    #[test]
    fn batch_boundaries() -> Result {
        let mut stack = StackSlots::<STACK_PAGES>::new();
        for (n, batches) in [(15, 1), (16, 1), (17, 2)] {
            assert_eq!(extract_pages(n, &mut stack)?, batches);
        }
        let mut heap = HeapSlots::new(512)?;
        for (n, batches) in [(512, 1), (513, 2)] {
            assert_eq!(extract_pages(n, &mut heap)?, batches);
        }
        Ok(())
    }

    #[test]
    fn extend_fills_one_batch_call_after_call() -> Result {
        // Five pages from offset 100, one page per call: the same run of bytes as one call.
        let base = user_mem::map(6 * PAGE_SIZE)?;
        user_mem::fill(base, 6 * PAGE_SIZE)?;
        let len = 5 * PAGE_SIZE - 100;
        let mut src = UserPages::<ToDevice>::new(base.wrapping_byte_add(100), len, false)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut batch = src.empty_batch(&mut slots);
        let mut calls = KVec::new();
        loop {
            let added = src.extend(&mut batch, 1)?;
            if added == 0 {
                break;
            }
            calls.push(added, GFP_KERNEL)?;
        }
        assert_eq!(
            calls[..],
            [PAGE_SIZE - 100, PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, PAGE_SIZE]
        );
        assert_eq!((batch.nr_pages(), batch.len()), (5, len));
        let mut pages = KVec::new();
        assert_eq!(walk(&mut batch, 100, pattern, &mut pages)?, len);
        assert!(pages.iter().all(|&p| pinned(p)));
        drop(batch);
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }

    #[test]
    fn fill_pins_per_call_and_stops_at_a_hole() -> Result {
        // Eight pages from offset 100 with a hole at page 5, one page per call: the batch gets
        // pages 0-4 (what was pinned before the fault), then the next call reports EFAULT.
        let base = user_mem::map(8 * PAGE_SIZE)?;
        user_mem::fill(base, 8 * PAGE_SIZE)?;
        user_mem::unmap(base.wrapping_byte_add(5 * PAGE_SIZE), PAGE_SIZE)?;
        let len = 8 * PAGE_SIZE - 100;
        let mut src = UserPages::<FromDevice>::new(base.wrapping_byte_add(100), len, false)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut batch = src.empty_batch(&mut slots);
        assert_eq!(src.fill(&mut batch, 1)?, 5 * PAGE_SIZE - 100);
        assert_eq!((batch.nr_pages(), src.remaining()), (5, 3 * PAGE_SIZE));
        assert_eq!(src.fill(&mut batch, 1).err(), Some(EFAULT));
        assert_eq!(batch.nr_pages(), 5);
        let mut pages = KVec::new();
        assert_eq!(
            walk(&mut batch, 100, pattern, &mut pages)?,
            5 * PAGE_SIZE - 100
        );
        assert!(pages.iter().all(|&p| pinned(p)));
        drop(batch);
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }

    #[test]
    fn extend_stops_where_the_run_would_break() -> Result {
        // Two segments: the first ends inside a page, so the second cannot join its batch.
        let base = user_mem::map(4 * PAGE_SIZE)?;
        user_mem::fill(base, 2 * PAGE_SIZE)?;
        let mut uvec = KVec::new();
        for (off, len) in [(0usize, 10usize), (PAGE_SIZE, PAGE_SIZE)] {
            uvec.extend_from_slice(
                &(base.as_const_ptr() as usize + off).to_ne_bytes(),
                GFP_KERNEL,
            )?;
            uvec.extend_from_slice(&len.to_ne_bytes(), GFP_KERNEL)?;
        }
        let uvec_ptr = base.wrapping_byte_add(3 * PAGE_SIZE);
        user_mem::put(uvec_ptr, &uvec)?;
        let mut src = UserPages::<FromDevice>::new_iovec(uvec_ptr, 2, false)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut batch = src.empty_batch(&mut slots);
        assert_eq!(src.extend(&mut batch, 16)?, 10);
        assert_eq!(src.extend(&mut batch, 16)?, 0);
        assert_eq!((batch.nr_pages(), src.remaining()), (1, PAGE_SIZE));
        drop(batch);
        let mut next = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
        let mut pages = KVec::new();
        assert_eq!(walk(&mut next, PAGE_SIZE, pattern, &mut pages)?, PAGE_SIZE);
        Ok(())
    }

    #[test]
    fn partial_extraction_then_fault() -> Result {
        // Six pages with a hole at pages 3 and 4: the kernel pins pages 0-2 and stops.
        let base = user_mem::map(6 * PAGE_SIZE)?;
        user_mem::fill(base, 6 * PAGE_SIZE)?;
        user_mem::unmap(base.wrapping_byte_add(3 * PAGE_SIZE), 2 * PAGE_SIZE)?;
        let mut src = UserPages::<ToDevice>::new(base, 6 * PAGE_SIZE, false)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut batch = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
        assert_eq!(walk(&mut batch, 0, pattern, &mut pages)?, 3 * PAGE_SIZE);
        drop(batch);
        assert_eq!(src.remaining(), 3 * PAGE_SIZE);
        assert_eq!(src.next_batch(&mut slots).err(), Some(EFAULT));
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }

    #[test]
    fn bad_addresses_fault() -> Result {
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let far = UserPtr::from_addr(PAGE_SIZE);
        // No mm yet (KUnit attaches one at the first mapping): nothing to pin in.
        assert_eq!(
            UserPages::<ToDevice>::new(far, PAGE_SIZE, false).err(),
            Some(EFAULT)
        );
        // Unmapped user address: import succeeds, pinning fails.
        user_mem::map(PAGE_SIZE)?;
        let mut src = UserPages::<ToDevice>::new(far, PAGE_SIZE, false)?;
        assert_eq!(src.next_batch(&mut slots).err(), Some(EFAULT));
        // Kernel address: refused at import (access_ok).
        let kaddr = UserPtr::from_addr(usize::MAX - PAGE_SIZE + 1);
        assert_eq!(
            UserPages::<ToDevice>::new(kaddr, 16, false).err(),
            Some(EFAULT)
        );
        Ok(())
    }

    #[test]
    fn zero_length_extracts_nothing() -> Result {
        let base = user_mem::map(PAGE_SIZE)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut src = UserPages::<ToDevice>::new(base, 0, false)?;
        assert!(src.next_batch(&mut slots)?.is_none());
        let mut ksrc = KernelPages::from_slices(&[])?;
        assert!(ksrc.next_batch(&mut slots)?.is_none());
        Ok(())
    }

    #[test]
    fn iovec_with_odd_segments() -> Result {
        let base = user_mem::map(8 * PAGE_SIZE)?;
        user_mem::fill(base, 6 * PAGE_SIZE)?;
        // (offset, len) of each segment, and an iovec array for them at page 7.
        let segs = [
            (1usize, 7usize),
            (2 * PAGE_SIZE + 5, 5000),
            (3 * PAGE_SIZE - 3, 6),
            (5 * PAGE_SIZE, 1),
        ];
        let mut uvec = KVec::new();
        for (off, len) in segs {
            uvec.extend_from_slice(
                &(base.as_const_ptr() as usize + off).to_ne_bytes(),
                GFP_KERNEL,
            )?;
            uvec.extend_from_slice(&len.to_ne_bytes(), GFP_KERNEL)?;
        }
        let uvec_ptr = base.wrapping_byte_add(7 * PAGE_SIZE);
        user_mem::put(uvec_ptr, &uvec)?;
        let mut src = UserPages::<ToDevice>::new_iovec(uvec_ptr, segs.len().try_into()?, false)?;
        assert_eq!(src.remaining(), segs.iter().map(|s| s.1).sum::<usize>());
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut done = 0;
        for (off, len) in segs {
            // A batch never crosses a segment, so each segment comes out whole and in order.
            let mut batch = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
            assert_eq!(walk(&mut batch, off, pattern, &mut pages)?, len);
            done += len;
        }
        assert!(src.next_batch(&mut slots)?.is_none());
        assert!(done > 0 && !pages.iter().any(|&p| pinned(p)));
        // Too many segments: EINVAL, as readv(2).
        assert_eq!(
            UserPages::<ToDevice>::new_iovec(uvec_ptr, bindings::UIO_MAXIOV + 1, false).err(),
            Some(EINVAL)
        );
        Ok(())
    }

    /// Pins the one-segment iovec at `uvec_ptr` (2 pages from offset 100) for `D`, checks the
    /// bytes and that its pages are pinned until the batch is dropped.
    fn one_segment<D: Direction>(uvec_ptr: UserPtr, longterm: bool) -> Result {
        let mut src = UserPages::<D>::new_iovec(uvec_ptr, 1, longterm)?;
        assert_eq!(src.remaining(), 2 * PAGE_SIZE);
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut batch = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
        assert!(batch.nr_pages() == 3 && pinned(batch.segments().next().ok_or(EINVAL)?.0.as_ptr()));
        assert_eq!(walk(&mut batch, 100, pattern, &mut pages)?, 2 * PAGE_SIZE);
        drop(batch);
        assert!(src.next_batch(&mut slots)?.is_none());
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }

    #[test]
    fn iovec_of_one_segment() -> Result {
        // import_iovec takes a one-segment iovec apart from the others (it oopsed with no fast
        // array): every way of pinning it must work.
        let base = user_mem::map(4 * PAGE_SIZE)?;
        user_mem::fill(base, 3 * PAGE_SIZE)?;
        let uvec_ptr = base.wrapping_byte_add(3 * PAGE_SIZE);
        let addr = base.as_const_ptr() as usize;
        user_mem::put_iovec(uvec_ptr, &[(addr + 100, 2 * PAGE_SIZE)])?;
        for longterm in [false, true] {
            one_segment::<ToDevice>(uvec_ptr, longterm)?;
            one_segment::<FromDevice>(uvec_ptr, longterm)?;
        }
        Ok(())
    }

    #[test]
    fn empty_segments_are_skipped_and_pin_nothing() -> Result {
        let base = user_mem::map(4 * PAGE_SIZE)?;
        user_mem::fill(base, 3 * PAGE_SIZE)?;
        let uvec_ptr = base.wrapping_byte_add(3 * PAGE_SIZE);
        let addr = base.as_const_ptr() as usize;
        // The review's case first: an empty segment at an unaligned address, then a page; then
        // empty segments between and after the data.
        let shapes: [&[(usize, usize)]; 3] = [
            &[(addr + 8, 0), (addr, PAGE_SIZE)],
            &[
                (addr, 0),
                (addr + 8, 0),
                (addr + PAGE_SIZE, PAGE_SIZE),
                (addr + 3, 0),
            ],
            &[
                (addr + PAGE_SIZE + 1, 0),
                (addr + 2 * PAGE_SIZE, 512),
                (0, 0),
            ],
        ];
        for segs in shapes {
            user_mem::put_iovec(uvec_ptr, segs)?;
            let n = u32::try_from(segs.len())?;
            let bytes: usize = segs.iter().map(|s| s.1).sum();
            for longterm in [false, true] {
                let mut src = UserPages::<FromDevice>::new_iovec(uvec_ptr, n, longterm)?;
                assert_eq!(src.remaining(), bytes);
                let mut slots = StackSlots::<STACK_PAGES>::new();
                let mut pages = KVec::new();
                let mut batch = src.next_batch(&mut slots)?.ok_or(EINVAL)?;
                // One page, holding exactly the bytes of the one non-empty segment.
                assert_eq!((batch.nr_pages(), batch.len()), (1, bytes));
                let start = segs.iter().find(|s| s.1 > 0).ok_or(EINVAL)?.0 - addr;
                walk(&mut batch, start, pattern, &mut pages)?;
                drop(batch);
                assert!(src.next_batch(&mut slots)?.is_none());
                // Nothing else was pinned: not the page of an empty segment either.
                for page in 0..3 {
                    let probe = UserRange::<ToDevice>::new(
                        base.wrapping_byte_add(page * PAGE_SIZE),
                        PAGE_SIZE,
                    )?
                    .pin(StackSlots::<STACK_PAGES>::new())?;
                    let p = probe.segments().next().ok_or(EINVAL)?.0.as_ptr();
                    drop(probe);
                    assert!(!pinned(p));
                }
            }
        }
        // Only empty segments: nothing to extract.
        user_mem::put_iovec(uvec_ptr, &[(addr + 8, 0), (addr, 0)])?;
        let mut src = UserPages::<ToDevice>::new_iovec(uvec_ptr, 2, true)?;
        assert_eq!(src.remaining(), 0);
        assert!(src.next_batch(StackSlots::<STACK_PAGES>::new())?.is_none());
        Ok(())
    }

    #[test]
    fn iovec_total_is_limited_not_cut() -> Result {
        // Address space is enough: nothing is pinned, only the iovec is checked.
        let base = user_mem::map(PAGE_SIZE)?;
        let uvec_ptr = base;
        let addr = 1usize << 32;
        let max = crate::ffi::helpers::MAX_RW_COUNT;
        let half = 3usize << 29;
        user_mem::put_iovec(uvec_ptr, &[(addr, half), (addr, max - half)])?;
        let src = UserPages::<ToDevice>::new_iovec(uvec_ptr, 2, false)?;
        assert_eq!(src.remaining(), max);
        user_mem::put_iovec(uvec_ptr, &[(addr, half), (addr, max - half + 1)])?;
        assert_eq!(
            UserPages::<ToDevice>::new_iovec(uvec_ptr, 2, false).err(),
            Some(EINVAL)
        );
        // A length negative as an ssize_t, and a segment in kernel space.
        user_mem::put_iovec(uvec_ptr, &[(addr, usize::MAX)])?;
        assert_eq!(
            UserPages::<ToDevice>::new_iovec(uvec_ptr, 1, false).err(),
            Some(EINVAL)
        );
        user_mem::put_iovec(uvec_ptr, &[(addr, 512), (usize::MAX - PAGE_SIZE + 1, 16)])?;
        assert_eq!(
            UserPages::<ToDevice>::new_iovec(uvec_ptr, 2, false).err(),
            Some(EFAULT)
        );
        // The single range: above MAX_RW_COUNT is refused too.
        assert_eq!(
            UserRange::<ToDevice>::new(UserPtr::from_addr(addr), max + 1).err(),
            Some(EINVAL)
        );
        assert_eq!(
            UserRange::<ToDevice>::new(UserPtr::from_addr(addr), max)?.len(),
            max
        );
        Ok(())
    }

    #[test]
    fn kvec_for_the_device_to_fill_is_borrowed_mutably() -> Result {
        let mut a = KVec::from_elem(0x11u8, PAGE_SIZE + 10, GFP_KERNEL)?;
        let mut b = KVec::from_elem(0x11u8, 100, GFP_KERNEL)?;
        let mut bufs = [&mut a[..], &mut b[..]];
        let mut src = KernelPages::from_slices_mut(&mut bufs)?;
        let mut slots = StackSlots::<STACK_PAGES>::new();
        let mut pages = KVec::new();
        let mut done = 0;
        while let Some(mut batch) = src.next_batch(&mut slots)? {
            done += walk(&mut batch, done, |_| 0x11, &mut pages)?;
        }
        assert_eq!(done, PAGE_SIZE + 110);
        assert!(!pages.iter().any(|&p| pinned(p)));
        Ok(())
    }
}
