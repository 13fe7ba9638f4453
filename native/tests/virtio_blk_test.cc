// A virtio-blk PCI function driven without a vCPU: the test plays the guest
// driver through PCI config space (PciHost) and BAR accesses on the MMIO bus,
// with its virtqueue in a GuestMemory over a heap buffer.

#include <cstring>
#include <mutex>
#include <vector>

#include "check.h"
#include "pci_test_util.h"
#include "block/block.h"
#include "block/counting.h"
#include "bus/bus.h"
#include "devices/pci/pci.h"
#include "devices/virtio/blk/device.h"
#include "devices/virtio/pci_transport.h"
#include "devices/virtio/virtio.h"
#include "machine/guest_memory.h"

namespace vt {

using namespace vireo;
using namespace vireo::virtio;

constexpr uint64_t kRamSize = 8 << 20;
constexpr uint64_t kBar4 = 0xe0000000, kBar1 = 0xe1000000;
constexpr int kSlot = 5;

struct Rig : PciTestBus {
  std::shared_ptr<block::BlockBackend> disk;
  std::shared_ptr<VirtioBlk> blk;
  std::shared_ptr<VirtioPci> fn;
  std::vector<std::pair<uint64_t, uint32_t>> msis;
  std::vector<std::pair<uint64_t, bool>> notify_maps;

  explicit Rig(std::shared_ptr<block::BlockBackend> d, VirtioBlk::Options o = {})
      : PciTestBus(kRamSize, kSlot), disk(std::move(d)) {
    blk = std::make_shared<VirtioBlk>(disk, o);
    VirtioPci::Hooks h;
    h.msi = [this](uint64_t a, uint32_t v) {
      std::lock_guard g(mu);
      msis.push_back({a, v});
    };
    h.notify_mapped = [this](int, uint64_t gpa, bool m) { notify_maps.push_back({gpa, m}); };
    fn = std::make_shared<VirtioPci>(blk, &mem, h);
    host.attach(kSlot, 0, fn);
    cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
    cfgw(pci::kBar0 + 20, 4, 0);
    cfgw(pci::kBar0 + 4, 4, uint32_t(kBar1));
    cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
  }
  uint64_t r(uint64_t off, int size) { return mmio_read(kBar4 + off, size); }
  void w(uint64_t off, int size, uint64_t v) { mmio_write(kBar4 + off, size, v); }
  void msix_w(uint64_t off, uint32_t v) {
    uint8_t b[4];
    u64_to_span(v, b);
    mmio.write(kBar1 + off, b);
  }
  uint8_t status() { return uint8_t(r(0x14, 1)); }
  int msi_count() {
    std::lock_guard g(mu);
    return int(msis.size());
  }
  bool intx_level() {
    std::lock_guard g(mu);
    return intx;
  }
};

// The driver's side of queue 0, rings at fixed addresses.
struct Driver {
  Rig& rig;
  uint16_t size;
  uint64_t desc = 0x10000, avail = 0x20000, used = 0x30000;
  uint16_t avail_idx = 0, next_desc = 0;

  Driver(Rig& r, uint64_t features, uint16_t qsize = 16) : rig(r), size(qsize) { init(features); }

  // 3.1.1 driver initialization. Returns the status read back after FEATURES_OK.
  uint8_t negotiate(uint64_t features) {
    rig.w(0x14, 1, 0);
    rig.w(0x14, 1, kStatusAcknowledge);
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver);
    rig.w(0x08, 4, 0);
    rig.w(0x0c, 4, uint32_t(features));
    rig.w(0x08, 4, 1);
    rig.w(0x0c, 4, uint32_t(features >> 32));
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    return rig.status();
  }
  void init(uint64_t features) {
    for (uint64_t a : {desc, avail, used}) {
      if (a + 0x1000 <= kRamSize) std::memset(rig.ram.data() + a, 0, 0x1000);
    }
    avail_idx = next_desc = 0;
    CHECK(negotiate(features) & kStatusFeaturesOk);
    rig.w(0x16, 2, 0);
    rig.w(0x18, 2, size);
    rig.w(0x20, 8, desc);
    rig.w(0x28, 4, uint32_t(avail));
    rig.w(0x2c, 4, 0);
    rig.w(0x30, 8, used);
    rig.w(0x1c, 2, 1);
    rig.w(0x14, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  void set_desc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* p = rig.ram.data() + table + 16ull * i;
    std::memcpy(p, &addr, 8);
    std::memcpy(p + 8, &len, 4);
    std::memcpy(p + 12, &flags, 2);
    std::memcpy(p + 14, &next, 2);
  }
  void publish(uint16_t head) {
    std::memcpy(rig.ram.data() + avail + 4 + 2ull * (avail_idx % size), &head, 2);
    avail_idx++;
    std::memcpy(rig.ram.data() + avail + 2, &avail_idx, 2);
  }
  void kick() { rig.w(VirtioPci::kNotifyOff, 2, 0); }
  uint16_t used_idx() {
    uint16_t v;
    std::memcpy(&v, rig.ram.data() + used + 2, 2);
    return v;
  }
  std::pair<uint32_t, uint32_t> used_elem(uint16_t i) {
    uint32_t e[2];
    std::memcpy(e, rig.ram.data() + used + 4 + 8ull * (i % size), 8);
    return {e[0], e[1]};
  }
  void set_used_event(uint16_t v) { std::memcpy(rig.ram.data() + avail + 4 + 2ull * size, &v, 2); }
  uint16_t avail_event() {
    uint16_t v;
    std::memcpy(&v, rig.ram.data() + used + 4 + 8ull * size, 2);
    return v;
  }

  // Builds a request chain in the descriptor table: header, data buffers
  // (each {gpa, len}), status. Returns the head index. Header and status
  // live at `scratch`.
  struct Buf {
    uint64_t gpa;
    uint32_t len;
  };
  uint64_t scratch(uint16_t head) { return 0x40000 + 0x40ull * head; }
  uint16_t request(uint32_t type, uint64_t sector, std::vector<Buf> data, bool data_writable) {
    uint16_t head = next_desc;
    uint64_t s = scratch(head);
    uint32_t hdr[4] = {type, 0, uint32_t(sector), uint32_t(sector >> 32)};
    std::memcpy(rig.ram.data() + s, hdr, 16);
    rig.ram[s + 16] = 0xee;  // status, to see it written
    uint16_t n = uint16_t(data.size() + 2);
    for (uint16_t k = 0; k < n; k++) {
      uint16_t i = uint16_t((head + k) % size), nx = uint16_t((head + k + 1) % size);
      if (k == 0) set_desc(desc, i, s, 16, kDescNext, nx);
      else if (k == n - 1) set_desc(desc, i, s + 16, 1, kDescWrite, 0);
      else set_desc(desc, i, data[k - 1].gpa, data[k - 1].len, uint16_t(kDescNext | (data_writable ? kDescWrite : 0)), nx);
    }
    next_desc = uint16_t((head + n) % size);
    publish(head);
    return head;
  }
  uint8_t status_of(uint16_t head) { return rig.ram[scratch(head) + 16]; }
};

constexpr uint64_t kFeatures = bit(kFVersion1) | bit(kBlkFFlush) | bit(kBlkFBlkSize) | bit(kBlkFSegMax) |
                               bit(kBlkFDiscard) | bit(kBlkFWriteZeroes);

}  // namespace vt

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <random>
#include <thread>

