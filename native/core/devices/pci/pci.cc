// PCI function base class and host (config mechanism #1, BAR placement,
// INTx routing). Register semantics follow the PCI Local Bus Spec 3.0,
// chapter 6 (configuration space) and 3.2.2.3.2 (mechanism #1).
#include "devices/pci/pci.h"

#include "machine/state.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>

namespace vireo::pci {

namespace {

constexpr uint32_t kCacheLine = 0x0c, kLatency = 0x0d;
// BAR low flag bits: bit 0 I/O space; memory: bits 2:1 type (10b = 64-bit), bit 3 prefetchable.
constexpr uint32_t kBarIo = 0x1, kBarMem64 = 0x4, kBarPrefetch = 0x8;
constexpr uint32_t kRomEnable = 0x1;
constexpr uint64_t kIoSpaceEnd = 0x10000;  // x86 port space
constexpr uint32_t kRomMinSize = 2048;     // spec: ROM BAR decodes at least 2 KiB
// Status bits that are write-1-to-clear: master data parity error (8),
// signalled/received target abort (11, 12), received master abort (13),
// signalled system error (14), detected parity error (15).
constexpr uint16_t kStatusW1c = 0xf900;
// Command bits a guest may change: I/O, memory, bus master, parity error
// response (6), SERR# (8), INTx disable (10).
constexpr uint16_t kCommandWritable = kCmdIo | kCmdMem | kCmdMaster | (1 << 6) | (1 << 8) | kCmdIntxDisable;

bool is_io(BarKind k) { return k == BarKind::Io; }
bool is_64(BarKind k) { return k == BarKind::Mem64 || k == BarKind::Mem64Prefetch; }
bool is_prefetch(BarKind k) { return k == BarKind::Mem32Prefetch || k == BarKind::Mem64Prefetch; }

uint32_t bar_flags(BarKind k) {
  if (is_io(k)) return kBarIo;
  return (is_64(k) ? kBarMem64 : 0) | (is_prefetch(k) ? kBarPrefetch : 0);
}

// Serves reads of the expansion ROM image through the ROM BAR (zero-padded to the BAR size).
class RomDevice : public IoDevice {
public:
  explicit RomDevice(const std::vector<uint8_t>& img) : img_(img) {}
  StateKind state_kind() const override { return StateKind::None; }  // the image comes from the configuration
  void read(uint64_t off, std::span<uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) d[i] = off + i < img_.size() ? img_[off + i] : 0;
  }
  void write(uint64_t, std::span<const uint8_t>) override {}

private:
  std::vector<uint8_t> img_;
};

// The 0xcf8..0xcff handler. State is the latched address register only.
class ConfigPort : public IoDevice {
public:
  struct State {
    static constexpr uint32_t kVersion = 1;
    uint32_t address = 0;  // CONFIG_ADDRESS (0xcf8)
  };
  explicit ConfigPort(PciHost& h) : host_(h) {}
  State s;

  // The address register and every function's config space: PciHost's
  // section ("pci"), so the bus walk before a save sees this port registered.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return PciHost::kStateVersion; }
  void save(state::StateWriter& w) const override { host_.save_state(w); }
  void load(state::StateReader& r) override { host_.load_state(r); }

  static constexpr uint32_t kEnable = 0x80000000u;

  void read(uint64_t off, std::span<uint8_t> d) override {
    if (off < 4) {
      if (off == 0 && d.size() == 4) {
        u64_to_span(s.address, d);
      } else if (host_.cf8_other) {
        host_.cf8_other->read(off, d);
      } else {
        std::fill(d.begin(), d.end(), 0xff);
      }
      return;
    }
    uint32_t v = 0xffffffffu;
    if ((s.address & kEnable) && off + d.size() <= 8) {
      uint32_t reg = (s.address & 0xfc) + uint32_t(off - 4);
      v = host_.config_read(int((s.address >> 16) & 0xff), int((s.address >> 11) & 0x1f),
                            int((s.address >> 8) & 7), reg, int(d.size()));
    }
    u64_to_span(v, d);
  }

  void write(uint64_t off, std::span<const uint8_t> d) override {
    if (off < 4) {
      if (off == 0 && d.size() == 4) {
        // Bits 1:0 read back as zero; bits 30:24 are reserved (read-only zero).
        s.address = uint32_t(span_to_u64(d)) & 0x80fffffcu;
      } else if (host_.cf8_other) {
        host_.cf8_other->write(off, d);
      }
      return;
    }
    if (!(s.address & kEnable) || off + d.size() > 8) return;
    uint32_t reg = (s.address & 0xfc) + uint32_t(off - 4);
    host_.config_write(int((s.address >> 16) & 0xff), int((s.address >> 11) & 0x1f),
                       int((s.address >> 8) & 7), reg, int(d.size()), uint32_t(span_to_u64(d)));
  }

private:
  PciHost& host_;
};

}  // namespace

