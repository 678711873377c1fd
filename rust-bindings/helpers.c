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
