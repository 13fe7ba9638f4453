// Virtio PCI transport, modern interface (virtio 1.2, 4.1).
#include "devices/virtio/pci_transport.h"

#include <algorithm>

#include "machine/state.h"

namespace vireo::virtio {

namespace {

// 4.1.4 struct virtio_pci_cap: cap_vndr, cap_next, cap_len, cfg_type, bar,
// id, padding[2], le32 offset, le32 length (+ le32 notify_off_multiplier for
// NOTIFY_CFG, + u8 pci_cfg_data[4] for PCI_CFG).
constexpr uint8_t kCapLen = 16, kCapLenNotify = 20, kCapLenPciCfg = 20;
constexpr uint32_t kCapBar = 4, kCapOffset = 8, kCapLength = 12, kCapExtra = 16;
// MSI-X capability (PCI 3.0, 6.8.2): message control, table offset/BIR, PBA offset/BIR.
constexpr uint8_t kMsixCapLen = 12;
constexpr uint16_t kMsixEnable = 0x8000, kMsixMaskAll = 0x4000;

// 4.1.4.3 struct virtio_pci_common_cfg: field offsets and widths.
struct Field {
  uint32_t off, size;
};
constexpr Field kFields[] = {
    {0x00, 4},  // device_feature_select
    {0x04, 4},  // device_feature
    {0x08, 4},  // driver_feature_select
    {0x0c, 4},  // driver_feature
    {0x10, 2},  // config_msix_vector
    {0x12, 2},  // num_queues
    {0x14, 1},  // device_status
    {0x15, 1},  // config_generation
    {0x16, 2},  // queue_select
    {0x18, 2},  // queue_size
    {0x1a, 2},  // queue_msix_vector
    {0x1c, 2},  // queue_enable
    {0x1e, 2},  // queue_notify_off
    {0x20, 8},  // queue_desc
    {0x28, 8},  // queue_driver
    {0x30, 8},  // queue_device
};

const Field* field_at(uint64_t off) {
  for (auto& f : kFields) {
    if (off >= f.off && off < f.off + f.size) return &f;
  }
  return nullptr;
}

uint32_t pci_class_for(uint16_t type) {
  // QEMU's choices, which guests' inf/driver matching has seen:
  // block = mass storage (SCSI), others = "other".
  // network = Ethernet controller.
  if (type == kDeviceNet) return 0x020000;
  return type == kDeviceBlock ? 0x010000 : 0xff0000;
}

}  // namespace

class VirtioPci::ModernBar : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the VirtioPci
  explicit ModernBar(VirtioPci* t) : t_(t) {}
  void read(uint64_t off, std::span<uint8_t> d) override { t_->bar4_read(off, d); }
  void write(uint64_t off, std::span<const uint8_t> d) override { t_->bar4_write(off, d); }

private:
  VirtioPci* t_;
};

class VirtioPci::MsixBar : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the VirtioPci
  explicit MsixBar(VirtioPci* t) : t_(t) {}
  void read(uint64_t off, std::span<uint8_t> d) override { t_->msix_read(off, d); }
  void write(uint64_t off, std::span<const uint8_t> d) override { t_->msix_write(off, d); }

private:
  VirtioPci* t_;
};

