// A whole PC's saved state proven in real guests under /dev/kvm (issue 12):
// SeaBIOS and Debian's GRUB rescue CD on the ATAPI drive, saved at GRUB's
// menu, restored into new Machines of the same configuration, and driven with
// the keyboard; a boot-sector guest that keeps writing its disk through the
// BIOS, saved mid-write and restored; a save during SeaBIOS's POST.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>

#include "devices/vga/vga.h"
#include "kvm_helpers.h"
#include "machine/pc_board.h"
#include "machine/state.h"
#include "pc_typing.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";
const char* kGrubIso = "/usr/lib/grub-rescue/grub-rescue-cdrom.iso";
const char* kMenuLine = "executed automatically";  // GRUB's countdown line under the menu

void require_file(const char* p, const char* pkg) {
  if (access(p, R_OK) != 0) SKIP(std::string(p) + " is missing (Debian package " + pkg + ")");
}

void require_grub() {
  require_kvm();
  require_file(kBios, "seabios");
  require_file(kVgaBios, "seabios");
  require_file(kGrubIso, "grub-rescue-pc");
}

double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string tmp_path(const char* what) {
  return "/tmp/vireo_kvm_state_pc_" + std::string(what) + "_" + std::to_string(getpid());
}

// A PC booted by SeaBIOS from the GRUB CD; `hd`, when given, is a raw disk
// on the IDE primary channel.
MachineConfig grub_config(const std::string& hd = {}) {
  MachineConfig c;
  c.bios = kBios;
  c.vga_bios = kVgaBios;
  c.mem_bytes = uint64_t(128) << 20;
  if (!hd.empty()) c.disks.push_back({hd, "raw", false, false, false, false});
  c.disks.push_back({kGrubIso, "raw", true, true, false, false});
  c.boot_order = "d";
  return c;
}

PcBoard& pc(Machine& m) {
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  return *b;
}

