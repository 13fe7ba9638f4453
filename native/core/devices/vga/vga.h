// Standard VGA + Bochs VBE ("dispi") display core, as in QEMU's `-vga std`.
//
// This is the bus-independent state machine: legacy VGA registers
// (0x3b0-0x3df), the Bochs dispi index/data ports (0x1ce/0x1cf), the legacy
// memory window (0xa0000-0xbffff, VGA write modes 0-3, read modes 0-1, chain-4,
// odd/even), the 4 KiB MMIO BAR of the PCI variant (EDID, port mirror, dispi,
// QEMU extension registers) and the renderer that turns it all into a 32-bit
// BGRX surface. The PCI function wrapper lives in std_vga_pci.h.
//
// VRAM is one anonymous host mapping. The board maps it into the guest as a
// KVM memory slot at the BAR0 address, so linear-framebuffer writes never
// reach this code; the board passes KVM's dirty log (1 bit per 4 KiB page of
// VRAM) to poll(). Writes through the legacy window are tracked here.
//
// VRAM layout: the four VGA planes are interleaved, byte (planar address a,
// plane p) lives at vram[a * 4 + p]. Chain-4 (mode 13h, VBE banked access)
// then addresses vram bytes directly.
//
// Threading: every entry point takes mu_. Port/MMIO calls come from vCPU
// threads, poll()/screenshot from the display thread.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "bus/device.h"

namespace vireo::vga {

// Bochs dispi register indices (Bochs vbe.h interface, index written to 0x1ce).
enum DispiIndex : uint16_t {
  kDispiId = 0,
  kDispiXres = 1,
  kDispiYres = 2,
  kDispiBpp = 3,
  kDispiEnable = 4,
  kDispiBank = 5,
  kDispiVirtWidth = 6,
  kDispiVirtHeight = 7,
  kDispiXOffset = 8,
  kDispiYOffset = 9,
  kDispiVideoMemory64k = 10,
  kDispiCount = 11,
};
constexpr uint16_t kDispiId0 = 0xB0C0, kDispiId5 = 0xB0C5;
constexpr uint16_t kDispiEnabled = 0x01, kDispiGetCaps = 0x02, kDispi8BitDac = 0x20,
                   kDispiLfbEnabled = 0x40, kDispiNoClearMem = 0x80;
// The largest mode the renderer draws (vga.cc kMaxWidth/kMaxHeight). The VGA BIOS lists a
// mode only when it fits these and VRAM: with 16 MiB, up to 3840x2160x16, as on QEMU.
constexpr uint16_t kDispiMaxXres = 4096, kDispiMaxYres = 4096, kDispiMaxBpp = 32;

// Every register of the device; VRAM is saved separately (vram()/vram_size()).
struct VgaState {
  static constexpr uint32_t kVersion = 1;
  uint32_t version = kVersion;
  uint8_t misc_output = 0;
  uint8_t feature_control = 0;
  uint8_t seq_index = 0;
  std::array<uint8_t, 8> seq{};
  uint8_t gc_index = 0;
  std::array<uint8_t, 16> gc{};
  uint8_t ar_index = 0;           // bit 5 = palette address source (display on)
  bool ar_flip_flop = false;      // false: next 0x3c0 write is an index
  std::array<uint8_t, 21> ar{};
  uint8_t crtc_index = 0;
  std::array<uint8_t, 32> crtc{};
  uint8_t dac_read_index = 0;
  uint8_t dac_write_index = 0;
  uint8_t dac_sub_index = 0;      // 0..2: R, G, B
  uint8_t dac_state = 0;          // 0: last index written was the write index; 3: read index
  std::array<uint8_t, 3> dac_cache{};
  std::array<uint8_t, 768> palette{};
  uint8_t pel_mask = 0xff;
  uint8_t st01_toggle = 0;
  uint32_t latch = 0;             // four plane latches, plane p in bits 8p..8p+7
  uint16_t dispi_index = 0;
  std::array<uint16_t, kDispiCount> dispi{};
  uint32_t vbe_start = 0;         // byte offset of the visible VBE frame in VRAM
  uint32_t vbe_line_offset = 0;   // bytes per VBE scanline
  uint32_t vbe_bank_offset = 0;
};

struct Rect {
  uint32_t x = 0, y = 0, w = 0, h = 0;
};

// One changed region of the screen, with its pixels (w*h*4 bytes, BGRX, tight).
struct DirtyRect {
  Rect r;
  std::vector<uint8_t> bgrx;
};

struct FrameUpdate {
  uint32_t width = 0, height = 0;
  bool mode_changed = false;
  std::vector<DirtyRect> rects;
};

// A whole frame: width*height pixels, BGRX, stride width*4.
struct Frame {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> bgrx;
};

enum class DisplayMode : uint8_t { Blank, Text, Vga256, Planar16, Vbe };

class VgaDevice : public std::enable_shared_from_this<VgaDevice>, public Stateful {
public:
  static constexpr size_t kDefaultVramSize = 16u << 20;
  static constexpr size_t kPageSize = 4096;
  // Allocate with std::make_shared: the bus adapters below hold a reference.
  explicit VgaDevice(size_t vram_size = kDefaultVramSize);
  ~VgaDevice();
  VgaDevice(const VgaDevice&) = delete;
  VgaDevice& operator=(const VgaDevice&) = delete;

