// SPDX-License-Identifier: GPL-2.0

//! pindio's KUnit suites. Loading `pindio_kunit.ko` runs them.
//!
//! The code under test is compiled into this module from `src/` by `#[path]`, so the suites test
//! the very sources `pindio.ko` is built from.

use kernel::prelude::*;

#[path = "../rust-bindings/ffi.rs"]
mod ffi;

#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/abi.rs"]
mod abi;
#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/abstractions/mod.rs"]
mod abstractions;
#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/uarg.rs"]
mod uarg;

#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/dio.rs"]
mod dio;
#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/loopdev.rs"]
mod loopdev;
#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/plan.rs"]
mod plan;
#[allow(dead_code, reason = "the suites use only part of the module's code")]
#[path = "../src/segments.rs"]
mod segments;

mod dio_tests;
mod extract_tests;
mod user_mem;

use ffi::uapi;

module! {
    type: PindioKunit,
    name: "pindio_kunit",
    authors: ["pindio developers"],
    description: "KUnit suites of pindio",
    license: "GPL",
}

struct PindioKunit;

impl kernel::Module for PindioKunit {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        dio_tests::find_devices();
        Ok(PindioKunit)
    }
}

#[kunit_tests(pindio_abi)]
mod abi_tests {
    use crate::abi::{self, AbiError, Command};
    use crate::uapi::PINDIO_IOC_VERSION;
    use kernel::prelude::*;

    #[test]
    fn each_refusal_has_its_errno() {
        assert_eq!(Error::from(AbiError::UnknownCommand), ENOTTY);
        assert_eq!(Error::from(AbiError::TooSmall), EINVAL);
        assert_eq!(Error::from(AbiError::TooBig), E2BIG);
    }

    #[test]
    fn decodes_the_header_command_numbers() {
        assert_eq!(abi::decode(PINDIO_IOC_VERSION), Ok(Command::Version));
        assert_eq!(
            abi::decode(PINDIO_IOC_VERSION + 0x7f).map_err(Error::from),
            Err(ENOTTY)
        );
    }
}

#[kunit_tests(pindio_uarg)]
mod uarg_tests {
    use crate::uapi::{pindio_version, PINDIO_STRUCT_SIZE_MAX, PINDIO_VERSION_SIZE_VER0};
    use crate::uarg::ExtArg;
    use crate::user_mem;
    use kernel::{page::PAGE_SIZE, prelude::*, uaccess::UserPtr};

    /// A `struct pindio_version` as user space lays it out, followed by `tail`.
    fn version_bytes(size: u32, abi_version: u32, features: u64, tail: &[u8]) -> Result<KVec<u8>> {
        let mut bytes = KVec::new();
        bytes.extend_from_slice(&size.to_ne_bytes(), GFP_KERNEL)?;
        bytes.extend_from_slice(&abi_version.to_ne_bytes(), GFP_KERNEL)?;
        bytes.extend_from_slice(&features.to_ne_bytes(), GFP_KERNEL)?;
        bytes.extend_from_slice(tail, GFP_KERNEL)?;
        Ok(bytes)
    }

    fn read_version(ptr: UserPtr) -> Result<pindio_version> {
        Ok(ExtArg::<pindio_version>::read(ptr)?.val)
    }

    #[test]
    fn reads_struct_of_exact_size() -> Result {
        let page = user_mem::map(PAGE_SIZE)?;
        user_mem::put(
            page,
            &version_bytes(PINDIO_VERSION_SIZE_VER0, 7, 0x1234, &[])?,
        )?;
        let v = read_version(page)?;
        assert_eq!(v.size, PINDIO_VERSION_SIZE_VER0);
        assert_eq!(v.abi_version, 7);
        assert_eq!(v.features, 0x1234);
        Ok(())
    }

    #[test]
    fn accepts_larger_struct_with_zero_tail() -> Result {
        let page = user_mem::map(PAGE_SIZE)?;
        user_mem::put(page, &version_bytes(40, 1, 2, &[0; 24])?)?;
        let v = read_version(page)?;
        assert_eq!(v.size, 40);
        assert_eq!(v.features, 2);
        Ok(())
    }

    #[test]
    fn rejects_larger_struct_with_nonzero_tail() -> Result {
        let page = user_mem::map(PAGE_SIZE)?;
        let mut tail = [0u8; 24];
        tail[23] = 1;
        user_mem::put(page, &version_bytes(40, 1, 2, &tail)?)?;
        assert_eq!(read_version(page).err(), Some(E2BIG));
        Ok(())
    }

    #[test]
    fn rejects_bad_sizes() -> Result {
        let page = user_mem::map(PAGE_SIZE)?;
        for (size, errno) in [
            (0, EINVAL),
            (PINDIO_VERSION_SIZE_VER0 - 1, EINVAL),
            (PINDIO_STRUCT_SIZE_MAX + 1, E2BIG),
            (u32::MAX, E2BIG),
        ] {
            user_mem::put(page, &version_bytes(size, 0, 0, &[])?)?;
            assert_eq!(read_version(page).err(), Some(errno));
        }
        Ok(())
    }

    #[test]
    fn faults_on_bad_memory() -> Result {
        let page = user_mem::map(PAGE_SIZE)?;
        // Unmapped address: the size cannot be read.
        assert_eq!(read_version(UserPtr::from_addr(0)).err(), Some(EFAULT));
        // The size is readable but the rest of the struct runs off the end of the mapping.
        let last = page.wrapping_byte_add(PAGE_SIZE - 4);
        user_mem::put(last, &PINDIO_VERSION_SIZE_VER0.to_ne_bytes())?;
        assert_eq!(read_version(last).err(), Some(EFAULT));
        Ok(())
    }

    #[test]
    fn writes_back_no_more_than_the_caller_knows() -> Result {
        let page = user_mem::map(PAGE_SIZE)?;
        // A caller whose struct is only the first published size, with other data right after.
        let guard = [0xa5u8; 8];
        user_mem::put(
            page,
            &version_bytes(PINDIO_VERSION_SIZE_VER0, 0, 0, &guard)?,
        )?;
        let mut arg = ExtArg::<pindio_version>::read(page)?;
        arg.val.abi_version = 3;
        arg.val.features = u64::MAX;
        arg.write_back()?;
        let after = user_mem::get(page, 24)?;
        assert_eq!(
            &after[..],
            &version_bytes(PINDIO_VERSION_SIZE_VER0, 3, u64::MAX, &guard)?[..]
        );
        Ok(())
    }
}
