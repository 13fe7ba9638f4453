// The PC board under KVM with real firmware and real media: SeaBIOS, then
// Debian's GRUB rescue CD from the ATAPI drive, driven with the keyboard.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "kvm_helpers.h"
#include "devices/vga/vga.h"
#include "devices/fw_cfg.h"
#include "machine/pc_board.h"
#include "machine/pci_windows.h"
#include "pc_typing.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";
const char* kGrubIso = "/usr/lib/grub-rescue/grub-rescue-cdrom.iso";

void require_file(const char* p, const char* pkg) {
  if (access(p, R_OK) != 0) SKIP(std::string(p) + " is missing (Debian package " + pkg + ")");
}

bool have_qemu() { return std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0; }

// A PC booted by SeaBIOS with `mem_mib` of RAM and, when given, a CD-ROM.
MachineConfig pc_config(uint64_t mem_mib, const char* cdrom = nullptr) {
  MachineConfig c;
  c.bios = kBios;
  c.vga_bios = kVgaBios;
  c.mem_bytes = mem_mib << 20;
  if (cdrom) c.disks.push_back({cdrom, "raw", true, true, false, false});
  return c;
}

// Polls the text screen until `needle` shows, pumping the display like a consumer would.
// VIREO_TRACE_SCREEN=1 prints the screen every 20 s while waiting.
bool wait_text(PcBoard& b, Run& r, const std::string& needle, int seconds, std::string* screen = nullptr) {
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::seconds(seconds);
  auto next_trace = start + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string t = b.screen_text();
    if (std::getenv("VIREO_TRACE_SCREEN") && std::chrono::steady_clock::now() > next_trace) {
      next_trace += std::chrono::seconds(20);
      std::printf("[waiting for \"%s\"]\n%s\n", needle.c_str(), t.c_str());
      std::fflush(stdout);
    }
    if (screen) *screen = t;
    if (t.find(needle) != std::string::npos) return true;
    {
      std::lock_guard g(r.mu);
      if (r.done) return false;
    }
    b.poll(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}


// Copies what the process writes to stderr (fd 2) into a file while alive;
// VIREO_DEBUGCON=1 makes the Machine write SeaBIOS's port-0x402 log there.
struct StderrCapture {
  std::string path;
  int saved = -1;
  StderrCapture() {
    char tmpl[] = "/tmp/vireo-debugcon-XXXXXX";
    int fd = mkstemp(tmpl);
    path = tmpl;
    std::fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    close(fd);
  }
  std::string finish() {
    std::fflush(stderr);
    if (saved >= 0) {
      dup2(saved, 2);
      close(saved);
      saved = -1;
    }
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    unlink(path.c_str());
    return ss.str();
  }
  ~StderrCapture() { finish(); }
};

uint32_t rd32(GuestMemory& mem, uint64_t a) {
  uint32_t v = 0;
  CHECK(mem.read(a, &v, 4));
  return v;
}
uint8_t mem_sum(GuestMemory& mem, uint64_t a, uint32_t len) {
  std::vector<uint8_t> b(len);
  CHECK(mem.read(a, b.data(), len));
  uint8_t s = 0;
  for (uint8_t x : b) s = uint8_t(s + x);
  return s;
}
std::string sig_at(GuestMemory& mem, uint64_t a, size_t n = 4) {
  std::string s(n, '\0');
  CHECK(mem.read(a, s.data(), n));
  return s;
}

}  // namespace

