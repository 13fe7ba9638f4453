// A full-speed USB HID tablet: an absolute pointer (X/Y 0..32767), five
// buttons, a vertical wheel and a horizontal wheel (AC Pan), as one
// interrupt IN endpoint. Guests drive it with their generic HID drivers
// (Linux usbhid + hid-generic, Windows mouhid), so the guest's pointer sits
// where the host's is without any grab. Written from the USB 2.0
// specification (chapter 9) and the HID 1.11 specification.
//
//   Device: USB 1.1, class in the interface, ep0 max packet 64,
//     VID:PID 1209:0001 (pid.codes' test PID: Vireo has no vendor ID of its own),
//     strings 1 "Vireo", 2 "Vireo USB Tablet", 3 "1" (serial).
//   Configuration 1: one interface, HID class, no boot subclass (a tablet is
//     not a boot mouse), bus powered, 100 mA, no remote wakeup.
//   Endpoint 0x81: interrupt IN, 8 bytes, bInterval 10 ms.
//   Report (7 bytes, no report ID): buttons (bits 0-4: left, right, middle,
//     back, forward), X (LE16, 0..32767), Y (LE16), wheel (int8, +1 = away
//     from the user), AC Pan (int8, +1 = right).
//
// The interrupt endpoint NAKs until the pointer changed (or the SET_IDLE
// period ran out) and then returns the latest state: positions coalesce,
// wheel steps add up (beyond +-127 per report they carry to the next). A
// button change is never merged away: while the guest has not yet taken the
// state before it, that state is queued as a report of its own (up to
// kQueueMax), so a click shorter than the guest's polling interval still
// arrives as a press and a release.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "bus/device.h"
#include "devices/usb/usb.h"

namespace vireo::usb {

class HidTablet : public UsbDevice, public Stateful {
public:
  static constexpr int kMaxCoord = 32767;
  static constexpr uint16_t kVendor = 0x1209, kProduct = 0x0001;
  static constexpr uint8_t kEp0MaxPacket = 64;
  static constexpr uint8_t kIntEndpoint = 1, kIntMaxPacket = 8, kIntIntervalMs = 10;
  static constexpr size_t kReportLen = 7;
  // Buttons bitmask as pointer() takes it.
  static constexpr uint8_t kLeft = 1, kRight = 2, kMiddle = 4, kBack = 8, kForward = 16;
  // The endpoint counts as "being polled" this long after the last IN token.
  static constexpr int64_t kActiveNs = 1'000'000'000;
  // Reports held back for button changes (beyond that, states merge again).
  static constexpr size_t kQueueMax = 16;

  // HID class requests (HID 1.11, 7.2) and descriptor types (7.1).
  enum : uint8_t { kGetReport = 1, kGetIdle = 2, kGetProtocol = 3, kSetReport = 9, kSetIdle = 10, kSetProtocol = 11 };
  enum : uint8_t { kDescHid = 0x21, kDescReport = 0x22 };

  using Clock = std::function<int64_t()>;  // monotonic nanoseconds
  explicit HidTablet(Clock mono_ns);

  // ---- host side (any thread) ----
  // The pointer at (x, y) in 0..kMaxCoord (clamped), buttons as above, wheel
  // steps since the last call (vertical: + away from the user; horizontal: + right).
  void pointer(int x, int y, uint8_t buttons, int wheel, int hwheel = 0);
  // Configured by the guest, and its interrupt endpoint polled in the last kActiveNs.
  bool active() const;
  bool configured() const;
  // Button changes merged into the state after them because kQueueMax reports
  // were already waiting (a guest that stopped polling while the host clicks).
  uint64_t merged_clicks() const;

  // Saved state (machine/state.h, docs/state.md, section `dev:tablet`): the
  // USB device state (address, configuration, halt, idle, protocol), a
  // control transfer in progress, the pointer and the report not yet
  // delivered, and (version 2) the reports queued for button changes; the
  // last report and poll times as ages, rebased to the clock at load.
  // Version 1 (no queue) still loads.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return 2; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

  // ---- UsbDevice (the controller's frame thread) ----
  void bus_reset() override;
  uint8_t address() const override;
  int transfer(Pid pid, uint8_t ep, std::span<uint8_t> data) override;

  // Descriptors as the guest reads them (also for tests).
  static std::vector<uint8_t> device_descriptor();
  static std::vector<uint8_t> config_descriptor();  // with interface, HID and endpoint
  static std::span<const uint8_t> report_descriptor();
  static std::vector<uint8_t> string_descriptor(uint8_t index);  // empty: no such string

  // The report as the interrupt endpoint would send it now (for tests).
  std::vector<uint8_t> current_report();

private:
  int control(Pid pid, std::span<uint8_t> data);
  // Runs a SETUP; fills ctrl_data_ for IN requests. False = stall.
  bool setup(const SetupPacket& s);
  int interrupt_in(std::span<uint8_t> data);
  std::array<uint8_t, kReportLen> report_locked();

  Clock clock_;
  mutable std::mutex mu_;  // everything below (host input and the frame thread)
  // Device state (USB 2.0 9.1): address, configuration.
  uint8_t address_ = 0, pending_address_ = 0;
  bool set_address_pending_ = false;
  uint8_t config_ = 0;
  bool ep_halted_ = false;
  uint8_t idle_ = 0;      // SET_IDLE duration, 4 ms units (0 = report only on change)
  uint8_t protocol_ = 1;  // 1 = report protocol
  int64_t last_report_ns_ = 0, last_poll_ns_ = 0;
  bool polled_ = false;
  // Control transfer in progress.
  enum class Stage { Idle, DataIn, DataOut, StatusIn, StatusOut, Stalled };
  Stage stage_ = Stage::Idle;
  SetupPacket setup_{};
  std::vector<uint8_t> ctrl_data_;
  size_t ctrl_pos_ = 0;
  // Pointer state.
  int x_ = 0, y_ = 0;
  uint8_t buttons_ = 0;
  int wheel_ = 0, hwheel_ = 0;
  bool changed_ = false;
  // Reports not yet delivered that a button change closed, oldest first.
  std::deque<std::array<uint8_t, kReportLen>> queued_;
  uint64_t merged_clicks_ = 0;  // not saved: a diagnostic counter
};

}  // namespace vireo::usb
