# mdatp — build, run and test. See README.md.
SHELL := /bin/bash
#   make deps    Debian packages the build and tests need (idempotent)
#   make         BPF object + skeleton, then the Swift package (debug)
#   make run     release build, mdatp user, then the watchdog and every room in the foreground
#   make test    deps, build, every test (root/BPF tests run for real when root)
#   make bench   benchmarks with ratios against a baseline measured in the same run

SWIFT      ?= swift
# The Swift toolchain's clang targets BPF; any clang >= 14 does.
CLANG      ?= $(firstword $(wildcard /opt/swift/usr/bin/clang) $(shell command -v clang 2>/dev/null))
BPFTOOL    ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
ARCH       := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
BPF_OUT    := bpf/.output
BPF_SRC    := $(wildcard bpf/probes/*.bpf.c bpf/probes/*.bpf.h bpf/include/*.h bpf/lib/*.h)
RUN_PREFIX ?=
DEB_PACKAGES := libbpf-dev bpftool libseccomp-dev libcap-dev libssl-dev libzstd-dev \
                libelf-dev zlib1g-dev libsqlite3-dev sqlite3 pkg-config procps iproute2 python3 clamav-testfiles zstd openssl libarchive-dev libyara-dev libhyperscan-dev \
                curl wget util-linux qemu-system-x86 busybox-static cpio xz-utils

.PHONY: all deps bpf build release definitions run test test-kernels bench bench-ring bench-sensor bench-scan bench-edr bench-deps clean user

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all present"; fi

# vmlinux.h from the running kernel's BTF (CO-RE relocates against each kernel at load).
$(BPF_OUT)/vmlinux.h:
	@mkdir -p $(BPF_OUT)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_OUT)/mdatp.bpf.o: $(BPF_SRC) $(BPF_OUT)/vmlinux.h
	$(CLANG) -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Wno-unknown-warning-option -Wno-default-const-init-var-unsafe \
	  -I$(BPF_OUT) -Ibpf/include -c bpf/probes/mdatp.bpf.c -o $@

# Test only (make test-kernels): the same object with one CO-RE read of a field no kernel has.
$(BPF_OUT)/mdatp-core-break.bpf.o: $(BPF_SRC) $(BPF_OUT)/vmlinux.h
	$(CLANG) -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -DMDATP_CORE_BREAK -Wall -Wno-unknown-warning-option -Wno-default-const-init-var-unsafe \
	  -I$(BPF_OUT) -Ibpf/include -c bpf/probes/mdatp.bpf.c -o $@

$(BPF_OUT)/mdatp.skel.h: $(BPF_OUT)/mdatp.bpf.o
	$(BPFTOOL) gen skeleton $< name mdatp > $@.tmp && mv $@.tmp $@

bpf: $(BPF_OUT)/mdatp.skel.h

build: bpf
	$(SWIFT) build --build-tests
	$(MAKE) --no-print-directory definitions DEFS_OUT=.build/debug/definitions
	@rm -rf .build/debug/rules && cp -r packaging/rules .build/debug/rules

release: bpf
	$(SWIFT) build -c release
	$(MAKE) --no-print-directory definitions DEFS_OUT=.build/release/definitions
	@rm -rf .build/release/rules && cp -r packaging/rules .build/release/rules

# The default definitions package (signed), next to the binaries: DEFS_OUT/package and the
# public key the product trusts in DEFS_OUT/trusted-keys. The signing key stays in .build/keys.
DEFS_OUT ?= .build/release/definitions
definitions:
	@bash packaging/make-definitions.sh definitions .build/keys $(DEFS_OUT)

# The mdatp system user: nologin, no home, ids chosen by the system.
user:
	@getent passwd mdatp >/dev/null || useradd --system --no-create-home --home-dir /nonexistent \
	  --shell /usr/sbin/nologin --user-group mdatp
	@echo "user: $$(id mdatp)"

run: deps release user
	@mkdir -p "$(RUN_PREFIX)/etc/opt/mdatp"
	@[ -f "$(RUN_PREFIX)/etc/opt/mdatp/mdatp.json" ] || cp packaging/mdatp.json "$(RUN_PREFIX)/etc/opt/mdatp/mdatp.json"
	@echo "mdatp: config $(RUN_PREFIX)/etc/opt/mdatp/mdatp.json; status $(RUN_PREFIX)/var/opt/mdatp/status.json"
	@echo "mdatp: in another shell: $(if $(RUN_PREFIX),MDATP_PREFIX=$(RUN_PREFIX) )$(CURDIR)/.build/release/mdatp health | diagnostic status | events tail"
	exec $(CURDIR)/.build/release/mdatp-watchdog $(if $(RUN_PREFIX),--prefix $(RUN_PREFIX))

test: deps build user $(BPF_OUT)/mdatp-core-break.bpf.o
	@set -o pipefail; MDATP_BIN_DIR=$(CURDIR)/.build/debug $(SWIFT) test --disable-swift-testing 2>&1 | tee .build/test.log; rc=$$?; \
	line=$$(awk '/Executed [0-9]+ tests?, with /{ for (i = 1; i < NF; i++) if ($$i == "Executed") n = $$(i + 1) + 0; if (n >= max) { max = n; l = $$0 } } END { print l }' .build/test.log); \
	n=$$(echo "$$line" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/'); f=$$(echo "$$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/'); \
	k=$$(echo "$$line" | grep -oE '[0-9]+ tests? skipped' | grep -oE '^[0-9]+'); k=$${k:-0}; \
	[ -n "$$n" ] && echo "tests: $$((n - f - k)) passed, $$f failed, $$k skipped"; \
	$(MAKE) --no-print-directory test-kernels || rc=1; exit $$rc

# The sensor's BPF checks inside stock Debian kernels (6.1, 6.12) under QEMU: see Tests/KernelMatrix/matrix.sh.
test-kernels: deps build $(BPF_OUT)/mdatp-core-break.bpf.o
	bash Tests/KernelMatrix/matrix.sh .build/debug $(BPF_OUT)/mdatp-core-break.bpf.o

bench: bench-ring bench-sensor bench-scan bench-edr

bench-ring: deps release
	$(CURDIR)/.build/release/mdatp-bench ring

bench-sensor: deps release user
	python3 bench/sensor.py --bin $(CURDIR)/.build/release

bench-edr: deps release user
	python3 bench/edr.py --bin $(CURDIR)/.build/release

# The scanners we measure against, only for this bench (not needed to build or test).
BENCH_SCAN_PACKAGES := clamav clamav-daemon clamdscan yara time
bench-deps:
	@missing=""; for p in $(BENCH_SCAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

bench-scan: deps bench-deps release user
	python3 bench/scan.py --bin $(CURDIR)/.build/release $(BENCH_SCAN_ARGS)

clean:
	rm -rf $(BPF_OUT) .build