#include "block/image.h"
#include "devices/virtio/notify_thread.h"

using namespace vt;

namespace {

std::shared_ptr<block::MemoryBackend> pattern_disk(uint64_t sectors = 2048) {
  auto d = std::make_shared<block::MemoryBackend>(sectors * 512);
  for (size_t i = 0; i < d->data.size(); i++) d->data[i] = uint8_t(i / 512 * 7 + i % 251);
  return d;
}

// A backend whose reads wait until released, to hold requests in flight.
struct GateBackend : block::MemoryBackend {
  using MemoryBackend::MemoryBackend;
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  int waiting = 0;
  int pread(void* buf, uint64_t len, uint64_t off) override {
    std::unique_lock g(m);
    waiting++;
    cv.notify_all();
    cv.wait(g, [&] { return open; });
    g.unlock();
    return MemoryBackend::pread(buf, len, off);
  }
  void release() {
    std::lock_guard g(m);
    open = true;
    cv.notify_all();
  }
  bool wait_waiting(int n) {
    std::unique_lock g(m);
    return cv.wait_for(g, std::chrono::seconds(5), [&] { return waiting >= n; });
  }
};

}  // namespace

TEST(pci_identity_and_capabilities) {
  Rig rig(pattern_disk());
  CHECK_EQ(rig.cfgr(pci::kVendorId, 2), 0x1af4u);
  CHECK_EQ(rig.cfgr(pci::kDeviceId, 2), 0x1042u);
  CHECK_EQ(rig.cfgr(pci::kRevision, 1), 1u);
  CHECK_EQ(rig.cfgr(pci::kRevision, 4) >> 8, 0x010000u);
  CHECK_EQ(rig.cfgr(pci::kSubsysVendor, 2), 0x1af4u);
  CHECK_EQ(rig.cfgr(pci::kSubsysId, 2), 2u);
  CHECK_EQ(rig.cfgr(pci::kIntPin, 1), 1u);
  CHECK(rig.cfgr(pci::kStatus, 2) & pci::kStatusCapList);
  // Walk the capability list: every virtio structure once, in BAR4, plus MSI-X.
  bool seen[6] = {};
  bool msix = false;
  int guard = 0;
  for (uint32_t c = rig.cfgr(pci::kCapPtr, 1); c && guard < 48; c = rig.cfgr(c + 1, 1), guard++) {
    uint32_t id = rig.cfgr(c, 1);
    if (id == kPciCapVendor) {
      uint32_t type = rig.cfgr(c + 3, 1);
      CHECK(type >= 1 && type <= 5);
      seen[type] = true;
      if (type != kCapPciCfg) {
        CHECK_EQ(rig.cfgr(c + 4, 1), 4u);
        CHECK(rig.cfgr(c + 12, 4) > 0);
      }
      if (type == kCapNotifyCfg) CHECK_EQ(rig.cfgr(c + 16, 4), VirtioPci::kNotifyMultiplier);
    } else if (id == kPciCapMsix) {
      msix = true;
      CHECK_EQ(rig.cfgr(c + 2, 2) & 0x7ff, 1u);  // two vectors: queue 0 and config
      CHECK_EQ(rig.cfgr(c + 4, 4), 1u);            // table at BAR1 + 0
      CHECK_EQ(rig.cfgr(c + 8, 4), 0x801u);        // PBA at BAR1 + 0x800
    }
  }
  for (int t = 1; t <= 5; t++) CHECK(seen[t]);
  CHECK(msix);
  // BAR4 is a 64-bit memory BAR of 16 KiB; sizing reads back the mask.
  rig.cfgw(pci::kBar0 + 16, 4, 0xffffffff);
  CHECK_EQ(rig.cfgr(pci::kBar0 + 16, 4) & ~0xfu, ~uint32_t(VirtioPci::kBar4Size - 1));
  CHECK_EQ(rig.cfgr(pci::kBar0 + 16, 4) & 0x6, 0x4u);
  rig.cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
  CHECK_EQ(rig.fn->bar_address(4), kBar4);
  // The board learns the notify address when BAR4 maps.
  bool found = false;
  for (auto& [gpa, m] : rig.notify_maps) found |= m && gpa == kBar4 + VirtioPci::kNotifyOff;
  CHECK(found);
}

