// PIIX3 IDE + ATA disk driven through its ports without a vCPU: IDENTIFY,
// PIO sectors (LBA28, LBA48, CHS, MULTIPLE), bus-master DMA via PRD tables,
// error paths, SRST and nIEN.
#include <cstring>
#include <string>

#include "check.h"
#include "block/counting.h"
#include "devices/ide/piix_ide.h"

using namespace vireo;
using namespace vireo::ide;

namespace {

struct Rig {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20, 0);
  GuestMemory mem;
  int irq_edges[2] = {0, 0};
  bool irq_level[2] = {false, false};
  std::shared_ptr<PiixIde> ide;
  Rig() {
    mem.add_region(0, ram.size(), ram.data());
    ide = std::make_shared<PiixIde>(&mem, IrqLine([this](bool l) { note(0, l); }),
                                    IrqLine([this](bool l) { note(1, l); }));
    ide->config_write(pci::kCommand, 2, pci::kCmdIo | pci::kCmdMaster);
  }
  void note(int c, bool l) {
    if (l && !irq_level[c]) irq_edges[c]++;
    irq_level[c] = l;
  }
  IdeChannel& ch(int c = 0) { return *ide->channel(c); }
  uint8_t in(int reg, int c = 0) { return uint8_t(ch(c).cmd_read(reg, 1)); }
  void out(int reg, uint8_t v, int c = 0) { ch(c).cmd_write(reg, v, 1); }
  uint16_t inw(int c = 0) { return uint16_t(ch(c).cmd_read(0, 2)); }
  void outw(uint16_t v, int c = 0) { ch(c).cmd_write(0, v, 2); }
  void bm(int off, uint8_t v) {
    uint8_t b = v;
    ide->bmdma()->write(off, std::span<const uint8_t>(&b, 1));
  }
  uint8_t bm_in(int off) {
    uint8_t b;
    ide->bmdma()->read(off, std::span<uint8_t>(&b, 1));
    return b;
  }
  void bm_prd(int c, uint32_t addr) {
    uint8_t b[4] = {uint8_t(addr), uint8_t(addr >> 8), uint8_t(addr >> 16), uint8_t(addr >> 24)};
    ide->bmdma()->write(c * 8 + 4, b);
  }
  void prd(uint32_t at, uint32_t addr, uint32_t len, bool eot) {
    uint32_t e[2] = {addr, (len & 0xffff) | (eot ? 0x80000000u : 0)};
    std::memcpy(&ram[at], e, 8);
  }
  void lba28(uint32_t lba, uint8_t count, int unit = 0) {
    out(6, uint8_t(0xe0 | (unit << 4) | ((lba >> 24) & 0xf)));
    out(2, count);
    out(3, uint8_t(lba));
    out(4, uint8_t(lba >> 8));
    out(5, uint8_t(lba >> 16));
  }
  void lba48(uint64_t lba, uint16_t count) {
    out(6, 0x40);
    out(2, uint8_t(count >> 8));
    out(3, uint8_t(lba >> 24));
    out(4, uint8_t(lba >> 32));
    out(5, uint8_t(lba >> 40));
    out(2, uint8_t(count));
    out(3, uint8_t(lba));
    out(4, uint8_t(lba >> 8));
    out(5, uint8_t(lba >> 16));
  }
  std::vector<uint8_t> read_block(size_t bytes) {
    std::vector<uint8_t> v(bytes);
    for (size_t i = 0; i < bytes; i += 2) {
      uint16_t w = inw();
      v[i] = uint8_t(w);
      v[i + 1] = uint8_t(w >> 8);
    }
    return v;
  }
};

std::shared_ptr<block::MemoryBackend> patterned_disk(uint64_t size) {
  auto d = std::make_shared<block::MemoryBackend>(size);
  for (size_t i = 0; i < d->data.size(); i++) d->data[i] = uint8_t((i / 512) * 7 + i);
  return d;
}

std::string ata_string(const std::vector<uint8_t>& id, int word, int words) {
  std::string s;
  for (int i = 0; i < words * 2; i++) s += char(id[size_t(word) * 2 + (i ^ 1)]);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}