VirtioPci::VirtioPci(std::shared_ptr<VirtioDevice> dev, const GuestMemory* mem, Hooks hooks)
    : dev_(std::move(dev)), mem_(mem), hooks_(std::move(hooks)) {
  uint16_t type = dev_->device_type();
  name = "virtio-pci";
  // 4.1.2: modern-only device: 0x1040 + type, revision >= 1. Subsystem
  // vendor/device as the brief for this board: 1af4 / device type.
  set_ids(kPciVendor, uint16_t(kPciDeviceBase + type), pci_class_for(type), 1, kPciVendor, type);
  set_interrupt_pin(1);
  for (uint16_t i = 0; i < dev_->num_queues(); i++) queues_.emplace_back(dev_->max_queue_size());
  msix_vectors_ = uint16_t(dev_->num_queues() + 1);  // one per queue + configuration changes
  s_.msix.assign(msix_vectors_, {});
  s_.pba.assign(msix_vectors_, false);

  add_bar(kMsixBar, kMsixBarSize, pci::BarKind::Mem32, std::make_shared<MsixBar>(this));
  add_bar(kModernBar, kBar4Size, pci::BarKind::Mem64Prefetch, std::make_shared<ModernBar>(this));

  auto vendor_cap = [&](uint8_t type_, uint8_t len, uint32_t off, uint32_t length) {
    uint8_t c = add_capability(kPciCapVendor, len);
    cfg[c + 2] = len;
    cfg[c + 3] = type_;
    cfg[c + kCapBar] = kModernBar;
    cfg_set(c + kCapOffset, 4, off);
    cfg_set(c + kCapLength, 4, length);
    caps_[type_] = c;
    return c;
  };
  vendor_cap(kCapCommonCfg, kCapLen, kCommonOff, kCommonLen);
  vendor_cap(kCapIsrCfg, kCapLen, kIsrOff, 1);
  if (dev_->config_size()) vendor_cap(kCapDeviceCfg, kCapLen, kDeviceOff, dev_->config_size());
  uint8_t n = vendor_cap(kCapNotifyCfg, kCapLenNotify, kNotifyOff, kNotifyMultiplier * num_queues());
  cfg_set(n + kCapExtra, 4, kNotifyMultiplier);
  // 4.1.4.9: a window into the BARs through config space (bar, offset,
  // length and data are the driver's to write).
  uint8_t p = vendor_cap(kCapPciCfg, kCapLenPciCfg, 0, 0);
  cfg[p + kCapBar] = 0;
  wmask[p + kCapBar] = 0xff;
  for (uint32_t i = 0; i < 4; i++) {
    wmask[p + kCapOffset + i] = 0xff;
    wmask[p + kCapLength + i] = 0xff;
    wmask[p + kCapExtra + i] = 0xff;
  }

  msix_cap_ = add_capability(kPciCapMsix, kMsixCapLen);
  cfg_set(msix_cap_ + 2, 2, uint32_t(msix_vectors_ - 1));
  wmask[msix_cap_ + 3] = uint8_t((kMsixEnable | kMsixMaskAll) >> 8);
  cfg_set(msix_cap_ + 4, 4, 0 | kMsixBar);
  cfg_set(msix_cap_ + 8, 4, uint32_t(kPbaOff) | kMsixBar);

  dev_->attach(this);
}

VirtioPci::~VirtioPci() { dev_->quiesce(); }

uint8_t VirtioPci::cap_offset(uint8_t cfg_type) const { return cfg_type < 6 ? caps_[cfg_type] : 0; }

uint8_t VirtioPci::status() const {
  std::lock_guard g(mu_);
  return s_.status;
}

std::string VirtioPci::needs_reset_reason() const {
  std::lock_guard g(mu_);
  return needs_reset_why_;
}

uint64_t VirtioPci::driver_features() const {
  std::lock_guard g(mu_);
  return s_.driver_features;
}

// ------------------------------------------------------------ config space

uint32_t VirtioPci::config_read(uint32_t offset, int size) {
  uint8_t c = caps_[kCapPciCfg];
  if (c && size > 0 && offset < c + kCapExtra + 4u && offset + uint32_t(size) > c + kCapExtra) pci_cfg_access(false);
  return PciFunction::config_read(offset, size);
}

void VirtioPci::config_write(uint32_t offset, int size, uint32_t value) {
  PciFunction::config_write(offset, size, value);
  if (size <= 0) return;
  uint8_t c = caps_[kCapPciCfg];
  if (c && offset < c + kCapExtra + 4u && offset + uint32_t(size) > c + kCapExtra) pci_cfg_access(true);
  if (offset < msix_cap_ + 4u && offset + uint32_t(size) > msix_cap_ + 2u) {
    std::lock_guard g(mu_);
    if (msix_enabled()) {
      // INTx is not used while MSI-X is on (PCI 3.0, 6.8.2.3).
      s_.isr = 0;
      set_intx(false);
    }
    deliver_pending();
  }
}

void VirtioPci::pci_cfg_access(bool write) {
  uint8_t c = caps_[kCapPciCfg];
  uint32_t bar = PciFunction::config_read(c + kCapBar, 1);
  uint32_t off = PciFunction::config_read(c + kCapOffset, 4);
  uint32_t len = PciFunction::config_read(c + kCapLength, 4);
  // 4.1.4.9.1: length 1, 2 or 4, offset aligned to it, inside the BAR.
  if (bar != kModernBar || (len != 1 && len != 2 && len != 4) || off % len || off + len > kBar4Size) return;
  uint8_t buf[4] = {};
  if (write) {
    uint32_t v = PciFunction::config_read(c + kCapExtra, 4);
    u64_to_span(v, buf);
    bar4_write(off, {buf, len});
  } else {
    bar4_read(off, {buf, len});
    std::lock_guard g(cfg_mu_);
    for (uint32_t i = 0; i < 4; i++) cfg[c + kCapExtra + i] = i < len ? buf[i] : 0;
  }
}

