// "The PC" acceptance test: SeaBIOS boots our own test ISO (native/testiso/
// testiso.asm) from the ATAPI CD-ROM under KVM. The guest reports on COM1; this
// test drives it like a person at the console would and checks what it says:
//   - a Bochs VBE 640x480x32 LFB mode, with a pattern drawn into it (checked
//     pixel by pixel from the display device's full-frame update),
//   - keys typed on the i8042 keyboard as int 16h reports them,
//   - PS/2 mouse packets as int 15h C2's far callback receives them,
//   - a sector written to the IDE hard disk through int 13h (checked in the raw
//     image file afterwards), a keyboard-controller reset (0xFE to port 0x64),
//     and, after the reboot, the guest reading the sector back.
// The guest's protocol and the exact pattern are documented at the top of
// testiso.asm.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "devices/vga/vga.h"
#include "kvm/kvm.h"
#include "kvm_helpers.h"
#include "machine/pc_board.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";
constexpr int kExitReadbackOk = 0x10, kExitReadbackBad = 0x11;
constexpr uint32_t kBars[8] = {0x000000, 0x0000ff, 0x00ff00, 0x00ffff, 0xff0000, 0xff00ff, 0xffff00, 0xffffff};
constexpr uint32_t kDiagonal = 0x804020;

void require_file(const char* p, const char* pkg) {
  if (access(p, R_OK) != 0) SKIP(std::string(p) + " is missing (Debian package " + pkg + ")");
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/vireo-testiso-XXXXXX";
    if (!mkdtemp(t)) throw std::runtime_error("mkdtemp failed");
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// The sector the guest writes to LBA 1 (see testiso.asm).
std::vector<uint8_t> expected_sector() {
  std::vector<uint8_t> s(512);
  for (int i = 0; i < 512; i++) s[i] = uint8_t(i * 7 + 3);
  std::memcpy(s.data(), "VIREO-TESTISO-01", 16);
  return s;
}

// A 1 MiB raw disk, optionally with `sector1` at LBA 1.
std::string make_disk(const TempDir& d, const std::vector<uint8_t>* sector1 = nullptr) {
  std::string p = d.path + "/disk.raw";
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  std::vector<uint8_t> zero(1 << 20, 0);
  if (sector1) std::memcpy(zero.data() + 512, sector1->data(), 512);
  f.write(reinterpret_cast<const char*>(zero.data()), std::streamsize(zero.size()));
  return p;
}

std::vector<uint8_t> read_sector(const std::string& path, uint64_t lba) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(std::streamoff(lba * 512));
  std::vector<uint8_t> s(512);
  f.read(reinterpret_cast<char*>(s.data()), 512);
  CHECK(f.gcount() == 512);
  return s;
}

MachineConfig pc_config(const std::string& iso, const std::string& disk) {
  MachineConfig c;
  c.bios = kBios;
  c.vga_bios = kVgaBios;
  c.mem_bytes = 128 << 20;
  c.boot_order = "d";
  c.disks.push_back({disk, "raw", false, false, false, false});
  c.disks.push_back({iso, "raw", true, true, false, false});
  return c;
}

std::vector<std::string> lines_of(const std::string& serial) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : serial) {
    if (ch == '\r') continue;
    if (ch == '\n') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string serial_of(Run& r) {
  std::lock_guard g(r.mu);
  return r.serial;
}

// Waits for `needle` on COM1; on failure prints what came and fails the test.
void expect_serial(Run& r, const std::string& needle, int seconds) {
  if (r.wait_output(needle, seconds)) return;
  std::string s = serial_of(r);
  std::printf("waited %d s for \"%s\"; COM1 so far:\n%s\n", seconds, needle.c_str(), s.c_str());
  {
    std::lock_guard g(r.mu);
    if (r.done) std::printf("machine stopped: %s (%s)\n", r.info.kind.c_str(), r.info.message.c_str());
  }
  CHECK(!"expected serial output did not come");
}

// Each of `want` must appear as a whole line, in this order, starting at line `from`.
// Returns the index after the last one matched.
size_t expect_lines_in_order(const std::vector<std::string>& lines, const std::vector<std::string>& want, size_t from = 0) {
  size_t i = from;
  for (const auto& w : want) {
    while (i < lines.size() && lines[i] != w) i++;
    if (i == lines.size()) {
      std::printf("line \"%s\" missing (in order) from COM1 output:\n", w.c_str());
      for (auto& l : lines) std::printf("  | %s\n", l.c_str());
      CHECK(!"serial lines out of order or missing");
    }
    i++;
  }
  return i;
}

// The whole screen as BGRX pixels, assembled from a forced full update of the
// display (what a console window would receive as its first frame).
vga::Frame grab_screen(PcBoard& b) {
  auto u = b.poll(true);
  CHECK(u.has_value());
  vga::Frame f;
  f.width = u->width;
  f.height = u->height;
  f.bgrx.assign(size_t(f.width) * f.height * 4, 0);
  std::vector<uint8_t> covered(size_t(f.width) * f.height, 0);
  for (const auto& dr : u->rects) {
    CHECK(dr.r.x + dr.r.w <= f.width && dr.r.y + dr.r.h <= f.height);
    CHECK_EQ(dr.bgrx.size(), size_t(dr.r.w) * dr.r.h * 4);
    for (uint32_t y = 0; y < dr.r.h; y++) {
      std::memcpy(&f.bgrx[(size_t(dr.r.y + y) * f.width + dr.r.x) * 4], &dr.bgrx[size_t(y) * dr.r.w * 4], dr.r.w * 4);
      std::memset(&covered[size_t(dr.r.y + y) * f.width + dr.r.x], 1, dr.r.w);
    }
  }
  for (uint8_t c : covered) CHECK(c);  // a full update covers every pixel
  return f;
}

uint32_t expected_pixel(uint32_t x, uint32_t y) { return x == y ? kDiagonal : kBars[x / 80]; }

void tap(PcBoard& b, const std::string& code) {
  CHECK(b.key(code, true));
  CHECK(b.key(code, false));
}

// What the first test saw, for the reboot test that follows it.
struct FirstRun {
  bool ran = false;
  bool rebooted = false;
  std::string stop_kind, stop_message;
  int stop_code = 0;
  std::vector<std::string> lines;
  size_t reset_line = 0;  // index after "resetting"
};
FirstRun g_first;

}  // namespace

