// Raw images and open_block's probing and error messages.
#include <sys/stat.h>

#include <cstring>

#include "block/blocktest_util.h"
#include "block/image.h"
#include "block/raw.h"
#include "check.h"

using namespace vireo::block;
using blocktest::TmpDir;

TEST(raw_create_write_read) {
  TmpDir d;
  std::string p = d / "a.raw";
  CHECK_EQ(create_raw(p, 3 << 20, nullptr), 0);
  std::string err;
  auto b = open_block(p, OpenOptions{}, &err);
  CHECK(b);
  CHECK_EQ(b->format(), std::string("raw"));
  CHECK_EQ(b->size(), uint64_t(3 << 20));
  auto data = blocktest::pattern(100000, 1);
  CHECK_EQ(b->pwrite(data.data(), data.size(), 12345), 0);
  std::vector<uint8_t> got(data.size());
  CHECK_EQ(b->pread(got.data(), got.size(), 12345), 0);
  CHECK(got == data);
  CHECK_EQ(b->pread(got.data(), 10, (3 << 20) - 5), -EIO);
  CHECK_EQ(b->flush(), 0);
  struct stat st;
  stat(p.c_str(), &st);
  CHECK(uint64_t(st.st_blocks) * 512 < (1 << 20));  // created sparse
}

TEST(raw_write_zeroes_and_discard_free_space) {
  TmpDir d;
  std::string p = d / "z.raw";
  CHECK_EQ(create_raw(p, 4 << 20, nullptr), 0);
  auto b = open_block(p, OpenOptions{}, nullptr);
  auto data = blocktest::pattern(4 << 20, 2);
  CHECK_EQ(b->pwrite(data.data(), data.size(), 0), 0);
  CHECK_EQ(b->flush(), 0);
  struct stat st1, st2;
  stat(p.c_str(), &st1);
  CHECK_EQ(b->write_zeroes(1 << 20, 2 << 20), 0);
  std::vector<uint8_t> got(4 << 20);
  CHECK_EQ(b->pread(got.data(), got.size(), 0), 0);
  std::memset(&data[1 << 20], 0, 2 << 20);
  CHECK(got == data);
  stat(p.c_str(), &st2);
  CHECK(st2.st_blocks < st1.st_blocks);
}

TEST(raw_read_only_and_probe) {
  TmpDir d;
  std::string p = d / "r.img";
  CHECK_EQ(create_raw(p, 1 << 20, nullptr), 0);
  OpenOptions o;
  o.read_only = true;
  auto b = open_block(p, o, nullptr);
  CHECK(b->read_only());
  uint8_t x[512] = {};
  CHECK_EQ(b->pwrite(x, 512, 0), -EROFS);
  CHECK_EQ(b->write_zeroes(0, 512), -EROFS);
  std::string err;
  CHECK_EQ(probe_format(p, &err), std::string("raw"));
  CHECK_EQ(create_qcow2(d / "q.img", 1 << 20, 16, "", "", 3, nullptr), 0);
  CHECK_EQ(probe_format(d / "q.img", &err), std::string("qcow2"));
  // an explicit format wins over probing: a qcow2 file opened as raw
  OpenOptions r;
  r.format = "raw";
  auto asraw = open_block(d / "q.img", r, &err);
  CHECK(asraw);
  CHECK_EQ(asraw->format(), std::string("raw"));
  CHECK(asraw->size() != uint64_t(1 << 20));
  r.format = "vmdk";
  CHECK(!open_block(p, r, &err));
  CHECK(err.find("vmdk") != std::string::npos);
  CHECK(err.find(p) != std::string::npos);
}

TEST(raw_missing_file_error_names_it) {
  std::string err;
  CHECK(!open_block("/nonexistent/dir/disk.img", OpenOptions{}, &err));
  CHECK(err.find("/nonexistent/dir/disk.img") != std::string::npos);
  CHECK(err.find("No such file") != std::string::npos);
}
