# kpod-metrics: build, run and test. `make run` and `make test` work on a fresh Debian
# machine as root: they install what is missing first.
SHELL := /bin/bash
ARCH ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_ARCH := $(subst x86,x86,$(subst arm64,arm64,$(ARCH)))
VENV ?= .venv
PY := $(VENV)/bin/python
CLANG ?= clang
BPF_SRC := $(wildcard ebpf/*.bpf.c)
# Objects per target architecture, whatever the build host: x86 in objects/, arm64 in
# objects/arm64/ (built when vmlinux/arm64/vmlinux.h exists; see docs/deploy.md).
BPF_OBJ_DIR := src/kpodmetrics/bpf/objects
BPF_OBJ := $(patsubst ebpf/%.bpf.c,$(BPF_OBJ_DIR)/%.bpf.o,$(BPF_SRC))
BPF_OBJ_ARM64 := $(patsubst ebpf/%.bpf.c,$(BPF_OBJ_DIR)/arm64/%.bpf.o,$(BPF_SRC))
BPF_HDR := $(wildcard ebpf/*.h)
BPF_CFLAGS_BASE := -g -O2 -target bpf -fdebug-prefix-map=$(CURDIR)=. -I ebpf -Wall -Werror -Wno-unused-function
BPF_CFLAGS := $(BPF_CFLAGS_BASE) -D__TARGET_ARCH_x86 -I vmlinux/x86
APT_RUN := libbpf1 python3-venv
APT_BUILD := clang llvm libbpf-dev bpftool
APT_IMAGE := podman runc mmdebstrap
APT_ARM64 := qemu-system-arm cpio
APT_TEST := $(APT_BUILD) libbpf-tools prometheus stress-ng iproute2 nftables linux-perf libseccomp2 libfuse3-dev fuse3 pkg-config tmux gcc-multilib $(APT_IMAGE) $(APT_ARM64)
PORT ?=

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= kpod-metrics:$(VERSION)

.PHONY: generate image base-image all deps-run deps-test deps-vm vm-kernels test-kernels test-kernels-host kernels-doc venv venv-dev bpf vmlinux run test test-unit test-kernel test-e2e lint typecheck clean bench bench-quick

all: bpf

## prebuilt CO-RE objects and the generated Python mirror of their shared header
## (both committed; running needs no compiler)
STRUCTS_PY := src/kpodmetrics/bpf/structs.py
bpf: $(BPF_OBJ) $(if $(wildcard vmlinux/arm64/vmlinux.h),$(BPF_OBJ_ARM64)) $(STRUCTS_PY)

$(STRUCTS_PY): ebpf/kpod_shared.h scripts/gen_structs.py vmlinux/$(ARCH)/vmlinux.h
	python3 scripts/gen_structs.py

$(BPF_OBJ_DIR)/%.bpf.o: ebpf/%.bpf.c $(BPF_HDR) vmlinux/x86/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	# strip DWARF, keep BTF (and .BTF.ext for CO-RE relocations)
	llvm-strip -g $@.tmp
	mv $@.tmp $@

$(BPF_OBJ_DIR)/arm64/%.bpf.o: ebpf/%.bpf.c $(BPF_HDR) vmlinux/arm64/vmlinux.h
	@mkdir -p $(dir $@)
	$(CLANG) $(BPF_CFLAGS_BASE) -D__TARGET_ARCH_arm64 -I vmlinux/arm64 -c $< -o $@.tmp
	llvm-strip -g $@.tmp
	mv $@.tmp $@

## every generated file: the BPF mirror, deploy/metric-names.txt (from the family
## registry), dashboards and the PrometheusRule (deploy/render.py); tests fail when stale
generate: bpf
	$(PY) -m kpodmetrics.metricnames
	$(PY) deploy/render.py

vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h

## installs (idempotent; apt only when something is missing)
deps-run:
	@bash scripts/ensure-apt.sh $(APT_RUN)
	@bash scripts/ensure-venv.sh $(VENV) run

deps-test:
	@bash scripts/ensure-apt.sh $(APT_RUN) $(APT_TEST)
	@bash scripts/ensure-venv.sh $(VENV) dev
	@bash scripts/ensure-tracefs.sh

## kernel VMs (scripts/vm/): QEMU, virtme-ng, and Debian's kernels fetched through apt
VM_SUITES ?= bullseye bookworm trixie

deps-vm: deps-test
	@bash scripts/vm/ensure-deps.sh $(VENV)

VM_MATRIX_OUT ?= /var/cache/kpod-metrics/matrix

vm-kernels: deps-vm
	@for s in $(VM_SUITES); do bash scripts/vm/fetch-kernel.sh $$s; done

# tests/matrix + tests/kernel + tests/e2e inside each kernel's VM (CI passed through);
# results in $(VM_MATRIX_OUT)/<suite>/. Fails when any kernel's run fails. Up to
# VM_PARALLEL VMs run at once, each on single-threaded TCG (scripts/vm/matrix.sh).
VM_PARALLEL ?= 2
test-kernels: deps-vm
	VM_MATRIX_OUT=$(VM_MATRIX_OUT) VM_PARALLEL=$(VM_PARALLEL) bash scripts/vm/matrix.sh $(VM_SUITES)

# the same selection on this machine's kernel (the matrix's `host` column)
test-kernels-host: deps-test
	VM_MATRIX_OUT=$(VM_MATRIX_OUT) bash scripts/vm/matrix.sh host

# docs/kernels.md from the last results of test-kernels (+ test-kernels-host)
kernels-doc:
	$(PY) scripts/vm/kernels_doc.py --results $(VM_MATRIX_OUT) --out docs/kernels.md

## run the agent standalone (no Kubernetes needed), metrics on :9090, or KPOD_PORT, or
## `make run PORT=n`; KPOD_* variables and ARGS (flags) compose as in the agent itself
## (flags over environment over defaults): no flag is passed unless asked for
run: deps-run
	@bash scripts/ensure-tracefs.sh
	$(PY) -m kpodmetrics run $(if $(PORT),--port $(PORT)) $(ARGS)

## all tests: unit, kernel (real BPF, root), e2e (whole agent)
test: deps-test
	$(PY) -m pytest -q -ra tests

test-unit: deps-test
	$(PY) -m pytest -q -ra tests/unit

test-kernel: deps-test
	$(PY) -m pytest -q -ra tests/kernel

test-e2e: deps-test
	$(PY) -m pytest -q -ra tests/e2e

lint:
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: deps-test
	$(PY) -m benchmarks.run

bench-quick: deps-test
	$(PY) -m benchmarks.run --quick

## container image with docker or podman (no registry needed: the base is made from Debian
## packages unless BASE_IMAGE names one; see docs/deploy.md)
image: deps-run
	VERSION="$(VERSION)" BASE_IMAGE="$(BASE_IMAGE)" PYTHON="$(PY)" bash scripts/image/build.sh $(IMAGE)

## the image's base from Debian packages (mmdebstrap), for machines without a registry
base-image:
	bash scripts/image/base-image.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache
