// SPDX-License-Identifier: GPL-2.0

//! A seeded fuzzer of the `/dev/pindio` ABI: `pindio-test fuzz [--seed S] [--ops N]`.
//!
//! It generates `N` operations from the seed (every ioctl, with shaped arguments: iovecs of 0 to
//! `UIO_MAXIOV + 1` segments with empty, unaligned and overlapping ones, unmapped, null and kernel
//! addresses, defined and undefined flags, struct sizes and lengths around every limit, device
//! offsets at and past the end, every kind of fd, batches mixing good and bad requests), runs
//! them, and checks after each one:
//!
//! - the result is success or an errno the uapi header documents for that ioctl, and the failures
//!   a model of the rules predicts for sure (and the successes it predicts for sure) happen;
//! - a successful DIO moved exactly the bytes it reported: reads return what a shadow copy of the
//!   device holds, writes update the shadow, and the device is compared with the shadow (read
//!   back with `pread(O_DIRECT)`) every [`CHECK_EVERY`] operations and at the end;
//! - a failed DIO changed nothing: not the device, not the caller's memory;
//! - pins: `EMFILE` exactly when 64 handles are held, `READ_PINNED` returns what the pinned memory
//!   holds, and the pin balance returns to its start once the device files are closed;
//! - no splat in the kernel log (`/dev/kmsg`).
//!
//! A second phase races threads doing `PIN`/`UNPIN`/`READ_PINNED` against one thread closing and
//! reopening the file they use. On a failure it prints the seed and the shortest failing
//! sequence it found by removing operations, which `--seed` replays.

use anyhow::{bail, ensure, Context, Result};
use pindio::{uapi, Buf, Device, KernelLog};
use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::FileExt,
    },
    sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
    time::Instant,
};

const PAGE: usize = 4096;
/// The device the fuzzer owns: memory-backed null_blk, 8 MiB (scripts/guest-init).
const FUZZ_DEV: &str = "/dev/nullb6";
const DEV_BYTES: u64 = 8 << 20;
/// Pages of the fuzzer's memory; pages [`HOLE`] are unmapped, and so is the page after it.
const ARENA_PAGES: usize = 64;
const HOLE: std::ops::Range<usize> = 40..42;
/// Operations between full comparisons of the device with its shadow and kernel-log scans.
const CHECK_EVERY: usize = 64;
const MAX_RW_COUNT: u64 = super::review_tests::MAX_RW_COUNT as u64;

/// xorshift64*: small, seedable, reproducible everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Where an address points.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Addr {
    /// Mapped, writable memory: an offset into the arena.
    Arena(usize),
    /// Unmapped user memory: an offset into the arena's hole.
    Hole(usize),
    Null,
    Kernel,
    /// A user address outside the arena that the fuzzer did not make (read from memory as an
    /// iovec entry): whether it is mapped, the model does not know.
    Other(u64),
}

/// The memory of a PIN or a DIO: one range, or an iovec (its segments, and the count passed,
/// which may be larger than what is readable).
#[derive(Clone, Debug)]
enum Mem {
    Range(Addr, u64),
    Iovec(Vec<(Addr, u64)>),
    /// An iovec array pointer that is not readable, with this segment count.
    BadArray(Addr, u32),
}

/// The file a DIO names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fd {
    Rw,
    Ro,
    Wo,
    Regular,
    Pipe,
    Pindio,
    Closed,
    Minus1,
}

/// A pin handle: one the fuzzer holds (by index, modulo their number), or any number.
#[derive(Clone, Copy, Debug)]
enum Handle {
    Held(usize),
    Raw(u32),
}

/// The `size` member of an argument struct.
#[derive(Clone, Copy, Debug)]
enum Size {
    Exact,
    /// One byte short of the first published size: EINVAL.
    Short,
    /// Larger, zero tail: accepted.
    LongZero,
    /// Larger, non-zero tail: E2BIG.
    LongDirty,
    /// Above PINDIO_STRUCT_SIZE_MAX: E2BIG.
    Huge,
}

/// The shape of one entry of a batch array.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Entry {
    /// Its size is the stride.
    Exact,
    /// Its size is 8 bytes more than the stride (the bytes after it are the next entry's).
    Bigger,
    /// Its size is 8 bytes less than the stride.
    Smaller,
    /// Its size is the stride, larger than the kernel's struct, with a non-zero byte past it.
    DirtyTail,
}

#[derive(Clone, Debug)]
struct DioSpec {
    flags: u32,
    fd: Fd,
    reserved: u32,
    offset: u64,
    mem: Mem,
}

#[derive(Clone, Debug)]
enum Op {
    Version(Size),
    Pin {
        dev: usize,
        flags: u32,
        mem: Mem,
        size: Size,
    },
    ReadPinned {
        dev: usize,
        handle: Handle,
        offset: u64,
        len: u64,
        dst: Addr,
    },
    Unpin {
        dev: usize,
        handle: Handle,
    },
    PinBench {
        dev: usize,
        flags: u32,
        addr: Addr,
        len: u64,
        per_call: u32,
    },
    Dio {
        dev: usize,
        spec: DioSpec,
        size: Size,
    },
    Batch {
        dev: usize,
        reqs: Vec<DioSpec>,
        entry_size: u32,
        nr: Option<u32>,
        /// The shape of each entry: its own size, and its bytes past the kernel's struct.
        shapes: Vec<Entry>,
        /// `Some(n)`: only the first `n` bytes of the array are readable (it runs into an
        /// unmapped page).
        readable: Option<usize>,
    },
    Reopen {
        dev: usize,
    },
    /// `PINDIO_IOC_LOOP_ADD` on the fuzz device (or another fd) at a window of it.
    LoopAdd {
        fd: Fd,
        offset: u64,
        sizelimit: u64,
        flags: u32,
    },
    /// `PINDIO_IOC_LOOP_INFO`, then `PINDIO_IOC_LOOP_DEL`, of an index.
    LoopDel {
        index: u32,
    },
    Unknown {
        cmd: u32,
    },
}

/// Lengths around every limit the ABI has.
const LENGTHS: &[u64] = &[
    0,
    1,
    511,
    512,
    513,
    1024,
    PAGE as u64 - 1,
    PAGE as u64,
    PAGE as u64 + 512,
    17 * PAGE as u64,
    18 * PAGE as u64,
    32 * PAGE as u64,
    MAX_RW_COUNT,
    MAX_RW_COUNT + 1,
    1 << 32,
    u64::MAX,
];

fn gen_addr(r: &mut Rng) -> Addr {
    match r.below(20) {
        0 => Addr::Null,
        1 => Addr::Kernel,
        2 => Addr::Hole(r.below((HOLE.len() * PAGE) as u64) as usize),
        _ => {
            let page = r.below(ARENA_PAGES as u64) as usize;
            let off = match r.below(4) {
                0 => 0,
                1 => r.below(8) as usize * 512,
                2 => r.below(PAGE as u64) as usize,
                _ => PAGE - 512,
            };
            Addr::Arena(page * PAGE + off)
        }
    }
}

fn gen_len(r: &mut Rng) -> u64 {
    if r.chance(30) {
        r.pick(LENGTHS)
    } else {
        match r.below(3) {
            0 => (1 + r.below(16)) * 512,
            1 => (1 + r.below(8)) * PAGE as u64,
            _ => r.below(3 * PAGE as u64),
        }
    }
}

fn gen_mem(r: &mut Rng) -> Mem {
    match r.below(10) {
        0..=4 => Mem::Range(gen_addr(r), gen_len(r)),
        5 => Mem::BadArray(
            r.pick(&[Addr::Null, Addr::Kernel, Addr::Hole(0)]),
            1 + r.below(4) as u32,
        ),
        _ => {
            let n = match r.below(10) {
                0 => 1024 + r.below(2) as usize,
                1 => 1,
                2 => 2,
                _ => 1 + r.below(12) as usize,
            };
            let mut segs = Vec::with_capacity(n);
            for _ in 0..n {
                let len = match r.below(20) {
                    0..=3 => 0,
                    4 => gen_len(r),
                    _ => gen_len(r).min(8 * PAGE as u64),
                };
                segs.push((gen_addr(r), len));
            }
            Mem::Iovec(segs)
        }
    }
}

fn gen_flags(r: &mut Rng, defined: u32) -> u32 {
    let mut flags = r.below(u64::from(defined) + 1) as u32 & defined;
    if r.chance(5) {
        flags |= 1 << (3 + r.below(29));
    }
    flags
}

fn gen_size(r: &mut Rng) -> Size {
    match r.below(40) {
        0 => Size::Short,
        1 => Size::LongZero,
        2 => Size::LongDirty,
        3 => Size::Huge,
        _ => Size::Exact,
    }
}

