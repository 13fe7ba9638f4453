// libFuzzer target: qcow2 header, header extensions, snapshot table, L1/L2 and
// refcount parsing, reads (incl. compressed clusters) and the consistency check.
// Build and run: scripts/fuzz.sh qcow2_fuzz [SECONDS] (docs/fuzzing.md)
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "block/qcow2.h"

using namespace vireo::block;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = memfd_create("qcow2-fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, data, size) != ssize_t(size)) {
    close(fd);
    return 0;
  }
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  Qcow2OpenFlags f;
  f.read_only = true;
  f.no_backing = true;
  f.allow_corrupt = true;
  std::vector<std::string> chain;
  std::string err;
  auto q = Qcow2Backend::open(path, f, &chain, &err);
  if (q) {
    std::vector<uint8_t> buf(256 * 1024);
    uint64_t n = std::min<uint64_t>(q->size(), buf.size());
    q->pread(buf.data(), n, 0);
    if (q->size() > n) q->pread(buf.data(), 4096, q->size() - 4096);
    q->snapshots();
    q->check(false);
  }
  q.reset();
  close(fd);
  return 0;
}
