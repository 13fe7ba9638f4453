#!/usr/bin/env bash
# Installs and builds what Vireo needs; a quick no-op when everything is in
# place. Called by the README's two commands (npm start, npm test).
#   1. Debian packages (when root; otherwise says which to install)
#   2. npm dependencies (npm ci; Electron's binary download is skipped)
#   3. the native engine (cmake: core library, unit tests, test guests) and
#      the N-API addon (node-gyp)
#   4. TypeScript (tsc -> dist/) and the renderer (vite -> dist/renderer/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# ---- 1. Debian packages ----
PKGS=(g++ make cmake nasm binutils acpica-tools pkg-config zlib1g-dev libzstd-dev liburing-dev libslirp-dev libzydis-dev
      seabios ipxe-qemu grub-rescue-pc grub-invaders xorriso mtools qemu-system-x86 qemu-utils
      chromium xvfb x11-apps imagemagick tesseract-ocr netpbm
      linux-image-amd64 busybox-static grub-pc-bin cpio xz-utils   # this line: the OS lane's guest (docs/linux-guest.md)
      clang)  # the fuzz suite's libFuzzer targets (docs/fuzzing.md); its runtime package is added below
PKGS+=(libvirt-clients libxml2-utils osinfo-db dmidecode)   # libvirt XML checks (virt-xml-validate, virsh test driver), OS detection (docs/libvirt-xml.md), dmidecode for smbios_test
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install_missing() {
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing Debian packages: ${missing[*]}"
    log "install them with: sudo apt-get install ${missing[*]}"
    for p in g++ cmake make; do command -v "$p" >/dev/null || { log "cannot build without $p"; exit 1; }; done
  fi
}
install_missing
# libFuzzer and clang's sanitizer runtimes are in libclang-rt-NN-dev (NN: clang's major
# version), which clang only recommends; where the distribution has no such package
# (older releases ship them in libclang-common-NN-dev) there is nothing to add.
missing=()
if command -v clang >/dev/null; then
  rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
  if ! dpkg-query -W -f='${Status}' "$rt" 2>/dev/null | grep -q "install ok installed" && apt-cache show "$rt" >/dev/null 2>&1; then
    missing+=("$rt")
  fi
fi
install_missing

# ---- 2. npm ----
stamp=node_modules/.vireo-npm-stamp
if [ -L node_modules ]; then
  # A git worktree sharing another checkout's node_modules: installing here would
  # empty the shared tree under everyone using it. That checkout installs.
  log "node_modules is a link to $(readlink node_modules): npm install skipped here"
elif [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
  log "installing npm dependencies"
  # Electron's binary comes from its own download host, not from npm: install the
  # packages without it, then try the download once (below), so that a machine that
  # cannot reach that host still gets everything else.
  if [ -f package-lock.json ]; then ELECTRON_SKIP_BINARY_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  else ELECTRON_SKIP_BINARY_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error; fi
  rm -f node_modules/.vireo-electron-tried
  touch "$stamp"
fi
# The Electron desktop app: tried once per npm install (VIREO_ELECTRON=0 skips it,
# ELECTRON_SKIP_BINARY_DOWNLOAD=1 too). Where the download fails, Vireo runs in the
# browser (`vireo serve` + Chromium) and says so here.
electron_tried=node_modules/.vireo-electron-tried
if [ ! -f "$electron_tried" ] && [ "${VIREO_ELECTRON:-1}" != 0 ] && [ -z "${ELECTRON_SKIP_BINARY_DOWNLOAD:-}" ] \
   && ! node -e "process.exit(require('fs').existsSync(require('electron'))?0:1)" 2>/dev/null; then
  log "downloading Electron's binary (the desktop app)"
  if out=$(timeout 300 node node_modules/electron/install.js 2>&1); then
    log "Electron installed: npm start opens the desktop app"
  else
    log "Electron's binary could not be downloaded ($(printf '%s' "$out" | grep -m1 -E 'Error' | sed 's/^ *//' | cut -c1-120)); npm start will use the browser mode. Retry with: rm $electron_tried && npm start"
  fi
  touch "$electron_tried"
fi

# ---- 3. native engine ----
JOBS=$(nproc 2>/dev/null || echo 2)
if [ ! -f native/out/core/CMakeCache.txt ]; then
  log "configuring the native engine"
  cmake -S native -B native/out/core -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
log "building the native engine"
cmake --build native/out/core -j"$JOBS" 2>&1 | grep -E "error|warning: unused|Error" || true
cmake --build native/out/core -j"$JOBS" >/dev/null   # fails loudly if the line above hid an error
addon=native/build/Release/vireo_native.node
if [ ! -f "$addon" ] || [ native/out/core/libvireo_core.a -nt "$addon" ] || [ -n "$(find native/binding native/binding.gyp -newer "$addon" 2>/dev/null)" ]; then
  log "building the N-API addon"
  (cd native && npx --no-install node-gyp rebuild --loglevel=error -j "$JOBS" >/dev/null)
fi

# ---- 4. TypeScript and renderer ----
newest_src() { find "$@" -type f \( -name '*.ts' -o -name '*.tsx' -o -name '*.css' -o -name '*.html' \) -newer "$1.stamp" 2>/dev/null | head -1; }
if [ ! -f dist/.tsc-stamp ] || [ -n "$(find electron bench tsconfig.json -newer dist/.tsc-stamp -type f -name "*.ts" -o -newer dist/.tsc-stamp -name tsconfig.json | head -1)" ]; then
  log "compiling TypeScript"
  npx --no-install tsc -p tsconfig.json
  touch dist/.tsc-stamp
fi
if [ -f renderer/vite.config.ts ]; then
  if [ ! -f dist/renderer/index.html ] || [ -n "$(find renderer electron/common -newer dist/renderer/index.html -type f | head -1)" ]; then
    log "building the renderer"
    npx --no-install vite build --config renderer/vite.config.ts --logLevel error
  fi
fi
log "ready"