// SeaBIOS runs Vireo's etc/table-loader instead of building its own tables:
// its log lacks the legacy builder's lines, and the RSDP it leaves in the
// F-segment leads to Vireo's tables (OEM "VIREO ") with a MADT listing every
// vCPU.
TEST(seabios_installs_vireos_acpi_tables) {
  require_kvm();
  require_file(kBios, "seabios");
  MachineConfig c = pc_config(128);
  c.cpus = 2;
  setenv("VIREO_DEBUGCON", "1", 1);
  StderrCapture cap;
  std::unique_ptr<Machine> m;
  try {
    m = std::make_unique<Machine>(c);
  } catch (...) {
    unsetenv("VIREO_DEBUGCON");
    throw;
  }
  unsetenv("VIREO_DEBUGCON");
  Run r;
  r.attach(*m);
  m->start();
  auto* b = dynamic_cast<PcBoard*>(m->board());
  std::string screen;
  bool banner = wait_text(*b, r, "SeaBIOS (version", 60, &screen);
  m->pause();
  std::string log = cap.finish();
  if (!banner || log.find("Found 2 cpu(s)") == std::string::npos) std::printf("debugcon log:\n%s\n", log.c_str());
  CHECK(banner);
  CHECK(log.find("Found 2 cpu(s)") != std::string::npos);
  // SeaBIOS's own builder (src/fw/acpi.c acpi_setup) logs these two; the
  // loader path logs neither, nor any warning.
  CHECK(log.find("ACPI DSDT=") == std::string::npos);
  CHECK(log.find("Copying ACPI RSDP") == std::string::npos);
  CHECK(log.find("WARNING") == std::string::npos);

  GuestMemory& mem = m->memory();
  uint64_t rsdp = 0;
  for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
    if (sig_at(mem, a, 8) == "RSD PTR ") {
      rsdp = a;
      break;
    }
  CHECK(rsdp != 0);
  CHECK_EQ(sig_at(mem, rsdp + 9, 6), std::string("VIREO "));
  CHECK_EQ(mem_sum(mem, rsdp, 20), uint8_t(0));
  CHECK_EQ(mem_sum(mem, rsdp, 36), uint8_t(0));
  uint64_t rsdt = rd32(mem, rsdp + 16);
  CHECK_EQ(sig_at(mem, rsdt), std::string("RSDT"));
  CHECK_EQ(mem_sum(mem, rsdt, rd32(mem, rsdt + 4)), uint8_t(0));
  int lapics = -1;
  bool dsdt_ok = false;
  for (uint32_t i = 36; i < rd32(mem, rsdt + 4); i += 4) {
    uint64_t t = rd32(mem, rsdt + i);
    CHECK_EQ(sig_at(mem, t + 10, 6), std::string("VIREO "));
    CHECK_EQ(mem_sum(mem, t, rd32(mem, t + 4)), uint8_t(0));
    if (sig_at(mem, t) == "APIC") {
      lapics = 0;
      for (uint32_t off = 44; off < rd32(mem, t + 4);) {
        uint8_t e[2];
        CHECK(mem.read(t + off, e, 2));
        if (e[0] == 0) lapics++;
        CHECK(e[1] >= 2);
        off += e[1];
      }
    }
    if (sig_at(mem, t) == "FACP") {
      uint64_t dsdt = rd32(mem, t + 40);
      dsdt_ok = sig_at(mem, dsdt) == "DSDT" && mem_sum(mem, dsdt, rd32(mem, dsdt + 4)) == 0;
    }
  }
  CHECK_EQ(lapics, 2);
  CHECK(dsdt_ok);
  // The FADT's PM blocks are where the PIIX4 PM function really decodes them:
  // SeaBIOS moves PMBA to 0x600 when it runs a table-loader.
  CHECK(log.find("Moving pm_base to 0x600") != std::string::npos);
  uint64_t fadt = 0;
  for (uint32_t i = 36; i < rd32(mem, rsdt + 4); i += 4)
    if (sig_at(mem, rd32(mem, rsdt + i)) == "FACP") fadt = rd32(mem, rsdt + i);
  CHECK(fadt != 0);
  auto cfg_read = [&](int slot, int fn, int reg) {
    uint32_t addr = 0x80000000u | uint32_t(slot) << 11 | uint32_t(fn) << 8 | uint32_t(reg);
    uint8_t a[4], v[4];
    std::memcpy(a, &addr, 4);
    m->pio().write(0xcf8, a);
    m->pio().read(0xcfc, v);
    uint32_t out;
    std::memcpy(&out, v, 4);
    return out;
  };
  uint32_t pmba = cfg_read(1, 3, 0x40) & 0xffc0;  // PIIX4 PM (00:01.3) PMBA
  CHECK_EQ(rd32(mem, fadt + 56), pmba);            // PM1a_EVT_BLK
  CHECK_EQ(rd32(mem, fadt + 64), pmba + 4);        // PM1a_CNT_BLK
  CHECK_EQ(rd32(mem, fadt + 76), pmba + 8);        // PM_TMR_BLK
  auto pm_timer = [&] {
    uint8_t v[4];
    CHECK(m->pio().read(rd32(mem, fadt + 76), v));
    return uint32_t(v[0] | v[1] << 8 | v[2] << 16 | v[3] << 24);
  };
  uint32_t t0 = pm_timer();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(pm_timer() != t0);  // a running 3.58 MHz timer answers there
  m->stop();
}

