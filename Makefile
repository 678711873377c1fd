# SPDX-License-Identifier: GPL-2.0
#
# pindio: entry points. Kbuild reads `Kbuild` for the module itself; see README.md.
#
#   make          set up what is missing, build the test kernel (cached), the modules and tools
#   make test     host tests + KUnit and user tests in QEMU; last line "N passed, N failed"
#   make run      boot QEMU, load the module and show what it does with the CLI
#   make shell    boot QEMU to an interactive shell with the module loaded
#   make bench    boot the bench kernel (the test kernel without its debug options, -O2; cached)
#                 in QEMU and run the benchmarks (PINDIO_BENCH_MIB, _SECS, _ROUNDS, _BOOTS)
#   make profile  executed blocks per I/O, by function, of one DIO benchmark path, pindio's and
#                 the kernel's, under a QEMU TCG plugin (PROFILE=qd1|read|write|batch)
#   make fuzz     boot the test guest and run the ABI fuzzer long (PINDIO_FUZZ_OPS, default
#                 100000; PINDIO_FUZZ_SEED, default the time)
#   make mutants  build the module with each deliberate fault and show which tests kill it
#                 (scripts/mutants; PINDIO_MUTANTS picks some)
#   make compile-fail  the misuses of the abstraction layer in tests/compile-fail/, each of which
#                 rustc must reject (part of make test)
#   make kernel   build (or reuse) the cached test kernel only
#   make setup    install what is missing (Debian packages, bindgen)
#   make clippy   clippy over the module (through Kbuild) and the tools
#   make fmt      rustfmt everything; make fmt-check only checks
#   make clean    remove build artefacts from the tree (not the cache)
#
# KDIR=<tree> builds against your own Rust-enabled, already built kernel tree instead.

SHELL := /bin/bash
PROFILE ?= qd1
TOP := $(CURDIR)
SCRIPTS := $(TOP)/scripts
OUT := $(TOP)/out

# The kernel-side toolchain (see scripts/common.sh); each can be overridden on the command line.
LLVM ?= -19
KRUSTC ?= /usr/bin/rustc
KCLIPPY ?= /usr/bin/clippy-driver
BINDGEN ?= $(shell . $(SCRIPTS)/common.sh && echo $$BINDGEN)
RUST_LIB_SRC ?= $(shell . $(SCRIPTS)/common.sh && kernel_rust_lib_src)
KBUILD_VARS = LLVM=$(LLVM) RUSTC=$(KRUSTC) HOSTRUSTC=$(KRUSTC) CLIPPY_DRIVER=$(KCLIPPY) BINDGEN=$(BINDGEN) \
	RUST_LIB_SRC=$(RUST_LIB_SRC) \
	LIBCLANG_PATH=/usr/lib/llvm$(LLVM)/lib

ifeq ($(origin KDIR),undefined)
OWN_KDIR :=
KDIR = $(shell $(SCRIPTS)/kernel --print-dir)
else
OWN_KDIR := 1
endif

# User space: the rustup toolchain, statically linked so it runs from the initramfs.
CARGO ?= cargo
TOOLS_TARGET := x86_64-unknown-linux-gnu
TOOLS_BIN := $(TOP)/tools/target/$(TOOLS_TARGET)/release
CARGO_ENV := env -u RUSTC LIBCLANG_PATH=/usr/lib/llvm$(LLVM)/lib

export PINDIO_KDIR_OVERRIDE := $(if $(OWN_KDIR),$(KDIR))

# The bench kernel and the modules built for it, from a copy of the sources in out/ (so the
# objects of the test build stay). With KDIR given, benchmarks run on that kernel as it is.
ifeq ($(OWN_KDIR),)
BENCH_KDIR = $(shell PINDIO_FLAVOUR=bench $(SCRIPTS)/kernel --print-dir)
BENCH_MOD := $(OUT)/bench-build
else
BENCH_KDIR = $(KDIR)
BENCH_MOD := $(TOP)
endif

.PHONY: all setup kernel bench-module module tools test run shell bench profile clippy fmt fmt-check clean host-test fuzz mutants compile-fail

all: module tools

setup:
	@$(SCRIPTS)/setup

kernel: setup
ifeq ($(OWN_KDIR),)
	@$(SCRIPTS)/kernel >/dev/null
else
	@echo "pindio: using your kernel tree KDIR=$(KDIR)"
endif

module: kernel
	$(MAKE) -C $(KDIR) M=$(TOP) $(KBUILD_VARS) $(if $(CLIPPY),CLIPPY=1) modules

tools: setup
	cd tools && RUSTFLAGS='-C target-feature=+crt-static' $(CARGO_ENV) \
		$(CARGO) build --release --locked --target $(TOOLS_TARGET)
	@$(SCRIPTS)/fio-engine $(TOOLS_BIN)/pindio-fio.so

host-test: setup
	cd tools && $(CARGO_ENV) $(CARGO) test --locked

test: all
	@KDIR=$(KDIR) TOOLS_BIN=$(TOOLS_BIN) CARGO="$(CARGO_ENV) $(CARGO)" $(SCRIPTS)/test

run: all
	@KDIR=$(KDIR) TOOLS_BIN=$(TOOLS_BIN) $(SCRIPTS)/qemu run

fuzz: all
	@KDIR=$(KDIR) TOOLS_BIN=$(TOOLS_BIN) $(SCRIPTS)/qemu fuzz

compile-fail: module
	@KDIR=$(KDIR) $(SCRIPTS)/compile-fail

mutants: all
	@KDIR=$(KDIR) TOOLS_BIN=$(TOOLS_BIN) $(SCRIPTS)/mutants

shell: all
	@KDIR=$(KDIR) TOOLS_BIN=$(TOOLS_BIN) $(SCRIPTS)/qemu shell

bench: bench-module tools
	@KDIR=$(BENCH_KDIR) MOD_DIR=$(BENCH_MOD) TOOLS_BIN=$(TOOLS_BIN) $(SCRIPTS)/qemu bench

profile: bench-module tools
	@KDIR=$(BENCH_KDIR) MOD_DIR=$(BENCH_MOD) TOOLS_BIN=$(TOOLS_BIN) $(SCRIPTS)/profile $(PROFILE)

bench-module: setup
ifeq ($(OWN_KDIR),)
	@PINDIO_FLAVOUR=bench $(SCRIPTS)/kernel >/dev/null
	mkdir -p $(BENCH_MOD)
	git ls-files -z --cached --others --exclude-standard Kbuild src rust-bindings kunit-tests \
		include | xargs -0 cp -p --parents -u -t $(BENCH_MOD)
	$(MAKE) -C $(BENCH_KDIR) M=$(BENCH_MOD) $(KBUILD_VARS) modules
else
	$(MAKE) module
endif

clippy: kernel
	touch src/pindio.rs kunit-tests/pindio_kunit.rs
	$(MAKE) -C $(KDIR) M=$(TOP) $(KBUILD_VARS) CLIPPY=1 modules
	cd tools && $(CARGO_ENV) $(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	rustfmt --edition 2021 src/pindio.rs kunit-tests/pindio_kunit.rs tests/compile-fail/*.rs
	cd tools && $(CARGO) fmt

fmt-check:
	rustfmt --edition 2021 --check src/pindio.rs kunit-tests/pindio_kunit.rs tests/compile-fail/*.rs
	cd tools && $(CARGO) fmt --check

clean:
	-[ -d "$(KDIR)" ] && $(MAKE) -C $(KDIR) M=$(TOP) clean
	rm -f rust-bindings/*_generated.rs
	rm -rf $(OUT)
	cd tools && $(CARGO) clean
