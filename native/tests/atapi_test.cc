// ATAPI CD-ROM on the PIIX3 secondary channel, driven through its ports:
// signatures, IDENTIFY PACKET DEVICE, PACKET protocol (PIO byte-count limit,
// DMA), sense/unit-attention state, media change/eject/lock, and the MMC
// commands firmware, GRUB and Linux use.
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
  bool irq = false;
  std::shared_ptr<PiixIde> ide;
  std::shared_ptr<block::MemoryBackend> iso;
  Rig(bool with_media = true) {
    mem.add_region(0, ram.size(), ram.data());
    ide = std::make_shared<PiixIde>(&mem, IrqLine(), IrqLine([this](bool l) { irq = l; }));
    ide->config_write(pci::kCommand, 2, pci::kCmdIo | pci::kCmdMaster);
    iso = std::make_shared<block::MemoryBackend>(100 * 2048);
    for (size_t i = 0; i < iso->data.size(); i++) iso->data[i] = uint8_t(i / 2048 + i * 3);
    ch().attach_cdrom(0, with_media ? iso : nullptr);
    out(6, 0xa0);
  }
  IdeChannel& ch() { return *ide->channel(1); }
  uint8_t in(int reg) { return uint8_t(ch().cmd_read(reg, 1)); }
  void out(int reg, uint8_t v) { ch().cmd_write(reg, v, 1); }

  // Issue a PACKET command; returns false if the device did not ask for the CDB.
  bool packet(std::vector<uint8_t> cdb, uint16_t limit = 0xfffe, bool dma = false) {
    cdb.resize(12, 0);
    out(1, dma ? 1 : 0);
    out(4, uint8_t(limit));
    out(5, uint8_t(limit >> 8));
    out(7, 0xa0);
    if ((ch().ctl_read() & (kStDrq | kStBsy)) != kStDrq || in(2) != kIrCoD) return false;
    for (int i = 0; i < 12; i += 2) ch().cmd_write(0, uint16_t(cdb[i] | (cdb[i + 1] << 8)), 2);
    return true;
  }
  // Drain a PIO data-in phase. `chunks` gets each DRQ block's byte count.
  std::vector<uint8_t> pio_in(std::vector<uint32_t>* chunks = nullptr) {
    std::vector<uint8_t> data;
    while (true) {
      uint8_t st = in(7);
      if (!(st & kStDrq)) break;
      CHECK_EQ(in(2), kIrIo);
      uint32_t n = in(4) | (in(5) << 8);
      if (chunks) chunks->push_back(n);
      for (uint32_t i = 0; i < n; i += 2) {
        uint16_t w = uint16_t(ch().cmd_read(0, 2));
        data.push_back(uint8_t(w));
        data.push_back(uint8_t(w >> 8));
      }
    }
    return data;
  }
  // Completion status of the last command: 0 = good, else sense key.
  int result() {
    uint8_t st = ch().ctl_read();
    CHECK_EQ(in(2), uint8_t(kIrIo | kIrCoD));
    return (st & kStErr) ? (in(1) >> 4) : 0;
  }
  std::vector<uint8_t> cmd(std::vector<uint8_t> cdb, int* status = nullptr) {
    CHECK(packet(std::move(cdb)));
    auto d = pio_in();
    int s = result();
    if (status) *status = s;
    else CHECK_EQ(s, 0);
    return d;
  }
  std::vector<uint8_t> sense() { return cmd({0x03, 0, 0, 0, 18, 0}); }
};

uint16_t word(const std::vector<uint8_t>& id, int w) { return uint16_t(id[2 * w] | (id[2 * w + 1] << 8)); }
uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
uint16_t be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }

}  // namespace

TEST(signature_identify_abort_and_identify_packet) {
  Rig r;
  CHECK_EQ(r.in(4), uint8_t(0x14));
  CHECK_EQ(r.in(5), uint8_t(0xeb));
  r.out(7, 0xec);
  CHECK_EQ(r.in(7) & kStErr, kStErr);
  CHECK_EQ(r.in(1) & kErrAbrt, kErrAbrt);
  CHECK_EQ(r.in(4), uint8_t(0x14));  // signature still there for the host to see
  CHECK_EQ(r.in(5), uint8_t(0xeb));
  r.out(7, 0xa1);
  CHECK(r.irq);
  CHECK_EQ(r.in(7), uint8_t(0x58));
  std::vector<uint8_t> id(512);
  for (int i = 0; i < 512; i += 2) {
    uint16_t w = uint16_t(r.ch().cmd_read(0, 2));
    id[i] = uint8_t(w);
    id[i + 1] = uint8_t(w >> 8);
  }
  CHECK_EQ(word(id, 0), uint16_t(0x85c0));
  std::string model;
  for (int i = 0; i < 12; i++) model += char(id[54 + (i ^ 1)]);
  CHECK_EQ(model, std::string("VIREO CD-ROM"));
  CHECK(word(id, 49) & 0x0100);  // DMA
  CHECK_EQ(r.in(7), uint8_t(0x50));
}