uint16_t word(const std::vector<uint8_t>& id, int w) { return uint16_t(id[2 * w] | (id[2 * w + 1] << 8)); }

// A huge sparse disk whose bytes are a function of their offset.
class PatternBackend : public block::BlockBackend {
public:
  uint64_t size() const override { return uint64_t(1) << 50; }
  bool read_only() const override { return false; }
  int pread(void* buf, uint64_t len, uint64_t off) override {
    for (uint64_t i = 0; i < len; i++) static_cast<uint8_t*>(buf)[i] = byte_at(off + i);
    return 0;
  }
  int pwrite(const void*, uint64_t len, uint64_t off) override {
    last_write = off;
    return 0;
  }
  int flush() override { return 0; }
  std::string format() const override { return "pattern"; }
  static uint8_t byte_at(uint64_t off) { return uint8_t((off >> 9) ^ (off >> 17) ^ (off >> 33) ^ off); }
  uint64_t last_write = ~0ull;
};

}  // namespace

TEST(identify_device_fields) {
  Rig r;
  r.ch().attach_disk(0, patterned_disk(64 << 20));
  r.out(6, 0xa0);
  r.out(7, 0xec);
  CHECK_EQ(r.ch().ctl_read(), uint8_t(0x58));
  CHECK(r.irq_level[0]);
  auto id = r.read_block(512);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  CHECK(!r.irq_level[0]);  // status read acknowledges
  CHECK_EQ(word(id, 0), uint16_t(0x0040));
  CHECK_EQ(ata_string(id, 27, 20), std::string("VIREO HARDDISK"));
  CHECK(!ata_string(id, 10, 10).empty());
  CHECK_EQ(word(id, 60) | (word(id, 61) << 16), 131072);
  CHECK_EQ(word(id, 100), uint16_t(0));
  CHECK_EQ(word(id, 101), uint16_t(2));
  CHECK(word(id, 49) & 0x0300);        // LBA + DMA
  CHECK(word(id, 83) & (1 << 10));     // LBA48
  CHECK_EQ(word(id, 88) & 0x3f, 0x3f); // UDMA modes
  CHECK_EQ(word(id, 63) & 0x07, 0x07); // MWDMA modes
  CHECK_EQ(word(id, 47) & 0xff, 16);
  CHECK_EQ(word(id, 1), uint16_t(130));  // 131072 / (16*63)
}

TEST(pio_read_and_write_sectors_lba28) {
  Rig r;
  auto disk = patterned_disk(1 << 20);
  r.ch().attach_disk(0, disk);
  r.lba28(5, 2);
  r.out(7, 0x20);
  CHECK_EQ(r.in(7), uint8_t(0x58));
  auto a = r.read_block(512);
  CHECK(std::memcmp(a.data(), disk->data.data() + 5 * 512, 512) == 0);
  CHECK_EQ(r.ch().ctl_read() & 0x08, 0x08);  // second block ready
  auto b = r.read_block(512);
  CHECK(std::memcmp(b.data(), disk->data.data() + 6 * 512, 512) == 0);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  // 32-bit data port reads work too.
  r.lba28(9, 1);
  r.out(7, 0x20);
  uint32_t first = r.ch().cmd_read(0, 4);
  uint32_t want;
  std::memcpy(&want, disk->data.data() + 9 * 512, 4);
  CHECK_EQ(first, want);
  // WRITE SECTORS: first block without an interrupt, completion with one.
  r.lba28(10, 1);
  r.in(7);
  int edges = r.irq_edges[0];
  r.out(7, 0x30);
  CHECK_EQ(r.ch().ctl_read(), uint8_t(0x58));
  CHECK_EQ(r.irq_edges[0], edges);
  for (int i = 0; i < 256; i++) r.outw(uint16_t(0xbe00 + i));
  CHECK_EQ(r.ch().ctl_read(), uint8_t(0x50));
  CHECK_EQ(r.irq_edges[0], edges + 1);
  CHECK_EQ(disk->data[10 * 512 + 0], uint8_t(0x00));
  CHECK_EQ(disk->data[10 * 512 + 1], uint8_t(0xbe));
  CHECK_EQ(disk->data[10 * 512 + 511], uint8_t(0xbe));
  CHECK_EQ(disk->data[10 * 512 + 510], uint8_t(0xff));
  // FLUSH CACHE reaches the backend.
  r.out(7, 0xe7);
  CHECK_EQ(disk->flushes, 1);
  CHECK_EQ(r.in(7), uint8_t(0x50));
}

