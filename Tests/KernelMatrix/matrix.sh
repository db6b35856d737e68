#!/usr/bin/env bash
# The kernel matrix (make test-kernels): boots stock Debian kernels under QEMU
# TCG and runs the sensor's BPF event checks (mdatp-kernel-test, the same
# checks KernelTests runs on the host) inside each guest, twice: with the hooks
# the loader prefers there (fentry + BPF LSM) and with the tracepoint family
# forced. A last boot loads a build of the object with one broken CO-RE field
# and must fail. Any failed check, missing result or boot past its timeout
# fails the run, with the guest's serial console printed.
#
#   Tests/KernelMatrix/matrix.sh BIN_DIR BROKEN_OBJECT
#
# Env: MATRIX_CACHE (kernels, kept between runs; default /var/cache/mdatp-kernel-matrix),
#      MATRIX_KERNELS (default "bookworm bookworm-backports"), MATRIX_TIMEOUT (s per boot, 420).
# Kernels come from Debian's archive with `apt-get download` under an apt
# configuration of our own: nothing is installed, /boot and the host's apt state
# are not touched. /dev/kvm on this machine kind is PVM and cannot run a stock
# kernel, hence TCG (see ../shared/bench/kernel-matrix/NOTES.md).
set -euo pipefail

BIN_DIR=$(realpath "$1")
BROKEN=$(realpath "$2")
CACHE=${MATRIX_CACHE:-/var/cache/mdatp-kernel-matrix}
KERNELS=${MATRIX_KERNELS:-"bookworm bookworm-backports"}
TIMEOUT=${MATRIX_TIMEOUT:-420}
RUN=$(mktemp -d /tmp/mdatp-matrix.XXXXXX)
[[ -n ${MATRIX_KEEP:-} ]] && echo "matrix: keeping $RUN" || trap 'rm -rf "$RUN"' EXIT
say() { printf 'matrix: %s\n' "$*"; }
T0=$SECONDS

# ---- kernels (cached) -------------------------------------------------------
mkdir -p "$CACHE"/apt/{lists/partial,cache/archives/partial,sources}
APT=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$CACHE/apt/sources"
     -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt/cache" -o Debug::NoLocking=1)
apt_ready() {
    # Package lists are refreshed at most once a day: security updates move the versions.
    [[ -n $(find "$CACHE/apt/.updated" -mmin -1440 2>/dev/null) ]] && return
    cat > "$CACHE/apt/sources/debian.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get "${APT[@]}" update -qq
    touch "$CACHE/apt/.updated"
}

# fetch <suite>: sets KVER and KDIR ($KDIR/vmlinux, $KDIR/test.ko)
fetch() {
    local suite=$1 ver pkg deb
    if [[ -f $CACHE/$suite.kver && -f $CACHE/k-$(cat "$CACHE/$suite.kver")/vmlinux && -n $(find "$CACHE/$suite.kver" -mmin -1440) ]]; then
        KVER=$(cat "$CACHE/$suite.kver"); KDIR=$CACHE/k-$KVER; return
    fi
    apt_ready
    if [[ $suite == bookworm-backports ]]; then
        ver=$(apt-cache "${APT[@]}" policy linux-image-amd64 | awk '$1 ~ /~bpo/ { print $1; exit }')
    else
        ver=$(apt-cache "${APT[@]}" policy linux-image-amd64 | awk '/Candidate:/ { print $2 }')
    fi
    [[ -n $ver ]] || { say "no linux-image-amd64 for $suite"; return 1; }
    pkg=$(apt-cache "${APT[@]}" show "linux-image-amd64=$ver" | awk -F'[ ,]+' '/^Depends:/ { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) { print $i; exit } }')
    KVER=${pkg#linux-image-}
    KDIR=$CACHE/k-$KVER
    if [[ ! -f $KDIR/vmlinux ]]; then
        say "fetching $pkg ($suite)"
        mkdir -p "$KDIR"
        (cd "$KDIR" && apt-get "${APT[@]}" download "$pkg" >/dev/null 2>&1)
        deb=$(ls "$KDIR"/"$pkg"_*.deb)
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$KDIR" ./boot
        # One module with no dependencies, for the module-load check.
        local ko
        ko=$(dpkg-deb -c "$deb" | awk '{ print $6 }' | grep -E '/kernel/lib/crc-itu-t\.ko(\.xz)?$' | head -1)
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$KDIR" "$ko"
        case $ko in
            *.xz) xz -dc "$KDIR/$ko" > "$KDIR/test.ko" ;;
            *) cp "$KDIR/$ko" "$KDIR/test.ko" ;;
        esac
        rm -rf "$KDIR/lib" "$deb"
        # The uncompressed ELF kernel: booted directly through its PVH entry on
        # -machine microvm (no firmware, no in-guest decompression).
        python3 - "$KDIR/boot/vmlinuz-$KVER" "$KDIR/vmlinux" <<'PY'
import lzma, subprocess, sys
data = open(sys.argv[1], 'rb').read()
for magic, kind in ((b'\xfd7zXZ\x00', 'xz'), (b'\x28\xb5\x2f\xfd', 'zstd'), (b'\x1f\x8b\x08', 'gzip')):
    at = data.find(magic)
    if at < 0:
        continue
    if kind == 'xz':
        out = lzma.LZMADecompressor().decompress(data[at:])
    else:
        out = subprocess.run(['zstd' if kind == 'zstd' else 'gzip', '-dc'], input=data[at:], capture_output=True).stdout
    if out[:4] == b'\x7fELF':
        open(sys.argv[2], 'wb').write(out)
        sys.exit(0)
