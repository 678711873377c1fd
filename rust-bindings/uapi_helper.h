/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * bindgen input for the ABI, used by both the module (Kbuild) and the tools (tools/build.rs).
 *
 * bindgen cannot expand function-like macros such as _IOWR(), so each command number is also
 * given here as a constant; the PINDIO_CONST_ prefix is stripped from the generated names.
 */
#include "../include/uapi/linux/pindio.h"

const __u32 PINDIO_CONST_IOC_VERSION = PINDIO_IOC_VERSION;
const __u32 PINDIO_CONST_IOC_PIN = PINDIO_IOC_PIN;
const __u32 PINDIO_CONST_IOC_READ_PINNED = PINDIO_IOC_READ_PINNED;
const __u32 PINDIO_CONST_IOC_UNPIN = PINDIO_IOC_UNPIN;
const __u32 PINDIO_CONST_IOC_PIN_BENCH = PINDIO_IOC_PIN_BENCH;
const __u32 PINDIO_CONST_IOC_DIO = PINDIO_IOC_DIO;
const __u32 PINDIO_CONST_IOC_DIO_BATCH = PINDIO_IOC_DIO_BATCH;
const __u32 PINDIO_CONST_IOC_LOOP_ADD = PINDIO_IOC_LOOP_ADD;
const __u32 PINDIO_CONST_IOC_LOOP_DEL = PINDIO_IOC_LOOP_DEL;
const __u32 PINDIO_CONST_IOC_LOOP_INFO = PINDIO_IOC_LOOP_INFO;
