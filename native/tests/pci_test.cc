#include "devices/pci/pci.h"

#include <memory>
#include <vector>

#include "check.h"

using namespace vireo;
using namespace vireo::pci;

namespace {

struct Regs : IoDevice {
  uint64_t last_off = ~0ull;
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  void read(uint64_t off, std::span<uint8_t> d) override {
    last_off = off;
    u64_to_span(0xa0 + off, d);
  }
  void write(uint64_t off, std::span<const uint8_t> d) override { writes.push_back({off, span_to_u64(d)}); }
};

struct TestFn : PciFunction {
  std::shared_ptr<Regs> io = std::make_shared<Regs>();
  std::shared_ptr<Regs> mem = std::make_shared<Regs>();
  std::shared_ptr<Regs> mem64 = std::make_shared<Regs>();
  std::vector<std::tuple<int, uint64_t, bool>> events;
  TestFn() {
    set_ids(0x1234, 0x5678, 0x030000, 0x02);
    add_bar(0, 0x20, BarKind::Io, io);
    add_bar(1, 0x1000, BarKind::Mem32, mem);
    add_bar(2, 0x100000, BarKind::Mem64Prefetch, mem64);
    set_interrupt_pin(1);
  }
  void bar_mapped(int bar, uint64_t addr, bool mapped) override { events.push_back({bar, addr, mapped}); }
};

struct Rig {
  Bus pio, mmio;
  PciHost host{pio, mmio};
  std::shared_ptr<TestFn> fn = std::make_shared<TestFn>();
  std::vector<std::tuple<int, int, bool>> intx;
  Rig() {
    host.attach(3, 0, fn);
    pio.insert(host.config_port(), 0xcf8, 8, "pci-cfg");
    host.route_intx = [this](int slot, int pin, bool level) { intx.push_back({slot, pin, level}); };
  }
  void outl(uint16_t port, uint32_t v) {
    uint8_t b[4];
    u64_to_span(v, b);
    pio.write(port, b);
  }
  void outw(uint16_t port, uint16_t v) {
    uint8_t b[2];
    u64_to_span(v, b);
    pio.write(port, b);
  }
  void outb(uint16_t port, uint8_t v) { pio.write(port, {&v, 1}); }
  uint32_t inl(uint16_t port) {
    uint8_t b[4];
    pio.read(port, b);
    return uint32_t(span_to_u64(b));
  }
  uint16_t inw(uint16_t port) {
    uint8_t b[2];
    pio.read(port, b);
    return uint16_t(span_to_u64(b));
  }
  uint8_t inb(uint16_t port) {
    uint8_t b;
    pio.read(port, {&b, 1});
    return b;
  }
  static uint32_t addr(int slot, int fn, int reg) { return 0x80000000u | (slot << 11) | (fn << 8) | (reg & 0xfc); }
  uint32_t cfgl(int slot, int fn, int reg) {
    outl(0xcf8, addr(slot, fn, reg));
    return inl(0xcfc);
  }
  void cfgl_w(int slot, int fn, int reg, uint32_t v) {
    outl(0xcf8, addr(slot, fn, reg));
    outl(0xcfc, v);
  }
  uint64_t mmio_read(uint64_t a, int size = 4) {
    uint8_t b[8];
    mmio.read(a, {b, size_t(size)});
    return span_to_u64({b, size_t(size)});
  }
};

}  // namespace

TEST(mechanism1_reads_ids_and_absent_all_ones) {
  Rig r;
  CHECK_EQ(r.cfgl(3, 0, 0), 0x56781234u);
  CHECK_EQ(r.cfgl(3, 0, 8), 0x03000002u);
  CHECK_EQ(r.cfgl(4, 0, 0), 0xffffffffu);
  CHECK_EQ(r.cfgl(3, 1, 0), 0xffffffffu);
  // Address register reads back as written (low bits cleared).
  r.outl(0xcf8, Rig::addr(3, 0, 0) | 3);
  CHECK_EQ(r.inl(0xcf8), Rig::addr(3, 0, 0));
  // Enable bit clear: data port reads all-ones.
  r.outl(0xcf8, Rig::addr(3, 0, 0) & 0x7fffffff);
  CHECK_EQ(r.inl(0xcfc), 0xffffffffu);
  // Non-zero bus: absent.
  r.outl(0xcf8, Rig::addr(3, 0, 0) | (1 << 16));
  CHECK_EQ(r.inl(0xcfc), 0xffffffffu);
}

