// Boot-parameter construction for every direct-boot format, without KVM.
#include "machine/boot.h"

#include <elf.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "check.h"
#include "machine/layout.h"

using namespace vireo;
using namespace vireo::boot;

namespace {
struct Ram {
  std::vector<uint8_t> buf;
  GuestMemory mem;
  explicit Ram(uint64_t size) : buf(size) { mem.add_region(0, size, buf.data()); }
  uint32_t u32(uint64_t a) const { uint32_t v; std::memcpy(&v, buf.data() + a, 4); return v; }
  uint64_t u64(uint64_t a) const { uint64_t v; std::memcpy(&v, buf.data() + a, 8); return v; }
  uint16_t u16(uint64_t a) const { uint16_t v; std::memcpy(&v, buf.data() + a, 2); return v; }
};
void w16(std::vector<uint8_t>& b, size_t o, uint16_t v) { std::memcpy(&b[o], &v, 2); }
void w32(std::vector<uint8_t>& b, size_t o, uint32_t v) { std::memcpy(&b[o], &v, 4); }

// A synthetic bzImage: 4 setup sectors + the boot sector, then the kernel payload.
std::vector<uint8_t> fake_bzimage(uint16_t version, size_t payload) {
  std::vector<uint8_t> k(5 * 512 + payload, 0);
  k[0x1f1] = 4;
  w16(k, 0x1fe, 0xAA55);
  k[0x201] = 0x66;  // jump: header ends at 0x202 + 0x66 = 0x268
  std::memcpy(&k[0x202], "HdrS", 4);
  w16(k, 0x206, version);
  k[0x211] = 0x01;                 // LOADED_HIGH
  w32(k, 0x22c, 0x37ffffff);       // initrd_addr_max
  w32(k, 0x238, 2047);             // cmdline_size
  for (size_t i = 0; i < payload; i++) k[5 * 512 + i] = uint8_t(i * 7);
  return k;
}
}  // namespace

TEST(e820_map_has_holes_and_high_ram) {
  auto m = e820_map(ram_layout(4ull << 30));
  CHECK_EQ(m.size(), size_t(5));
  CHECK_EQ(m[0].addr, uint64_t(0));
  CHECK_EQ(m[0].size, uint64_t(0x9fc00));
  CHECK_EQ(m[3].addr, uint64_t(0x100000));
  CHECK_EQ(m[3].addr + m[3].size, layout::kPciHoleStart);
  CHECK_EQ(m[4].addr, layout::k4GiB);
  CHECK_EQ(m[4].size, (4ull << 30) - layout::kPciHoleStart);
  CHECK_EQ(e820_map(ram_layout(256 << 20)).size(), size_t(4));
}

TEST(bzimage_boot_params) {
  Ram ram(64 << 20);
  auto k = fake_bzimage(0x020f, 8192);
  std::vector<uint8_t> initrd(10000, 0xab);
  auto r = load_kernel_image(ram.mem, ram_layout(64 << 20), k, initrd, "console=ttyS0 root=/dev/vda");
  CHECK_EQ(r.info.format, std::string("bzimage"));
  CHECK(r.cpu.mode == CpuInit::Mode::Protected32);
  CHECK_EQ(r.cpu.rip, uint64_t(0x100000));
  CHECK_EQ(r.cpu.esi, uint32_t(layout::kZeroPage));
  const uint64_t zp = layout::kZeroPage;
  CHECK_EQ(ram.u16(zp + 0x1fe), uint16_t(0xAA55));             // setup header copied
  CHECK_EQ(std::memcmp(&ram.buf[zp + 0x202], "HdrS", 4), 0);
  CHECK_EQ(ram.buf[zp + 0x210], uint8_t(0xff));                 // type_of_loader
  CHECK_EQ(ram.u32(zp + 0x228), uint32_t(layout::kCmdline));   // cmd_line_ptr
  CHECK_EQ(std::string((char*)&ram.buf[layout::kCmdline]), std::string("console=ttyS0 root=/dev/vda"));
  uint32_t rd = ram.u32(zp + 0x218), rds = ram.u32(zp + 0x21c);
  CHECK_EQ(rds, uint32_t(10000));
  CHECK_EQ(rd % 4096, uint32_t(0));
  CHECK(rd + rds <= (64u << 20));
  CHECK_EQ(ram.buf[rd], uint8_t(0xab));
  CHECK_EQ(ram.buf[zp + 0x1e8], uint8_t(4));                    // e820 entries
  CHECK_EQ(ram.u64(zp + 0x2d0 + 3 * 20), uint64_t(0x100000));
  CHECK_EQ(ram.u32(zp + 0x2d0 + 3 * 20 + 16), uint32_t(1));
  CHECK_EQ(ram.buf[0x100000 + 5], uint8_t(35));                 // payload at 1 MiB
  CHECK_EQ(ram.u64(layout::kBootGdt + 16), uint64_t(0x00cf9a000000ffffull));
}