TEST(unit_attention_sense_capacity_and_read10_pio) {
  Rig r;
  r.ch().change_media(0, r.iso);
  int st = -1;
  r.cmd({0x00}, &st);  // TEST UNIT READY
  CHECK_EQ(st, 6);     // unit attention
  auto s = r.sense();
  CHECK_EQ(s.size(), size_t(18));
  CHECK_EQ(s[0], uint8_t(0x70));
  CHECK_EQ(s[2] & 0x0f, 6);
  CHECK_EQ(s[12], uint8_t(0x28));
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 0);
  s = r.sense();
  CHECK_EQ(s[2] & 0x0f, 0);
  auto cap = r.cmd({0x25});
  CHECK_EQ(cap.size(), size_t(8));
  CHECK_EQ(be32(&cap[0]), 99u);
  CHECK_EQ(be32(&cap[4]), 2048u);
  // READ(10) LBA 7, one sector, byte count limit 2048.
  CHECK(r.packet({0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0}, 2048));
  std::vector<uint32_t> chunks;
  auto data = r.pio_in(&chunks);
  CHECK_EQ(r.result(), 0);
  CHECK_EQ(data.size(), size_t(2048));
  CHECK(std::memcmp(data.data(), r.iso->data.data() + 7 * 2048, 2048) == 0);
  // Two sectors with a 1000-byte limit: DRQ blocks of 1000, 1000, 1000, 1000, 96.
  chunks.clear();
  CHECK(r.packet({0x28, 0, 0, 0, 0, 10, 0, 0, 2, 0}, 1000));
  data = r.pio_in(&chunks);
  CHECK_EQ(r.result(), 0);
  CHECK_EQ(chunks.size(), size_t(5));
  CHECK_EQ(chunks[0], 1000u);
  CHECK_EQ(chunks[4], 96u);
  CHECK(std::memcmp(data.data(), r.iso->data.data() + 10 * 2048, 4096) == 0);
  // READ(12)
  CHECK(r.packet({0xa8, 0, 0, 0, 0, 99, 0, 0, 0, 1, 0, 0}));
  data = r.pio_in();
  CHECK(std::memcmp(data.data(), r.iso->data.data() + 99 * 2048, 2048) == 0);
  // Past the end: ILLEGAL REQUEST / LBA out of range.
  r.cmd({0x28, 0, 0, 0, 0, 99, 0, 0, 2, 0}, &st);
  CHECK_EQ(st, 5);
  CHECK_EQ(r.sense()[12], uint8_t(0x21));
}

TEST(read10_by_dma) {
  Rig r;
  uint32_t prd[2] = {0x8000, 0x80000000u | 4096};
  std::memcpy(&r.ram[0x1000], prd, 8);
  auto& bm = *r.ide->bmdma();
  uint8_t p[4] = {0x00, 0x10, 0, 0};
  bm.write(8 + 4, p);
  uint8_t c = kBmCmdToMemory;
  bm.write(8, std::span<const uint8_t>(&c, 1));
  CHECK(r.packet({0x28, 0, 0, 0, 0, 20, 0, 0, 2, 0}, 0, true));
  CHECK_EQ(r.ram[0x8000 + 5], uint8_t(0));  // waits for the start bit
  c = kBmCmdToMemory | kBmCmdStart;
  bm.write(8, std::span<const uint8_t>(&c, 1));
  CHECK(std::memcmp(&r.ram[0x8000], r.iso->data.data() + 20 * 2048, 4096) == 0);
  CHECK(r.irq);
  CHECK_EQ(r.result(), 0);
  CHECK_EQ(r.ch().bm_read(2) & (kBmStIrq | kBmStActive), kBmStIrq);
}