// Polls the text screen until `needle` shows (or, with `gone`, no longer
// shows), pumping the display like a consumer would.
bool wait_text(PcBoard& b, Run& r, const std::string& needle, int seconds, std::string* screen = nullptr,
               bool gone = false) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::string t;
  while (std::chrono::steady_clock::now() < deadline) {
    t = b.screen_text();
    if (screen) *screen = t;
    if ((t.find(needle) != std::string::npos) != gone) return true;
    {
      std::lock_guard g(r.mu);
      if (r.done) break;
    }
    b.poll(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("waited %d s for \"%s\" to %s; screen:\n%s\n", seconds, needle.c_str(), gone ? "go" : "show",
              t.c_str());
  return false;
}

void press(PcBoard& b, const char* code) {
  b.key(code, true);
  b.key(code, false);
  for (int i = 0; i < 600 && b.input_pending(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

// From GRUB's menu to its command line: 'c', once more if the first key only
// stopped the countdown.
bool open_grub_prompt(PcBoard& b, Run& r) {
  for (int attempt = 0; attempt < 2; attempt++) {
    press(b, "KeyC");
    if (wait_text(b, r, "grub>", 30)) return true;
  }
  std::printf("keyboard path: %s\n", b.input_debug().c_str());
  return false;
}

// Boots the GRUB CD to its menu, pauses, saves to `path` and stops. Returns
// the screen at the save.
std::string boot_to_menu_and_save(const MachineConfig& c, const std::string& path) {
  auto t0 = std::chrono::steady_clock::now();
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  PcBoard& b = pc(m);
  bool menu = wait_text(b, r, kMenuLine, 180);
  if (!menu) m.stop();
  CHECK(menu);
  m.pause();
  CHECK(m.state() == RunState::Paused);
  std::string screen = b.screen_text();
  m.save_state(path);
  m.stop();
  std::printf("  GRUB's menu after %.0f s, saved\n", secs_since(t0));
  return screen;
}

// GRUB's countdown line on a screen, or "".
std::string countdown_line(const std::string& s) {
  size_t at = s.find(kMenuLine);
  if (at == std::string::npos) return {};
  size_t b = s.rfind('\n', at);
  b = b == std::string::npos ? 0 : b + 1;
  size_t e = s.find('\n', at);
  return s.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

// A raw disk of `mib` MiB with `head` at offset 0.
std::string make_disk(const char* what, const std::string& head, int mib) {
  std::string path = tmp_path(what);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, off_t(mib) << 20) == 0);
  CHECK_EQ(pwrite(fd, head.data(), head.size(), 0), ssize_t(head.size()));
  close(fd);
  return path;
}

struct Cleanup {
  std::vector<std::string> paths;
  ~Cleanup() {
    for (auto& p : paths) std::remove(p.c_str());
  }
};
}  // namespace

// Saved at GRUB's menu, the state restores into a new Machine whose screen
// shows the menu before it runs (VRAM and the VGA registers came back); once
// started, GRUB takes keys (Down stops its countdown, 'c' opens the command
// line, a typed command runs): the vCPU, PIC/PIT/RTC, the i8042 and the VGA
// all carried over. The restored GRUB reads the IDE disk through the BIOS.
// The same file restores a second time, where GRUB lists the CD's files
// through the ATAPI drive.
TEST(grub_menu_restores_and_takes_keys_twice_from_one_file) {
  require_grub();
  Cleanup clean;
  std::string disk = make_disk("hd", "vireo-disk-sector-0\n", 8);
  std::string path = tmp_path("menu");
  std::string path2 = tmp_path("typing");
  clean.paths = {disk, path, path2};
  bool pending_at_save = false;
  MachineConfig c = grub_config(disk);
  std::string saved_screen = boot_to_menu_and_save(c, path);
  CHECK(saved_screen.find("GNU GRUB") != std::string::npos);

  {
    auto t0 = std::chrono::steady_clock::now();
    Machine m(c);
    m.load_state(path);
    PcBoard& b = pc(m);
    // Before it runs: the menu is on the screen, as saved.
    std::string before = b.screen_text();
    if (before != saved_screen) std::printf("saved screen:\n%s\nloaded screen:\n%s\n", saved_screen.c_str(), before.c_str());
    CHECK(before == saved_screen);
    auto frame = b.poll(true);
    CHECK(frame.has_value());
    Run r;
    r.attach(m);
    m.start();
    // GRUB runs on: its countdown ticks down (its clock is the BIOS tick, the PIT's IRQ 0).
    std::string line = countdown_line(before);
    CHECK(!line.empty());
    bool ticked = false;
    for (int i = 0; i < 300 && !ticked; i++) {
      b.poll(false);
      std::string now = countdown_line(b.screen_text());
      ticked = !now.empty() && now != line;
      if (!ticked) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!ticked) std::printf("countdown stuck at: %s\n", line.c_str());
    CHECK(ticked);
    press(b, "ArrowDown");
    CHECK(wait_text(b, r, kMenuLine, 60, nullptr, /*gone=*/true));  // a key stops the countdown
    CHECK(open_grub_prompt(b, r));
    CHECK(type_command(b, "grub> ", "echo vireo-restored", 90));
    CHECK(wait_text(b, r, "grub> echo vireo-restored\nvireo-restored\ngrub>", 60));
    CHECK(type_command(b, "grub> ", "cat (hd0)0+1", 90));
    CHECK(wait_text(b, r, "vireo-disk-sector-0", 60));
    CHECK_EQ(m.reset_count(), 0);
    m.stop();
    std::printf("  first restore: GRUB took keys, read the disk (%.0f s)\n", secs_since(t0));
  }
  {
    auto t0 = std::chrono::steady_clock::now();
    Machine m(c);
    m.load_state(path);
    PcBoard& b = pc(m);
    CHECK(b.screen_text() == saved_screen);
    Run r;
    r.attach(m);
    m.start();
    CHECK(open_grub_prompt(b, r));
    CHECK(type_command(b, "grub> ", "ls (cd)/", 90));
    std::string s;
    CHECK(wait_text(b, r, "boot/", 60, &s));
    CHECK_EQ(m.reset_count(), 0);
    // Keys typed faster than GRUB reads them, saved at once: the ones still
    // in the keyboard controller and the host's backlog travel in the state.
    for (const char* k : {"KeyE", "KeyC", "KeyH", "KeyO", "Space", "KeyQ", "KeyU", "KeyE", "KeyU", "KeyE", "KeyD"}) {
      b.key(k, true);
      b.key(k, false);
    }
    pending_at_save = b.input_pending();
    m.pause();
    m.save_state(path2);
    m.stop();
    std::printf("  second restore: GRUB listed the CD, saved with keys %s (%.0f s)\n",
                pending_at_save ? "still queued" : "all taken", secs_since(t0));
  }
  {
    Machine m(c);
    m.load_state(path2);
    PcBoard& b = pc(m);
    Run r;
    r.attach(m);
    m.start();
    CHECK(wait_text(b, r, "grub> echo queued", 60));
    press(b, "Enter");
    std::string s;
    if (!wait_text(b, r, "grub> echo queued\nqueued\ngrub>", 60, &s)) {
      std::printf("keyboard path: %s\n", b.input_debug().c_str());
      CHECK(false);
    }
    m.stop();
  }
}

namespace {
// diskw's passes reported on COM1 ("pass 0000000a\r\n"), in order.
std::vector<uint32_t> passes(const std::string& serial) {
  std::vector<uint32_t> out;
  for (size_t p = serial.find("pass "); p != std::string::npos; p = serial.find("pass ", p + 5)) {
    if (serial.size() < p + 15 || serial[p + 13] != '\r') break;  // not yet the whole line
    out.push_back(uint32_t(std::stoul(serial.substr(p + 5, 8), nullptr, 16)));
  }
  return out;
}

// Checks diskw's sectors 1..64 in `image`: each whole (its header and all
// 125 dwords of one pass), of a pass at least `min_pass`; returns the
// smallest and largest pass found.
std::pair<uint32_t, uint32_t> check_diskw_image(const std::string& image, uint32_t min_pass) {
  int fd = open(image.c_str(), O_RDONLY);
  CHECK(fd >= 0);
  std::vector<uint32_t> sec(128);
  uint32_t lo = ~0u, hi = 0;
  for (uint32_t n = 1; n <= 64; n++) {
    CHECK_EQ(pread(fd, sec.data(), 512, off_t(n) * 512), ssize_t(512));
    CHECK_EQ(sec[0], uint32_t('V' | 'D' << 8 | 'W' << 16 | '1' << 24));
    uint32_t p = sec[1];
    CHECK_EQ(sec[2], n);
    for (int i = 3; i < 128; i++) CHECK_EQ(sec[i], p << 16 | n);
    CHECK(p >= min_pass);
    lo = std::min(lo, p);
    hi = std::max(hi, p);
  }
  close(fd);
  return {lo, hi};
}
}  // namespace

namespace {
// A boot sector that keeps rewriting 64 sectors of its disk through the BIOS
// (native/guests/diskw.asm) is saved between passes it has reported; the
// image then holds whole passes. Restored into a new Machine over that
// image, the guest goes on counting from where it was (not from pass 1: RAM,
// CPU and the disk controller carried over) and its next passes land whole
// on the disk.
void diskw_save_and_restore(bool virtio) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string bin = guest("diskw.bin");
  FILE* f = std::fopen(bin.c_str(), "rb");
  std::string boot(512, '\0');
  CHECK_EQ(std::fread(boot.data(), 1, 512, f), size_t(512));
  std::fclose(f);
  Cleanup clean;
  std::string disk = make_disk(virtio ? "diskw_vd" : "diskw_hd", boot, 4);
  std::string path = tmp_path("diskw_state");
  clean.paths = {disk, path};
  MachineConfig c;
  c.bios = kBios;
  c.mem_bytes = uint64_t(32) << 20;
  c.disks.push_back({disk, "raw", false, false, virtio, false});

  uint32_t saved_pass = 0;
  {
    Machine m(c);
    Run r;
    r.attach(m);
    m.start();
    bool wrote = r.wait_output("pass 00000003\r\n", 120);
    m.pause();
    std::string serial;
    {
      auto rest = m.take_serial(0);
      std::lock_guard g(r.mu);
      r.serial.append(rest.begin(), rest.end());
      serial = r.serial;
    }
    if (!wrote) std::printf("COM1:\n%s\n", serial.c_str());
    CHECK(wrote);
    auto ps = passes(serial);
    CHECK(!ps.empty());
    for (size_t i = 0; i < ps.size(); i++) CHECK_EQ(ps[i], uint32_t(i + 1));
    saved_pass = ps.back();
    m.save_state(path);
    m.stop();
  }
  // Paused after its last report: every sector holds that pass or the next.
  auto [lo, hi] = check_diskw_image(disk, saved_pass);
  CHECK(hi <= saved_pass + 1);
  std::printf("  saved after pass %u (disk holds passes %u..%u)\n", saved_pass, lo, hi);

  Machine m(c);
  m.load_state(path);
  Run r;
  r.attach(m);
  m.start();
  char want[32];
  std::snprintf(want, sizeof want, "pass %08x\r\n", saved_pass + 3);
  bool wrote = r.wait_output(want, 120);
  m.pause();
  std::string serial;
  {
    auto rest = m.take_serial(0);
    std::lock_guard g(r.mu);
    r.serial.append(rest.begin(), rest.end());
    serial = r.serial;
  }
  m.stop();
  if (!wrote) std::printf("COM1 after restore:\n%s\n", serial.c_str());
  CHECK(wrote);
  auto ps = passes(serial);
  CHECK(ps.size() >= 3);
  // The first pass reported after the restore is the one after the saved one
  // (or, had the save caught a pass written but not yet reported, the next).
  CHECK(ps[0] == saved_pass + 1 || ps[0] == saved_pass + 2);
  for (size_t i = 1; i < ps.size(); i++) CHECK_EQ(ps[i], ps[i - 1] + 1);
  auto [lo2, hi2] = check_diskw_image(disk, ps.back());
  CHECK(hi2 <= ps.back() + 1);
  std::printf("  restored: passes %u..%u reported, disk holds %u..%u\n", ps.front(), ps.back(), lo2, hi2);
}
}  // namespace

TEST(guest_writing_its_virtio_disk_goes_on_after_restore) { diskw_save_and_restore(true); }
TEST(guest_writing_its_ide_disk_goes_on_after_restore) { diskw_save_and_restore(false); }

namespace {
// Saves a two-vCPU GRUB CD machine once `ready` says so, then restores it
// into a new Machine that must reach GRUB's menu and take 'c'.
void save_early_then_reach_menu(const char* what, const std::function<void(Machine&, Run&)>& ready) {
  require_grub();
  Cleanup clean;
  std::string path = tmp_path(what);
  clean.paths = {path};
  MachineConfig c = grub_config();
  c.cpus = 2;  // SeaBIOS wakes the second vCPU during its POST and parks it
  std::string at_save;
  {
    Machine m(c);
    Run r;
    r.attach(m);
    m.start();
    ready(m, r);
    m.pause();
    CHECK(m.state() == RunState::Paused);
    at_save = pc(m).screen_text();
    m.save_state(path);
    m.stop();
  }
  // Not at the menu yet when saved.
  CHECK(at_save.find("GNU GRUB") == std::string::npos);
  auto t0 = std::chrono::steady_clock::now();
  Machine m(c);
  m.load_state(path);
  Run r;
  r.attach(m);
  m.start();
  PcBoard& b = pc(m);
  CHECK(wait_text(b, r, kMenuLine, 180));
  CHECK(open_grub_prompt(b, r));
  CHECK_EQ(m.reset_count(), 0);
  m.stop();
  std::printf("  restored: GRUB's menu and prompt after %.0f s\n", secs_since(t0));
}
}  // namespace

// Saved 300 ms into SeaBIOS's POST (PCI enumeration, the option ROMs, the
// keyboard, the drives being set up), a PC restores into a new Machine that
// finishes the POST, boots the CD and shows GRUB's menu.
TEST(save_during_seabios_post_then_restore_reaches_grub_menu) {
  save_early_then_reach_menu("post", [](Machine&, Run&) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
}

// Saved as SeaBIOS starts the CD boot ("Booting from DVD/CD..."), while GRUB's
// core image and modules are read through the ATAPI drive: the restored
// machine reads on and reaches the menu.
TEST(save_while_grub_loads_from_the_cd_then_restore_reaches_grub_menu) {
  save_early_then_reach_menu("cdboot", [](Machine& m, Run& r) {
    bool booting = wait_text(pc(m), r, "Booting from DVD/CD", 120);
    if (!booting) m.stop();
    CHECK(booting);
  });
}