TEST(seabios_banner_on_vga_text_screen) {
  require_kvm();
  require_file(kBios, "seabios");
  MachineConfig c = pc_config(128);
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  std::string screen;
  CHECK(wait_text(*b, r, "SeaBIOS (version", 60, &screen));
  auto png = b->screenshot_png();
  CHECK(png.size() > 100);
  CHECK_EQ(png[1], uint8_t('P'));
  m.stop();
}

// Boots the GRUB rescue CD to its menu and opens the command line with 'c',
// as a person at the console would. On a kvm_pvm host GRUB's ring-0 code is
// emulated and the menu takes about a minute; keys get in at once (the board
// single-steps the vCPU while input waits, see Machine::set_irq_window_stepping).
bool grub_prompt(PcBoard& b, Run& r, std::string& screen) {
  if (!wait_text(b, r, "executed automatically", 300, &screen)) {
    std::printf("screen:\n%s\n", screen.c_str());
    return false;
  }
  // A key that lands while GRUB is still drawing the menu may only stop the
  // countdown; press 'c' once more then.
  for (int attempt = 0; attempt < 2; attempt++) {
    type_keys(b, "c");
    if (wait_text(b, r, "grub>", 30, &screen)) return true;
  }
  std::printf("keyboard path: %s\nscreen:\n%s\n", b.input_debug().c_str(), screen.c_str());
  return false;
}

TEST(grub_rescue_iso_boots_from_atapi_to_menu_and_takes_keys) {
  require_kvm();
  require_file(kBios, "seabios");
  require_file(kGrubIso, "grub-rescue-pc");
  MachineConfig c = pc_config(256, kGrubIso);
  c.boot_order = "d";
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  auto* b = dynamic_cast<PcBoard*>(m.board());
  std::string screen;
  CHECK(wait_text(*b, r, "GNU GRUB", 300, &screen));
  if (!grub_prompt(*b, r, screen)) CHECK(false);
  // Every key arrives once, in order: a word typed faster than the guest
  // reads (the host queues what does not fit in the controller's buffer).
  for (const char* k : {"KeyE", "KeyC", "KeyH", "KeyO", "Space", "KeyH", "KeyE", "KeyL", "KeyL", "KeyO"}) {
    b->key(k, true);
    b->key(k, false);
  }
  b->key("Enter", true);
  b->key("Enter", false);
  if (!wait_text(*b, r, "grub> echo hello\nhello\ngrub>", 120, &screen)) {
    std::printf("keyboard path: %s\nscreen:\n%s\n", b->input_debug().c_str(), screen.c_str());
    CHECK(false);
  }
  CHECK_EQ(m.reset_count(), 0);
  m.stop();
}

TEST(unbootable_cdrom_is_reported_by_seabios_on_screen) {
  require_kvm();
  require_file(kBios, "seabios");
  char path[] = "/tmp/vireo-notboot-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  std::string junk(1 << 20, 'x');
  CHECK_EQ(write(fd, junk.data(), junk.size()), ssize_t(junk.size()));
  close(fd);
  MachineConfig c = pc_config(64, path);
  c.boot_order = "d";
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  auto* b = dynamic_cast<PcBoard*>(m.board());
  std::string screen;
  bool said = wait_text(*b, r, "No bootable device", 120, &screen);
  m.stop();
  unlink(path);
  if (!said) std::printf("screen:\n%s\n", screen.c_str());
  CHECK(said);
  CHECK(screen.find("Boot failed") != std::string::npos);
  CHECK(m.stop_info().kind == "stopped");  // still running until we stopped it: no crash
}

