// SPDX-License-Identifier: GPL-2.0

//! Page arithmetic that needs no kernel: how a byte range falls onto pages.
//!
//! Plain `core` Rust, shared by `#[path]` with the host crate in `tools/` so that `cargo test`
//! covers it.

#![deny(unsafe_code)]

/// One piece of an extracted range: `len` bytes at `offset` in page number `index` of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index of the page in the batch.
    pub(crate) index: usize,
    /// Offset of the first byte in the page.
    pub(crate) offset: usize,
    /// Number of bytes; never zero, never past the end of the page.
    pub(crate) len: usize,
}

/// The segments of `len` bytes that start `offset0` bytes into the first of a run of pages of
/// `page_size` bytes each: the first may start inside its page, the others start at 0.
#[derive(Clone, Debug)]
pub(crate) struct Segments {
    page_size: usize,
    index: usize,
    offset: usize,
    remaining: usize,
}

impl Segments {
    /// Segments of `len` bytes from `offset0` into the first page (`offset0 < page_size`).
    pub(crate) fn new(offset0: usize, len: usize, page_size: usize) -> Self {
        Self {
            page_size,
            index: 0,
            offset: offset0 % page_size.max(1),
            remaining: len,
        }
    }
}

impl Iterator for Segments {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        if self.remaining == 0 {
            return None;
        }
        let len = self
            .remaining
            .min(self.page_size.saturating_sub(self.offset));
        let seg = Segment {
            index: self.index,
            offset: self.offset,
            len,
        };
        self.remaining -= len;
        self.index += 1;
        self.offset = 0;
        Some(seg)
    }
}

/// Number of pages spanned by `len` bytes starting at address (or offset) `start`; `None` on
/// overflow. Zero bytes span zero pages.
pub(crate) fn pages_spanned(start: u64, len: u64, page_size: u64) -> Option<u64> {
    if len == 0 {
        return Some(0);
    }
    if page_size == 0 {
        return None;
    }
    let last_byte = start.checked_add(len - 1)?;
    let first = start / page_size;
    let last = last_byte / page_size;
    Some(last - first + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 4096;

    #[test]
    fn aligned_whole_pages() {
        let segs: Vec<_> = Segments::new(0, 2 * PS, PS).collect();
        assert_eq!(
            segs,
            [
                Segment {
                    index: 0,
                    offset: 0,
                    len: PS
                },
                Segment {
                    index: 1,
                    offset: 0,
                    len: PS
                }
            ]
        );
    }

    #[test]
    fn unaligned_start_and_end() {
        let segs: Vec<_> = Segments::new(100, PS, PS).collect();
        assert_eq!(
            segs,
            [
                Segment {
                    index: 0,
                    offset: 100,
                    len: PS - 100
                },
                Segment {
                    index: 1,
                    offset: 0,
                    len: 100
                }
            ]
        );
    }

    #[test]
    fn inside_one_page_and_empty() {
        let segs: Vec<_> = Segments::new(10, 20, PS).collect();
        assert_eq!(
            segs,
            [Segment {
                index: 0,
                offset: 10,
                len: 20
            }]
        );
        assert_eq!(Segments::new(10, 0, PS).count(), 0);
    }

    #[test]
    fn segments_cover_the_range_exactly() {
        for (offset0, len) in [(0, 1), (1, PS), (PS - 1, 2), (17, 5 * PS + 3)] {
            let segs: Vec<_> = Segments::new(offset0, len, PS).collect();
            assert_eq!(segs.iter().map(|s| s.len).sum::<usize>(), len);
            assert!(segs.iter().all(|s| s.len > 0 && s.offset + s.len <= PS));
            assert_eq!(
                segs.len() as u64,
                pages_spanned(offset0 as u64, len as u64, PS as u64).unwrap()
            );
        }
    }

    #[test]
    fn pages_spanned_edges() {
        let ps = PS as u64;
        assert_eq!(pages_spanned(0, 0, ps), Some(0));
        assert_eq!(pages_spanned(0, 1, ps), Some(1));
        assert_eq!(pages_spanned(ps - 1, 2, ps), Some(2));
        assert_eq!(pages_spanned(ps, ps, ps), Some(1));
        assert_eq!(pages_spanned(u64::MAX, 1, ps), Some(1));
        assert_eq!(pages_spanned(u64::MAX, 2, ps), None);
    }
}
