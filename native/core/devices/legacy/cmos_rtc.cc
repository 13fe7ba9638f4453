#include "devices/legacy/cmos_rtc.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <ctime>
#include <string>

#include "machine/state.h"

namespace vireo {

namespace {

constexpr int64_t kNsPerSec = 1'000'000'000;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Days since 1970-01-01 for a proleptic Gregorian date (month 1..12), and back.
// Works on 400-year eras of 146097 days, March-based years so Feb 29 falls last.
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;
  int64_t mp = (m + 9) % 12;
  int64_t doy = (153 * mp + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void civil_from_days(int64_t z, int64_t& y, int& m, int& d) {
  z += 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  d = int(doy - (153 * mp + 2) / 5 + 1);
  m = int(mp < 10 ? mp + 3 : mp - 9);
  y += m <= 2;
}

bool is_time_reg(uint8_t i) {
  return i == CmosRtc::kSeconds || i == CmosRtc::kMinutes || i == CmosRtc::kHours || i == CmosRtc::kDayOfWeek ||
         i == CmosRtc::kDayOfMonth || i == CmosRtc::kMonth || i == CmosRtc::kYear || i == CmosRtc::kCentury;
}

}  // namespace

int64_t CmosRtc::host_monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
int64_t CmosRtc::host_realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

CmosRtc::CmosRtc(IrqLine irq8, Clock mono_ns, int64_t initial_wall_ns)
    : irq_(std::move(irq8)), clock_(mono_ns ? std::move(mono_ns) : Clock(&CmosRtc::host_monotonic_ns)) {
  s.cmos[kRegA] = kADividerNormal | 0x06;  // 1024 Hz periodic rate, clock running
  s.cmos[kRegB] = kB24h;
  s.cmos[kRegD] = kDVrt;
  s.cmos[kBaseMemLow] = 640 & 0xff;
  s.cmos[kBaseMemHigh] = 640 >> 8;
  s.cmos[kEquipment] = 0x02;  // math coprocessor; no floppies; EGA/VGA
  int64_t now = clock_();
  int64_t sec0 = floor_div(initial_wall_ns, kNsPerSec);
  set_base(sec0, initial_wall_ns - sec0 * kNsPerSec, now);
  time_to_regs(s.last_update_sec);
}

CmosRtc::~CmosRtc() { stop_thread(); }

// ---------------------------------------------------------------- time <-> registers

uint8_t CmosRtc::to_reg(int v) const {
  if (s.cmos[kRegB] & kBBinary) return uint8_t(v);
  return uint8_t(((v / 10) % 10) << 4 | (v % 10));
}

int CmosRtc::from_reg(uint8_t v) const {
  if (s.cmos[kRegB] & kBBinary) return v;
  return (v >> 4) * 10 + (v & 0x0f);
}

void CmosRtc::time_to_regs(int64_t t) {
  int64_t days = floor_div(t, 86400);
  int64_t sod = t - days * 86400;
  int64_t y;
  int m, d;
  civil_from_days(days, y, m, d);
  int hour = int(sod / 3600), min = int(sod / 60 % 60), sec = int(sod % 60);
  s.cmos[kSeconds] = to_reg(sec);
  s.cmos[kMinutes] = to_reg(min);
  if (s.cmos[kRegB] & kB24h) {
    s.cmos[kHours] = to_reg(hour);
  } else {
    int h12 = hour % 12 == 0 ? 12 : hour % 12;
    s.cmos[kHours] = uint8_t(to_reg(h12) | (hour >= 12 ? 0x80 : 0));
  }
  // 1970-01-01 was a Thursday; the RTC counts Sunday = 1.
  s.cmos[kDayOfWeek] = to_reg(int(((days % 7) + 7 + 4) % 7) + 1);
  s.cmos[kDayOfMonth] = to_reg(d);
  s.cmos[kMonth] = to_reg(m);
  int64_t yy = ((y % 100) + 100) % 100;
  s.cmos[kYear] = to_reg(int(yy));
  s.cmos[kCentury] = to_reg(int(floor_div(y, 100)));
}

int64_t CmosRtc::regs_to_time() const {
  int sec = from_reg(s.cmos[kSeconds]), min = from_reg(s.cmos[kMinutes]);
  int hour;
  if (s.cmos[kRegB] & kB24h) {
    hour = from_reg(s.cmos[kHours]);
  } else {
    hour = from_reg(uint8_t(s.cmos[kHours] & 0x7f)) % 12 + ((s.cmos[kHours] & 0x80) ? 12 : 0);
  }
  int day = from_reg(s.cmos[kDayOfMonth]), month = from_reg(s.cmos[kMonth]);
  int century = from_reg(s.cmos[kCentury]);
  if (century < 19 || century > 99) century = 20;
  int64_t year = int64_t(century) * 100 + from_reg(s.cmos[kYear]);
  month = std::clamp(month, 1, 12);
  day = std::clamp(day, 1, 31);
  return days_from_civil(year, month, day) * 86400 + int64_t(hour) * 3600 + min * 60 + sec;
}

int64_t CmosRtc::guest_sec(int64_t now) const {
  return s.base_wall_sec + floor_div(s.base_wall_sub_ns + (now - s.base_mono_ns), kNsPerSec);
}

int64_t CmosRtc::guest_sub_ns(int64_t now) const {
  int64_t t = s.base_wall_sub_ns + (now - s.base_mono_ns);
  return t - floor_div(t, kNsPerSec) * kNsPerSec;
}

void CmosRtc::set_base(int64_t sec, int64_t sub_ns, int64_t now) {
  s.base_wall_sec = sec;
  s.base_wall_sub_ns = sub_ns;
  s.base_mono_ns = now;
  s.last_update_sec = sec;
}

bool CmosRtc::running() const { return (s.cmos[kRegA] & kADividerMask) == kADividerNormal; }

int64_t CmosRtc::period_ns() const {
  int r = s.cmos[kRegA] & kARateMask;
  if (r == 0) return 0;
  if (r <= 2) r += 7;  // rates 1 and 2 alias 256 Hz and 128 Hz with a 32.768 kHz base
  int64_t hz = 32768 >> (r - 1);
  return kNsPerSec / hz + (kNsPerSec % hz ? 1 : 0);
}

void CmosRtc::rearm_periodic(int64_t now) {
  int64_t p = period_ns();
  s.next_periodic_ns = (p && running()) ? now + p : 0;
}

// ---------------------------------------------------------------- timers

void CmosRtc::advance(int64_t now) {
  if (running() && !s.frozen) {
    int64_t sec = guest_sec(now);
    if (sec > s.last_update_sec) {
      // Every second boundary crossed since the last look is an update; the
      // alarm is checked against each of them (at most a day's worth: the
      // alarm repeats daily at the latest).
      auto match = [](uint8_t alarm, uint8_t cur) { return (alarm & 0xc0) == 0xc0 || alarm == cur; };
      int64_t from = std::max(s.last_update_sec + 1, sec - 86400 + 1);
      for (int64_t t = from; t <= sec && !(s.cmos[kRegC] & kCAf); t++) {
        time_to_regs(t);
        if (match(s.cmos[kSecondsAlarm], s.cmos[kSeconds]) && match(s.cmos[kMinutesAlarm], s.cmos[kMinutes]) &&
            match(s.cmos[kHoursAlarm], s.cmos[kHours])) {
          s.cmos[kRegC] |= kCAf;
        }
      }
      s.last_update_sec = sec;
      s.cmos[kRegC] |= kCUf;
      time_to_regs(sec);
    } else if (sec < s.last_update_sec) {
      s.last_update_sec = sec;  // time was set backwards
    }
  }
  int64_t p = period_ns();
  if (p && running()) {
    if (s.next_periodic_ns == 0) s.next_periodic_ns = now + p;
    if (now >= s.next_periodic_ns) {
      s.cmos[kRegC] |= kCPf;
      int64_t missed = (now - s.next_periodic_ns) / p + 1;
      s.next_periodic_ns += missed * p;
    }
  } else {
    s.next_periodic_ns = 0;
  }
  update_irq();
}

void CmosRtc::update_irq() {
  uint8_t c = s.cmos[kRegC], b = s.cmos[kRegB];
  bool irqf = ((c & kCPf) && (b & kBPie)) || ((c & kCAf) && (b & kBAie)) || ((c & kCUf) && (b & kBUie));
  if (irqf && !(c & kCIrqf)) {
    s.cmos[kRegC] |= kCIrqf;
    irq_.raise();
  } else if (!irqf && (c & kCIrqf)) {
    s.cmos[kRegC] &= uint8_t(~kCIrqf);
    irq_.lower();
  }
}

void CmosRtc::tick() {
  std::lock_guard g(mu_);
  advance(clock_());
}

int64_t CmosRtc::next_event_ns() {
  std::lock_guard g(mu_);
  int64_t now = clock_();
  int64_t next = now + kNsPerSec;
  if ((s.cmos[kRegB] & kBPie) && s.next_periodic_ns) next = std::min(next, s.next_periodic_ns);
  if ((s.cmos[kRegB] & (kBUie | kBAie)) && running() && !s.frozen) {
    int64_t to_next = kNsPerSec - guest_sub_ns(now);
    next = std::min(next, now + to_next);
  }
  return next;
}

void CmosRtc::start_thread() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock lk(mu_);
    while (!stop_) {
      if (paused_) {
        cv_.wait(lk, [&] { return stop_ || !paused_; });
        continue;
      }
      lk.unlock();
      int64_t due = next_event_ns();
      lk.lock();
      int64_t wait = due - clock_();
      uint64_t k = kick_;
      if (wait > 0) cv_.wait_for(lk, std::chrono::nanoseconds(wait), [&] { return stop_ || paused_ || kick_ != k; });
      if (stop_) break;
      if (paused_) continue;
      advance(clock_());
    }
  });
}