TEST(lba48_read_far_sector_and_hob_readback) {
  Rig r;
  auto disk = std::make_shared<PatternBackend>();
  r.ch().attach_disk(0, disk);
  uint64_t lba = 0x123456789aull;
  r.lba48(lba, 1);
  r.ch().ctl_write(kCtlHob);
  CHECK_EQ(r.in(3), uint8_t(0x34));  // previous write: LBA bits 24-31
  r.ch().ctl_write(0);
  CHECK_EQ(r.in(3), uint8_t(0x9a));
  r.out(7, 0x24);  // READ SECTORS EXT
  CHECK_EQ(r.in(7), uint8_t(0x58));
  auto a = r.read_block(512);
  for (int i = 0; i < 512; i += 37) CHECK_EQ(a[i], PatternBackend::byte_at(lba * 512 + i));
  CHECK_EQ(r.in(7), uint8_t(0x50));
  // IDENTIFY reports the LBA28 limit and the full 48-bit capacity.
  r.out(7, 0xec);
  auto id = r.read_block(512);
  CHECK_EQ(word(id, 60) | (word(id, 61) << 16), 0x0fffffff);
  uint64_t cap = 0;
  for (int i = 0; i < 4; i++) cap |= uint64_t(word(id, 100 + i)) << (16 * i);
  CHECK_EQ(cap, (uint64_t(1) << 50) / 512);
  // WRITE SECTORS EXT lands at the same offset.
  r.lba48(lba, 1);
  r.out(7, 0x34);
  for (int i = 0; i < 256; i++) r.outw(0);
  CHECK_EQ(disk->last_write, lba * 512);
}

TEST(read_write_multiple_blocks) {
  Rig r;
  auto disk = patterned_disk(1 << 20);
  r.ch().attach_disk(0, disk);
  r.out(6, 0xe0);
  r.out(2, 3);
  r.out(7, 0xc6);  // SET MULTIPLE 3: not a power of two
  CHECK_EQ(r.in(7), uint8_t(0x51));
  CHECK_EQ(r.in(1), uint8_t(0x04));
  r.out(2, 4);
  r.out(7, 0xc6);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  int edges = r.irq_edges[0];
  r.lba28(0, 8);
  r.out(7, 0xc4);  // READ MULTIPLE: two blocks of 4 sectors, one interrupt each
  CHECK_EQ(r.in(7), uint8_t(0x58));  // the driver acknowledges before draining
  auto a = r.read_block(4 * 512);
  CHECK_EQ(r.in(7), uint8_t(0x58));
  auto b = r.read_block(4 * 512);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  CHECK_EQ(r.irq_edges[0], edges + 2);
  CHECK(std::memcmp(b.data(), disk->data.data() + 4 * 512, 4 * 512) == 0);
  r.lba28(20, 4);
  r.out(7, 0xc5);  // WRITE MULTIPLE: one block of 4
  for (int i = 0; i < 4 * 256; i++) r.outw(0x1111);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  CHECK_EQ(disk->data[23 * 512 + 511], uint8_t(0x11));
  CHECK_EQ(disk->data[24 * 512], uint8_t((24 * 7 + 24 * 512) & 0xff));
}

