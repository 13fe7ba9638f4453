#include "devices/legacy/cmos_rtc.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "check.h"

using namespace vireo;

namespace {

constexpr int64_t kSec = 1'000'000'000;
// 2024-02-29 23:59:58 UTC (a Thursday).
constexpr int64_t kT0 = 1709251198;

struct Rig {
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(1000 * kSec);
  int raises = 0;
  bool level = false;
  CmosRtc rtc{IrqLine([this](bool l) {
                raises += l && !level;
                level = l;
              }),
              [n = now] { return n->load(); }, kT0 * kSec};
  uint8_t rd(uint8_t idx) {
    rtc.write(0, std::span<const uint8_t>(&idx, 1));
    uint8_t v;
    rtc.read(1, {&v, 1});
    return v;
  }
  void wr(uint8_t idx, uint8_t v) {
    rtc.write(0, std::span<const uint8_t>(&idx, 1));
    rtc.write(1, std::span<const uint8_t>(&v, 1));
  }
  void step(int64_t ns) { *now += ns; }
};

}  // namespace

TEST(reads_bcd_time_by_default) {
  Rig r;
  CHECK_EQ(r.rd(CmosRtc::kSeconds), 0x58);
  CHECK_EQ(r.rd(CmosRtc::kMinutes), 0x59);
  CHECK_EQ(r.rd(CmosRtc::kHours), 0x23);
  CHECK_EQ(r.rd(CmosRtc::kDayOfMonth), 0x29);
  CHECK_EQ(r.rd(CmosRtc::kMonth), 0x02);
  CHECK_EQ(r.rd(CmosRtc::kYear), 0x24);
  CHECK_EQ(r.rd(CmosRtc::kCentury), 0x20);
  CHECK_EQ(r.rd(CmosRtc::kDayOfWeek), 5);  // Thursday, Sunday = 1
  CHECK_EQ(r.rd(CmosRtc::kRegD), 0x80);
  // Time advances across the leap day into March.
  r.step(3 * kSec);
  CHECK_EQ(r.rd(CmosRtc::kSeconds), 0x01);
  CHECK_EQ(r.rd(CmosRtc::kDayOfMonth), 0x01);
  CHECK_EQ(r.rd(CmosRtc::kMonth), 0x03);
  CHECK_EQ(r.rd(CmosRtc::kHours), 0x00);
}

TEST(binary_and_12_hour_modes) {
  Rig r;
  r.wr(CmosRtc::kRegB, CmosRtc::kBBinary);  // binary, 12-hour
  CHECK_EQ(r.rd(CmosRtc::kSeconds), 58);
  CHECK_EQ(r.rd(CmosRtc::kHours), 0x80 | 11);  // 11 PM
  r.step(2 * kSec);
  CHECK_EQ(r.rd(CmosRtc::kHours), 12);  // midnight is 12 AM
  r.wr(CmosRtc::kRegB, 0);              // BCD 12-hour
  CHECK_EQ(r.rd(CmosRtc::kHours), 0x12);
}

TEST(set_bit_freezes_and_sets_time) {
  Rig r;
  r.wr(CmosRtc::kRegB, CmosRtc::kBSet | CmosRtc::kB24h);
  r.wr(CmosRtc::kHours, 0x08);
  r.wr(CmosRtc::kMinutes, 0x30);
  r.wr(CmosRtc::kSeconds, 0x00);
  r.wr(CmosRtc::kYear, 0x25);
  r.wr(CmosRtc::kMonth, 0x06);
  r.wr(CmosRtc::kDayOfMonth, 0x15);
  r.step(5 * kSec);
  CHECK_EQ(r.rd(CmosRtc::kSeconds), 0x00);  // frozen
  r.wr(CmosRtc::kRegB, CmosRtc::kB24h);
  r.step(2 * kSec + kSec / 2);
  CHECK_EQ(r.rd(CmosRtc::kSeconds), 0x02);
  CHECK_EQ(r.rd(CmosRtc::kMinutes), 0x30);
  CHECK_EQ(r.rd(CmosRtc::kYear), 0x25);
  CHECK_EQ(r.rtc.wall_ns() / kSec, int64_t(1749976202));  // 2025-06-15 08:30:02 UTC
}