TEST(cdrom_change_and_eject_from_the_host) {
  require_kvm();
  require_file(kBios, "seabios");
  require_file(kGrubIso, "grub-rescue-pc");
  MachineConfig c = pc_config(64, kGrubIso);
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  m.start();
  try {
    b->change_cdrom("/nonexistent/other.iso");
    CHECK(false);
  } catch (MachineError& e) {
    CHECK(std::string(e.what()).find("/nonexistent/other.iso") != std::string::npos);
  }
  CHECK(b->eject_cdrom());  // SeaBIOS does not lock the tray
  b->change_cdrom(kGrubIso);
  m.stop();
  MachineConfig nocd = pc_config(64);
  Machine m2(nocd);
  try {
    dynamic_cast<PcBoard*>(m2.board())->eject_cdrom();
    CHECK(false);
  } catch (MachineError& e) {
    CHECK(std::string(e.what()).find("no CD-ROM drive") != std::string::npos);
  }
}

// GRUB's videoinfo lists the std-vga's VBE modes and its EDID, and gfxterm
// switches the display to a VBE graphics mode. Typing long commands into GRUB
// on a kvm_pvm host, where each key waits for the emulator to let IRQ 1 in,
// takes minutes (about 130 s in all here).
TEST(grub_videoinfo_and_gfxterm_vbe_graphics_mode) {
  require_kvm();
  require_file(kBios, "seabios");
  require_file(kGrubIso, "grub-rescue-pc");
  // qemu_compare_test types the same commands and checks everything below (the
  // mode list, the EDID, gfxterm's pixels) against QEMU's screens; this case is
  // for hosts without QEMU (~2 min of a kvm_pvm host's CI time otherwise).
  if (have_qemu() && !std::getenv("VIREO_TEST_ALL"))
    SKIP("qemu_compare_test runs videoinfo and gfxterm against QEMU (VIREO_TEST_ALL=1 runs this too)");
  MachineConfig c = pc_config(256, kGrubIso);
  c.boot_order = "d";
  Machine m(c);
  Run r;
  r.attach(m);
  auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  m.start();
  auto* b = dynamic_cast<PcBoard*>(m.board());
  std::string screen;
  if (!grub_prompt(*b, r, screen)) CHECK(false);
  // GRUB's VBE driver (not loaded on the rescue CD until asked for, as under
  // QEMU) lists the std-vga's Bochs VBE modes from the VGA BIOS, then the
  // EDID our std-vga serves. Mode lines look like
  // "0x195 1600 x  900 x 32 (6400)  Direct color, mask: 8/8/8/8  pos: 16/8/0/24".
  std::printf("  grub> after %.0f s\n", secs());
  CHECK(type_command(*b, "grub> ", "insmod vbe", 60));
  CHECK(type_command(*b, "grub> ", "videoinfo", 120));
  if (!wait_text(*b, r, "Preferred mode: 1024x768", 300, &screen)) {
    std::printf("screen:\n%s\n", screen.c_str());
    CHECK(false);
  }
  CHECK(screen.find(" x 32 (") != std::string::npos);
  CHECK(screen.find("Direct color, mask: 8/8/8/8  pos: 16/8/0/24") != std::string::npos);
  CHECK(screen.find("EDID version: 1.4") != std::string::npos);
  std::printf("  videoinfo listed the modes after %.0f s\n", secs());
  // A graphics mode: gfxterm at 640x480 draws GRUB's prompt with its own font
  // into the linear framebuffer.
  CHECK(type_command(*b, "grub> ", "set gfxmode=640x480", 60));
  CHECK(type_command(*b, "grub> ", "terminal_output gfxterm", 60));
  for (int i = 0; i < 600 && !b->screen_text().empty(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  type_keys(*b, "echo hi\n");  // at gfxterm's prompt, in graphics
  vga::Frame f;
  auto lit = [](const vga::Frame& fr, uint32_t y0, uint32_t y1) { return lit_rows(fr.bgrx, 4, fr.width, y0, y1); };
  bool drawn = false;
  for (int i = 0; i < 600 && !drawn; i++) {
    b->poll(false);
    f = b->frame();
    // Three text lines at the top, as under QEMU: "grub> echo hi" (rows
    // 10-22), "hi" (26-36), "grub> _" (42-56); nothing below.
    drawn = f.width == 640 && f.height == 480 && b->screen_text().empty() && lit(f, 8, 24) > 100 &&
            lit(f, 24, 40) > 20 && lit(f, 40, 58) > 50;
    if (!drawn) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (!drawn) {
    std::printf("display %ux%u, text screen:\n%s\n", f.width, f.height, b->screen_text().c_str());
    auto png = b->screenshot_png();
    if (FILE* out = std::fopen("grub-gfxterm-failed.png", "wb")) {
      std::fwrite(png.data(), 1, png.size(), out);
      std::fclose(out);
      std::printf("screenshot: grub-gfxterm-failed.png\n");
    }
  }
  CHECK(drawn);
  std::printf("  gfxterm drew the prompt at 640x480 after %.0f s\n", secs());
  CHECK_EQ(lit(f, 64, 480), size_t(0));
  CHECK(b->screenshot_png().size() > 1000);
  CHECK_EQ(m.reset_count(), 0);
  m.stop();
}

TEST(seabios_boot_menu_when_asked_for) {
  require_kvm();
  require_file(kBios, "seabios");
  require_file(kGrubIso, "grub-rescue-pc");
  MachineConfig c = pc_config(64, kGrubIso);
  c.boot_menu = true;
  // SeaBIOS's default 2.5 s for ESC is real time; on a kvm_pvm host under
  // load a key can take longer than that to reach its IRQ 1 handler, and the
  // CD boots instead (a CI run failed so). 10 s, as a user on a slow host
  // would set <bootmenu timeout='10000'/>.
  c.boot_menu_timeout_ms = 10000;
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  auto* b = dynamic_cast<PcBoard*>(m.board());
  std::string screen;
  CHECK(wait_text(*b, r, "Press ESC for boot menu", 90, &screen));
  // SeaBIOS waits 2.5 s for ESC (as QEMU's default); press it until the menu
  // shows, as a person would on a busy machine.
  bool menu = false;
  for (int i = 0; i < 40 && !menu; i++) {
    b->key("Escape", true);
    b->key("Escape", false);
    menu = wait_text(*b, r, "Select boot device", 1, &screen);
  }
  if (!menu) std::printf("screen:\n%s\n", screen.c_str());
  CHECK(menu);
  CHECK(screen.find("DVD/CD") != std::string::npos);
  m.stop();
}

// SeaBIOS takes Vireo's SMBIOS tables from fw_cfg (etc/smbios/smbios-anchor
// and -tables) instead of building its own: its debug log (port 0x402) says
// where it copied the entry point, and that entry point is Vireo's (SMBIOS
// 2.8; SeaBIOS' own build is 2.4) with the VM's product name and UUID. The
// banner line "Machine UUID ..." is printed from those tables.
TEST(seabios_uses_the_fw_cfg_smbios_tables) {
  require_kvm();
  require_file(kBios, "seabios");
  const std::string uuid = "6f1a7b2c-3d4e-4f50-8a61-72839405a6b7";
  MachineConfig c = pc_config(128);
  c.uuid = uuid;
  // The debug log goes to stderr with VIREO_DEBUGCON=1; catch it in a file.
  char path[] = "/tmp/vireo-debugcon-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  std::fflush(stderr);
  int saved = dup(2);
  setenv("VIREO_DEBUGCON", "1", 1);
  dup2(fd, 2);
  std::string screen;
  bool shown = false;
  std::vector<uint8_t> ep(31), tables;
  std::string log;
  {
    Machine m(c);
    Run r;
    r.attach(m);
    m.start();
    auto* b = dynamic_cast<PcBoard*>(m.board());
    shown = wait_text(*b, r, "Machine UUID " + uuid, 90, &screen);
    m.stop();
    std::fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unsetenv("VIREO_DEBUGCON");
    FILE* f = std::fopen(path, "rb");
    char buf[4096];
    size_t n;
    while (f && (n = std::fread(buf, 1, sizeof buf, f)) > 0) log.append(buf, n);
    if (f) std::fclose(f);
    close(fd);
    unlink(path);
    // "Copying SMBIOS from 0x00006e20 to 0x000f67f0"
    size_t at = log.find("Copying SMBIOS from ");
    if (at == std::string::npos) std::printf("debug log:\n%s\n", log.c_str());
    CHECK(at != std::string::npos);
    size_t to = log.find(" to 0x", at);
    CHECK(to != std::string::npos);
    uint64_t ep_addr = std::strtoull(log.c_str() + to + 4, nullptr, 16);
    std::printf("  SeaBIOS put the SMBIOS entry point at 0x%llx\n", (unsigned long long)ep_addr);
    CHECK(m.memory().read(ep_addr, ep.data(), ep.size()));
    uint32_t taddr = uint32_t(ep[0x18] | ep[0x19] << 8 | ep[0x1a] << 16 | uint32_t(ep[0x1b]) << 24);
    tables.resize(size_t(ep[0x16] | ep[0x17] << 8));
    CHECK(m.memory().read(taddr, tables.data(), tables.size()));
  }
  if (!shown) std::printf("screen:\n%s\n", screen.c_str());
  CHECK(shown);
  CHECK(screen.find("Machine UUID " + uuid) != std::string::npos);
  CHECK(log.find("Machine UUID " + uuid) != std::string::npos);
  CHECK(log.find("Invalid SMBIOS signature") == std::string::npos);
  CHECK(std::memcmp(ep.data(), "_SM_", 4) == 0);
  CHECK_EQ(int(ep[0x06]), 2);
  CHECK_EQ(int(ep[0x07]), 8);  // Vireo's version; SeaBIOS' own tables say 2.4
  std::string t(tables.begin(), tables.end());
  CHECK(t.find("Vireo PC (i440FX + PIIX, 1996)") != std::string::npos);
  const uint8_t smbios_uuid[16] = {0x2c, 0x7b, 0x1a, 0x6f, 0x4e, 0x3d, 0x50, 0x4f,
                                   0x8a, 0x61, 0x72, 0x83, 0x94, 0x05, 0xa6, 0xb7};
  CHECK(t.find(std::string(reinterpret_cast<const char*>(smbios_uuid), 16)) != std::string::npos);
}

// An OS's view of interrupt routing, end to end: a boot sector finds the
// RSDP, walks to the MADT, programs the IOAPIC pin the MADT names for ISA
// IRQ 0 and sees the in-kernel PIT's interrupt arrive in the LAPIC's IRR --
// and not on pin 0, where KVM's default routing would have sent it.
TEST(guest_follows_the_madt_to_the_pit_interrupt) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string img = guest("acpi_irq0.bin");
  MachineConfig c = pc_config(128);
  c.disks.push_back({img, "raw", true, false, false, false});
  c.boot_order = "c";
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  bool done = r.wait_done(m, 120);
  if (!done) m.stop();
  CHECK(done);
  CHECK_EQ(r.info.kind, std::string("exit"));
  // status 1 (IRQ 0 reached the MADT's pin and only it), GSI 2 in the high nibble
  std::printf("  guest result 0x%x\n", unsigned(r.info.code));
  CHECK_EQ(r.info.code, 0x21);
}

// SMP as an OS uses it: a boot sector lists the MADT's processors, starts
// every AP with INIT + STARTUP IPIs through its local APIC and each AP
// reports its own APIC ID from real mode. SeaBIOS's "Found N cpu(s)" is
// its own count; this is the path Linux's smpboot takes. QEMU TCG gives
// 0x44 for the same image with -smp 4.
TEST(an_os_starts_every_cpu_the_madt_lists) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string img = guest("smp_up.bin");
  for (int cpus : {2, 4}) {
    MachineConfig c = pc_config(128);
    c.cpus = cpus;
    c.disks.push_back({img, "raw", true, false, false, false});
    c.boot_order = "c";
    Machine m(c);
    Run r;
    r.attach(m);
    m.start();
    bool done = r.wait_done(m, 180);
    if (!done) m.stop();
    CHECK(done);
    CHECK_EQ(r.info.kind, std::string("exit"));
    // CPUs seen running | CPUs the MADT lists << 4
    std::printf("  %d vCPUs: guest result 0x%x\n", cpus, unsigned(r.info.code));
    CHECK_EQ(r.info.code, cpus << 4 | cpus);
  }
}

// The 64-bit PCI window end to end, on a 5 GiB machine (RAM 4-6 GiB): the
// boot sector native/guests/pci64.asm reads PCI0._CRS's QWordMemory from the
// DSDT in guest memory, moves a virtio function's 64-bit BAR4 from where
// SeaBIOS put it (below 4 GiB) to the window's first byte, then to its last
// 16 KiB (the top of the guest's physical address space, at most 2^46:
// where SeaBIOS 1.16.3 puts such BARs), and reads the virtio common config
// through it each time under PAE paging. The same image gives 0x4f under
// QEMU 7.2 TCG (-m 5G, virtio-blk-pci), whose 64-bit window is 6-8 GiB.
TEST(a_64bit_bar_moved_into_the_dsdt_window_still_answers) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string img = guest("pci64.bin");
  char vpath[] = "/tmp/vireo-pci64-XXXXXX";
  int fd = mkstemp(vpath);
  CHECK(fd >= 0);
  CHECK_EQ(ftruncate(fd, 1 << 20), 0);
  close(fd);
  struct Unlink {
    const char* p;
    ~Unlink() { unlink(p); }
  } unlink_later{vpath};
  MachineConfig c = pc_config(5120);
  c.disks.push_back({img, "raw", true, false, false, false});
  c.disks.push_back({vpath, "raw", true, false, true, false});  // virtio-blk: BAR4 is 64-bit
  c.boot_order = "c";
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  const PciWindows w = b->pci_windows();
  std::printf("  windows: 32-bit 0x%llx-0x%llx, 64-bit 0x%llx-0x%llx\n", (unsigned long long)w.mem32_base,
              (unsigned long long)(w.mem32_end - 1), (unsigned long long)w.mem64_base, (unsigned long long)(w.mem64_end - 1));
  CHECK_EQ(w.mem64_base, 6ull << 30);  // RAM above 4 GiB ends at 6 GiB
  CHECK(w.mem64_end > w.mem64_base);
  // SeaBIOS reads where 64-bit BARs may start from fw_cfg.
  const std::vector<uint8_t>* rme = b->fw_cfg().file(pciwin::kReservedMemoryEndFile);
  CHECK(rme != nullptr);
  CHECK_EQ(rme->size(), size_t(8));
  uint64_t rme_v = 0;
  std::memcpy(&rme_v, rme->data(), 8);
  CHECK_EQ(rme_v, w.mem64_base);
  Run r;
  r.attach(m);
  auto t0 = std::chrono::steady_clock::now();
  m.start();
  bool done = r.wait_done(m, 120);
  if (!done) m.stop();
  CHECK(done);
  CHECK_EQ(r.info.kind, std::string("exit"));
  std::printf("  guest result 0x%x after %.1f s\n", unsigned(r.info.code),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  // 0x40 | answers at the window start | gone from the old address | answers
  // at the window top | RAM below the window start
  CHECK_EQ(r.info.code, 0x4f);
  // The guest's pattern went to RAM, in the page right below the window.
  uint32_t pattern = 0;
  CHECK(m.memory().read(w.mem64_base - (2u << 20), &pattern, 4));
  CHECK_EQ(pattern, 0x34364943u);
  // BAR4 now holds the window's last 16 KiB, and Vireo's MMIO bus decodes it
  // there (device_feature with select 1: VIRTIO_F_VERSION_1).
  auto cfg = [&](int slot, int reg) {
    uint32_t addr = 0x80000000u | uint32_t(slot) << 11 | uint32_t(reg);
    uint8_t a[4], v[4];
    std::memcpy(a, &addr, 4);
    m.pio().write(0xcf8, a);
    m.pio().read(0xcfc, v);
    uint32_t out;
    std::memcpy(&out, v, 4);
    return out;
  };
  int slot = -1;
  for (int s = 0; s < 32 && slot < 0; s++)
    if ((cfg(s, 0) & 0xffff) == 0x1af4) slot = s;
  CHECK(slot >= 0);
  uint64_t bar = (uint64_t(cfg(slot, 0x24)) << 32) | (cfg(slot, 0x20) & ~0xfu);
  CHECK_EQ(bar, w.mem64_end - 0x4000);
  uint8_t f[4];
  CHECK(m.mmio().read(bar + 4, f));
  CHECK_EQ(f[0] & 1, 1);
  m.stop();
}

namespace {
// acpi_off.bin with its delay byte (offset 509) set to `seconds`, in a temp file.
std::string acpi_off_image(int seconds) {
  std::string src = guest("acpi_off.bin");
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_EQ(bytes.size(), size_t(512));
  bytes[509] = char(seconds);
  char path[] = "/tmp/vireo-acpi-off-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, bytes.data(), bytes.size()), ssize_t(bytes.size()));
  close(fd);
  return path;
}
}  // namespace

// The power button as an OS sees it: a boot sector reads the FADT, switches
// to ACPI mode through SMI_CMD, enables PWRBTN_EN, polls PWRBTN_STS, then
// after its delay writes \_S5's SLP_TYP | SLP_EN. Without a press it keeps
// running; with one (the board's press_power_button, what Shut Down sends)
// the machine stops with kind "poweroff" once the guest's delay has passed.
// Cross-checked against QEMU TCG's system_powerdown when QEMU is installed.
TEST(an_acpi_guest_powers_off_after_the_power_button) {
  require_kvm();
  require_file(kBios, "seabios");
  const int delay = 2;
  std::string img = acpi_off_image(delay);
  MachineConfig c = pc_config(64);
  c.disks.push_back({img, "raw", false, false, false, false});
  c.boot_order = "c";
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  CHECK(!b->press_power_button());  // SeaBIOS has not even started: ACPI is off, nothing happens
  Run r;
  r.attach(m);
  m.start();
  bool ready = r.wait_output("acpi ready", 120);
  if (!ready) {
    m.stop();
    std::printf("  serial: %s\n", r.serial.c_str());
  }
  CHECK(ready);
  // The early press above left PWRBTN_STS set; the guest cleared it before enabling the event.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  {
    std::lock_guard g(r.mu);
    CHECK(!r.done);
    CHECK(r.serial.find("power button") == std::string::npos);
  }
  CHECK(b->press_power_button());  // enabled by the guest: it will see it
  auto t0 = std::chrono::steady_clock::now();
  CHECK(r.wait_output("power button", 20));
  bool done = r.wait_done(m, 30);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!done) m.stop();
  unlink(img.c_str());
  CHECK(done);
  std::printf("  powered off %.1f s after the press\n", took);
  CHECK_EQ(r.info.kind, std::string("poweroff"));
  CHECK(r.serial.find("powering off") != std::string::npos);
  CHECK(took >= delay - 1);
  CHECK(r.final_state == RunState::Stopped);
}

