// Live internal disk snapshots (Machine::create_disk_snapshots /
// delete_disk_snapshots): a running PC with two qcow2 disks (one IDE, one
// virtio-blk) is paused and snapshotted through its open images; qemu-img
// lists the snapshot on both and finds them clean, a revert with the block
// layer brings back the content of the snapshot's moment, and delete removes
// it. Raw disks are refused by name, a name in use on one disk makes nothing
// anywhere, and a running machine is refused. Two guests: diskw (the image's
// bytes after a revert) and snapmark (what the guest itself reads after a
// revert with RAM: the old marker, at the snapshot's moment).
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <vector>
#include <thread>

#include "block/image.h"
#include "kvm_helpers.h"

using namespace vireo;

namespace {
const char* kBios = "/usr/share/seabios/bios.bin";

std::string sh(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (rc) *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

bool have_qemu_img() {
  int rc = 0;
  sh("qemu-img --version", &rc);
  return rc == 0;
}

std::string tmp(const char* what) { return "/tmp/vireo_disk_snap_" + std::to_string(getpid()) + "_" + what; }

void make_qcow2(const std::string& path) {
  std::string err;
  std::remove(path.c_str());
  CHECK_EQ(block::create_qcow2(path, 8 << 20, 16, "", "", 3, &err), 0);
}

// A fresh qcow2 whose first sector is the boot sector in `bin` (a test guest).
void make_boot_qcow2(const std::string& disk, const std::string& bin) {
  make_qcow2(disk);
  FILE* f = std::fopen(bin.c_str(), "rb");
  CHECK(f);
  std::vector<uint8_t> boot(512);
  CHECK_EQ(std::fread(boot.data(), 1, 512, f), size_t(512));
  std::fclose(f);
  block::OpenOptions o;
  std::string err;
  auto b = block::open_block(disk, o, &err);
  CHECK(b != nullptr);
  CHECK_EQ(b->pwrite(boot.data(), 512, 0), 0);
  CHECK_EQ(b->flush(), 0);
}

void fill(const std::string& path, uint8_t byte) {
  block::OpenOptions o;
  std::string err;
  auto b = block::open_block(path, o, &err);
  CHECK(b != nullptr);
  std::vector<uint8_t> buf(65536, byte);
  CHECK_EQ(b->pwrite(buf.data(), buf.size(), 1 << 20), 0);
  CHECK_EQ(b->flush(), 0);
}

uint8_t first_byte(const std::string& path) {
  block::OpenOptions o;
  o.read_only = true;
  std::string err;
  auto b = block::open_block(path, o, &err);
  CHECK(b != nullptr);
  uint8_t c = 0;
  CHECK_EQ(b->pread(&c, 1, 1 << 20), 0);
  return c;
}

MachineConfig pc(const std::vector<DiskSpec>& disks) {
  MachineConfig c;
  c.bios = kBios;
  c.mem_bytes = 32 << 20;
  c.disks = disks;
  return c;
}

DiskSpec qcow2_disk(const std::string& path, bool virtio) {
  DiskSpec d;
  d.path = path;
  d.format = "qcow2";
  d.virtio = virtio;
  return d;
}

void requirements() {
  require_kvm();
  if (access(kBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
  if (!have_qemu_img()) SKIP("qemu-img is not installed (Debian package qemu-utils)");
}
}  // namespace

TEST(two_qcow2_disks_snapshot_live_and_qemu_img_agrees) {
  requirements();
  std::string a = tmp("a.qcow2"), b = tmp("b.qcow2");
  make_qcow2(a);
  make_qcow2(b);
  fill(a, 0xaa);
  fill(b, 0xbb);
  {
    Machine m(pc({qcow2_disk(a, false), qcow2_disk(b, true)}));
    Run r;
    r.attach(m);
    m.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    // Running: refused (the caller pauses).
    std::string msg;
    try {
      m.create_disk_snapshots("s1");
    } catch (const MachineError& e) {
      msg = e.what();
    }
    CHECK(msg.find("pause it first") != std::string::npos);
    m.pause();
    CHECK(m.state() == RunState::Paused);
    m.create_disk_snapshots("s1");
    // The same name again: refused, naming the disk.
    msg.clear();
    try {
      m.create_disk_snapshots("s1");
    } catch (const MachineError& e) {
      msg = e.what();
    }
    CHECK(msg.find("already has a snapshot named 's1'") != std::string::npos);
    m.resume();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    m.stop();
  }
  for (auto& p : {a, b}) {
    int rc = 0;
    std::string list = sh("qemu-img snapshot -l " + p, &rc);
    CHECK_EQ(rc, 0);
    CHECK(list.find("s1") != std::string::npos);
    std::string check = sh("qemu-img check " + p, &rc);
    if (rc != 0) std::fprintf(stderr, "%s\n", check.c_str());
    CHECK_EQ(rc, 0);
  }
  // Written after the snapshot, then reverted (as the app does, vireo-img snapshot -a).
  fill(a, 0x11);
  fill(b, 0x22);
  for (auto& p : {a, b}) {
    block::OpenOptions o;
    std::string err;
    auto be = block::open_block(p, o, &err);
    CHECK(be != nullptr);
    CHECK_EQ(block::as_snapshots(be.get())->snapshot_apply("s1", &err), 0);
  }
  CHECK_EQ(first_byte(a), 0xaa);
  CHECK_EQ(first_byte(b), 0xbb);

  // Delete through a running (then paused) machine.
  {
    Machine m(pc({qcow2_disk(a, false), qcow2_disk(b, true)}));
    Run r;
    r.attach(m);
    m.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    m.pause();
    m.delete_disk_snapshots("s1");
    m.stop();
  }
  for (auto& p : {a, b}) {
    int rc = 0;
    std::string list = sh("qemu-img snapshot -l " + p, &rc);
    CHECK(list.find("s1") == std::string::npos);
    sh("qemu-img check " + p, &rc);
    CHECK_EQ(rc, 0);
    std::remove(p.c_str());
  }
}

TEST(a_name_in_use_on_one_disk_makes_nothing_anywhere) {
  requirements();
  std::string a = tmp("c.qcow2"), b = tmp("d.qcow2");
  make_qcow2(a);
  make_qcow2(b);
  int rc = 0;
  sh("qemu-img snapshot -c taken " + b, &rc);  // a qemu-made snapshot on the second disk
  CHECK_EQ(rc, 0);
  std::string msg;
  {
    Machine m(pc({qcow2_disk(a, false), qcow2_disk(b, false)}));
    try {
      m.create_disk_snapshots("taken");  // not started: allowed, and refused for the name
    } catch (const MachineError& e) {
      msg = e.what();
    }
    m.stop();
  }
  CHECK(msg.find(b) != std::string::npos);
  CHECK(sh("qemu-img snapshot -l " + a).find("taken") == std::string::npos);
  CHECK(sh("qemu-img snapshot -l " + b).find("taken") != std::string::npos);
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(raw_disks_are_refused_by_name_and_nothing_is_made) {
  requirements();
  std::string q = tmp("e.qcow2"), raw = tmp("f.raw");
  make_qcow2(q);
  std::string err;
  std::remove(raw.c_str());
  CHECK_EQ(block::create_raw(raw, 4 << 20, &err), 0);
  DiskSpec r;
  r.path = raw;
  r.format = "raw";
  std::string msg;
  {
    Machine m(pc({qcow2_disk(q, false), r}));
    try {
      m.create_disk_snapshots("s");
    } catch (const MachineError& e) {
      msg = e.what();
    }
    m.stop();
  }
  CHECK_EQ(msg, "snapshots need qcow2 disks: " + raw);
  CHECK(sh("qemu-img snapshot -l " + q).find(" s ") == std::string::npos);
  // A read-only raw disk is not written: it does not stop a snapshot.
  r.read_only = true;
  {
    Machine m(pc({qcow2_disk(q, false), r}));
    m.create_disk_snapshots("s");
    m.stop();
  }
  CHECK(sh("qemu-img snapshot -l " + q).find("s") != std::string::npos);
  std::remove(q.c_str());
  std::remove(raw.c_str());
}

namespace {
// diskw's sectors 1..64 as the qcow2 reader sees them (the image closed).
std::vector<uint8_t> diskw_sectors(const std::string& path) {
  block::OpenOptions o;
  o.read_only = true;
  std::string err;
  auto b = block::open_block(path, o, &err);
  CHECK(b != nullptr);
  std::vector<uint8_t> v(64 * 512);
  CHECK_EQ(b->pread(v.data(), v.size(), 512), 0);
  return v;
}
// The pass numbers in diskw's sectors (dword 1 of each).
std::pair<uint32_t, uint32_t> pass_range(const std::vector<uint8_t>& v) {
  uint32_t lo = ~0u, hi = 0;
  for (size_t n = 0; n < 64; n++) {
    uint32_t p;
    std::memcpy(&p, &v[n * 512 + 4], 4);
    lo = std::min(lo, p);
    hi = std::max(hi, p);
  }
  return {lo, hi};
}
}  // namespace

// A guest that keeps rewriting its disk (native/guests/diskw.asm, on an IDE
// qcow2 disk) is snapshotted paused, resumed, and writes more passes; after
// the machine stops and the snapshot is applied, the disk's bytes are the
// snapshot's again: the passes there are those of the snapshot's moment,
// and qemu-img's reading of the snapshot (convert -l snapshot.name=) is
// byte for byte what the reverted image holds.
TEST(revert_brings_back_the_disk_as_it_was_before_the_guest_wrote_more) {
  require_kvm();
  if (access(kBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
  std::string bin = guest("diskw.bin");
  std::string disk = tmp("diskw.qcow2");
  make_boot_qcow2(disk, bin);
  uint32_t snap_pass = 0, last_pass = 0;
  {
    Machine m(pc({qcow2_disk(disk, false)}));
    Run r;
    r.attach(m);
    m.start();
    CHECK(r.wait_output("pass 00000002\r\n", 180));
    m.pause();
    m.create_disk_snapshots("before");
    {
      std::lock_guard g(r.mu);
      snap_pass = uint32_t(std::stoul(r.serial.substr(r.serial.rfind("pass ") + 5, 8), nullptr, 16));
    }
    m.resume();
    char want[32];
    std::snprintf(want, sizeof want, "pass %08x\r\n", snap_pass + 3);
    CHECK(r.wait_output(want, 180));
    m.stop();
    last_pass = snap_pass + 3;
  }
  auto now = diskw_sectors(disk);
  auto [now_lo, now_hi] = pass_range(now);
  std::printf("  snapshot after pass %u; the guest went on to pass %u (disk holds %u..%u)\n", snap_pass, last_pass,
              now_lo, now_hi);
  CHECK(now_lo >= last_pass);
  std::vector<uint8_t> qemu_view;
  if (have_qemu_img()) {
    std::string raw = tmp("snap.raw");
    int rc = 0;
    std::string out = sh("qemu-img convert -f qcow2 -l snapshot.name=before -O raw '" + disk + "' '" + raw + "'", &rc);
    if (rc) std::printf("%s\n", out.c_str());
    CHECK_EQ(rc, 0);
    FILE* f = std::fopen(raw.c_str(), "rb");
    CHECK(f);
    qemu_view.resize(64 * 512);
    CHECK_EQ(std::fseek(f, 512, SEEK_SET), 0);
    CHECK_EQ(std::fread(qemu_view.data(), 1, qemu_view.size(), f), qemu_view.size());
    std::fclose(f);
    std::remove(raw.c_str());
  }
  {
    block::OpenOptions o;
    std::string err;
    auto b = block::open_block(disk, o, &err);
    CHECK(b != nullptr);
    auto* t = block::as_snapshots(b.get());
    CHECK(t);
    CHECK_EQ(t->snapshot_apply("before", &err, true), 0);
    CHECK_EQ(b->flush(), 0);
  }
  auto back = diskw_sectors(disk);
  auto [lo, hi] = pass_range(back);
  std::printf("  after the revert the disk holds passes %u..%u\n", lo, hi);
  CHECK(back != now);
  // At the snapshot the guest had reported snap_pass; one more pass may have been in flight.
  CHECK(lo >= snap_pass && hi <= snap_pass + 1);
  if (!qemu_view.empty()) CHECK(back == qemu_view);
  if (have_qemu_img()) {
    int rc = 0;
    sh("qemu-img check '" + disk + "'", &rc);
    CHECK_EQ(rc, 0);
  }
  std::remove(disk.c_str());
}

namespace {
// Sector 1 as snapmark.asm writes it: the marker letter, or '?' for anything else.
char snapmark_sector(const std::string& path) {
  block::OpenOptions o;
  o.read_only = true;
  std::string err;
  auto b = block::open_block(path, o, &err);
  CHECK(b != nullptr);
  std::vector<uint8_t> s(512);
  CHECK_EQ(b->pread(s.data(), s.size(), 512), 0);
  if (std::memcmp(s.data(), "VSM1", 4) != 0) return '?';
  for (size_t i = 5; i < 512; i++)
    if (s[i] != s[4]) return '?';
  return char(s[4]);
}

// Sends one command byte to snapmark and waits for its reply line.
bool snapmark_do(Machine& m, Run& r, char cmd, const std::string& reply, int seconds = 60) {
  uint8_t c = uint8_t(cmd);
  m.write_serial(0, &c, 1);
  bool ok = r.wait_output(reply, seconds);
  if (!ok) {
    std::lock_guard g(r.mu);
    std::fprintf(stderr, "  waited for '%s'; COM1 so far:\n%s\n", reply.c_str(), r.serial.c_str());
  }
  return ok;
}
}  // namespace

// The guest's side of snapshot -> write -> revert (native/guests/snapmark.asm
// on an IDE qcow2 disk): it writes marker A and reads it back; a snapshot
// with RAM is taken as the engine host takes one (pause, state file, disk
// snapshot, resume); the guest writes B and reads B. Reverted (the snapshot
// applied to the image as vireo-img snapshot -a does, the state loaded into
// a new machine), the guest goes on from the snapshot's moment -- its next
// operation is #02 and it remembers writing A last, no new boot -- and the
// sector it reads back is A. Control: the same state loaded over the disk
// not yet reverted reads B, which the guest flags against its memory of A.
TEST(after_a_revert_the_guest_resumes_at_the_snapshot_and_reads_the_old_marker) {
  require_kvm();
  if (access(kBios, R_OK) != 0) SKIP(std::string(kBios) + " is missing (Debian package seabios)");
  std::string bin = guest("snapmark.bin");
  std::string disk = tmp("snapmark.qcow2"), state = tmp("snapmark.vstate");
  make_boot_qcow2(disk, bin);
  auto cfg = pc({qcow2_disk(disk, false)});
  {
    Machine m(cfg);
    Run r;
    r.attach(m);
    m.start();
    CHECK(r.wait_output("#00 wrote A\r\n", 180));
    CHECK(snapmark_do(m, r, 'r', "#01 read A (last wrote A)\r\n"));
    // The snapshot, as host-core.ts takes one live.
    m.pause();
    m.save_state(state);
    m.create_disk_snapshots("markA");
    m.resume();
    CHECK(snapmark_do(m, r, 'w', "#02 wrote B\r\n"));
    CHECK(snapmark_do(m, r, 'r', "#03 read B (last wrote B)\r\n"));
    m.stop();
  }
  CHECK_EQ(snapmark_sector(disk), 'B');

  // Control: RAM from the snapshot over the disk as the guest left it.
  {
    Machine m(cfg);
    Run r;
    r.attach(m);
    m.load_state(state);
    m.start();
    CHECK(snapmark_do(m, r, 'r', "#02 read B (last wrote A)\r\n"));
    m.stop();
  }

  // The revert: the disk snapshot applied, the state loaded into a new machine.
  {
    block::OpenOptions o;
    std::string err;
    auto b = block::open_block(disk, o, &err);
    CHECK(b != nullptr);
    CHECK_EQ(block::as_snapshots(b.get())->snapshot_apply("markA", &err, true), 0);
    CHECK_EQ(b->flush(), 0);
  }
  CHECK_EQ(snapmark_sector(disk), 'A');
  {
    Machine m(cfg);
    Run r;
    r.attach(m);
    m.load_state(state);
    m.start();
    CHECK(snapmark_do(m, r, 'r', "#02 read A (last wrote A)\r\n"));
    // It goes on from there: writes and reads as before.
    CHECK(snapmark_do(m, r, 'w', "#03 wrote B\r\n"));
    CHECK(snapmark_do(m, r, 'r', "#04 read B (last wrote B)\r\n"));
    {
      std::lock_guard g(r.mu);
      std::printf("  COM1 after the revert:\n%s", r.serial.c_str());
      CHECK(r.serial.find("#00") == std::string::npos);  // no new boot
      CHECK(r.serial.find('?') == std::string::npos);
    }
    m.stop();
  }
  CHECK_EQ(snapmark_sector(disk), 'B');
  if (have_qemu_img()) {
    int rc = 0;
    std::string out = sh("qemu-img check '" + disk + "'", &rc);
    if (rc) std::printf("%s\n", out.c_str());
    CHECK_EQ(rc, 0);
    CHECK(sh("qemu-img snapshot -l '" + disk + "'").find("markA") != std::string::npos);
  }
  std::remove(disk.c_str());
  std::remove(state.c_str());
}
