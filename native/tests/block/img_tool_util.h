// Helpers for the tests that run vireo-img and qemu-img/qemu-io side by side
// (block_img_test, block_prealloc_test, block_convert_test, block_interop_test).
#pragma once
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "block/blocktest_util.h"
#include "check.h"

namespace imgtool {

// A shell-quoted path.
inline std::string q(const std::string& s) { return "'" + s + "'"; }

// vireo-img next to this test binary (skips when it is not built).
inline std::string vireo_img() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string p(self, n > 0 ? size_t(n) : 0);
  std::string v = p.substr(0, p.rfind('/') + 1) + "vireo-img";
  if (access(v.c_str(), X_OK)) SKIP("vireo-img not built next to this test");
  return v;
}

inline void need_qemu() {
  if (!blocktest::have("qemu-img") || !blocktest::have("qemu-io"))
    SKIP("qemu-img/qemu-io not installed (Debian package qemu-utils)");
}

inline uint64_t file_size(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) ? 0 : uint64_t(st.st_size);
}

inline std::string md5(const std::string& p) {
  std::string o;
  blocktest::sh("md5sum " + q(p) + " | cut -c1-32", &o);
  return o;
}

// A number from `qemu-img info/check --output json` ("key": N).
inline uint64_t json_num(const std::string& json, const std::string& key) {
  auto k = json.find("\"" + key + "\":");
  if (k == std::string::npos) throw vireo_test::Failure{"no " + key + " in: " + json};
  return std::strtoull(json.c_str() + k + key.size() + 3, nullptr, 10);
}

inline uint64_t qemu_vsize(const std::string& img) {
  std::string o;
  CHECK_EQ(blocktest::sh("qemu-img info --output json " + q(img), &o), 0);
  return json_num(o, "virtual-size");
}

inline void qemu_check_clean(const std::string& img) {
  std::string o;
  int rc = blocktest::sh("qemu-img check " + q(img), &o);
  if (rc != 0) throw vireo_test::Failure{"qemu-img check " + img + " -> " + std::to_string(rc) + ": " + o};
}

}  // namespace imgtool
