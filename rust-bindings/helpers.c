// SPDX-License-Identifier: GPL-2.0
/*
 * pindio's C helpers: each wraps one static inline kernel function that Rust cannot call.
 * Declared in helpers.h, which bindgen reads; keep the two in step.
 */
#include "helpers.h"

int pindio_copy_struct_from_user(void *dst, size_t ksize, const void __user *src, size_t usize)
{
	return copy_struct_from_user(dst, ksize, src, usize);
}

size_t pindio_iov_iter_count(const struct iov_iter *i)
{
	return iov_iter_count(i);
}

void __user *pindio_iter_iov_addr(const struct iov_iter *i)
{
	return iter_iov_addr(i);
}

size_t pindio_iter_iov_len(const struct iov_iter *i)
{
	return iter_iov_len(i);
}

bool pindio_page_maybe_dma_pinned(struct page *page)
{
	return folio_maybe_dma_pinned(page_folio(page));
}
