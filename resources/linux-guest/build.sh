#!/usr/bin/env bash
# Builds the Vireo Linux test guest from Debian packages at test time (nothing
# is downloaded; nothing a package provides is committed):
#   vmlinuz          the bzImage from linux-image-amd64 (/boot/vmlinuz-<ver>)
#   vmlinux          the same kernel decompressed (ELF with the PVH entry note),
#                    as Linux's scripts/extract-vmlinux does it
#   initramfs.cpio   cpio newc, uncompressed: busybox-static, the modules listed below
#                    with their modules.dep dependencies, and resources/linux-guest/init.
#                    Not compressed: on a kvm_pvm host the kernel's inflate of the
#                    gzip'd one took ~170 s of each boot (every ring-0 instruction
#                    emulated); reading the 6 MB more from the CD costs GRUB ~30 s.
#   linux-guest.iso  grub-mkrescue (grub-pc-bin, xorriso): GRUB with timeout 0 boots
#                    vmlinuz + initramfs.cpio with console=ttyS0; also carries the
#                    CD-ROM check files (vireo/cd.txt, vireo/data.bin)
#   modules.txt      the modules the init loads, in load order
#   env              KVER=, paths, the ISO's CD token (sourceable)
#
#   resources/linux-guest/build.sh [CACHE_DIR]     (default native/out/linux-guest)
#
# Prints the directory holding the files on stdout (everything else on stderr).
# Rebuilds only when the kernel, busybox, this script or the init changed.
# Needs: linux-image-amd64, busybox-static, cpio, gzip, xz-utils, grub-pc-bin,
# xorriso, mtools. Exits 3 (with the reason on stderr) when one is missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${1:-${VIREO_LINUX_GUEST_CACHE:-$ROOT/native/out/linux-guest}}
log() { printf '[linux-guest] %s\n' "$*" >&2; }
missing() { log "cannot build the Linux guest: $*"; exit 3; }

