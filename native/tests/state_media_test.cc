// Saved state of the PC's display, disks, virtio, USB and NIC devices
// (Stateful::save/load), without a vCPU: each device is saved, loaded into a
// fresh one, and the fresh one behaves as the saved one would; bad sections
// are refused and leave the device as it was.
#include <cstring>
#include <vector>

#include "check.h"
#include "pci_test_util.h"
#include "block/block.h"
#include "devices/ide/piix_ide.h"
#include "devices/net/e1000.h"
#include "devices/usb/hid_tablet.h"
#include "devices/usb/uhci.h"
#include "devices/vga/vga.h"
#include "devices/virtio/blk/device.h"
#include "devices/virtio/pci_transport.h"
#include "devices/virtio/virtio.h"
#include "machine/state.h"

using namespace vireo;

namespace {

std::vector<uint8_t> save(const Stateful& d) {
  state::StateWriter w;
  d.save(w);
  return w.take();
}
void load(Stateful& d, const std::vector<uint8_t>& b, uint32_t version = 0) {
  state::StateReader r(b, "dev", version ? version : d.state_version());
  d.load(r);
}
// True when load() refused `b` with a StateError whose message has `what`.
bool refused(Stateful& d, const std::vector<uint8_t>& b, const std::string& what, uint32_t version = 0) {
  try {
    load(d, b, version);
  } catch (const state::StateError& e) {
    if (std::string(e.what()).find(what) != std::string::npos) return true;
    std::fprintf(stderr, "  refused with another message: %s\n", e.what());
    return false;
  }
  return false;
}

// ------------------------------------------------------------ VGA

// Mode 3-like text: a few characters with attributes and a changed palette entry.
void paint_text(vga::VgaDevice& v) {
  v.port_write(0x3c2, 0x67);  // colour, RAM enabled
  const uint8_t seq[] = {0x03, 0x00, 0x03, 0x00, 0x02};
  for (uint8_t i = 0; i < 5; i++) v.port_write(0x3c4, i), v.port_write(0x3c5, seq[i]);
  const uint8_t gc[] = {0, 0, 0, 0, 0, 0x10, 0x0e, 0, 0xff};
  for (uint8_t i = 0; i < 9; i++) v.port_write(0x3ce, i), v.port_write(0x3cf, gc[i]);
  const uint8_t crtc[] = {0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e,
                          0x00, 0x00, 0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff};
  for (uint8_t i = 0; i < sizeof crtc; i++) v.port_write(0x3d4, i), v.port_write(0x3d5, crtc[i]);
  (void)v.port_read(0x3da);
  for (uint8_t i = 0; i < 16; i++) v.port_write(0x3c0, i), v.port_write(0x3c0, i);
  const uint8_t ar[] = {0x0c, 0x00, 0x0f, 0x08, 0x00};
  for (uint8_t i = 0; i < 5; i++) v.port_write(0x3c0, uint8_t(0x10 + i)), v.port_write(0x3c0, ar[i]);
  v.port_write(0x3c0, 0x20);  // display on
  // DAC: entry 1 becomes orange, then a glyph font in plane 2 is not needed:
  // the renderer draws from its own font, the text is what we compare.
  v.port_write(0x3c8, 1);
  v.port_write(0x3c9, 0x3f), v.port_write(0x3c9, 0x20), v.port_write(0x3c9, 0x00);
  const char* msg = "Saved and restored";
  for (size_t i = 0; msg[i]; i++) {
    v.mem_write(uint32_t(0x18000 + 2 * i), uint8_t(msg[i]));
    v.mem_write(uint32_t(0x18000 + 2 * i + 1), 0x1f);
  }
  v.port_write(0x3c7, 1);  // DAC read index: state the restored device must keep
}

}  // namespace