fn gen_dio(r: &mut Rng) -> DioSpec {
    let fd = if r.chance(85) {
        Fd::Rw
    } else {
        r.pick(&[
            Fd::Ro,
            Fd::Wo,
            Fd::Regular,
            Fd::Pipe,
            Fd::Pindio,
            Fd::Closed,
            Fd::Minus1,
        ])
    };
    let offset = match r.below(10) {
        0 => DEV_BYTES - 512 * (r.below(8)),
        1 => DEV_BYTES + 512 * r.below(3),
        2 => r.below(DEV_BYTES),
        3 => u64::MAX - 511,
        _ => r.below(DEV_BYTES / 512) * 512,
    };
    let mut mem = gen_mem(r);
    // Mostly block-sized memory, so that most I/Os get as far as the device.
    if let (Mem::Range(_, len), true) = (&mut mem, r.chance(60)) {
        *len = (1 + r.below(40)) * 512;
    }
    DioSpec {
        flags: gen_flags(r, uapi::PINDIO_DIO_FLAGS),
        fd,
        reserved: if r.chance(3) { 1 } else { 0 },
        offset,
        mem,
    }
}

fn gen_op(r: &mut Rng) -> Op {
    let dev = r.below(2) as usize;
    let handle = |r: &mut Rng| {
        if r.chance(80) {
            Handle::Held(r.below(64) as usize)
        } else {
            Handle::Raw(r.pick(&[0, 1, 64, 65, u32::MAX]))
        }
    };
    match r.below(100) {
        0..=39 => Op::Dio {
            dev,
            spec: gen_dio(r),
            size: gen_size(r),
        },
        40..=59 => Op::Pin {
            dev,
            flags: gen_flags(r, uapi::PINDIO_PIN_FLAGS),
            mem: gen_mem(r),
            size: gen_size(r),
        },
        60..=67 => Op::Unpin {
            dev,
            handle: handle(r),
        },
        68..=75 => Op::ReadPinned {
            dev,
            handle: handle(r),
            offset: r.pick(&[0, 1, 511, 4096, u64::MAX]),
            len: r.pick(&[0, 1, 512, 4096, 9000, u64::MAX]),
            dst: gen_addr(r),
        },
        76..=85 => {
            let n = r.pick(&[1, 2, 3, 8, 32]);
            let entry_size = r.pick(&[
                uapi::PINDIO_DIO_SIZE_VER0,
                uapi::PINDIO_DIO_SIZE_VER0,
                uapi::PINDIO_DIO_SIZE_VER0,
                uapi::PINDIO_DIO_SIZE_VER0 + 8,
                uapi::PINDIO_DIO_SIZE_VER0 + 8,
                uapi::PINDIO_DIO_SIZE_VER0 - 8,
                uapi::PINDIO_STRUCT_SIZE_MAX + 8,
            ]);
            let shapes = (0..n)
                .map(|_| match r.below(20) {
                    0 => Entry::Bigger,
                    1 => Entry::Smaller,
                    2 if entry_size > uapi::PINDIO_DIO_SIZE_VER0 => Entry::DirtyTail,
                    _ => Entry::Exact,
                })
                .collect();
            let bytes = n * entry_size as usize;
            Op::Batch {
                dev,
                reqs: (0..n).map(|_| gen_dio(r)).collect(),
                entry_size,
                nr: if r.chance(5) {
                    Some(r.pick(&[0, uapi::PINDIO_DIO_BATCH_MAX + 1]))
                } else {
                    None
                },
                shapes,
                readable: r
                    .chance(8)
                    .then(|| r.below(bytes as u64) as usize)
                    .filter(|_| bytes > 0),
            }
        }
        86..=88 => Op::Version(gen_size(r)),
        89..=91 => Op::PinBench {
            dev,
            flags: gen_flags(r, uapi::PINDIO_PIN_WRITE | uapi::PINDIO_PIN_LONGTERM),
            addr: gen_addr(r),
            len: r.pick(&[0, 512, PAGE as u64, 16 * PAGE as u64, 1 << 31]),
            per_call: r.pick(&[0, 1, 7, 512]),
        },
        92..=94 => Op::Reopen { dev },
        95..=96 => Op::LoopAdd {
            fd: if r.chance(70) {
                r.pick(&[Fd::Rw, Fd::Ro])
            } else {
                r.pick(&[
                    Fd::Wo,
                    Fd::Regular,
                    Fd::Pipe,
                    Fd::Pindio,
                    Fd::Closed,
                    Fd::Minus1,
                ])
            },
            offset: r.pick(&[0, 1, 512, 4096, DEV_BYTES - 512, DEV_BYTES, DEV_BYTES + 512]),
            sizelimit: r.pick(&[
                0,
                0,
                511,
                512,
                1 << 20,
                DEV_BYTES,
                DEV_BYTES + 512,
                u64::MAX,
            ]),
            flags: r.pick(&[0, 0, uapi::PINDIO_LOOP_READ_ONLY, 1 << 7]),
        },
        97 => Op::LoopDel {
            index: r.pick(&[0, 1, 2, 7, uapi::PINDIO_LOOP_MAX, u32::MAX]),
        },
        // Numbers past the last command.
        _ => Op::Unknown {
            cmd: (uapi::PINDIO_IOC_VERSION & !0xff)
                | ((uapi::PINDIO_IOC_LOOP_INFO & 0xff) + 1 + r.below(10) as u32),
        },
    }
}

/// Errnos each command may return (the uapi header), besides those common to all.
const COMMON: &[i32] = &[libc::ENOTTY, libc::EFAULT, libc::EINVAL, libc::E2BIG];
const PIN_ERRS: &[i32] = &[libc::EMFILE, libc::ENOSPC, libc::ENOMEM];
const READ_PINNED_ERRS: &[i32] = &[libc::ENOENT];
const UNPIN_ERRS: &[i32] = &[libc::ENOENT];
const BENCH_ERRS: &[i32] = &[libc::ENOMEM, libc::EINTR];
const LOOP_ADD_ERRS: &[i32] = &[libc::EBADF, libc::ENOTBLK, libc::ENOSPC, libc::ENOMEM];
const LOOP_DEL_ERRS: &[i32] = &[libc::ENXIO, libc::EBUSY];
const DIO_ERRS: &[i32] = &[
    libc::EBADF,
    libc::ENOTBLK,
    libc::EPERM,
    libc::ETXTBSY,
    libc::EBUSY,
    libc::EIO,
    libc::ENOMEM,
];

/// What a model of the header's rules says of a call.
#[derive(Debug, PartialEq)]
enum Expect {
    /// It must succeed.
    Ok,
    /// It must fail with one of these.
    Fail(&'static [i32]),
    /// Success or any documented errno: only where the model does not know the memory the
    /// call uses (a user address it did not make, read from memory as an iovec entry).
    Either,
}

/// A pin the fuzzer holds: its handle and the arena ranges it pinned, in order.
struct Held {
    handle: u32,
    ranges: Vec<(usize, usize)>,
    /// Pages and bytes the kernel said it pinned.
    pages: u64,
    bytes: u64,
}

/// Everything a run works on.
struct World {
    arena: Buf,
    devs: [Device; 2],
    held: [Vec<Held>; 2],
    pages_held: [u64; 2],
    shadow: Vec<u8>,
    files: Files,
    kmsg: KernelLog,
    /// The stacked devices this run made, by index, with their window: what the model expects
    /// `PINDIO_IOC_LOOP_INFO` to say. Removed when the world goes.
    loops: [Option<(u64, u64)>; uapi::PINDIO_LOOP_MAX as usize],
    /// The first address past user space (`TASK_SIZE_MAX`), as [`user_end`] finds it.
    user_end: u64,
}

impl Drop for World {
    fn drop(&mut self) {
        for (i, l) in self.loops.iter().enumerate() {
            if l.is_some() {
                let _ = self.devs[0].loop_del(i as u32);
            }
        }
    }
}

/// The files a DIO can name.
struct Files {
    rw: File,
    ro: File,
    wo: File,
    regular: File,
    pipe: OwnedFd,
    pindio: File,
}

impl Files {
    fn open() -> Result<Self> {
        let blk = |read: bool, write: bool| {
            std::fs::OpenOptions::new()
                .read(read)
                .write(write)
                .open(FUZZ_DEV)
                .with_context(|| format!("open {FUZZ_DEV}"))
        };
        std::fs::write("/tmp/pindio-fuzz-regular", vec![0u8; 64 << 10])?;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe");
        // SAFETY: Both are ours; the write end is closed at once.
        let (pipe, _w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self {
            rw: blk(true, true)?,
            ro: blk(true, false)?,
            wo: blk(false, true)?,
            regular: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/tmp/pindio-fuzz-regular")?,
            pipe,
            pindio: File::open(pindio::DEVICE_PATH)?,
        })
    }