  uint8_t* vram() { return vram_; }
  size_t vram_size() const { return vram_size_; }

  // Bus adapters. Register them where the comment says; offsets are relative.
  std::shared_ptr<IoDevice> legacy_ports();   // PIO 0x3b0, len 0x30
  std::shared_ptr<IoDevice> dispi_ports();    // PIO 0x1ce, len 3 (index 0x1ce, data 0x1cf/0x1d0)
  std::shared_ptr<IoDevice> legacy_memory();  // MMIO 0xa0000, len 0x20000
  std::shared_ptr<IoDevice> mmio_regs();      // PCI BAR2, 4 KiB
  std::shared_ptr<IoDevice> lfb();            // PCI BAR0 fallback (when not a KVM slot)

  // Direct register access (what the adapters call), for tests and tools.
  uint8_t port_read(uint16_t port);
  void port_write(uint16_t port, uint8_t v);
  uint16_t dispi_read(uint16_t index);
  void dispi_write(uint16_t index, uint16_t v);
  uint8_t mem_read(uint32_t offset);           // offset into 0xa0000 window
  void mem_write(uint32_t offset, uint8_t v);

  // What changed since the last poll. `lfb_dirty`: 1 bit per 4 KiB VRAM page
  // written through the LFB since the last call (bit i of word i/64), or null
  // to treat all of VRAM as dirty. `now_ns` drives cursor and text blink.
  // Returns nullopt when the screen did not change.
  std::optional<FrameUpdate> poll(const uint64_t* lfb_dirty, uint64_t now_ns, bool force_full);
  // Render the current screen from scratch (does not disturb poll()'s state).
  Frame snapshot(uint64_t now_ns);
  // The same frame as a PNG file (8-bit RGB).
  std::vector<uint8_t> screenshot_png(uint64_t now_ns);
  // Current mode, for diagnostics and tests.
  DisplayMode mode();
  // The screen's size in pixels as poll() and snapshot() draw it (0x0 blank).
  std::pair<uint32_t, uint32_t> size();
  // In text mode: the characters on screen, one line per row (trailing
  // spaces trimmed), CP437 box drawing shown as +, -, | and other non-ASCII
  // bytes as '?'. Empty in graphics modes. For tests and accessibility.
  std::string text_screen();

  void reset();
  VgaState save();
  void restore(const VgaState& s);
  // The Bochs dispi index as the 0x1ce port holds it (VgaState::dispi_index).
  uint16_t dispi_index();
  void set_dispi_index(uint16_t v);