void VirtioPci::bar_mapped(int bar, uint64_t addr, bool mapped) {
  // Called with cfg_mu_ held: no mu_ here (lock order is mu_ then cfg_mu_).
  if (bar != kModernBar || !hooks_.notify_mapped) return;
  for (int q = 0; q < num_queues(); q++) {
    hooks_.notify_mapped(q, mapped ? addr + kNotifyOff + uint64_t(q) * kNotifyMultiplier : 0, mapped);
  }
}

void VirtioPci::reset() {
  std::lock_guard g(mu_);
  device_reset();
  for (auto& e : s_.msix) e = State::MsixEntry{};
  std::fill(s_.pba.begin(), s_.pba.end(), false);
  std::lock_guard c(cfg_mu_);
  cfg[msix_cap_ + 3] &= uint8_t(~((kMsixEnable | kMsixMaskAll) >> 8));
}

// ------------------------------------------------------------ BAR4

void VirtioPci::bar4_read(uint64_t off, std::span<uint8_t> d) {
  std::fill(d.begin(), d.end(), 0);
  std::lock_guard g(mu_);
  if (off < kCommonOff + kRegionLen) {
    common_read(off - kCommonOff, d);
  } else if (off < kIsrOff + kRegionLen) {
    if (off == kIsrOff) d[0] = isr_read_clear();
  } else if (off < kDeviceOff + kRegionLen) {
    uint64_t o = off - kDeviceOff, n = dev_->config_size();
    if (o < n) dev_->read_config(uint32_t(o), d.first(std::min<uint64_t>(d.size(), n - o)));
  }
  // Notify region reads as zero.
}

void VirtioPci::bar4_write(uint64_t off, std::span<const uint8_t> d) {
  if (off >= kNotifyOff && off < kNotifyOff + kRegionLen) {
    // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index; the
    // address says the same thing (queue_notify_off = index).
    uint64_t o = off - kNotifyOff;
    if (o % kNotifyMultiplier == 0) notify(int(o / kNotifyMultiplier));
    return;
  }
  std::lock_guard g(mu_);
  if (off < kCommonOff + kRegionLen) {
    common_write(off - kCommonOff, d);
  } else if (off >= kDeviceOff && off < kDeviceOff + kRegionLen) {
    uint64_t o = off - kDeviceOff, n = dev_->config_size();
    if (o < n) dev_->write_config(uint32_t(o), d.first(std::min<uint64_t>(d.size(), n - o)));
  }
}

uint8_t VirtioPci::isr_read_clear() {
  uint8_t v = s_.isr;
  s_.isr = 0;
  if (v) set_intx(false);
  return v;
}

void VirtioPci::common_read(uint64_t off, std::span<uint8_t> d) {
  for (size_t i = 0; i < d.size(); i++) {
    const Field* f = field_at(off + i);
    d[i] = f ? uint8_t(common_field(f->off) >> (8 * (off + i - f->off))) : 0;
  }
}

void VirtioPci::common_write(uint64_t off, std::span<const uint8_t> d) {
  size_t i = 0;
  while (i < d.size()) {
    const Field* f = field_at(off + i);
    if (!f) {
      i++;
      continue;
    }
    // Merge the bytes of this write that fall in the field into its value.
    uint64_t v = common_field(f->off);
    while (i < d.size() && off + i >= f->off && off + i < f->off + f->size) {
      unsigned shift = unsigned(8 * (off + i - f->off));
      v = (v & ~(uint64_t(0xff) << shift)) | (uint64_t(d[i]) << shift);
      i++;
    }
    set_common_field(f->off, v);
  }
}

