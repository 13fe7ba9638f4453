#include "devices/vga/vga.h"

#include "devices/vga/png.h"
#include "machine/state.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <new>

namespace vireo::vga {

namespace {

// Memory map select (GR06 bits 3:2): window base and size inside 0xa0000-0xbffff.
constexpr uint32_t kMapBase[4] = {0x00000, 0x00000, 0x10000, 0x18000};
constexpr uint32_t kMapSize[4] = {0x20000, 0x10000, 0x08000, 0x08000};

// Cursor blinks every 16 frames and blinking text every 32 at 60 Hz.
constexpr uint64_t kCursorHalfPeriodNs = 266'666'667;
constexpr uint64_t kTextBlinkHalfPeriodNs = 533'333'333;

constexpr uint32_t kBlack = 0xff000000u;
constexpr uint32_t kMaxWidth = 4096, kMaxHeight = 4096;

// Each low bit of `nibble` becomes a whole plane byte: bit p -> bits 8p..8p+7.
inline uint32_t expand_planes(uint8_t nibble) {
  uint32_t r = 0;
  for (int p = 0; p < 4; p++)
    if (nibble & (1 << p)) r |= 0xffu << (8 * p);
  return r;
}
inline uint8_t rotr8(uint8_t v, unsigned n) {
  n &= 7;
  return n ? uint8_t((v >> n) | (v << (8 - n))) : v;
}
inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline uint32_t bgrx(uint8_t r, uint8_t g, uint8_t b) {
  return kBlack | (uint32_t(r) << 16) | (uint32_t(g) << 8) | b;
}

// Adapters: each bus range gets a thin IoDevice that forwards into the core.
class LegacyPorts : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the VgaDevice
  explicit LegacyPorts(std::shared_ptr<VgaDevice> d) : d_(std::move(d)) {}
  void read(uint64_t off, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); i++) data[i] = d_->port_read(uint16_t(0x3b0 + off + i));
  }
  void write(uint64_t off, std::span<const uint8_t> data) override {
    // A 16-bit OUT to an index port writes index then data (0x3c4/0x3ce/0x3d4).
    for (size_t i = 0; i < data.size(); i++) d_->port_write(uint16_t(0x3b0 + off + i), data[i]);
  }

private:
  std::shared_ptr<VgaDevice> d_;
};

class DispiPorts : public IoDevice {
public:
  explicit DispiPorts(std::shared_ptr<VgaDevice> d) : d_(std::move(d)) {}
  // The index lives in the device's VgaState (saved with it); BAR2 uses direct offsets.
  StateKind state_kind() const override { return StateKind::None; }
  void read(uint64_t off, std::span<uint8_t> data) override {
    u64_to_span(off == 0 ? d_->dispi_index() : d_->dispi_read(d_->dispi_index()), data);
  }
  void write(uint64_t off, std::span<const uint8_t> data) override {
    uint16_t v = uint16_t(span_to_u64(data));
    if (off == 0) {
      d_->set_dispi_index(v);
      if (data.size() >= 4) d_->dispi_write(v, uint16_t(span_to_u64(data) >> 16));
    } else {
      d_->dispi_write(d_->dispi_index(), v);
    }
  }

private:
  std::shared_ptr<VgaDevice> d_;
};

class LegacyMemory : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the VgaDevice
  explicit LegacyMemory(std::shared_ptr<VgaDevice> d) : d_(std::move(d)) {}
  void read(uint64_t off, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); i++) data[i] = d_->mem_read(uint32_t(off + i));
  }
  void write(uint64_t off, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); i++) d_->mem_write(uint32_t(off + i), data[i]);
  }

private:
  std::shared_ptr<VgaDevice> d_;
};

class Forward : public IoDevice {
public:
  Forward(std::shared_ptr<VgaDevice> d, std::function<void(uint64_t, std::span<uint8_t>)> r,
          std::function<void(uint64_t, std::span<const uint8_t>)> w)
      : d_(std::move(d)), r_(std::move(r)), w_(std::move(w)) {}
  StateKind state_kind() const override { return StateKind::None; }  // saved by the VgaDevice
  void read(uint64_t off, std::span<uint8_t> data) override { r_(off, data); }
  void write(uint64_t off, std::span<const uint8_t> data) override { w_(off, data); }

private:
  std::shared_ptr<VgaDevice> d_;
  std::function<void(uint64_t, std::span<uint8_t>)> r_;
  std::function<void(uint64_t, std::span<const uint8_t>)> w_;
};

}  // namespace

VgaDevice::VgaDevice(size_t vram_size) {
  vram_size_ = (std::max<size_t>(vram_size, 256 * 1024) + kPageSize - 1) & ~(kPageSize - 1);
  // Anonymous shared mapping: page-aligned, zero-filled, and suitable as a KVM
  // memory slot (the board hands this pointer to KVM_SET_USER_MEMORY_REGION).
  void* p = mmap(nullptr, vram_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  vram_ = static_cast<uint8_t*>(p);
  win_dirty_.assign((vram_size_ / kPageSize + 63) / 64, 0);
  edid_ = make_edid();
  reset();
}

VgaDevice::~VgaDevice() {
  if (vram_) munmap(vram_, vram_size_);
}

void VgaDevice::reset() {
  std::lock_guard g(mu_);
  s_ = VgaState{};
  s_.dispi[kDispiId] = kDispiId5;
  s_.dispi[kDispiXres] = 640;
  s_.dispi[kDispiYres] = 480;
  s_.dispi[kDispiBpp] = 8;
  s_.ar[0x12] = 0x0f;
  reg_gen_++;
  mem_gen_++;
}

VgaState VgaDevice::save() {
  std::lock_guard g(mu_);
  return s_;
}

void VgaDevice::restore(const VgaState& s) {
  std::lock_guard g(mu_);
  s_ = s;
  s_.version = VgaState::kVersion;
  reg_gen_++;
  mem_gen_++;
  cur_geom_ = {};  // next poll is a full frame
}

uint16_t VgaDevice::dispi_index() {
  std::lock_guard g(mu_);
  return s_.dispi_index;
}

void VgaDevice::set_dispi_index(uint16_t v) {
  std::lock_guard g(mu_);
  s_.dispi_index = v;
}

void VgaDevice::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  w.u8(s_.misc_output);
  w.u8(s_.feature_control);
  w.u8(s_.seq_index);
  w.bytes(s_.seq.data(), s_.seq.size());
  w.u8(s_.gc_index);
  w.bytes(s_.gc.data(), s_.gc.size());
  w.u8(s_.ar_index);
  w.boolean(s_.ar_flip_flop);
  w.bytes(s_.ar.data(), s_.ar.size());
  w.u8(s_.crtc_index);
  w.bytes(s_.crtc.data(), s_.crtc.size());
  w.u8(s_.dac_read_index);
  w.u8(s_.dac_write_index);
  w.u8(s_.dac_sub_index);
  w.u8(s_.dac_state);
  w.bytes(s_.dac_cache.data(), s_.dac_cache.size());
  w.bytes(s_.palette.data(), s_.palette.size());
  w.u8(s_.pel_mask);
  w.u8(s_.st01_toggle);
  w.u32(s_.latch);
  w.u16(s_.dispi_index);
  for (uint16_t v : s_.dispi) w.u16(v);
  w.u32(s_.vbe_start);
  w.u32(s_.vbe_line_offset);
  w.u32(s_.vbe_bank_offset);
  w.pages(vram_, vram_size_);
}