TEST(feature_negotiation) {
  Rig rig(pattern_disk());
  rig.w(0x00, 4, 0);
  uint64_t f = rig.r(0x04, 4);
  rig.w(0x00, 4, 1);
  f |= rig.r(0x04, 4) << 32;
  CHECK(f & bit(kFVersion1));
  CHECK(f & bit(kFEventIdx));
  CHECK(f & bit(kFIndirectDesc));
  CHECK(f & bit(kBlkFFlush));
  CHECK(f & bit(kBlkFDiscard));
  CHECK(f & bit(kBlkFWriteZeroes));
  CHECK(!(f & bit(kBlkFRo)));
  rig.w(0x00, 4, 2);
  CHECK_EQ(rig.r(0x04, 4), 0u);
  CHECK_EQ(rig.r(0x12, 2), 1u);  // num_queues

  Driver drv(rig, kFeatures);
  // Without VERSION_1 (a legacy driver) FEATURES_OK does not stick.
  CHECK(!(drv.negotiate(kFeatures & ~bit(kFVersion1)) & kStatusFeaturesOk));
  // Nor with a bit the device never offered.
  CHECK(!(drv.negotiate(kFeatures | bit(kBlkFMq)) & kStatusFeaturesOk));
  CHECK(drv.negotiate(kFeatures) & kStatusFeaturesOk);
  CHECK_EQ(rig.fn->driver_features(), kFeatures);
  // After FEATURES_OK the driver's features are fixed.
  rig.w(0x08, 4, 0);
  rig.w(0x0c, 4, 0);
  CHECK_EQ(rig.fn->driver_features(), kFeatures);
  // Reset clears everything.
  rig.w(0x14, 1, 0);
  CHECK_EQ(rig.status(), 0u);
  CHECK_EQ(rig.fn->driver_features(), 0u);
  // Queue size: max 256, the driver may shrink it to a power of two only.
  rig.w(0x16, 2, 0);
  CHECK_EQ(rig.r(0x18, 2), 256u);
  rig.w(0x18, 2, 100);
  CHECK_EQ(rig.r(0x18, 2), 256u);
  rig.w(0x18, 2, 64);
  CHECK_EQ(rig.r(0x18, 2), 64u);
  rig.w(0x16, 2, 7);  // no such queue
  CHECK_EQ(rig.r(0x18, 2), 0u);
}

TEST(config_space) {
  Rig rig(pattern_disk(4096));
  uint64_t off = VirtioPci::kDeviceOff;
  CHECK_EQ(rig.r(off + kBlkCfgCapacity, 8), 4096u);
  CHECK_EQ(rig.r(off + kBlkCfgCapacity, 4), 4096u);
  CHECK_EQ(rig.r(off + kBlkCfgCapacity + 4, 4), 0u);
  CHECK_EQ(rig.r(off + kBlkCfgBlkSize, 4), 512u);
  CHECK_EQ(rig.r(off + kBlkCfgSegMax, 4), 254u);
  CHECK_EQ(rig.r(off + kBlkCfgMaxDiscardSectors, 4), VirtioBlk::kMaxDiscardSectors);
  CHECK_EQ(rig.r(off + kBlkCfgMaxDiscardSeg, 4), VirtioBlk::kMaxDiscardSeg);
  CHECK_EQ(rig.r(off + kBlkCfgMaxWzSeg, 4), VirtioBlk::kMaxDiscardSeg);
}

TEST(read_chain_two_buffers) {
  auto disk = pattern_disk();
  Rig rig(disk);
  Driver drv(rig, kFeatures);
  uint16_t h = drv.request(kBlkTIn, 3, {{0x100000, 512}, {0x200000, 1024}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 1u);
  CHECK_EQ(drv.used_elem(0).first, uint32_t(h));
  CHECK_EQ(drv.used_elem(0).second, 1537u);
  CHECK_EQ(drv.status_of(h), kBlkSOk);
  CHECK(std::memcmp(rig.ram.data() + 0x100000, disk->data.data() + 3 * 512, 512) == 0);
  CHECK(std::memcmp(rig.ram.data() + 0x200000, disk->data.data() + 4 * 512, 1024) == 0);
  // Without MSI-X: INTx and ISR bit 0, cleared by reading ISR.
  CHECK(rig.intx_level());
  CHECK_EQ(rig.r(VirtioPci::kIsrOff, 1), uint64_t(kIsrQueue));
  CHECK(!rig.intx_level());
  CHECK_EQ(rig.r(VirtioPci::kIsrOff, 1), 0u);
}

TEST(write_chain) {
  auto disk = pattern_disk();
  Rig rig(disk);
  Driver drv(rig, kFeatures);
  for (int i = 0; i < 1536; i++) rig.ram[0x100000 + i] = uint8_t(i * 13 + 1);
  uint16_t h = drv.request(kBlkTOut, 10, {{0x100000, 1024}, {0x100400, 512}}, false);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 1u);
  CHECK_EQ(drv.status_of(h), kBlkSOk);
  CHECK_EQ(drv.used_elem(0).second, 1u);
  CHECK(std::memcmp(rig.ram.data() + 0x100000, disk->data.data() + 10 * 512, 1536) == 0);
}