TEST(vga_text_and_palette_round_trip_give_the_same_screen) {
  auto a = std::make_shared<vga::VgaDevice>();
  paint_text(*a);
  a->dispi_write(vga::kDispiXres, 800);  // a register VBE keeps while disabled
  a->set_dispi_index(vga::kDispiYres);
  auto bytes = save(*a);
  CHECK(a->state_kind() == Stateful::StateKind::Saved);
  // 16 MiB of VRAM, nearly all zero: the section holds only the written pages.
  CHECK(bytes.size() < 64 * 1024);

  auto b = std::make_shared<vga::VgaDevice>();
  load(*b, bytes);
  CHECK(save(*b) == bytes);
  CHECK(b->text_screen().find("Saved and restored") != std::string::npos);
  CHECK_EQ(b->text_screen(), a->text_screen());
  auto fa = a->snapshot(0), fb = b->snapshot(0);
  CHECK_EQ(fa.width, fb.width);
  CHECK(fa.bgrx == fb.bgrx);
  CHECK_EQ(b->dispi_read(vga::kDispiXres), uint16_t(800));
  CHECK_EQ(b->dispi_index(), uint16_t(vga::kDispiYres));
  // The DAC read position carries over: the next reads give entry 1.
  CHECK_EQ(b->port_read(0x3c9), uint8_t(0x3f));
  CHECK_EQ(b->port_read(0x3c9), uint8_t(0x20));
  // The restored device's first poll is a full frame of what it shows.
  auto u = b->poll(nullptr, 0, false);
  CHECK(u.has_value());
}

TEST(vga_vbe_mode_and_vram_round_trip) {
  auto a = std::make_shared<vga::VgaDevice>();
  a->dispi_write(vga::kDispiXres, 64);
  a->dispi_write(vga::kDispiYres, 48);
  a->dispi_write(vga::kDispiBpp, 32);
  a->dispi_write(vga::kDispiEnable, vga::kDispiEnabled | vga::kDispiLfbEnabled);
  for (size_t i = 0; i < 64 * 48 * 4; i++) a->vram()[i] = uint8_t(i * 13);
  a->vram()[a->vram_size() - 1] = 0x77;  // the last page too
  auto bytes = save(*a);
  auto b = std::make_shared<vga::VgaDevice>();
  b->vram()[4096 * 100] = 0x55;  // a page the state has as zero: zeroed on load
  load(*b, bytes);
  CHECK(b->mode() == vga::DisplayMode::Vbe);
  CHECK(b->snapshot(0).bgrx == a->snapshot(0).bgrx);
  CHECK_EQ(b->vram()[b->vram_size() - 1], uint8_t(0x77));
  CHECK_EQ(b->vram()[4096 * 100], uint8_t(0));
  CHECK(std::memcmp(a->vram(), b->vram(), a->vram_size()) == 0);
}

TEST(vga_bad_sections_are_refused_and_change_nothing) {
  auto a = std::make_shared<vga::VgaDevice>();
  paint_text(*a);
  auto good = save(*a);
  auto b = std::make_shared<vga::VgaDevice>();
  b->vram()[0x10] = 0xaa;
  auto before = save(*b);
  CHECK(refused(*b, good, "unknown version", 2));
  CHECK(refused(*b, {good.begin(), good.end() - 1}, "truncated"));
  auto extra = good;
  extra.push_back(0);
  CHECK(refused(*b, extra, "unread bytes"));
  auto bad = good;
  bad[2] = 9;  // sequencer index
  CHECK(refused(*b, bad, "sequencer index"));
  // The VBE depth: its offset is after the fixed-size register block.
  size_t dispi = 2 + 1 + 8 + 1 + 16 + 1 + 1 + 21 + 1 + 32 + 4 + 3 + 768 + 1 + 1 + 4 + 2;
  bad = good;
  bad[dispi + 2 * vga::kDispiBpp] = 7;
  CHECK(refused(*b, bad, "VBE depth"));
  CHECK(save(*b) == before);
  CHECK_EQ(b->vram()[0x10], uint8_t(0xaa));
}

// ------------------------------------------------------------ IDE

namespace {

struct IdeRig {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20, 0);
  GuestMemory mem;
  std::shared_ptr<ide::PiixIde> ide;
  IdeRig() {
    mem.add_region(0, ram.size(), ram.data());
    ide = std::make_shared<ide::PiixIde>(&mem, IrqLine(), IrqLine());
    ide->config_write(pci::kCommand, 2, pci::kCmdIo | pci::kCmdMaster);
  }
  ide::IdeChannel& ch() { return *ide->channel(0); }
  void out(int reg, uint8_t v) { ch().cmd_write(reg, v, 1); }
  uint8_t in(int reg) { return uint8_t(ch().cmd_read(reg, 1)); }
  uint16_t inw() { return uint16_t(ch().cmd_read(0, 2)); }
};

std::shared_ptr<block::MemoryBackend> disk() {
  auto d = std::make_shared<block::MemoryBackend>(64 * 512);
  for (size_t i = 0; i < d->data.size(); i++) d->data[i] = uint8_t(i / 512 * 7 + i);
  return d;
}

}  // namespace