TEST(direct_time_write_while_running) {
  Rig r;
  r.wr(CmosRtc::kMinutes, 0x10);
  CHECK_EQ(r.rd(CmosRtc::kMinutes), 0x10);
  CHECK_EQ(r.rd(CmosRtc::kHours), 0x23);
  r.step(kSec * 60);
  CHECK_EQ(r.rd(CmosRtc::kMinutes), 0x11);
}

TEST(periodic_interrupt_rate_and_regc_clear) {
  Rig r;
  r.wr(CmosRtc::kRegA, 0x2f);  // 2 Hz
  r.wr(CmosRtc::kRegB, CmosRtc::kB24h | CmosRtc::kBPie);
  r.step(kSec / 4);
  r.rtc.tick();
  CHECK_EQ(r.raises, 0);
  r.step(kSec / 4 + 1000);
  r.rtc.tick();
  CHECK_EQ(r.raises, 1);
  CHECK(r.level);
  uint8_t c = r.rd(CmosRtc::kRegC);
  CHECK(c & CmosRtc::kCIrqf);
  CHECK(c & CmosRtc::kCPf);
  CHECK(!r.level);
  CHECK_EQ(r.rd(CmosRtc::kRegC) & CmosRtc::kCPf, 0);
  // Without reading C, no second edge.
  r.step(kSec / 2);
  r.rtc.tick();
  CHECK_EQ(r.raises, 2);
  r.step(kSec / 2);
  r.rtc.tick();
  CHECK_EQ(r.raises, 2);
  r.rd(CmosRtc::kRegC);
  // 1024 Hz: after 10 ms at most one pending flag, next event within ~1 ms.
  r.wr(CmosRtc::kRegA, 0x26);
  int64_t next = r.rtc.next_event_ns();
  CHECK(next - r.now->load() <= 976563);
  CHECK(next - r.now->load() > 0);
  // Rate 0 disables.
  r.wr(CmosRtc::kRegA, 0x20);
  r.rd(CmosRtc::kRegC);
  int before = r.raises;
  r.step(kSec);
  r.rtc.tick();
  CHECK_EQ(r.raises, before);
}

TEST(update_ended_and_alarm_interrupts) {
  Rig r;
  r.wr(CmosRtc::kRegB, CmosRtc::kB24h | CmosRtc::kBUie);
  r.step(kSec / 2);
  r.rtc.tick();
  CHECK_EQ(r.raises, 0);
  r.step(kSec);
  r.rtc.tick();
  CHECK_EQ(r.raises, 1);
  CHECK(r.rd(CmosRtc::kRegC) & CmosRtc::kCUf);
  // Alarm at 00:00:05 (time is now 00:00:00 on March 1st... after 23:59:59 -> 00:00:00).
  r.wr(CmosRtc::kRegB, CmosRtc::kB24h | CmosRtc::kBAie);
  r.wr(CmosRtc::kSecondsAlarm, 0x05);
  r.wr(CmosRtc::kMinutesAlarm, 0xc0);  // don't care
  r.wr(CmosRtc::kHoursAlarm, 0xff);
  r.rd(CmosRtc::kRegC);
  int before = r.raises;
  for (int i = 0; i < 4; i++) {
    r.step(kSec);
    r.rtc.tick();
  }
  CHECK_EQ(r.raises, before);
  r.step(kSec * 3);
  r.rtc.tick();
  CHECK_EQ(r.raises, before + 1);
  CHECK(r.rd(CmosRtc::kRegC) & CmosRtc::kCAf);
}