TEST(indirect_chain) {
  auto disk = pattern_disk();
  Rig rig(disk);
  Driver drv(rig, kFeatures | bit(kFIndirectDesc));
  uint64_t table = 0x50000, s = drv.scratch(0);
  uint32_t hdr[4] = {kBlkTIn, 0, 7, 0};
  std::memcpy(rig.ram.data() + s, hdr, 16);
  drv.set_desc(table, 0, s, 16, kDescNext, 1);
  drv.set_desc(table, 1, 0x100000, 512, kDescNext | kDescWrite, 2);
  drv.set_desc(table, 2, 0x180000, 512, kDescNext | kDescWrite, 3);
  drv.set_desc(table, 3, s + 16, 1, kDescWrite, 0);
  drv.set_desc(drv.desc, 0, table, 4 * 16, kDescIndirect, 0);
  drv.publish(0);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 1u);
  CHECK_EQ(drv.status_of(0), kBlkSOk);
  CHECK(std::memcmp(rig.ram.data() + 0x100000, disk->data.data() + 7 * 512, 512) == 0);
  CHECK(std::memcmp(rig.ram.data() + 0x180000, disk->data.data() + 8 * 512, 512) == 0);

  // Not negotiated: an indirect descriptor breaks the device.
  Driver plain(rig, kFeatures);
  plain.set_desc(plain.desc, 0, table, 4 * 16, kDescIndirect, 0);
  plain.publish(0);
  plain.kick();
  rig.blk->drain();
  CHECK(rig.status() & kStatusNeedsReset);
  CHECK_EQ(plain.used_idx(), 0u);
}

TEST(event_idx_suppresses_and_requests_interrupts) {
  auto disk = pattern_disk();
  Rig rig(disk);
  Driver drv(rig, kFeatures | bit(kFEventIdx));
  // Interrupt only when used idx passes used_event: ask for the 3rd completion.
  drv.set_used_event(2);
  for (int i = 0; i < 3; i++) {
    uint16_t h = drv.request(kBlkTIn, uint64_t(i), {{0x100000 + 0x1000ull * i, 512}}, true);
    drv.kick();
    rig.blk->drain();
    CHECK_EQ(drv.status_of(h), kBlkSOk);
    CHECK_EQ(rig.intx_raises, i == 2 ? 1 : 0);
    // The device asks for a notification at the next avail index.
    CHECK_EQ(drv.avail_event(), uint16_t(i + 1));
  }
  CHECK_EQ(drv.used_idx(), 3u);
  rig.r(VirtioPci::kIsrOff, 1);
  // used_event behind: no interrupt for the next one.
  drv.set_used_event(100);
  drv.request(kBlkTFlush, 0, {}, false);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(rig.intx_raises, 1);
  CHECK_EQ(drv.used_idx(), 4u);
}

TEST(no_interrupt_flag_without_event_idx) {
  Rig rig(pattern_disk());
  Driver drv(rig, kFeatures);
  uint16_t flags = kAvailNoInterrupt;
  std::memcpy(rig.ram.data() + drv.avail, &flags, 2);
  drv.request(kBlkTIn, 0, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 1u);
  CHECK_EQ(rig.intx_raises, 0);
}

TEST(flush_reaches_the_backend_after_writes) {
  auto disk = pattern_disk();
  Rig rig(disk);
  Driver drv(rig, kFeatures);
  uint16_t w = drv.request(kBlkTOut, 1, {{0x100000, 512}}, false);
  uint16_t f = drv.request(kBlkTFlush, 0, {}, false);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 2u);
  CHECK_EQ(drv.status_of(w), kBlkSOk);
  CHECK_EQ(drv.status_of(f), kBlkSOk);
  CHECK_EQ(disk->flushes, 1);
  // The flush is a barrier: it completes after the write.
  CHECK_EQ(drv.used_elem(1).first, uint32_t(f));
}

TEST(get_id_returns_the_serial) {
  VirtioBlk::Options o;
  o.serial = "VIREO-SERIAL-0001";
  Rig rig(pattern_disk(), o);
  Driver drv(rig, kFeatures);
  std::memset(rig.ram.data() + 0x100000, 0xff, 32);
  uint16_t h = drv.request(kBlkTGetId, 0, {{0x100000, 20}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(h), kBlkSOk);
  CHECK_EQ(drv.used_elem(0).second, 21u);
  CHECK(std::memcmp(rig.ram.data() + 0x100000, "VIREO-SERIAL-0001\0\0\0", 20) == 0);
  CHECK_EQ(rig.ram[0x100000 + 20], 0xff);
  // Unknown request types are UNSUPP.
  uint16_t u = drv.request(99, 0, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(u), kBlkSUnsupp);
}

TEST(discard_and_write_zeroes_on_a_raw_file) {
  char path[] = "/tmp/vireo-virtio-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  std::vector<uint8_t> fill(1 << 20, 0xaa);
  CHECK_EQ(write(fd, fill.data(), fill.size()), ssize_t(fill.size()));
  close(fd);
  block::OpenOptions oo;
  oo.format = "raw";
  std::string err;
  auto be = block::open_block(path, oo, &err);
  CHECK(be != nullptr);
  std::shared_ptr<block::BlockBackend> disk(std::move(be));
  {
    Rig rig(disk);
    Driver drv(rig, kFeatures);
    // Two write-zeroes segments: sectors 8..15 and 100..101.
    struct Seg {
      uint64_t sector;
      uint32_t num, flags;
    } segs[2] = {{8, 8, 0}, {100, 2, 1}};
    std::memcpy(rig.ram.data() + 0x100000, segs, sizeof segs);
    uint16_t wz = drv.request(kBlkTWriteZeroes, 0, {{0x100000, sizeof segs}}, false);
    // A discard of sectors 1024..2047 (one 512 KiB aligned run).
    Seg d{1024, 1024, 0};
    std::memcpy(rig.ram.data() + 0x101000, &d, sizeof d);
    uint16_t dc = drv.request(kBlkTDiscard, 0, {{0x101000, sizeof d}}, false);
    // Discard with the unmap flag: UNSUPP (5.2.6.2). Past the end: IOERR.
    Seg bad{0, 1, 1};
    std::memcpy(rig.ram.data() + 0x102000, &bad, sizeof bad);
    uint16_t un = drv.request(kBlkTDiscard, 0, {{0x102000, sizeof bad}}, false);
    Seg past{2047, 2, 0};
    std::memcpy(rig.ram.data() + 0x103000, &past, sizeof past);
    uint16_t pe = drv.request(kBlkTWriteZeroes, 0, {{0x103000, sizeof past}}, false);
    uint16_t half = drv.request(kBlkTDiscard, 0, {{0x101000, 8}}, false);  // not a whole segment
    drv.kick();
    rig.blk->drain();
    CHECK_EQ(drv.used_idx(), 5u);
    CHECK_EQ(drv.status_of(wz), kBlkSOk);
    CHECK_EQ(drv.status_of(dc), kBlkSOk);
    CHECK_EQ(drv.status_of(un), kBlkSUnsupp);
    CHECK_EQ(drv.status_of(pe), kBlkSIoErr);
    CHECK_EQ(drv.status_of(half), kBlkSIoErr);
  }
  std::vector<uint8_t> buf(1 << 20);
  CHECK_EQ(disk->pread(buf.data(), buf.size(), 0), 0);
  auto all = [&](uint64_t from, uint64_t to, uint8_t v) {
    for (uint64_t i = from; i < to; i++) {
      if (buf[i] != v) return false;
    }
    return true;
  };
  CHECK(all(0, 8 * 512, 0xaa));
  CHECK(all(8 * 512, 16 * 512, 0));
  CHECK(all(16 * 512, 100 * 512, 0xaa));
  CHECK(all(100 * 512, 102 * 512, 0));
  CHECK(all(102 * 512, 1024 * 512, 0xaa));
  unlink(path);
}

TEST(read_only_disk_refuses_writes) {
  auto disk = pattern_disk();
  auto before = disk->data;
  VirtioBlk::Options o;
  o.read_only = true;
  Rig rig(disk, o);
  rig.w(0x00, 4, 0);
  CHECK(rig.r(0x04, 4) & bit(kBlkFRo));
  Driver drv(rig, kFeatures | bit(kBlkFRo));
  uint16_t w = drv.request(kBlkTOut, 0, {{0x100000, 512}}, false);
  uint16_t r = drv.request(kBlkTIn, 0, {{0x200000, 512}}, true);
  uint16_t f = drv.request(kBlkTFlush, 0, {}, false);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(w), kBlkSIoErr);
  CHECK_EQ(drv.status_of(r), kBlkSOk);
  CHECK_EQ(drv.status_of(f), kBlkSOk);
  CHECK(disk->data == before);
}

