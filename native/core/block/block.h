// The block layer's face to device models (IDE, virtio-blk) and tools.
// Offsets and lengths are bytes; device models use 512-byte sectors on top.
// Return values: 0 on success, -errno on failure.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace vireo::block {

// One piece of a vectored request: `len` bytes at virtual offset `off`, in `buf`.
struct IoRange {
  uint8_t* buf = nullptr;
  uint64_t off = 0, len = 0;
};

class BlockBackend {
public:
  virtual ~BlockBackend() = default;
  virtual uint64_t size() const = 0;  // virtual disk size in bytes
  virtual bool read_only() const = 0;
  virtual int pread(void* buf, uint64_t len, uint64_t off) = 0;
  virtual int pwrite(const void* buf, uint64_t len, uint64_t off) = 0;
  virtual int flush() = 0;
  // Several reads / writes in one call, in order (convert's batches). Backends
  // may merge pieces that are adjacent both in their file and in memory into
  // one system call (qcow2: data clusters that follow each other in the file,
  // wherever they are in the virtual disk). The defaults loop.
  virtual int pread_ranges(const IoRange* r, size_t n) {
    for (size_t i = 0; i < n; i++)
      if (int e = pread(r[i].buf, r[i].len, r[i].off)) return e;
    return 0;
  }
  virtual int pwrite_ranges(const IoRange* r, size_t n) {
    for (size_t i = 0; i < n; i++)
      if (int e = pwrite(r[i].buf, r[i].len, r[i].off)) return e;
    return 0;
  }
  virtual int discard(uint64_t off, uint64_t len) { return 0; }
  virtual int write_zeroes(uint64_t off, uint64_t len) {
    std::vector<uint8_t> z(64 * 1024, 0);
    while (len) {
      uint64_t n = len < z.size() ? len : z.size();
      if (int r = pwrite(z.data(), n, off)) return r;
      off += n;
      len -= n;
    }
    return 0;
  }
  virtual std::string format() const = 0;  // "raw", "qcow2", "memory"
  // Allocation status of [off, off+len) as the whole backing chain reads it:
  // kData (must be read), kZero (reads as zeros without being read: a hole, a
  // zero cluster, unallocated with no backing data). Sets *n (> 0 when len > 0)
  // to the bytes from off that share the status. kData, kZero or -errno.
  // The default says everything is data (callers then read and compare).
  static constexpr int kZero = 0, kData = 1;
  virtual int block_status(uint64_t off, uint64_t len, uint64_t* n) {
    *n = len;
    return kData;
  }
};

// A backend over a heap buffer: for device-model unit tests.
class MemoryBackend : public BlockBackend {
public:
  explicit MemoryBackend(uint64_t size, bool ro = false) : data(size, 0), ro_(ro) {}
  uint64_t size() const override { return data.size(); }
  bool read_only() const override { return ro_; }
  int pread(void* buf, uint64_t len, uint64_t off) override {
    if (off > data.size() || len > data.size() - off) return -EIO;
    std::memcpy(buf, data.data() + off, len);
    return 0;
  }
  int pwrite(const void* buf, uint64_t len, uint64_t off) override {
    if (ro_) return -EROFS;
    if (off > data.size() || len > data.size() - off) return -EIO;
    std::memcpy(data.data() + off, buf, len);
    return 0;
  }
  int flush() override { flushes++; return 0; }
  std::string format() const override { return "memory"; }
  std::vector<uint8_t> data;
  int flushes = 0;

private:
  bool ro_;
};

}  // namespace vireo::block
