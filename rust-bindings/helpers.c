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

unsigned int pindio_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

unsigned int pindio_bdev_dma_alignment(struct block_device *bdev)
{
	return bdev_dma_alignment(bdev);
}

loff_t pindio_bdev_nr_bytes(struct block_device *bdev)
{
	return bdev_nr_bytes(bdev);
}

bool pindio_bdev_read_only(struct block_device *bdev)
{
	return bdev_read_only(bdev);
}

bool pindio_file_is_blkdev(struct file *file)
{
	return S_ISBLK(file_inode(file)->i_mode);
}

bool pindio_file_readable(struct file *file)
{
	return file->f_mode & FMODE_READ;
}

bool pindio_file_writable(struct file *file)
{
	return file->f_mode & FMODE_WRITE;
}