TEST(bad_requests_fail_with_ioerr) {
  auto disk = pattern_disk(64);
  Rig rig(disk);
  Driver drv(rig, kFeatures);
  uint16_t a = drv.request(kBlkTIn, 0, {{kRamSize - 256, 512}}, true);  // buffer runs out of RAM
  uint16_t b = drv.request(kBlkTIn, 0, {{0x100000, 100}}, true);        // not whole sectors
  uint16_t c = drv.request(kBlkTIn, 63, {{0x100000, 1024}}, true);      // past the end
  uint16_t d = drv.request(kBlkTOut, ~0ull >> 1, {{0x100000, 512}}, false);  // sector overflow
  uint16_t e = drv.request(kBlkTOut, 0, {{0xfff00000ull, 512}}, false);      // source not RAM
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 5u);
  for (uint16_t h : {a, b, c, d, e}) CHECK_EQ(drv.status_of(h), kBlkSIoErr);
  CHECK(!(rig.status() & kStatusNeedsReset));
  // The device keeps working.
  uint16_t ok = drv.request(kBlkTIn, 1, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(ok), kBlkSOk);
}

TEST(descriptor_loop_sets_needs_reset_and_reset_recovers) {
  Rig rig(pattern_disk());
  Driver drv(rig, kFeatures);
  // 0 -> 1 -> 0 -> ... never ends.
  drv.set_desc(drv.desc, 0, 0x40000, 16, kDescNext, 1);
  drv.set_desc(drv.desc, 1, 0x100000, 512, kDescNext, 0);
  drv.publish(0);
  drv.kick();
  rig.blk->drain();
  CHECK(rig.status() & kStatusNeedsReset);
  CHECK(rig.fn->needs_reset_reason().find("longer than the queue") != std::string::npos);
  CHECK_EQ(drv.used_idx(), 0u);
  // A configuration-change interrupt told the driver.
  CHECK_EQ(rig.r(VirtioPci::kIsrOff, 1), uint64_t(kIsrConfig));
  // Kicks are ignored until reset; after reset the device works again.
  drv.kick();
  drv.init(kFeatures);
  CHECK(!(rig.status() & kStatusNeedsReset));
  uint16_t h = drv.request(kBlkTIn, 0, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(h), kBlkSOk);
}

TEST(broken_rings_set_needs_reset) {
  struct Case {
    const char* name;
    std::function<void(Driver&)> make;
  };
  std::vector<Case> cases = {
      {"head past table", [](Driver& d) { d.publish(200); }},
      {"next out of range",
       [](Driver& d) {
         d.set_desc(d.desc, 0, 0x40000, 16, kDescNext, 99);
         d.publish(0);
       }},
      {"descriptor table outside RAM",
       [](Driver& d) {
         d.rig.w(0x14, 1, 0);
         d.desc = kRamSize - 64;
         d.init(kFeatures);
         d.publish(0);
       }},
      {"indirect too long",
       [](Driver& d) {
         d.rig.w(0x14, 1, 0);
         d.init(kFeatures | bit(kFIndirectDesc));
         d.set_desc(d.desc, 0, 0x50000, 16 * 64, kDescIndirect, 0);  // 64 > queue size 16
         d.publish(0);
       }},
      {"indirect with next",
       [](Driver& d) {
         d.rig.w(0x14, 1, 0);
         d.init(kFeatures | bit(kFIndirectDesc));
         d.set_desc(d.desc, 0, 0x50000, 32, kDescIndirect | kDescNext, 1);
         d.publish(0);
       }},
      {"readable after writable",
       [](Driver& d) {
         d.set_desc(d.desc, 0, 0x40000, 16, kDescNext, 1);
         d.set_desc(d.desc, 1, 0x40010, 1, kDescNext | kDescWrite, 2);
         d.set_desc(d.desc, 2, 0x100000, 512, 0, 0);
         d.publish(0);
       }},
      {"no status byte",
       [](Driver& d) {
         d.set_desc(d.desc, 0, 0x40000, 16, 0, 0);
         d.publish(0);
       }},
      {"avail idx far ahead",
       [](Driver& d) {
         uint16_t v = 1000;
         std::memcpy(d.rig.ram.data() + d.avail + 2, &v, 2);
       }},
  };
  for (auto& c : cases) {
    Rig rig(pattern_disk());
    Driver drv(rig, kFeatures);
    c.make(drv);
    drv.kick();
    rig.blk->drain();
    if (!(rig.status() & kStatusNeedsReset)) throw vireo_test::Failure{std::string("no NEEDS_RESET for: ") + c.name};
  }
}

