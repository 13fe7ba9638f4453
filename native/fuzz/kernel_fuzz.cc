// libFuzzer target: the direct kernel loaders (machine/boot.cc through
// kernel_boot.cc): format detection, multiboot v1 (ELF and a.out kludge),
// Linux bzImage (32-bit entry and, with a firmware E820 map, 16-bit setup),
// PVH ELF notes, initrd and command-line placement, over 64 MiB of guest RAM.
// Input: u8 flags (bit 0: the option ROM's path, load_from_rom_request with
// a parameter block built from the input: u32 address, u8 entry count, 20
// bytes each), u8 n + n bytes of command line, u16 initrd size in KiB (mod 2048), then
// the kernel image (the rest).
#include <sys/mman.h>

#include <cstring>

#include "fuzz_input.h"
#include "machine/kernel_boot.h"
#include "machine/layout.h"

using namespace vireo;
using namespace vireo::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kMem = 64 << 20;
  Reader in(data, size);
  uint8_t flags = in.u8();
  // Fresh zero pages every run; only what a loader touches is ever backed.
  void* p = mmap(nullptr, kMem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return 0;
  uint8_t* ram = static_cast<uint8_t*>(p);
  GuestMemory mem;
  mem.add_region(0, kMem, ram);
  uint64_t params = layout::kKernelBootParams;
  if (flags & 1) {
    if (flags & 2) params = in.u32() % kMem;
    uint8_t n = in.u8();
    uint8_t hdr[8] = {'V', 'K', 'B', '1', n, 0, 0, 0};
    if (params + 0x40 + 20ull * n <= kMem) {
      std::memcpy(ram + params, hdr, 8);
      for (int i = 0; i < n; i++) {
        auto e = in.bytes(20);
        std::memcpy(ram + params + 0x40 + 20 * i, e.data(), e.size());
      }
    }
  }
  auto cl = in.bytes(in.u8());
  std::string cmdline(cl.begin(), cl.end());
  std::vector<uint8_t> initrd(size_t(in.u16() % 2048) * 1024, 0x5a);
  auto k = in.rest();
  std::vector<uint8_t> kernel(k.begin(), k.end());
  try {
    if (flags & 1) {
      load_from_rom_request(mem, params, boot::ram_layout(kMem), kernel, initrd, cmdline, boot::ImageOptions{});
    } else {
      boot::load_kernel_image(mem, boot::ram_layout(kMem), kernel, initrd, cmdline);
    }
  } catch (const boot::BootError&) {
    // A refused kernel is the expected outcome for most inputs; any other
    // exception type escapes and is reported as a crash.
  }
  munmap(p, kMem);
  return 0;
}
