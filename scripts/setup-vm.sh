#!/usr/bin/env bash
# The VM guests of `make test` (tests/vm): the kernels operators run, booted with virtme-ng under qemu.
# Idempotent. Kernels: Debian 12's 6.1 (linux-image-amd64) and the 6.12 LTS (linux-image-6.12-amd64).
set -euo pipefail

say() { printf 'oomguard setup (vm): %s\n' "$*"; }
die() { printf 'oomguard setup (vm): error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt needs it)"
# busybox-static: Debian's kernels load virtio and 9p as modules, so virtme-ng builds a small initramfs
# around busybox to load them (without it: "virtme-run: initramfs is needed, and no busybox was found").
packages=(qemu-system-x86 linux-image-amd64 linux-image-6.12-amd64 linux-headers-amd64 busybox-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # INITRD=No: virtme-ng boots the kernel over this machine's own filesystem, no initramfs needed
  # (and building two costs minutes).
  INITRD=No DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bcc in a guest compiles against /lib/modules/<guest kernel>/build. oomguard's BPF reads only tracepoint
# arguments (layouts from tracefs), so the distribution's generic header tree serves every guest kernel
# that has none of its own, as on the host (scripts/setup-system.sh).
arch=$(dpkg --print-architecture)
generic_build=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
generic_common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
[ -n "$generic_build" ] && [ -n "$generic_common" ] || die "no kernel headers under /usr/src: apt-get install linux-headers-$arch"
for image in /boot/vmlinuz-6.1.*-"$arch" /boot/vmlinuz-6.12.*-"$arch"; do
  [ -e "$image" ] || die "no $image after installing the kernels"
  kver=${image#/boot/vmlinuz-}
  if [ ! -e "/lib/modules/$kver/build/include/linux/kconfig.h" ] && \
     [ ! -e "/lib/modules/$kver/source/include/linux/kconfig.h" ]; then
    ln -sfn "$generic_build" "/lib/modules/$kver/build"
    ln -sfn "$generic_common" "/lib/modules/$kver/source"
    say "guest kernel $kver: linked its headers to $generic_build"
  fi
done
say "guest kernels ready: $(cd /boot && ls vmlinuz-6.1.*-"$arch" vmlinuz-6.12.*-"$arch" | tr '\n' ' ')"
