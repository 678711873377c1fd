/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * pindio: the ioctl ABI of /dev/pindio, a test device for FOLL_PIN page extraction and direct I/O.
 *
 * This header is the one definition of the ABI: the kernel module and the user-space tools both
 * generate their Rust definitions from it with bindgen.
 *
 * Extensible argument structs
 * ---------------------------
 * Every ioctl argument is a struct whose first member is "__u32 size": the caller sets it to
 * sizeof() of the struct as the caller's copy of this header defines it. The kernel then behaves
 * like copy_struct_from_user():
 *   - a caller older than the kernel (size smaller than the kernel's struct, but at least the
 *     first published size, PINDIO_<NAME>_SIZE_VER0): missing fields read as zero;
 *   - a caller newer than the kernel (size larger): the bytes the kernel does not know must be
 *     zero, else the call fails with E2BIG;
 *   - output fields are written back only up to min(size, kernel's sizeof).
 * The size bits in the command number (_IOC_SIZE) are not used: the kernel matches a command by
 * its type, number and direction, and the size member alone says how large the struct is.
 *
 * Errors common to every command
 *   ENOTTY  unknown command (wrong type, number or direction)
 *   EFAULT  the argument pointer (or any user pointer inside it) is not accessible
 *   EINVAL  size is smaller than the command's PINDIO_<NAME>_SIZE_VER0
 *   E2BIG   size is larger than the kernel's struct and the extra bytes are not all zero, or
 *           size is larger than PINDIO_STRUCT_SIZE_MAX
 */
#ifndef _UAPI_LINUX_PINDIO_H
#define _UAPI_LINUX_PINDIO_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped when a change is not compatible; additions only set new feature bits. */
#define PINDIO_ABI_VERSION	1

#define PINDIO_IOC_MAGIC	0xB9

/* The largest argument struct the kernel accepts (larger sizes fail with E2BIG). */
#define PINDIO_STRUCT_SIZE_MAX	4096

/* Feature bits, reported by PINDIO_IOC_VERSION. */
#define PINDIO_FEAT_VERSION	(1ULL << 0)	/* PINDIO_IOC_VERSION */
#define PINDIO_FEAT_PIN		(1ULL << 1)	/* PINDIO_IOC_PIN, _READ_PINNED, _UNPIN */
#define PINDIO_FEAT_PIN_BENCH	(1ULL << 2)	/* PINDIO_IOC_PIN_BENCH */
#define PINDIO_FEAT_DIO		(1ULL << 3)	/* PINDIO_IOC_DIO, PINDIO_IOC_DIO_BATCH */
#define PINDIO_FEAT_LOOP	(1ULL << 4)	/* PINDIO_IOC_LOOP_ADD, _DEL, _INFO */

/* Per open file: at most this many pin handles and pinned pages at once. */
#define PINDIO_MAX_PIN_HANDLES	64
#define PINDIO_MAX_PINNED_PAGES	65536

/**
 * struct pindio_version - argument of PINDIO_IOC_VERSION
 * @size: in: sizeof(struct pindio_version) as the caller knows it
 * @abi_version: out: PINDIO_ABI_VERSION of the running module
 * @features: out: PINDIO_FEAT_* bits of the commands the module answers
 *
 * Errors: only the common ones.
 */
struct pindio_version {
	__u32 size;
	__u32 abi_version;
	__u64 features;
};

#define PINDIO_VERSION_SIZE_VER0	16

#define PINDIO_IOC_VERSION	_IOWR(PINDIO_IOC_MAGIC, 0x00, struct pindio_version)

/* Flags of struct pindio_pin. */
#define PINDIO_PIN_WRITE	(1U << 0)	/* the device will write the pages (FOLL_WRITE); they are dirtied when unpinned */
#define PINDIO_PIN_LONGTERM	(1U << 1)	/* FOLL_LONGTERM */
#define PINDIO_PIN_IOVEC	(1U << 2)	/* addr is an array of len struct iovec */
#define PINDIO_PIN_FLAGS	(PINDIO_PIN_WRITE | PINDIO_PIN_LONGTERM | PINDIO_PIN_IOVEC)

/**
 * struct pindio_pin - argument of PINDIO_IOC_PIN: pin user memory and keep the pin in the file
 * @size: in: sizeof(struct pindio_pin)
 * @flags: in: PINDIO_PIN_*
 * @addr: in: the buffer, or with PINDIO_PIN_IOVEC the struct iovec array
 * @len: in: bytes, or with PINDIO_PIN_IOVEC the number of iovec segments
 * @handle: out: names the pin for PINDIO_IOC_READ_PINNED and PINDIO_IOC_UNPIN
 * @nr_pages: out: pages pinned
 * @bytes: out: bytes pinned
 *
 * The pin lasts until PINDIO_IOC_UNPIN or until the file is closed. Either everything is pinned
 * or, on error, nothing.
 *
 * With PINDIO_PIN_IOVEC, segments of length 0 are allowed anywhere in the array and skipped, but
 * their address must still be a user address, as import_iovec() checks it for readv(2): a kernel
 * address is EFAULT. A single segment is an iovec like any other.
 *
 * Errors:
 *   EINVAL  unknown flags; len 0; addr + len overflows; with PINDIO_PIN_IOVEC: more than
 *           UIO_MAXIOV (1024) segments, a segment length above SSIZE_MAX, a total above
 *           MAX_RW_COUNT (INT_MAX rounded down to a page), or a total of 0 bytes
 *   EFAULT  addr (or a segment, empty ones included) is not a user address, or not mapped
 *           user memory, or cannot be written with PINDIO_PIN_WRITE
 *   EMFILE  the file already holds PINDIO_MAX_PIN_HANDLES pins
 *   ENOSPC  the pin would take the file past PINDIO_MAX_PINNED_PAGES pinned pages
 *   ENOMEM  out of memory
 */
struct pindio_pin {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u64 len;
	__u32 handle;
	__u32 nr_pages;
	__u64 bytes;
};

#define PINDIO_PIN_SIZE_VER0	40

/**
 * struct pindio_read_pinned - argument of PINDIO_IOC_READ_PINNED: copy what pinned pages hold now
 * @size: in: sizeof(struct pindio_read_pinned)
 * @handle: in: a handle from PINDIO_IOC_PIN
 * @offset: in: where to start, in bytes from the start of the pinned memory
 * @buf: in: where to copy to
 * @len: in: how many bytes
 *
 * Reads the pages themselves (the kernel's view), not the caller's mapping: after a fork or a
 * munmap this shows what a device would see.
 *
 * Errors:
 *   ENOENT  no such handle
 *   EINVAL  offset + len overflows or is past the pinned bytes
 *   EFAULT  buf is not writable
 */
struct pindio_read_pinned {
	__u32 size;
	__u32 handle;
	__u64 offset;
	__u64 buf;
	__u64 len;
};

#define PINDIO_READ_PINNED_SIZE_VER0	32

/**
 * struct pindio_unpin - argument of PINDIO_IOC_UNPIN: release a pin
 * @size: in: sizeof(struct pindio_unpin)
 * @handle: in: a handle from PINDIO_IOC_PIN
 *
 * Errors:
 *   ENOENT  no such handle (never pinned, or already released)
 */
struct pindio_unpin {
	__u32 size;
	__u32 handle;
};

#define PINDIO_UNPIN_SIZE_VER0	8

/* The largest range PINDIO_IOC_PIN_BENCH pins (1 GiB). */
#define PINDIO_PIN_BENCH_MAX_BYTES	(1ULL << 30)

/**
 * struct pindio_pin_bench - argument of PINDIO_IOC_PIN_BENCH: time pinning and unpinning
 * @size: in: sizeof(struct pindio_pin_bench)
 * @flags: in: PINDIO_PIN_WRITE, PINDIO_PIN_LONGTERM
 * @addr: in: the buffer (populate it first: faults are timed too)
 * @len: in: bytes, at most PINDIO_PIN_BENCH_MAX_BYTES
 * @pages_per_call: in: pages asked of each extraction call
 * @reserved: in: must be 0
 * @get_ns: out: time to pin the whole range, batch by batch, holding every pin
 * @put_ns: out: time to release all of them
 *
 * The same measurement as gup_test's PIN_FAST_BENCHMARK (mm/gup_test.c), through pindio's
 * extraction API, so the two can be compared in one boot: one page array for the whole range,
 * filled pages_per_call pages per extraction call (iov_iter_extract_pages, or
 * pin_user_pages_fast with PINDIO_PIN_LONGTERM), every pin held, then all released at once with
 * unpin_user_pages(), as gup_test releases them: not dirtied, even with PINDIO_PIN_WRITE (no
 * device wrote them).
 *
 * Errors:
 *   EINVAL  unknown flags; len 0 or above PINDIO_PIN_BENCH_MAX_BYTES; addr + len overflows;
 *           pages_per_call 0; reserved not 0
 *   EFAULT  the range is not mapped user memory (writable with PINDIO_PIN_WRITE)
 *   ENOMEM  out of memory
 *   If not every page could be pinned, the call fails with the error the kernel's pinning gave
 *   for the first page it could not pin (EFAULT, ENOMEM, EINTR for a fatal signal, ...), and
 *   the pages pinned before it are released.
 */
struct pindio_pin_bench {
	__u32 size;
	__u32 flags;
	__u64 addr;
	__u64 len;
	__u32 pages_per_call;
	__u32 reserved;
	__u64 get_ns;
	__u64 put_ns;
};

#define PINDIO_PIN_BENCH_SIZE_VER0	48

/* Flags of struct pindio_dio. */
#define PINDIO_DIO_WRITE	(1U << 0)	/* memory to device; without it, device to memory (a read) */
#define PINDIO_DIO_IOVEC	(1U << 1)	/* buf is an array of len struct iovec */
#define PINDIO_DIO_FUA		(1U << 2)	/* with PINDIO_DIO_WRITE: REQ_FUA, on stable media when done */
#define PINDIO_DIO_FLAGS	(PINDIO_DIO_WRITE | PINDIO_DIO_IOVEC | PINDIO_DIO_FUA)

/**
 * struct pindio_dio - one direct I/O between user memory and a block device
 * @size: in: sizeof(struct pindio_dio)
 * @flags: in: PINDIO_DIO_*
 * @fd: in: a block device the caller opened itself (readable for a read, writable for a write);
 *      the module never opens a path on the caller's behalf
 * @reserved: in: must be 0
 * @offset: in: byte offset on the device
 * @buf: in: the buffer, or with PINDIO_DIO_IOVEC the struct iovec array
 * @len: in: bytes, or with PINDIO_DIO_IOVEC the number of iovec segments
 * @result: out, PINDIO_IOC_DIO_BATCH only: bytes transferred (all of them), or -errno.
 *          PINDIO_IOC_DIO returns the bytes as its value and does not write the struct back.
 *
 * The user pages are pinned (FOLL_PIN; FOLL_WRITE for a read) and put straight into bios, as the
 * kernel's own block-device O_DIRECT does; a read dirties the pages before they are unpinned.
 * The page cache stays coherent: dirty cached pages of the range are written back before a read;
 * before a write they are written back and invalidated, and invalidated again after it.
 * The result is all or nothing: all the bytes, or the first error of any of its bios. An I/O that
 * fails may still have moved part of its data: the bios that succeeded before or beside the one
 * that failed wrote their part of the device (a write) or of the buffer (a read).
 *
 * Alignment, checked before anything is pinned: @offset and the total length are multiples of
 * the device's logical block size (which may be larger than a page); every memory segment starts
 * at an address aligned to the device's DMA alignment (bdev_dma_alignment() + 1) and is a whole
 * number of logical blocks. With PINDIO_DIO_IOVEC, segments of length 0 are allowed anywhere and
 * skipped (their address is only checked to be a user address, as readv(2) does).
 *
 * Errors:
 *   EINVAL  unknown flags; PINDIO_DIO_FUA without PINDIO_DIO_WRITE; reserved not 0; len 0 (or
 *           an iovec of 0 bytes); offset + length overflows; the range goes past the end of the
 *           device (no short I/O at the end, unlike pread(2)); a misaligned offset, length or
 *           segment; more than UIO_MAXIOV (1024) segments, a segment length above SSIZE_MAX, or a
 *           length above MAX_RW_COUNT (INT_MAX rounded down to a page: refused, where read(2)
 *           would cut it short)
 *   EBADF   fd is not an open file; a read through an fd not opened for reading, or a write
 *           through one not opened for writing
 *   ENOTBLK fd is not a block device
 *   EPERM   a write to a read-only block device
 *   ETXTBSY a write to an active swap device (as write(2) to it)
 *   EBUSY   a write whose range has cached pages of the device that could not be invalidated
 *           before it (invalidate_inode_pages2_range(), e.g. a page being dirtied through a
 *           shared mapping); nothing was written. Where the kernel's own O_DIRECT write falls
 *           back to a buffered write, pindio reports it. If the invalidation after a write
 *           fails, the write succeeded but the cache may be stale: the next fsync(2) of the
 *           device reports EIO, and the kernel log says so once
 *   EFAULT  buf (or a segment) is not mapped user memory, or not writable for a read
 *   EIO     the device failed a bio (and the errno of other block-layer statuses, as
 *           blk_status_to_errno() gives them)
 *   ENOMEM  out of memory
 */
struct pindio_dio {
	__u32 size;
	__u32 flags;
	__s32 fd;
	__u32 reserved;
	__u64 offset;
	__u64 buf;
	__u64 len;
	__s64 result;
};

#define PINDIO_DIO_SIZE_VER0	48

/* The most requests one PINDIO_IOC_DIO_BATCH takes. */
#define PINDIO_DIO_BATCH_MAX	256

/**
 * struct pindio_dio_batch - independent direct I/Os submitted together
 * @size: in: sizeof(struct pindio_dio_batch)
 * @nr: in: number of requests, 1 to PINDIO_DIO_BATCH_MAX
 * @reqs: in: array of @nr struct pindio_dio, each @entry_size bytes apart
 * @entry_size: in: the stride of @reqs; each entry's own size must equal it
 * @reserved: in: must be 0
 *
 * Every request is checked and pinned and all their bios are submitted under one plug, so they
 * are in flight at once; then the call waits for all of them. Each request succeeds or fails on
 * its own: its @result gets its bytes or -errno (those of PINDIO_IOC_DIO; EINVAL for an entry
 * whose own size is not @entry_size, whatever the bytes after it; E2BIG for an entry larger
 * than the kernel's struct pindio_dio whose bytes past it are not zero). The call itself returns
 * 0 once every result is written. The whole array (@nr × @entry_size bytes) is copied in before
 * any request is looked at, so an entry cannot change under the call. A request with the same
 * fd and direction as the request before it uses that request's file: the fd is looked up (and
 * checked) once per run of such requests.
 *
 * Errors of the call itself (no request is started):
 *   EINVAL  nr 0 or above PINDIO_DIO_BATCH_MAX; entry_size below PINDIO_DIO_SIZE_VER0 or above
 *           PINDIO_STRUCT_SIZE_MAX; reserved not 0
 *   EFAULT  any byte of the array cannot be read
 *   ENOMEM  out of memory
 * And once the requests ran: EFAULT if a result cannot be written back (the I/Os are done).
 */
struct pindio_dio_batch {
	__u32 size;
	__u32 nr;
	__u64 reqs;
	__u32 entry_size;
	__u32 reserved;
};

#define PINDIO_DIO_BATCH_SIZE_VER0	24

/*
 * Stacked block devices ("pindio loop devices")
 * ----------------------------------------------
 * /dev/pindio-loopN is a bio-based disk stacked on a window of a block device the caller opened,
 * as dm-linear is: each bio is remapped to the backing device at the same offset into the window,
 * as a clone that shares the bio's pages (listed, never pinned or copied) and carries its
 * operation, flags (REQ_SYNC, REQ_FUA, REQ_PREFLUSH, REQ_NOWAIT, REQ_META, ...) and I/O priority,
 * and it completes when the clone does, with its status. Reads, writes, flushes, discard,
 * write-zeroes and secure erase are passed on where the backing device has them; the disk takes
 * the backing device's queue limits and features as the kernel stacks them
 * (queue_limits_stack_bdev(): block sizes, transfer sizes, DMA alignment, discard limits, write
 * cache, FUA, rotational, stable writes, nowait) and the alignment offset of the window. A write
 * (of data, discard or zeroes) while the disk or the backing device is read-only ends with EIO.
 * The backing device is claimed exclusively for the disk's life, with one holder for every
 * pindio device (windows may share a device): while it is, the backing device cannot be mounted,
 * made a swap device or opened O_EXCL. The disk closes it when it is removed: closing fd does not
 * remove it, and neither does the process exiting. Unloading the module removes every device (the
 * module cannot be unloaded while one is open). PINDIO_IOC_LOOP_ADD and PINDIO_IOC_LOOP_DEL need
 * CAP_SYS_ADMIN, as device mapper's ioctls do; PINDIO_IOC_LOOP_INFO does not.
 */

/* Devices at most at once: indices 0 to PINDIO_LOOP_MAX - 1. */
#define PINDIO_LOOP_MAX		8

/* Flags of struct pindio_loop_add (and reported by PINDIO_IOC_LOOP_INFO). */
#define PINDIO_LOOP_READ_ONLY	(1U << 0)	/* a read-only device (also when fd is not writable or the backing device is read-only) */
#define PINDIO_LOOP_FLAGS	PINDIO_LOOP_READ_ONLY

/**
 * struct pindio_loop_add - argument of PINDIO_IOC_LOOP_ADD: make /dev/pindio-loopN
 * @size: in: sizeof(struct pindio_loop_add)
 * @flags: in: PINDIO_LOOP_*
 * @fd: in: a block device the caller opened for reading (and writing, for a writable device)
 * @reserved: in: must be 0
 * @offset: in: where the window starts on the backing device, in bytes
 * @sizelimit: in: the window's length in bytes; 0 for everything from @offset to the end
 *
 * Returns the new device's index N (the lowest free one).
 *
 * Errors:
 *   EINVAL  unknown flags; reserved not 0; offset or sizelimit not a multiple of the backing
 *           device's logical block size; offset at or past the end of the device; offset +
 *           sizelimit past the end or overflowing
 *   EBADF   fd is not an open file, or not open for reading
 *   ENOTBLK fd is not a block device
 *   ENOSPC  PINDIO_LOOP_MAX devices exist already
 *   EBUSY   the backing device is claimed by something else (mounted, an active swap device,
 *           opened O_EXCL, a device of another stacking driver)
 *   EOPNOTSUPP the backing device is zoned
 *   EPERM   the caller lacks CAP_SYS_ADMIN
 *   ENOMEM  out of memory
 */
struct pindio_loop_add {
	__u32 size;
	__u32 flags;
	__s32 fd;
	__u32 reserved;
	__u64 offset;
	__u64 sizelimit;
};

#define PINDIO_LOOP_ADD_SIZE_VER0	32

/**
 * struct pindio_loop_del - argument of PINDIO_IOC_LOOP_DEL: remove /dev/pindio-loopN
 * @size: in: sizeof(struct pindio_loop_del)
 * @index: in: N
 * @flags: in: must be 0
 * @reserved: in: must be 0
 *
 * Waits for the device's bios in flight, then closes the backing device (ending its claim).
 *
 * Errors:
 *   EINVAL  flags or reserved not 0
 *   ENXIO   no device has that index
 *   EBUSY   the device is open, or a device is stacked on it (nothing changes)
 *   EPERM   the caller lacks CAP_SYS_ADMIN
 */
struct pindio_loop_del {
	__u32 size;
	__u32 index;
	__u32 flags;
	__u32 reserved;
};

#define PINDIO_LOOP_DEL_SIZE_VER0	16

/**
 * struct pindio_loop_info - argument of PINDIO_IOC_LOOP_INFO: describe /dev/pindio-loopN
 * @size: in: sizeof(struct pindio_loop_info)
 * @index: in: N
 * @flags: out: PINDIO_LOOP_* of the device as it is now (PINDIO_LOOP_READ_ONLY if it or its
 *         backing device is read-only)
 * @dev: out: the device's number (major << 20 | minor, as the kernel's dev_t)
 * @backing_dev: out: the backing device's number, in the same form
 * @offset: out: the window's start on the backing device, in bytes
 * @sizelimit: out: the window's length (the device's size), in bytes
 *
 * Errors:
 *   ENXIO   no device has that index (a lister stops at none: indices are reused, lowest first)
 *   EINVAL  index not below PINDIO_LOOP_MAX
 */
struct pindio_loop_info {
	__u32 size;
	__u32 index;
	__u32 flags;
	__u32 dev;
	__u32 backing_dev;
	__u32 reserved;
	__u64 offset;
	__u64 sizelimit;
};

#define PINDIO_LOOP_INFO_SIZE_VER0	40

#define PINDIO_IOC_PIN		_IOWR(PINDIO_IOC_MAGIC, 0x01, struct pindio_pin)
#define PINDIO_IOC_READ_PINNED	_IOW(PINDIO_IOC_MAGIC, 0x02, struct pindio_read_pinned)
#define PINDIO_IOC_UNPIN	_IOW(PINDIO_IOC_MAGIC, 0x03, struct pindio_unpin)
#define PINDIO_IOC_PIN_BENCH	_IOWR(PINDIO_IOC_MAGIC, 0x04, struct pindio_pin_bench)
/* Returns the bytes transferred, or fails with the errno; the struct is only read. */
#define PINDIO_IOC_DIO		_IOW(PINDIO_IOC_MAGIC, 0x05, struct pindio_dio)
#define PINDIO_IOC_DIO_BATCH	_IOW(PINDIO_IOC_MAGIC, 0x06, struct pindio_dio_batch)
/* Returns the new device's index. */
#define PINDIO_IOC_LOOP_ADD	_IOW(PINDIO_IOC_MAGIC, 0x07, struct pindio_loop_add)
#define PINDIO_IOC_LOOP_DEL	_IOW(PINDIO_IOC_MAGIC, 0x08, struct pindio_loop_del)
#define PINDIO_IOC_LOOP_INFO	_IOWR(PINDIO_IOC_MAGIC, 0x09, struct pindio_loop_info)

#endif /* _UAPI_LINUX_PINDIO_H */
