#include "devices/fw_cfg.h"

#include <cstring>
#include <string>
#include <vector>

#include "check.h"

using namespace vireo;

namespace {

struct Rig {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20, 0);
  GuestMemory mem;
  FwCfg fw{&mem};
  Rig() { mem.add_region(0, ram.size(), ram.data()); }
  void select(uint16_t key) {
    uint8_t b[2] = {uint8_t(key), uint8_t(key >> 8)};
    fw.write(FwCfg::kOffSelector, b);
  }
  uint8_t data() {
    uint8_t b;
    fw.read(FwCfg::kOffData, {&b, 1});
    return b;
  }
  std::vector<uint8_t> read_n(size_t n) {
    std::vector<uint8_t> v;
    for (size_t i = 0; i < n; i++) v.push_back(data());
    return v;
  }
  static void be32(uint8_t* p, uint32_t v) {
    p[0] = uint8_t(v >> 24);
    p[1] = uint8_t(v >> 16);
    p[2] = uint8_t(v >> 8);
    p[3] = uint8_t(v);
  }
  static uint32_t get_be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
  // Write a descriptor at `desc` and kick it the way SeaBIOS does (outl of the low half, BE).
  uint32_t dma(uint64_t desc, uint32_t control, uint32_t len, uint64_t addr) {
    be32(&ram[desc], control);
    be32(&ram[desc + 4], len);
    be32(&ram[desc + 8], uint32_t(addr >> 32));
    be32(&ram[desc + 12], uint32_t(addr));
    uint8_t hi[4], lo[4];
    be32(hi, uint32_t(desc >> 32));
    be32(lo, uint32_t(desc));
    fw.write(FwCfg::kOffDmaHigh, hi);
    fw.write(FwCfg::kOffDmaLow, lo);
    return get_be32(&ram[desc]);
  }
};

}  // namespace

TEST(signature_and_id_with_dma) {
  Rig r;
  r.select(FwCfg::kSignature);
  auto sig = r.read_n(4);
  CHECK(std::memcmp(sig.data(), "QEMU", 4) == 0);
  CHECK_EQ(r.data(), 0);  // past the end reads zero
  r.select(FwCfg::kId);
  auto id = r.read_n(4);
  CHECK_EQ(id[0], 3);  // traditional + DMA
  FwCfg nodma(nullptr);
  uint8_t k[2] = {1, 0};
  nodma.write(FwCfg::kOffSelector, k);
  uint8_t b;
  nodma.read(FwCfg::kOffData, {&b, 1});
  CHECK_EQ(b, 1);
}

TEST(dma_address_reads_signature) {
  Rig r;
  uint8_t b[8];
  r.fw.read(FwCfg::kOffDmaHigh, {b, 4});
  CHECK(std::memcmp(b, "QEMU", 4) == 0);
  r.fw.read(FwCfg::kOffDmaLow, {b, 4});
  CHECK(std::memcmp(b, " CFG", 4) == 0);
}

TEST(legacy_items_little_endian) {
  Rig r;
  r.fw.set_u16(FwCfg::kNbCpus, 4);
  r.fw.set_u64(FwCfg::kRamSize, 0x123456789ull);
  r.select(FwCfg::kNbCpus);
  CHECK_EQ(r.data(), 4);
  CHECK_EQ(r.data(), 0);
  r.select(FwCfg::kRamSize);
  auto v = r.read_n(8);
  CHECK_EQ(v[0], 0x89);
  CHECK_EQ(v[4], 0x01);
  // Absent key reads zero.
  r.select(0x1234);
  CHECK_EQ(r.data(), 0);
  // Selecting again rewinds.
  r.select(FwCfg::kNbCpus);
  CHECK_EQ(r.data(), 4);
}

TEST(file_directory_big_endian) {
  Rig r;
  uint16_t k1 = r.fw.add_file("etc/e820", std::vector<uint8_t>(40, 1));
  uint16_t k2 = r.fw.add_file("bootorder", {'a', 0});
  CHECK_EQ(k1, 0x20);
  CHECK_EQ(k2, 0x21);
  r.select(FwCfg::kFileDir);
  auto d = r.read_n(4 + 2 * 64);
  CHECK_EQ(Rig::get_be32(d.data()), 2u);
  CHECK_EQ(Rig::get_be32(d.data() + 4), 40u);
  CHECK_EQ(d[8], 0x00);
  CHECK_EQ(d[9], 0x20);
  CHECK(std::strcmp(reinterpret_cast<const char*>(d.data() + 12), "etc/e820") == 0);
  CHECK_EQ(Rig::get_be32(d.data() + 68), 2u);
  CHECK_EQ(d[73], 0x21);
  // Replacing keeps the key and updates the size.
  CHECK_EQ(r.fw.add_file("bootorder", {'a', 'b', 0}), 0x21);
  r.select(FwCfg::kFileDir);
  d = r.read_n(4 + 2 * 64);
  CHECK_EQ(Rig::get_be32(d.data()), 2u);
  CHECK_EQ(Rig::get_be32(d.data() + 68), 3u);
  r.select(k2);
  CHECK_EQ(r.data(), 'a');
}

TEST(dma_select_read_and_zero_fill) {
  Rig r;
  r.fw.add_file("x", {1, 2, 3});
  std::memset(&r.ram[0x2000], 0xee, 8);
  uint32_t ctl = r.dma(0x1000, (0x20u << 16) | FwCfg::kDmaSelect | FwCfg::kDmaRead, 5, 0x2000);
  CHECK_EQ(ctl, 0u);
  CHECK_EQ(r.ram[0x2000], 1);
  CHECK_EQ(r.ram[0x2002], 3);
  CHECK_EQ(r.ram[0x2003], 0);  // beyond the item: zero
  CHECK_EQ(r.ram[0x2004], 0);
  CHECK_EQ(r.ram[0x2005], 0xee);  // untouched past length
}