// ---------------------------------------------------------------- PciFunction

PciFunction::PciFunction() {
  cfg_set(kCommand, 2, 0);
  wmask[kCommand] = uint8_t(kCommandWritable);
  wmask[kCommand + 1] = uint8_t(kCommandWritable >> 8);
  w1cmask[kStatus] = uint8_t(kStatusW1c);
  w1cmask[kStatus + 1] = uint8_t(kStatusW1c >> 8);
  wmask[kCacheLine] = 0xff;
  wmask[kLatency] = 0xff;
  wmask[kIntLine] = 0xff;
  cfg[kHeaderType] = 0x00;
}

uint32_t PciFunction::cfg_get(uint32_t off, int size) const {
  uint32_t v = 0;
  for (int i = 0; i < size && off + i < 256; i++) v |= uint32_t(cfg[off + i]) << (8 * i);
  return v;
}

void PciFunction::cfg_set(uint32_t off, int size, uint32_t v) {
  for (int i = 0; i < size && off + i < 256; i++) cfg[off + i] = uint8_t(v >> (8 * i));
}

uint32_t PciFunction::config_read(uint32_t offset, int size) {
  std::lock_guard g(cfg_mu_);
  if (offset >= 256 || offset + size > 256) return 0xffffffffu;
  return cfg_get(offset, size);
}

void PciFunction::config_write(uint32_t offset, int size, uint32_t value) {
  std::lock_guard g(cfg_mu_);
  if (offset >= 256 || offset + size > 256) return;
  uint16_t old_cmd = uint16_t(cfg_get(kCommand, 2));
  bool touches_bars = false, touches_cmd = false;
  for (int i = 0; i < size; i++) {
    uint32_t o = offset + i;
    uint8_t b = uint8_t(value >> (8 * i));
    cfg[o] = uint8_t((cfg[o] & ~wmask[o]) | (b & wmask[o]));
    cfg[o] = uint8_t(cfg[o] & ~(b & w1cmask[o]));
    if ((o >= kBar0 && o < kBar0 + 24) || (o >= kRomBar && o < kRomBar + 4)) touches_bars = true;
    if (o == kCommand || o == kCommand + 1) touches_cmd = true;
  }
  uint16_t new_cmd = uint16_t(cfg_get(kCommand, 2));
  if (touches_bars || (touches_cmd && ((old_cmd ^ new_cmd) & (kCmdIo | kCmdMem)))) update_mappings();
  if (touches_cmd && ((old_cmd ^ new_cmd) & kCmdIntxDisable)) update_intx();
}

void PciFunction::set_ids(uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
                          uint16_t subsys_vendor, uint16_t subsys_id) {
  cfg_set(kVendorId, 2, vendor);
  cfg_set(kDeviceId, 2, device);
  cfg_set(kRevision, 1, revision);
  cfg_set(kClassProg, 3, class_code);
  cfg_set(kSubsysVendor, 2, subsys_vendor);
  cfg_set(kSubsysId, 2, subsys_id);
}

void PciFunction::add_bar(int index, uint64_t size, BarKind kind, std::shared_ptr<IoDevice> handler) {
  if (index < 0 || index > 5 || (is_64(kind) && index > 4)) return;
  uint64_t min = is_io(kind) ? 4 : 16;
  if (size < min) size = min;
  // Round up to a power of two so the address mask is contiguous.
  uint64_t p = 1;
  while (p < size) p <<= 1;
  size = p;
  BarInfo& b = bars_[index];
  b.size = size;
  b.kind = kind;
  b.handler = std::move(handler);
  uint32_t off = kBar0 + 4 * index;
  uint32_t flags = bar_flags(kind);
  uint64_t mask = ~(size - 1);
  // Low dword: address bits writable above the size, flag bits read-only.
  uint32_t lo_mask = uint32_t(mask) & (is_io(kind) ? ~3u : ~0xfu);
  cfg_set(off, 4, flags);
  for (int i = 0; i < 4; i++) wmask[off + i] = uint8_t(lo_mask >> (8 * i));
  if (is_64(kind)) {
    uint32_t hi_mask = uint32_t(mask >> 32);
    cfg_set(off + 4, 4, 0);
    for (int i = 0; i < 4; i++) wmask[off + 4 + i] = uint8_t(hi_mask >> (8 * i));
    bars_[index + 1] = BarInfo{};
    bars_[index + 1].upper_half = true;
  }
}