    fn raw(&self, fd: Fd) -> i32 {
        match fd {
            Fd::Rw => self.rw.as_raw_fd(),
            Fd::Ro => self.ro.as_raw_fd(),
            Fd::Wo => self.wo.as_raw_fd(),
            Fd::Regular => self.regular.as_raw_fd(),
            Fd::Pipe => self.pipe.as_raw_fd(),
            Fd::Pindio => self.pindio.as_raw_fd(),
            Fd::Closed => 1000,
            Fd::Minus1 => -1,
        }
    }
}

impl World {
    fn new() -> Result<Self> {
        let mut arena = Buf::new((ARENA_PAGES + 1) * PAGE)?;
        for (i, b) in arena.bytes().iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        // SAFETY: Unmaps pages of our own arena: the hole, and a guard page after it.
        unsafe {
            libc::munmap(
                (arena.addr() + HOLE.start * PAGE) as *mut libc::c_void,
                HOLE.len() * PAGE,
            );
            libc::munmap(
                (arena.addr() + ARENA_PAGES * PAGE) as *mut libc::c_void,
                PAGE,
            );
        };
        let files = Files::open()?;
        // The device starts zeroed, and so does its shadow.
        files.rw.write_all_at(&vec![0u8; DEV_BYTES as usize], 0)?;
        files.rw.sync_all()?;
        Ok(Self {
            arena,
            devs: [Device::open()?, Device::open()?],
            held: [Vec::new(), Vec::new()],
            pages_held: [0, 0],
            shadow: vec![0u8; DEV_BYTES as usize],
            files,
            kmsg: KernelLog::open()?,
            loops: [None; uapi::PINDIO_LOOP_MAX as usize],
            user_end: user_end(),
        })
    }

    fn addr(&self, a: Addr) -> u64 {
        match a {
            Addr::Arena(off) => (self.arena.addr() + off) as u64,
            Addr::Hole(off) => (self.arena.addr() + HOLE.start * PAGE + off) as u64,
            Addr::Null => 0,
            Addr::Kernel => 0xffff_8880_0000_0000,
            Addr::Other(a) => a,
        }
    }

    /// The address `raw` as the model names it.
    fn name(&self, raw: u64) -> Addr {
        let base = self.arena.addr() as u64;
        if raw == 0 {
            Addr::Null
        } else if (base..base + ((ARENA_PAGES + 1) * PAGE) as u64).contains(&raw) {
            Addr::Arena((raw - base) as usize)
        } else {
            Addr::Other(raw)
        }
    }

    /// The memory of a PIN or DIO as the kernel sees it: `mem` read as an iovec array or as a
    /// single buffer, as `iovec` says; an array is read from the arena as it is now (`arena`).
    fn seen(&self, mem: &Mem, iovec: bool, store: &[libc::iovec], arena: &[u8]) -> Seen {
        match (mem, iovec) {
            (Mem::Range(a, len), false) => Seen::Range(*a, *len),
            (Mem::BadArray(a, n), false) => Seen::Range(*a, u64::from(*n)),
            (Mem::Iovec(segs), true) => Seen::Array {
                n: segs.len() as u64,
                segs: Some(segs.clone()),
            },
            (Mem::BadArray(_, n), true) => Seen::Array {
                n: u64::from(*n),
                segs: None,
            },
            (Mem::Range(a, n), true) => {
                // The arena's bytes read as `n` iovecs, if they are all mapped arena memory.
                let bytes = n.saturating_mul(16);
                let segs = match *a {
                    Addr::Arena(off) if *n <= 1024 && World::mapped(*a, bytes) => Some(
                        arena[off..off + bytes as usize]
                            .chunks_exact(16)
                            .map(|e| {
                                let base = u64::from_ne_bytes(e[..8].try_into().unwrap_or([0; 8]));
                                let len = u64::from_ne_bytes(e[8..].try_into().unwrap_or([0; 8]));
                                (self.name(base), len)
                            })
                            .collect(),
                    ),
                    _ => None,
                };
                Seen::Array { n: *n, segs }
            }
            (Mem::Iovec(segs), false) => {
                // The fuzzer's own iovec array, read as a buffer of `segs.len()` bytes.
                let len = segs.len();
                // SAFETY: `store` holds the array, `16 * len >= len` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(store.as_ptr().cast::<u8>(), len) };
                Seen::Foreign {
                    addr: store.as_ptr() as u64,
                    bytes: bytes.to_vec(),
                }
            }
        }
    }

    /// The arena's bytes (the hole reads as nothing).
    fn arena_bytes(&self) -> Vec<u8> {
        let base = self.arena.addr() as *const u8;
        let mut v = vec![0u8; ARENA_PAGES * PAGE];
        for page in (0..ARENA_PAGES).filter(|p| !HOLE.contains(p)) {
            // SAFETY: A mapped page of the arena.
            let src = unsafe { std::slice::from_raw_parts(base.add(page * PAGE), PAGE) };
            v[page * PAGE..(page + 1) * PAGE].copy_from_slice(src);
        }
        v
    }

    /// Whether `len` bytes at `a` are all mapped arena memory.
    fn mapped(a: Addr, len: u64) -> bool {
        match a {
            Addr::Arena(off) => {
                let end = off as u64 + len;
                end <= (ARENA_PAGES * PAGE) as u64
                    && !(off / PAGE..(end as usize).div_ceil(PAGE)).any(|p| HOLE.contains(&p))
            }
            _ => false,
        }
    }

    /// Builds the iovec array of `segs` in `store`, returning its address.
    fn iovec(&self, segs: &[(Addr, u64)], store: &mut Vec<libc::iovec>) -> u64 {
        store.clear();
        store.extend(segs.iter().map(|&(a, len)| libc::iovec {
            iov_base: self.addr(a) as *mut libc::c_void,
            iov_len: len as usize,
        }));
        store.as_ptr() as u64
    }

    /// The (address, length) a PIN or DIO passes for `mem`.
    fn mem_args(&self, mem: &Mem, store: &mut Vec<libc::iovec>) -> (u64, u64) {
        match mem {
            Mem::Range(a, len) => (self.addr(*a), *len),
            Mem::Iovec(segs) => (self.iovec(segs, store), segs.len() as u64),
            Mem::BadArray(a, n) => (self.addr(*a), u64::from(*n)),
        }
    }
}

/// The first address past user space on x86-64, `TASK_SIZE_MAX`: `access_ok` refuses any range
/// that reaches past it. It is `(1 << 56) - PAGE_SIZE` when the kernel runs with 5-level page
/// tables (`-cpu max` under TCG has LA57), `(1 << 47) - PAGE_SIZE` otherwise; the kernel's own mm
/// says which: a mapping above the 47-bit space can be made only with 5-level page tables.
fn user_end() -> u64 {
    let probe = 1usize << 52;
    // SAFETY: A new anonymous mapping that replaces nothing (MAP_FIXED_NOREPLACE), unmapped at
    // once; an older kernel that ignores the flag treats the address as a hint.
    let five_level = unsafe {
        let p = libc::mmap(
            probe as *mut libc::c_void,
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            libc::munmap(p, PAGE);
        }
        p as usize == probe
    };
    let bits = if five_level { 56 } else { 47 };
    (1u64 << bits) - PAGE as u64
}

/// The memory of a PIN or DIO as the kernel sees it.
enum Seen {
    /// A single buffer.
    Range(Addr, u64),
    /// An iovec array of `n` entries, as the kernel reads them (`None`: it cannot read them).
    Array {
        n: u64,
        segs: Option<Vec<(Addr, u64)>>,
    },
    /// A single buffer outside the arena whose bytes the model knows (the fuzzer's own iovec
    /// array, named as a buffer).
    Foreign { addr: u64, bytes: Vec<u8> },
}

/// What a successful DIO did to memory, as far as the model knows.
enum Effect {
    /// It moved these arena ranges, in order.
    Arena(Vec<(usize, usize)>),
    /// It read these bytes (the fuzzer's own memory, not the arena).
    Foreign(Vec<u8>),
    /// The model does not know the memory (only with [`Expect::Either`]).
    Unknown,
}

/// Whether `access_ok` passes `len` bytes at `a`.
fn access_ok(w: &World, a: Addr, len: u64) -> bool {
    w.addr(a)
        .checked_add(len)
        .is_some_and(|end| end <= w.user_end)
}

/// Pages spanned by `len` bytes at user address `addr`.
fn pages_spanned(addr: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let first = addr / PAGE as u64;
    let last = (addr.saturating_add(len) - 1) / PAGE as u64;
    last - first + 1
}

/// An iovec array of `n` entries as `import_iovec` takes it (`UserPages::new_iovec`'s checks,
/// in its order): its non-empty segments, or the error of the array itself (more than `UIO_MAXIOV` entries, unreadable, a segment longer
/// than `isize::MAX` or outside user space, a total above `MAX_RW_COUNT`).
fn import_array(
    w: &World,
    n: u64,
    segs: Option<&[(Addr, u64)]>,
) -> Result<Vec<(Addr, u64)>, &'static [i32]> {
    if n > 1024 {
        return Err(&[libc::EINVAL]);
    }
    let segs = segs.ok_or(&[libc::EFAULT][..])?;
    if segs.iter().any(|s| s.1 > isize::MAX as u64) {
        return Err(&[libc::EINVAL]);
    }
    let mut total = 0u64;
    for &(a, len) in segs {
        if !access_ok(w, a, len) {
            return Err(&[libc::EFAULT]);
        }
        total = total.saturating_add(len);
        if total > MAX_RW_COUNT {
            return Err(&[libc::EINVAL]);
        }
    }
    Result::Ok(segs.iter().filter(|s| s.1 > 0).copied().collect())
}

