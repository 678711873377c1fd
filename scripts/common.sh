# SPDX-License-Identifier: GPL-2.0
# Shared settings for pindio's scripts. Sourced, never run.
#
# PINDIO_CACHE   where kernels, tools and initramfs images are kept (default ~/.cache/pindio)
# PINDIO_KVER    the Debian linux-source-<ver> to build the test kernel from (default 7.3)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PINDIO_TOP=$(cd "$SCRIPT_DIR/.." && pwd)
PINDIO_CACHE=${PINDIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pindio}
PINDIO_KVER=${PINDIO_KVER:-7.3}
PINDIO_TOOLS=$PINDIO_CACHE/tools
BINDGEN=$PINDIO_TOOLS/bin/bindgen
BINDGEN_VERSION=0.71.1
LLVM_SUFFIX=-19
export LIBCLANG_PATH=/usr/lib/llvm${LLVM_SUFFIX}/lib

die() {
	echo "pindio: error: $*" >&2
	exit 1
}

say() {
	echo "pindio: $*"
}

# The Debian rustc that has matching library sources (rustc-web + rust-web-src).
kernel_rustc() {
	echo /usr/bin/rustc
}

kernel_rust_lib_src() {
	local ver
	ver=$(/usr/bin/rustc --version 2>/dev/null | awk '{print $2}') || return 1
	echo "/usr/src/rustc-$ver/library"
}

# Arguments every kernel-side make invocation needs.
kbuild_args() {
	# HOSTRUSTC too: the kernel's host programs in Rust (scripts/generate_rust_target) are
	# otherwise built by whatever `rustc` is first on PATH, rustup's proxy here, which fails
	# where rustup has no default toolchain.
	echo "LLVM=$LLVM_SUFFIX RUSTC=$(kernel_rustc) HOSTRUSTC=$(kernel_rustc) BINDGEN=$BINDGEN RUST_LIB_SRC=$(kernel_rust_lib_src)"
}