void PciFunction::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

void PciFunction::set_rom(std::vector<uint8_t> image) {
  uint64_t size = kRomMinSize;
  while (size < image.size()) size <<= 1;
  rom_ = std::move(image);
  uint64_t alloc = std::max<uint64_t>(size, PciHost::kRomPage);
  rom_mem_.reset(static_cast<uint8_t*>(std::aligned_alloc(PciHost::kRomPage, alloc)));
  if (rom_mem_) {
    std::memset(rom_mem_.get(), 0, alloc);
    std::memcpy(rom_mem_.get(), rom_.data(), rom_.size());
  }
  BarInfo& b = bars_[6];
  b.size = size;
  b.kind = BarKind::Mem32;
  b.handler = std::make_shared<RomDevice>(rom_);
  uint32_t m = uint32_t(~(size - 1)) | kRomEnable;
  cfg_set(kRomBar, 4, 0);
  for (int i = 0; i < 4; i++) wmask[kRomBar + i] = uint8_t(m >> (8 * i));
}

void PciFunction::set_interrupt_pin(uint8_t pin) { cfg[kIntPin] = pin > 4 ? 0 : pin; }

uint8_t PciFunction::add_capability(uint8_t cap_id, uint8_t len) {
  if (len < 2) len = 2;
  uint32_t off = (next_cap_off_ + 3u) & ~3u;
  if (off < 0x40 || off + len > 256) return 0;
  cfg[off] = cap_id;
  cfg[off + 1] = 0;
  if (last_cap_) {
    cfg[last_cap_ + 1] = uint8_t(off);
  } else {
    cfg[kCapPtr] = uint8_t(off);
  }
  last_cap_ = uint8_t(off);
  next_cap_off_ = uint8_t(std::min<uint32_t>(off + len, 255));
  cfg[kStatus] |= kStatusCapList;
  return uint8_t(off);
}

uint64_t PciFunction::bar_address(int i) const {
  if (i == 6) return cfg_get(kRomBar, 4) & ~uint32_t(kRomMinSize - 1);
  if (i < 0 || i > 5) return 0;
  uint32_t lo = cfg_get(kBar0 + 4 * i, 4);
  if (lo & kBarIo) return lo & ~3u;
  uint64_t a = lo & ~0xfu;
  if ((lo & 0x6) == kBarMem64 && i < 5) a |= uint64_t(cfg_get(kBar0 + 4 * (i + 1), 4)) << 32;
  return a;
}

bool PciFunction::bus_master() const {
  std::lock_guard g(cfg_mu_);
  return cfg_get(kCommand, 2) & kCmdMaster;
}

void PciFunction::map_bar(int i, bool want, uint64_t addr) {
  BarInfo& b = bars_[i];
  if (b.mapped && (!want || b.mapped_at != addr)) {
    if (i == 6 && rom_backed_) {
      rom_backed_ = false;
      host_->rom_mapped(*this, b.mapped_at, rom_mem_.get(), b.size, false);
    }
    if (host_ && b.handler) {
      Bus& bus = is_io(b.kind) ? host_->pio() : host_->mmio();
      bus.remove(b.mapped_at);
    }
    b.mapped = false;
    b.mapped_at = 0;
    bar_mapped(i, 0, false);
  }
  if (want && !b.mapped) {
    bool ok = true;
    if (host_ && b.handler) {
      Bus& bus = is_io(b.kind) ? host_->pio() : host_->mmio();
      ok = bus.insert(b.handler, addr, b.size, name + (i == 6 ? ".rom" : ".bar" + std::to_string(i)));
    }
    if (ok) {
      b.mapped = true;
      b.mapped_at = addr;
      bar_mapped(i, addr, true);
      if (i == 6 && host_ && host_->rom_mapped && rom_mem_ && addr % PciHost::kRomPage == 0 &&
          b.size % PciHost::kRomPage == 0) {
        rom_backed_ = true;
        host_->rom_mapped(*this, addr, rom_mem_.get(), b.size, true);
      }
    }
  }
}