TEST(no_media_not_ready_and_eject_change_cycle) {
  Rig r(false);
  int st = -1;
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 2);
  auto s = r.sense();
  CHECK_EQ(s[12], uint8_t(0x3a));
  r.cmd({0x25}, &st);
  CHECK_EQ(st, 2);
  // Insert: unit attention, then ready; events report new media.
  r.ch().change_media(0, r.iso);
  CHECK(r.ch().media_present(0));
  auto ev = r.cmd({0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0});
  CHECK_EQ(ev.size(), size_t(8));
  CHECK_EQ(ev[2], uint8_t(0x04));
  CHECK_EQ(ev[4], uint8_t(2));     // new media
  CHECK_EQ(ev[5] & 0x02, 0x02);    // media present
  ev = r.cmd({0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0});
  CHECK_EQ(ev[4], uint8_t(0));     // consumed
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 6);
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 0);
  // Guest locks the tray: host eject is refused and becomes an eject request.
  r.cmd({0x1e, 0, 0, 0, 1, 0});
  CHECK(!r.ch().eject(0));
  CHECK(r.ch().media_present(0));
  ev = r.cmd({0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0});
  CHECK_EQ(ev[4], uint8_t(1));
  auto caps = r.cmd({0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 64, 0});
  CHECK_EQ(caps[8 + 6] & 0x02, 0x02);  // locked shown in the capabilities page
  // START STOP UNIT eject while locked: removal prevented.
  r.cmd({0x1b, 0, 0, 0, 0x02, 0}, &st);
  CHECK_EQ(st, 5);
  CHECK_EQ(r.sense()[12], uint8_t(0x53));
  r.cmd({0x1e, 0, 0, 0, 0, 0});  // allow
  r.cmd({0x1b, 0, 0, 0, 0x02, 0});
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 2);
  auto mech = r.cmd({0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8});
  CHECK_EQ(mech[1] & 0x10, 0x10);  // tray open
  r.cmd({0x1b, 0, 0, 0, 0x03, 0});  // load
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 0);
  // Host eject when unlocked: media gone.
  CHECK(r.ch().eject(0));
  CHECK(!r.ch().media_present(0));
  r.cmd({0x00}, &st);
  CHECK_EQ(st, 2);
  ev = r.cmd({0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0});
  CHECK_EQ(ev[4], uint8_t(3));  // media removal
}

TEST(inquiry_toc_configuration_mode_sense_disc_info) {
  Rig r;
  auto inq = r.cmd({0x12, 0, 0, 0, 36, 0});
  CHECK_EQ(inq.size(), size_t(36));
  CHECK_EQ(inq[0], uint8_t(0x05));
  CHECK_EQ(inq[1], uint8_t(0x80));
  CHECK_EQ(std::string(inq.begin() + 8, inq.begin() + 13), std::string("VIREO"));
  // Allocation length truncates.
  std::vector<uint32_t> chunks;
  CHECK(r.packet({0x12, 0, 0, 0, 5, 0}));
  r.pio_in(&chunks);
  CHECK_EQ(r.result(), 0);
  CHECK_EQ(chunks.size(), size_t(1));
  CHECK_EQ(chunks[0], 5u);  // byte count register says 5; the last word is padded

  auto toc = r.cmd({0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0});
  CHECK_EQ(be16(&toc[0]), uint16_t(18));
  CHECK_EQ(toc[2], uint8_t(1));
  CHECK_EQ(toc[3], uint8_t(1));
  CHECK_EQ(toc[4 + 2], uint8_t(1));
  CHECK_EQ(be32(&toc[4 + 4]), 0u);
  CHECK_EQ(toc[12 + 2], uint8_t(0xaa));
  CHECK_EQ(be32(&toc[12 + 4]), 100u);
  auto msf = r.cmd({0x43, 0x02, 0, 0, 0, 0, 0, 0x03, 0x24, 0});
  CHECK_EQ(msf[4 + 6], uint8_t(2));  // track 1 at 00:02:00
  CHECK_EQ(msf[12 + 6], uint8_t(3)); // lead-out 250 frames = 00:03:25
  CHECK_EQ(msf[12 + 7], uint8_t(25));
  auto sess = r.cmd({0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0});
  CHECK_EQ(be16(&sess[0]), uint16_t(10));
  CHECK_EQ(sess[6], uint8_t(1));
  auto raw = r.cmd({0x43, 0, 2, 0, 0, 0, 0, 0x03, 0x00, 0});
  CHECK_EQ(raw.size(), size_t(4 + 4 * 11));
  CHECK_EQ(raw[4 + 3], uint8_t(0xa0));
  CHECK_EQ(raw[4 + 22 + 3], uint8_t(0xa2));
  int st;
  r.cmd({0x43, 0, 0, 0, 0, 0, 5, 0, 0x20, 0}, &st);  // no track 5
  CHECK_EQ(st, 5);

  auto conf = r.cmd({0x46, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0});
  CHECK_EQ(be16(&conf[6]), uint16_t(0x0008));  // current profile CD-ROM
  CHECK_EQ(be16(&conf[8]), uint16_t(0x0000));  // profile list feature first
  CHECK_EQ(be16(&conf[12]), uint16_t(0x0008));
  CHECK_EQ(conf[14] & 1, 1);
  CHECK_EQ(be32(&conf[0]), uint32_t(conf.size() - 4));
  auto one = r.cmd({0x46, 2, 0, 0x03, 0, 0, 0, 0x01, 0x00, 0});  // RT=2: only feature 3
  CHECK_EQ(one.size(), size_t(8 + 8));
  CHECK_EQ(be16(&one[8]), uint16_t(0x0003));

  auto ms = r.cmd({0x5a, 0, 0x3f, 0, 0, 0, 0, 0x01, 0x00, 0});
  CHECK_EQ(be16(&ms[0]), uint16_t(ms.size() - 2));
  CHECK_EQ(ms[8], uint8_t(0x01));
  CHECK_EQ(ms[16], uint8_t(0x2a));
  auto err = r.cmd({0x5a, 0, 0x01, 0, 0, 0, 0, 0, 16, 0});
  CHECK_EQ(err.size(), size_t(16));
  CHECK_EQ(err[9], uint8_t(6));
  r.cmd({0x5a, 0, 0x05, 0, 0, 0, 0, 0, 64, 0}, &st);
  CHECK_EQ(st, 5);
  CHECK_EQ(r.sense()[12], uint8_t(0x24));

  auto di = r.cmd({0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0});
  CHECK_EQ(be16(&di[0]), uint16_t(32));
  CHECK_EQ(di[2] & 0x03, 2);  // complete
  r.cmd({0xbb, 0, 0xff, 0xff, 0xff, 0xff});  // SET CD SPEED
  r.cmd({0x2b, 0, 0, 0, 0, 5});              // SEEK
  r.cmd({0xff}, &st);
  CHECK_EQ(st, 5);
  CHECK_EQ(r.sense()[12], uint8_t(0x20));
  // GET EVENT STATUS without the polled bit is refused.
  r.cmd({0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0}, &st);
  CHECK_EQ(st, 5);
}