TEST(chs_addressing_after_initialize_device_parameters) {
  Rig r;
  auto disk = patterned_disk(8 << 20);
  r.ch().attach_disk(0, disk);
  r.out(6, 0xa0 | 15);  // 16 heads
  r.out(2, 63);
  r.out(7, 0x91);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  // C=1 H=2 S=3 -> (1*16+2)*63+2 = 1136
  r.out(6, 0xa0 | 2);
  r.out(2, 1);
  r.out(3, 3);
  r.out(4, 1);
  r.out(5, 0);
  r.out(7, 0x20);
  auto a = r.read_block(512);
  CHECK(std::memcmp(a.data(), disk->data.data() + 1136 * 512, 512) == 0);
  // Sector 0 does not exist in CHS.
  r.out(3, 0);
  r.out(7, 0x20);
  CHECK_EQ(r.in(7), uint8_t(0x51));
  CHECK_EQ(r.in(1), kErrIdnf);
}

TEST(bus_master_dma_read_and_write) {
  Rig r;
  auto disk = patterned_disk(1 << 20);
  r.ch().attach_disk(0, disk);
  r.prd(0x1000, 0x2000, 512, false);
  r.prd(0x1008, 0x3000, 1024, true);
  r.bm_prd(0, 0x1000);
  r.bm(0, kBmCmdToMemory);
  r.lba28(3, 3);
  r.out(7, 0xc8);  // READ DMA: waits for the start bit
  CHECK_EQ(r.ch().ctl_read() & 0x08, 0x08);
  CHECK_EQ(r.ram[0x2000], uint8_t(0));
  r.bm(0, kBmCmdToMemory | kBmCmdStart);
  CHECK(std::memcmp(&r.ram[0x2000], disk->data.data() + 3 * 512, 512) == 0);
  CHECK(std::memcmp(&r.ram[0x3000], disk->data.data() + 4 * 512, 1024) == 0);
  CHECK_EQ(r.bm_in(2) & (kBmStIrq | kBmStActive | kBmStError), kBmStIrq);
  CHECK(r.irq_level[0]);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  r.bm(2, kBmStIrq);  // write-one-to-clear
  CHECK_EQ(r.bm_in(2) & kBmStIrq, 0);
  r.bm(0, 0);
  // WRITE DMA with the start bit set first.
  std::memset(&r.ram[0x4000], 0xa5, 512);
  r.prd(0x1100, 0x4000, 512, true);
  r.bm_prd(0, 0x1100);
  r.bm(0, kBmCmdStart);
  r.lba28(50, 1);
  r.out(7, 0xca);
  CHECK_EQ(disk->data[50 * 512 + 100], uint8_t(0xa5));
  CHECK_EQ(r.in(7), uint8_t(0x50));
  CHECK_EQ(r.bm_in(2) & kBmStActive, 0);
  // READ DMA EXT with a PRD table too short: bus-master error and ABRT.
  r.bm(0, 0);
  r.prd(0x1200, 0x5000, 512, true);
  r.bm_prd(0, 0x1200);
  r.bm(0, kBmCmdToMemory | kBmCmdStart);
  r.lba48(0, 2);
  r.out(7, 0x25);
  CHECK(r.bm_in(2) & kBmStError);
  CHECK_EQ(r.in(7) & 0x01, 0x01);
}

TEST(dma_waits_for_pci_bus_master_enable) {
  Rig r;
  auto disk = patterned_disk(1 << 20);
  r.ch().attach_disk(0, disk);
  r.ide->config_write(pci::kCommand, 2, pci::kCmdIo);
  r.prd(0x1000, 0x2000, 512, true);
  r.bm_prd(0, 0x1000);
  r.lba28(1, 1);
  r.out(7, 0xc8);
  r.bm(0, kBmCmdToMemory | kBmCmdStart);
  CHECK_EQ(r.ram[0x2000 + 1], uint8_t(0));
  CHECK_EQ(r.ch().ctl_read() & 0x08, 0x08);
}