uint64_t VirtioPci::common_field(uint32_t field) const {
  const SplitQueue* q = s_.queue_select < queues_.size() ? &queues_[s_.queue_select] : nullptr;
  switch (field) {
    case 0x00: return s_.device_feature_select;
    case 0x04: return s_.device_feature_select < 2 ? uint32_t(dev_->device_features() >> (32 * s_.device_feature_select)) : 0;
    case 0x08: return s_.driver_feature_select;
    case 0x0c: return s_.driver_feature_select < 2 ? uint32_t(s_.driver_features >> (32 * s_.driver_feature_select)) : 0;
    case 0x10: return s_.config_msix_vector;
    case 0x12: return queues_.size();
    case 0x14: return s_.status;
    case 0x15: return s_.config_generation;
    case 0x16: return s_.queue_select;
    case 0x18: return q ? q->s.size : 0;
    case 0x1a: return q ? q->s.msix_vector : kNoVector;
    case 0x1c: return q ? q->s.ready : 0;
    case 0x1e: return q ? s_.queue_select : 0;
    case 0x20: return q ? q->s.desc : 0;
    case 0x28: return q ? q->s.avail : 0;
    case 0x30: return q ? q->s.used : 0;
  }
  return 0;
}

void VirtioPci::set_common_field(uint32_t field, uint64_t v) {
  SplitQueue* q = s_.queue_select < queues_.size() ? &queues_[s_.queue_select] : nullptr;
  // 4.1.4.3.2: queue layout is fixed once the queue is enabled.
  bool q_writable = q && !q->s.ready;
  switch (field) {
    case 0x00: s_.device_feature_select = uint32_t(v); break;
    case 0x08: s_.driver_feature_select = uint32_t(v); break;
    case 0x0c:
      // 3.1.1: features are fixed once FEATURES_OK is set.
      if (!(s_.status & kStatusFeaturesOk) && s_.driver_feature_select < 2) {
        unsigned sh = 32 * s_.driver_feature_select;
        s_.driver_features = (s_.driver_features & ~(uint64_t(0xffffffff) << sh)) | (uint64_t(uint32_t(v)) << sh);
      }
      break;
    case 0x10: s_.config_msix_vector = v < msix_vectors_ ? uint16_t(v) : kNoVector; break;
    case 0x14: write_status(uint8_t(v)); break;
    case 0x16: s_.queue_select = uint16_t(v); break;
    case 0x18:
      // The driver may shrink the queue to another power of two (2.7).
      if (q_writable && v && v <= q->max_size() && !(v & (v - 1))) q->s.size = uint16_t(v);
      break;
    case 0x1a:
      if (q) q->s.msix_vector = v < msix_vectors_ ? uint16_t(v) : kNoVector;
      break;
    case 0x1c:
      if (q_writable && v == 1) q->s.ready = true;  // writing 0 is not allowed (4.1.4.3.2)
      break;
    case 0x20: if (q_writable) q->s.desc = v; break;
    case 0x28: if (q_writable) q->s.avail = v; break;
    case 0x30: if (q_writable) q->s.used = v; break;
    default: break;  // read-only fields
  }
}

