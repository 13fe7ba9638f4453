// libFuzzer target: qcow2 opened writable (dirty-bit refcount rebuild,
// metadata overlap checks on guest writes, allocation, discard, flush), then
// the consistency check. The input's last 16 bytes (still part of the image)
// choose the requests.
// Build and run: scripts/fuzz.sh qcow2_write_fuzz [SECONDS] (docs/fuzzing.md).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "block/qcow2.h"

using namespace vireo::block;

long opened = 0;  // images opened writable (VIREO_FUZZ_STATS=1)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  const uint8_t* ctl = data + size - 16;
  int fd = memfd_create("qcow2-wfuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, data, size) != ssize_t(size)) {
    close(fd);
    return 0;
  }
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  Qcow2OpenFlags f;
  f.no_backing = true;
  std::vector<std::string> chain;
  std::string err;
  auto q = Qcow2Backend::open(path, f, &chain, &err);
  if (q && q->size()) {
    std::vector<uint8_t> buf(70000, 0xa5);
    for (int i = 0; i < 4; i++) {
      uint64_t off = (uint64_t(ctl[i * 3]) << 16 | uint64_t(ctl[i * 3 + 1]) << 8 | ctl[i * 3 + 2]) * 509 % q->size();
      uint64_t len = std::min<uint64_t>(q->size() - off, 1 + (ctl[12 + i] * 277) % buf.size());
      switch (ctl[12 + i] & 3) {
        case 0: q->pwrite(buf.data(), len, off); break;
        case 1: q->pread(buf.data(), len, off); break;
        case 2: q->discard(off, len); break;
        case 3: q->write_zeroes(off, len); break;
      }
    }
    q->flush();
    q->check(false);
    if (getenv("VIREO_FUZZ_STATS")) opened++;
  }
  q.reset();
  close(fd);
  return 0;
}
