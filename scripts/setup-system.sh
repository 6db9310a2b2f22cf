#!/usr/bin/env bash
# System set-up for oomguard on Debian/Ubuntu, run as root by `make setup`.
# Idempotent: every step checks before it acts, so a second run takes seconds.
set -euo pipefail

say() { printf 'oomguard setup: %s\n' "$*"; }
die() { printf 'oomguard setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (BPF and apt need it): run as root (from a user account: sudo make ...)"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only; install bcc (python3 bindings), bpftool, gcc and kernel headers by hand"

kver=$(uname -r)
arch=$(dpkg --print-architecture)
# python3-systemd: native journal entries with fields; systemd: the service test boots a throw-away one;
# util-linux: unshare, nsenter, setpriv
packages=(python3-bpfcc python3-venv python3-systemd bpftool gcc libc6-dev systemd util-linux)
# --for-tests: the real servers the tests start on 127.0.0.1 (Prometheus with promtool, Alertmanager)
test_services=(prometheus prometheus-alertmanager)
for_tests=0
[ "${1:-}" != "--for-tests" ] || { for_tests=1; packages+=("${test_services[@]}"); }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "installing: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# Debian enables and starts an installed Prometheus/Alertmanager on 0.0.0.0; the tests start their own on
# 127.0.0.1 and need none running, so a service this run installed is stopped and disabled again.
if [ "$for_tests" -eq 1 ] && [ -d /run/systemd/system ]; then
  for p in "${missing[@]}"; do
    for s in "${test_services[@]}"; do
      if [ "$p" = "$s" ]; then
        systemctl disable --now "$s.service" >/dev/null 2>&1 || true
        say "installed $s for the tests; its system service is left disabled"
      fi
    done
  done
fi

# Kernel headers. bcc needs a header tree at /lib/modules/$(uname -r)/build.
build="/lib/modules/$kver/build"
if [ ! -e "$build/include/linux/kconfig.h" ] && [ ! -e "$build/Makefile" ]; then
  if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    apt_install "linux-headers-$kver"
  fi
fi
if [ ! -e "$build/Makefile" ]; then
  # No headers for this exact kernel in the archive (custom or cloud kernel).
  # oomguard's BPF programs read only tracepoint arguments and BPF helpers,
  # never a kernel struct, and bcc takes tracepoint layouts from tracefs at
  # load time. So any recent header tree compiles them correctly: link the
  # distribution's generic headers as this kernel's build tree.
  dpkg-query -W -f='${Status}' "linux-headers-$arch" 2>/dev/null | grep -q 'install ok installed' \
    || apt_install "linux-headers-$arch"
  generic_build=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
  generic_common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
  [ -n "$generic_build" ] || die "no kernel headers found under /usr/src: install linux-headers-$kver or linux-headers-$arch"
  mkdir -p "/lib/modules/$kver"
  ln -sfn "$generic_build" "$build"
  [ -z "$generic_common" ] || ln -sfn "$generic_common" "/lib/modules/$kver/source"
  say "no headers packaged for kernel $kver: linked $build -> $generic_build"
  say "  (safe: oomguard's BPF reads only tracepoint arguments, whose layout bcc takes from tracefs, never kernel structs)"
fi

# tracefs: bcc attaches tracepoints through it.
if [ ! -e /sys/kernel/tracing/events/kmem ]; then
  mount -t tracefs tracefs /sys/kernel/tracing || die "cannot mount tracefs on /sys/kernel/tracing"
  say "mounted tracefs on /sys/kernel/tracing"
fi
if [ ! -e /sys/kernel/debug/tracing/events ] && [ -d /sys/kernel/debug ]; then
  # older bcc looks under debugfs; harmless if it fails
  mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
fi
say "system ready (kernel $kver)"