# ---- inputs ----
KERNEL=${VIREO_LINUX_KERNEL_IMAGE:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)}
[ -n "$KERNEL" ] && [ -r "$KERNEL" ] || missing "no readable /boot/vmlinuz-* (apt-get install linux-image-amd64)"
KVER=${KERNEL##*/vmlinuz-}
MODDIR=/lib/modules/$KVER
[ -f "$MODDIR/modules.dep" ] || missing "$MODDIR/modules.dep not found (linux-image-$KVER incomplete)"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && "$BUSYBOX" --list | grep -x ash >/dev/null || missing "/bin/busybox not found (apt-get install busybox-static)"
! readelf -l "$BUSYBOX" 2>/dev/null | grep INTERP >/dev/null || missing "/bin/busybox is not static (apt-get install busybox-static)"
for t in cpio gzip xz; do command -v "$t" >/dev/null || missing "$t not found"; done
HAVE_ISO=1
for t in grub-mkrescue xorriso mformat; do command -v "$t" >/dev/null || { log "no $t: the ISO is not built"; HAVE_ISO=0; }; done
[ -d /usr/lib/grub/i386-pc ] || { log "no /usr/lib/grub/i386-pc (grub-pc-bin): the ISO is not built"; HAVE_ISO=0; }

# Modules the checks need (names as in modules.dep, - and _ alike). Built-in
# ones (i8042, atkbd, serial8250, rtc_cmos, fbcon/vesafb) need nothing here.
WANT=(ata_piix sd_mod sr_mod virtio_pci virtio_blk bochs isofs button evdev
      crct10dif_generic crc64_rocksoft_generic
      uhci_hcd usbhid hid_generic virtio_net e1000)

key=$( { sha256sum "$KERNEL" "$BUSYBOX" "$HERE/build.sh" "$HERE/init" "$MODDIR/modules.dep"; echo "${WANT[*]} $HAVE_ISO"; } | sha256sum | cut -c1-16)
OUT=$CACHE/$KVER-$key
if [ -f "$OUT/done" ]; then echo "$OUT"; exit 0; fi
log "building into $OUT (kernel $KVER)"
rm -rf "$CACHE"/*.tmp; mkdir -p "$OUT.tmp"; T=$OUT.tmp

# ---- kernel: bzImage and decompressed vmlinux ----
cp "$KERNEL" "$T/vmlinuz"
# extract-vmlinux: find each compression magic in the bzImage, decompress from
# there, keep the first result that is an ELF file.
extract() {
  local magic=$1 cmd=$2 off
  for off in $(LC_ALL=C grep -obUaP "$magic" "$T/vmlinuz" | cut -d: -f1); do
    tail -c +$((off + 1)) "$T/vmlinuz" | $cmd >"$T/vmlinux" 2>/dev/null || true
    if [ "$(head -c 4 "$T/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then return 0; fi
  done
  return 1
}
extract '\xFD7zXZ\x00' 'xz -dc' || extract '\x1f\x8b\x08' 'gzip -dc' || extract '\x28\xb5\x2f\xfd' 'zstd -dc' ||
  extract '\x02\x21\x4c\x18' 'lz4 -dc' || extract '\x5d\x00\x00\x00' 'xz -dc --format=lzma' ||
  { log "cannot find a compressed ELF kernel in $KERNEL"; exit 1; }
readelf -n "$T/vmlinux" 2>/dev/null | grep -q 'Xen.*0x00000012' ||
  log "warning: vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note (no PVH entry)"

# ---- modules, dependencies first ----
declare -A DEP=() SEEN=()
while IFS= read -r line; do
  m=${line%%:*}; d=${line#*:}
  n=${m##*/}; n=${n%%.ko*}; n=${n//-/_}
  DEP[$n]="$m|$d"
done <"$MODDIR/modules.dep"
declare -A SOFT=()
while read -r w mod rest; do
  [ "$w" = softdep ] || continue
  pre=${rest#pre: }; pre=${pre%%post:*}
  [[ "$rest" == pre:* ]] && SOFT[${mod//-/_}]=$pre
done <"$MODDIR/modules.softdep"
ORDER=()
visit() {  # visit NAME [soft]: a soft dependency may be an alias or absent
  local n=${1//-/_} dep
  [ -n "${SEEN[$n]:-}" ] && return 0
  SEEN[$n]=1
  if [ -z "${DEP[$n]:-}" ]; then
    grep -q "/${1}.ko" "$MODDIR/modules.builtin" 2>/dev/null || grep -q "/${n}.ko" "$MODDIR/modules.builtin" 2>/dev/null ||
      [ -n "${2:-}" ] || { log "module $1 is neither in modules.dep nor built in"; exit 1; }
    return 0
  fi
  for dep in ${SOFT[$n]:-}; do visit "$dep" soft; done
  local rec=${DEP[$n]}
  for dep in ${rec#*|}; do dep=${dep##*/}; visit "${dep%%.ko*}"; done
  ORDER+=("${rec%%|*}")
}
for w in "${WANT[@]}"; do visit "$w"; done

# ---- initramfs tree ----
R=$T/root
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,mnt/cd,etc,lib/modules/"$KVER"}
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
: >"$T/modules.txt"
for m in "${ORDER[@]}"; do
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$m")"
  case "$m" in
    *.ko.xz) xz -dc "$MODDIR/$m" >"$R/lib/modules/$KVER/${m%.xz}"; m=${m%.xz} ;;
    *.ko.zst) zstd -qdc "$MODDIR/$m" >"$R/lib/modules/$KVER/${m%.zst}"; m=${m%.zst} ;;
    *) cp "$MODDIR/$m" "$R/lib/modules/$KVER/$m" ;;
  esac
  echo "/lib/modules/$KVER/$m" >>"$T/modules.txt"
done
cp "$T/modules.txt" "$R/etc/vireo-modules"
cp "$HERE/init" "$R/init"; chmod 755 "$R/init"
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true   # the kernel opens it before devtmpfs (works without root too: devtmpfs is mounted by init)
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) >"$T/initramfs.cpio"
rm -rf "$R"

# ---- the boot ISO (firmware -> El Torito -> GRUB -> Linux) ----
if ((HAVE_ISO)); then
  I=$T/iso
  mkdir -p "$I/boot/grub" "$I/vireo"
  cp "$T/vmlinuz" "$I/boot/vmlinuz"; cp "$T/initramfs.cpio" "$I/boot/initramfs.cpio"
  CD_TOKEN=iso-$key
  head -c 262144 /dev/urandom >"$I/vireo/data.bin"
  echo "VIREO-CD token=$CD_TOKEN md5=$(md5sum <"$I/vireo/data.bin" | cut -d' ' -f1) size=262144" >"$I/vireo/cd.txt"
  cat >"$I/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
set default=0
menuentry "Vireo Linux test guest ($KVER)" {
  echo "VIREO-GRUB loading the kernel"
  linux /boot/vmlinuz console=ttyS0
  echo "VIREO-GRUB loading the initramfs"
  initrd /boot/initramfs.cpio
  echo "VIREO-GRUB booting"
}
CFG
  grub-mkrescue -o "$T/linux-guest.iso" "$I" -- -volid VIREO_LINUX >"$T/grub-mkrescue.log" 2>&1 ||
    { log "grub-mkrescue failed:"; cat "$T/grub-mkrescue.log" >&2; exit 1; }
  rm -rf "$I"
  echo "ISO_CD_TOKEN=$CD_TOKEN" >>"$T/env"
fi
{ echo "KVER=$KVER"; echo "KERNEL_SOURCE=$KERNEL"; } >>"$T/env"
touch "$T/done"
rm -rf "$OUT"; mv "$T" "$OUT"
log "built: $(cd "$OUT" && ls -s --block-size=K | tr '\n' ' ')"
echo "$OUT"