TEST(several_requests_in_flight) {
  auto disk = std::make_shared<GateBackend>(64 * 512);
  for (size_t i = 0; i < disk->data.size(); i++) disk->data[i] = uint8_t(i / 512);
  VirtioBlk::Options o;
  o.io_threads = 4;
  Rig rig(disk, o);
  Driver drv(rig, kFeatures, 32);
  std::vector<uint16_t> heads;
  for (int i = 0; i < 8; i++) heads.push_back(drv.request(kBlkTIn, uint64_t(i), {{0x100000 + 0x1000ull * i, 512}}, true));
  drv.kick();  // returns at once: the vCPU is not held by the I/O
  CHECK(disk->wait_waiting(4));
  CHECK_EQ(rig.blk->in_flight(), 8u);
  CHECK_EQ(drv.used_idx(), 0u);
  disk->release();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 8u);
  for (int i = 0; i < 8; i++) {
    CHECK_EQ(drv.status_of(heads[size_t(i)]), kBlkSOk);
    CHECK_EQ(rig.ram[0x100000 + 0x1000ull * i + 17], uint8_t(i));
  }
}

TEST(reset_with_requests_in_flight_drops_their_completions) {
  auto disk = std::make_shared<GateBackend>(64 * 512);
  Rig rig(disk);
  Driver drv(rig, kFeatures);
  std::memset(rig.ram.data() + 0x100000, 0x5a, 512);
  uint16_t h = drv.request(kBlkTIn, 0, {{0x100000, 512}}, true);
  drv.kick();
  CHECK(disk->wait_waiting(1));
  rig.w(0x14, 1, 0);  // reset while the read is running
  disk->release();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 0u);           // nothing written after the reset
  CHECK_EQ(rig.ram[0x100000], 0x5a);
  CHECK_EQ(drv.status_of(h), 0xee);
}