void PciFunction::update_mappings() {
  std::lock_guard g(cfg_mu_);
  uint16_t cmd = uint16_t(cfg_get(kCommand, 2));
  for (int i = 0; i < 7; i++) {
    BarInfo& b = bars_[i];
    if (b.size == 0 || b.upper_half) continue;
    uint64_t addr = bar_address(i);
    uint64_t last = addr + b.size - 1;
    bool want;
    if (i == 6) {
      want = (cmd & kCmdMem) && (cfg_get(kRomBar, 4) & kRomEnable) && addr != 0 && last < 0xffffffffull;
    } else if (is_io(b.kind)) {
      want = (cmd & kCmdIo) && addr != 0 && last < kIoSpaceEnd;
    } else if (is_64(b.kind)) {
      // All-ones in the sizing pattern wraps; also refuse addresses past 2^63.
      want = (cmd & kCmdMem) && addr != 0 && last > addr && (last >> 63) == 0;
    } else {
      want = (cmd & kCmdMem) && addr != 0 && last < 0xffffffffull;
    }
    map_bar(i, want, addr);
  }
}

void PciFunction::set_intx(bool level) {
  std::lock_guard g(cfg_mu_);
  intx_level_ = level;
  if (level) {
    cfg[kStatus] |= kStatusIntx;
  } else {
    cfg[kStatus] &= uint8_t(~kStatusIntx);
  }
  update_intx();
}

void PciFunction::update_intx() {
  bool out = intx_level_ && !(cfg_get(kCommand, 2) & kCmdIntxDisable);
  if (out == intx_asserted_) return;
  intx_asserted_ = out;
  uint8_t pin = cfg[kIntPin];
  if (host_ && pin >= 1 && pin <= 4 && host_->route_intx && devfn_ >= 0) host_->route_intx(devfn_ >> 3, pin, out);
}

void PciFunction::reset_config() {
  std::lock_guard g(cfg_mu_);
  set_intx(false);
  cfg_set(kCommand, 2, 0);
  cfg[kStatus] &= uint8_t(~(w1cmask[kStatus] | kStatusIntx));
  cfg[kStatus + 1] &= uint8_t(~w1cmask[kStatus + 1]);
  for (int i = 0; i < 6; i++) {
    if (bars_[i].size) cfg_set(kBar0 + 4 * i, 4, bar_flags(bars_[i].kind));
    else if (bars_[i].upper_half) cfg_set(kBar0 + 4 * i, 4, 0);
  }
  if (bars_[6].size) cfg_set(kRomBar, 4, 0);
  cfg[kIntLine] = 0;
  cfg[kCacheLine] = 0;
  cfg[kLatency] = 0;
  update_mappings();
}

// ---------------------------------------------------------------- PciHost

void PciHost::attach(int slot, int fn, std::shared_ptr<PciFunction> f) {
  if (slot < 0 || slot > 31 || fn < 0 || fn > 7 || !f) return;
  std::lock_guard g(fns_mu_);
  f->host_ = this;
  f->devfn_ = slot * 8 + fn;
  fns_[slot * 8 + fn] = f;
  // A slot with more than one function announces it in function 0's header type
  // (bit 7); set it on every function of the slot, as real multi-function parts do.
  int count = 0;
  for (int i = 0; i < 8; i++) count += fns_[slot * 8 + i] != nullptr;
  if (count > 1) {
    for (int i = 0; i < 8; i++) {
      if (auto& p = fns_[slot * 8 + i]) p->cfg[kHeaderType] |= 0x80;
    }
  }
}

std::shared_ptr<PciFunction> PciHost::function(int slot, int fn) const {
  if (slot < 0 || slot > 31 || fn < 0 || fn > 7) return nullptr;
  std::lock_guard g(fns_mu_);
  return fns_[slot * 8 + fn];
}

uint32_t PciHost::config_read(int bus, int slot, int fn, uint32_t reg, int size) {
  uint32_t all_ones = size >= 4 ? 0xffffffffu : ((1u << (8 * size)) - 1);
  if (bus != 0 || reg + size > 256) return all_ones;
  auto f = function(slot, fn);
  if (!f) return all_ones;
  return f->config_read(reg, size) & all_ones;
}

void PciHost::config_write(int bus, int slot, int fn, uint32_t reg, int size, uint32_t value) {
  if (bus != 0 || reg + size > 256) return;
  auto f = function(slot, fn);
  if (f) f->config_write(reg, size, value);
}

std::shared_ptr<IoDevice> PciHost::config_port() {
  if (!config_port_) config_port_ = std::make_shared<ConfigPort>(*this);
  return config_port_;
}

