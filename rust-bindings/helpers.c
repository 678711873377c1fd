// SPDX-License-Identifier: GPL-2.0
/*
 * pindio's C helpers: each wraps static inline kernel functions (or macros) that Rust cannot
 * call. Declared in helpers.h, which bindgen reads; keep the two in step.
 */
#include "helpers.h"

int pindio_copy_struct_from_user(void *dst, size_t ksize, const void __user *src, size_t usize)
{
	return copy_struct_from_user(dst, ksize, src, usize);
}

struct file *pindio_fdget(unsigned int fd, struct fd *f)
{
	*f = fdget(fd);
	return fd_file(*f);
}

void pindio_fdput(struct fd f)
{
	fdput(f);
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

ssize_t pindio_check_ubuf(const void __user *buf, size_t len)
{
	if (unlikely(!current->mm))
		return -EFAULT;
	if (unlikely(len > MAX_RW_COUNT))
		return -EINVAL;
	if (unlikely(!access_ok(buf, len)))
		return -EFAULT;
	return len;
}

bool pindio_access_ok(const void __user *ptr, size_t len)
{
	return access_ok(ptr, len);
}

void pindio_memcpy_from_page(char *to, struct page *page, size_t offset, size_t len)
{
	memcpy_from_page(to, page, offset, len);
}

bool pindio_page_maybe_dma_pinned(struct page *page)
{
	return folio_maybe_dma_pinned(page_folio(page));
}

struct block_device *pindio_file_bdev(struct file *file, unsigned int *modes, unsigned int *lbs,
				      unsigned int *dma_alignment, loff_t *nr_bytes)
{
	struct block_device *bdev;
	struct inode *inode;

	if (!S_ISBLK(file_inode(file)->i_mode))
		return NULL;
	bdev = file_bdev(file);
	inode = file->f_mapping->host;
	*modes = (file->f_mode & FMODE_READ ? PINDIO_TARGET_READ : 0) |
		 (file->f_mode & FMODE_WRITE ? PINDIO_TARGET_WRITE : 0) |
		 (bdev_read_only(bdev) ? PINDIO_TARGET_RO : 0) |
		 (IS_SWAPFILE(inode) ? PINDIO_TARGET_SWAP : 0);
	*lbs = bdev_logical_block_size(bdev);
	*dma_alignment = bdev_dma_alignment(bdev);
	*nr_bytes = bdev_nr_bytes(bdev);
	return bdev;
}

bool pindio_bdev_read_only(struct block_device *bdev)
{
	return bdev_read_only(bdev);
}

void pindio_trace_block_bio_remap(struct bio *bio, dev_t dev, sector_t from)
{
	trace_block_bio_remap(bio, dev, from);
}

const struct cred *pindio_kernel_cred(void)
{
	return kernel_cred();
}

const struct cred *pindio_override_creds(const struct cred *override_cred)
{
	return override_creds(override_cred);
}

const struct cred *pindio_revert_creds(const struct cred *revert_cred)
{
	return revert_creds(revert_cred);
}

unsigned int pindio_disk_openers(struct gendisk *disk)
{
	return disk_openers(disk);
}