void VirtioPci::write_status(uint8_t v) {
  if (v == 0) {
    device_reset();
    return;
  }
  uint8_t old = s_.status;
  // The driver only adds bits (3.1.1); DEVICE_NEEDS_RESET is the device's.
  v = uint8_t((v & ~kStatusNeedsReset) | (old & kStatusNeedsReset));
  if ((v & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
    uint64_t offered = dev_->device_features();
    bool ok = !(s_.driver_features & ~offered) && (s_.driver_features & bit(kFVersion1));
    if (!ok) {
      v = uint8_t(v & ~kStatusFeaturesOk);  // 3.1.1 step 6: the driver reads it back and gives up
    } else {
      for (auto& q : queues_) {
        q.event_idx = s_.driver_features & bit(kFEventIdx);
        q.indirect = s_.driver_features & bit(kFIndirectDesc);
      }
    }
  }
  s_.status = v;
  if ((v & kStatusDriverOk) && !(old & kStatusDriverOk) && (v & kStatusFeaturesOk)) dev_->activate(s_.driver_features);
}

void VirtioPci::device_reset() {
  epoch_++;
  dev_->reset();
  for (auto& q : queues_) {
    q.reset();
    q.event_idx = q.indirect = false;
  }
  s_.device_feature_select = s_.driver_feature_select = 0;
  s_.driver_features = 0;
  s_.config_msix_vector = kNoVector;
  s_.status = 0;
  s_.queue_select = 0;
  s_.isr = 0;
  needs_reset_why_.clear();
  set_intx(false);
}

void VirtioPci::notify(int q) {
  std::lock_guard g(mu_);
  if (q < 0 || q >= num_queues()) return;
  if (!(s_.status & kStatusDriverOk) || (s_.status & kStatusNeedsReset) || !queues_[size_t(q)].s.ready) return;
  if (!bus_master()) return;  // no DMA without bus mastering
  dev_->queue_notify(q);
}

// ------------------------------------------------------------ interrupts

void VirtioPci::signal_used(int q) {
  if (q < 0 || q >= num_queues()) return;
  SplitQueue& vq = queues_[size_t(q)];
  if (vq.needs_interrupt(*mem_)) raise(vq.s.msix_vector, kIsrQueue);
}

void VirtioPci::set_needs_reset(const std::string& why) {
  if (s_.status & kStatusNeedsReset) return;
  needs_reset_why_ = why;
  s_.status |= kStatusNeedsReset;
  if (s_.status & kStatusDriverOk) raise(s_.config_msix_vector, kIsrConfig);
}

void VirtioPci::config_changed() {
  s_.config_generation++;
  if (s_.status & kStatusDriverOk) raise(s_.config_msix_vector, kIsrConfig);
}

bool VirtioPci::msix_enabled(bool* masked) const {
  std::lock_guard g(cfg_mu_);
  uint16_t ctl = uint16_t(cfg_get(msix_cap_ + 2, 2));
  if (masked) *masked = ctl & kMsixMaskAll;
  return ctl & kMsixEnable;
}

void VirtioPci::raise(uint16_t vector, uint8_t isr_bit) {
  bool masked = false;
  if (msix_enabled(&masked)) {
    if (vector >= msix_vectors_) return;  // NO_VECTOR: the driver wants none
    const auto& e = s_.msix[vector];
    if (masked || (e.ctrl & 1)) {
      s_.pba[vector] = true;
    } else if (hooks_.msi) {
      hooks_.msi(uint64_t(e.addr_hi) << 32 | e.addr_lo, e.data);
    }
    return;
  }
  s_.isr |= isr_bit;
  set_intx(true);
}

void VirtioPci::deliver_pending() {
  bool masked = false;
  if (!msix_enabled(&masked) || masked) return;
  for (uint16_t v = 0; v < msix_vectors_; v++) {
    const auto& e = s_.msix[v];
    if (s_.pba[v] && !(e.ctrl & 1)) {
      s_.pba[v] = false;
      if (hooks_.msi) hooks_.msi(uint64_t(e.addr_hi) << 32 | e.addr_lo, e.data);
    }
  }
}

void VirtioPci::msix_read(uint64_t off, std::span<uint8_t> d) {
  std::lock_guard g(mu_);
  for (size_t i = 0; i < d.size(); i++) {
    uint64_t o = off + i;
    uint8_t b = 0;
    if (o < 16ull * msix_vectors_) {
      const auto& e = s_.msix[o / 16];
      uint32_t words[4] = {e.addr_lo, e.addr_hi, e.data, e.ctrl};
      b = uint8_t(words[(o % 16) / 4] >> (8 * (o % 4)));
    } else if (o >= kPbaOff && o - kPbaOff < (msix_vectors_ + 63u) / 64 * 8) {
      uint64_t first = (o - kPbaOff) * 8;
      for (unsigned k = 0; k < 8; k++) {
        if (first + k < msix_vectors_ && s_.pba[first + k]) b |= uint8_t(1u << k);
      }
    }
    d[i] = b;
  }
}

void VirtioPci::msix_write(uint64_t off, std::span<const uint8_t> d) {
  std::lock_guard g(mu_);
  bool unmasked = false;
  for (size_t i = 0; i < d.size(); i++) {
    uint64_t o = off + i;
    if (o >= 16ull * msix_vectors_) continue;  // the PBA is read-only
    auto& e = s_.msix[o / 16];
    uint32_t* words[4] = {&e.addr_lo, &e.addr_hi, &e.data, &e.ctrl};
    uint32_t& w = *words[(o % 16) / 4];
    unsigned sh = unsigned(8 * (o % 4));
    w = (w & ~(0xffu << sh)) | (uint32_t(d[i]) << sh);
    if ((o % 16) / 4 == 3) {
      e.ctrl &= 1;  // only the mask bit is defined
      unmasked |= !(e.ctrl & 1);
    }
  }
  if (unmasked) deliver_pending();
}

// ------------------------------------------------------------ saved state

void VirtioPci::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  for (size_t i = 0; i < queues_.size(); i++) {
    if (queues_[i].heads_in_flight())
      throw state::StateError(name + ": queue " + std::to_string(i) + " has " +
                              std::to_string(queues_[i].heads_in_flight()) + " requests in flight; pause the machine first");
  }
  w.u16(uint16_t(queues_.size()));
  w.u16(msix_vectors_);
  w.u32(s_.device_feature_select);
  w.u32(s_.driver_feature_select);
  w.u64(s_.driver_features);
  w.u16(s_.config_msix_vector);
  w.u8(s_.status);
  w.u8(s_.config_generation);
  w.u16(s_.queue_select);
  w.u8(s_.isr);
  for (uint16_t v = 0; v < msix_vectors_; v++) {
    const auto& e = s_.msix[v];
    w.u32(e.addr_lo);
    w.u32(e.addr_hi);
    w.u32(e.data);
    w.u32(e.ctrl);
    w.boolean(s_.pba[v]);
  }
  for (const auto& q : queues_) {
    w.u16(q.s.size);
    w.boolean(q.s.ready);
    w.u16(q.s.msix_vector);
    w.u64(q.s.desc);
    w.u64(q.s.avail);
    w.u64(q.s.used);
    w.u16(q.s.last_avail);
    w.u16(q.s.used_idx);
    w.u16(q.s.signalled_used);
  }
  w.str(needs_reset_why_);
  dev_->save_device(w);
}