/// `size` and a tail for an argument struct of `T` written into `buf`, as [`Size`] says.
fn sized_buf<T: pindio::ExtStruct>(val: &T, size: Size, ver0: u32) -> Vec<u8> {
    let n = std::mem::size_of::<T>();
    // SAFETY: `T` is a plain uapi struct of integers.
    let bytes = unsafe { std::slice::from_raw_parts((val as *const T).cast::<u8>(), n) };
    let (total, field) = match size {
        Size::Exact => (n, n as u32),
        Size::Short => (n, ver0 - 1),
        Size::LongZero | Size::LongDirty => (n + 16, (n + 16) as u32),
        Size::Huge => (n + 16, uapi::PINDIO_STRUCT_SIZE_MAX + 1),
    };
    let mut buf = vec![0u8; total.max(n)];
    buf[..n].copy_from_slice(bytes);
    buf[..4].copy_from_slice(&field.to_ne_bytes());
    if let Size::LongDirty = size {
        buf[n + 3] = 1;
    }
    buf
}

fn size_expect(size: Size) -> Option<Expect> {
    match size {
        Size::Exact | Size::LongZero => None,
        Size::Short => Some(Expect::Fail(&[libc::EINVAL])),
        Size::LongDirty | Size::Huge => Some(Expect::Fail(&[libc::E2BIG])),
    }
}

fn call(dev: &Device, cmd: u32, buf: &mut [u8]) -> io::Result<i32> {
    // SAFETY: `buf` is live and at least as large as its `size` member says, or the kernel
    // refuses it before reading further.
    unsafe { dev.ioctl_raw(cmd, buf.as_mut_ptr().cast()) }
}

/// Checks `res` against what the model expected and the errnos documented for the command.
fn check(what: &str, res: &io::Result<i32>, expect: &Expect, documented: &[i32]) -> Result<()> {
    match (res, expect) {
        (Ok(_), Expect::Fail(e)) => bail!("{what}: succeeded, expected one of {e:?}"),
        (Err(e), Expect::Ok) => bail!("{what}: failed with {e}, expected success"),
        (Err(e), Expect::Fail(set)) if !set.contains(&e.raw_os_error().unwrap_or(0)) => {
            bail!("{what}: failed with {e}, expected one of {set:?}")
        }
        (Err(e), _) => {
            let errno = e.raw_os_error().unwrap_or(0);
            ensure!(
                COMMON.contains(&errno) || documented.contains(&errno),
                "{what}: errno {errno} ({e}) is not documented for it"
            );
            Ok(())
        }
        (Ok(_), _) => Ok(()),
    }
}

/// The model of a DIO, in the kernel's order of checks: what it must do, and what a success
/// does to memory. `seen` is its memory as the kernel reads it ([`World::seen`]). The fuzz
/// device is null_blk: 512-byte logical blocks, a DMA alignment of 2 bytes.
fn model_dio(w: &World, spec: &DioSpec, seen: &Seen) -> (Expect, Effect) {
    use Expect::*;
    let fail = |e: &'static [i32]| (Fail(e), Effect::Unknown);
    let write = spec.flags & uapi::PINDIO_DIO_WRITE != 0;
    let fua = spec.flags & uapi::PINDIO_DIO_FUA != 0;
    // check_dio: the struct alone.
    if spec.flags & !uapi::PINDIO_DIO_FLAGS != 0 || spec.reserved != 0 || (fua && !write) {
        return fail(&[libc::EINVAL]);
    }
    match seen {
        Seen::Range(a, len) if *len == 0 || w.addr(*a).checked_add(*len).is_none() => {
            return fail(&[libc::EINVAL])
        }
        Seen::Array { n, .. } if *n == 0 || *n > u64::from(u32::MAX) => {
            return fail(&[libc::EINVAL])
        }
        _ => {}
    }
    // The file.
    match spec.fd {
        Fd::Rw => {}
        Fd::Ro if !write => {}
        Fd::Wo if write => {}
        Fd::Regular | Fd::Pipe | Fd::Pindio => return fail(&[libc::ENOTBLK]),
        _ => return fail(&[libc::EBADF]),
    }
    let aligned = |a: Addr, len: u64| w.addr(a).is_multiple_of(2) && len.is_multiple_of(512);
    let range_ok = |total: u64| {
        total != 0
            && (spec.offset | total).is_multiple_of(512)
            && spec
                .offset
                .checked_add(total)
                .is_some_and(|end| end <= DEV_BYTES)
    };
    match seen {
        Seen::Range(a, len) => {
            // UserRange::new, then the device's rules, then the pin.
            if *len > MAX_RW_COUNT {
                return fail(&[libc::EINVAL]);
            }
            if !access_ok(w, *a, *len) {
                return fail(&[libc::EFAULT]);
            }
            if !aligned(*a, *len) || !range_ok(*len) {
                return fail(&[libc::EINVAL]);
            }
            match a {
                Addr::Other(_) => (Either, Effect::Unknown),
                Addr::Arena(off) if World::mapped(*a, *len) => {
                    (Ok, Effect::Arena(vec![(*off, *len as usize)]))
                }
                _ => fail(&[libc::EFAULT]),
            }
        }
        Seen::Foreign { addr, bytes } => {
            let len = bytes.len() as u64;
            if !addr.is_multiple_of(2) || !len.is_multiple_of(512) || !range_ok(len) {
                return fail(&[libc::EINVAL]);
            }
            (Ok, Effect::Foreign(bytes.clone()))
        }
        Seen::Array { n, segs } => {
            let nonempty = match import_array(w, *n, segs.as_deref()) {
                Result::Ok(nonempty) => nonempty,
                Err(e) => return fail(e),
            };
            let total = nonempty.iter().map(|s| s.1).sum();
            if !range_ok(total) || !nonempty.iter().all(|&(a, len)| aligned(a, len)) {
                return fail(&[libc::EINVAL]);
            }
            for &(a, len) in &nonempty {
                match a {
                    Addr::Other(_) => return (Either, Effect::Unknown),
                    _ if !World::mapped(a, len) => return fail(&[libc::EFAULT]),
                    _ => {}
                }
            }
            (Ok, Effect::Arena(arena_ranges(&nonempty)))
        }
    }
}

/// The arena ranges `(offset, length)` of segments that are all arena memory.
fn arena_ranges(segs: &[(Addr, u64)]) -> Vec<(usize, usize)> {
    segs.iter()
        .map(|&(a, len)| match a {
            Addr::Arena(off) => (off, len as usize),
            _ => (0, 0),
        })
        .collect()
}

/// A request of a batch, what the model says it does to memory, and its result.
type BatchResult<'a> = (&'a DioSpec, Effect, i64);

/// Whether two of `ranges` share a byte.
fn overlapping(ranges: &[(usize, usize)]) -> bool {
    ranges.iter().enumerate().any(|(i, a)| {
        ranges[i + 1..]
            .iter()
            .any(|b| a.0 < b.0 + b.1 && b.0 < a.0 + a.1)
    })
}

/// Runs `ops` on a fresh world; the index and reason of the first failure.
fn run(ops: &[Op], verbose: bool) -> std::result::Result<(), (usize, String)> {
    let mut w = World::new().map_err(|e| (0, format!("setup: {e:#}")))?;
    let start = pindio::foll_pin_counts().map_err(|e| (0, e.to_string()))?;
    for (i, op) in ops.iter().enumerate() {
        step(&mut w, op).map_err(|e| (i, format!("{e:#}")))?;
        if (i + 1) % CHECK_EVERY == 0 || i + 1 == ops.len() {
            compare_device(&w).map_err(|e| (i, format!("{e:#}")))?;
            if let Some(s) = w.kmsg.splat() {
                return Err((i, format!("kernel log: {s}")));
            }
        }
        if verbose && (i + 1) % 10000 == 0 {
            println!("# fuzz: {} operations", i + 1);
        }
    }
    let last = ops.len().saturating_sub(1);
    drop(w);
    let (acq, rel) = pindio::foll_pin_counts().map_err(|e| (last, e.to_string()))?;
    if acq - start.0 != rel - start.1 {
        return Err((
            last,
            format!(
                "pin balance: {} taken, {} released",
                acq - start.0,
                rel - start.1
            ),
        ));
    }
    Ok(())
}