TEST(bzimage_rejects_old_protocol_and_long_cmdline) {
  Ram ram(64 << 20);
  try {
    load_kernel_image(ram.mem, ram_layout(64 << 20), fake_bzimage(0x0201, 1024), {}, "", "old");
    CHECK(false);
  } catch (BootError& e) {
    CHECK(std::string(e.what()).find("too old") != std::string::npos);
  }
  try {
    load_kernel_image(ram.mem, ram_layout(64 << 20), fake_bzimage(0x020f, 1024), {}, std::string(5000, 'x'), "k");
    CHECK(false);
  } catch (BootError& e) {
    CHECK(std::string(e.what()).find("command line is too long") != std::string::npos);
  }
}

TEST(pvh_start_info) {
  // ELF64 with one PT_LOAD at 16 MiB and a PT_NOTE holding XEN_ELFNOTE_PHYS32_ENTRY.
  std::vector<uint8_t> k(0x2000, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = 0xffffffff81000000ull;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;
  std::memcpy(&k[0], &eh, sizeof eh);
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_offset = 0x1000;
  load.p_paddr = 0x1000000;
  load.p_filesz = 0x100;
  load.p_memsz = 0x800;
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = 0x800;
  note.p_filesz = 12 + 4 + 4;
  std::memcpy(&k[sizeof eh], &load, sizeof load);
  std::memcpy(&k[sizeof eh + sizeof load], &note, sizeof note);
  w32(k, 0x800, 4);
  w32(k, 0x804, 4);
  w32(k, 0x808, 18);
  std::memcpy(&k[0x80c], "Xen", 4);
  w32(k, 0x810, 0x1000040);
  k[0x1000] = 0xf4;
  Ram ram(64 << 20);
  auto r = load_kernel_image(ram.mem, ram_layout(64 << 20), k, std::vector<uint8_t>(3000, 1), "quiet");
  CHECK_EQ(r.info.format, std::string("pvh"));
  CHECK_EQ(r.cpu.rip, uint64_t(0x1000040));
  CHECK_EQ(r.cpu.ebx, uint32_t(layout::kPvhStartInfo));
  const uint64_t si = layout::kPvhStartInfo;
  CHECK_EQ(ram.u32(si), uint32_t(0x336ec578));
  CHECK_EQ(ram.u32(si + 4), uint32_t(1));
  CHECK_EQ(ram.u32(si + 12), uint32_t(1));  // nr_modules
  uint64_t modlist = ram.u64(si + 16);
  CHECK_EQ(ram.u64(modlist + 8), uint64_t(3000));
  CHECK_EQ(ram.buf[ram.u64(modlist)], uint8_t(1));
  CHECK_EQ(ram.u64(si + 24), uint64_t(layout::kCmdline));
  CHECK_EQ(ram.u32(si + 48), uint32_t(4));  // memmap entries
  CHECK_EQ(ram.buf[0x1000000], uint8_t(0xf4));
  CHECK_EQ(ram.buf[0x1000100], uint8_t(0));  // bss zeroed
}

TEST(multiboot_aout_kludge_and_info) {
  // Header at file offset 0x20, loaded so that the header lands at 0x200020.
  std::vector<uint8_t> k(0x400, 0x90);
  w32(k, 0x20, 0x1BADB002);
  w32(k, 0x24, 0x00010000);
  w32(k, 0x28, uint32_t(-(0x1BADB002 + 0x00010000)));
  w32(k, 0x2c, 0x200020);  // header_addr
  w32(k, 0x30, 0x200000);  // load_addr
  w32(k, 0x34, 0x200400);  // load_end
  w32(k, 0x38, 0x201000);  // bss_end
  w32(k, 0x3c, 0x200040);  // entry
  Ram ram(32 << 20);
  std::memset(&ram.buf[0x200400], 0xee, 0xc00);
  auto r = load_kernel_image(ram.mem, ram_layout(32 << 20), k, std::vector<uint8_t>(100, 7), "hello");
  CHECK_EQ(r.info.format, std::string("multiboot-aout"));
  CHECK_EQ(r.cpu.rip, uint64_t(0x200040));
  CHECK_EQ(r.cpu.eax, uint32_t(0x2BADB002));
  CHECK_EQ(ram.buf[0x200000], uint8_t(0x90));
  CHECK_EQ(ram.buf[0x200500], uint8_t(0));  // bss cleared
  uint64_t mbi = r.cpu.ebx;
  CHECK_EQ(ram.u32(mbi) & 0x4d, uint32_t(0x4d));  // mem, cmdline, mods, mmap
  CHECK_EQ(ram.u32(mbi + 4), uint32_t(639));
  CHECK_EQ(ram.u32(mbi + 8), uint32_t((32 << 10) - 1024));
  CHECK_EQ(ram.u32(mbi + 20), uint32_t(1));  // one module: the initrd
  uint32_t mods = ram.u32(mbi + 24);
  CHECK_EQ(ram.u32(mods + 4) - ram.u32(mods), uint32_t(100));
  CHECK_EQ(ram.u32(mods) % 4096, uint32_t(0));
  CHECK(ram.u32(mods) >= 0x201000);
}

TEST(garbage_is_not_a_kernel) {
  Ram ram(32 << 20);
  std::vector<uint8_t> junk(4096, 0x5a);
  try {
    load_kernel_image(ram.mem, ram_layout(32 << 20), junk, {}, "", "kernel 'junk.bin'");
    CHECK(false);
  } catch (BootError& e) {
    std::string w = e.what();
    CHECK(w.find("junk.bin") != std::string::npos);
    CHECK(w.find("not a kernel Vireo can boot") != std::string::npos);
  }
}

TEST(kernel_larger_than_ram_is_refused) {
  Ram ram(2 << 20);
  auto k = fake_bzimage(0x020f, 3 << 20);
  try {
    load_kernel_image(ram.mem, ram_layout(2 << 20), k, {}, "", "big");
    CHECK(false);
  } catch (BootError& e) {
    CHECK(std::string(e.what()).find("does not fit in guest RAM") != std::string::npos);
  }
}

// ---- Bad input (issue 15 finding 5, issue 9): a clear error naming the file, never a crash ----
namespace {
// An ELF64 file with one PT_LOAD program header; the caller breaks one field.
std::vector<uint8_t> elf64_one_load(Elf64_Phdr ph, size_t file_size = 0x2000) {
  std::vector<uint8_t> k(file_size, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;
  std::memcpy(&k[0], &eh, sizeof eh);
  std::memcpy(&k[sizeof eh], &ph, sizeof ph);
  // A PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), so the file is a PVH kernel.
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = 0x800;
  note.p_filesz = 12 + 4 + 4;
  std::memcpy(&k[sizeof eh + sizeof ph], &note, sizeof note);
  w32(k, 0x800, 4);
  w32(k, 0x804, 4);
  w32(k, 0x808, 18);
  std::memcpy(&k[0x80c], "Xen", 4);
  w32(k, 0x810, 0x100000);
  return k;
}
// Loads `k` and returns the BootError's message ("" when it loaded).
std::string load_error(const std::vector<uint8_t>& k, const std::vector<uint8_t>& initrd = {}, uint64_t ram_size = 32 << 20,
                       const std::string& initrd_name = "initrd '/tmp/rd.img'") {
  Ram ram(ram_size);
  try {
    ImageOptions o;
    o.name = "kernel '/tmp/bad.elf'";
    o.initrd_name = initrd_name;
    load_kernel_image(ram.mem, ram_layout(ram_size), k, initrd, "", o);
  } catch (BootError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(elf_segment_offset_plus_size_that_wraps_is_refused) {
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0xffffffffffffff00ull;  // + p_filesz wraps to 0x100, inside the file
  ph.p_filesz = 0x200;
  ph.p_memsz = 0x200;
  ph.p_paddr = 0x100000;
  std::string e = load_error(elf64_one_load(ph));
  CHECK(e.find("/tmp/bad.elf") != std::string::npos);
  CHECK(e.find("outside the file") != std::string::npos);
}

TEST(elf_program_header_offset_that_wraps_is_refused) {
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_filesz = ph.p_memsz = 0x100;
  ph.p_paddr = 0x100000;
  auto k = elf64_one_load(ph);
  uint64_t phoff = 0xffffffffffffffe0ull;  // + sizeof(Elf64_Phdr) wraps
  std::memcpy(&k[offsetof(Elf64_Ehdr, e_phoff)], &phoff, 8);
  std::string e = load_error(k);
  CHECK(e.find("/tmp/bad.elf") != std::string::npos);
  CHECK(e.find("program headers") != std::string::npos);
}

TEST(truncated_elf_is_refused) {
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_filesz = ph.p_memsz = 0x100;
  ph.p_paddr = 0x100000;
  auto k = elf64_one_load(ph);
  k.resize(0x1080);  // the segment's bytes are cut off
  std::string e = load_error(k);
  CHECK(e.find("/tmp/bad.elf") != std::string::npos);
  CHECK(e.find("outside the file") != std::string::npos);
  k.resize(100);  // the program headers themselves are cut off
  e = load_error(k);
  CHECK(e.find("/tmp/bad.elf") != std::string::npos);
  CHECK(e.find("truncated") != std::string::npos);
}

TEST(elf_segment_outside_ram_is_refused) {
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_filesz = 0x100;
  ph.p_memsz = 0x100;
  ph.p_paddr = 0x40000000;  // 1 GiB, in a 32 MiB machine
  std::string e = load_error(elf64_one_load(ph));
  CHECK(e.find("/tmp/bad.elf") != std::string::npos);
  CHECK(e.find("does not fit in guest RAM") != std::string::npos);
  ph.p_paddr = 0xfffffffffffff000ull;  // paddr + memsz wraps
  ph.p_memsz = 0x2000;
  e = load_error(elf64_one_load(ph));
  CHECK(e.find("/tmp/bad.elf") != std::string::npos);
  CHECK(e.find("does not fit in guest RAM") != std::string::npos);
}

TEST(initrd_bigger_than_ram_names_the_initrd) {
  std::vector<uint8_t> big(40 << 20, 1);
  std::string e = load_error(fake_bzimage(0x020f, 4096), big);
  CHECK(e.find("/tmp/rd.img") != std::string::npos);
  CHECK(e.find("does not fit") != std::string::npos);
  // The same for a multiboot kernel (the initrd is its module).
  std::vector<uint8_t> k(0x400, 0x90);
  w32(k, 0x20, 0x1BADB002);
  w32(k, 0x24, 0x00010000);
  w32(k, 0x28, uint32_t(-(0x1BADB002 + 0x00010000)));
  w32(k, 0x2c, 0x200020);
  w32(k, 0x30, 0x200000);
  w32(k, 0x34, 0x200400);
  w32(k, 0x38, 0);
  w32(k, 0x3c, 0x200040);
  e = load_error(k, big);
  CHECK(e.find("/tmp/rd.img") != std::string::npos);
  CHECK(e.find("does not fit") != std::string::npos);
}

// ---- Words Vireo adds to a Linux command line on kvm_pvm hosts (issue 10) ----
TEST(pvm_hosts_add_their_words_to_linux_command_lines_only) {
  const std::vector<uint8_t> bz = fake_bzimage(0x020f, 4096);
  // A PVH vmlinux: the entry note plus XEN_ELFNOTE_GUEST_OS "linux", as Linux's
  // own ELF notes carry it.
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_paddr = 0x100000;
  ph.p_filesz = 0x100;
  ph.p_memsz = 0x100;
  std::vector<uint8_t> pvh = elf64_one_load(ph);
  CHECK(!is_linux_kernel(pvh));  // a PVH kernel that does not say it is Linux
  Elf64_Phdr note{};
  std::memcpy(&note, &pvh[sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr)], sizeof note);
  note.p_filesz = 20 + 12 + 4 + 8;
  std::memcpy(&pvh[sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr)], &note, sizeof note);
  w32(pvh, 0x814, 4);
  w32(pvh, 0x818, 6);
  w32(pvh, 0x81c, 6);
  std::memcpy(&pvh[0x820], "Xen", 4);
  std::memcpy(&pvh[0x824], "linux", 6);
  CHECK(is_linux_kernel(pvh));
  CHECK(is_linux_kernel(bz));
  // A multiboot kernel and garbage are not Linux.
  std::vector<uint8_t> mb(0x400, 0x90);
  w32(mb, 0x20, 0x1BADB002);
  w32(mb, 0x24, 0);
  w32(mb, 0x28, uint32_t(-0x1BADB002));
  CHECK(!is_linux_kernel(mb));
  CHECK(!is_linux_kernel(std::vector<uint8_t>(4096, 0x41)));

  CHECK_EQ(host_kernel_cmdline(bz, "console=ttyS0", false), std::string("console=ttyS0"));  // other hosts: untouched
  std::string added;
  const std::string words = "cryptomgr.notests spec_rstack_overflow=off retbleed=off";
  CHECK_EQ(host_kernel_cmdline(bz, "console=ttyS0", true, &added), "console=ttyS0 " + words);
  CHECK_EQ(added, words);
  CHECK_EQ(host_kernel_cmdline(pvh, "", true), words);
  CHECK_EQ(host_kernel_cmdline(mb, "x", true, &added), std::string("x"));
  CHECK_EQ(added, std::string(""));
  // The user's own setting wins, with or without a value; words after "--" are init's.
  CHECK_EQ(host_kernel_cmdline(bz, "cryptomgr.notests=0 quiet", true),
           std::string("cryptomgr.notests=0 quiet spec_rstack_overflow=off retbleed=off"));
  CHECK_EQ(host_kernel_cmdline(bz, "retbleed=auto spec_rstack_overflow", true),
           std::string("retbleed=auto spec_rstack_overflow cryptomgr.notests"));
  CHECK_EQ(host_kernel_cmdline(bz, "quiet -- cryptomgr.notests", true), "quiet " + words + " -- cryptomgr.notests");
  CHECK_EQ(host_kernel_cmdline(bz, "-- single", true), words + " -- single");
  ::setenv("VIREO_PVM_KERNEL_WORDS", "none", 1);
  CHECK_EQ(host_kernel_cmdline(bz, "console=ttyS0", true), std::string("console=ttyS0"));
  ::unsetenv("VIREO_PVM_KERNEL_WORDS");
}
