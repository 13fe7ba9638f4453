// A paused machine stands still: with a UHCI running a schedule that changes
// guest memory every frame (one TD per frame, each retired by a time-out),
// Machine::pause() stops the frames (the frame number, the frame counter and
// guest memory stay as they were, however long the pause), and resume()
// goes on 1 ms per frame from where it stopped: no burst of the frames the
// pause "missed". The firmware is a 64 KiB image whose reset vector halts
// with interrupts off, so nothing but the controller touches memory.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "kvm_helpers.h"
#include "devices/usb/uhci.h"
#include "machine/pc_board.h"

using namespace vireo;
using usb::Uhci;

namespace {

std::string halt_bios() {
  char path[] = "/tmp/vireo-halt-bios-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  std::vector<uint8_t> rom(64 * 1024, 0xf4);
  const uint8_t reset[] = {0xfa, 0xf4, 0xeb, 0xfd};  // cli; hlt; jmp hlt
  std::memcpy(rom.data() + 0xfff0, reset, sizeof reset);
  CHECK(write(fd, rom.data(), rom.size()) == ssize_t(rom.size()));
  close(fd);
  return path;
}

constexpr uint64_t kFrameList = 0x100000;  // 1024 entries
constexpr uint64_t kTds = 0x101000;        // TD i at kTds + 16 i

std::vector<uint8_t> tds(GuestMemory& mem) {
  std::vector<uint8_t> v(1024 * 16);
  CHECK(mem.read(kTds, v.data(), v.size()));
  return v;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

TEST(pause_stops_the_uhci_schedule_and_resume_goes_on_without_a_burst) {
  require_kvm();
  std::string bios = halt_bios();
  MachineConfig c;
  c.bios = bios;
  c.mem_bytes = 32ull << 20;
  c.usb_tablet = true;
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b && b->uhci());
  Uhci* u = b->uhci();
  CHECK(u->paused());  // built paused: nothing runs before start()
  Run r;
  r.attach(m);
  m.start();
  CHECK(!u->paused());

  // The schedule: frame i -> TD i (terminate), OUT to address 0x7f (nobody
  // there), one error allowed: each frame retires its TD, writing the status.
  GuestMemory& mem = m.memory();
  for (uint32_t i = 0; i < 1024; i++) {
    uint32_t td = uint32_t(kTds + 16 * i);
    CHECK(mem.write_obj(kFrameList + 4 * i, td));  // a TD, not terminated
    uint32_t w[4] = {Uhci::kLinkT, Uhci::kTdActive | (1u << Uhci::kTdCerrShift),
                     (Uhci::kTdMaxLenNull << Uhci::kTdMaxLenShift) | (0x7fu << 8) | 0xe1 /*OUT*/, 0};
    CHECK(mem.write(td, w, sizeof w));
  }
  u->config_write(0x04, 2, 0x0005);  // I/O space + bus master
  u->reg_write(Uhci::kFlBaseAdd, 4, uint32_t(kFrameList));
  u->reg_write(Uhci::kFrNum, 2, 0);
  u->reg_write(Uhci::kUsbCmd, 2, Uhci::kCmdRs | Uhci::kCmdCf | Uhci::kCmdMaxP);
  sleep_ms(40);
  uint32_t f0 = u->reg_read(Uhci::kFrNum, 2);
  CHECK(f0 > 0);
  CHECK(u->counters().tds > 0);

  m.pause();
  CHECK(m.state() == RunState::Paused);
  CHECK(u->paused());
  uint32_t fp = u->reg_read(Uhci::kFrNum, 2);
  auto cp = u->counters();
  auto mp = tds(mem);
  sleep_ms(300);
  CHECK_EQ(u->reg_read(Uhci::kFrNum, 2), fp);
  CHECK_EQ(u->counters().frames, cp.frames);
  CHECK_EQ(u->counters().tds, cp.tds);
  CHECK(tds(mem) == mp);
  // The TD of the frame after the pause is still active: the schedule stopped.
  uint32_t ctrl = 0;
  CHECK(mem.read_obj(kTds + 16 * (fp & 0x3ff) + 4, ctrl));
  CHECK(ctrl & Uhci::kTdActive);

  m.resume();
  CHECK(!u->paused());
  sleep_ms(20);
  uint32_t f1 = u->reg_read(Uhci::kFrNum, 2);
  auto c1 = u->counters();
  // 20 ms of running after 300 ms paused: about 20 frames (generous for a
  // busy host), nowhere near the 300 a catch-up would make or skip.
  std::printf("  frames: %u before the pause, %u at it, %u 20 ms after resume; skipped %llu -> %llu\n", f0, fp, f1,
              (unsigned long long)cp.frames_skipped, (unsigned long long)c1.frames_skipped);
  CHECK(f1 > fp);
  CHECK(f1 - fp < 150);
  CHECK(c1.frames_skipped - cp.frames_skipped < 100);
  CHECK(tds(mem) != mp);
  CHECK(mem.read_obj(kTds + 16 * (fp & 0x3ff) + 4, ctrl));
  CHECK(!(ctrl & Uhci::kTdActive));  // the next frame's TD ran after resume
  CHECK(ctrl & Uhci::kTdCrcTimeout);
  m.stop();
  unlink(bios.c_str());
}

