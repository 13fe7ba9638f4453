// Kernel boot on the PC board (issue 9): --kernel with firmware gives the same
// PC as a firmware boot. SeaBIOS runs POST, boots Vireo's option ROM, which
// has Vireo load the kernel with the firmware's E820 map and enters it.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <thread>

#include "kvm_helpers.h"
#include "devices/vga/vga.h"
#include "machine/pc_board.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";

void require_seabios() {
  if (access(kBios, R_OK) != 0 || access(kVgaBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
}

MachineConfig pc_kernel(const std::string& kernel, uint64_t mem_mib) {
  MachineConfig c;
  c.bios = kBios;
  c.vga_bios = kVgaBios;
  c.kernel = kernel;
  c.mem_bytes = mem_mib << 20;
  return c;
}

// A scratch raw disk image, removed at the end of the test.
struct TempDisk {
  std::string path;
  explicit TempDisk(size_t mib) {
    char t[] = "/tmp/vireo-kboot-XXXXXX";
    int fd = mkstemp(t);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, off_t(mib) << 20) == 0);
    close(fd);
    path = t;
  }
  ~TempDisk() { unlink(path.c_str()); }
};

bool wait_screen(PcBoard& b, Run& r, const std::string& needle, int seconds, std::string* screen = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string t = b.screen_text();
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
}  // namespace

TEST(multiboot_kernel_on_the_pc_shows_on_vga_and_sees_the_disk) {
  require_kvm();
  require_seabios();
  TempDisk disk(16);
  MachineConfig c = pc_kernel(guest("vgabanner.bin"), 64);
  c.disks.push_back({disk.path, "raw", false, false, false, false});
  Machine m(c);
  CHECK_EQ(m.boot_result().info.format, std::string("multiboot-aout"));
  auto* b = dynamic_cast<PcBoard*>(m.board());
  CHECK(b != nullptr);
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("disk: VIREO HARDDISK\r\n", 120));
  std::string screen;
  CHECK(wait_screen(*b, r, "disk: VIREO HARDDISK", 10, &screen));
  CHECK(screen.find("Vireo multiboot guest on the PC board") != std::string::npos);
  CHECK(r.serial.find("magic 2badb002") != std::string::npos);
  CHECK(r.serial.find("disk: VIREO HARDDISK") != std::string::npos);
  auto png = b->screenshot_png();
  CHECK(png.size() > 100);
  CHECK_EQ(png[1], uint8_t('P'));
  CHECK(m.state() == RunState::Running);
  m.stop();
}

// Multiboot ELF on the PC: the info carries SeaBIOS's E820 map (its
// reservation at the top of RAM included) and the command line.
TEST(multiboot_elf_on_the_pc_gets_the_firmware_memory_map) {
  require_kvm();
  require_seabios();
  MachineConfig c = pc_kernel(guest("mbinfo.elf"), 128);
  c.append = "console=ttyS0 vireo=pc";
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_done(m, 120));
  m.stop();
  CHECK_EQ(m.boot_result().info.format, std::string("multiboot-elf"));
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x05);
  CHECK(r.serial.find("magic 2badb002\r\n") != std::string::npos);
  CHECK(r.serial.find("cmdline console=ttyS0 vireo=pc\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 0000000000000000 000000000009fc00 00000001\r\n") != std::string::npos);
  // SeaBIOS keeps the top of RAM for itself: RAM from 1 MiB ends below 128 MiB,
  // and that top piece is listed as reserved.
  CHECK(r.serial.find("mmap 0000000000100000 0000000007f00000 00000001\r\n") == std::string::npos);
  CHECK(r.serial.find("mmap 0000000000100000 0000000007e") != std::string::npos);
  CHECK(r.serial.find("00000002\r\n") != std::string::npos);
}

// PVH on the PC: entered in 32-bit protected mode by the ROM with the
// start_info in EBX, carrying SeaBIOS's map.
TEST(pvh_kernel_on_the_pc_gets_start_info_and_the_firmware_map) {
  require_kvm();
  require_seabios();
  MachineConfig c = pc_kernel(guest("pvhinfo.elf"), 128);
  c.append = "console=hvc0 vireo=pvh";
  Machine m(c);
  CHECK_EQ(m.boot_result().info.format, std::string("pvh"));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_done(m, 120));
  m.stop();
  CHECK_EQ(r.info.code, 0x06);
  CHECK(r.serial.find("pvh magic 336ec578\r\n") != std::string::npos);
  CHECK(r.serial.find("cmdline console=hvc0 vireo=pvh\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 0000000000000000 000000000009fc00 00000001\r\n") != std::string::npos);
  CHECK(r.serial.find("mmap 0000000000100000 0000000007e") != std::string::npos);  // below SeaBIOS's reservation
  CHECK(r.serial.find("end\r\n") != std::string::npos);
}