sys.exit('no ELF kernel inside ' + sys.argv[1])
PY
    fi
    echo "$KVER" > "$CACHE/$suite.kver"
}

# ---- the guest's root: the test binary with its libraries, busybox, /init ----
ROOT=$RUN/root
mkdir -p "$ROOT"/{bin,proc,sys,dev,tmp,run}
cp /bin/busybox "$ROOT/bin/busybox"
cp "$BIN_DIR/mdatp-kernel-test" "$ROOT/bin/mdatp-kernel-test"
cp "$BROKEN" "$ROOT/core-break.bpf.o"
for lib in $(ldd "$BIN_DIR/mdatp-kernel-test" | awk '/=> \// { print $3 } /^[ \t]*\/lib/ { print $1 }'); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
cat > "$ROOT/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t securityfs securityfs /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
echo "GUEST $(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
case "$(cat /proc/cmdline)" in
*mdatp.corebreak*)
    echo "PASS-BEGIN corebreak"
    timeout 300 /bin/mdatp-kernel-test --object /core-break.bpf.o --work /tmp/kt
    echo "PASS-END corebreak rc=$?" ;;
*)
    echo "PASS-BEGIN preferred"
    timeout 300 /bin/mdatp-kernel-test --expect-hooks fentry+lsm --module /test.ko --work /tmp/kt
    echo "PASS-END preferred rc=$?"
    echo "PASS-BEGIN tracepoint"
    timeout 300 /bin/mdatp-kernel-test --hooks tracepoint --expect-hooks tracepoint --work /tmp/kt
    echo "PASS-END tracepoint rc=$?" ;;
esac
echo "GUEST-DONE"
poweroff -f
INIT
chmod 755 "$ROOT/init"

# Under TCG the guest's PIT-based TSC calibration sometimes fails, and a kernel
# with no TSC frequency and no HPET (microvm has none) then hangs before init
# (seen in 2 of 6 boots here). The guest's TSC runs at the host's rate: say so.
TSC_KHZ=$(awk -F': *' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)

# boot <name> <kdir> <initramfs> <extra cmdline>: the console log in $RUN/<name>.log.txt
boot() {
    local name=$1 kdir=$2 initrd=$3 extra=$4 log=$RUN/$1.log t=$SECONDS attempt
    for attempt in 1 2; do
        timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -nographic -no-reboot -accel tcg,thread=multi -cpu max -smp 2 -m 1536 \
            -machine microvm -kernel "$kdir/vmlinux" -initrd "$initrd" \
            -append "console=ttyS0 panic=-1 ${TSC_KHZ:+tsc_early_khz=$TSC_KHZ} ${MATRIX_QUIET-quiet} $extra" </dev/null > "$log" 2>&1 \
            || echo "QEMU-EXIT rc=$?" >> "$log"
        tr -d '\r' < "$log" > "$log.txt"
        # A kernel that never reached /init is a boot failure of the emulator, not a
        # result: boot once more, and say so. Anything after /init counts as it is.
        grep -q '^GUEST ' "$log.txt" && break
        say "$name: the kernel did not reach /init (attempt $attempt); console:"
        tail -n 20 "$log.txt"
    done
    say "$name: $((SECONDS - t)) s"
}

console() { # the serial console of a failed boot
    say "---- serial console of $1 ----"
    tail -n 300 "$RUN/$1.log.txt"
    say "---- end of console ----"
}

failed=0
for suite in $KERNELS; do
    fetch "$suite"
    cp "$KDIR/test.ko" "$ROOT/test.ko"
    (cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1) > "$RUN/initramfs.gz"
    boot "$suite" "$KDIR" "$RUN/initramfs.gz" ""
    log=$RUN/$suite.log.txt
    grep -E '^(GUEST|INFO|PASS |FAIL|RESULT)' "$log" | sed "s/^/  $suite $KVER: /" || true
    this_failed=0
    for pass in preferred tracepoint; do
        if ! grep -q "^PASS-END $pass rc=0" "$log"; then
            say "FAILED: $suite ($KVER), $pass hooks"
            this_failed=1
        fi
    done
    if [[ $this_failed == 1 ]]; then
        console "$suite"
        failed=1
    fi
    LAST_KDIR=$KDIR
done

# Kernels that security updates replaced leave the cache (each is ~70 MB).
for dir in "$CACHE"/k-*; do
    [[ -d $dir ]] || continue
    grep -qxF "${dir#"$CACHE"/k-}" "$CACHE"/*.kver 2>/dev/null || { say "removing the superseded ${dir##*/}"; rm -rf "$dir"; }
done

# A CO-RE relocation no kernel can satisfy must fail the load, in a guest too.
boot corebreak "$LAST_KDIR" "$RUN/initramfs.gz" "mdatp.corebreak"
log=$RUN/corebreak.log.txt
grep -E '^(FAIL|RESULT|PASS-END)' "$log" | sed "s/^/  core-break: /" || true
if grep -q '^FAIL load: ' "$log" && grep -q 'failed to resolve CO-RE relocation' "$log" && grep -qE '^PASS-END corebreak rc=[1-9]' "$log"; then
    say "a broken CO-RE relocation fails the load, as it must"
else
    say "FAILED: the build with a broken CO-RE relocation did not fail"
    console corebreak
    failed=1
fi
say "total $((SECONDS - T0)) s"
exit $failed