/// The device holds what the shadow says.
fn compare_device(w: &World) -> Result<()> {
    let f = pindio::open_blockdev(FUZZ_DEV, false, true)?;
    let mut m = Buf::new(DEV_BYTES as usize)?;
    f.read_exact_at(m.bytes(), 0)
        .context("pread(O_DIRECT) of the fuzz device")?;
    if let Some(at) = m.bytes().iter().zip(&w.shadow).position(|(a, b)| a != b) {
        bail!("device byte {at:#x} differs from the shadow");
    }
    Ok(())
}

fn step(w: &mut World, op: &Op) -> Result<()> {
    let mut iov = Vec::new();
    match op {
        Op::Version(size) => {
            let v = uapi::pindio_version::default();
            let mut buf = sized_buf(&v, *size, uapi::PINDIO_VERSION_SIZE_VER0);
            let res = call(&w.devs[0], uapi::PINDIO_IOC_VERSION, &mut buf);
            let expect = size_expect(*size).unwrap_or(Expect::Ok);
            check("VERSION", &res, &expect, &[])?;
        }
        Op::Pin {
            dev,
            flags,
            mem,
            size,
        } => {
            let (addr, len) = w.mem_args(mem, &mut iov);
            let v = uapi::pindio_pin {
                flags: *flags,
                addr,
                len,
                ..Default::default()
            };
            let mut buf = sized_buf(&v, *size, uapi::PINDIO_PIN_SIZE_VER0);
            let seen = w.seen(
                mem,
                flags & uapi::PINDIO_PIN_IOVEC != 0,
                &iov,
                &w.arena_bytes(),
            );
            let budget = u64::from(uapi::PINDIO_MAX_PINNED_PAGES) - w.pages_held[*dev];
            let res = call(&w.devs[*dev], uapi::PINDIO_IOC_PIN, &mut buf);
            let (expect, ranges, pages, bytes) =
                model_pin(w, *flags, &seen, w.held[*dev].len(), budget);
            let known = expect == Expect::Ok;
            let expect = size_expect(*size).unwrap_or(expect);
            check(&format!("PIN {op:?}"), &res, &expect, PIN_ERRS)?;
            if res.is_ok() {
                // SAFETY: `buf` holds a `struct pindio_pin` (at least its size).
                let out: uapi::pindio_pin =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
                if known {
                    ensure!(
                        (u64::from(out.nr_pages), out.bytes) == (pages, bytes),
                        "PIN reported {} pages, {} bytes, not {pages}, {bytes}",
                        out.nr_pages,
                        out.bytes
                    );
                }
                ensure!(
                    !w.held[*dev].iter().any(|h| h.handle == out.handle),
                    "PIN gave handle {} twice",
                    out.handle
                );
                w.pages_held[*dev] += u64::from(out.nr_pages);
                w.held[*dev].push(Held {
                    handle: out.handle,
                    ranges,
                    pages: u64::from(out.nr_pages),
                    bytes: out.bytes,
                });
            }
        }
        Op::Unpin { dev, handle } => {
            let (h, index) = resolve(&w.held[*dev], *handle);
            let v = uapi::pindio_unpin {
                size: uapi::PINDIO_UNPIN_SIZE_VER0,
                handle: h,
            };
            let mut buf = sized_buf(&v, Size::Exact, uapi::PINDIO_UNPIN_SIZE_VER0);
            let res = call(&w.devs[*dev], uapi::PINDIO_IOC_UNPIN, &mut buf);
            let expect = if index.is_some() {
                Expect::Ok
            } else {
                Expect::Fail(&[libc::ENOENT])
            };
            check("UNPIN", &res, &expect, UNPIN_ERRS)?;
            if let Some(i) = index {
                let h = w.held[*dev].remove(i);
                w.pages_held[*dev] -= h.pages;
            }
        }
        Op::ReadPinned {
            dev,
            handle,
            offset,
            len,
            dst,
        } => {
            let (h, index) = resolve(&w.held[*dev], *handle);
            let v = uapi::pindio_read_pinned {
                size: uapi::PINDIO_READ_PINNED_SIZE_VER0,
                handle: h,
                offset: *offset,
                buf: w.addr(*dst),
                len: *len,
            };
            let mut buf = sized_buf(&v, Size::Exact, uapi::PINDIO_READ_PINNED_SIZE_VER0);
            let before = w.arena_bytes();
            let res = call(&w.devs[*dev], uapi::PINDIO_IOC_READ_PINNED, &mut buf);
            let pinned: Option<Vec<u8>> = index.and_then(|i| {
                let h = &w.held[*dev][i];
                (!h.ranges.is_empty()).then(|| {
                    h.ranges
                        .iter()
                        .flat_map(|&(o, l)| before[o..o + l].to_vec())
                        .collect()
                })
            });
            // ExtArg, then the handle, then the range, then the copy out (through a bounce page:
            // a destination that is not writable fails, possibly after some bytes).
            let expect = match index.map(|i| w.held[*dev][i].bytes) {
                None => Expect::Fail(&[libc::ENOENT]),
                Some(bytes) => match offset.checked_add(*len) {
                    Some(end) if end <= bytes => {
                        if *len == 0 || World::mapped(*dst, *len) {
                            Expect::Ok
                        } else {
                            Expect::Fail(&[libc::EFAULT])
                        }
                    }
                    _ => Expect::Fail(&[libc::EINVAL]),
                },
            };
            check("READ_PINNED", &res, &expect, READ_PINNED_ERRS)?;
            let src = index
                .map(|i| w.held[*dev][i].ranges.clone())
                .unwrap_or_default();
            let clobbers = |d: usize, l: usize| src.iter().any(|&(o, n)| d < o + n && o < d + l);
            if let (Ok(_), Some(p), Addr::Arena(d)) = (&res, &pinned, *dst) {
                let (o, l) = (*offset as usize, *len as usize);
                if clobbers(d, l) {
                    return Ok(());
                }
                let after = w.arena_bytes();
                ensure!(
                    after[d..d + l] == p[o..o + l],
                    "READ_PINNED copied bytes other than the pinned memory holds"
                );
            }
        }
        Op::PinBench {
            dev,
            flags,
            addr,
            len,
            per_call,
        } => {
            let v = uapi::pindio_pin_bench {
                size: uapi::PINDIO_PIN_BENCH_SIZE_VER0,
                flags: *flags,
                addr: w.addr(*addr),
                len: *len,
                pages_per_call: *per_call,
                ..Default::default()
            };
            let mut buf = sized_buf(&v, Size::Exact, uapi::PINDIO_PIN_BENCH_SIZE_VER0);
            let res = call(&w.devs[*dev], uapi::PINDIO_IOC_PIN_BENCH, &mut buf);
            let expect = if *flags & !(uapi::PINDIO_PIN_WRITE | uapi::PINDIO_PIN_LONGTERM) != 0
                || *len == 0
                || *len > u64::from(uapi::PINDIO_PIN_BENCH_MAX_BYTES)
                || *per_call == 0
            {
                Expect::Fail(&[libc::EINVAL])
            } else if World::mapped(*addr, *len) {
                Expect::Ok
            } else {
                // Not mapped (the hole, null, a kernel address): the error of the pin.
                Expect::Fail(&[libc::EFAULT])
            };
            check("PIN_BENCH", &res, &expect, BENCH_ERRS)?;
        }
        Op::Dio { dev, spec, size } => {
            let req = w.dio_struct(spec, &mut iov);
            let before = w.arena_bytes();
            let seen = w.seen(
                &spec.mem,
                spec.flags & uapi::PINDIO_DIO_IOVEC != 0,
                &iov,
                &before,
            );
            let (expect, effect) = model_dio(w, spec, &seen);
            let sized = size_expect(*size);
            let effect = if sized.is_some() {
                Effect::Unknown
            } else {
                effect
            };
            let expect = sized.unwrap_or(expect);
            let mut buf = sized_buf(&req, *size, uapi::PINDIO_DIO_SIZE_VER0);
            let res = call(&w.devs[*dev], uapi::PINDIO_IOC_DIO, &mut buf);
            check(&format!("DIO {spec:?}"), &res, &expect, DIO_ERRS)?;
            let res = res
                .map(i64::from)
                .map_err(|e| e.raw_os_error().unwrap_or(0));
            w.after_dio(spec, &effect, res, &before)?;
        }
        Op::Batch {
            dev,
            reqs,
            entry_size,
            nr,
            shapes,
            readable,
        } => {
            let stride = *entry_size as usize;
            let entry = std::mem::size_of::<uapi::pindio_dio>();
            let mut stores: Vec<Vec<libc::iovec>> = vec![Vec::new(); reqs.len()];
            // The array, built here, then placed where the kernel reads it: in a buffer of its
            // own, or ending at an unmapped page after `readable` bytes.
            let mut arr = vec![0u8; stride * reqs.len() + entry];
            for (i, spec) in reqs.iter().enumerate() {
                let mut req = w.dio_struct(spec, &mut stores[i]);
                req.size = match shapes[i] {
                    Entry::Exact | Entry::DirtyTail => *entry_size,
                    Entry::Bigger => *entry_size + 8,
                    Entry::Smaller => *entry_size - 8,
                };
                req.result = 0x5555;
                // SAFETY: A plain uapi struct.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        (&req as *const uapi::pindio_dio).cast::<u8>(),
                        entry,
                    )
                };
                let n = bytes.len().min(stride);
                arr[i * stride..i * stride + n].copy_from_slice(&bytes[..n]);
                if shapes[i] == Entry::DirtyTail {
                    arr[i * stride + entry] = 1;
                }
            }
            let total = stride * reqs.len();
            let area = Buf::new(total.div_ceil(PAGE) * PAGE + 2 * PAGE)?;
            let start = match readable {
                // `readable` bytes before the last page, which is unmapped.
                Some(n) => {
                    let hole = area.addr() + total.div_ceil(PAGE) * PAGE + PAGE;
                    // SAFETY: The last page of our own mapping.
                    unsafe { libc::munmap(hole as *mut libc::c_void, PAGE) };
                    hole - n
                }
                None => area.addr(),
            };
            let placed = readable.unwrap_or(total).min(total);
            // SAFETY: `placed` bytes fit from `start` (the rest of the array would be unmapped).
            unsafe { std::ptr::copy_nonoverlapping(arr.as_ptr(), start as *mut u8, placed) };
            let v = uapi::pindio_dio_batch {
                size: uapi::PINDIO_DIO_BATCH_SIZE_VER0,
                nr: nr.unwrap_or(reqs.len() as u32),
                reqs: start as u64,
                entry_size: *entry_size,
                reserved: 0,
            };
            let mut buf = sized_buf(&v, Size::Exact, uapi::PINDIO_DIO_BATCH_SIZE_VER0);
            let before = w.arena_bytes();
            let res = call(&w.devs[*dev], uapi::PINDIO_IOC_DIO_BATCH, &mut buf);
            // SAFETY: Read back what the kernel may have written (the results).
            unsafe { std::ptr::copy_nonoverlapping(start as *const u8, arr.as_mut_ptr(), placed) };
            let call_ok = nr.is_none()
                && (uapi::PINDIO_DIO_SIZE_VER0..=uapi::PINDIO_STRUCT_SIZE_MAX).contains(entry_size);
            let expect = if !call_ok {
                Expect::Fail(&[libc::EINVAL])
            } else if readable.is_some_and(|n| n < total) {
                Expect::Fail(&[libc::EFAULT])
            } else {
                Expect::Ok
            };
            check("DIO_BATCH", &res, &expect, &[libc::ENOMEM])?;
            if res.is_err() {
                // No request started: no memory, no result and no device byte changed.
                ensure!(
                    w.arena_bytes() == before,
                    "a DIO_BATCH that failed changed the caller's memory"
                );
                // (An entry smaller than the struct has no result member of its own.)
                let result_end = std::mem::offset_of!(uapi::pindio_dio, result) + 8;
                for i in (0..placed / stride.max(1)).filter(|_| stride >= result_end) {
                    let at = i * stride + std::mem::offset_of!(uapi::pindio_dio, result);
                    let result = i64::from_ne_bytes(arr[at..at + 8].try_into()?);
                    ensure!(
                        result == 0x5555,
                        "a DIO_BATCH that failed wrote result {i}: {result}"
                    );
                }
                compare_device(w).context("after a DIO_BATCH that failed")?;
            } else {
                // Requests in one batch may overlap in memory or on the device: the model checks
                // each alone only when no other successful write of the batch touches its range.
                let mut results = Vec::new();
                for (i, spec) in reqs.iter().enumerate() {
                    let at = i * stride + std::mem::offset_of!(uapi::pindio_dio, result);
                    let result = i64::from_ne_bytes(arr[at..at + 8].try_into()?);
                    let seen = w.seen(
                        &spec.mem,
                        spec.flags & uapi::PINDIO_DIO_IOVEC != 0,
                        &stores[i],
                        &before,
                    );
                    let (expect, effect) = match shapes[i] {
                        Entry::Bigger | Entry::Smaller => {
                            (Expect::Fail(&[libc::EINVAL]), Effect::Unknown)
                        }
                        Entry::DirtyTail => (Expect::Fail(&[libc::E2BIG]), Effect::Unknown),
                        Entry::Exact => model_dio(w, spec, &seen),
                    };
                    let r = if result >= 0 {
                        Ok(result as i32)
                    } else {
                        Err(io::Error::from_raw_os_error(-result as i32))
                    };
                    check(
                        &format!("DIO_BATCH request {i} {spec:?}"),
                        &r,
                        &expect,
                        DIO_ERRS,
                    )?;
                    results.push((spec, effect, result));
                }
                w.after_batch(&results, &before)?;
            }
            drop(area);
        }
        Op::LoopAdd {
            fd,
            offset,
            sizelimit,
            flags,
        } => {
            let dev_fd = w.files.raw(*fd);
            let res = w.devs[0].loop_add(dev_fd, *offset, *sizelimit, *flags);
            let res = res.map(|i| i as i32);
            // The model, in the order the module checks: the fd, the window, the room.
            let bad_window = flags & !uapi::PINDIO_LOOP_FLAGS != 0
                || offset % 512 != 0
                || sizelimit % 512 != 0
                || *offset >= DEV_BYTES
                || (*sizelimit != 0
                    && offset.checked_add(*sizelimit).is_none_or(|e| e > DEV_BYTES));
            let free = w.loops.iter().position(Option::is_none);
            let expect = match fd {
                Fd::Closed | Fd::Minus1 | Fd::Wo => Expect::Fail(&[libc::EBADF]),
                Fd::Regular | Fd::Pipe | Fd::Pindio => Expect::Fail(&[libc::ENOTBLK]),
                Fd::Rw | Fd::Ro if bad_window => Expect::Fail(&[libc::EINVAL]),
                Fd::Rw | Fd::Ro if free.is_none() => Expect::Fail(&[libc::ENOSPC]),
                Fd::Rw | Fd::Ro => Expect::Ok,
            };
            check("LOOP_ADD", &res, &expect, LOOP_ADD_ERRS)?;
            if let Ok(index) = res {
                ensure!(
                    Some(index as usize) == free,
                    "LOOP_ADD: index {index}, the lowest free is {free:?}"
                );
                let len = if *sizelimit == 0 {
                    DEV_BYTES - offset
                } else {
                    *sizelimit
                };
                w.loops[index as usize] = Some((*offset, len));
            }
        }
        Op::LoopDel { index } => {
            let known = w.loops.get(*index as usize).copied().flatten();
            let info = w.devs[1].loop_info(*index);
            match (known, &info) {
                (Some((offset, len)), Ok(i)) => ensure!(
                    (i.offset, i.sizelimit) == (offset, len),
                    "LOOP_INFO {index}: {}+{}, made as {offset}+{len}",
                    i.offset,
                    i.sizelimit
                ),
                (None, Err(e)) if *index >= uapi::PINDIO_LOOP_MAX => {
                    ensure!(
                        e.raw_os_error() == Some(libc::EINVAL),
                        "LOOP_INFO {index}: {e}"
                    )
                }
                (None, Err(e)) => {
                    ensure!(
                        e.raw_os_error() == Some(libc::ENXIO),
                        "LOOP_INFO {index}: {e}"
                    )
                }
                (k, i) => bail!("LOOP_INFO {index}: {i:?}, the model says {k:?}"),
            }
            let res = w.devs[1].loop_del(*index).map(|()| 0);
            let expect = if known.is_some() {
                Expect::Ok
            } else {
                Expect::Fail(&[libc::ENXIO])
            };
            check("LOOP_DEL", &res, &expect, LOOP_DEL_ERRS)?;
            if let Some(l) = w.loops.get_mut(*index as usize) {
                *l = None;
            }
        }
        Op::Reopen { dev } => {
            w.devs[*dev] = Device::open()?;
            // Closing the file released its pins.
            w.held[*dev].clear();
            w.pages_held[*dev] = 0;
        }
        Op::Unknown { cmd } => {
            let mut buf = vec![0u8; 64];
            let res = call(&w.devs[0], *cmd, &mut buf);
            check("unknown ioctl", &res, &Expect::Fail(&[libc::ENOTTY]), &[])?;
        }
    }
    Ok(())
}