TEST(ide_multi_sector_pio_read_continues_after_restore) {
  auto d = disk();
  IdeRig a;
  a.ch().attach_disk(0, d);
  a.out(6, 0xe0);
  a.out(2, 4);  // 4 sectors from LBA 3
  a.out(3, 3);
  a.out(4, 0);
  a.out(5, 0);
  a.out(7, 0x20);  // READ SECTORS
  std::vector<uint16_t> first;
  for (int i = 0; i < 256 + 100; i++) first.push_back(a.inw());  // one sector and a bit
  auto bytes = save(a.ch());

  IdeRig b;
  b.ch().attach_disk(0, d);
  load(b.ch(), bytes);
  CHECK(save(b.ch()) == bytes);
  CHECK(b.in(7) & ide::kStDrq);
  // The rest of the 4 sectors come out of the restored channel where the saved one was.
  for (size_t i = first.size(); i < 4 * 256; i++) {
    uint16_t w = b.inw();
    size_t off = 3 * 512 + 2 * i;
    uint16_t want = uint16_t(d->data[off] | d->data[off + 1] << 8);
    if (w != want) {
      CHECK_EQ(w, want);
      break;
    }
  }
  CHECK(!(b.in(7) & ide::kStDrq));
  // And it answers a new command: IDENTIFY.
  b.out(6, 0xa0);
  b.out(7, 0xec);
  CHECK(b.in(7) & ide::kStDrq);
  std::vector<uint16_t> id;
  for (int i = 0; i < 256; i++) id.push_back(b.inw());
  CHECK_EQ(uint32_t(id[60] | id[61] << 16), uint32_t(64));  // LBA28 capacity
}

TEST(ide_bad_sections_are_refused_and_change_nothing) {
  auto d = disk();
  IdeRig a;
  a.ch().attach_disk(0, d);
  a.out(6, 0xa0);
  a.out(7, 0xec);
  auto bytes = save(a.ch());
  // Another drive layout: no disk here.
  IdeRig none;
  CHECK(refused(none.ch(), bytes, "this machine has no drive"));
  IdeRig b;
  b.ch().attach_disk(0, d);
  b.out(3, 0x42);
  auto before = save(b.ch());
  CHECK(refused(b.ch(), bytes, "unknown version", 7));
  CHECK(refused(b.ch(), {bytes.begin(), bytes.end() - 3}, "truncated"));
  auto bad = bytes;
  // Out of range: the selected device (after the two drives).
  size_t drive = 1 + 1 + 13 + 6 + 1 + 1 + 1 + 1 + 3 + 1 + 1 + 1 + 1;
  bad = bytes;
  bad[2 * drive] = 5;
  CHECK(refused(b.ch(), bad, "selected device"));
  bad = bytes;
  bad[2 * drive + 3] = 42;  // transfer kind
  CHECK(refused(b.ch(), bad, "transfer kind"));
  CHECK(save(b.ch()) == before);
  CHECK_EQ(b.in(3), uint8_t(0x42));
}

// ------------------------------------------------------------ virtio-blk