TEST(uip_before_update) {
  Rig r;
  // T0 is on a second boundary; move to 100 us before the next one.
  r.step(kSec - 100'000);
  CHECK(r.rd(CmosRtc::kRegA) & CmosRtc::kAUip);
  r.step(200'000);
  CHECK(!(r.rd(CmosRtc::kRegA) & CmosRtc::kAUip));
  CHECK_EQ(r.rd(CmosRtc::kRegA) & 0x7f, 0x26);
}

TEST(memory_size_bytes) {
  Rig r;
  r.rtc.set_memory(3ull << 30, 2ull << 30);  // 3 GiB low, 2 GiB high
  CHECK_EQ(r.rd(CmosRtc::kBaseMemLow) | r.rd(CmosRtc::kBaseMemHigh) << 8, 640);
  CHECK_EQ(r.rd(CmosRtc::kExtMemLow) | r.rd(CmosRtc::kExtMemHigh) << 8, 0xffff);
  CHECK_EQ(r.rd(CmosRtc::kExtMem2Low) | r.rd(CmosRtc::kExtMem2High) << 8, 0xffff);
  CHECK_EQ(r.rd(CmosRtc::kMemAbove16mLow) | r.rd(CmosRtc::kMemAbove16mHigh) << 8, int((3072 - 16) * 16));
  uint32_t hi = r.rd(CmosRtc::kMemAbove4gLow) | r.rd(CmosRtc::kMemAbove4gMid) << 8 | r.rd(CmosRtc::kMemAbove4gHigh) << 16;
  CHECK_EQ(hi, uint32_t(2048 * 16));
  r.rtc.set_memory(32ull << 20, 0);
  CHECK_EQ(r.rd(CmosRtc::kExtMemLow) | r.rd(CmosRtc::kExtMemHigh) << 8, 31 * 1024);
  r.rtc.set_smp_count(4);
  CHECK_EQ(r.rd(CmosRtc::kSmpCount), 3);
  r.rtc.set_boot_order({3, 2, 1});
  CHECK_EQ(r.rd(CmosRtc::kBootFlag2), 0x23);
  CHECK_EQ(r.rd(CmosRtc::kBootFlag1), 0x11);
}

TEST(index_nmi_bit_and_plain_ram) {
  Rig r;
  uint8_t idx = 0x80 | 0x40;
  r.rtc.write(0, std::span<const uint8_t>(&idx, 1));
  CHECK(r.rtc.nmi_disabled());
  uint8_t v = 0x5a;
  r.rtc.write(1, std::span<const uint8_t>(&v, 1));
  CHECK_EQ(r.rd(0x40), 0x5a);
  CHECK(!r.rtc.nmi_disabled());
  // Register C and D are read-only.
  r.wr(CmosRtc::kRegD, 0);
  CHECK_EQ(r.rd(CmosRtc::kRegD), 0x80);
  // Index port reads 0xff.
  r.rtc.read(0, {&v, 1});
  CHECK_EQ(v, 0xff);
}

TEST(timer_thread_delivers_periodic) {
  std::atomic<int> raises{0};
  CmosRtc rtc(IrqLine([&](bool l) { raises += l; }), nullptr, kT0 * kSec);
  auto wr = [&](uint8_t i, uint8_t v) {
    rtc.write(0, std::span<const uint8_t>(&i, 1));
    rtc.write(1, std::span<const uint8_t>(&v, 1));
  };
  rtc.start_thread();
  wr(CmosRtc::kRegA, 0x26 + 3);  // 128 Hz
  wr(CmosRtc::kRegB, CmosRtc::kB24h | CmosRtc::kBPie);
  for (int i = 0; i < 100 && raises.load() < 3; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    uint8_t idx = CmosRtc::kRegC, v;
    rtc.write(0, std::span<const uint8_t>(&idx, 1));
    rtc.read(1, {&v, 1});
  }
  rtc.stop_thread();
  CHECK(raises.load() >= 3);
}