void PciHost::reset_all() {
  std::array<std::shared_ptr<PciFunction>, 256> copy;
  {
    std::lock_guard g(fns_mu_);
    copy = fns_;
  }
  for (auto& f : copy) {
    if (!f) continue;
    f->reset_config();
    f->reset();
  }
  if (config_port_) static_cast<ConfigPort*>(config_port_.get())->s.address = 0;
}

}  // namespace vireo::pci

namespace vireo::pci {

// ---------------------------------------------------------------- saved state

namespace {
constexpr uint32_t kConfigAddressMask = 0x80fffffcu;  // what ConfigPort keeps of a write
std::string devfn_name(int devfn) {
  char b[16];
  std::snprintf(b, sizeof b, "%02x.%x", devfn >> 3, devfn & 7);
  return b;
}
}  // namespace

void PciHost::save_state(state::StateWriter& w) const {
  std::array<std::shared_ptr<PciFunction>, 256> copy;
  {
    std::lock_guard g(fns_mu_);
    copy = fns_;
  }
  w.u32(config_port_ ? static_cast<const ConfigPort*>(config_port_.get())->s.address : 0);
  uint32_t n = 0;
  for (auto& f : copy) n += f != nullptr;
  w.u32(n);
  for (int devfn = 0; devfn < 256; devfn++) {
    auto& f = copy[devfn];
    if (!f) continue;
    std::lock_guard g(f->cfg_mu_);
    w.u8(uint8_t(devfn));
    w.bytes(f->cfg.data(), f->cfg.size());
    w.boolean(f->intx_level_);
  }
}

void PciHost::load_state(state::StateReader& r) {
  if (r.version() != kStateVersion) r.fail("unknown version (this Vireo has " + std::to_string(kStateVersion) + ")");
  std::array<std::shared_ptr<PciFunction>, 256> copy;
  {
    std::lock_guard g(fns_mu_);
    copy = fns_;
  }
  struct Fn {
    int devfn;
    std::array<uint8_t, 256> cfg;
    bool intx;
  };
  uint32_t address = r.u32();
  if (address & ~kConfigAddressMask) r.fail("config address register has reserved bits set");
  uint32_t n = r.u32();
  uint32_t have = 0;
  for (auto& f : copy) have += f != nullptr;
  if (n != have)
    r.fail("the state has " + std::to_string(n) + " PCI functions, this machine has " + std::to_string(have));
  std::vector<Fn> fns;
  std::array<bool, 256> seen{};
  for (uint32_t i = 0; i < n; i++) {
    Fn x;
    x.devfn = r.u8();
    r.bytes(x.cfg.data(), x.cfg.size());
    x.intx = r.boolean();
    const auto& f = copy[x.devfn];
    if (!f) r.fail("PCI function " + devfn_name(x.devfn) + " is not on this machine");
    if (seen[x.devfn]) r.fail("PCI function " + devfn_name(x.devfn) + " appears twice");
    seen[x.devfn] = true;
    // The same device: IDs, revision and class, header type, and each BAR's
    // read-only kind bits (the BAR layout).
    std::lock_guard g(f->cfg_mu_);
    auto differs = [&](uint32_t off, uint32_t len) {
      for (uint32_t k = off; k < off + len; k++)
        if (x.cfg[k] != f->cfg[k]) return true;
      return false;
    };
    if (differs(kVendorId, 4) || differs(kRevision, 4) || differs(kHeaderType, 1))
      r.fail("PCI function " + devfn_name(x.devfn) + " (" + f->name + ") is a different device in the state file");
    for (uint32_t k = kBar0; k < kBar0 + 24; k++) {
      if ((x.cfg[k] ^ f->cfg[k]) & ~f->wmask[k])
        r.fail("PCI function " + devfn_name(x.devfn) + " (" + f->name + ") has other BARs in the state file");
    }
    fns.push_back(x);
  }
  r.finish();
  // Parsed and checked: now change things.
  if (config_port_) static_cast<ConfigPort*>(config_port_.get())->s.address = address;
  for (const Fn& x : fns) {
    PciFunction& f = *copy[x.devfn];
    {
      std::lock_guard g(f.cfg_mu_);
      f.cfg = x.cfg;
      f.intx_level_ = x.intx;
    }
    f.config_loaded();
    f.update_mappings();  // BARs and the ROM BAR as a guest's write would map them
    std::lock_guard g(f.cfg_mu_);
    f.update_intx();
  }
}

}  // namespace vireo::pci
