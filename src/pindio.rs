// SPDX-License-Identifier: GPL-2.0

//! pindio: FOLL_PIN page extraction and direct I/O, driven through the `/dev/pindio` test device.
//!
//! The module registers the misc device; everything it does is reached through ioctls whose ABI
//! is `include/uapi/linux/pindio.h`.

use kernel::{
    miscdevice::{MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    InPlaceModule,
};

#[path = "../rust-bindings/ffi.rs"]
mod ffi;

// The abstraction layer: the only code that holds `unsafe` or names `bindings::`.
mod abstractions;

// The logic: each module is `#![deny(unsafe_code)]`.
mod abi;
mod device;
mod dio;
mod loopdev;
mod pins;
mod plan;
mod segments;
mod uarg;

use ffi::uapi;

module! {
    type: Pindio,
    name: "pindio",
    authors: ["pindio developers"],
    description: "FOLL_PIN page extraction and direct I/O test device",
    license: "GPL",
}

#[pin_data]
struct Pindio {
    #[pin]
    _misc: MiscDeviceRegistration<device::PindioFile>,
    /// Set up before the device that reaches them (first in `init`), dropped after it (second
    /// here): unloading the module removes every stacked device.
    _loops: loopdev::Registration,
}

impl InPlaceModule for Pindio {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _loops: loopdev::Registration::new(),
            _misc <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"pindio" }),
        })
    }
}
