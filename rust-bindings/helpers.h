/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations of pindio's C helpers: one-line wrappers of kernel functions that are static
 * inline in C, so Rust cannot call them and the kernel crate does not bind them (Linux 7.3).
 * bindgen turns this header into rust-bindings/helpers_generated.rs; helpers.c defines them.
 */
#ifndef PINDIO_HELPERS_H
#define PINDIO_HELPERS_H

#include <linux/blkdev.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <trace/events/block.h>

/* copy_struct_from_user(): extensible ioctl argument structs. */
int pindio_copy_struct_from_user(void *dst, size_t ksize, const void __user *src, size_t usize);

/*
 * fdget(), and the file it found (fd_file(); NULL if none); *f is for pindio_fdput(). The
 * rules of fdget() apply: put before the system call returns, no fork or close in between.
 */
struct file *pindio_fdget(unsigned int fd, struct fd *f);
/* fdput(). */
void pindio_fdput(struct fd f);

/* iov_iter accessors: the remaining count, and the current user segment. */
size_t pindio_iov_iter_count(const struct iov_iter *i);
void __user *pindio_iter_iov_addr(const struct iov_iter *i);
size_t pindio_iter_iov_len(const struct iov_iter *i);

/*
 * import_ubuf()'s checks of a single user range, without the iov_iter, for pinning it in the
 * current task: the length, or -EFAULT if the task has no user memory (a kernel thread) or the
 * range fails access_ok(). Unlike import_ubuf(), a length above MAX_RW_COUNT is -EINVAL, not
 * capped: pindio's I/Os are done whole or not at all.
 */
ssize_t pindio_check_ubuf(const void __user *buf, size_t len);

/* access_ok(): whether a user range lies in user space (an iovec segment, checked at import). */
bool pindio_access_ok(const void __user *ptr, size_t len);

/* memcpy_from_page(): bytes of a page that may change under the copy (READ_PINNED). */
void pindio_memcpy_from_page(char *to, struct page *page, size_t offset, size_t len);


/* folio_maybe_dma_pinned() of a page: whether a page holds FOLL_PIN pins (the KUnit suites check it). */
bool pindio_page_maybe_dma_pinned(struct page *page);

/*
 * The block device a file is open on, and what a direct I/O checks of it, in one call (the
 * accessors are static inline): NULL if the file is not a block device. Otherwise *modes has
 * PINDIO_TARGET_READ / PINDIO_TARGET_WRITE for the file's open modes, PINDIO_TARGET_RO for a
 * read-only device and PINDIO_TARGET_SWAP for an active swap device (the test of
 * blkdev_write_iter(), which refuses writes to it; its exception for the hibernation resume
 * device, is_hibernate_resume_dev(), is not exported to modules), and *lbs, *dma_alignment and *nr_bytes are the device's logical block size,
 * DMA alignment mask and size.
 */
#define PINDIO_TARGET_READ	1u
#define PINDIO_TARGET_WRITE	2u
#define PINDIO_TARGET_RO	4u
#define PINDIO_TARGET_SWAP	8u
struct block_device *pindio_file_bdev(struct file *file, unsigned int *modes, unsigned int *lbs,
				      unsigned int *dma_alignment, loff_t *nr_bytes);

/* bdev_read_only(): whether a block device is read-only now (BLKROSET, set_disk_ro()). */
bool pindio_bdev_read_only(struct block_device *bdev);

/* trace_block_bio_remap(): the remap tracepoint of a stacking driver's clone. */
void pindio_trace_block_bio_remap(struct bio *bio, dev_t dev, sector_t from);

/* kernel_cred(), override_creds(), revert_creds(): run as the kernel, not the caller. */
const struct cred *pindio_kernel_cred(void);
const struct cred *pindio_override_creds(const struct cred *override_cred);
const struct cred *pindio_revert_creds(const struct cred *revert_cred);

/* disk_openers(): how many times a disk is open (removal refuses an open one). */
unsigned int pindio_disk_openers(struct gendisk *disk);

/*
 * Macros the kernel crate does not bind, as constants bindgen can read (the PINDIO_CONST_ prefix
 * is stripped): the mmap flags the KUnit suites map user memory with (kunit_vm_mmap()).
 */
#ifdef __BINDGEN__
const unsigned long PINDIO_CONST_PROT_READ = PROT_READ;
const unsigned long PINDIO_CONST_PROT_WRITE = PROT_WRITE;
const unsigned long PINDIO_CONST_MAP_PRIVATE = MAP_PRIVATE;
const unsigned long PINDIO_CONST_MAP_ANONYMOUS = MAP_ANONYMOUS;
/* The open modes of a block device (the stacked devices claim theirs, KUnit opens one). */
const unsigned int PINDIO_CONST_BLK_OPEN_READ = (unsigned int)BLK_OPEN_READ;
const unsigned int PINDIO_CONST_BLK_OPEN_WRITE = (unsigned int)BLK_OPEN_WRITE;
/* The bits of pindio_file_bdev(). */
const unsigned int PINDIO_CONST_TARGET_READ = PINDIO_TARGET_READ;
const unsigned int PINDIO_CONST_TARGET_WRITE = PINDIO_TARGET_WRITE;
const unsigned int PINDIO_CONST_TARGET_RO = PINDIO_TARGET_RO;
const unsigned int PINDIO_CONST_TARGET_SWAP = PINDIO_TARGET_SWAP;
/* The most bytes one read or write moves (INT_MAX rounded down to a page). */
const unsigned long PINDIO_CONST_MAX_RW_COUNT = MAX_RW_COUNT;
/* The queue features a stacked device sets, and those it looks at after stacking. */
const blk_features_t PINDIO_CONST_BLK_FEAT_IO_STAT = BLK_FEAT_IO_STAT;
const blk_features_t PINDIO_CONST_BLK_FEAT_NOWAIT = BLK_FEAT_NOWAIT;
const blk_features_t PINDIO_CONST_BLK_FEAT_ZONED = BLK_FEAT_ZONED;
/* Allocations on the I/O path of a block driver. */
const gfp_t PINDIO_CONST_GFP_NOIO = GFP_NOIO;
#endif

#endif /* PINDIO_HELPERS_H */