TEST(mechanism1_byte_and_word_at_offset) {
  Rig r;
  r.outl(0xcf8, Rig::addr(3, 0, 0));
  CHECK_EQ(r.inb(0xcfc), 0x34);
  CHECK_EQ(r.inb(0xcfd), 0x12);
  CHECK_EQ(r.inb(0xcfe), 0x78);
  CHECK_EQ(r.inw(0xcfe), 0x5678);
  // Byte write to interrupt line at 0x3c via 0xcfc + (0x3c & 3).
  r.outl(0xcf8, Rig::addr(3, 0, 0x3c));
  r.outb(0xcfc, 11);
  CHECK_EQ(r.inw(0xcfc), 0x010b);  // pin 1 read-only, line 11
  r.outb(0xcfd, 3);                // interrupt pin is read-only
  CHECK_EQ(r.inb(0xcfd), 1);
  // Vendor ID is read-only.
  r.cfgl_w(3, 0, 0, 0);
  CHECK_EQ(r.cfgl(3, 0, 0), 0x56781234u);
}

TEST(cf9_byte_access_forwarded) {
  Rig r;
  auto rcr = std::make_shared<Regs>();
  r.host.cf8_other = rcr;
  r.outb(0xcf9, 0x06);
  CHECK_EQ(rcr->writes.size(), size_t(1));
  CHECK_EQ(rcr->writes[0].first, uint64_t(1));
  CHECK_EQ(rcr->writes[0].second, uint64_t(6));
  // The address register is unaffected by the byte write.
  r.outl(0xcf8, Rig::addr(3, 0, 0));
  r.outb(0xcf9, 0);
  CHECK_EQ(r.inl(0xcf8), Rig::addr(3, 0, 0));
}

TEST(bar_sizing_io_mem_mem64) {
  Rig r;
  CHECK_EQ(r.cfgl(3, 0, 0x10), 1u);    // I/O flag
  CHECK_EQ(r.cfgl(3, 0, 0x18), 0xcu);  // 64-bit prefetchable
  r.cfgl_w(3, 0, 0x10, 0xffffffff);
  CHECK_EQ(r.cfgl(3, 0, 0x10), 0xffffffe1u);
  r.cfgl_w(3, 0, 0x14, 0xffffffff);
  CHECK_EQ(r.cfgl(3, 0, 0x14), 0xfffff000u);
  r.cfgl_w(3, 0, 0x18, 0xffffffff);
  r.cfgl_w(3, 0, 0x1c, 0xffffffff);
  CHECK_EQ(r.cfgl(3, 0, 0x18), 0xfff0000cu);
  CHECK_EQ(r.cfgl(3, 0, 0x1c), 0xffffffffu);
  // Unimplemented BAR reads zero and stays zero.
  r.cfgl_w(3, 0, 0x24, 0xffffffff);
  CHECK_EQ(r.cfgl(3, 0, 0x24), 0u);
}

TEST(large_64bit_bar_sizes_upper_dword) {
  Bus pio, mmio;
  PciHost host(pio, mmio);
  auto f = std::make_shared<PciFunction>();
  f->add_bar(0, 1ull << 33, BarKind::Mem64, nullptr);
  host.attach(0, 0, f);
  host.config_write(0, 0, 0, 0x10, 4, 0xffffffff);
  host.config_write(0, 0, 0, 0x14, 4, 0xffffffff);
  CHECK_EQ(host.config_read(0, 0, 0, 0x10, 4), 0x4u);
  CHECK_EQ(host.config_read(0, 0, 0, 0x14, 4), 0xfffffffeu);
}

TEST(decode_enable_maps_and_disable_unmaps) {
  Rig r;
  r.cfgl_w(3, 0, 0x10, 0xc000);
  r.cfgl_w(3, 0, 0x14, 0xfebf0000);
  r.cfgl_w(3, 0, 0x18, 0x0);
  r.cfgl_w(3, 0, 0x1c, 0x1);  // 0x1_0000_0000
  // Decode off: nothing mapped.
  CHECK(r.pio.device_at(0xc000) == nullptr);
  CHECK(r.mmio.device_at(0xfebf0000) == nullptr);
  r.cfgl_w(3, 0, 4, kCmdIo | kCmdMem);
  CHECK(r.pio.device_at(0xc004) == r.fn->io);
  CHECK(r.mmio.device_at(0xfebf0010) == r.fn->mem);
  CHECK(r.mmio.device_at(0x100000000ull + 0x10) == r.fn->mem64);
  CHECK_EQ(r.fn->bar(2).mapped_at, 0x100000000ull);
  // Device sees an offset.
  CHECK_EQ(r.mmio_read(0xfebf0010), 0xa0u + 0x10);
  CHECK_EQ(r.fn->mem->last_off, uint64_t(0x10));
  // Disable only memory decode: I/O stays.
  r.cfgl_w(3, 0, 4, kCmdIo);
  CHECK(r.mmio.device_at(0xfebf0000) == nullptr);
  CHECK(r.pio.device_at(0xc000) == r.fn->io);
  CHECK(!r.fn->bar(1).mapped);
  r.cfgl_w(3, 0, 4, 0);
  CHECK(r.pio.device_at(0xc000) == nullptr);
  CHECK(r.pio.ranges().size() == 1);  // only the config port remains
  // Callbacks reported map and unmap.
  bool saw_map = false, saw_unmap = false;
  for (auto& [bar, a, m] : r.fn->events) {
    if (bar == 1 && m && a == 0xfebf0000) saw_map = true;
    if (bar == 1 && !m) saw_unmap = true;
  }
  CHECK(saw_map);
  CHECK(saw_unmap);
}

