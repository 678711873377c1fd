// SPDX-License-Identifier: GPL-2.0
/* pindio_kunit.ko links its own copy of the C helpers: a module cannot share pindio.ko's objects. */
#include "../rust-bindings/helpers.c"
