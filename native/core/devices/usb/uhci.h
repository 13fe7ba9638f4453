// Intel 82371SB (PIIX3) function 2: the USB Universal Host Controller
// (UHCI), PCI 8086:7020, class 0x0c0300, two root ports. Written from
// Intel's "Universal Host Controller Interface (UHCI) Design Guide" rev 1.1
// and the PIIX3 datasheet (USBLEGSUP).
//
//   BAR4: 32 bytes of I/O registers: USBCMD, USBSTS (write 1 to clear),
//     USBINTR, FRNUM, FLBASEADD, SOFMOD, PORTSC1/2.
//   Config 0x60 SBRN (USB 1.0), 0xc0 USBLEGSUP (stored; the SMI traps and the
//     PIRQ enable bit are not acted on: the interrupt is always on INTD).
//   Interrupt: INTx (the board sets pin D as the PIIX3 has it).
//
// The schedule runs in 1 ms frames on the controller's own timer thread
// (start_thread) while USBCMD.RS is set and the machine is not paused: each frame reads its frame list
// entry and walks the TDs and QHs there (queue heads vertically, depth or
// breadth first as each TD's Vf bit says, horizontally on), executing active
// TDs against the device on an enabled port with the TD's address, then
// raises the frame's interrupts. A frame thread that fell behind runs at most
// kMaxCatchUp frames at once and skips the rest (FRNUM still advances).
// Guest mistakes are bounded and counted, never fatal to the host: a frame
// visits at most kMaxLinks links and moves at most kMaxFrameBytes bytes; a
// queue head seen again without progress ends the frame (that is also how
// the bandwidth-reclamation loop Linux builds ends); a link, frame list or
// buffer outside guest RAM is a Host System Error and a TD with an illegal
// length or PID a Host Controller Process Error, which halt the controller
// as the hardware does.
#pragma once
#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "devices/pci/pci.h"
#include "devices/usb/usb.h"
#include "machine/guest_memory.h"

namespace vireo::usb {

class Uhci : public pci::PciFunction, public Stateful {
public:
  static constexpr uint16_t kVendor = 0x8086, kDevice = 0x7020;
  static constexpr uint32_t kClass = 0x0c0300;  // serial bus, USB, UHCI
  static constexpr int kSlot = 1, kFn = 2;      // 00:01.2 on the PIIX3, as QEMU's pc places it
  static constexpr uint8_t kIntPinD = 4;
  static constexpr int kBar = 4, kPorts = 2;
  static constexpr uint32_t kIoSize = 32;
  static constexpr uint32_t kSbrn = 0x60, kLegSup = 0xc0;
  static constexpr uint16_t kLegSupDefault = 0x2000;  // PIRQ enable, as after power-on

  // I/O register offsets (Design Guide 2.1).
  enum : uint32_t { kUsbCmd = 0x00, kUsbSts = 0x02, kUsbIntr = 0x04, kFrNum = 0x06, kFlBaseAdd = 0x08,
                    kSofMod = 0x0c, kPortSc1 = 0x10, kPortSc2 = 0x12 };
  // USBCMD.
  static constexpr uint16_t kCmdRs = 1 << 0, kCmdHcReset = 1 << 1, kCmdGReset = 1 << 2, kCmdEgsm = 1 << 3,
                            kCmdFgr = 1 << 4, kCmdSwDbg = 1 << 5, kCmdCf = 1 << 6, kCmdMaxP = 1 << 7;
  // USBSTS.
  static constexpr uint16_t kStsUsbInt = 1 << 0, kStsError = 1 << 1, kStsResume = 1 << 2, kStsHse = 1 << 3,
                            kStsHcpe = 1 << 4, kStsHalted = 1 << 5;
  // USBINTR.
  static constexpr uint16_t kIntrTimeoutCrc = 1 << 0, kIntrResume = 1 << 1, kIntrIoc = 1 << 2, kIntrShort = 1 << 3;
  // PORTSC.
  static constexpr uint16_t kPortCcs = 1 << 0, kPortCsc = 1 << 1, kPortPe = 1 << 2, kPortPec = 1 << 3,
                            kPortDPlus = 1 << 4, kPortDMinus = 1 << 5, kPortRd = 1 << 6, kPortAlways1 = 1 << 7,
                            kPortLsda = 1 << 8, kPortPr = 1 << 9, kPortSusp = 1 << 12;
  // Link pointers (Design Guide 3.1-3.3): terminate, QH (vs TD), depth first.
  static constexpr uint32_t kLinkT = 1 << 0, kLinkQh = 1 << 1, kLinkVf = 1 << 2, kLinkAddr = ~0xfu;
  // TD control/status (DWORD 1).
  static constexpr uint32_t kTdActLen = 0x7ff, kTdBitstuff = 1 << 17, kTdCrcTimeout = 1 << 18, kTdNak = 1 << 19,
                            kTdBabble = 1 << 20, kTdBufErr = 1 << 21, kTdStalled = 1 << 22, kTdActive = 1 << 23,
                            kTdIoc = 1 << 24, kTdIos = 1 << 25, kTdLs = 1 << 26, kTdCerrShift = 27,
                            kTdCerrMask = 3u << 27, kTdSpd = 1 << 29;
  static constexpr uint32_t kTdStatusMask = 0x00fe0000;  // bits 23:17
  static constexpr uint32_t kTdMaxLenShift = 21, kTdMaxLenNull = 0x7ff, kTdMaxLenLimit = 0x4ff;