void CmosRtc::pause() {
  {
    std::lock_guard g(mu_);
    paused_ = true;
  }
  cv_.notify_all();
}

void CmosRtc::resume() {
  {
    std::lock_guard g(mu_);
    paused_ = false;
  }
  cv_.notify_all();
}

void CmosRtc::stop_thread() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------- port I/O

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), 0xff);
  if (offset != 1) return;  // the index register is write-only
  std::lock_guard g(mu_);
  int64_t now = clock_();
  advance(now);
  uint8_t i = s.index;
  uint8_t v;
  switch (i) {
    case kRegA: {
      v = s.cmos[kRegA] & uint8_t(~kAUip);
      if (running() && !s.frozen) {
        int64_t into = guest_sub_ns(now);
        if (kNsPerSec - into <= kUipNs) v |= kAUip;
      }
      break;
    }
    case kRegC:
      v = s.cmos[kRegC];
      s.cmos[kRegC] = 0;
      if (v & kCIrqf) irq_.lower();
      break;
    case kRegD: v = kDVrt; break;
    default: v = s.cmos[i & 0x7f]; break;
  }
  data[0] = v;
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard g(mu_);
  uint8_t v = data[0];
  if (offset == 0) {
    s.index = v & 0x7f;
    s.nmi_disabled = v & 0x80;
    // A 16-bit out to 0x70 also writes the data port.
    if (data.size() < 2) return;
    v = data[1];
  } else if (offset != 1) {
    return;
  }
  int64_t now = clock_();
  advance(now);
  uint8_t i = s.index;
  switch (i) {
    case kRegA: {
      bool was = running();
      s.cmos[kRegA] = uint8_t((v & ~kAUip) | (s.cmos[kRegA] & kAUip));
      if (!was && running() && !s.frozen) {
        // Leaving divider reset: the first update comes 500 ms later.
        set_base(guest_sec(now), kNsPerSec / 2, now);
      }
      rearm_periodic(now);
      break;
    }
    case kRegB: {
      uint8_t old = s.cmos[kRegB];
      if ((v & kBSet) && !(old & kBSet)) {
        time_to_regs(guest_sec(now));
        s.frozen = true;
        v &= uint8_t(~kBUie);  // datasheet: setting SET clears UIE
      }
      s.cmos[kRegB] = v;
      if (!(v & kBSet) && (old & kBSet)) {
        s.frozen = false;
        set_base(regs_to_time(), 0, now);
      }
      if (!s.frozen && ((old ^ v) & (kBBinary | kB24h))) time_to_regs(guest_sec(now));
      if ((old ^ v) & kBPie) rearm_periodic(now);
      break;
    }
    case kRegC:
    case kRegD:
      break;  // read-only
    default:
      if (is_time_reg(i) && !s.frozen) {
        int64_t sub = guest_sub_ns(now);
        time_to_regs(guest_sec(now));
        s.cmos[i] = v;
        int64_t t = regs_to_time();
        set_base(t, sub, now);
        time_to_regs(t);
      } else {
        s.cmos[i] = v;
      }
      break;
  }
  update_irq();
  kick_++;
  cv_.notify_all();
}