// The same image under QEMU TCG: `system_powerdown` on its monitor, the guest
// powers off by itself (QEMU exits 0) after the delay -- the guest is right
// about ACPI on a reference PC, not just on Vireo's.
TEST(the_acpi_guest_powers_off_under_qemu_too) {
  if (!have_qemu()) SKIP("qemu-system-x86_64 is not installed");
  std::string img = acpi_off_image(2);
  std::string log = img + ".com1";
  std::string cmd = "timeout 120 qemu-system-x86_64 -accel tcg -m 64 -display none -monitor stdio -serial file:" + log +
                    " -drive file=" + img + ",format=raw,if=ide >/dev/null 2>&1";
  FILE* q = popen(cmd.c_str(), "w");
  CHECK(q != nullptr);
  auto read_log = [&] {
    std::ifstream f(log);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (read_log().find("acpi ready") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(read_log().find("acpi ready") != std::string::npos);
  std::fputs("system_powerdown\n", q);
  std::fflush(q);
  auto t0 = std::chrono::steady_clock::now();
  int st = pclose(q);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string out = read_log();
  unlink(img.c_str());
  unlink(log.c_str());
  std::printf("  QEMU exited %d, %.1f s after system_powerdown\n", WEXITSTATUS(st), took);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);  // powered off, not the timeout's 124
  CHECK(out.find("power button\n") != std::string::npos);
  CHECK(out.find("powering off") != std::string::npos);
  CHECK(took >= 1);
}