  static constexpr int64_t kFrameNs = 1'000'000;
  static constexpr int kMaxCatchUp = 8;         // frames run at once by a thread that fell behind
  static constexpr int kMaxLinks = 1024;        // links followed in one frame
  static constexpr int kMaxFrameBytes = 1500;   // a full-speed frame: 12 Mbit/s for 1 ms
  static constexpr int64_t kIdleTickNs = 8 * kFrameNs;  // wake-up period while no TD is active

  struct Counters {
    uint64_t frames = 0, frames_skipped = 0;
    uint64_t tds = 0;               // TDs executed
    uint64_t link_budget = 0;       // frames ended by kMaxLinks (loops without a queue head, huge lists)
    uint64_t qh_loops = 0;          // frames ended by a queue head seen twice without progress
    uint64_t byte_budget = 0;       // frames ended by kMaxFrameBytes
    uint64_t bad_memory = 0;        // frame list / TD / QH / buffer outside RAM (host system error)
    uint64_t bad_tds = 0;           // illegal length or PID (process error)
    uint64_t nested_qhs = 0;        // a QH element pointing at a QH (not followed)
  };

  using Clock = std::function<int64_t()>;  // monotonic nanoseconds
  Uhci(const GuestMemory* mem, Clock mono_ns);
  ~Uhci() override;

  // A device on root port 0 or 1 (before the guest runs).
  void attach(int port, std::shared_ptr<UsbDevice> dev);

  // The BAR4 register block (tests may call it directly).
  std::shared_ptr<IoDevice> io() { return io_; }
  uint32_t reg_read(uint32_t off, int size);
  void reg_write(uint32_t off, int size, uint32_t value);

  // Runs the frames due by `now` (the thread calls this; tests too). Returns
  // how many ran.
  int run_due(int64_t now);
  // Runs exactly one frame now if the controller is running (tests).
  void run_frame();

  void start_thread();
  void stop_thread();
  void reset() override;
  // The machine is paused (Machine::pause) or not started yet: no frame runs,
  // the thread sleeps without a timeout (no CPU), and the frame clock stands
  // still at the pause instant. resume() moves the next frame's due time on
  // by the time spent paused, so the frames that would have run meanwhile are
  // not run at once, and frames go on 1 ms apart. Saved state taken while
  // paused counts the time to the next frame from the pause instant.
  void pause();
  void resume();
  bool paused() const;

  Counters counters() const;

  // Saved state (machine/state.h, docs/state.md, section `dev:uhci`): the
  // I/O registers, the ports' status, the interrupt causes, and the frame
  // clock as the time to the next frame, rebased to the clock at load (the
  // frames a saved machine did not run are not run at once). The devices on
  // the ports save their own state; PCI config space (LEGSUP included) is the
  // PCI host's.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return 1; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;
  bool irq_level() const { return intx_level(); }

private:
  int64_t now_locked() const { return paused_ ? paused_at_ : clock_(); }
  uint16_t read16(uint32_t reg);
  void write16(uint32_t reg, uint16_t v, uint16_t written /*bits the access covered*/);
  void write_cmd(uint16_t v);
  void write_port(int p, uint16_t v, uint16_t written);
  void hc_reset(bool devices);
  void frame_locked();
  void update_irq();
  void halt(uint16_t why);
  // One TD: true when it completed so a queue may advance past it.
  enum class TdResult { Advance, Stay, Halted };
  TdResult execute_td(uint32_t addr, uint32_t link, uint32_t ctrl, uint32_t token, uint32_t buffer);
  UsbDevice* device_at(uint8_t address);

  const GuestMemory* mem_;
  Clock clock_;
  std::shared_ptr<IoDevice> io_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  bool paused_ = false;
  int64_t paused_at_ = 0;

  uint16_t cmd_ = 0, sts_ = kStsHalted, intr_ = 0, frnum_ = 0;
  uint32_t flbase_ = 0;
  uint8_t sofmod_ = 64;
  std::array<uint16_t, kPorts> portsc_{};
  std::array<std::shared_ptr<UsbDevice>, kPorts> dev_{};
  bool int_ioc_ = false, int_short_ = false;  // causes behind USBSTS.USBINT
  int64_t next_frame_ns_ = 0;
  bool last_frame_busy_ = false;  // the last frame saw an active TD
  int frame_bytes_ = 0;
  Counters c_;
};

}  // namespace vireo::usb
