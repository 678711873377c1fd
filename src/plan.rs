// SPDX-License-Identifier: GPL-2.0

//! How a direct I/O is checked and cut into bios: pure logic, no kernel.
//!
//! Plain `core` Rust, shared by `#[path]` with the host crate in `tools/` so that `cargo test`
//! covers it; the KUnit suite `pindio_dio` runs cases of it in the kernel.

#![deny(unsafe_code)]

/// What a target device asks of a direct I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DevLimits {
    /// Logical block size in bytes: a power of two, at least 512.
    pub(crate) lbs: u64,
    /// Mask of the memory alignment the device needs for DMA (`bdev_dma_alignment()`).
    pub(crate) dma_mask: u64,
    /// Size of the device in bytes.
    pub(crate) dev_bytes: u64,
}

impl DevLimits {
    /// Checks that `len` bytes at device offset `pos` are a valid direct I/O: not empty, no
    /// overflow, on logical-block boundaries, and inside the device. Each failure is `EINVAL`.
    pub(crate) fn check_range(&self, pos: u64, len: u64) -> bool {
        let mask = self.lbs.wrapping_sub(1);
        len != 0
            && self.lbs.is_power_of_two()
            && (pos | len) & mask == 0
            && pos
                .checked_add(len)
                .is_some_and(|end| end <= self.dev_bytes)
    }

    /// Checks one memory segment (an iovec entry or the single buffer): its address meets the
    /// DMA alignment and its length is a whole number of logical blocks. These are the rules of
    /// the kernel's block-device direct I/O (`iov_iter_is_aligned(iter, dma_alignment,
    /// logical_block_size - 1)` before Linux 6.18); they guarantee that every logical block of the
    /// I/O starts at a DMA-aligned address.
    pub(crate) fn check_segment(&self, addr: u64, len: u64) -> bool {
        addr & self.dma_mask == 0 && len & self.lbs.wrapping_sub(1) == 0
    }
}

/// Cuts a stream of memory pieces (the `(page, offset, len)` segments of pinned batches) into
/// bios of at most a given number of vectors, each a whole number of logical blocks.
///
/// The caller opens a bio with [`BioPlanner::open`], then for each piece asks
/// [`BioPlanner::place`] how many of its bytes go into the open bio; when `place` says the bio
/// is full, the caller submits it and opens the next one for the rest of the piece.
///
/// The pieces are those of memory segments that are each a whole number of logical blocks
/// (checked before: [`DevLimits::check_segment`]), cut at page boundaries: inside a segment
/// every piece but the first starts a page, and every piece but the last ends one.
#[derive(Clone, Debug)]
pub(crate) struct BioPlanner {
    lbs_mask: usize,
    page_size: usize,
    max_vecs: usize,
    vecs: usize,
    bytes: usize,
}

impl BioPlanner {
    /// A planner for a device with logical blocks of `lbs` bytes, for pieces of pages of
    /// `page_size` bytes (both powers of two; a block may be larger than a page).
    pub(crate) fn new(lbs: usize, page_size: usize) -> Option<Self> {
        if !lbs.is_power_of_two() || !page_size.is_power_of_two() {
            return None;
        }
        Some(Self {
            lbs_mask: lbs - 1,
            page_size,
            max_vecs: 0,
            vecs: 0,
            bytes: 0,
        })
    }

    /// Starts a new bio with room for `max_vecs` vectors.
    pub(crate) fn open(&mut self, max_vecs: usize) {
        self.max_vecs = max_vecs;
        self.vecs = 0;
        self.bytes = 0;
    }

    /// Whether a bio is open and has room for a vector.
    pub(crate) fn has_room(&self) -> bool {
        self.vecs < self.max_vecs
    }