TEST(remap_when_guest_moves_bar) {
  Rig r;
  r.cfgl_w(3, 0, 0x14, 0xfebf0000);
  r.cfgl_w(3, 0, 4, kCmdMem);
  CHECK(r.mmio.device_at(0xfebf0000) == r.fn->mem);
  r.cfgl_w(3, 0, 0x14, 0xfeb00000);
  CHECK(r.mmio.device_at(0xfebf0000) == nullptr);
  CHECK(r.mmio.device_at(0xfeb00000) == r.fn->mem);
  CHECK_EQ(r.fn->bar_address(1), 0xfeb00000ull);
  // Sizing with decode on unmaps (sizing pattern is not a valid address), then restores.
  r.cfgl_w(3, 0, 0x14, 0xffffffff);
  CHECK(!r.fn->bar(1).mapped);
  r.cfgl_w(3, 0, 0x14, 0xfeb00000);
  CHECK(r.fn->bar(1).mapped);
  // Address 0 is not mapped.
  r.cfgl_w(3, 0, 0x14, 0);
  CHECK(!r.fn->bar(1).mapped);
}

TEST(io_bar_above_64k_not_mapped) {
  Rig r;
  r.cfgl_w(3, 0, 0x10, 0x12340);
  r.cfgl_w(3, 0, 4, kCmdIo);
  CHECK(!r.fn->bar(0).mapped);
  r.cfgl_w(3, 0, 0x10, 0xfff0);  // aligned down to the BAR size
  CHECK_EQ(r.fn->bar_address(0), 0xffe0ull);
  CHECK(r.fn->bar(0).mapped);
}

TEST(overlapping_bar_is_left_unmapped) {
  Rig r;
  auto other = std::make_shared<Regs>();
  r.mmio.insert(other, 0xfebf0000, 0x1000, "other");
  r.cfgl_w(3, 0, 0x14, 0xfebf0000);
  r.cfgl_w(3, 0, 4, kCmdMem);
  CHECK(!r.fn->bar(1).mapped);
  CHECK(r.mmio.device_at(0xfebf0000) == other);
}

TEST(expansion_rom_bar) {
  Bus pio, mmio;
  PciHost host(pio, mmio);
  auto f = std::make_shared<PciFunction>();
  std::vector<uint8_t> img(3000, 0);
  img[0] = 0x55;
  img[1] = 0xaa;
  img[2999] = 0x77;
  f->set_rom(img);
  host.attach(2, 0, f);
  host.config_write(0, 2, 0, 0x30, 4, 0xffffffff);
  CHECK_EQ(host.config_read(0, 2, 0, 0x30, 4), 0xfffff001u);  // 4 KiB, enable bit writable
  host.config_write(0, 2, 0, 0x30, 4, 0xfeb40000);          // enable bit clear
  host.config_write(0, 2, 0, 4, 2, kCmdMem);
  CHECK(!f->bar(6).mapped);
  host.config_write(0, 2, 0, 0x30, 4, 0xfeb40001);
  CHECK(f->bar(6).mapped);
  uint8_t b[2];
  mmio.read(0xfeb40000, b);
  CHECK_EQ(b[0], 0x55);
  CHECK_EQ(b[1], 0xaa);
  mmio.read(0xfeb40000 + 2999, {b, 1});
  CHECK_EQ(b[0], 0x77);
  mmio.read(0xfeb40000 + 3500, {b, 1});
  CHECK_EQ(b[0], 0);  // padding
  host.config_write(0, 2, 0, 4, 2, 0);
  CHECK(!f->bar(6).mapped);
}

