// Motorola MC146818 real-time clock with 128 bytes of CMOS RAM, as on the
// PC/AT: index port 0x70 (bit 7 = NMI disable), data port 0x71, IRQ 8.
// Register on the PIO bus at kPortBase, length kPortLen (offset 0 index, 1 data).
//
// Time runs from an injected monotonic clock (nanoseconds), so tests drive it
// by hand. Interrupt sources: periodic (rate from register A), update-ended
// (once per second) and alarm. They are evaluated whenever the guest touches
// a register and whenever the board calls tick(); next_event_ns() says when
// the next one is due, or start_thread() runs a timer thread that does it.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "bus/device.h"
#include "devices/irq.h"

namespace vireo {

class CmosRtc : public IoDevice {
public:
  static constexpr uint16_t kPortBase = 0x70;  // IBM PC/AT: CMOS index; 0x71 data
  static constexpr uint16_t kPortLen = 2;
  static constexpr int kIrq = 8;

  // Register numbers (MC146818 datasheet; PC CMOS layout as SeaBIOS' hw/rtc.h names it).
  enum : uint8_t {
    kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03, kHours = 0x04,
    kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07, kMonth = 0x08, kYear = 0x09,
    kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d,
    kShutdownStatus = 0x0f, kFloppyTypes = 0x10, kDiskTypes = 0x12, kEquipment = 0x14,
    kBaseMemLow = 0x15, kBaseMemHigh = 0x16, kExtMemLow = 0x17, kExtMemHigh = 0x18,
    kExtMem2Low = 0x30, kExtMem2High = 0x31, kCentury = 0x32, kMemAbove16mLow = 0x34,
    kMemAbove16mHigh = 0x35, kBootFlag1 = 0x38, kBootFlag2 = 0x3d, kMemAbove4gLow = 0x5b,
    kMemAbove4gMid = 0x5c, kMemAbove4gHigh = 0x5d, kSmpCount = 0x5f,
  };
  // Register A: UIP, divider (bits 6:4; 010 = 32.768 kHz running), rate select (3:0).
  static constexpr uint8_t kAUip = 0x80, kADividerMask = 0x70, kADividerNormal = 0x20, kARateMask = 0x0f;
  // Register B.
  static constexpr uint8_t kBSet = 0x80, kBPie = 0x40, kBAie = 0x20, kBUie = 0x10, kBSqwe = 0x08,
                           kBBinary = 0x04, kB24h = 0x02, kBDse = 0x01;
  // Register C.
  static constexpr uint8_t kCIrqf = 0x80, kCPf = 0x40, kCAf = 0x20, kCUf = 0x10;
  static constexpr uint8_t kDVrt = 0x80;
  static constexpr int64_t kUipNs = 244'000;  // UIP is set 244 us before each update

  struct State {
    static constexpr uint32_t kVersion = 1;
    uint8_t cmos[128]{};
    uint8_t index = 0;
    bool nmi_disabled = false;
    // Guest wall time (since 1970-01-01 in the guest's zone) at monotonic instant
    // base_mono_ns, as seconds + nanoseconds so any year 1900-9999 fits.
    int64_t base_wall_sec = 0;
    int64_t base_wall_sub_ns = 0;
    int64_t base_mono_ns = 0;
    bool frozen = false;           // SET bit: registers hold the time, clock stopped
    int64_t next_periodic_ns = 0;  // monotonic; 0 = not armed
    int64_t last_update_sec = 0;   // last guest second for which UF/AF were evaluated
  };

  using Clock = std::function<int64_t()>;  // monotonic nanoseconds
  // `initial_wall_ns`: the guest's wall time at construction (UTC or local, the board decides).
  CmosRtc(IrqLine irq8, Clock mono_ns, int64_t initial_wall_ns);
  ~CmosRtc() override;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Evaluate timers at the current clock (raises IRQ 8 as due).
  void tick();
  // Monotonic time of the next interrupt source becoming due (periodic or the next second).
  int64_t next_event_ns();
  // Run tick() from a thread at each next_event_ns (woken on register writes). Stopped by the destructor.
  void start_thread();
  void stop_thread();
  // While the machine is paused (or not started) the thread raises nothing
  // and sleeps without a timeout; resume() lets it look once (a periodic or
  // update interrupt missed meanwhile is one pending flag, not a burst) and
  // go on. The clock itself keeps the host's time, as QEMU's RTC does.
  void pause();
  void resume();

  // ---- board set-up ----
  // Memory sizes (bytes): RAM below 4 GiB (incl. the first MiB) and above 4 GiB.
  void set_memory(uint64_t below_4g, uint64_t above_4g);
  void set_smp_count(int cpus);
  // Legacy boot order for SeaBIOS (up to 3 of: 1 floppy, 2 hard disk, 3 CD-ROM, 4 network).
  void set_boot_order(const std::vector<int>& devices, bool skip_floppy_check = true);
  void set_byte(uint8_t index, uint8_t v);
  uint8_t byte(uint8_t index);
  // Set the guest's wall-clock time now.
  void set_wall_ns(int64_t wall_ns);
  int64_t wall_ns();
  bool nmi_disabled() const { return s.nmi_disabled; }

  State snapshot();
  void restore(const State& st);

  // Saved state (section "rtc"): the 128 CMOS bytes, the index and NMI
  // bit, and the guest's time as it was at the save (seconds + ns), which a
  // load rebases to the load instant: the guest's clock goes on from the
  // saved time, as kvmclock does, not from the host's. The periodic
  // interrupt's next due time is kept relative to the save instant too.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return State::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

  static int64_t host_monotonic_ns();
  static int64_t host_realtime_ns();

private:
  void advance(int64_t now);
  void update_irq();
  void time_to_regs(int64_t wall_sec);
  int64_t regs_to_time() const;
  uint8_t to_reg(int v) const;
  int from_reg(uint8_t v) const;
  int64_t period_ns() const;
  bool running() const;
  void rearm_periodic(int64_t now);
  int64_t guest_sec(int64_t now) const;
  int64_t guest_sub_ns(int64_t now) const;  // 0..999999999 within guest_sec
  void set_base(int64_t sec, int64_t sub_ns, int64_t now);

  State s;
  IrqLine irq_;
  Clock clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  bool paused_ = false;
  uint64_t kick_ = 0;
};

}  // namespace vireo