TEST(msix_vectors_mask_and_pending_bits) {
  Rig rig(pattern_disk());
  uint8_t cap = rig.fn->msix_cap();
  rig.cfgw(cap + 2, 2, 0x8000);  // MSI-X enable
  Driver drv(rig, kFeatures);
  rig.w(0x10, 2, 1);             // config changes -> vector 1
  CHECK_EQ(rig.r(0x10, 2), 1u);
  rig.w(0x16, 2, 0);
  rig.w(0x1a, 2, 0);             // queue 0 -> vector 0
  CHECK_EQ(rig.r(0x1a, 2), 0u);
  rig.w(0x1a, 2, 5);             // no such vector: reads back NO_VECTOR
  CHECK_EQ(rig.r(0x1a, 2), uint64_t(kNoVector));
  rig.w(0x1a, 2, 0);
  rig.msix_w(0, 0xfee00000);
  rig.msix_w(4, 0);
  rig.msix_w(8, 0x4041);
  rig.msix_w(12, 0);             // unmask vector 0
  drv.request(kBlkTIn, 0, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(rig.msi_count(), 1);
  CHECK_EQ(rig.msis[0].first, 0xfee00000u);
  CHECK_EQ(rig.msis[0].second, 0x4041u);
  CHECK(!rig.intx_level());
  CHECK_EQ(rig.r(VirtioPci::kIsrOff, 1), 0u);  // ISR is not used with MSI-X
  // Masked: the message waits in the PBA until unmasked.
  rig.msix_w(12, 1);
  drv.request(kBlkTIn, 1, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(rig.msi_count(), 1);
  uint8_t pba[4];
  rig.mmio.read(kBar1 + VirtioPci::kPbaOff, pba);
  CHECK_EQ(pba[0] & 1, 1);
  rig.msix_w(12, 0);
  CHECK_EQ(rig.msi_count(), 2);
  rig.mmio.read(kBar1 + VirtioPci::kPbaOff, pba);
  CHECK_EQ(pba[0] & 1, 0);
  // Function mask in the capability works the same way.
  rig.cfgw(cap + 2, 2, 0xc000);
  drv.request(kBlkTIn, 2, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(rig.msi_count(), 2);
  rig.cfgw(cap + 2, 2, 0x8000);
  CHECK_EQ(rig.msi_count(), 3);
}

TEST(pci_cfg_capability_window) {
  Rig rig(pattern_disk(4096));
  uint8_t c = rig.fn->cap_offset(kCapPciCfg);
  CHECK(c != 0);
  // Read capacity (device cfg offset 0) through config space.
  rig.cfgw(c + 4, 1, 4);
  rig.cfgw(c + 8, 4, uint32_t(VirtioPci::kDeviceOff));
  rig.cfgw(c + 12, 4, 4);
  CHECK_EQ(rig.cfgr(c + 16, 4), 4096u);
  // Write device_status through it.
  rig.cfgw(c + 8, 4, 0x14);
  rig.cfgw(c + 12, 4, 1);
  rig.cfgw(c + 16, 1, kStatusAcknowledge);
  CHECK_EQ(rig.status(), kStatusAcknowledge);
  // Bad windows are ignored.
  rig.cfgw(c + 12, 4, 3);
  rig.cfgw(c + 16, 4, 0);
  CHECK_EQ(rig.status(), kStatusAcknowledge);
  rig.cfgw(c + 8, 4, 0xfffffff0u);
  rig.cfgw(c + 12, 4, 4);
  rig.cfgr(c + 16, 4);
}

TEST(no_dma_without_bus_master) {
  Rig rig(pattern_disk());
  Driver drv(rig, kFeatures);
  rig.cfgw(pci::kCommand, 2, pci::kCmdMem);
  drv.request(kBlkTIn, 0, {{0x100000, 512}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 0u);
  rig.cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.used_idx(), 1u);
}

TEST(notify_thread_kicks_through_eventfds) {
  std::vector<std::tuple<uint64_t, int, bool>> binds;
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> kicks;
  {
    NotifyThread t(2, [&](uint64_t gpa, int efd, bool assign) {
      binds.push_back({gpa, efd, assign});
      return 0;
    });
    t.start([&](int q) {
      std::lock_guard g(m);
      kicks.push_back(q);
      cv.notify_all();
    });
    t.mapped(1, 0xe0003004, true);
    CHECK(t.bound(1));
    CHECK(!t.bound(0));
    CHECK_EQ(binds.size(), size_t(1));
    uint64_t one = 1;
    CHECK_EQ(write(std::get<1>(binds[0]), &one, 8), ssize_t(8));
    std::unique_lock g(m);
    CHECK(cv.wait_for(g, std::chrono::seconds(5), [&] { return !kicks.empty(); }));
    CHECK_EQ(kicks[0], 1);
    g.unlock();
    t.mapped(1, 0, false);
    CHECK(!t.bound(1));
    // A refused binding leaves the queue on plain MMIO.
  }
  CHECK_EQ(binds.size(), size_t(2));
  CHECK(!std::get<2>(binds[1]));
}

// A queue handed off to another thread (virtio-net's transmit queue on
// slirp's loop): still bound and unbound by mapped(), but its kicks are left
// in the eventfd for that thread; the other queues' kicks come as before.
TEST(notify_thread_leaves_a_handed_off_queue_alone) {
  std::vector<std::pair<int, bool>> binds;
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> kicks;
  {
    NotifyThread t(2, [&](uint64_t, int efd, bool assign) {
      binds.push_back({efd, assign});
      return 0;
    });
    int efd1 = t.eventfd(1);
    CHECK(efd1 >= 0);
    CHECK(t.eventfd(0) >= 0 && t.eventfd(0) != efd1);
    CHECK_EQ(t.eventfd(2), -1);
    t.hand_off(1);
    t.start([&](int q) {
      std::lock_guard g(m);
      kicks.push_back(q);
      cv.notify_all();
    });
    t.mapped(0, 0xe0003000, true);
    t.mapped(1, 0xe0003004, true);
    CHECK(t.bound(1));
    CHECK_EQ(binds.size(), size_t(2));
    CHECK_EQ(binds[1].first, efd1);
    uint64_t one = 1, v = 0;
    CHECK_EQ(write(efd1, &one, 8), ssize_t(8));
    CHECK_EQ(write(t.eventfd(0), &one, 8), ssize_t(8));
    std::unique_lock g(m);
    CHECK(cv.wait_for(g, std::chrono::seconds(5), [&] { return !kicks.empty(); }));
    g.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    g.lock();
    CHECK(kicks == std::vector<int>{0});
    g.unlock();
    // Queue 1's kick is still there for its own poller.
    CHECK_EQ(read(efd1, &v, 8), ssize_t(8));
    CHECK_EQ(v, 1u);
    t.hand_off(0);  // after start(): refused, queue 0 stays with the thread
    CHECK_EQ(write(t.eventfd(0), &one, 8), ssize_t(8));
    g.lock();
    CHECK(cv.wait_for(g, std::chrono::seconds(5), [&] { return kicks.size() == 2; }));
  }
}

// Seeded random traffic at every register the guest can reach: config
// space, both BARs at every offset, the notify region, and garbage in guest
// RAM where the rings are. The device may refuse and go to NEEDS_RESET; the
// host must not crash, hang, or touch memory outside guest RAM (ASan builds).
TEST(fuzz_registers_and_rings) {
  std::mt19937_64 rng(0x7669727469ull);
  auto disk = pattern_disk(256);
  Rig rig(disk);
  auto rnd = [&](uint64_t n) { return n ? rng() % n : 0; };
  const int sizes[] = {1, 2, 4, 8};
  for (int iter = 0; iter < 200000; iter++) {
    int size = sizes[rnd(4)];
    uint64_t v = rng();
    if (rnd(8) == 0) v &= 0xff;
    switch (rnd(10)) {
      case 0: {
        // Config space; keep BARs where the fuzzer can find them most of the time.
        uint32_t reg = uint32_t(rnd(256));
        if (reg >= 0x10 && reg < 0x28 && rnd(4)) break;
        rig.cfgw(reg, size > 4 ? 4 : size, uint32_t(v));
        break;
      }
      case 1:
        rig.cfgr(uint32_t(rnd(256)), size > 4 ? 4 : size);
        break;
      case 2:
      case 3:
        rig.w(rnd(VirtioPci::kBar4Size), size, v);
        break;
      case 4:
        rig.r(rnd(VirtioPci::kBar4Size), size);
        break;
      case 5: {
        uint8_t b[8];
        u64_to_span(v, {b, size_t(size)});
        if (rnd(2)) rig.mmio.write(kBar1 + rnd(VirtioPci::kMsixBarSize), {b, size_t(size)});
        else rig.mmio.read(kBar1 + rnd(VirtioPci::kMsixBarSize), {b, size_t(size)});
        break;
      }
      case 6:
        // Scribble where rings and buffers tend to be.
        for (int k = 0; k < 16; k++) rig.ram[rnd(0x60000)] = uint8_t(rng());
        break;
      case 7:
        rig.w(VirtioPci::kNotifyOff + 4 * rnd(3), 2, 0);
        break;
      case 8:
        if (rnd(50) == 0) {
          // Now and then a well-formed start, so the fuzzer gets past set-up.
          rig.cfgw(pci::kBar0 + 16, 4, uint32_t(kBar4));
          rig.cfgw(pci::kBar0 + 20, 4, 0);
          rig.cfgw(pci::kBar0 + 4, 4, uint32_t(kBar1));
          rig.cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdMaster);
          Driver d(rig, kFeatures | bit(kFIndirectDesc) | bit(kFEventIdx), uint16_t(1u << (1 + rnd(8))));
          for (int k = 0; k < 4; k++) d.request(uint32_t(rnd(16)), rnd(300), {{rnd(kRamSize + 4096), uint32_t(rnd(4096))}}, rnd(2));
          d.kick();
        }
        break;
      case 9:
        if (rnd(100) == 0) rig.blk->drain();
        if (rnd(5000) == 0) rig.host.reset_all();
        break;
    }
  }
  rig.blk->drain();
}

// Issue 15, finding 6: a guest must not make the host allocate without bound.
// Opens the gate however the test ends, so a failed check cannot leave I/O
// threads blocked (and the test hung) in the rig's destructor.
struct OpenGateAtEnd {
  GateBackend& g;
  ~OpenGateAtEnd() { g.release(); }
};

TEST(head_made_available_again_while_in_flight_sets_needs_reset) {
  auto disk = std::make_shared<GateBackend>(64 * 512);
  Rig rig(disk);
  OpenGateAtEnd open_at_end{*disk};
  Driver drv(rig, kFeatures, 32);
  uint16_t h = drv.request(kBlkTIn, 0, {{0x100000, 512}}, true);
  drv.kick();
  CHECK(disk->wait_waiting(1));
  for (int i = 0; i < 8; i++) drv.publish(h);  // the same chain again and again, before it was used
  drv.kick();
  CHECK(rig.status() & kStatusNeedsReset);
  CHECK_EQ(rig.blk->in_flight(), 1u);  // nothing more was started
  disk->release();
  rig.blk->drain();
}

TEST(bytes_in_flight_are_capped_and_waiting_requests_start_as_room_frees) {
  constexpr uint32_t kSeg = 4u << 20;  // 8 x 4 MiB segments = one 32 MiB request
  auto disk = std::make_shared<GateBackend>(VirtioBlk::kMaxRequestBytes);
  for (size_t i = 0; i < disk->data.size(); i += 4096) disk->data[i] = uint8_t(i >> 20);
  VirtioBlk::Options o;
  o.io_threads = 4;
  Rig rig(disk, o);
  OpenGateAtEnd open_at_end{*disk};
  Driver drv(rig, kFeatures, 64);
  std::vector<Driver::Buf> bufs(VirtioBlk::kMaxRequestBytes / kSeg, Driver::Buf{0x400000, kSeg});
  const int n = 4;  // 4 x 32 MiB = twice the cap
  std::vector<uint16_t> heads;
  for (int i = 0; i < n; i++) heads.push_back(drv.request(kBlkTIn, 0, bufs, true));
  drv.kick();
  CHECK(disk->wait_waiting(2));
  {
    std::lock_guard g(rig.fn->lock());
    CHECK_EQ(rig.blk->bytes_in_flight(), VirtioBlk::kMaxBytesInFlight);
    CHECK_EQ(rig.blk->deferred(), size_t(n - 2));
  }
  CHECK_EQ(rig.blk->in_flight(), 2u);
  CHECK(!(rig.status() & kStatusNeedsReset));
  disk->release();
  rig.blk->drain();
  // drain() waits for what was submitted; the waiting ones start as earlier ones finish.
  for (int spin = 0; spin < 200 && drv.used_idx() < n; spin++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    rig.blk->drain();
  }
  CHECK_EQ(drv.used_idx(), uint16_t(n));
  for (uint16_t h : heads) CHECK_EQ(drv.status_of(h), kBlkSOk);
  std::lock_guard g(rig.fn->lock());
  CHECK_EQ(rig.blk->bytes_in_flight(), 0u);
  CHECK_EQ(rig.blk->deferred(), 0u);
}

// The board's per-disk counters (block/counting.h) see virtio-blk requests,
// which run on the device's I/O threads.
TEST(counting_backend_sees_virtio_reads_and_writes) {
  auto disk = pattern_disk();
  auto io = std::make_shared<block::IoCounters>();
  Rig rig(std::make_shared<block::CountingBackend>(disk, io));
  Driver drv(rig, kFeatures);
  uint16_t h = drv.request(kBlkTIn, 3, {{0x100000, 512}, {0x200000, 1024}}, true);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(h), kBlkSOk);
  CHECK(std::memcmp(rig.ram.data() + 0x100000, disk->data.data() + 3 * 512, 512) == 0);
  CHECK_EQ(io->read_bytes.load(), 1536u);
  CHECK(io->read_ops.load() >= 1u);
  CHECK_EQ(io->write_bytes.load(), 0u);
  h = drv.request(kBlkTOut, 10, {{0x100000, 1024}}, false);
  drv.kick();
  rig.blk->drain();
  CHECK_EQ(drv.status_of(h), kBlkSOk);
  CHECK_EQ(io->write_bytes.load(), 1024u);
  CHECK(io->write_ops.load() >= 1u);
}