TEST(dma_skip_then_read_continues) {
  Rig r;
  r.fw.add_file("y", {10, 11, 12, 13});
  r.select(0x20);
  CHECK_EQ(r.dma(0x1000, FwCfg::kDmaSkip, 2, 0), 0u);
  CHECK_EQ(r.dma(0x1000, FwCfg::kDmaRead, 1, 0x3000), 0u);
  CHECK_EQ(r.ram[0x3000], 12);
  // The port stream shares the offset.
  CHECK_EQ(r.data(), 13);
}

TEST(dma_write_only_to_writable_files) {
  Rig r;
  r.fw.add_file("ro", {0, 0});
  r.fw.add_file("rw", {0, 0}, true);
  r.ram[0x4000] = 0x5a;
  r.ram[0x4001] = 0xa5;
  uint32_t ctl = r.dma(0x1000, (0x20u << 16) | FwCfg::kDmaSelect | FwCfg::kDmaWrite, 2, 0x4000);
  CHECK_EQ(ctl, FwCfg::kDmaError);
  CHECK_EQ((*r.fw.file("ro"))[0], 0);
  ctl = r.dma(0x1000, (0x21u << 16) | FwCfg::kDmaSelect | FwCfg::kDmaWrite, 2, 0x4000);
  CHECK_EQ(ctl, 0u);
  CHECK_EQ((*r.fw.file("rw"))[1], 0xa5);
  // Writing past the end is an error.
  ctl = r.dma(0x1000, (0x21u << 16) | FwCfg::kDmaSelect | FwCfg::kDmaWrite, 3, 0x4000);
  CHECK_EQ(ctl, FwCfg::kDmaError);
}

TEST(dma_bad_guest_address_sets_error) {
  Rig r;
  r.fw.add_file("z", {1});
  uint32_t ctl = r.dma(0x1000, (0x20u << 16) | FwCfg::kDmaSelect | FwCfg::kDmaRead, 16, 0x7fff0000ull);
  CHECK_EQ(ctl, FwCfg::kDmaError);
  // A huge length into valid RAM runs off the end: error, no crash.
  ctl = r.dma(0x1000, FwCfg::kDmaRead, 0xffffffffu, 0x8000);
  CHECK_EQ(ctl, FwCfg::kDmaError);
}

TEST(e820_bytes_layout) {
  auto b = fwcfg::e820_bytes({{0, 0x9fc00, fwcfg::kE820Ram}, {0x100000, 0x7f00000, fwcfg::kE820Ram}});
  CHECK_EQ(b.size(), size_t(40));
  CHECK_EQ(b[8], 0x00);
  CHECK_EQ(b[9], 0xfc);
  CHECK_EQ(b[10], 0x09);
  CHECK_EQ(b[16], 1);
  CHECK_EQ(b[20 + 2], 0x10);  // addr 0x100000
}

TEST(boot_paths_match_seabios_format) {
  CHECK_EQ(fwcfg::ide_path(1, 1, 0, 0), std::string("/pci@i0cf8/ide@1,1/drive@0/disk@0"));
  CHECK_EQ(fwcfg::ide_path(1, 1, 1, 1), std::string("/pci@i0cf8/ide@1,1/drive@1/disk@1"));
  CHECK_EQ(fwcfg::pci_device_path("ethernet", 3), std::string("/pci@i0cf8/ethernet@3"));
  CHECK_EQ(fwcfg::pci_device_path("scsi", 0x1a, 2), std::string("/pci@i0cf8/scsi@1a,2"));
  CHECK_EQ(fwcfg::floppy_path(1, 0, 0), std::string("/pci@i0cf8/isa@1/fdc@03f0/floppy@0"));
  auto b = fwcfg::bootorder_bytes({"/a", "/b"});
  CHECK_EQ(std::string(b.begin(), b.end()), std::string("/a\n/b", 5) + std::string(1, '\0'));
}

TEST(configure_seabios_defaults_skip_boot_menu) {
  Rig r;
  fwcfg::SeabiosConfig c;
  c.cpus = 2;
  c.max_cpus = 4;
  c.ram_size = 512ull << 20;
  c.e820 = {{0, 0x9fc00, fwcfg::kE820Ram}};
  c.boot_order = {fwcfg::ide_path(1, 1, 1, 0)};
  fwcfg::configure_seabios(r.fw, c);
  CHECK_EQ((*r.fw.file("etc/show-boot-menu"))[0], 0);
  CHECK_EQ((*r.fw.file("etc/boot-menu-wait"))[0], 0);
  CHECK_EQ((*r.fw.item(FwCfg::kBootMenu))[0], 0);
  CHECK_EQ((*r.fw.item(FwCfg::kMaxCpus))[0], 4);
  CHECK_EQ(r.fw.file("etc/e820")->size(), size_t(20));
  CHECK(r.fw.file("bootorder") != nullptr);
  CHECK(r.fw.file("etc/table-loader") == nullptr);  // SeaBIOS builds its own ACPI tables
  c.boot_menu = true;
  c.boot_menu_wait_ms = 5000;
  fwcfg::configure_seabios(r.fw, c);
  CHECK_EQ((*r.fw.file("etc/show-boot-menu"))[0], 1);
  auto w = *r.fw.file("etc/boot-menu-wait");
  CHECK_EQ(w[0] | (w[1] << 8), 5000);
}
