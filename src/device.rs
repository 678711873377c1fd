// SPDX-License-Identifier: GPL-2.0

//! The `/dev/pindio` misc device: per-open state and ioctl dispatch.
//!
//! Each command reads its argument struct once, acts on the local copy, and writes the result
//! back once (see [`crate::uarg`]).

#![deny(unsafe_code)]

use crate::abi::{self, Command};
use crate::abstractions::{
    block,
    cred::{self, Capability},
    file,
    global::LOOP_DEVICES,
    pinned::PinnedVec,
};
use crate::dio::{self, Prepared, TargetCache};
use crate::pins::{self, Pins};
use crate::uapi::{
    pindio_dio, pindio_dio_batch, pindio_loop_add, pindio_loop_del, pindio_loop_info, pindio_pin,
    pindio_pin_bench, pindio_read_pinned, pindio_unpin, pindio_version, PINDIO_LOOP_READ_ONLY,
};
use crate::uarg::ExtArg;
use core::mem::{offset_of, size_of};
use kernel::{
    alloc::flags::__GFP_NOWARN,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::Mutex,
    transmute::AsBytes,
    uaccess::{UserPtr, UserSlice},
};

/// The state of one open file of `/dev/pindio`.
#[pin_data]
pub(crate) struct PindioFile {
    /// Pins this file holds; closing the file drops them all.
    #[pin]
    pins: Mutex<Pins>,
}

#[vtable]
impl MiscDevice for PindioFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(PindioFile {
                pins <- new_mutex!(Pins::new()),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&PindioFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let arg = UserPtr::from_addr(arg);
        match abi::decode(cmd)? {
            Command::Version => me.version(arg),
            Command::Pin => me.pin(arg),
            Command::ReadPinned => me.read_pinned(arg),
            Command::Unpin => me.unpin(arg),
            Command::PinBench => me.pin_bench(arg),
            Command::Dio => dio_one(arg),
            Command::DioBatch => dio_batch(arg),
            Command::LoopAdd => loop_add(arg),
            Command::LoopDel => loop_del(arg),
            Command::LoopInfo => loop_info(arg),
        }
    }
}

/// A `u64` from user space as a user pointer; `EFAULT` if it cannot be one.
fn user_ptr(addr: u64) -> Result<UserPtr> {
    Ok(UserPtr::from_addr(
        usize::try_from(addr).map_err(|_| EFAULT)?,
    ))
}

impl PindioFile {
    /// `PINDIO_IOC_VERSION`: reports the ABI version and the feature bits.
    fn version(&self, arg: UserPtr) -> Result<isize> {
        let mut version = ExtArg::<pindio_version>::read(arg)?;
        version.val.abi_version = abi::ABI_VERSION;
        version.val.features = abi::FEATURES;
        version.write_back()?;
        Ok(0)
    }

    /// `PINDIO_IOC_PIN`: pins user memory and keeps the pin in this file.
    fn pin(&self, arg: UserPtr) -> Result<isize> {
        let mut pin = ExtArg::<pindio_pin>::read(arg)?;
        let req = abi::check_pin(pin.val.flags, pin.val.addr, pin.val.len)?;
        let mut pins = self.pins.lock();
        let (handle, pages, bytes) = pins.pin(req, user_ptr(pin.val.addr)?, pin.val.len)?;
        pin.val.handle = handle;
        pin.val.nr_pages = pages.try_into()?;
        pin.val.bytes = bytes.try_into()?;
        if let Err(err) = pin.write_back() {
            // The caller cannot learn the handle: do not keep a pin nobody can name.
            let _ = pins.unpin(handle);
            return Err(err);
        }
        Ok(0)
    }

    /// `PINDIO_IOC_READ_PINNED`: copies what the pinned pages hold now.
    fn read_pinned(&self, arg: UserPtr) -> Result<isize> {
        let read = ExtArg::<pindio_read_pinned>::read(arg)?.val;
        let len = usize::try_from(read.len).map_err(|_| EINVAL)?;
        let mut out = UserSlice::new(user_ptr(read.buf)?, len).writer();
        self.pins
            .lock()
            .read(read.handle, read.offset, read.len, &mut out)?;
        Ok(0)
    }

    /// `PINDIO_IOC_PIN_BENCH`: times pinning and releasing a range; holds nothing afterwards.
    fn pin_bench(&self, arg: UserPtr) -> Result<isize> {
        let mut bench = ExtArg::<pindio_pin_bench>::read(arg)?;
        let v = bench.val;
        let (req, per_call) =
            abi::check_pin_bench(v.flags, v.addr, v.len, v.pages_per_call, v.reserved)?;
        let (get_ns, put_ns) = pins::bench(req, user_ptr(v.addr)?, v.len, per_call)?;
        bench.val.get_ns = get_ns;
        bench.val.put_ns = put_ns;
        bench.write_back()?;
        Ok(0)
    }

    /// `PINDIO_IOC_UNPIN`: releases a pin.
    fn unpin(&self, arg: UserPtr) -> Result<isize> {
        let unpin = ExtArg::<pindio_unpin>::read(arg)?.val;
        self.pins.lock().unpin(unpin.handle)?;
        Ok(0)
    }
}

/// `PINDIO_IOC_DIO`: one direct I/O, waited for; returns the bytes transferred
/// ([`dio::run`]). The struct is not written back (see the uapi header).
fn dio_one(arg: UserPtr) -> Result<isize> {
    let v = ExtArg::<pindio_dio>::read(arg)?.val;
    let req = abi::check_dio(v.flags, v.reserved, v.buf, v.len)?;
    let buf = user_ptr(v.buf)?;
    let bytes = file::with_fd(v.fd, |f| dio::run(f, req, v.offset, buf, v.len))?;
    Ok(bytes.try_into()?)
}

