/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations of pindio's C helpers: one-line wrappers of kernel functions that are static
 * inline in C, so Rust cannot call them and the kernel crate does not bind them (Linux 7.3).
 * bindgen turns this header into rust-bindings/helpers_generated.rs; helpers.c defines them.
 */
#ifndef PINDIO_HELPERS_H
#define PINDIO_HELPERS_H

#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

/* copy_struct_from_user(): extensible ioctl argument structs. */
int pindio_copy_struct_from_user(void *dst, size_t ksize, const void __user *src, size_t usize);

/* iov_iter accessors: the remaining count, and the current user segment. */
size_t pindio_iov_iter_count(const struct iov_iter *i);
void __user *pindio_iter_iov_addr(const struct iov_iter *i);
size_t pindio_iter_iov_len(const struct iov_iter *i);

/* folio_maybe_dma_pinned() of a page: whether a page holds FOLL_PIN pins (the KUnit suites check it). */
bool pindio_page_maybe_dma_pinned(struct page *page);

/* Block devices: the limits a direct I/O must respect. */
unsigned int pindio_bdev_logical_block_size(struct block_device *bdev);
unsigned int pindio_bdev_dma_alignment(struct block_device *bdev);
loff_t pindio_bdev_nr_bytes(struct block_device *bdev);
bool pindio_bdev_read_only(struct block_device *bdev);

/* Files: whether one is a block device, and whether it was opened for reading / writing. */
bool pindio_file_is_blkdev(struct file *file);
bool pindio_file_readable(struct file *file);
bool pindio_file_writable(struct file *file);

/*
 * Macros the kernel crate does not bind, as constants bindgen can read (the PINDIO_CONST_ prefix
 * is stripped): the mmap flags the KUnit suites map user memory with (kunit_vm_mmap()).
 */
#ifdef __BINDGEN__
const unsigned long PINDIO_CONST_PROT_READ = PROT_READ;
const unsigned long PINDIO_CONST_PROT_WRITE = PROT_WRITE;
const unsigned long PINDIO_CONST_MAP_PRIVATE = MAP_PRIVATE;
const unsigned long PINDIO_CONST_MAP_ANONYMOUS = MAP_ANONYMOUS;
/* And the open modes the KUnit suites open a block device with. */
const unsigned int PINDIO_CONST_BLK_OPEN_READ = (unsigned int)BLK_OPEN_READ;
const unsigned int PINDIO_CONST_BLK_OPEN_WRITE = (unsigned int)BLK_OPEN_WRITE;
#endif

#endif /* PINDIO_HELPERS_H */