/// The handle `h` names, and its index among those held if it is one.
fn resolve(held: &[Held], h: Handle) -> (u32, Option<usize>) {
    match h {
        Handle::Held(i) if !held.is_empty() => (held[i % held.len()].handle, Some(i % held.len())),
        Handle::Held(_) => (0, None),
        Handle::Raw(raw) => (raw, held.iter().position(|x| x.handle == raw)),
    }
}

/// The model of a PIN, in the kernel's order of checks: what it must do, and for a success the
/// arena ranges it pins (empty if not the arena's), the pages and the bytes. `held` is the
/// number of pins the file holds, `budget` the pages it may still pin.
fn model_pin(
    w: &World,
    flags: u32,
    seen: &Seen,
    held: usize,
    budget: u64,
) -> (Expect, Vec<(usize, usize)>, u64, u64) {
    use Expect::*;
    let fail = |e: &'static [i32]| (Fail(e), vec![], 0, 0);
    if flags & !uapi::PINDIO_PIN_FLAGS != 0 {
        return fail(&[libc::EINVAL]);
    }
    match seen {
        Seen::Range(a, len) if *len == 0 || w.addr(*a).checked_add(*len).is_none() => {
            return fail(&[libc::EINVAL])
        }
        Seen::Array { n, .. } if *n == 0 || *n > u64::from(u32::MAX) => {
            return fail(&[libc::EINVAL])
        }
        _ => {}
    }
    if held >= uapi::PINDIO_MAX_PIN_HANDLES as usize {
        return fail(&[libc::EMFILE]);
    }
    match seen {
        Seen::Range(a, len) => {
            let pages = pages_spanned(w.addr(*a), *len);
            if pages > budget {
                return fail(&[libc::ENOSPC]);
            }
            if *len > MAX_RW_COUNT {
                return fail(&[libc::EINVAL]);
            }
            if !access_ok(w, *a, *len) {
                return fail(&[libc::EFAULT]);
            }
            match a {
                Addr::Other(_) => (Either, vec![], pages, *len),
                Addr::Arena(off) if World::mapped(*a, *len) => {
                    (Ok, vec![(*off, *len as usize)], pages, *len)
                }
                _ => fail(&[libc::EFAULT]),
            }
        }
        Seen::Foreign { addr, bytes } => {
            let len = bytes.len() as u64;
            let pages = pages_spanned(*addr, len);
            if pages > budget {
                return fail(&[libc::ENOSPC]);
            }
            (Ok, vec![], pages, len)
        }
        Seen::Array { n, segs } => {
            let nonempty = match import_array(w, *n, segs.as_deref()) {
                Result::Ok(nonempty) => nonempty,
                Err(e) => return fail(e),
            };
            if nonempty.is_empty() {
                return fail(&[libc::EINVAL]);
            }
            // Pinned segment by segment, in order, within the page budget.
            let mut pages = 0u64;
            for &(a, len) in &nonempty {
                let p = pages_spanned(w.addr(a), len);
                match a {
                    Addr::Other(_) => return (Either, vec![], 0, 0),
                    _ if !World::mapped(a, len) => {
                        return fail(if pages + p > budget {
                            &[libc::EFAULT, libc::ENOSPC]
                        } else {
                            &[libc::EFAULT]
                        })
                    }
                    _ => pages += p,
                }
            }
            if pages > budget {
                return fail(&[libc::ENOSPC]);
            }
            let bytes = nonempty.iter().map(|s| s.1).sum();
            (Ok, arena_ranges(&nonempty), pages, bytes)
        }
    }
}