  // Saved state (machine/state.h, docs/state.md, section `dev:vga`): every
  // register of VgaState, then VRAM as present pages (zero pages left out).
  // Loading re-checks every index and the VBE geometry against VRAM, then
  // copies VRAM in place (the KVM slot maps this same memory, so the LFB
  // shows it at once) and makes the next poll() a full frame.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return VgaState::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

  // 128-byte EDID 1.4 block served at BAR2 offset 0. Its preferred timing (DTD 1)
  // is width x height at 60 Hz: the VESA DMT timing for 1024x768, CVT reduced
  // blanking (VESA CVT 1.2) for any other size. The physical size says 96 DPI.
  static constexpr uint32_t kDefaultPreferredWidth = 1024, kDefaultPreferredHeight = 768;
  static constexpr uint32_t kMinPreferredWidth = 640, kMinPreferredHeight = 480;
  static constexpr uint32_t kMaxPreferredSide = 4095;  // EDID's 12-bit fields
  static std::array<uint8_t, 128> make_edid(uint32_t width = kDefaultPreferredWidth, uint32_t height = kDefaultPreferredHeight);

  // The size the EDID offers as preferred (a VM's display setting, or the console
  // window's size): guests read it when they probe modes (GRUB's gfxmode=auto,
  // Linux bochs-drm on every connector probe, so `xrandr` sees a change at once).
  // Refused (false, nothing changes) below 640x480, above 4095 a side, or when
  // the mode at 32 bpp does not fit in VRAM.
  bool set_preferred_size(uint32_t width, uint32_t height);
  std::pair<uint32_t, uint32_t> preferred_size() const;
  // Whether width x height could be a preferred size of a VRAM this big.
  static bool preferred_size_ok(uint32_t width, uint32_t height, size_t vram_size);

private:
  struct ModeGeom {
    DisplayMode mode = DisplayMode::Blank;
    uint32_t width = 0, height = 0;
  };
  uint8_t port_read_locked(uint16_t port);
  void port_write_locked(uint16_t port, uint8_t v);
  uint16_t dispi_read_locked(uint16_t index);
  void dispi_write_locked(uint16_t index, uint16_t v);
  uint8_t mem_read_locked(uint32_t offset);
  void mem_write_locked(uint32_t offset, uint8_t v);
  void mmio_read(uint64_t off, std::span<uint8_t> d);
  void mmio_write(uint64_t off, std::span<const uint8_t> d);
  void lfb_access(uint64_t off, std::span<uint8_t> rd, std::span<const uint8_t> wr);
  void vbe_update_geometry();
  void vbe_enable_changed(uint16_t old_enable);
  void mark_dirty(size_t vram_off);
  bool crtc_is_color() const { return s_.misc_output & 1; }

  ModeGeom geometry() const;
  uint32_t dac_color(uint8_t index) const;
  uint8_t attr_to_dac_index(uint8_t c) const;
  void render_text(const ModeGeom& g, uint32_t* out, uint64_t now_ns) const;
  void render_256(const ModeGeom& g, uint32_t* out) const;
  void render_planar16(const ModeGeom& g, uint32_t* out) const;
  void render_vbe_line(uint32_t y, uint32_t* out) const;
  void render_full(const ModeGeom& g, uint32_t* out, uint64_t now_ns) const;

  mutable std::mutex mu_;
  VgaState s_;
  uint8_t* vram_ = nullptr;
  size_t vram_size_ = 0;
  std::array<uint8_t, 128> edid_{};
  uint32_t pref_w_ = kDefaultPreferredWidth, pref_h_ = kDefaultPreferredHeight;

  // Poll state (also under mu_).
  std::vector<uint64_t> win_dirty_;  // pages written through the legacy window/LFB handler
  uint64_t reg_gen_ = 1;             // bumps on any register write
  uint64_t mem_gen_ = 1;             // bumps on any legacy window write
  uint64_t seen_reg_gen_ = 0, seen_mem_gen_ = 0;
  uint32_t seen_blink_ = ~0u;
  ModeGeom cur_geom_;
  std::vector<uint32_t> cur_;        // last frame handed out
  std::vector<uint32_t> next_;       // scratch
};

}  // namespace vireo::vga