TEST(unknown_command_aborts_and_errors_latch) {
  Rig r;
  r.ch().attach_disk(0, patterned_disk(1 << 20));
  r.out(6, 0xa0);
  r.out(7, 0xff);
  CHECK_EQ(r.ch().ctl_read(), uint8_t(0x51));
  CHECK_EQ(r.in(1), kErrAbrt);
  CHECK(r.irq_level[0]);
  // IDENTIFY PACKET DEVICE on a disk also aborts.
  r.out(7, 0xa1);
  CHECK_EQ(r.in(7), uint8_t(0x51));
  // Out-of-range LBA: IDNF.
  r.lba28(4096, 1);
  r.out(7, 0x20);
  CHECK_EQ(r.in(1), kErrIdnf);
  // Write to a read-only disk aborts.
  Rig ro;
  ro.ch().attach_disk(0, std::make_shared<block::MemoryBackend>(1 << 20, true));
  ro.lba28(0, 1);
  ro.out(7, 0x30);
  CHECK_EQ(ro.in(7), uint8_t(0x51));
}

TEST(power_features_and_stubs) {
  Rig r;
  r.ch().attach_disk(0, patterned_disk(1 << 20));
  r.out(6, 0xa0);
  r.out(7, 0xe0);  // STANDBY IMMEDIATE
  r.out(7, 0xe5);
  CHECK_EQ(r.in(2), uint8_t(0x00));
  r.out(7, 0xe1);  // IDLE IMMEDIATE
  r.out(7, 0xe5);
  CHECK_EQ(r.in(2), uint8_t(0xff));
  CHECK_EQ(r.in(7), uint8_t(0x50));
  r.out(1, 0x03);
  r.out(2, 0x42);  // UDMA 2
  r.out(7, 0xef);
  CHECK_EQ(r.in(7), uint8_t(0x50));
  r.out(7, 0xec);
  auto id = r.read_block(512);
  CHECK_EQ(word(id, 88), uint16_t(0x043f));
  r.out(1, 0x03);
  r.out(2, 0x50);  // nonsense mode
  r.out(7, 0xef);
  CHECK_EQ(r.in(7), uint8_t(0x51));
  r.out(1, 0x82);  // write cache off
  r.out(7, 0xef);
  r.out(7, 0xec);
  id = r.read_block(512);
  CHECK_EQ(word(id, 85) & 0x20, 0);
  r.out(7, 0x10);  // RECALIBRATE
  CHECK_EQ(r.in(7), uint8_t(0x50));
  r.lba28(7, 1);
  r.out(7, 0x40);  // READ VERIFY
  CHECK_EQ(r.in(7), uint8_t(0x50));
  r.out(7, 0xf8);  // READ NATIVE MAX ADDRESS
  CHECK_EQ(r.in(3), uint8_t(0xff));
  CHECK_EQ(r.in(4), uint8_t(0x07));
}

TEST(srst_signature_and_nien) {
  Rig r;
  r.ch().attach_disk(0, patterned_disk(1 << 20));
  r.ch().attach_cdrom(1, nullptr);
  r.out(6, 0xa0);
  r.out(2, 0x55);
  r.ch().ctl_write(kCtlSrst);
  CHECK_EQ(r.ch().ctl_read() & kStBsy, kStBsy);
  r.ch().ctl_write(0);
  CHECK_EQ(r.ch().ctl_read(), uint8_t(0x50));
  CHECK_EQ(r.in(2), uint8_t(1));
  CHECK_EQ(r.in(3), uint8_t(1));
  CHECK_EQ(r.in(1), uint8_t(1));
  r.out(6, 0xb0);  // slave: packet signature
  CHECK_EQ(r.in(4), uint8_t(0x14));
  CHECK_EQ(r.in(5), uint8_t(0xeb));
  CHECK_EQ(r.in(6), uint8_t(0xb0));
  // nIEN keeps INTRQ low; clearing it delivers the pending interrupt.
  r.out(6, 0xa0);
  r.ch().ctl_write(kCtlNien);
  r.out(7, 0xe7);
  CHECK(!r.irq_level[0]);
  r.ch().ctl_write(0);
  CHECK(r.irq_level[0]);
}