impl World {
    fn dio_struct(&self, spec: &DioSpec, store: &mut Vec<libc::iovec>) -> uapi::pindio_dio {
        let (buf, len) = self.mem_args(&spec.mem, store);
        uapi::pindio_dio {
            size: uapi::PINDIO_DIO_SIZE_VER0,
            flags: spec.flags,
            fd: self.files.raw(spec.fd),
            reserved: spec.reserved,
            offset: spec.offset,
            buf,
            len,
            result: 0,
        }
    }

    /// After one DIO: a success moved exactly its bytes (the shadow follows a write; a read
    /// brought the shadow's bytes into memory); a failure changed no memory.
    fn after_dio(
        &mut self,
        spec: &DioSpec,
        effect: &Effect,
        res: std::result::Result<i64, i32>,
        before: &[u8],
    ) -> Result<()> {
        let write = spec.flags & uapi::PINDIO_DIO_WRITE != 0;
        let after = self.arena_bytes();
        let n = match res {
            Err(e) => {
                ensure!(
                    after == before,
                    "a DIO that failed ({e}) changed the caller's memory"
                );
                return Ok(());
            }
            Ok(n) => n as usize,
        };
        let at = spec.offset as usize;
        match effect {
            // Only where the model does not know the memory (a user address it did not make):
            // a write's bytes are taken from the device itself.
            Effect::Unknown => {
                if write {
                    self.resync(spec.offset, n)?;
                }
            }
            Effect::Foreign(bytes) => {
                ensure!(
                    n == bytes.len(),
                    "DIO returned {n}, expected {}",
                    bytes.len()
                );
                if write {
                    self.shadow[at..at + n].copy_from_slice(bytes);
                }
                ensure!(after == before, "a DIO of other memory changed the arena");
            }
            Effect::Arena(ranges) => {
                let total: usize = ranges.iter().map(|r| r.1).sum();
                ensure!(n == total, "DIO returned {n}, expected {total}");
                let mut at = at;
                let mut expected = before.to_vec();
                for &(off, len) in ranges {
                    if write {
                        self.shadow[at..at + len].copy_from_slice(&before[off..off + len]);
                    } else {
                        expected[off..off + len].copy_from_slice(&self.shadow[at..at + len]);
                    }
                    at += len;
                }
                if write {
                    ensure!(after == before, "a DIO write changed the caller's memory");
                } else if !overlapping(ranges) {
                    ensure!(
                        after == expected,
                        "a DIO read did not bring the device's bytes"
                    );
                }
            }
        }
        Ok(())
    }

    /// Takes `len` bytes at `offset` of the device into the shadow, as they are.
    fn resync(&mut self, offset: u64, len: usize) -> Result<()> {
        let f = pindio::open_blockdev(FUZZ_DEV, false, false)?;
        let end = (offset as usize + len).min(self.shadow.len());
        f.read_exact_at(&mut self.shadow[offset as usize..end], offset)?;
        Ok(())
    }