// ---------------------------------------------------------------- board API

void CmosRtc::set_memory(uint64_t below_4g, uint64_t above_4g) {
  std::lock_guard g(mu_);
  constexpr uint64_t k1M = 1 << 20, k16M = 16 << 20, k64K = 64 << 10;
  uint64_t ext_kb = below_4g > k1M ? (below_4g - k1M) / 1024 : 0;
  ext_kb = std::min<uint64_t>(ext_kb, 0xffff);
  s.cmos[kExtMemLow] = s.cmos[kExtMem2Low] = uint8_t(ext_kb);
  s.cmos[kExtMemHigh] = s.cmos[kExtMem2High] = uint8_t(ext_kb >> 8);
  uint64_t above16 = below_4g > k16M ? (below_4g - k16M) / k64K : 0;
  above16 = std::min<uint64_t>(above16, 0xffff);
  s.cmos[kMemAbove16mLow] = uint8_t(above16);
  s.cmos[kMemAbove16mHigh] = uint8_t(above16 >> 8);
  uint64_t above4 = std::min<uint64_t>(above_4g / k64K, 0xffffff);
  s.cmos[kMemAbove4gLow] = uint8_t(above4);
  s.cmos[kMemAbove4gMid] = uint8_t(above4 >> 8);
  s.cmos[kMemAbove4gHigh] = uint8_t(above4 >> 16);
}