/// Entry `bytes` (one `entry_size` stride) of a `PINDIO_IOC_DIO_BATCH` array, already copied in:
/// `EINVAL` if its own size is not the stride, and, as `copy_struct_from_user` has it, zero for
/// the members an older caller does not know, `E2BIG` for non-zero bytes past the kernel's
/// struct.
fn batch_entry(bytes: &[u8]) -> Result<pindio_dio> {
    let mut v = pindio_dio::default();
    let known = bytes.len().min(size_of::<pindio_dio>());
    let (head, tail) = bytes.split_at_checked(known).ok_or(EINVAL)?;
    v.as_bytes_mut()
        .get_mut(..known)
        .ok_or(EINVAL)?
        .copy_from_slice(head);
    if usize::try_from(v.size).ok() != Some(bytes.len()) {
        return Err(EINVAL);
    }
    if tail.iter().any(|&b| b != 0) {
        return Err(E2BIG);
    }
    Ok(v)
}

/// `PINDIO_IOC_DIO_BATCH`: independent direct I/Os, every bio of all of them submitted under one
/// plug, then waited for; each gets its own result. The whole array is copied in first, in one
/// read: if any of it cannot be read, the call fails with `EFAULT` before any request starts,
/// and no request can see an entry change under it.
fn dio_batch(arg: UserPtr) -> Result<isize> {
    let batch = ExtArg::<pindio_dio_batch>::read(arg)?.val;
    let (nr, stride) = abi::check_dio_batch(batch.nr, batch.entry_size, batch.reserved)?;
    let base = user_ptr(batch.reqs)?;
    let entry = |i: usize| base.wrapping_byte_add(i * stride);
    let bytes = nr.checked_mul(stride).ok_or(EINVAL)?;
    let mut array = KVVec::from_elem(0u8, bytes, GFP_KERNEL | __GFP_NOWARN)?;
    UserSlice::new(base, bytes)
        .reader()
        .read_slice(&mut array)?;
    // The I/Os in flight, all in one allocation, and for each request whether its I/O is
    // among them or the error that stopped it.
    let mut ios = PinnedVec::with_capacity(nr)?;
    let mut submitted = KVVec::with_capacity(nr, GFP_KERNEL | __GFP_NOWARN)?;
    let mut targets = TargetCache::default();
    // Each request is checked, pinned and submitted in turn; every bio of all of them goes out
    // when the plug ends.
    block::plugged(|| -> Result {
        for raw in array.chunks_exact(stride) {
            let io = batch_entry(raw).and_then(|v| {
                let req = abi::check_dio(v.flags, v.reserved, v.buf, v.len)?;
                Prepared::in_batch(&mut targets, v.fd, req, v.offset, user_ptr(v.buf)?, v.len)
            });
            submitted.push(io.and_then(|io| ios.push(io.submit_in_place())), GFP_KERNEL)?;
        }
        Ok(())
    })?;
    let mut in_flight = ios.iter_mut();
    let mut ret = Ok(0);
    for (i, io) in submitted.into_iter().enumerate() {
        let done = io.and_then(|()| in_flight.next().map_or(Err(EINVAL), dio::finish));
        let result = match done {
            Ok(bytes) => i64::try_from(bytes).unwrap_or(i64::MAX),
            Err(e) => i64::from(e.to_errno()),
        };
        // Only the result member is written: the rest of the entry is the caller's.
        let at = entry(i).wrapping_byte_add(offset_of!(pindio_dio, result));
        if UserSlice::new(at, size_of::<i64>())
            .writer()
            .write(&result)
            .is_err()
        {
            ret = Err(EFAULT);
        }
    }
    ret
}

/// `PINDIO_IOC_LOOP_ADD`: makes a stacked device on the block device the caller opened; returns
/// its index.
fn loop_add(arg: UserPtr) -> Result<isize> {
    if !cred::capable(Capability::SysAdmin) {
        return Err(EPERM);
    }
    let v = ExtArg::<pindio_loop_add>::read(arg)?.val;
    let index = file::with_fd(v.fd, |f| {
        let dev = block::BlockFile::borrowed(f.file())?;
        LOOP_DEVICES
            .lock()
            .add(&dev, v.flags, v.reserved, v.offset, v.sizelimit)
    })?;
    Ok(index.try_into()?)
}

/// `PINDIO_IOC_LOOP_DEL`: removes a stacked device that is not open.
fn loop_del(arg: UserPtr) -> Result<isize> {
    if !cred::capable(Capability::SysAdmin) {
        return Err(EPERM);
    }
    let v = ExtArg::<pindio_loop_del>::read(arg)?.val;
    let index = abi::check_loop_del(v.index, v.flags, v.reserved)?;
    let removed = LOOP_DEVICES.lock().remove(index)?;
    // The table is unlocked: wait for the device's bios in flight now.
    drop(removed);
    Ok(0)
}

/// `PINDIO_IOC_LOOP_INFO`: describes a stacked device.
fn loop_info(arg: UserPtr) -> Result<isize> {
    let mut v = ExtArg::<pindio_loop_info>::read(arg)?;
    let index = usize::try_from(v.val.index).map_err(|_| EINVAL)?;
    let info = LOOP_DEVICES.lock().info(index)?;
    v.val.flags = if info.read_only {
        PINDIO_LOOP_READ_ONLY
    } else {
        0
    };
    v.val.dev = info.devt;
    v.val.backing_dev = info.backing_devt;
    v.val.offset = info.offset;
    v.val.sizelimit = info.sizelimit;
    v.write_back()?;
    Ok(0)
}