    fn after_batch(&mut self, results: &[BatchResult<'_>], before: &[u8]) -> Result<()> {
        // Every request of a batch is in flight at once: apply the writes first, then check the
        // reads that no write of the batch overlaps (on the device or in memory).
        let write_of = |s: &DioSpec| s.flags & uapi::PINDIO_DIO_WRITE != 0;
        let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.0 + b.1 && b.0 < a.0 + a.1;
        let mut dev_written = Vec::new();
        let mut mem_read = Vec::new();
        let mut unknown = false;
        // The memory the successful reads filled, first: a write whose source a read of the
        // same batch overwrote sent old or new bytes, in no set order.
        for (spec, effect, result) in results {
            match effect {
                _ if *result < 0 || write_of(spec) => {}
                Effect::Arena(ranges) => mem_read.extend(ranges.iter().copied()),
                Effect::Foreign(_) => {}
                Effect::Unknown => unknown = true,
            }
        }
        let mut racy = Vec::new();
        for (spec, effect, result) in results {
            if *result < 0 {
                continue;
            }
            let n = *result as usize;
            let ranges = match effect {
                // A success the model does not follow (only with `Expect::Either`): its effects
                // are taken from the device.
                Effect::Unknown => {
                    if write_of(spec) {
                        self.resync(spec.offset, n)?;
                    }
                    continue;
                }
                Effect::Foreign(bytes) => {
                    ensure!(
                        n == bytes.len(),
                        "batch request returned {n}, expected {}",
                        bytes.len()
                    );
                    if write_of(spec) {
                        dev_written.push((spec.offset as usize, n));
                        let at = spec.offset as usize;
                        self.shadow[at..at + n].copy_from_slice(bytes);
                    }
                    continue;
                }
                Effect::Arena(ranges) => ranges,
            };
            let total: usize = ranges.iter().map(|r| r.1).sum();
            ensure!(
                n == total,
                "batch request returned {result}, expected {total}"
            );
            if write_of(spec) {
                dev_written.push((spec.offset as usize, total));
                if unknown
                    || ranges
                        .iter()
                        .any(|&r| mem_read.iter().any(|&m| overlaps(m, r)))
                {
                    racy.push((spec.offset as usize, total));
                }
                let mut at = spec.offset as usize;
                for &(off, len) in ranges {
                    self.shadow[at..at + len].copy_from_slice(&before[off..off + len]);
                    at += len;
                }
            }
        }
        // Writes of one batch that overlap on the device land in no set order, nor do writes
        // racing a read of the batch in memory: each such span is taken from the device as it
        // is (the header promises no order between the requests of a batch).
        for (i, &a) in dev_written.iter().enumerate() {
            if racy.contains(&a)
                || dev_written
                    .iter()
                    .enumerate()
                    .any(|(j, &b)| i != j && overlaps(a, b))
            {
                self.resync(a.0 as u64, a.1)?;
            }
        }
        let after = self.arena_bytes();
        for (spec, effect, result) in results {
            let Effect::Arena(ranges) = effect else {
                continue;
            };
            if *result < 0 || write_of(spec) || overlapping(ranges) {
                continue;
            }
            let total: usize = ranges.iter().map(|r| r.1).sum();
            let span = (spec.offset as usize, total);
            let mine = |r: &(usize, usize)| ranges.contains(r);
            if dev_written.iter().any(|&d| overlaps(d, span))
                || ranges.iter().any(|&r| {
                    mem_read
                        .iter()
                        .filter(|m| !mine(m))
                        .any(|&m| overlaps(m, r))
                })
            {
                continue;
            }
            let mut at = spec.offset as usize;
            for &(off, len) in ranges {
                ensure!(
                    after[off..off + len] == self.shadow[at..at + len],
                    "a batched read did not bring the device's bytes"
                );
                at += len;
            }
        }
        // Memory no successful read covered is unchanged.
        if unknown {
            return Ok(());
        }
        for (i, (a, b)) in after.iter().zip(before).enumerate() {
            if a != b && !mem_read.iter().any(|&(o, l)| (o..o + l).contains(&i)) {
                bail!("a batch changed arena byte {i:#x}, which no read covered");
            }
        }
        Ok(())
    }
}

/// The racing phase: threads pin, read and unpin through one descriptor while another closes it
/// and opens the device again under the same number. Every call must succeed or fail with a
/// documented errno (EBADF once the number is closed); afterwards every pin is released.
fn race(seed: u64, rounds: usize) -> Result<()> {
    let start = pindio::foll_pin_counts()?;
    let arena = Buf::new(16 * PAGE)?;
    let base = arena.addr();
    let dev = Device::open()?;
    let fd = AtomicI32::new(dev.as_raw_fd());
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (fd, stop, calls, failure) = (&fd, &stop, &calls, &failure);
            s.spawn(move || {
                let mut r = Rng::new(seed ^ (t + 1));
                let mut handles = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let f = fd.load(Ordering::Relaxed);
                    let (cmd, res, allowed): (&str, i64, &[i32]) = match r.below(3) {
                        0 => {
                            let mut p = uapi::pindio_pin {
                                size: uapi::PINDIO_PIN_SIZE_VER0,
                                flags: r.below(4) as u32,
                                addr: (base
                                    + r.below(8) as usize * PAGE
                                    + r.below(PAGE as u64) as usize)
                                    as u64,
                                len: 1 + r.below(4 * PAGE as u64),
                                ..Default::default()
                            };
                            // SAFETY: A live `struct pindio_pin`.
                            let ret = unsafe { libc::ioctl(f, uapi::PINDIO_IOC_PIN as _, &mut p) };
                            if ret == 0 {
                                handles.push(p.handle);
                            }
                            (
                                "PIN",
                                ret as i64,
                                &[libc::EBADF, libc::EMFILE, libc::ENOSPC, libc::ENOTTY],
                            )
                        }
                        1 => {
                            let h = handles.pop().unwrap_or(1 + r.below(64) as u32);
                            let mut u = uapi::pindio_unpin { size: 8, handle: h };
                            // SAFETY: A live `struct pindio_unpin`.
                            let ret =
                                unsafe { libc::ioctl(f, uapi::PINDIO_IOC_UNPIN as _, &mut u) };
                            (
                                "UNPIN",
                                ret as i64,
                                &[libc::EBADF, libc::ENOENT, libc::ENOTTY],
                            )
                        }
                        _ => {
                            let mut out = [0u8; 512];
                            let mut rp = uapi::pindio_read_pinned {
                                size: uapi::PINDIO_READ_PINNED_SIZE_VER0,
                                handle: *handles.last().unwrap_or(&1),
                                offset: 0,
                                buf: out.as_mut_ptr() as u64,
                                len: 1,
                            };
                            // SAFETY: A live `struct pindio_read_pinned` and its buffer.
                            let ret = unsafe {
                                libc::ioctl(f, uapi::PINDIO_IOC_READ_PINNED as _, &mut rp)
                            };
                            (
                                "READ_PINNED",
                                ret as i64,
                                &[libc::EBADF, libc::ENOENT, libc::ENOTTY],
                            )
                        }
                    };
                    calls.fetch_add(1, Ordering::Relaxed);
                    if res < 0 {
                        let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                        if !allowed.contains(&e) {
                            *failure.lock().unwrap() =
                                Some(format!("{cmd}: errno {e} while racing close"));
                            stop.store(true, Ordering::Relaxed);
                        }
                        if e == libc::EBADF || e == libc::ENOENT {
                            handles.clear();
                        }
                    }
                }
            });
        }
        for _ in 0..rounds {
            std::thread::sleep(std::time::Duration::from_micros(300));
            let new = Device::open().expect("reopen /dev/pindio");
            let newfd = new.as_raw_fd();
            // Replace the descriptor number under the racing threads: dup2 closes the old file
            // (dropping its pins once no ioctl uses it) and installs the new one.
            // SAFETY: Both descriptors are ours.
            unsafe { libc::dup2(newfd, fd.load(Ordering::Relaxed)) };
            drop(new);
        }
        stop.store(true, Ordering::Relaxed);
    });
    drop(dev);
    if let Some(f) = failure.into_inner().unwrap() {
        bail!(f);
    }
    let (acq, rel) = pindio::foll_pin_counts()?;
    ensure!(
        acq - start.0 == rel - start.1,
        "racing: {} pins taken, {} released",
        acq - start.0,
        rel - start.1
    );
    println!(
        "# fuzz race: {} calls racing {rounds} reopens",
        calls.load(Ordering::Relaxed)
    );
    Ok(())
}

/// `pindio-test fuzz [--seed S] [--ops N] [--race R]`: returns whether it found nothing.
pub fn main(args: &[String]) -> Result<bool> {
    let mut seed = 1u64;
    let mut nops = 2000usize;
    let mut races = 200usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().context("an option needs a value")?;
        match a.as_str() {
            "--seed" => seed = v.parse()?,
            "--ops" => nops = v.parse()?,
            "--race" => races = v.parse()?,
            _ => bail!("unknown option {a}"),
        }
    }
    let mut r = Rng::new(seed);
    let ops: Vec<Op> = (0..nops).map(|_| gen_op(&mut r)).collect();
    let t0 = Instant::now();
    let res = run(&ops, true);
    let secs = t0.elapsed().as_secs_f64();
    let done = res.as_ref().err().map_or(nops, |(at, _)| at + 1);
    println!(
        "# fuzz: seed {seed}, {done} of {nops} operations in {secs:.1} s ({:.0}/s)",
        done as f64 / secs
    );
    if let Err((at, why)) = res {
        println!("# fuzz: FAILED at operation {at} of seed {seed}: {why}");
        let shortest = shrink(&ops[..=at.min(ops.len() - 1)]);
        println!("# fuzz: shortest failing sequence ({} operations), replay with --seed {seed} --ops {}:", shortest.len(), at + 1);
        for op in &shortest {
            let text = format!("{op:?}");
            match text.char_indices().nth(400) {
                Some((cut, _)) => println!("#   {} ...", &text[..cut]),
                None => println!("#   {text}"),
            }
        }
        return Ok(false);
    }
    race(seed, races)?;
    Ok(true)
}

/// Removes operations from a failing sequence while it still fails.
fn shrink(ops: &[Op]) -> Vec<Op> {
    let mut cur = ops.to_vec();
    let mut chunk = (cur.len() / 2).max(1);
    let mut runs = 0;
    while chunk >= 1 && runs < 300 {
        let mut i = 0;
        let mut progress = false;
        while i < cur.len() && runs < 300 {
            let mut cand = cur.clone();
            cand.drain(i..(i + chunk).min(cand.len()));
            runs += 1;
            if !cand.is_empty() && run(&cand, false).is_err() {
                cur = cand;
                progress = true;
            } else {
                i += chunk;
            }
        }
        if !progress {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    cur
}