namespace {

using namespace vireo::virtio;
constexpr uint64_t kRam = 8 << 20, kBar4 = 0xe0000000, kBar1 = 0xe1000000;

struct BlkRig : PciTestBus {
  std::shared_ptr<VirtioBlk> blk;
  std::shared_ptr<VirtioPci> fn;
  explicit BlkRig(std::shared_ptr<block::BlockBackend> d) : PciTestBus(kRam, 5) {
    blk = std::make_shared<VirtioBlk>(d, VirtioBlk::Options{});
    fn = std::make_shared<VirtioPci>(blk, &mem, VirtioPci::Hooks{});
    host.attach(5, 0, fn);
    cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
    cfgw(pci::kBar0 + 20, 4, 0);
    cfgw(pci::kBar0 + 4, 4, uint32_t(kBar1));
    cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
  }
  void w(uint64_t off, int size, uint64_t v) { mmio_write(kBar4 + off, size, v); }
  uint64_t r(uint64_t off, int size) { return mmio_read(kBar4 + off, size); }
};

// The driver's side: queue 0 of 16 at fixed addresses; reads of one sector.
struct BlkDriver {
  static constexpr uint64_t kDesc = 0x10000, kAvail = 0x20000, kUsed = 0x30000;
  static constexpr uint16_t kSize = 16;
  std::vector<uint8_t>& ram;
  uint16_t avail_idx = 0, next = 0;
  void init(BlkRig& rig) {
    const uint8_t st = kStatusAcknowledge | kStatusDriver;
    rig.w(0x14, 1, kStatusAcknowledge);
    rig.w(0x14, 1, st);
    rig.w(0x08, 4, 1);
    rig.w(0x0c, 4, 1);  // VERSION_1
    rig.w(0x14, 1, st | kStatusFeaturesOk);
    rig.w(0x16, 2, 0);
    rig.w(0x18, 2, kSize);
    rig.w(0x20, 8, kDesc);
    rig.w(0x28, 8, kAvail);
    rig.w(0x30, 8, kUsed);
    rig.w(0x1c, 2, 1);
    rig.w(0x14, 1, st | kStatusFeaturesOk | kStatusDriverOk);
  }
  void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t nx) {
    uint8_t* p = ram.data() + kDesc + 16ull * i;
    std::memcpy(p, &addr, 8);
    std::memcpy(p + 8, &len, 4);
    std::memcpy(p + 12, &flags, 2);
    std::memcpy(p + 14, &nx, 2);
  }
  // READ of `sector` into 0x50000 + 512 * head; returns the head.
  uint16_t read(uint64_t sector) {
    uint16_t h = next;
    uint64_t hdr = 0x40000 + 0x20ull * h;
    uint32_t req[4] = {kBlkTIn, 0, uint32_t(sector), 0};
    std::memcpy(ram.data() + hdr, req, 16);
    ram[hdr + 16] = 0xee;
    desc(h, hdr, 16, kDescNext, uint16_t(h + 1));
    desc(uint16_t(h + 1), 0x50000 + 512ull * h, 512, kDescNext | kDescWrite, uint16_t(h + 2));
    desc(uint16_t(h + 2), hdr + 16, 1, kDescWrite, 0);
    next = uint16_t((h + 3) % kSize);
    std::memcpy(ram.data() + kAvail + 4 + 2ull * (avail_idx % kSize), &h, 2);
    avail_idx++;
    std::memcpy(ram.data() + kAvail + 2, &avail_idx, 2);
    return h;
  }
  uint16_t used_idx() {
    uint16_t v;
    std::memcpy(&v, ram.data() + kUsed + 2, 2);
    return v;
  }
};

}  // namespace

TEST(virtio_blk_restored_queue_takes_a_new_request) {
  auto d = disk();
  BlkRig a(d);
  BlkDriver da{a.ram};
  da.init(a);
  da.read(1);
  a.w(VirtioPci::kNotifyOff, 2, 0);
  a.blk->drain();
  CHECK_EQ(da.used_idx(), uint16_t(1));
  auto bytes = save(*a.fn);
  CHECK(a.fn->state_kind() == Stateful::StateKind::Saved);

  // A fresh device over the same RAM contents (as the machine restores RAM).
  BlkRig b(d);
  b.ram = a.ram;
  load(*b.fn, bytes);
  CHECK(save(*b.fn) == bytes);
  CHECK_EQ(b.fn->status(), uint8_t(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk));
  BlkDriver db{b.ram, da.avail_idx, da.next};
  uint16_t h = db.read(5);
  b.w(VirtioPci::kNotifyOff, 2, 0);
  b.blk->drain();
  CHECK_EQ(db.used_idx(), uint16_t(2));  // went on from the saved used index
  CHECK_EQ(b.ram[0x40000 + 0x20ull * h + 16], uint8_t(kBlkSOk));
  CHECK(std::memcmp(b.ram.data() + 0x50000 + 512ull * h, d->data.data() + 5 * 512, 512) == 0);
}

TEST(virtio_bad_sections_are_refused_and_change_nothing) {
  auto d = disk();
  BlkRig a(d);
  BlkDriver da{a.ram};
  da.init(a);
  auto bytes = save(*a.fn);
  BlkRig b(d);
  auto before = save(*b.fn);
  CHECK(refused(*b.fn, bytes, "unknown version", 2));
  CHECK(refused(*b.fn, {bytes.begin(), bytes.end() - 1}, "truncated"));
  auto bad = bytes;
  bad[0] = 3;  // queue count
  CHECK(refused(*b.fn, bad, "queues"));
  // The queue size: after counts (4), selects (8), features (8), vector (2),
  // status, generation (2), queue select (2), ISR (1), 2 MSI-X entries (2 x 17).
  size_t q0 = 4 + 8 + 8 + 2 + 2 + 2 + 1 + 2 * 17;
  bad = bytes;
  bad[q0] = 3;
  bad[q0 + 1] = 0;
  CHECK(refused(*b.fn, bad, "not a power of two"));
  bad = bytes;
  bad[4 + 8] = 0xff;  // driver features: bits this device does not offer
  bad[4 + 8 + 7] = 0xff;
  CHECK(refused(*b.fn, bad, "features"));
  CHECK(save(*b.fn) == before);
  CHECK_EQ(b.fn->status(), uint8_t(0));
}