    /// Bytes in the open bio.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Places the next piece of `len` bytes (non-zero) in the open bio, as one vector.
    ///
    /// Returns how many bytes of it go in, and whether the bio is then full and must be
    /// submitted. A piece goes in whole if the vectors left after it can still complete the
    /// logical block it ends in (the rest of that block follows in the same segment, a page per
    /// piece): so it always does when a block is at most a page, but for the last vector. If
    /// they cannot, the bio is cut at the last block boundary inside the piece and the rest
    /// waits for the next bio, as `bio_iov_iter_align_down` trims a bio to whole blocks; if no
    /// boundary falls inside it, the bio is closed as it is, at the boundary it ends on:
    /// `(0, true)`, and the whole piece waits for the next bio.
    ///
    /// `None` if no bio is open with room, or if the open bio could not end on a block
    /// boundary, which the rule above rules out once a bio has room for one block's pieces
    /// (`lbs / page_size + 1` vectors; see the tests).
    pub(crate) fn place(&mut self, len: usize) -> Option<(usize, bool)> {
        if len == 0 || !self.has_room() {
            return None;
        }
        let end = self.bytes.checked_add(len)?;
        let tail = end & self.lbs_mask;
        let need = if tail == 0 {
            0
        } else {
            self.lbs_mask + 1 - tail
        };
        let left = self.max_vecs - self.vecs - 1;
        let take = if need.div_ceil(self.page_size) <= left {
            len
        } else {
            (end & !self.lbs_mask).checked_sub(self.bytes)?
        };
        if take == 0 {
            if self.vecs == 0 || self.bytes & self.lbs_mask != 0 {
                return None;
            }
            self.vecs = self.max_vecs;
            return Some((0, true));
        }
        self.vecs += 1;
        self.bytes += take;
        if take < len {
            // Cut: the rest of the piece goes to the next bio.
            self.vecs = self.max_vecs;
        }
        Some((take, !self.has_room()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 4096;

    fn limits(lbs: u64, dma_mask: u64) -> DevLimits {
        DevLimits {
            lbs,
            dma_mask,
            dev_bytes: 1 << 30,
        }
    }

    #[test]
    fn ranges() {
        let l = limits(512, 511);
        assert!(l.check_range(0, 512));
        assert!(l.check_range((1 << 30) - 512, 512)); // the last block
        assert!(!l.check_range((1 << 30) - 512, 1024)); // past the end
        assert!(!l.check_range(1 << 30, 512));
        assert!(!l.check_range(0, 0));
        assert!(!l.check_range(256, 512));
        assert!(!l.check_range(0, 100));
        assert!(!l.check_range(u64::MAX - 511, 1024)); // overflow
        let l4k = limits(4096, 511);
        assert!(!l4k.check_range(512, 4096));
        assert!(l4k.check_range(8192, 4096));
    }

    #[test]
    fn segments() {
        let l = limits(512, 511);
        assert!(l.check_segment(0x1000, 512));
        assert!(l.check_segment(0x1200, 1536));
        assert!(!l.check_segment(0x1001, 512));
        assert!(!l.check_segment(0x1000, 100));
        let l3 = limits(512, 3);
        assert!(l3.check_segment(0x1004, 512));
        assert!(!l3.check_segment(0x1002, 512));
    }

    /// Cuts `segs` (address, len) of memory into bios of `max_vecs` vectors the way the kernel
    /// side does: page pieces in order, `place` for each. Returns the bios as byte counts.
    fn cut(segs: &[(usize, usize)], lbs: usize, max_vecs: usize) -> Vec<(usize, usize)> {
        let mut pieces = Vec::new();
        for &(addr, len) in segs {
            let mut at = addr;
            while at < addr + len {
                let n = (PS - at % PS).min(addr + len - at);
                pieces.push(n);
                at += n;
            }
        }
        let mut p = BioPlanner::new(lbs, PS).unwrap();
        let mut bios = Vec::new();
        let mut open = false;
        for mut len in pieces {
            while len > 0 {
                if !open {
                    p.open(max_vecs);
                    open = true;
                }
                let (take, full) = p.place(len).expect("a block boundary in the last vector");
                assert!(take <= len);
                len -= take;
                if full {
                    bios.push((p.bytes(), p.vecs.min(max_vecs)));
                    open = false;
                }
            }
        }
        if open {
            bios.push((p.bytes(), p.vecs));
        }
        bios
    }

    #[test]
    fn whole_pages_fill_bios_of_max_vecs() {
        let bios = cut(&[(0, 600 * PS)], 512, 256);
        assert_eq!(bios, [(256 * PS, 256), (256 * PS, 256), (88 * PS, 88)]);
    }

    #[test]
    fn a_bio_never_ends_inside_a_block() {
        // Segments starting anywhere on a 512-byte boundary of a page: every page piece but the
        // first and last of a segment is whole; bios must still end on block boundaries.
        for lbs in [512, 1024, 2048, 4096] {
            for max_vecs in [2, 3, 4, 5, 256] {
                for start in (0..PS).step_by(512) {
                    let segs = [
                        (start, 8 * PS),
                        (10 * PS + start, lbs),
                        (20 * PS + PS - 512, lbs),
                        (30 * PS, 3 * lbs),
                    ];
                    let bios = cut(&segs, lbs, max_vecs);
                    let total: usize = bios.iter().map(|b| b.0).sum();
                    assert_eq!(total, 8 * PS + 5 * lbs);
                    for (bytes, vecs) in bios {
                        assert!(bytes > 0 && bytes % lbs == 0, "{bytes} bytes, lbs {lbs}");
                        assert!(vecs <= max_vecs);
                    }
                }
            }
        }
    }

    #[test]
    fn blocks_larger_than_a_page() {
        // Issue 13's case on a 16 KiB-block device: 1 MiB page-aligned, then 2 MiB 512 bytes
        // into a page; every bio of 256 vectors must end on a block boundary.
        for (lbs, max_vecs) in [
            (8192, 3),
            (16384, 5),
            (16384, 256),
            (65536, 17),
            (65536, 256),
        ] {
            for start in (0..PS).step_by(512) {
                let segs = [(0, 1 << 20), (8 << 20 | start, 2 << 20), (16 << 20, lbs)];
                let bios = cut(&segs, lbs, max_vecs);
                let total: usize = bios.iter().map(|b| b.0).sum();
                assert_eq!(total, (3 << 20) + lbs, "lbs {lbs}, max_vecs {max_vecs}");
                for (bytes, vecs) in bios {
                    assert!(bytes > 0 && bytes % lbs == 0, "{bytes} bytes, lbs {lbs}");
                    assert!(vecs <= max_vecs);
                }
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_place() {
        let mut p = BioPlanner::new(4096, PS).unwrap();
        assert_eq!(p.place(512), None); // no bio open
        p.open(1);
        assert_eq!(p.place(0), None);
        assert_eq!(p.place(512), None); // the only vector cannot end a block
        p.open(2);
        assert_eq!(p.place(512), Some((512, false)));
        assert_eq!(p.place(4096), Some((3584, true)));
        assert_eq!(p.place(512), None); // full
        p.open(2);
        assert_eq!(p.place(4096), Some((4096, false)));
        assert_eq!(p.place(512), Some((0, true))); // closed before the piece
        assert!(BioPlanner::new(1000, PS).is_none());
        assert!(BioPlanner::new(512, 1000).is_none());
        // A 16 KiB block at a page offset of 512 spans five pieces: four vectors cannot hold it.
        let mut p = BioPlanner::new(16384, PS).unwrap();
        p.open(4);
        assert_eq!(p.place(PS - 512), None);
    }
}