void CmosRtc::set_smp_count(int cpus) {
  std::lock_guard g(mu_);
  s.cmos[kSmpCount] = uint8_t(std::clamp(cpus, 1, 256) - 1);
}

void CmosRtc::set_boot_order(const std::vector<int>& devices, bool skip_floppy_check) {
  std::lock_guard g(mu_);
  uint32_t order = 0;
  for (size_t i = 0; i < devices.size() && i < 3; i++) order |= uint32_t(devices[i] & 0xf) << (4 * i);
  s.cmos[kBootFlag2] = uint8_t(order);
  s.cmos[kBootFlag1] = uint8_t(((order >> 4) & 0xf0) | (skip_floppy_check ? 1 : 0));
}

void CmosRtc::set_byte(uint8_t index, uint8_t v) {
  std::lock_guard g(mu_);
  s.cmos[index & 0x7f] = v;
}

uint8_t CmosRtc::byte(uint8_t index) {
  std::lock_guard g(mu_);
  return s.cmos[index & 0x7f];
}

void CmosRtc::set_wall_ns(int64_t wall_ns) {
  std::lock_guard g(mu_);
  int64_t sec = floor_div(wall_ns, kNsPerSec);
  set_base(sec, wall_ns - sec * kNsPerSec, clock_());
  if (!s.frozen) time_to_regs(s.last_update_sec);
}

int64_t CmosRtc::wall_ns() {
  std::lock_guard g(mu_);
  // Saturates outside the int64 nanosecond range (years before 1678 or after 2262).
  constexpr int64_t kMaxSec = INT64_MAX / kNsPerSec - 1;
  int64_t now = clock_();
  int64_t sec = s.frozen ? regs_to_time() : guest_sec(now);
  int64_t sub = s.frozen ? 0 : guest_sub_ns(now);
  sec = std::clamp(sec, -kMaxSec, kMaxSec);
  return sec * kNsPerSec + sub;
}

CmosRtc::State CmosRtc::snapshot() {
  std::lock_guard g(mu_);
  return s;
}

// ---------------------------------------------------------------- saved state

void CmosRtc::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  int64_t now = clock_();
  w.bytes(s.cmos, sizeof s.cmos);
  w.u8(s.index);
  w.boolean(s.nmi_disabled);
  w.boolean(s.frozen);
  w.i64(guest_sec(now));  // the guest's time now, rebased on load
  w.i64(guest_sub_ns(now));
  w.i64(s.last_update_sec);
  w.boolean(s.next_periodic_ns != 0);
  w.i64(s.next_periodic_ns ? s.next_periodic_ns - now : 0);
}

void CmosRtc::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  r.bytes(n.cmos, sizeof n.cmos);
  n.index = r.u8();
  n.nmi_disabled = r.boolean();
  n.frozen = r.boolean();
  int64_t sec = r.i64(), sub = r.i64();
  n.last_update_sec = r.i64();
  bool armed = r.boolean();
  int64_t due_in = r.i64();
  r.finish();
  // Years 1000..9999 either side of 1970 are far inside +-1e12 seconds.
  constexpr int64_t kMaxSec = 1'000'000'000'000, kMaxDueNs = 3600 * kNsPerSec;
  if (n.index > 0x7f) r.fail("CMOS index out of range");
  if (sec < -kMaxSec || sec > kMaxSec || n.last_update_sec < -kMaxSec || n.last_update_sec > kMaxSec)
    r.fail("guest time out of range");
  if (sub < 0 || sub >= kNsPerSec) r.fail("guest time's nanoseconds out of range");
  if (due_in < -kMaxDueNs || due_in > kMaxDueNs || (!armed && due_in)) r.fail("periodic interrupt due time out of range");
  {
    std::lock_guard g(mu_);
    int64_t now = clock_();
    n.base_wall_sec = sec;
    n.base_wall_sub_ns = sub;
    n.base_mono_ns = now;
    n.next_periodic_ns = armed ? now + due_in : 0;
    if (armed && n.next_periodic_ns == 0) n.next_periodic_ns = 1;
    s = n;
    bool irqf = s.cmos[kRegC] & kCIrqf;
    if (irq_.level() != irqf) irq_.set(irqf);
    kick_++;
  }
  cv_.notify_all();
}

void CmosRtc::restore(const State& st) {
  std::lock_guard g(mu_);
  s = st;
  irq_.set(s.cmos[kRegC] & kCIrqf);
}

}  // namespace vireo
