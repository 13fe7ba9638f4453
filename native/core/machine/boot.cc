#include "machine/boot.h"

#include <elf.h>
#include <errno.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "machine/layout.h"

namespace vireo::boot {

namespace {

// Bounds checks written as `size - o >= n` so that a huge offset cannot wrap around.
bool in_file(const std::vector<uint8_t>& b, uint64_t o, uint64_t n) { return o <= b.size() && b.size() - o >= n; }
uint16_t rd16(const std::vector<uint8_t>& b, size_t o) { return in_file(b, o, 2) ? uint16_t(b[o] | b[o + 1] << 8) : 0; }
uint32_t rd32(const std::vector<uint8_t>& b, size_t o) {
  return in_file(b, o, 4) ? uint32_t(b[o]) | uint32_t(b[o + 1]) << 8 | uint32_t(b[o + 2]) << 16 | uint32_t(b[o + 3]) << 24 : 0;
}

std::string hexs(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
  return b;
}

// What the loaders share: guest memory, the RAM layout, names for errors,
// and (on the PC board) the firmware's memory map.
struct Ctx {
  const GuestMemory& mem;
  RamLayout ram;
  std::string name, initrd_name;
  const std::vector<E820Entry>* fw = nullptr;

  std::vector<E820Entry> map() const { return fw ? *fw : e820_map(ram); }
  // End of the RAM that starts at 1 MiB (below 4 GiB): where initrds go under.
  uint64_t low_top() const {
    if (!fw) return ram.low_end;
    for (auto& e : *fw) {
      if (e.type == 1 && e.addr <= layout::kHighMemBase && e.size > layout::kHighMemBase - e.addr)
        return std::min<uint64_t>(e.addr + e.size, layout::k4GiB);
    }
    return layout::kHighMemBase;
  }
  // Conventional memory the firmware leaves free (below the EBDA).
  uint64_t low_mem() const {
    if (!fw) return layout::kLowMemTop;
    for (auto& e : *fw) {
      if (e.type == 1 && e.addr == 0) return std::min<uint64_t>(e.size, 0xa0000);
    }
    return 0;
  }
  // With firmware present, [start, start+len) must be RAM in its map (not the
  // BIOS, its tables or ACPI data).
  void check_ram(uint64_t start, uint64_t len, const std::string& what) const {
    if (!fw || len == 0) return;
    for (auto& e : *fw) {
      if (e.type == 1 && start >= e.addr && len <= e.size && start - e.addr <= e.size - len) return;
    }
    throw BootError(what + " does not fit in guest RAM: " + hexs(start) + "-" + hexs(start + len) +
                    " is not free memory in the firmware's E820 map");
  }
};

void put(const GuestMemory& mem, uint64_t gpa, const void* src, uint64_t len, const std::string& what) {
  if (len == 0) return;
  if (!mem.write(gpa, src, len)) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s does not fit in guest RAM (needs 0x%llx-0x%llx)", what.c_str(),
                  (unsigned long long)gpa, (unsigned long long)(gpa + len));
    throw BootError(buf);
  }
}
void zero(const GuestMemory& mem, uint64_t gpa, uint64_t len, const std::string& what) {
  if (len == 0) return;
  uint8_t* p = mem.ptr(gpa, len);
  if (!p) throw BootError(what + " does not fit in guest RAM");
  std::memset(p, 0, len);
}
template <class T> void put_obj(const GuestMemory& mem, uint64_t gpa, const T& v, const std::string& what) {
  put(mem, gpa, &v, sizeof v, what);
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

void put_cmdline(const GuestMemory& mem, const std::string& cmdline, uint64_t max_len) {
  if (cmdline.size() + 1 > max_len) throw BootError("kernel command line is too long (" + std::to_string(cmdline.size()) + " bytes)");
  put(mem, layout::kCmdline, cmdline.c_str(), cmdline.size() + 1, "command line");
}

struct ElfSeg {
  uint64_t paddr, filesz, memsz, offset;
};

// Parses ELF32/ELF64 program headers; returns PT_LOAD segments and the entry.
bool parse_elf(const std::vector<uint8_t>& k, std::vector<ElfSeg>& segs, uint64_t& entry, std::vector<ElfSeg>* notes,
               const std::string& name) {
  if (k.size() < sizeof(Elf32_Ehdr) || std::memcmp(k.data(), ELFMAG, SELFMAG) != 0) return false;
  bool is64 = k[EI_CLASS] == ELFCLASS64;
  if (k[EI_DATA] != ELFDATA2LSB) throw BootError(name + ": big-endian ELF is not an x86 kernel");
  auto bad = [&] { return BootError(name + ": truncated or malformed ELF program headers"); };
  auto outside = [&](int i, uint64_t off, uint64_t len) {
    return BootError(name + ": ELF program header " + std::to_string(i) + " points outside the file (bytes " + hexs(off) +
                     " + " + hexs(len) + ", the file has " + std::to_string(k.size()) + "); truncated or malformed ELF");
  };
  if (is64) {
    if (k.size() < sizeof(Elf64_Ehdr)) throw bad();
    Elf64_Ehdr eh;
    std::memcpy(&eh, k.data(), sizeof eh);
    entry = eh.e_entry;
    for (int i = 0; i < eh.e_phnum; i++) {
      uint64_t off = eh.e_phoff + uint64_t(i) * eh.e_phentsize;
      if (eh.e_phentsize < sizeof(Elf64_Phdr) || eh.e_phoff > k.size() || !in_file(k, off, sizeof(Elf64_Phdr))) throw bad();
      Elf64_Phdr ph;
      std::memcpy(&ph, k.data() + off, sizeof ph);
      if (!in_file(k, ph.p_offset, ph.p_filesz)) throw outside(i, ph.p_offset, ph.p_filesz);
      if (ph.p_type == PT_LOAD && ph.p_filesz > ph.p_memsz) throw bad();
      if (ph.p_type == PT_LOAD && ph.p_memsz) segs.push_back({ph.p_paddr, ph.p_filesz, ph.p_memsz, ph.p_offset});
      if (ph.p_type == PT_NOTE && notes) notes->push_back({ph.p_paddr, ph.p_filesz, ph.p_memsz, ph.p_offset});
    }
  } else {
    Elf32_Ehdr eh;
    std::memcpy(&eh, k.data(), sizeof eh);
    entry = eh.e_entry;
    for (int i = 0; i < eh.e_phnum; i++) {
      uint64_t off = eh.e_phoff + uint64_t(i) * eh.e_phentsize;
      if (eh.e_phentsize < sizeof(Elf32_Phdr) || !in_file(k, off, sizeof(Elf32_Phdr))) throw bad();
      Elf32_Phdr ph;
      std::memcpy(&ph, k.data() + off, sizeof ph);
      if (!in_file(k, ph.p_offset, ph.p_filesz)) throw outside(i, ph.p_offset, ph.p_filesz);
      if (ph.p_type == PT_LOAD && ph.p_filesz > ph.p_memsz) throw bad();
      if (ph.p_type == PT_LOAD && ph.p_memsz) segs.push_back({ph.p_paddr, ph.p_filesz, ph.p_memsz, ph.p_offset});
      if (ph.p_type == PT_NOTE && notes) notes->push_back({ph.p_paddr, ph.p_filesz, ph.p_memsz, ph.p_offset});
    }
  }
  if (segs.empty()) throw BootError(name + ": ELF file has no loadable segments");
  return true;
}

void load_segments(const Ctx& c, const std::vector<uint8_t>& k, const std::vector<ElfSeg>& segs, KernelInfo& info) {
  const GuestMemory& mem = c.mem;
  const std::string& name = c.name;
  info.load_start = ~0ull;
  for (auto& s : segs) {
    if (!mem.ptr(s.paddr, s.memsz))
      throw BootError(name + " does not fit in guest RAM: a segment needs " + hexs(s.paddr) + " + " + hexs(s.memsz) + " bytes");
    c.check_ram(s.paddr, s.memsz, name);
    put(mem, s.paddr, k.data() + s.offset, s.filesz, name);
    zero(mem, s.paddr + s.filesz, s.memsz - s.filesz, name);
    info.load_start = std::min(info.load_start, s.paddr);
    info.load_end = std::max(info.load_end, s.paddr + s.memsz);
  }
}

// ---------------- multiboot v1 ----------------
constexpr uint32_t kMbMagic = 0x1BADB002, kMbBootMagic = 0x2BADB002;
constexpr uint32_t kMbAoutKludge = 1u << 16;

long find_multiboot(const std::vector<uint8_t>& k) {
  size_t lim = std::min<size_t>(k.size(), 8192);
  for (size_t o = 0; o + 12 <= lim; o += 4) {
    if (rd32(k, o) == kMbMagic && uint32_t(rd32(k, o) + rd32(k, o + 4) + rd32(k, o + 8)) == 0) return long(o);
  }
  return -1;
}

BootResult load_multiboot(const Ctx& c, const std::vector<uint8_t>& k, size_t hoff, const std::vector<uint8_t>& initrd,
                          const std::string& cmdline) {
  const GuestMemory& mem = c.mem;
  const std::string& name = c.name;
  BootResult r;
  uint32_t flags = rd32(k, hoff + 4);
  uint64_t entry;
  if (flags & kMbAoutKludge) {
    uint32_t header_addr = rd32(k, hoff + 12), load_addr = rd32(k, hoff + 16), load_end = rd32(k, hoff + 20),
             bss_end = rd32(k, hoff + 24);
    entry = rd32(k, hoff + 28);
    if (load_addr > header_addr || header_addr - load_addr > hoff)
      throw BootError(name + ": multiboot header's load_addr is inconsistent with its position in the file");
    uint64_t file_off = hoff - (header_addr - load_addr);
    uint64_t len = load_end ? uint64_t(load_end) - load_addr : k.size() - file_off;
    if (load_end && load_end < load_addr) throw BootError(name + ": multiboot load_end_addr is below load_addr");
    if (!in_file(k, file_off, len)) throw BootError(name + ": multiboot header asks for more bytes than the file has");
    uint64_t end = load_addr + len;
    uint64_t top = bss_end && bss_end > end ? bss_end : end;
    c.check_ram(load_addr, top - load_addr, name);
    put(mem, load_addr, k.data() + file_off, len, name);
    if (top > end) zero(mem, end, top - end, name + " (bss)");
    end = top;
    r.info.format = "multiboot-aout";
    r.info.load_start = load_addr;
    r.info.load_end = end;
  } else {
    std::vector<ElfSeg> segs;
    if (!parse_elf(k, segs, entry, nullptr, name))
      throw BootError(name + ": multiboot kernel is neither ELF nor uses the a.out kludge (flag bit 16)");
    load_segments(c, k, segs, r.info);
    r.info.format = "multiboot-elf";
  }

  const uint64_t info = layout::kMultibootInfo;
  const uint64_t mods = info + 0x100, loader_name = info + 0x180, mmap = info + 0x200;
  uint8_t mbi[88] = {};
  auto set32 = [&](int off, uint32_t v) { std::memcpy(mbi + off, &v, 4); };
  uint32_t mflags = 1u << 0 | 1u << 2 | 1u << 6 | 1u << 9;
  set32(4, uint32_t(c.low_mem() / 1024));                                                 // mem_lower, KiB
  set32(8, uint32_t((std::min<uint64_t>(c.low_top(), 0xffffffffull) - layout::kHighMemBase) / 1024));  // mem_upper
  put_cmdline(mem, cmdline, layout::kCmdlineMax);
  set32(16, uint32_t(layout::kCmdline));
  if (!initrd.empty()) {
    uint64_t at = align_up(r.info.load_end, 4096);
    if (at >= c.low_top() || initrd.size() > c.low_top() - at)
      throw BootError(c.initrd_name + " (" + std::to_string(initrd.size() >> 10) + " KiB) does not fit in guest RAM after the kernel (a multiboot module goes at " +
                      hexs(at) + ")");
    c.check_ram(at, initrd.size(), c.initrd_name);
    put(mem, at, initrd.data(), initrd.size(), c.initrd_name + " (multiboot module)");
    uint32_t mod[4] = {uint32_t(at), uint32_t(at + initrd.size()), uint32_t(layout::kCmdline), 0};
    put(mem, mods, mod, sizeof mod, "multiboot module list");
    mflags |= 1u << 3;
    set32(20, 1);
    set32(24, uint32_t(mods));
    r.info.initrd_addr = at;
    r.info.initrd_size = initrd.size();
  }
  auto map = c.map();
  std::vector<uint8_t> mm;
  for (auto& e : map) {
    uint8_t ent[24];
    uint32_t size = 20;
    std::memcpy(ent, &size, 4);
    std::memcpy(ent + 4, &e.addr, 8);
    std::memcpy(ent + 12, &e.size, 8);
    std::memcpy(ent + 20, &e.type, 4);
    mm.insert(mm.end(), ent, ent + 24);
  }
  put(mem, mmap, mm.data(), mm.size(), "multiboot memory map");
  set32(44, uint32_t(mm.size()));
  set32(48, uint32_t(mmap));
  static const char kName[] = "Vireo";
  put(mem, loader_name, kName, sizeof kName, "boot loader name");
  set32(64, uint32_t(loader_name));
  set32(0, mflags);
  put(mem, info, mbi, sizeof mbi, "multiboot info");

  r.info.info_addr = info;
  r.cpu.mode = CpuInit::Mode::Protected32;
  r.cpu.rip = entry;
  r.cpu.eax = kMbBootMagic;
  r.cpu.ebx = uint32_t(info);
  return r;
}

// ---------------- Linux bzImage (Documentation/arch/x86/boot.rst) ----------------
// Two ways in. Bare machine: the 32-bit entry at code32_start with a
// boot_params ("zero page") Vireo fills, E820 map included. PC board (after
// SeaBIOS): the 16-bit real-mode setup code, loaded at layout::kLinuxSetup, as
// a BIOS boot loader does (GRUB's linux16, QEMU's linuxboot ROM); the kernel's
// own setup then asks the BIOS for the memory map and video mode.
BootResult load_bzimage(const Ctx& c, const std::vector<uint8_t>& k, const std::vector<uint8_t>& initrd,
                        const std::string& cmdline) {
  const GuestMemory& mem = c.mem;
  const std::string& name = c.name;
  BootResult r;
  uint16_t version = rd16(k, 0x206);
  if (version < 0x0202) throw BootError(name + ": Linux boot protocol " + std::to_string(version >> 8) + "." +
                                        std::to_string(version & 0xff) + " is too old (2.02 or later needed)");
  uint8_t loadflags = k[0x211];
  if (!(loadflags & 0x01)) throw BootError(name + ": zImage (loaded low) kernels are not supported; use a bzImage");
  unsigned setup_sects = k[0x1f1] ? k[0x1f1] : 4;
  size_t setup_size = (setup_sects + 1) * 512;
  if (setup_size >= k.size()) throw BootError(name + ": truncated bzImage (setup is larger than the file)");
  const bool real_mode = c.fw != nullptr;
  // Real mode: setup code, heap (up to heap_end_ptr) and stack share one 64 KiB segment.
  constexpr uint16_t kHeapEnd = 0xfe00, kStackTop = 0xfff0;
  if (real_mode && setup_size > 0x8000) throw BootError(name + ": bzImage setup code is larger than 32 KiB");

  // Real mode: the setup sectors as they are in the file; 32-bit: boot_params,
  // zeroed, with the setup header copied in. Either way the header fields sit
  // at the same offsets and are patched below.
  std::vector<uint8_t> bp;
  if (real_mode) {
    bp.assign(k.begin(), k.begin() + long(setup_size));
  } else {
    bp.assign(4096, 0);
    size_t hdr_end = 0x202 + k[0x201];
    if (hdr_end > k.size() || hdr_end > 0x300) hdr_end = std::min<size_t>(k.size(), 0x290);
    std::memcpy(bp.data() + 0x1f1, k.data() + 0x1f1, hdr_end - 0x1f1);
  }
  auto set8 = [&](int o, uint8_t v) { bp[size_t(o)] = v; };
  auto set16 = [&](int o, uint16_t v) { std::memcpy(bp.data() + o, &v, 2); };
  auto set32 = [&](int o, uint32_t v) { std::memcpy(bp.data() + o, &v, 4); };
  set16(0x1fa, 0xffff);  // vid_mode: "normal"
  set8(0x210, 0xff);     // type_of_loader: undefined boot loader
  set8(0x211, loadflags | 0x80);  // CAN_USE_HEAP
  set16(0x224, kHeapEnd);  // heap_end_ptr (real mode: relative to the setup segment)
  uint32_t cmdline_max = version >= 0x0206 ? rd32(k, 0x238) : 255;
  if (cmdline_max == 0) cmdline_max = 255;
  c.check_ram(layout::kCmdline, cmdline.size() + 1, "the kernel command line");
  put_cmdline(mem, cmdline, std::min<uint64_t>(uint64_t(cmdline_max) + 1, layout::kCmdlineMax));
  set32(0x228, uint32_t(layout::kCmdline));

  // Protected-mode kernel at 1 MiB.
  const uint64_t kaddr = layout::kHighMemBase;
  c.check_ram(kaddr, k.size() - setup_size, name);
  put(mem, kaddr, k.data() + setup_size, k.size() - setup_size, name);
  if (!real_mode) set32(0x214, uint32_t(kaddr));  // code32_start (real mode: the setup code jumps to its default, 1 MiB)
  r.info.load_start = kaddr;
  r.info.load_end = kaddr + (k.size() - setup_size);

  if (!initrd.empty()) {
    uint64_t max = version >= 0x0203 ? rd32(k, 0x22c) : 0x37ffffff;
    uint64_t top = std::min<uint64_t>(c.low_top(), max + 1);
    if (initrd.size() > top || top - initrd.size() < r.info.load_end)
      throw BootError(c.initrd_name + " (" + std::to_string(initrd.size() >> 20) + " MiB) does not fit in guest RAM: it must go between the kernel's end (" +
                      std::to_string(r.info.load_end >> 20) + " MiB) and " + std::to_string(top >> 20) +
                      " MiB (the top of usable RAM or the kernel's initrd limit)");
    uint64_t at = (top - initrd.size()) & ~0xfffull;
    c.check_ram(at, initrd.size(), c.initrd_name);
    put(mem, at, initrd.data(), initrd.size(), c.initrd_name);
    set32(0x218, uint32_t(at));
    set32(0x21c, uint32_t(initrd.size()));
    r.info.initrd_addr = at;
    r.info.initrd_size = initrd.size();
  }
  r.info.format = "bzimage";

  if (real_mode) {
    c.check_ram(layout::kLinuxSetup, 0x10000, "the Linux setup code");
    put(mem, layout::kLinuxSetup, bp.data(), bp.size(), name + " (setup code)");
    r.info.info_addr = layout::kLinuxSetup;
    r.cpu.mode = CpuInit::Mode::Real;
    r.cpu.real_ds = uint16_t(layout::kLinuxSetup >> 4);
    r.cpu.real_cs = uint16_t(r.cpu.real_ds + 0x20);  // the setup entry is 512 bytes in
    r.cpu.rip = 0;
    r.cpu.rsp = kStackTop;
    return r;
  }
  auto map = c.map();
  set8(0x1e8, uint8_t(std::min<size_t>(map.size(), 128)));
  for (size_t i = 0; i < map.size() && i < 128; i++) {
    uint8_t* e = bp.data() + 0x2d0 + i * 20;
    std::memcpy(e, &map[i].addr, 8);
    std::memcpy(e + 8, &map[i].size, 8);
    std::memcpy(e + 16, &map[i].type, 4);
  }
  put(mem, layout::kZeroPage, bp.data(), bp.size(), "boot_params");
  r.info.info_addr = layout::kZeroPage;
  r.cpu.mode = CpuInit::Mode::Protected32;
  r.cpu.rip = kaddr;
  r.cpu.esi = uint32_t(layout::kZeroPage);
  return r;
}

// ---------------- PVH (xen/include/public/arch-x86/hvm/start_info.h) ----------------
constexpr uint32_t kXenElfnotePhys32Entry = 18;
constexpr uint32_t kHvmStartMagic = 0x336ec578;

constexpr uint32_t kXenElfnoteGuestOs = 6;

// The first "Xen" ELF note of `type` in the PT_NOTE segments with a descriptor
// of at least `min_desc` bytes: the descriptor's file offset, or 0.
uint64_t find_xen_note(const std::vector<uint8_t>& k, const std::vector<ElfSeg>& notes, uint32_t type, uint32_t min_desc) {
  for (auto& n : notes) {
    uint64_t o = n.offset, end = n.offset + n.filesz;
    while (o <= end && end - o >= 12) {
      uint32_t namesz = rd32(k, o), descsz = rd32(k, o + 4), t = rd32(k, o + 8);
      uint64_t name_o = o + 12, desc_o = name_o + align_up(namesz, 4);
      uint64_t next = desc_o + align_up(descsz, 4);
      if (next > end) break;
      if (t == type && namesz == 4 && std::memcmp(k.data() + name_o, "Xen", 4) == 0 && descsz >= min_desc) return desc_o;
      o = next;
    }
  }
  return 0;
}

bool find_pvh_entry(const std::vector<uint8_t>& k, const std::vector<ElfSeg>& notes, uint64_t& entry) {
  uint64_t d = find_xen_note(k, notes, kXenElfnotePhys32Entry, 4);
  if (d) entry = rd32(k, d);
  return d != 0;
}

// XEN_ELFNOTE_GUEST_OS says "linux" (a Linux vmlinux carries it).
bool guest_os_is_linux(const std::vector<uint8_t>& k, const std::vector<ElfSeg>& notes) {
  uint64_t d = find_xen_note(k, notes, kXenElfnoteGuestOs, 5);
  return d != 0 && std::memcmp(k.data() + d, "linux", 5) == 0;
}

BootResult load_pvh(const Ctx& c, const std::vector<uint8_t>& k, const std::vector<ElfSeg>& segs, uint64_t entry,
                    const std::vector<uint8_t>& initrd, const std::string& cmdline) {
  const GuestMemory& mem = c.mem;
  BootResult r;
  load_segments(c, k, segs, r.info);
  put_cmdline(mem, cmdline, layout::kCmdlineMax);
  const uint64_t si = layout::kPvhStartInfo, modlist = si + 0x40, memmap = si + 0x100;
  struct {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
  } start{};
  static_assert(sizeof(start) == 56);
  start.magic = kHvmStartMagic;
  start.version = 1;
  start.cmdline_paddr = layout::kCmdline;
  if (!initrd.empty()) {
    uint64_t top = c.low_top();
    if (initrd.size() > top || top - initrd.size() < r.info.load_end)
      throw BootError(c.initrd_name + " (" + std::to_string(initrd.size() >> 20) + " MiB) does not fit in guest RAM above the kernel");
    uint64_t at = (top - initrd.size()) & ~0xfffull;
    c.check_ram(at, initrd.size(), c.initrd_name);
    put(mem, at, initrd.data(), initrd.size(), c.initrd_name);
    uint64_t mod[4] = {at, initrd.size(), 0, 0};
    put(mem, modlist, mod, sizeof mod, "PVH module list");
    start.nr_modules = 1;
    start.modlist_paddr = modlist;
    r.info.initrd_addr = at;
    r.info.initrd_size = initrd.size();
  }
  auto map = c.map();
  std::vector<uint8_t> mm;
  for (auto& e : map) {
    uint8_t ent[24] = {};
    std::memcpy(ent, &e.addr, 8);
    std::memcpy(ent + 8, &e.size, 8);
    std::memcpy(ent + 16, &e.type, 4);
    mm.insert(mm.end(), ent, ent + 24);
  }
  put(mem, memmap, mm.data(), mm.size(), "PVH memory map");
  start.memmap_paddr = memmap;
  start.memmap_entries = uint32_t(map.size());
  put_obj(mem, si, start, "PVH start info");
  r.info.format = "pvh";
  r.info.info_addr = si;
  r.cpu.mode = CpuInit::Mode::Protected32;
  r.cpu.rip = entry;
  r.cpu.ebx = uint32_t(si);
  return r;
}

}  // namespace

