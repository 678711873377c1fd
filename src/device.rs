// SPDX-License-Identifier: GPL-2.0

//! The `/dev/pindio` misc device: per-open state and ioctl dispatch.
//!
//! Each command reads its argument struct once, acts on the local copy, and writes the result
//! back once (see [`crate::uarg`]).

use crate::abi::{self, Command};
use crate::pins::{self, Pins};
use crate::uapi::{pindio_pin, pindio_pin_bench, pindio_read_pinned, pindio_unpin, pindio_version};
use crate::uarg::ExtArg;
use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::Mutex,
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
