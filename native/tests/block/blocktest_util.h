// Helpers shared by the block_*_test.cc files.
#pragma once
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace blocktest {

struct TmpDir {
  std::string path;
  TmpDir() {
    char t[] = "/tmp/vireo-blocktest-XXXXXX";
    path = mkdtemp(t);
  }
  ~TmpDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string operator/(const std::string& f) const { return path + "/" + f; }
};

// Runs a shell command; returns its exit status and fills *out with stdout+stderr.
inline int sh(const std::string& cmd, std::string* out = nullptr) {
  std::string full = "(" + cmd + ") 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  std::string o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.append(buf, n);
  int st = pclose(p);
  if (out) *out = o;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

inline bool have(const char* tool) {
  return sh(std::string("command -v ") + tool + " >/dev/null") == 0;
}

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 g(seed);
  for (auto& b : v) b = uint8_t(g());
  return v;
}

inline std::vector<uint8_t> slurp(const std::string& path) {
  std::vector<uint8_t> v;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return v;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) v.insert(v.end(), buf, buf + n);
  std::fclose(f);
  return v;
}

inline void poke(const std::string& path, uint64_t off, const void* data, size_t n) {
  int fd = open(path.c_str(), O_WRONLY);
  if (pwrite(fd, data, n, off) != ssize_t(n)) std::perror("poke");
  close(fd);
}
inline void poke_be32(const std::string& path, uint64_t off, uint32_t v) {
  uint8_t b[4] = {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
  poke(path, off, b, 4);
}
inline void poke_be64(const std::string& path, uint64_t off, uint64_t v) {
  uint8_t b[8];
  for (int i = 7; i >= 0; i--) b[i] = uint8_t(v), v >>= 8;
  poke(path, off, b, 8);
}

}  // namespace blocktest