TEST(capability_list_chains) {
  PciFunction f;
  CHECK_EQ(f.cfg[kStatus] & kStatusCapList, 0);
  uint8_t a = f.add_capability(0x09, 5);
  uint8_t b = f.add_capability(0x11, 12);
  CHECK_EQ(a, 0x40);
  CHECK_EQ(b, 0x48);
  CHECK_EQ(f.cfg[kCapPtr], 0x40);
  CHECK_EQ(f.cfg[0x40], 0x09);
  CHECK_EQ(f.cfg[0x41], 0x48);
  CHECK_EQ(f.cfg[0x48], 0x11);
  CHECK_EQ(f.cfg[0x49], 0);
  CHECK(f.cfg[kStatus] & kStatusCapList);
}

TEST(multifunction_header_type) {
  Rig r;
  CHECK_EQ((r.cfgl(3, 0, 0xc) >> 16) & 0xff, 0u);
  auto f1 = std::make_shared<PciFunction>();
  f1->set_ids(0x8086, 0x7010, 0x010180);
  r.host.attach(3, 1, f1);
  CHECK_EQ((r.cfgl(3, 0, 0xc) >> 16) & 0x80, 0x80u);
  CHECK_EQ(r.cfgl(3, 1, 0), 0x70108086u);
  // The header type is read-only.
  r.cfgl_w(3, 0, 0xc, 0);
  CHECK_EQ((r.cfgl(3, 0, 0xc) >> 16) & 0x80, 0x80u);
}

TEST(intx_status_and_disable) {
  Rig r;
  r.fn->set_intx(true);
  CHECK_EQ(r.intx.size(), size_t(1));
  CHECK_EQ(std::get<0>(r.intx[0]), 3);
  CHECK_EQ(std::get<1>(r.intx[0]), 1);
  CHECK(std::get<2>(r.intx[0]));
  CHECK(r.cfgl(3, 0, 4) & (uint32_t(kStatusIntx) << 16));
  // INTx disable deasserts the line but the status bit still shows the request.
  r.cfgl_w(3, 0, 4, kCmdIntxDisable);
  CHECK_EQ(r.intx.size(), size_t(2));
  CHECK(!std::get<2>(r.intx[1]));
  CHECK(r.cfgl(3, 0, 4) & (uint32_t(kStatusIntx) << 16));
  r.fn->set_intx(false);
  CHECK_EQ(r.intx.size(), size_t(2));  // no change on the wire
  r.cfgl_w(3, 0, 4, 0);
  r.fn->set_intx(true);
  r.fn->set_intx(true);  // repeated level: one edge only
  CHECK_EQ(r.intx.size(), size_t(3));
}

TEST(status_w1c_and_command_mask) {
  Rig r;
  r.fn->cfg[kStatus + 1] = 0x20;  // received master abort
  r.cfgl_w(3, 0, 4, 0x0000ffff);  // writing 0 to status clears nothing
  CHECK_EQ((r.cfgl(3, 0, 4) >> 16) & 0x2000, 0x2000u);
  r.cfgl_w(3, 0, 4, 0x2000ffff);
  uint32_t v = r.cfgl(3, 0, 4);
  CHECK_EQ(v & 0xffff, 0x0547u);    // only writable command bits
  CHECK_EQ((v >> 16) & 0x2000, 0u);  // cleared by writing 1
  CHECK(r.fn->bus_master());
}

TEST(reset_all_clears_bars_and_command) {
  Rig r;
  r.cfgl_w(3, 0, 0x14, 0xfebf0000);
  r.cfgl_w(3, 0, 4, kCmdMem | kCmdMaster);
  CHECK(r.fn->bar(1).mapped);
  r.fn->set_intx(true);
  r.host.reset_all();
  CHECK(!r.fn->bar(1).mapped);
  CHECK_EQ(r.cfgl(3, 0, 4) & 0xffff, 0u);
  CHECK_EQ(r.cfgl(3, 0, 0x14), 0u);
  CHECK_EQ(r.cfgl(3, 0, 0x10), 1u);
  CHECK(!std::get<2>(r.intx.back()));
}