TEST(testiso_vbe_pattern_keys_mouse_and_disk_write_then_kbc_reset) {
  require_kvm();
  require_file(kBios, "seabios");
  require_file(kVgaBios, "seabios");
  std::string iso = guest("testiso.iso");
  TempDir dir;
  std::string disk = make_disk(dir);
  Machine m(pc_config(iso, disk));
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  Run r;
  r.attach(m);
  auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  m.start();

  expect_serial(r, "vireo-testiso start\r\n", 120);
  std::printf("  [%.1fs] guest started from the CD\n", secs());
  expect_serial(r, "vbe ok\r\n", 60);
  std::printf("  [%.1fs] VBE pattern drawn\n", secs());

  // The mode the guest found through 4F00/4F01: 640x480x32 with an LFB.
  {
    auto ls = lines_of(serial_of(r));
    std::string mode_line;
    for (auto& l : ls)
      if (l.rfind("vbe mode ", 0) == 0) mode_line = l;
    unsigned mode = 0, lfb = 0, pitch = 0;
    CHECK_EQ(std::sscanf(mode_line.c_str(), "vbe mode %x lfb %x pitch %x", &mode, &lfb, &pitch), 3);
    CHECK(mode >= 0x100);
    CHECK(lfb >= 0x80000000u);  // a PCI BAR, above RAM
    CHECK_EQ(pitch, 640u * 4);
  }

  // The screen, pixel by pixel.
  CHECK(b->screen_text().empty());  // a graphics mode, not text
  vga::Frame f = grab_screen(*b);
  CHECK_EQ(f.width, 640u);
  CHECK_EQ(f.height, 480u);
  size_t bad = 0;
  for (uint32_t y = 0; y < f.height; y++) {
    for (uint32_t x = 0; x < f.width; x++) {
      const uint8_t* p = &f.bgrx[(size_t(y) * f.width + x) * 4];
      uint32_t got = uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0];
      uint32_t want = expected_pixel(x, y);
      if (got != want && bad++ < 5) std::printf("pixel (%u,%u) is %06x, want %06x\n", x, y, got, want);
    }
  }
  CHECK_EQ(bad, size_t(0));

  // Keyboard: int 16h AH=00 reports ASCII and scancode (set 1) for each key.
  expect_serial(r, "keys ready\r\n", 30);
  tap(*b, "KeyC");
  expect_serial(r, "key 63 2e\r\n", 30);
  CHECK(b->key("ShiftLeft", true));
  tap(*b, "KeyA");
  CHECK(b->key("ShiftLeft", false));
  expect_serial(r, "key 41 1e\r\n", 30);
  tap(*b, "Digit5");
  expect_serial(r, "key 35 06\r\n", 30);
  tap(*b, "Enter");
  expect_serial(r, "key 0d 1c\r\n", 30);
  std::printf("  [%.1fs] keys echoed\n", secs());

  // Mouse: dx right-positive, dy down-positive in; PS/2 packets (Y up-positive,
  // sign bits 4/5 of the status byte, bit 3 always set, buttons in bits 0-2) out.
  expect_serial(r, "mouse ready\r\n", 30);
  b->mouse(5, 5, 0, 0);
  expect_serial(r, "mouse 28 05 fb\r\n", 30);
  b->mouse(-3, -2, 0, 0);
  expect_serial(r, "mouse 18 fd 02\r\n", 30);
  b->mouse(0, 0, 0, 1);  // left button down
  expect_serial(r, "mouse 09 00 00\r\n", 30);
  std::printf("  [%.1fs] mouse packets received\n", secs());

  expect_serial(r, "disk written\r\n", 30);
  expect_serial(r, "resetting\r\n", 30);
  std::printf("  [%.1fs] sector written, keyboard-controller reset requested\n", secs());

  // Either the engine reboots (SeaBIOS again, the CD again, the guest finds
  // its marker and compares the sector) or, in a build without reboot on
  // reset, the machine stops with kind "reset".
  // The reboot takes ~10 s here (the whole case ~16 s); 60 s leaves room for a loaded host.
  // On kvm_pvm hosts this reset used to hang now and then (stepping switched off
  // after the keys, then the vCPU left halted off a HLT for good; about 1 run in 2
  // with the host's 2 cores busy): the machine's halt watch now makes such a vCPU
  // runnable again (docs/architecture.md, "Input on kvm_pvm hosts").
  bool done = r.wait_done(m, 60);
  if (m.false_halts_repaired())
    std::printf("  [%.1fs] the halt watch woke %llu vCPU(s) that kvm_pvm had left halted off a HLT\n", secs(),
                (unsigned long long)m.false_halts_repaired());
  CHECK(done);
  std::printf("  [%.1fs] machine stopped: %s (%s)\n", secs(), r.info.kind.c_str(), r.info.message.c_str());
  m.stop();

  auto ls = lines_of(serial_of(r));
  size_t after = expect_lines_in_order(ls, {"vireo-testiso start", "vbe ok", "keys ready", "key 63 2e", "key 41 1e", "key 35 06",
                                            "key 0d 1c", "mouse ready", "mouse 28 05 fb", "mouse 18 fd 02", "mouse 09 00 00",
                                            "disk written", "resetting"});
  // Nothing but the three expected mouse packets (no spurious motion).
  size_t packets = 0;
  for (auto& l : ls) packets += l.rfind("mouse ", 0) == 0 && l != "mouse ready";
  CHECK_EQ(packets, size_t(3));
  // The image file on the host holds the sector.
  CHECK(read_sector(disk, 1) == expected_sector());
  CHECK(read_sector(disk, 0) == std::vector<uint8_t>(512, 0));
  CHECK(read_sector(disk, 2) == std::vector<uint8_t>(512, 0));

  g_first.ran = true;
  g_first.stop_kind = r.info.kind;
  g_first.stop_message = r.info.message;
  g_first.stop_code = r.info.code;
  g_first.lines = ls;
  g_first.reset_line = after;
  g_first.rebooted = r.info.kind != "reset";
  if (!g_first.rebooted) {
    // Only what comes before the reset is this case's business; the reboot is
    // checked (or skipped, with the reason) by the next case.
    CHECK(r.info.message.find("keyboard controller") != std::string::npos);
  }
}