void VgaDevice::load(state::StateReader& r) {
  if (r.version() != VgaState::kVersion)
    r.fail("unknown version (this Vireo has " + std::to_string(VgaState::kVersion) + ")");
  VgaState n;
  auto in_range = [&](uint32_t v, uint32_t max, const char* what) {
    if (v > max) r.fail(std::string(what) + " is " + std::to_string(v) + ", at most " + std::to_string(max));
  };
  n.misc_output = r.u8();
  n.feature_control = r.u8();
  in_range(n.feature_control, 3, "feature control");
  n.seq_index = r.u8();
  in_range(n.seq_index, 7, "sequencer index");
  r.bytes(n.seq.data(), n.seq.size());
  n.gc_index = r.u8();
  in_range(n.gc_index, 0x0f, "graphics controller index");
  r.bytes(n.gc.data(), n.gc.size());
  n.ar_index = r.u8();
  in_range(n.ar_index, 0x3f, "attribute controller index");
  n.ar_flip_flop = r.boolean();
  r.bytes(n.ar.data(), n.ar.size());
  n.crtc_index = r.u8();
  in_range(n.crtc_index, 0x1f, "CRTC index");
  r.bytes(n.crtc.data(), n.crtc.size());
  n.dac_read_index = r.u8();
  n.dac_write_index = r.u8();
  n.dac_sub_index = r.u8();
  in_range(n.dac_sub_index, 2, "DAC colour component");
  n.dac_state = r.u8();
  if (n.dac_state != 0 && n.dac_state != 3) r.fail("DAC state is " + std::to_string(n.dac_state) + ", not 0 or 3");
  r.bytes(n.dac_cache.data(), n.dac_cache.size());
  r.bytes(n.palette.data(), n.palette.size());
  n.pel_mask = r.u8();
  n.st01_toggle = r.u8();
  n.latch = r.u32();
  n.dispi_index = r.u16();
  for (uint16_t& v : n.dispi) v = r.u16();
  n.vbe_start = r.u32();
  n.vbe_line_offset = r.u32();
  n.vbe_bank_offset = r.u32();
  const uint16_t id = n.dispi[kDispiId], bpp = n.dispi[kDispiBpp];
  if (id < kDispiId0 || id > kDispiId5) r.fail("VBE id is not one of B0C0..B0C5");
  in_range(n.dispi[kDispiXres], kDispiMaxXres, "VBE width");
  in_range(n.dispi[kDispiYres], kDispiMaxYres, "VBE height");
  if (bpp != 4 && bpp != 8 && bpp != 15 && bpp != 16 && bpp != 24 && bpp != 32)
    r.fail("VBE depth is " + std::to_string(bpp) + " bits");
  const uint32_t banks = uint32_t(vram_size_ >> 16);
  in_range(n.dispi[kDispiBank], banks - 1, "VBE bank");
  if (n.vbe_bank_offset != uint32_t(n.dispi[kDispiBank]) << 16) r.fail("VBE bank offset does not match the bank");
  in_range(n.vbe_start, uint32_t(vram_size_), "VBE start");
  in_range(n.vbe_line_offset, uint32_t(vram_size_), "VBE line length");
  auto vram = r.pages(vram_size_);
  r.finish();
  std::lock_guard g(mu_);
  s_ = n;
  vram.apply(vram_);
  std::fill(win_dirty_.begin(), win_dirty_.end(), ~uint64_t(0));
  reg_gen_++;
  mem_gen_++;
  cur_geom_ = {};  // next poll is a full frame
}

// ---------------------------------------------------------------- adapters

std::shared_ptr<IoDevice> VgaDevice::legacy_ports() { return std::make_shared<LegacyPorts>(shared_from_this()); }
std::shared_ptr<IoDevice> VgaDevice::dispi_ports() { return std::make_shared<DispiPorts>(shared_from_this()); }
std::shared_ptr<IoDevice> VgaDevice::legacy_memory() { return std::make_shared<LegacyMemory>(shared_from_this()); }
std::shared_ptr<IoDevice> VgaDevice::mmio_regs() {
  auto self = shared_from_this();
  VgaDevice* d = this;
  return std::make_shared<Forward>(
      self, [d](uint64_t o, std::span<uint8_t> s) { d->mmio_read(o, s); },
      [d](uint64_t o, std::span<const uint8_t> s) { d->mmio_write(o, s); });
}
std::shared_ptr<IoDevice> VgaDevice::lfb() {
  auto self = shared_from_this();
  VgaDevice* d = this;
  return std::make_shared<Forward>(
      self, [d](uint64_t o, std::span<uint8_t> s) { d->lfb_access(o, s, {}); },
      [d](uint64_t o, std::span<const uint8_t> s) { d->lfb_access(o, {}, s); });
}

uint8_t VgaDevice::port_read(uint16_t port) {
  std::lock_guard g(mu_);
  return port_read_locked(port);
}
void VgaDevice::port_write(uint16_t port, uint8_t v) {
  std::lock_guard g(mu_);
  port_write_locked(port, v);
}
uint16_t VgaDevice::dispi_read(uint16_t index) {
  std::lock_guard g(mu_);
  return dispi_read_locked(index);
}
void VgaDevice::dispi_write(uint16_t index, uint16_t v) {
  std::lock_guard g(mu_);
  dispi_write_locked(index, v);
}
uint8_t VgaDevice::mem_read(uint32_t offset) {
  std::lock_guard g(mu_);
  return mem_read_locked(offset);
}
void VgaDevice::mem_write(uint32_t offset, uint8_t v) {
  std::lock_guard g(mu_);
  mem_write_locked(offset, v);
}

// ---------------------------------------------------------------- I/O ports

uint8_t VgaDevice::port_read_locked(uint16_t port) {
  // CRTC and input status 1 answer at 0x3bx in mono mode, 0x3dx in colour mode.
  if ((port >= 0x3b0 && port < 0x3c0 && crtc_is_color()) || (port >= 0x3d0 && !crtc_is_color())) return 0xff;
  switch (port) {
    case 0x3c0:
      return s_.ar_index;
    case 0x3c1: {
      uint8_t i = s_.ar_index & 0x1f;
      return i < s_.ar.size() ? s_.ar[i] : 0;
    }
    case 0x3c2:
      return 0x10;  // input status 0: switch sense
    case 0x3c4:
      return s_.seq_index;
    case 0x3c5:
      return s_.seq[s_.seq_index & 7];
    case 0x3c6:
      return s_.pel_mask;
    case 0x3c7:
      return s_.dac_state;
    case 0x3c8:
      return s_.dac_write_index;
    case 0x3c9: {
      uint8_t v = s_.palette[s_.dac_read_index * 3 + s_.dac_sub_index];
      if (++s_.dac_sub_index == 3) {
        s_.dac_sub_index = 0;
        s_.dac_read_index++;
      }
      return v;
    }
    case 0x3ca:
      return s_.feature_control;
    case 0x3cc:
      return s_.misc_output;
    case 0x3ce:
      return s_.gc_index;
    case 0x3cf:
      return s_.gc[s_.gc_index & 0xf];
    case 0x3b4:
    case 0x3d4:
      return s_.crtc_index;
    case 0x3b5:
    case 0x3d5:
      return s_.crtc[s_.crtc_index & 0x1f];
    case 0x3ba:
    case 0x3da:
      // Input status 1: toggle display-disabled and vertical-retrace so that
      // polling loops waiting for either edge make progress. Resets the
      // attribute controller flip-flop to "index".
      s_.st01_toggle ^= 0x09;
      s_.ar_flip_flop = false;
      return s_.st01_toggle;
    default:
      return 0xff;
  }
}