// PciHost::rom_mapped: the ROM image offered as memory while the ROM BAR
// decodes, withdrawn when it moves, is disabled, loses memory decoding or the
// machine resets.
TEST(rom_bar_offered_as_memory_while_decoded) {
  Bus pio, mmio;
  PciHost host(pio, mmio);
  struct Ev {
    uint64_t gpa, size;
    bool mapped;
    std::vector<uint8_t> bytes;
  };
  std::vector<Ev> ev;
  host.rom_mapped = [&](PciFunction& f, uint64_t gpa, uint8_t* p, uint64_t size, bool mapped) {
    CHECK_EQ(f.devfn(), 2 * 8);
    CHECK_EQ(reinterpret_cast<uintptr_t>(p) % PciHost::kRomPage, uintptr_t(0));
    ev.push_back({gpa, size, mapped, std::vector<uint8_t>(p, p + size)});
  };
  auto f = std::make_shared<PciFunction>();
  std::vector<uint8_t> img(40000, 0x11);
  img[0] = 0x55;
  img[1] = 0xaa;
  f->set_rom(img);
  host.attach(2, 0, f);
  host.config_write(0, 2, 0, 0x30, 4, 0xfebe0001);
  CHECK(ev.empty());  // memory decoding still off
  host.config_write(0, 2, 0, 4, 2, kCmdMem);
  CHECK_EQ(ev.size(), size_t(1));
  CHECK_EQ(ev[0].gpa, 0xfebe0000ull);
  CHECK_EQ(ev[0].size, 0x10000ull);  // 40,000 bytes -> a 64 KiB BAR
  CHECK(ev[0].mapped);
  CHECK_EQ(ev[0].bytes[1], 0xaa);
  CHECK_EQ(ev[0].bytes[39999], 0x11);
  CHECK_EQ(ev[0].bytes[40000], 0);  // zero padding to the BAR size
  CHECK_EQ(ev[0].bytes[0xffff], 0);
  // The bus handler stays behind the memory.
  uint8_t b = 0;
  mmio.read(0xfebe0001, {&b, 1});
  CHECK_EQ(b, 0xaa);
  // Moved: withdrawn at the old address, offered at the new one.
  host.config_write(0, 2, 0, 0x30, 4, 0xfeb00001);
  CHECK_EQ(ev.size(), size_t(3));
  CHECK(!ev[1].mapped);
  CHECK_EQ(ev[1].gpa, 0xfebe0000ull);
  CHECK(ev[2].mapped);
  CHECK_EQ(ev[2].gpa, 0xfeb00000ull);
  // Rewriting the same value changes nothing.
  host.config_write(0, 2, 0, 0x30, 4, 0xfeb00001);
  CHECK_EQ(ev.size(), size_t(3));
  // Enable bit cleared: withdrawn (SeaBIOS does this after copying the ROM).
  host.config_write(0, 2, 0, 0x30, 4, 0xfeb00000);
  CHECK_EQ(ev.size(), size_t(4));
  CHECK(!ev[3].mapped);
  CHECK_EQ(ev[3].gpa, 0xfeb00000ull);
  // Enabled again, then memory decoding off: withdrawn.
  host.config_write(0, 2, 0, 0x30, 4, 0xfeb00001);
  CHECK_EQ(ev.size(), size_t(5));
  host.config_write(0, 2, 0, 4, 2, 0);
  CHECK_EQ(ev.size(), size_t(6));
  CHECK(!ev[5].mapped);
  // Reset withdraws it too.
  host.config_write(0, 2, 0, 4, 2, kCmdMem);
  CHECK_EQ(ev.size(), size_t(7));
  CHECK(ev[6].mapped);
  host.reset_all();
  CHECK_EQ(ev.size(), size_t(8));
  CHECK(!ev[7].mapped);
  CHECK_EQ(ev[7].gpa, 0xfeb00000ull);
  CHECK(!f->bar(6).mapped);
}

TEST(small_or_overlapping_rom_bar_stays_on_the_bus_only) {
  Bus pio, mmio;
  PciHost host(pio, mmio);
  int calls = 0;
  host.rom_mapped = [&](PciFunction&, uint64_t, uint8_t*, uint64_t, bool) { calls++; };
  auto f = std::make_shared<PciFunction>();
  f->set_rom(std::vector<uint8_t>(1000, 0x33));  // a 2 KiB BAR: not a page
  host.attach(4, 0, f);
  host.config_write(0, 4, 0, 4, 2, kCmdMem);
  host.config_write(0, 4, 0, 0x30, 4, 0xfebf0801);
  CHECK(f->bar(6).mapped);
  CHECK_EQ(calls, 0);
  uint8_t b = 0;
  mmio.read(0xfebf0800 + 999, {&b, 1});
  CHECK_EQ(b, 0x33);
  // A ROM BAR over another device is not decoded, so not offered either.
  auto g = std::make_shared<PciFunction>();
  g->set_rom(std::vector<uint8_t>(8192, 0x44));
  host.attach(5, 0, g);
  mmio.insert(std::make_shared<Regs>(), 0xfe000000, 0x1000, "other");
  host.config_write(0, 5, 0, 4, 2, kCmdMem);
  host.config_write(0, 5, 0, 0x30, 4, 0xfe000001);
  CHECK(!g->bar(6).mapped);
  CHECK_EQ(calls, 0);
}