TEST(testiso_kbc_reset_reboots_and_guest_reads_sector_back) {
  if (!g_first.ran) SKIP("the first-boot case did not get as far as the reset");
  if (!g_first.rebooted)
    SKIP("this engine build stops on a guest reset instead of rebooting (stop kind \"" + g_first.stop_kind + "\": " +
         g_first.stop_message + "); reboot-on-reset has not landed");
  // After the reset: SeaBIOS boots the CD again, the guest finds the marker
  // it wrote and compares all 512 bytes.
  expect_lines_in_order(g_first.lines, {"vireo-testiso start", "second boot", "disk readback ok"}, g_first.reset_line);
  for (size_t i = g_first.reset_line; i < g_first.lines.size(); i++) {
    CHECK(g_first.lines[i] != "vbe ok");  // the second boot took the readback path only
    CHECK(g_first.lines[i] != "disk readback BAD");
  }
  CHECK_EQ(g_first.stop_kind, std::string("exit"));
  CHECK_EQ(g_first.stop_code, kExitReadbackOk);
}

// A power cycle instead of a reset: a new machine on a disk that already holds
// the sector takes the guest's readback path.
TEST(testiso_cold_boot_reads_back_sector_from_disk) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string iso = guest("testiso.iso");
  TempDir dir;
  auto sector = expected_sector();
  std::string disk = make_disk(dir, &sector);
  Machine m(pc_config(iso, disk));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_done(m, 120));
  m.stop();
  expect_lines_in_order(lines_of(r.serial), {"vireo-testiso start", "second boot", "disk readback ok"});
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, kExitReadbackOk);
}

// The readback comparison can fail: marker present, one payload byte wrong.
TEST(testiso_cold_boot_reports_corrupt_sector) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string iso = guest("testiso.iso");
  TempDir dir;
  auto sector = expected_sector();
  sector[300] ^= 0x40;
  std::string disk = make_disk(dir, &sector);
  Machine m(pc_config(iso, disk));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_done(m, 120));
  m.stop();
  expect_lines_in_order(lines_of(r.serial), {"vireo-testiso start", "second boot", "disk readback BAD"});
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, kExitReadbackBad);
}
