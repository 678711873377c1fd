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

#endif /* _UAPI_LINUX_PINDIO_H */