TEST(absent_devices_read_as_zero) {
  Rig r;
  // Secondary channel is empty: the 0x55/0xaa probe does not read back.
  r.out(2, 0x55, 1);
  CHECK_EQ(r.in(2, 1), uint8_t(0));
  CHECK_EQ(r.in(7, 1), uint8_t(0));
  r.ch(0).attach_disk(0, patterned_disk(1 << 20));
  r.out(6, 0xb0);  // absent slave: status 0, commands ignored
  CHECK_EQ(r.in(7), uint8_t(0));
  r.out(7, 0xec);
  CHECK_EQ(r.in(7), uint8_t(0));
  CHECK_EQ(r.in(6), uint8_t(0xb0));
}

TEST(pci_config_identity_and_bar4) {
  Bus pio, mmio;
  pci::PciHost host(pio, mmio);
  Rig r;
  host.attach(1, 1, r.ide);
  CHECK_EQ(host.config_read(0, 1, 1, 0, 4), 0x70108086u);
  CHECK_EQ(host.config_read(0, 1, 1, 8, 4) >> 8, 0x010180u);
  host.config_write(0, 1, 1, 0x20, 4, 0xffffffff);
  CHECK_EQ(host.config_read(0, 1, 1, 0x20, 4), 0xfffffff1u);  // 16-byte I/O BAR
  host.config_write(0, 1, 1, 0x20, 4, 0xc000);
  host.config_write(0, 1, 1, 0x04, 2, 0x0005);
  host.config_write(0, 1, 1, 0x40, 2, 0x8000);
  CHECK_EQ(host.config_read(0, 1, 1, 0x40, 2), 0x8000u);
  uint8_t v = 0x60;
  CHECK(pio.write(0xc00a, std::span<const uint8_t>(&v, 1)));
  uint8_t got = 0;
  pio.read(0xc00a, std::span<uint8_t>(&got, 1));
  CHECK_EQ(got, uint8_t(0x60));
  CHECK_EQ(r.ch(1).bm_read(2), uint8_t(0x60));
}

// The board counts every disk's traffic with a CountingBackend in front of the
// image (block/counting.h): reads and writes through the device, PIO and DMA,
// bump the bytes and ops; a failed read counts nothing.
TEST(counting_backend_counts_pio_and_dma_traffic) {
  Rig r;
  auto disk = patterned_disk(1 << 20);
  auto io = std::make_shared<block::IoCounters>();
  r.ch().attach_disk(0, std::make_shared<block::CountingBackend>(disk, io));
  r.lba28(5, 2);
  r.out(7, 0x20);  // READ SECTORS, two blocks
  auto a = r.read_block(1024);
  CHECK(std::memcmp(a.data(), disk->data.data() + 5 * 512, 1024) == 0);
  CHECK_EQ(io->read_bytes.load(), 1024u);
  CHECK(io->read_ops.load() >= 1u);
  CHECK_EQ(io->write_bytes.load(), 0u);
  // READ DMA of three sectors.
  uint64_t ops = io->read_ops.load();
  r.prd(0x1000, 0x2000, 1536, true);
  r.bm_prd(0, 0x1000);
  r.bm(0, kBmCmdToMemory | kBmCmdStart);
  r.lba28(3, 3);
  r.out(7, 0xc8);
  CHECK(std::memcmp(&r.ram[0x2000], disk->data.data() + 3 * 512, 1536) == 0);
  CHECK_EQ(io->read_bytes.load(), 1024u + 1536u);
  CHECK(io->read_ops.load() > ops);
  r.bm(0, 0);
  r.bm(2, kBmStIrq);
  // WRITE SECTORS of one block, then FLUSH CACHE.
  r.lba28(10, 1);
  r.out(7, 0x30);
  for (int i = 0; i < 256; i++) r.outw(uint16_t(i));
  CHECK_EQ(io->write_bytes.load(), 512u);
  CHECK_EQ(io->write_ops.load(), 1u);
  r.out(7, 0xe7);
  CHECK_EQ(io->flush_ops.load(), 1u);
  // A read past the end fails in the device and counts nothing.
  uint64_t before = io->read_bytes.load();
  r.lba28(0x0fffffff, 1);
  r.out(7, 0x20);
  CHECK_EQ(r.in(7) & 0x01, 0x01);
  CHECK_EQ(io->read_bytes.load(), before);
}
