// What a USB host controller sees of a device on one of its ports: packets
// (tokens with their data) in, a handshake and data out. Written from the USB
// 2.0 specification, chapters 8 (protocol) and 9 (device framework).
//
// A device is called on the controller's frame thread with the controller's
// lock held; anything it shares with other threads (host input) it guards
// itself.
#pragma once
#include <cstdint>
#include <span>

namespace vireo::usb {

// Token PIDs as a UHCI TD carries them (USB 2.0 table 8-1).
enum class Pid : uint8_t { Out = 0xe1, In = 0x69, Setup = 0x2d };

// A transaction's outcome: >= 0 is ACK with that many bytes (IN: written to
// the buffer; OUT/SETUP: bytes taken), or one of these handshakes.
constexpr int kNak = -1;
constexpr int kStall = -2;

// Standard request codes (USB 2.0 table 9-4) and descriptor types (table 9-5).
enum : uint8_t {
  kReqGetStatus = 0, kReqClearFeature = 1, kReqSetFeature = 3, kReqSetAddress = 5, kReqGetDescriptor = 6,
  kReqSetDescriptor = 7, kReqGetConfiguration = 8, kReqSetConfiguration = 9, kReqGetInterface = 10,
  kReqSetInterface = 11,
};
enum : uint8_t { kDescDevice = 1, kDescConfig = 2, kDescString = 3, kDescInterface = 4, kDescEndpoint = 5 };

// The 8-byte SETUP packet (USB 2.0 table 9-2).
struct SetupPacket {
  uint8_t request_type = 0, request = 0;
  uint16_t value = 0, index = 0, length = 0;
  static SetupPacket parse(std::span<const uint8_t> b) {
    SetupPacket s;
    s.request_type = b[0];
    s.request = b[1];
    s.value = uint16_t(b[2] | b[3] << 8);
    s.index = uint16_t(b[4] | b[5] << 8);
    s.length = uint16_t(b[6] | b[7] << 8);
    return s;
  }
};

class UsbDevice {
public:
  virtual ~UsbDevice() = default;
  // USB bus reset (the port was reset): default address 0, not configured.
  virtual void bus_reset() = 0;
  // The address the device answers to (0 until SET_ADDRESS completes).
  virtual uint8_t address() const = 0;
  virtual bool low_speed() const { return false; }
  // One transaction to endpoint `ep` of this device. `data` is the buffer:
  // for IN the device writes at most data.size() bytes; for OUT and SETUP it
  // holds what the host sent. Returns bytes or kNak / kStall.
  virtual int transfer(Pid pid, uint8_t ep, std::span<uint8_t> data) = 0;
};

}  // namespace vireo::usb