// ------------------------------------------------------------ UHCI and the tablet

TEST(tablet_and_uhci_round_trip_keep_the_report_and_registers) {
  int64_t now = 1'000'000'000;
  auto clock = [&now] { return now; };
  auto tab = std::make_shared<usb::HidTablet>(clock);
  // SET_CONFIGURATION 1, status stage, then the pointer moves.
  uint8_t setup[8] = {0x00, usb::kReqSetConfiguration, 1, 0, 0, 0, 0, 0};
  CHECK(tab->transfer(usb::Pid::Setup, 0, setup) >= 0);
  CHECK(tab->transfer(usb::Pid::In, 0, {}) >= 0);
  CHECK(tab->configured());
  uint8_t origin[8] = {};
  CHECK_EQ(tab->transfer(usb::Pid::In, usb::HidTablet::kIntEndpoint, origin), 7);  // the first poll: where it is
  tab->pointer(1234, 4321, usb::HidTablet::kLeft, 2);
  auto bytes = save(*tab);

  now = 5'000'000'000;  // another process, another clock
  auto tab2 = std::make_shared<usb::HidTablet>(clock);
  load(*tab2, bytes);
  CHECK(tab2->configured());
  CHECK(tab2->current_report() == tab->current_report());
  uint8_t rep[8] = {};
  int n = tab2->transfer(usb::Pid::In, usb::HidTablet::kIntEndpoint, rep);
  CHECK_EQ(n, 7);
  CHECK_EQ(rep[0], usb::HidTablet::kLeft);
  CHECK_EQ(int(rep[1] | rep[2] << 8), 1234);
  CHECK_EQ(int(rep[3] | rep[4] << 8), 4321);
  CHECK_EQ(int(int8_t(rep[5])), 2);
  // Nothing new: the next poll NAKs, as on the saved device.
  CHECK_EQ(tab2->transfer(usb::Pid::In, usb::HidTablet::kIntEndpoint, rep), usb::kNak);

  // Bad: x out of range, leaving the device as it was.
  auto bad = bytes;
  size_t xoff = bad.size() - 1 - 1 - 4 - 4 - 1 - 4 - 4;
  bad[xoff + 3] = 0x7f;
  auto before = save(*tab2);
  CHECK(refused(*tab2, bad, "x is"));
  CHECK(refused(*tab2, bytes, "unknown version", 3));
  CHECK(save(*tab2) == before);

  // Version 2 keeps the reports queued for button changes: presses and
  // releases the guest has not taken yet are all delivered after a load
  // (the saved press with its wheel steps, a release, a press, a release).
  tab->pointer(10, 20, 0, 0);
  tab->pointer(10, 20, usb::HidTablet::kLeft, 0);
  tab->pointer(10, 20, 0, 0);
  auto queued = save(*tab);
  CHECK_EQ(queued[queued.size() - 1 - 3 * 7], uint8_t(3));  // the count, then 7 bytes each
  auto tab3 = std::make_shared<usb::HidTablet>(clock);
  load(*tab3, queued);
  std::vector<int> buttons;
  for (int i = 0; i < 6 && tab3->transfer(usb::Pid::In, usb::HidTablet::kIntEndpoint, rep) == 7; i++) buttons.push_back(rep[0]);
  CHECK_EQ(buttons, (std::vector<int>{1, 0, 1, 0}));
  // A version 1 section (no queue) still loads.
  auto v1 = bytes;
  v1.pop_back();
  auto tab4 = std::make_shared<usb::HidTablet>(clock);
  load(*tab4, v1, 1);
  CHECK_EQ(tab4->transfer(usb::Pid::In, usb::HidTablet::kIntEndpoint, rep), 7);
  CHECK_EQ(int(rep[1] | rep[2] << 8), 1234);
  // A queued report with bad buttons is refused.
  auto badq = queued;
  badq[badq.size() - 3 * 7] = 0xff;
  CHECK(refused(*tab4, badq, "buttons"));

  // UHCI: registers, frame number and the port; the clock rebased.
  std::vector<uint8_t> ram(1 << 20, 0);
  GuestMemory mem;
  mem.add_region(0, ram.size(), ram.data());
  now = 1'000'000'000;
  auto hc = std::make_shared<usb::Uhci>(&mem, clock);
  hc->attach(0, tab);
  hc->reg_write(usb::Uhci::kFlBaseAdd, 4, 0x8000);
  hc->reg_write(usb::Uhci::kFrNum, 2, 0x123);
  hc->reg_write(usb::Uhci::kUsbIntr, 2, usb::Uhci::kIntrIoc);
  hc->reg_write(usb::Uhci::kPortSc1, 2, usb::Uhci::kPortPe);
  hc->reg_write(usb::Uhci::kUsbCmd, 2, usb::Uhci::kCmdRs | usb::Uhci::kCmdMaxP);
  auto hb = save(*hc);
  now = 9'000'000'000;
  auto hc2 = std::make_shared<usb::Uhci>(&mem, clock);
  hc2->attach(0, tab2);
  load(*hc2, hb);
  CHECK_EQ(hc2->reg_read(usb::Uhci::kFlBaseAdd, 4), uint32_t(0x8000));
  CHECK_EQ(hc2->reg_read(usb::Uhci::kFrNum, 2), uint32_t(0x123));
  CHECK(hc2->reg_read(usb::Uhci::kPortSc1, 2) & usb::Uhci::kPortPe);
  CHECK(hc2->reg_read(usb::Uhci::kUsbCmd, 2) & usb::Uhci::kCmdRs);
  // Rebased: 8 s later on this clock, no backlog of 8000 frames, one due in 1 ms.
  CHECK_EQ(hc2->run_due(now), 0);
  now += usb::Uhci::kFrameNs;
  CHECK_EQ(hc2->run_due(now), 1);
  CHECK_EQ(hc2->reg_read(usb::Uhci::kFrNum, 2), uint32_t(0x124));
  // A state with a device on port 2, where this controller has none.
  auto hbad = hb;
  hbad[2 + 2 + 2 + 2 + 4 + 1 + 2] |= usb::Uhci::kPortCcs;
  CHECK(refused(*hc2, hbad, "port 2"));
  CHECK_EQ(hc2->reg_read(usb::Uhci::kFrNum, 2), uint32_t(0x124));
}