void VgaDevice::port_write_locked(uint16_t port, uint8_t v) {
  if ((port >= 0x3b0 && port < 0x3c0 && crtc_is_color()) || (port >= 0x3d0 && !crtc_is_color())) return;
  reg_gen_++;
  switch (port) {
    case 0x3c0:
      if (!s_.ar_flip_flop) {
        s_.ar_index = v & 0x3f;
      } else {
        uint8_t i = s_.ar_index & 0x1f;
        if (i <= 0x0f) s_.ar[i] = v & 0x3f;
        else if (i == 0x10 || i == 0x11) s_.ar[i] = v;
        else if (i == 0x12) s_.ar[i] = v & 0x3f;
        else if (i == 0x13 || i == 0x14) s_.ar[i] = v & 0x0f;
      }
      s_.ar_flip_flop = !s_.ar_flip_flop;
      break;
    case 0x3c2:
      s_.misc_output = v;
      break;
    case 0x3c4:
      s_.seq_index = v & 7;
      break;
    case 0x3c5:
      s_.seq[s_.seq_index & 7] = v;
      break;
    case 0x3c6:
      s_.pel_mask = v;
      break;
    case 0x3c7:
      s_.dac_read_index = v;
      s_.dac_sub_index = 0;
      s_.dac_state = 3;
      break;
    case 0x3c8:
      s_.dac_write_index = v;
      s_.dac_sub_index = 0;
      s_.dac_state = 0;
      break;
    case 0x3c9:
      s_.dac_cache[s_.dac_sub_index] = (s_.dispi[kDispiEnable] & kDispi8BitDac) ? v : (v & 0x3f);
      if (++s_.dac_sub_index == 3) {
        std::memcpy(&s_.palette[s_.dac_write_index * 3], s_.dac_cache.data(), 3);
        s_.dac_sub_index = 0;
        s_.dac_write_index++;
      }
      break;
    case 0x3ce:
      s_.gc_index = v & 0x0f;
      break;
    case 0x3cf:
      s_.gc[s_.gc_index & 0xf] = v;
      break;
    case 0x3b4:
    case 0x3d4:
      s_.crtc_index = v & 0x1f;
      break;
    case 0x3b5:
    case 0x3d5: {
      uint8_t i = s_.crtc_index & 0x1f;
      // CR11 bit 7 write-protects CR00-CR07, except the line-compare bit of CR07.
      if ((s_.crtc[0x11] & 0x80) && i <= 7) {
        if (i == 7) s_.crtc[7] = uint8_t((s_.crtc[7] & ~0x10) | (v & 0x10));
        break;
      }
      s_.crtc[i] = v;
      break;
    }
    case 0x3ba:
    case 0x3da:
      s_.feature_control = v & 0x03;
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- Bochs dispi

uint16_t VgaDevice::dispi_read_locked(uint16_t index) {
  if (index >= kDispiCount) return 0;
  if (s_.dispi[kDispiEnable] & kDispiGetCaps) {
    if (index == kDispiXres) return kDispiMaxXres;
    if (index == kDispiYres) return kDispiMaxYres;
    if (index == kDispiBpp) return kDispiMaxBpp;
  }
  if (index == kDispiVideoMemory64k) return uint16_t(vram_size_ >> 16);
  return s_.dispi[index];
}

void VgaDevice::dispi_write_locked(uint16_t index, uint16_t v) {
  reg_gen_++;
  switch (index) {
    case kDispiId:
      if (v >= kDispiId0 && v <= kDispiId5) s_.dispi[kDispiId] = v;
      break;
    case kDispiXres:
      s_.dispi[index] = std::min<uint16_t>(v, kDispiMaxXres);
      vbe_update_geometry();
      break;
    case kDispiYres:
      s_.dispi[index] = std::min<uint16_t>(v, kDispiMaxYres);
      vbe_update_geometry();
      break;
    case kDispiBpp:
      if (v == 0) v = 8;
      if (v == 4 || v == 8 || v == 15 || v == 16 || v == 24 || v == 32) s_.dispi[index] = v;
      vbe_update_geometry();
      break;
    case kDispiBank: {
      uint32_t banks = uint32_t(vram_size_ >> 16);
      s_.dispi[index] = uint16_t(v % banks);
      s_.vbe_bank_offset = uint32_t(s_.dispi[index]) << 16;
      break;
    }
    case kDispiEnable: {
      uint16_t old = s_.dispi[kDispiEnable];
      s_.dispi[kDispiEnable] = v;
      vbe_enable_changed(old);
      break;
    }
    case kDispiVirtWidth:
    case kDispiXOffset:
    case kDispiYOffset:
      s_.dispi[index] = v;
      vbe_update_geometry();
      break;
    default:
      break;  // VIRT_HEIGHT and VIDEO_MEMORY_64K are read-only
  }
}

void VgaDevice::vbe_update_geometry() {
  auto& r = s_.dispi;
  uint32_t bpp = r[kDispiBpp];
  uint32_t xres = std::max<uint32_t>(r[kDispiXres], 1);
  uint32_t yres = std::max<uint32_t>(r[kDispiYres], 1);
  uint32_t vw = std::max<uint32_t>(r[kDispiVirtWidth], xres);
  uint32_t line = bpp == 4 ? vw / 2 : vw * ((bpp + 7) / 8);
  if (line == 0 || uint64_t(line) * yres > vram_size_) {
    // Virtual width too large for VRAM: fall back to the visible width.
    vw = xres;
    line = bpp == 4 ? vw / 2 : vw * ((bpp + 7) / 8);
  }
  r[kDispiVirtWidth] = uint16_t(std::min<uint32_t>(vw, 0xffff));
  uint32_t vh = line ? uint32_t(std::min<uint64_t>(vram_size_ / line, 0xffff)) : 0;
  r[kDispiVirtHeight] = uint16_t(vh);
  uint32_t bytes_pp = bpp == 4 ? 0 : (bpp + 7) / 8;
  uint32_t xo = r[kDispiXOffset], yo = r[kDispiYOffset];
  if (xo + xres > vw) xo = vw - xres;
  if (yo + yres > vh) yo = vh >= yres ? vh - yres : 0;
  r[kDispiXOffset] = uint16_t(xo);
  r[kDispiYOffset] = uint16_t(yo);
  s_.vbe_line_offset = line;
  s_.vbe_start = yo * line + (bpp == 4 ? xo / 2 : xo * bytes_pp);
}

void VgaDevice::vbe_enable_changed(uint16_t old) {
  uint16_t now = s_.dispi[kDispiEnable];
  if ((now & kDispiEnabled) && !(old & kDispiEnabled)) {
    s_.dispi[kDispiVirtWidth] = 0;
    s_.dispi[kDispiXOffset] = 0;
    s_.dispi[kDispiYOffset] = 0;
    vbe_update_geometry();
    if (!(now & kDispiNoClearMem)) {
      size_t n = std::min<size_t>(size_t(s_.vbe_line_offset) * s_.dispi[kDispiYres], vram_size_);
      std::memset(vram_, 0, n);
    }
    // Put the legacy side in a state where the 0xa0000 window reaches VRAM
    // linearly (64 KiB banks): graphics, chain-4, 256-colour shift.
    s_.gc[6] = uint8_t((s_.gc[6] & ~0x0c) | 0x05);
    s_.gc[5] = 0x40;
    s_.seq[4] |= 0x08;
    s_.seq[2] = 0x0f;
    s_.dispi[kDispiBank] = 0;
    s_.vbe_bank_offset = 0;
  } else if (!(now & kDispiEnabled) && (old & kDispiEnabled)) {
    s_.dispi[kDispiBank] = 0;
    s_.vbe_bank_offset = 0;
  }
}

// ---------------------------------------------------------------- legacy window

void VgaDevice::mark_dirty(size_t off) {
  size_t page = off / kPageSize;
  win_dirty_[page / 64] |= uint64_t(1) << (page % 64);
}

uint8_t VgaDevice::mem_read_locked(uint32_t offset) {
  unsigned map = (s_.gc[6] >> 2) & 3;
  if (offset < kMapBase[map] || offset >= kMapBase[map] + kMapSize[map]) return 0xff;
  uint32_t addr = offset - kMapBase[map];
  if (s_.seq[4] & 0x08) {  // chain-4: bytes map straight onto VRAM
    size_t i = size_t(addr) + ((s_.dispi[kDispiEnable] & kDispiEnabled) ? s_.vbe_bank_offset : 0);
    return i < vram_size_ ? vram_[i] : 0xff;
  }
  if (s_.gc[5] & 0x10) {  // host odd/even read: A0 picks the plane pair member
    unsigned plane = (s_.gc[4] & 2) | (addr & 1);
    size_t i = size_t(addr >> 1) * 4 + plane;
    return i < vram_size_ ? vram_[i] : 0xff;
  }
  size_t i = size_t(addr) * 4;
  if (i + 4 > vram_size_) return 0xff;
  s_.latch = load32(vram_ + i);
  if (!(s_.gc[5] & 0x08)) return uint8_t(s_.latch >> ((s_.gc[4] & 3) * 8));  // read mode 0
  // Read mode 1: colour compare. A bit is 1 where every "care" plane matches.
  uint32_t diff = (s_.latch ^ expand_planes(s_.gc[2] & 0xf)) & expand_planes(s_.gc[7] & 0xf);
  uint8_t any = uint8_t(diff | (diff >> 8) | (diff >> 16) | (diff >> 24));
  return uint8_t(~any);
}

void VgaDevice::mem_write_locked(uint32_t offset, uint8_t v) {
  unsigned map = (s_.gc[6] >> 2) & 3;
  if (offset < kMapBase[map] || offset >= kMapBase[map] + kMapSize[map]) return;
  uint32_t addr = offset - kMapBase[map];
  mem_gen_++;
  if (s_.seq[4] & 0x08) {
    size_t i = size_t(addr) + ((s_.dispi[kDispiEnable] & kDispiEnabled) ? s_.vbe_bank_offset : 0);
    if (i < vram_size_ && (s_.seq[2] & (1 << (i & 3)))) {
      vram_[i] = v;
      mark_dirty(i);
    }
    return;
  }
  if (!(s_.seq[4] & 0x04)) {
    // Odd/even: even addresses go to planes 0/2, odd ones to planes 1/3.
    unsigned mask = s_.seq[2] & ((addr & 1) ? 0x0a : 0x05);
    size_t base = size_t(addr >> 1) * 4;
    if (base + 4 > vram_size_) return;
    for (unsigned p = 0; p < 4; p++)
      if (mask & (1 << p)) vram_[base + p] = v;
    mark_dirty(base);
    return;
  }
  size_t i = size_t(addr) * 4;
  if (i + 4 > vram_size_) return;
  uint32_t data;
  uint8_t bitmask = s_.gc[8];
  switch (s_.gc[5] & 3) {
    case 0: {
      uint8_t r = rotr8(v, s_.gc[3]);
      uint32_t sr_en = expand_planes(s_.gc[1] & 0xf);
      data = (uint32_t(r) * 0x01010101u & ~sr_en) | (expand_planes(s_.gc[0] & 0xf) & sr_en);
      break;
    }
    case 1:
      data = s_.latch;
      bitmask = 0xff;
      break;
    case 2:
      data = expand_planes(v & 0xf);
      break;
    default: {
      uint8_t r = rotr8(v, s_.gc[3]);
      bitmask &= r;
      data = expand_planes(s_.gc[0] & 0xf);
      break;
    }
  }
  if ((s_.gc[5] & 3) != 1) {
    switch ((s_.gc[3] >> 3) & 3) {
      case 1: data &= s_.latch; break;
      case 2: data |= s_.latch; break;
      case 3: data ^= s_.latch; break;
      default: break;
    }
    uint32_t m = uint32_t(bitmask) * 0x01010101u;
    data = (data & m) | (s_.latch & ~m);
  }
  uint32_t pm = expand_planes(s_.seq[2] & 0xf);
  store32(vram_ + i, (load32(vram_ + i) & ~pm) | (data & pm));
  mark_dirty(i);
}

// ---------------------------------------------------------------- BAR2 / BAR0

void VgaDevice::mmio_read(uint64_t off, std::span<uint8_t> d) {
  std::lock_guard g(mu_);
  std::fill(d.begin(), d.end(), 0);
  if (off < 0x400) {
    for (size_t i = 0; i < d.size(); i++)
      if (off + i < edid_.size()) d[i] = edid_[off + i];
  } else if (off >= 0x400 && off < 0x420) {
    for (size_t i = 0; i < d.size() && off + i < 0x420; i++) d[i] = port_read_locked(uint16_t(0x3c0 + off - 0x400 + i));
  } else if (off >= 0x500 && off < 0x500 + 2 * kDispiCount) {
    uint64_t v = 0;
    uint64_t first = (off - 0x500) / 2;
    for (uint64_t r = first; r < kDispiCount && (r - first) * 2 < d.size() + 1; r++)
      v |= uint64_t(dispi_read_locked(uint16_t(r))) << ((r - first) * 16);
    v >>= (off & 1) * 8;
    u64_to_span(v, d);
  } else if (off == 0x600) {
    u64_to_span(8, d);  // size of the extension register block
  } else if (off == 0x604) {
    u64_to_span(0x1e1e1e1e, d);  // framebuffer byte order: little-endian
  }
}

void VgaDevice::mmio_write(uint64_t off, std::span<const uint8_t> d) {
  std::lock_guard g(mu_);
  if (off >= 0x400 && off < 0x420) {
    for (size_t i = 0; i < d.size() && off + i < 0x420; i++) port_write_locked(uint16_t(0x3c0 + off - 0x400 + i), d[i]);
  } else if (off >= 0x500 && off < 0x500 + 2 * kDispiCount && !(off & 1)) {
    uint64_t v = span_to_u64(d);
    uint64_t first = (off - 0x500) / 2;
    size_t regs = std::max<size_t>(d.size() / 2, 1);
    for (size_t k = 0; k < regs && first + k < kDispiCount; k++) dispi_write_locked(uint16_t(first + k), uint16_t(v >> (16 * k)));
  }
}

void VgaDevice::lfb_access(uint64_t off, std::span<uint8_t> rd, std::span<const uint8_t> wr) {
  std::lock_guard g(mu_);
  for (size_t i = 0; i < rd.size(); i++) rd[i] = off + i < vram_size_ ? vram_[off + i] : 0xff;
  for (size_t i = 0; i < wr.size(); i++) {
    if (off + i >= vram_size_) break;
    vram_[off + i] = wr[i];
    mark_dirty(off + i);
  }
}

// ---------------------------------------------------------------- EDID

namespace {

// One detailed timing descriptor (EDID 1.4 section 3.10.2), 60 Hz.
struct Timing {
  uint32_t clock_khz, hactive, hblank, hfront, hsync, vactive, vblank, vfront, vsync;
  bool hsync_pos, vsync_pos;
};

// VESA CVT 1.2 reduced blanking (version 1) at 60 Hz: a fixed 160-pixel
// horizontal blank (48 front porch, 32 sync), a vertical blank of at least
// 460 us (3 lines front porch, sync width from the aspect ratio, at least 6
// lines back porch), pixel clock rounded down to 0.25 MHz. +hsync, -vsync.
Timing cvt_rb(uint32_t w, uint32_t h) {
  const double frame_us = 1e6 / 60.0;
  const uint32_t vsync = (w * 3 == h * 4) ? 4 : (w * 9 == h * 16) ? 5 : (w * 10 == h * 16) ? 6
                       : (w * 4 == h * 5 || w * 9 == h * 15) ? 7 : 10;
  const double hperiod_us = (frame_us - 460.0) / h;
  uint32_t vblank = uint32_t(460.0 / hperiod_us) + 1;
  vblank = std::max(vblank, 3 + vsync + 6);
  const uint32_t htotal = w + 160, vtotal = h + vblank;
  const uint32_t clock_khz = uint32_t(60.0 * htotal * vtotal / 250000.0) * 250;  // 0.25 MHz steps
  return {clock_khz, w, 160, 48, 32, h, vblank, 3, vsync, true, false};
}

void put_dtd(uint8_t* t, const Timing& m) {
  const uint32_t clk = m.clock_khz / 10;  // 10 kHz units
  t[0] = uint8_t(clk);
  t[1] = uint8_t(clk >> 8);
  t[2] = uint8_t(m.hactive);
  t[3] = uint8_t(m.hblank);
  t[4] = uint8_t(((m.hactive >> 8) & 0xf) << 4 | ((m.hblank >> 8) & 0xf));
  t[5] = uint8_t(m.vactive);
  t[6] = uint8_t(m.vblank);
  t[7] = uint8_t(((m.vactive >> 8) & 0xf) << 4 | ((m.vblank >> 8) & 0xf));
  t[8] = uint8_t(m.hfront);
  t[9] = uint8_t(m.hsync);
  t[10] = uint8_t((m.vfront & 0xf) << 4 | (m.vsync & 0xf));
  t[11] = uint8_t(((m.hfront >> 8) & 3) << 6 | ((m.hsync >> 8) & 3) << 4 | ((m.vfront >> 4) & 3) << 2 | ((m.vsync >> 4) & 3));
  // Image size in mm at 96 DPI.
  const uint32_t hmm = m.hactive * 254 / 960, vmm = m.vactive * 254 / 960;
  t[12] = uint8_t(hmm);
  t[13] = uint8_t(vmm);
  t[14] = uint8_t(((hmm >> 8) & 0xf) << 4 | ((vmm >> 8) & 0xf));
  t[15] = 0;
  t[16] = 0;
  t[17] = uint8_t(0x18 | (m.vsync_pos ? 0x04 : 0) | (m.hsync_pos ? 0x02 : 0));  // digital separate sync
}

}  // namespace

bool VgaDevice::preferred_size_ok(uint32_t w, uint32_t h, size_t vram_size) {
  return w >= kMinPreferredWidth && h >= kMinPreferredHeight && w <= kMaxPreferredSide && h <= kMaxPreferredSide &&
         uint64_t(w) * h * 4 <= vram_size;
}

bool VgaDevice::set_preferred_size(uint32_t w, uint32_t h) {
  if (!preferred_size_ok(w, h, vram_size_)) return false;
  auto e = make_edid(w, h);
  std::lock_guard g(mu_);
  edid_ = e;
  pref_w_ = w;
  pref_h_ = h;
  return true;
}

std::pair<uint32_t, uint32_t> VgaDevice::preferred_size() const {
  std::lock_guard g(mu_);
  return {pref_w_, pref_h_};
}

std::array<uint8_t, 128> VgaDevice::make_edid(uint32_t width, uint32_t height) {
  width = std::clamp(width, kMinPreferredWidth, kMaxPreferredSide);
  height = std::clamp(height, kMinPreferredHeight, kMaxPreferredSide);
  std::array<uint8_t, 128> e{};
  const uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
  std::memcpy(e.data(), header, 8);
  // Manufacturer "VRO": three 5-bit letters, big-endian.
  uint16_t mfg = uint16_t((('V' - '@') << 10) | (('R' - '@') << 5) | ('O' - '@'));
  e[8] = uint8_t(mfg >> 8);
  e[9] = uint8_t(mfg);
  e[10] = 0x01;  // product code
  e[16] = 1;     // week
  e[17] = 34;    // 2024 - 1990
  e[18] = 1;     // EDID 1.4
  e[19] = 4;
  e[20] = 0xa0;  // digital input, 8 bits per colour
  // Screen size in cm at 96 DPI (1024x768: 27x20).
  e[21] = uint8_t(std::max<uint32_t>(1, (width * 254 / 960 + 5) / 10));
  e[22] = uint8_t(std::max<uint32_t>(1, (height * 254 / 960 + 5) / 10));
  e[23] = 120;   // gamma 2.2
  e[24] = 0x06;  // sRGB default, preferred timing in DTD 1
  const uint8_t chroma[10] = {0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54};
  std::memcpy(&e[25], chroma, 10);
  e[35] = 0x21;  // 640x480@60, 800x600@60
  e[36] = 0x08;  // 1024x768@60
  for (int i = 38; i < 54; i++) e[i] = 0x01;  // unused standard timings
  e[38] = 0x81;  // 1280x1024 (5:4) @60
  e[39] = 0x80;
  e[40] = 0xd1;  // 1920x1080 (16:9) @60
  e[41] = 0xc0;
  // DTD 1, the preferred timing: VESA DMT for 1024x768@60 (65 MHz), CVT-RB otherwise.
  const Timing t = (width == 1024 && height == 768) ? Timing{65000, 1024, 320, 24, 136, 768, 38, 3, 6, false, false}
                                                     : cvt_rb(width, height);
  put_dtd(&e[54], t);
  // Range limits: 50-125 Hz vertical, 30-160 kHz horizontal, at least 340 MHz
  // (in 10 MHz units, up to what the preferred timing needs).
  const uint8_t max_clk = uint8_t(std::max<uint32_t>(34, (t.clock_khz + 9999) / 10000));
  const uint8_t range[18] = {0, 0, 0, 0xfd, 0, 50, 125, 30, 160, max_clk, 0x00, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20};
  std::memcpy(&e[72], range, 18);
  const uint8_t name[18] = {0, 0, 0, 0xfc, 0, 'V', 'i', 'r', 'e', 'o', 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20};
  std::memcpy(&e[90], name, 18);
  e[108 + 3] = 0x10;  // dummy descriptor
  uint8_t sum = 0;
  for (int i = 0; i < 127; i++) sum = uint8_t(sum + e[i]);
  e[127] = uint8_t(0x100 - sum);
  return e;
}

// ---------------------------------------------------------------- rendering

VgaDevice::ModeGeom VgaDevice::geometry() const {
  ModeGeom g;
  if (s_.dispi[kDispiEnable] & kDispiEnabled) {
    g.mode = DisplayMode::Vbe;
    g.width = std::min<uint32_t>(s_.dispi[kDispiXres], kMaxWidth);
    g.height = std::min<uint32_t>(s_.dispi[kDispiYres], kMaxHeight);
    // A mode bigger than VRAM (65535x65535x32 on 16 MiB) shows the rows VRAM
    // holds: the screen, and so every buffer poll() keeps, stays within VRAM.
    if (s_.vbe_line_offset) g.height = std::min<uint32_t>(g.height, uint32_t(vram_size_ / s_.vbe_line_offset));
    if (!g.width || !g.height) g = {DisplayMode::Blank, 640, 480};
    return g;
  }
  uint32_t vde = s_.crtc[0x12] | ((s_.crtc[7] & 0x02) << 7) | ((s_.crtc[7] & 0x40) << 3);
  uint32_t lines = vde + 1;
  uint32_t cols = s_.crtc[1] + 1u;
  bool half_clock = s_.seq[1] & 0x08;
  if (!(s_.gc[6] & 1)) {
    g.mode = DisplayMode::Text;
    uint32_t cw = ((s_.seq[1] & 1) ? 8 : 9) * (half_clock ? 2 : 1);
    uint32_t ch = (s_.crtc[9] & 0x1f) + 1u;
    g.width = cols * cw;
    g.height = (lines / ch) * ch;
  } else {
    uint32_t h = lines;
    if (s_.crtc[9] & 0x80) h /= 2;
    h /= (s_.crtc[9] & 0x1f) + 1u;
    g.height = h;
    if (s_.gc[5] & 0x40) {
      g.mode = DisplayMode::Vga256;
      g.width = cols * 4;
    } else {
      g.mode = DisplayMode::Planar16;
      g.width = cols * 8 / (half_clock ? 2 : 1);
    }
  }
  if (g.width < 64 || g.height < 32 || g.width > kMaxWidth || g.height > kMaxHeight) {
    g = {DisplayMode::Blank, 640, 480};
    return g;
  }
  // Screen off (SR01 bit 5) or palette address source cleared: the display
  // shows nothing, at the size of the mode.
  if (!(s_.ar_index & 0x20) || (s_.seq[1] & 0x20)) g.mode = DisplayMode::Blank;
  return g;
}

uint32_t VgaDevice::dac_color(uint8_t index) const {
  const uint8_t* p = &s_.palette[size_t(index & s_.pel_mask) * 3];
  if (s_.dispi[kDispiEnable] & kDispi8BitDac) return bgrx(p[0], p[1], p[2]);
  auto x = [](uint8_t v) { return uint8_t(((v & 0x3f) << 2) | ((v & 0x3f) >> 4)); };
  return bgrx(x(p[0]), x(p[1]), x(p[2]));
}

uint8_t VgaDevice::attr_to_dac_index(uint8_t c) const {
  uint8_t v = s_.ar[c & 0x0f] & 0x3f;
  if (s_.ar[0x10] & 0x80) v = uint8_t((v & 0x0f) | ((s_.ar[0x14] & 0x03) << 4));
  return uint8_t(v | ((s_.ar[0x14] & 0x0c) << 4));
}

void VgaDevice::render_text(const ModeGeom& g, uint32_t* out, uint64_t now_ns) const {
  uint32_t cols = s_.crtc[1] + 1u;
  bool dbl = s_.seq[1] & 0x08;
  uint32_t cw = (s_.seq[1] & 1) ? 8 : 9;
  uint32_t ch = (s_.crtc[9] & 0x1f) + 1u;
  uint32_t rows = g.height / ch;
  uint32_t start = (uint32_t(s_.crtc[0x0c]) << 8) | s_.crtc[0x0d];
  uint32_t stride = s_.crtc[0x13] * 2u;
  if (stride == 0) stride = cols;
  uint32_t cursor = (uint32_t(s_.crtc[0x0e]) << 8) | s_.crtc[0x0f];
  uint32_t cs = s_.crtc[0x0a] & 0x1f, ce = s_.crtc[0x0b] & 0x1f;
  bool cursor_on = !(s_.crtc[0x0a] & 0x20) && ((now_ns / kCursorHalfPeriodNs) & 1) == 0;
  bool blink_hide = ((now_ns / kTextBlinkHalfPeriodNs) & 1) != 0;
  bool blink_mode = s_.ar[0x10] & 0x08;
  bool line_gfx = s_.ar[0x10] & 0x04;
  uint8_t sr3 = s_.seq[3];
  unsigned map_a = (((sr3 >> 5) & 1) << 2) | ((sr3 >> 2) & 3);
  unsigned map_b = (((sr3 >> 4) & 1) << 2) | (sr3 & 3);
  auto font_base = [](unsigned m) { return (m & 3) * 0x4000u + (m >> 2) * 0x2000u; };
  uint32_t fa = font_base(map_a), fb = font_base(map_b);
  uint32_t pal[16];
  for (int i = 0; i < 16; i++) pal[i] = dac_color(attr_to_dac_index(uint8_t(i)));
  size_t planar_words = vram_size_ / 4;
  uint32_t pw = cw * (dbl ? 2 : 1);
  for (uint32_t r = 0; r < rows; r++) {
    for (uint32_t c = 0; c < cols; c++) {
      uint32_t a = (start + r * stride + c) & 0xffff;
      if (a >= planar_words) a = 0;
      uint8_t chr = vram_[size_t(a) * 4];
      uint8_t at = vram_[size_t(a) * 4 + 1];
      uint8_t fgi = at & 0x0f, bgi = at >> 4;
      bool hide = false;
      if (blink_mode) {
        bgi &= 7;
        hide = (at & 0x80) && blink_hide;
      }
      uint32_t fg = pal[fgi], bg = pal[bgi];
      uint32_t font = ((at & 0x08) ? fa : fb) + chr * 32u;
      bool is_cursor = cursor_on && a == cursor && cs <= ce;
      for (uint32_t l = 0; l < ch; l++) {
        uint8_t bits = hide ? 0 : vram_[size_t(font + l) * 4 + 2];
        uint32_t bits9 = uint32_t(bits) << 1;
        if (cw == 9 && line_gfx && chr >= 0xc0 && chr <= 0xdf) bits9 |= bits & 1;
        if (is_cursor && l >= cs && l <= ce) bits9 = 0x1ff;
        uint32_t* px = out + size_t(r * ch + l) * g.width + size_t(c) * pw;
        for (uint32_t x = 0; x < cw; x++) {
          uint32_t color = (bits9 >> (8 - x)) & 1 ? fg : bg;
          if (dbl) {
            px[2 * x] = color;
            px[2 * x + 1] = color;
          } else {
            px[x] = color;
          }
        }
      }
    }
  }
  // Rows that do not hold a whole character cell stay black.
  for (size_t i = size_t(rows * ch) * g.width; i < size_t(g.width) * g.height; i++) out[i] = kBlack;
}

void VgaDevice::render_256(const ModeGeom& g, uint32_t* out) const {
  uint32_t start = ((uint32_t(s_.crtc[0x0c]) << 8) | s_.crtc[0x0d]) * 4u;
  uint32_t line = s_.crtc[0x13] * 8u;
  uint32_t pal[256];
  for (int i = 0; i < 256; i++) pal[i] = dac_color(uint8_t(i));
  for (uint32_t y = 0; y < g.height; y++) {
    size_t base = size_t(start) + size_t(y) * line;
    for (uint32_t x = 0; x < g.width; x++) {
      size_t i = (base + x) % vram_size_;
      out[size_t(y) * g.width + x] = pal[vram_[i]];
    }
  }
}

void VgaDevice::render_planar16(const ModeGeom& g, uint32_t* out) const {
  uint32_t start = (uint32_t(s_.crtc[0x0c]) << 8) | s_.crtc[0x0d];
  uint32_t line = s_.crtc[0x13] * 2u;
  uint32_t pal[16];
  for (int i = 0; i < 16; i++) pal[i] = dac_color(attr_to_dac_index(uint8_t(i)));
  uint8_t enable = s_.ar[0x12] & 0x0f;
  size_t words = vram_size_ / 4;
  for (uint32_t y = 0; y < g.height; y++) {
    for (uint32_t x = 0; x < g.width; x++) {
      uint32_t sx = x;
      size_t a = (size_t(start) + size_t(y) * line + sx / 8) % words;
      uint32_t planes = load32(vram_ + a * 4);
      unsigned bit = 7 - (sx & 7);
      uint8_t c = 0;
      for (unsigned p = 0; p < 4; p++) c |= uint8_t(((planes >> (8 * p + bit)) & 1) << p);
      out[size_t(y) * g.width + x] = pal[c & enable];
    }
  }
}

void VgaDevice::render_vbe_line(uint32_t y, uint32_t* out) const {
  uint32_t w = std::min<uint32_t>(s_.dispi[kDispiXres], kMaxWidth);
  uint32_t bpp = s_.dispi[kDispiBpp];
  uint32_t bytes = bpp == 4 ? (w + 1) / 2 : w * ((bpp + 7) / 8);
  size_t base = size_t(s_.vbe_start) + size_t(y) * s_.vbe_line_offset;
  if (base + bytes > vram_size_) {
    std::fill(out, out + w, kBlack);
    return;
  }
  const uint8_t* p = vram_ + base;
  switch (bpp) {
    case 4:
      for (uint32_t x = 0; x < w; x++) out[x] = dac_color(uint8_t((p[x / 2] >> ((x & 1) ? 0 : 4)) & 0xf));
      break;
    case 8:
      for (uint32_t x = 0; x < w; x++) out[x] = dac_color(p[x]);
      break;
    case 15:
      for (uint32_t x = 0; x < w; x++) {
        uint16_t v = uint16_t(p[2 * x] | (p[2 * x + 1] << 8));
        uint8_t r = (v >> 10) & 0x1f, g = (v >> 5) & 0x1f, b = v & 0x1f;
        out[x] = bgrx(uint8_t((r << 3) | (r >> 2)), uint8_t((g << 3) | (g >> 2)), uint8_t((b << 3) | (b >> 2)));
      }
      break;
    case 16:
      for (uint32_t x = 0; x < w; x++) {
        uint16_t v = uint16_t(p[2 * x] | (p[2 * x + 1] << 8));
        uint8_t r = (v >> 11) & 0x1f, g = (v >> 5) & 0x3f, b = v & 0x1f;
        out[x] = bgrx(uint8_t((r << 3) | (r >> 2)), uint8_t((g << 2) | (g >> 4)), uint8_t((b << 3) | (b >> 2)));
      }
      break;
    case 24:
      for (uint32_t x = 0; x < w; x++) out[x] = bgrx(p[3 * x + 2], p[3 * x + 1], p[3 * x]);
      break;
    default:  // 32
      for (uint32_t x = 0; x < w; x++) out[x] = kBlack | (load32(p + 4 * x) & 0x00ffffff);
      break;
  }
}

void VgaDevice::render_full(const ModeGeom& g, uint32_t* out, uint64_t now_ns) const {
  switch (g.mode) {
    case DisplayMode::Text: render_text(g, out, now_ns); break;
    case DisplayMode::Vga256: render_256(g, out); break;
    case DisplayMode::Planar16: render_planar16(g, out); break;
    case DisplayMode::Vbe:
      for (uint32_t y = 0; y < g.height; y++) render_vbe_line(y, out + size_t(y) * g.width);
      break;
    default: std::fill(out, out + size_t(g.width) * g.height, kBlack); break;
  }
}

DisplayMode VgaDevice::mode() {
  std::lock_guard g(mu_);
  return geometry().mode;
}

std::pair<uint32_t, uint32_t> VgaDevice::size() {
  std::lock_guard g(mu_);
  ModeGeom m = geometry();
  return {m.width, m.height};
}

Frame VgaDevice::snapshot(uint64_t now_ns) {
  std::lock_guard lk(mu_);
  ModeGeom g = geometry();
  std::vector<uint32_t> px(size_t(g.width) * g.height);
  render_full(g, px.data(), now_ns);
  Frame f;
  f.width = g.width;
  f.height = g.height;
  f.bgrx.resize(px.size() * 4);
  std::memcpy(f.bgrx.data(), px.data(), f.bgrx.size());
  return f;
}

std::vector<uint8_t> VgaDevice::screenshot_png(uint64_t now_ns) {
  Frame f = snapshot(now_ns);
  return encode_png_bgrx(f.bgrx.data(), f.width, f.height);
}

std::optional<FrameUpdate> VgaDevice::poll(const uint64_t* lfb_dirty, uint64_t now_ns, bool force_full) {
  std::lock_guard lk(mu_);
  ModeGeom g = geometry();
  FrameUpdate up;
  up.width = g.width;
  up.height = g.height;
  bool full = force_full;
  if (g.width != cur_geom_.width || g.height != cur_geom_.height) {
    up.mode_changed = true;
    full = true;
    cur_.assign(size_t(g.width) * g.height, kBlack);
    next_.assign(cur_.size(), kBlack);
  }
  if (g.mode != cur_geom_.mode) full = true;
  cur_geom_ = g;

  // Which lines to re-render and compare.
  std::vector<uint8_t> line_dirty(g.height, 0);
  uint32_t blink_key = 0;
  if (g.mode == DisplayMode::Text) {
    bool cursor_on = !(s_.crtc[0x0a] & 0x20) && ((now_ns / kCursorHalfPeriodNs) & 1) == 0;
    bool blink = ((now_ns / kTextBlinkHalfPeriodNs) & 1) != 0;
    blink_key = 1u | (cursor_on ? 2u : 0u) | (blink ? 4u : 0u);
  }
  bool regs_changed = reg_gen_ != seen_reg_gen_;
  bool mem_changed = mem_gen_ != seen_mem_gen_;
  bool any = false;
  if (g.mode == DisplayMode::Vbe && !full && !regs_changed && lfb_dirty) {
    uint32_t bpp = s_.dispi[kDispiBpp];
    uint32_t bytes = bpp == 4 ? (g.width + 1) / 2 : g.width * ((bpp + 7) / 8);
    size_t pages = vram_size_ / kPageSize;
    for (uint32_t y = 0; y < g.height; y++) {
      size_t b0 = size_t(s_.vbe_start) + size_t(y) * s_.vbe_line_offset;
      if (b0 >= vram_size_) break;
      size_t b1 = std::min(b0 + bytes, vram_size_) - 1;
      for (size_t p = b0 / kPageSize; p <= b1 / kPageSize && p < pages; p++) {
        uint64_t bit = uint64_t(1) << (p % 64);
        if ((lfb_dirty[p / 64] & bit) || (win_dirty_[p / 64] & bit)) {
          line_dirty[y] = 1;
          any = true;
          break;
        }
      }
    }
    for (uint32_t y = 0; y < g.height; y++)
      if (line_dirty[y]) render_vbe_line(y, next_.data() + size_t(y) * g.width);
  } else if (full || regs_changed || (g.mode == DisplayMode::Vbe) || mem_changed || blink_key != seen_blink_) {
    render_full(g, next_.data(), now_ns);
    std::fill(line_dirty.begin(), line_dirty.end(), 1);
    any = true;
  }
  seen_reg_gen_ = reg_gen_;
  seen_mem_gen_ = mem_gen_;
  seen_blink_ = blink_key;
  std::fill(win_dirty_.begin(), win_dirty_.end(), 0);
  if (!any) return std::nullopt;

  // Compare rendered lines with what the consumer has and build rectangles.
  std::vector<Rect> rects;
  if (full) {
    rects.push_back({0, 0, g.width, g.height});
    cur_.swap(next_);
    next_ = cur_;
  } else {
    bool open = false;
    Rect r;
    uint32_t rx1 = 0;
    constexpr uint32_t kJoin = 32;  // join spans closer than this on adjacent lines
    for (uint32_t y = 0; y < g.height; y++) {
      uint32_t* a = cur_.data() + size_t(y) * g.width;
      const uint32_t* b = next_.data() + size_t(y) * g.width;
      bool changed = line_dirty[y] && std::memcmp(a, b, size_t(g.width) * 4) != 0;
      if (!changed) {
        if (open) rects.push_back(r);
        open = false;
        continue;
      }
      uint32_t x0 = 0, x1 = g.width;
      while (a[x0] == b[x0]) x0++;
      while (a[x1 - 1] == b[x1 - 1]) x1--;
      std::memcpy(a + x0, b + x0, size_t(x1 - x0) * 4);
      if (open && x0 <= rx1 + kJoin && x1 + kJoin >= r.x) {
        uint32_t nx0 = std::min(r.x, x0);
        rx1 = std::max(rx1, x1);
        r.x = nx0;
        r.w = rx1 - nx0;
        r.h++;
      } else {
        if (open) rects.push_back(r);
        r = {x0, y, x1 - x0, 1};
        rx1 = x1;
        open = true;
      }
    }
    if (open) rects.push_back(r);
    if (rects.size() > 64) {
      Rect u = rects[0];
      uint32_t ux1 = u.x + u.w, uy1 = u.y + u.h;
      for (auto& q : rects) {
        u.x = std::min(u.x, q.x);
        u.y = std::min(u.y, q.y);
        ux1 = std::max(ux1, q.x + q.w);
        uy1 = std::max(uy1, q.y + q.h);
      }
      u.w = ux1 - u.x;
      u.h = uy1 - u.y;
      rects = {u};
    }
  }
  if (rects.empty() && !up.mode_changed) return std::nullopt;
  for (auto& q : rects) {
    DirtyRect d;
    d.r = q;
    d.bgrx.resize(size_t(q.w) * q.h * 4);
    for (uint32_t y = 0; y < q.h; y++)
      std::memcpy(d.bgrx.data() + size_t(y) * q.w * 4, cur_.data() + size_t(q.y + y) * g.width + q.x, size_t(q.w) * 4);
    up.rects.push_back(std::move(d));
  }
  return up;
}

std::string VgaDevice::text_screen() {
  if (mode() != DisplayMode::Text) return {};
  std::lock_guard g(mu_);
  uint32_t cols = s_.crtc[1] + 1u;
  uint32_t ch = (s_.crtc[9] & 0x1f) + 1u;
  uint32_t vde = s_.crtc[0x12] | ((s_.crtc[7] & 0x02) << 7) | ((s_.crtc[7] & 0x40) << 3);
  uint32_t rows = (vde + 1) / ch;
  if (rows == 0 || rows > 100) rows = 25;
  uint32_t start = (uint32_t(s_.crtc[0x0c]) << 8) | s_.crtc[0x0d];
  uint32_t stride = s_.crtc[0x13] * 2u;
  if (stride == 0) stride = cols;
  size_t planar_words = vram_size_ / 4;
  std::string out;
  for (uint32_t r = 0; r < rows; r++) {
    std::string line;
    for (uint32_t c = 0; c < cols; c++) {
      uint32_t a = (start + r * stride + c) & 0xffff;
      if (a >= planar_words) a = 0;
      uint8_t chr = vram_[size_t(a) * 4];
      char o;
      if (chr >= 0x20 && chr < 0x7f) o = char(chr);
      else if (chr == 0 ) o = ' ';
      else if (chr == 0xb3 || chr == 0xba) o = '|';
      else if (chr == 0xc4 || chr == 0xcd) o = '-';
      else if ((chr >= 0xb4 && chr <= 0xda)) o = '+';
      else o = '?';
      line.push_back(o);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out.push_back('\n');
  }
  return out;
}

}  // namespace vireo::vga
