// Port ranges a PC guest (SeaBIOS, Linux, Windows) touches where Vireo has no
// model: each gets a harmless handler so nothing unknown reaches the vCPU
// loop as an error. Every range is a named constant below with where it
// comes from. Also: the POST code port 0x80 (last value recorded) and the
// QEMU/Bochs debug console (0x402, 0xe9), whose output goes to a callback.
//
// register_all() inserts each range on the PIO bus only where nothing is
// registered yet, so the board registers real devices first.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus/bus.h"
#include "bus/device.h"

namespace vireo {

class MiscPorts : public Stateful {
public:
  enum class Kind : uint8_t { Dummy, Post, DebugCon };
  struct Range {
    uint16_t base;
    uint16_t len;
    uint8_t read_value;  // what every byte reads as (Dummy)
    Kind kind;
    const char* name;
  };

  // 8237 DMA controllers and page registers (IBM PC/AT): no ISA DMA devices here.
  static constexpr Range kDma1{0x00, 0x10, 0xff, Kind::Dummy, "dma1"};
  static constexpr Range kDmaPage{0x81, 0x0f, 0xff, Kind::Dummy, "dma-page"};  // 0x81..0x8f
  static constexpr Range kDmaPageHigh{0x90, 0x10, 0xff, Kind::Dummy, "dma-page-high"};
  static constexpr Range kDma2{0xc0, 0x20, 0xff, Kind::Dummy, "dma2"};
  // POST diagnostic port; also Linux's default I/O delay port.
  static constexpr Range kPost{0x80, 0x01, 0xff, Kind::Post, "post"};
  // Alternate I/O delay port (Linux io_delay_type=0xed).
  static constexpr Range kDelayEd{0xed, 0x01, 0xff, Kind::Dummy, "delay-ed"};
  // Math coprocessor error/busy (0xf0 clear busy, 0xf1 reset): legacy DOS.
  static constexpr Range kFpu{0xf0, 0x10, 0xff, Kind::Dummy, "fpu"};
  // QEMU debugcon (SeaBIOS writes its log here once a read returns 0xe9) and Bochs' 0xe9 hack.
  static constexpr Range kDebugCon{0x402, 0x01, 0xe9, Kind::DebugCon, "debugcon"};
  static constexpr Range kBochsE9{0xe9, 0x01, 0xe9, Kind::DebugCon, "bochs-e9"};
  // Absent legacy devices: reads of all-ones mean "nothing there" to probes.
  static constexpr Range kGamePort{0x201, 0x01, 0xff, Kind::Dummy, "gameport"};
  static constexpr Range kLpt2{0x278, 0x08, 0xff, Kind::Dummy, "lpt2"};
  static constexpr Range kCom4{0x2e8, 0x08, 0xff, Kind::Dummy, "com4"};
  static constexpr Range kCom2{0x2f8, 0x08, 0xff, Kind::Dummy, "com2"};
  static constexpr Range kLpt1{0x378, 0x08, 0xff, Kind::Dummy, "lpt1"};
  static constexpr Range kLpt3{0x3bc, 0x04, 0xff, Kind::Dummy, "lpt3"};
  static constexpr Range kCom3{0x3e8, 0x08, 0xff, Kind::Dummy, "com3"};
  static constexpr Range kFloppy{0x3f0, 0x06, 0xff, Kind::Dummy, "fdc"};   // 0x3f0..0x3f5
  static constexpr Range kFloppyDir{0x3f7, 0x01, 0xff, Kind::Dummy, "fdc-dir"};  // 0x3f6 is IDE
  // QEMU ACPI hotplug registers the SeaBIOS DSDT reads in its GPE handlers:
  // PCI hotplug (PCIU/PCID/B0EJ) at 0xae00 and CPU present bitmap at 0xaf00. Zero = no events.
  static constexpr Range kPciHotplug{0xae00, 0x10, 0x00, Kind::Dummy, "acpi-pcihp"};
  static constexpr Range kCpuHotplug{0xaf00, 0x20, 0x00, Kind::Dummy, "acpi-cpuhp"};

  static constexpr Range kAll[] = {kDma1, kDmaPage, kDmaPageHigh, kDma2, kPost, kDelayEd, kFpu, kDebugCon,
                                   kBochsE9, kGamePort, kLpt2, kCom4, kCom2, kLpt1, kLpt3, kCom3, kFloppy,
                                   kFloppyDir, kPciHotplug, kCpuHotplug};

  struct State {
    static constexpr uint32_t kVersion = 1;
    uint8_t post_code = 0;
    uint64_t post_writes = 0;
    uint64_t dummy_writes = 0;
  };

  explicit MiscPorts(std::function<void(uint8_t)> debug_out = {});

  // Handler for one range (offsets relative to range.base).
  std::shared_ptr<IoDevice> handler(const Range& r);
  // Insert every range of kAll that is still free; returns the names of those skipped.
  std::vector<std::string> register_all(Bus& pio);

  uint8_t post_code() const;
  State snapshot() const;

  // Saved state (section "misc-ports"): the POST code and the write
  // counters. The range handlers have none of their own (dummy ranges read
  // a constant, debugcon output goes straight out).
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

  // What the handlers call.
  void on_read(const Range& r, uint64_t off, std::span<uint8_t> d);
  void on_write(const Range& r, uint64_t off, std::span<const uint8_t> d);

private:
  std::function<void(uint8_t)> debug_out_;
  mutable std::mutex mu_;
  State s;
};

}  // namespace vireo
