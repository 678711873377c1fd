// SPDX-License-Identifier: GPL-2.0

//! The `/dev/pindio` misc device: per-open state and ioctl dispatch.
//!
//! Each command reads its argument struct once, acts on the local copy, and writes the result
//! back once (see [`crate::uarg`]).

use crate::abi::{self, Command};
use crate::uapi::pindio_version;
use crate::uarg::ExtArg;
use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    prelude::*,
    uaccess::UserPtr,
};

/// The state of one open file of `/dev/pindio`.
pub(crate) struct PindioFile;

#[vtable]
impl MiscDevice for PindioFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(PindioFile, GFP_KERNEL)?)
    }

    fn ioctl(me: &PindioFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let arg = UserPtr::from_addr(arg);
        match abi::decode(cmd)? {
            Command::Version => me.version(arg),
        }
    }
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
}
