// Raw images: a plain (sparse) file or block device.
#pragma once
#include <memory>
#include <string>

#include "block/block.h"
#include "block/image.h"

namespace vireo::block {

class RawBackend : public BlockBackend {
public:
  // Locks the file as QEMU does (block/lock.h) unless force_share.
  static std::unique_ptr<RawBackend> open(const std::string& path, bool read_only,
                                          std::string* error, bool force_share = false);
  ~RawBackend() override;
  uint64_t size() const override { return size_; }
  bool read_only() const override { return ro_; }
  int pread(void* buf, uint64_t len, uint64_t off) override;
  int pwrite(const void* buf, uint64_t len, uint64_t off) override;
  int flush() override;
  int discard(uint64_t off, uint64_t len) override;        // punches a hole
  int write_zeroes(uint64_t off, uint64_t len) override;   // zero range / hole
  std::string format() const override { return "raw"; }
  int block_status(uint64_t off, uint64_t len, uint64_t* n) override;  // SEEK_DATA / SEEK_HOLE
  int fd() const { return fd_; }

private:
  RawBackend(int fd, uint64_t size, bool ro) : fd_(fd), size_(size), ro_(ro) {}
  int fd_;
  uint64_t size_;
  bool ro_;
};

// Sets the raw image file `fd` from `from` to `to` bytes, then fdatasync. A
// grown range is sparse (Off), has its blocks reserved by fallocate (Falloc)
// or is written with zeros (Full); shrinking takes Off only ("Preallocation can
// only be used for growing images"). Metadata is -EINVAL ("Unsupported
// preallocation mode: metadata"). Should growing fail, the file is cut back
// to `from` bytes. 0 or -errno, *error saying why.
int grow_raw(int fd, uint64_t from, uint64_t to, Prealloc prealloc, std::string* error);

// Whole-buffer pread/pwrite that retry on EINTR and short transfers.
// pread_full zero-fills past end of file. Both return 0 or -errno.
int pread_full(int fd, void* buf, uint64_t len, uint64_t off);
int pwrite_full(int fd, const void* buf, uint64_t len, uint64_t off);

}  // namespace vireo::block
