// SeaBIOS boots from a virtio-blk disk on the PC board: the boot sector
// (native/virtio-guest/mbr.asm) prints on COM1, reads two more sectors
// through INT 13h (SeaBIOS's virtio-blk driver over our virtio-pci
// transport), prints what it found, and exits through port 0xf4.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "kvm_helpers.h"
#include "machine/pc_board.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";
const char* kVgaBios = "/usr/share/seabios/vgabios-stdvga.bin";
const char* kFar = "far sector 2048 read through virtio-blk\r\n";

void require_file(const char* p, const char* pkg) {
  if (access(p, R_OK) != 0) SKIP(std::string(p) + " is missing (Debian package " + pkg + ")");
}

// A 4 MiB raw disk: the boot sector and LBA 1 from the built guest, a
// string at LBA 2048.
std::string make_disk() {
  std::ifstream in(guest("virtio-mbr.bin"), std::ios::binary);
  std::vector<char> mbr((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(mbr.size() >= 512);
  std::vector<char> img(4 << 20, 0);
  std::memcpy(img.data(), mbr.data(), mbr.size());
  std::memcpy(img.data() + 2048 * 512, kFar, std::strlen(kFar) + 1);
  char path[] = "/tmp/vireo-virtio-boot-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, img.data(), img.size()), ssize_t(img.size()));
  close(fd);
  return path;
}
}  // namespace

TEST(seabios_boots_from_virtio_blk) {
  require_kvm();
  require_file(kBios, "seabios");
  std::string disk = make_disk();
  MachineConfig c;
  c.bios = kBios;
  c.vga_bios = kVgaBios;
  c.mem_bytes = 128 << 20;
  c.boot_order = "c";
  DiskSpec d;
  d.path = disk;
  d.format = "raw";
  d.virtio = true;
  c.disks.push_back(d);
  Machine m(c);
  Run r;
  r.attach(m);
  m.start();
  // SeaBIOS's ring-0 code is emulated on kvm_pvm hosts: allow minutes.
  bool done = r.wait_done(m, 240);
  m.stop();
  unlink(disk.c_str());
  if (r.serial.find("VIREO-VIRTIO-MBR") == std::string::npos || !done || r.info.code != 0x31) {
    std::printf("serial:\n%s\nstop: %s (%d) %s\n", r.serial.c_str(), r.info.kind.c_str(), r.info.code, r.info.message.c_str());
  }
  CHECK(done);
  CHECK(r.serial.find("VIREO-VIRTIO-MBR booted") != std::string::npos);
  CHECK(r.serial.find("sector 1 read through virtio-blk") != std::string::npos);
  CHECK(r.serial.find(kFar) != std::string::npos);
  CHECK_EQ(r.info.kind, std::string("exit"));
  CHECK_EQ(r.info.code, 0x31);
}

TEST(virtio_cdrom_is_refused_with_a_message) {
  require_kvm();
  require_file(kBios, "seabios");
  MachineConfig c;
  c.bios = kBios;
  c.mem_bytes = 64 << 20;
  DiskSpec d;
  d.path = "/dev/null";
  d.format = "raw";
  d.cdrom = true;
  d.virtio = true;
  c.disks.push_back(d);
  try {
    Machine m(c);
    CHECK(false);
  } catch (MachineError& e) {
    CHECK(std::string(e.what()).find("virtio") != std::string::npos);
  }
}
