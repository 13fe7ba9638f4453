// Backing files are opened only with the format their overlay states (issue
// 15, finding 3: the CVE-2008-2004 pattern, where a guest writes a qcow2
// header naming a host file into its raw disk). No format is ever probed on
// the way down a chain; chains are bounded in depth; `vireo-img rebase -u`
// states a missing format.
#include <limits.h>
#include <unistd.h>

#include <cstring>

#include "block/blocktest_util.h"
#include "block/image.h"
#include "check.h"

using namespace vireo::block;
using blocktest::sh;
using blocktest::TmpDir;

namespace {
std::string vireo_img() {  // built next to this test
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string p(self, n > 0 ? size_t(n) : 0);
  return p.substr(0, p.rfind('/') + 1) + "vireo-img";
}
std::string q(const std::string& s) { return "'" + s + "'"; }

// A qcow2 image naming `backing` (absolute) with its backing-format header
// extension removed, as an old qemu-img or a guest would write it.
void make_unstated(const std::string& p, const std::string& backing) {
  CHECK_EQ(create_qcow2(p, 1 << 20, 16, backing, "raw", 3, nullptr), 0);
  auto h = blocktest::slurp(p);
  CHECK_EQ(h[112], 0xe2);  // the backing format extension comes first
  blocktest::poke_be32(p, 112, 0x0badf00d);  // now an unknown extension, ignored
}
}  // namespace

TEST(unstated_backing_format_is_refused_with_a_fix) {
  TmpDir d;
  std::string secret = d / "secret.raw";
  CHECK_EQ(create_raw(secret, 1 << 20, nullptr), 0);
  {
    auto s = open_block(secret, OpenOptions{"raw"}, nullptr);
    std::vector<uint8_t> x(4096, 'S');
    CHECK_EQ(s->pwrite(x.data(), x.size(), 0), 0);
  }
  std::string p = d / "top.qcow2";
  make_unstated(p, secret);
  std::string err;
  auto b = open_block(p, OpenOptions{"qcow2"}, &err);
  CHECK(!b);
  std::printf("  %s\n", err.c_str());
  CHECK(err.find("not stated") != std::string::npos);
  CHECK(err.find("vireo-img rebase -u") != std::string::npos);
  // read-only too
  OpenOptions ro{"qcow2", true};
  CHECK(!open_block(p, ro, &err));
  // The fix the message names, through the tool: the chain then opens.
  std::string tool = vireo_img();
  if (access(tool.c_str(), X_OK)) CHECK_EQ(set_backing_file(p, secret, "raw", &err), 0);
  else CHECK_EQ(sh(q(tool) + " rebase -u -b " + q(secret) + " -F raw " + q(p)), 0);
  b = open_block(p, OpenOptions{"qcow2"}, &err);
  CHECK(b);
  std::vector<uint8_t> got(4096);
  CHECK_EQ(b->pread(got.data(), got.size(), 0), 0);
  CHECK_EQ(got[0], uint8_t('S'));
  b.reset();  // qemu-img honours our write lock
  if (blocktest::have("qemu-img")) {
    std::string out;
    CHECK_EQ(sh("qemu-img check " + q(p), &out), 0);
    CHECK_EQ(sh("qemu-img info " + q(p) + " | grep -q 'backing file format: raw'", &out), 0);
  }
}

TEST(raw_disk_with_a_qcow2_header_stays_raw) {
  // The guest wrote a qcow2 image naming a host file into its raw disk.
  TmpDir d;
  std::string secret = d / "secret.raw";
  CHECK_EQ(create_raw(secret, 1 << 20, nullptr), 0);
  std::string fake = d / "fake.qcow2";
  CHECK_EQ(create_qcow2(fake, 1 << 20, 16, secret, "raw", 3, nullptr), 0);
  std::string disk = d / "disk.raw";
  CHECK_EQ(sh("cp " + q(fake) + " " + q(disk) + " && truncate -s 2M " + q(disk)), 0);
  std::string err;
  auto b = open_block(disk, OpenOptions{"raw"}, &err);
  CHECK(b);
  CHECK_EQ(b->format(), std::string("raw"));
  CHECK_EQ(b->size(), uint64_t(2 << 20));
  uint8_t m[4];
  CHECK_EQ(b->pread(m, 4, 0), 0);
  CHECK(std::memcmp(m, "QFI\xfb", 4) == 0);  // the guest's bytes, not the host file
}

TEST(create_needs_the_backing_format) {
  TmpDir d;
  CHECK_EQ(create_raw(d / "base.raw", 1 << 20, nullptr), 0);
  std::string err;
  CHECK(create_qcow2(d / "top.qcow2", 0, 16, "base.raw", "", 3, &err) != 0);
  CHECK(err.find("-F") != std::string::npos);
  CHECK(access((d / "top.qcow2").c_str(), F_OK) != 0);
}

TEST(backing_chain_depth_is_bounded) {
  TmpDir d;
  CHECK_EQ(create_raw(d / "l0", 1 << 20, nullptr), 0);
  std::string err;
  for (int i = 1; i <= 16; i++)
    CHECK_EQ(create_qcow2(d / ("l" + std::to_string(i)), 0, 16, "l" + std::to_string(i - 1), i == 1 ? "raw" : "qcow2", 3, &err), 0);
  CHECK(open_block(d / "l15", OpenOptions{"qcow2"}, &err));  // 16 images
  CHECK(!open_block(d / "l16", OpenOptions{"qcow2"}, &err));  // 17
  CHECK(err.find("deeper than 16") != std::string::npos);
}