// The guest's reset reboots the PC: POST again, the ROM again, a fresh kernel.
TEST(reset_reboots_a_kernel_boot_like_a_pc) {
  require_kvm();
  require_seabios();
  Machine m(pc_kernel(guest("vgabanner.bin"), 64));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("disk: none\r\n", 120));
  m.request_reset("test");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool twice = false;
  while (!twice && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard g(r.mu);
    size_t first = r.serial.find("disk: none\r\n");
    twice = r.serial.find("disk: none\r\n", first + 1) != std::string::npos;
  }
  CHECK(twice);
  CHECK_EQ(m.reset_count(), 1);
  CHECK(m.state() == RunState::Running);
  m.stop();
}

// The echo guest (e2e serial.spec boots it by direct kernel) on the PC:
// its own PIC setup and the UART interrupt work after SeaBIOS.
TEST(echo_guest_on_the_pc_echoes_by_interrupt) {
  require_kvm();
  require_seabios();
  Machine m(pc_kernel(guest("echo.bin"), 32));
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("echo ready\r\n", 120));
  std::string msg = "kernel boot on the PC";
  m.write_serial(0, (const uint8_t*)msg.data(), msg.size());
  CHECK(r.wait_output(msg, 60));
  const uint8_t eot = 4;
  m.write_serial(0, &eot, 1);
  CHECK(r.wait_done(m, 60));
  m.stop();
  CHECK_EQ(r.info.code, 0x10);
}

TEST(bad_kernel_on_the_pc_is_a_clear_error) {
  require_kvm();
  require_seabios();
  char t[] = "/tmp/vireo-notkernel-XXXXXX";
  int fd = mkstemp(t);
  CHECK(fd >= 0);
  std::string junk(8192, 'j');
  CHECK(write(fd, junk.data(), junk.size()) == ssize_t(junk.size()));
  close(fd);
  try {
    Machine m(pc_kernel(t, 64));
    CHECK(false);
  } catch (std::exception& e) {
    std::string w = e.what();
    CHECK(w.find(t) != std::string::npos);
    CHECK(w.find("not a kernel Vireo can boot") != std::string::npos);
  }
  unlink(t);
}

// Debian's kernel (linux-image-amd64) by --kernel on the PC: the ROM enters
// its 16-bit setup code, which runs on SeaBIOS and prints its first line,
// "Probing EDD (edd=off to disable)... ok", through the BIOS onto the VGA text
// screen. (Debian's kernel is built without CONFIG_X86_VERBOSE_BOOTUP, so the
// decompressor prints nothing, "Decompressing Linux..." included; on kvm_pvm
// hosts the xz decompressor then runs emulated for minutes, so the test stops
// at the setup code's line.)
TEST(linux_bzimage_on_the_pc_prints_on_the_vga_screen) {
  require_kvm();
  require_seabios();
  std::string kernel;
  if (DIR* d = opendir("/boot")) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind("vmlinuz-", 0) == 0 && access(("/boot/" + n).c_str(), R_OK) == 0) kernel = "/boot/" + n;
    }
    closedir(d);
  }
  if (kernel.empty()) SKIP("no readable /boot/vmlinuz-* (Debian package linux-image-amd64)");
  MachineConfig c = pc_kernel(kernel, 512);
  c.append = "console=tty0";
  Machine m(c);
  CHECK_EQ(m.boot_result().info.format, std::string("bzimage"));
  auto* b = dynamic_cast<PcBoard*>(m.board());
  Run r;
  r.attach(m);
  m.start();
  std::string screen;
  bool ok = wait_screen(*b, r, "Probing EDD (edd=off to disable)... ok", 120, &screen);
  if (!ok) std::printf("screen:\n%s\nstate: %s %s\n", screen.c_str(), r.info.kind.c_str(), r.info.message.c_str());
  CHECK(ok);
  CHECK(screen.find("Booting from ROM") != std::string::npos);  // SeaBIOS booted Vireo's ROM
  auto png = b->screenshot_png();
  CHECK(png.size() > 100);
  CHECK(m.state() == RunState::Running);
  m.stop();
}

// bench/app's display workload (guests/fbloop.asm): a multiboot kernel that sets
// a 1024x768x32 Bochs VBE mode, maps the std-vga's BAR0 as a user page and
// repaints the whole screen from ring 3. The screen is that mode and changes.
TEST(fbloop_repaints_a_vbe_screen_from_ring_3) {
  require_kvm();
  require_seabios();
  MachineConfig c = pc_kernel(guest("fbloop.bin"), 256);
  c.append = "desktop";
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("f 00000200 t ", 120));
  CHECK(r.serial.find("fbloop 1024x768 0 dispi_enable=00000041 lfb=") != std::string::npos);
  b->poll(true);
  vga::Frame f1 = b->frame();
  CHECK_EQ(f1.width, 1024u);
  CHECK_EQ(f1.height, 768u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  b->poll(false);
  vga::Frame f2 = b->frame();
  CHECK(f1.bgrx != f2.bgrx);  // repainted, scrolled
  // The page's background (0xf4f4f4) is most of the screen.
  size_t light = 0;
  for (size_t i = 0; i + 3 < f2.bgrx.size(); i += 4) light += f2.bgrx[i] == 0xf4 && f2.bgrx[i + 1] == 0xf4 && f2.bgrx[i + 2] == 0xf4;
  CHECK(light > size_t(1024) * 768 / 2);
  CHECK(r.serial.find("\nx ") == std::string::npos);  // no exception
  CHECK(m.state() == RunState::Running);
  m.stop();
}