TEST(master_disk_and_slave_cdrom_share_a_channel) {
  Rig r(true);
  auto disk = std::make_shared<block::MemoryBackend>(1 << 20);
  disk->data[512 * 3] = 0x77;
  auto& ch = *r.ide->channel(0);
  ch.attach_disk(0, disk);
  ch.attach_cdrom(1, r.iso);
  ch.cmd_write(6, 0xb0, 1);
  CHECK_EQ(uint8_t(ch.cmd_read(4, 1)), uint8_t(0x14));
  ch.cmd_write(6, 0xa0, 1);
  CHECK_EQ(uint8_t(ch.cmd_read(4, 1)), uint8_t(0x00));
  ch.cmd_write(2, 1, 1);
  ch.cmd_write(3, 3, 1);
  ch.cmd_write(4, 0, 1);
  ch.cmd_write(5, 0, 1);
  ch.cmd_write(6, 0xe0, 1);
  ch.cmd_write(7, 0x20, 1);
  CHECK_EQ(uint8_t(ch.cmd_read(0, 1)), uint8_t(0x77));
}

// GRUB and SeaBIOS read the CD over ATAPI: those reads reach the counters the
// board keeps per drive (block/counting.h).
TEST(read10_counts_into_the_drive_counters) {
  Rig r(false);
  auto io = std::make_shared<block::IoCounters>();
  r.ch().attach_cdrom(0, std::make_shared<block::CountingBackend>(r.iso, io));
  r.out(6, 0xa0);
  uint32_t prd[2] = {0x8000, 0x80000000u | 4096};
  std::memcpy(&r.ram[0x1000], prd, 8);
  auto& bm = *r.ide->bmdma();
  uint8_t p[4] = {0x00, 0x10, 0, 0};
  bm.write(8 + 4, p);
  uint8_t c = kBmCmdToMemory;
  bm.write(8, std::span<const uint8_t>(&c, 1));
  CHECK(r.packet({0x28, 0, 0, 0, 0, 20, 0, 0, 2, 0}, 0, true));
  c = kBmCmdToMemory | kBmCmdStart;
  bm.write(8, std::span<const uint8_t>(&c, 1));
  CHECK_EQ(r.result(), 0);
  CHECK(std::memcmp(&r.ram[0x8000], r.iso->data.data() + 20 * 2048, 4096) == 0);
  CHECK_EQ(io->read_bytes.load(), 4096u);
  CHECK(io->read_ops.load() >= 1u);
  CHECK_EQ(io->write_bytes.load(), 0u);
}