// ------------------------------------------------------------ e1000

namespace {
struct NullBackend : net::NetBackend {
  void start(Receiver) override {}
  void stop() override {}
  bool send(std::span<const uint8_t>) override { return true; }
  std::string kind() const override { return "null"; }
};
}  // namespace

TEST(e1000_round_trip_keeps_registers_rings_and_eeprom) {
  std::vector<uint8_t> ram(1 << 20, 0);
  GuestMemory mem;
  mem.add_region(0, ram.size(), ram.data());
  auto a = std::make_shared<e1000::E1000>(std::make_shared<NullBackend>(), &mem, e1000::E1000::Options{});
  a->write_reg(0x2800, 0x10000);  // RDBAL
  a->write_reg(0x2808, 16 * 16);  // RDLEN: 16 descriptors
  a->write_reg(0x2818, 7);        // RDT
  a->write_reg(0x00d0, 0x9d);     // IMS
  a->write_reg(0x0100, 0x0400801a);  // RCTL
  auto bytes = save(*a);
  auto b = std::make_shared<e1000::E1000>(std::make_shared<NullBackend>(), &mem, e1000::E1000::Options{});
  load(*b, bytes);
  CHECK(save(*b) == bytes);
  for (uint32_t off : {0x2800u, 0x2808u, 0x2818u, 0x00d0u, 0x0100u}) CHECK_EQ(b->read_reg(off), a->read_reg(off));
  CHECK(b->eeprom() == a->eeprom());

  // Another MAC's EEPROM, a bad checksum, an unknown version: refused, nothing changed.
  e1000::E1000::Options other;
  other.mac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
  auto c = std::make_shared<e1000::E1000>(std::make_shared<NullBackend>(), &mem, other);
  auto before = save(*c);
  CHECK(refused(*c, bytes, "another MAC"));
  auto bad = bytes;
  uint32_t nonzero = uint32_t(bad[0] | bad[1] << 8 | bad[2] << 16 | bad[3] << 24);
  bad[4 + 8 * nonzero + 2 * 10] ^= 1;  // an EEPROM word
  CHECK(refused(*b, bad, "checksum"));
  CHECK(refused(*c, bytes, "unknown version", 3));
  CHECK(save(*c) == before);
  CHECK_EQ(b->read_reg(0x2818), uint32_t(7));
}