void VirtioPci::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  const uint16_t nq = r.u16(), nv = r.u16();
  if (nq != queues_.size() || nv != msix_vectors_)
    r.fail("the state has " + std::to_string(nq) + " queues and " + std::to_string(nv) + " MSI-X vectors, this device " +
           std::to_string(queues_.size()) + " and " + std::to_string(msix_vectors_));
  auto vector = [&](uint16_t v, const char* what) {
    if (v != kNoVector && v >= msix_vectors_) r.fail(std::string(what) + " is " + std::to_string(v) + ", past the MSI-X table");
  };
  State n;
  n.device_feature_select = r.u32();
  n.driver_feature_select = r.u32();
  n.driver_features = r.u64();
  n.config_msix_vector = r.u16();
  vector(n.config_msix_vector, "the configuration vector");
  n.status = r.u8();
  n.config_generation = r.u8();
  n.queue_select = r.u16();
  n.isr = r.u8();
  if (n.isr & ~(kIsrQueue | kIsrConfig)) r.fail("ISR has undefined bits");
  if ((n.status & kStatusFeaturesOk) &&
      ((n.driver_features & ~dev_->device_features()) || !(n.driver_features & bit(kFVersion1))))
    r.fail("the negotiated features are not ones this device offers");
  n.msix.assign(msix_vectors_, {});
  n.pba.assign(msix_vectors_, false);
  for (uint16_t v = 0; v < msix_vectors_; v++) {
    auto& e = n.msix[v];
    e.addr_lo = r.u32();
    e.addr_hi = r.u32();
    e.data = r.u32();
    e.ctrl = r.u32();
    if (e.ctrl > 1) r.fail("an MSI-X vector control has undefined bits");
    n.pba[v] = r.boolean();
  }
  std::vector<SplitQueue::State> qs(queues_.size());
  for (size_t i = 0; i < queues_.size(); i++) {
    auto& q = qs[i];
    q.size = r.u16();
    if (!q.size || q.size > queues_[i].max_size() || (q.size & (q.size - 1)))
      r.fail("queue " + std::to_string(i) + " size " + std::to_string(q.size) + " is not a power of two up to " +
             std::to_string(queues_[i].max_size()));
    q.ready = r.boolean();
    q.msix_vector = r.u16();
    vector(q.msix_vector, "a queue vector");
    q.desc = r.u64();
    q.avail = r.u64();
    q.used = r.u64();
    q.last_avail = r.u16();
    q.used_idx = r.u16();
    q.signalled_used = r.u16();
  }
  std::string why = r.str(4096);
  std::function<void()> apply_device = dev_->load_device(r);
  r.finish();

  std::lock_guard g(mu_);
  epoch_++;
  dev_->reset();
  s_ = n;
  for (size_t i = 0; i < queues_.size(); i++) {
    auto& q = queues_[i];
    q.reset();
    q.s = qs[i];
    q.event_idx = (n.status & kStatusFeaturesOk) && (n.driver_features & bit(kFEventIdx));
    q.indirect = (n.status & kStatusFeaturesOk) && (n.driver_features & bit(kFIndirectDesc));
  }
  needs_reset_why_ = why;
  if ((n.status & kStatusDriverOk) && (n.status & kStatusFeaturesOk)) dev_->activate(n.driver_features);
  apply_device();
  set_intx(s_.isr != 0);
}

}  // namespace vireo::virtio