// Its key mode: ring 3 polls the i8042 (the TSS's I/O bitmap allows it) and a
// key press paints the 128x128 block at (0,0) white, then red. Vireo single-steps
// a vCPU while a key waits (kvm_pvm hosts); kvm_pvm would hand that step's #DB to
// ring 3, so Vireo does not step at CPL 3: the guest counts the #DBs it gets and
// must get none (docs/architecture.md, "Input on kvm_pvm hosts").
TEST(fbloop_takes_a_key_from_ring_3) {
  require_kvm();
  require_seabios();
  MachineConfig c = pc_kernel(guest("fbloop.bin"), 256);
  c.append = "key";
  Machine m(c);
  auto* b = dynamic_cast<PcBoard*>(m.board());
  Run r;
  r.attach(m);
  m.start();
  CHECK(r.wait_output("fbloop 1024x768 2 ", 120));
  // The dark fill, then the key loop (native speed: well within a second).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  vga::Frame f0 = b->frame();
  CHECK_EQ(f0.width, 1024u);
  size_t at = (64 * size_t(1024) + 64) * 4;
  CHECK_EQ(f0.bgrx[at], 0x10);
  b->key("KeyA", true);
  b->key("KeyA", false);
  CHECK(r.wait_output("\nk ", 60));
  std::string ack;
  for (int i = 0; i < 50 && ack.empty(); i++) {
    {
      std::lock_guard g(r.mu);
      size_t k = r.serial.find("\nk ");
      size_t e = r.serial.find('\n', k + 1);
      if (e != std::string::npos) ack = r.serial.substr(k + 1, e - k - 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK_EQ(ack, std::string("k 00000000"));  // painted, and no #DB on the way
  vga::Frame f1 = b->frame();
  CHECK_EQ(f1.bgrx[at], 0xff);
  CHECK_EQ(f1.bgrx[at + 1], 0xff);
  CHECK_EQ(f1.bgrx[at + 2], 0xff);
  CHECK_EQ(f1.bgrx[(200 * size_t(1024) + 200) * 4], 0x10);  // outside the block: still dark
  // Two more, while the guest keeps polling: each toggles the block, still no #DB.
  for (int n = 2; n <= 3; n++) {
    b->key("KeyB", true);
    b->key("KeyB", false);
    auto acks = [&] {
      std::lock_guard g(r.mu);
      int c = 0;
      for (size_t p = r.serial.find("\nk 00000000\n"); p != std::string::npos; p = r.serial.find("\nk 00000000\n", p + 1)) c++;
      return c;
    };
    for (int i = 0; i < 300 && acks() < n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (acks() < n) std::printf("        serial:\n%s\n", r.serial.c_str());
    CHECK_EQ(acks(), n);
    vga::Frame f = b->frame();
    CHECK_EQ(f.bgrx[at + 2], 0xff);                // R (BGRX)
    CHECK_EQ(f.bgrx[at], n == 2 ? 0x00 : 0xff);    // red after the 2nd key, white after the 3rd
  }
  CHECK(r.serial.find("\nx ") == std::string::npos);
  CHECK(m.state() == RunState::Running);
  m.stop();
}

// The display's preferred size reaches a guest that reads the EDID (issue 14,
// "display size follows the window"): native/guests/edid.asm finds the std-vga's
// MMIO BAR through PCI config space and prints the size in the EDID's preferred
// timing whenever it changes. The VM's setting is there from the start; a size set
// while it runs (the console's "Resize guest with window") at its next probe; a size
// the display cannot offer is refused while running and, in the config, is an error
// naming it before anything runs.
TEST(edid_guest_sees_the_preferred_size_and_its_changes) {
  require_kvm();
  require_seabios();
  MachineConfig c = pc_kernel(guest("edid.bin"), 32);
  c.display_width = 1920;
  c.display_height = 1080;
  {
    Machine m(c);
    auto* b = dynamic_cast<PcBoard*>(m.board());
    CHECK(b != nullptr);
    Run r;
    r.attach(m);
    m.start();
    CHECK(r.wait_output("EDID 1920x1080\n", 120));
    CHECK(b->set_display_size(1533, 901));
    CHECK(r.wait_output("EDID 1533x901\n", 60));
    CHECK(!b->set_display_size(320, 200));
    CHECK((b->display_size() == std::pair<uint32_t, uint32_t>{1533, 901}));
    CHECK(m.state() == RunState::Running);
    m.stop();
    CHECK(r.serial.find("EDID 320x200") == std::string::npos);
  }
  c.display_width = 5000;
  try {
    Machine m(c);
    CHECK(false);
  } catch (std::exception& e) {
    std::string w = e.what();
    std::printf("  %s\n", w.c_str());
    CHECK(w.find("display size 5000x1080") != std::string::npos);
  }
}