RamLayout ram_layout(uint64_t mem_bytes) {
  RamLayout r;
  r.low_end = std::min(mem_bytes, layout::kPciHoleStart);
  r.high_size = mem_bytes - r.low_end;
  return r;
}

std::vector<E820Entry> e820_map(const RamLayout& r) {
  std::vector<E820Entry> m;
  m.push_back({0, layout::kLowMemTop, 1});
  m.push_back({layout::kLowMemTop, 0xa0000 - layout::kLowMemTop, 2});  // EBDA
  m.push_back({0xf0000, 0x10000, 2});                                  // BIOS area
  if (r.low_end > layout::kHighMemBase) m.push_back({layout::kHighMemBase, r.low_end - layout::kHighMemBase, 1});
  if (r.high_size) m.push_back({layout::k4GiB, r.high_size, 1});
  return m;
}

std::vector<uint8_t> read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    int e = errno;
    throw BootError(std::string(what) + " '" + path + "' cannot be read: " + std::strerror(e ? e : ENOENT));
  }
  std::vector<uint8_t> v((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw BootError(std::string(what) + " '" + path + "' cannot be read");
  return v;
}

void write_boot_gdt(const GuestMemory& mem) {
  const uint64_t gdt[4] = {0, 0, 0x00cf9a000000ffffull /* 0x10: code, flat 4 GiB */,
                           0x00cf92000000ffffull /* 0x18: data, flat 4 GiB */};
  put(mem, layout::kBootGdt, gdt, sizeof gdt, "boot GDT");
}

BootResult load_kernel_image(const GuestMemory& mem, const RamLayout& ram, const std::vector<uint8_t>& k,
                             const std::vector<uint8_t>& initrd, const std::string& cmdline, const std::string& name) {
  ImageOptions o;
  o.name = name;
  return load_kernel_image(mem, ram, k, initrd, cmdline, o);
}

BootResult load_kernel_image(const GuestMemory& mem, const RamLayout& ram, const std::vector<uint8_t>& k,
                             const std::vector<uint8_t>& initrd, const std::string& cmdline, const ImageOptions& o) {
  const std::string& name = o.name;
  if (k.size() < 64) throw BootError(name + " is too small to be a kernel (" + std::to_string(k.size()) + " bytes)");
  Ctx c{mem, ram, o.name, o.initrd_name, o.firmware_e820};
  BootResult r;
  // bzImage first: the "HdrS" signature and boot flag are unambiguous.
  if (k.size() > 0x260 && rd16(k, 0x1fe) == 0xAA55 && std::memcmp(k.data() + 0x202, "HdrS", 4) == 0) {
    r = load_bzimage(c, k, initrd, cmdline);
  } else if (long off = find_multiboot(k); off >= 0) {
    r = load_multiboot(c, k, size_t(off), initrd, cmdline);
  } else {
    std::vector<ElfSeg> segs, notes;
    uint64_t entry = 0, pvh_entry = 0;
    if (!parse_elf(k, segs, entry, &notes, name))
      throw BootError(name + " is not a kernel Vireo can boot: no multiboot header, not a bzImage, not an ELF file");
    if (!find_pvh_entry(k, notes, pvh_entry))
      throw BootError(name + " is an ELF file without a multiboot header or a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
    r = load_pvh(c, k, segs, pvh_entry, initrd, cmdline);
  }
  write_boot_gdt(mem);
  return r;
}

bool is_linux_kernel(const std::vector<uint8_t>& k) {
  if (k.size() > 0x260 && rd16(k, 0x1fe) == 0xAA55 && std::memcmp(k.data() + 0x202, "HdrS", 4) == 0) return true;
  if (k.size() < 64 || find_multiboot(k) >= 0) return false;
  std::vector<ElfSeg> segs, notes;
  uint64_t entry = 0;
  try {
    if (!parse_elf(k, segs, entry, &notes, "kernel")) return false;
  } catch (const BootError&) {
    return false;
  }
  return guest_os_is_linux(k, notes);
}

namespace {
// The word's name as the kernel matches it: up to '=' ("a.b=1" -> "a.b").
std::string word_name(const std::string& w) { return w.substr(0, w.find('=')); }

bool cmdline_sets(const std::string& cmdline, const std::string& name) {
  size_t i = 0;
  while (i < cmdline.size()) {
    while (i < cmdline.size() && cmdline[i] == ' ') i++;
    size_t j = cmdline.find(' ', i);
    if (j == std::string::npos) j = cmdline.size();
    std::string w = cmdline.substr(i, j - i);
    if (w == "--") return false;  // what follows goes to init, not the kernel
    if (!w.empty() && word_name(w) == name) return true;
    i = j;
  }
  return false;
}
}  // namespace

std::string pvm_linux_words(const std::vector<uint8_t>& kernel, const std::string& cmdline, bool pvm_host) {
  if (!pvm_host) return "";
  if (const char* e = std::getenv("VIREO_PVM_KERNEL_WORDS"); e && std::string(e) == "none") return "";
  if (!is_linux_kernel(kernel)) return "";
  static const char* const kWords[] = {"cryptomgr.notests", "spec_rstack_overflow=off", "retbleed=off"};
  std::string out;
  for (const char* w : kWords) {
    if (cmdline_sets(cmdline, word_name(w))) continue;
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string host_kernel_cmdline(const std::vector<uint8_t>& kernel, const std::string& cmdline, bool pvm_host,
                                std::string* added) {
  std::string words = pvm_linux_words(kernel, cmdline, pvm_host);
  if (added) *added = words;
  if (words.empty()) return cmdline;
  // Before a "--": the words after it are init's.
  size_t dd = std::string::npos;
  for (size_t i = 0; (i = cmdline.find("--", i)) != std::string::npos; i += 2) {
    bool start = i == 0 || cmdline[i - 1] == ' ', end = i + 2 == cmdline.size() || cmdline[i + 2] == ' ';
    if (start && end) { dd = i; break; }
  }
  if (dd == std::string::npos) return cmdline.empty() ? words : cmdline + " " + words;
  return cmdline.substr(0, dd) + words + " " + cmdline.substr(dd);
}

BootResult load_kernel(const GuestMemory& mem, const RamLayout& ram, const KernelBootOptions& o) {
  auto k = read_file(o.kernel_path, "kernel");
  std::vector<uint8_t> initrd;
  if (!o.initrd_path.empty()) initrd = read_file(o.initrd_path, "initrd");
  ImageOptions io;
  io.name = "kernel '" + o.kernel_path + "'";
  if (!o.initrd_path.empty()) io.initrd_name = "initrd '" + o.initrd_path + "'";
  return load_kernel_image(mem, ram, k, initrd, o.cmdline, io);
}

BootResult load_flat(const GuestMemory& mem, const std::string& path, uint64_t addr) {
  auto b = read_file(path, "flat binary");
  if (b.empty()) throw BootError("flat binary '" + path + "' is empty");
  if (addr >= 0x100000) throw BootError("flat binaries start in real mode: the load address must be below 1 MiB");
  put(mem, addr, b.data(), b.size(), "flat binary '" + path + "'");
  BootResult r;
  r.info.format = "flat";
  r.info.load_start = addr;
  r.info.load_end = addr + b.size();
  r.cpu.mode = CpuInit::Mode::Real;
  r.cpu.real_cs = addr < 0x10000 ? 0 : uint16_t(addr >> 4);
  r.cpu.rip = addr - (uint64_t(r.cpu.real_cs) << 4);
  r.cpu.rsp = addr < 0x8000 ? 0xfffe : 0x7000;
  return r;
}

}  // namespace vireo::boot
