#include "block/raw.h"

#include "block/lock.h"

#include <fcntl.h>

#include <algorithm>
#include <vector>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vireo::block {

int pread_full(int fd, void* buf, uint64_t len, uint64_t off) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len) {
    ssize_t r = ::pread(fd, p, len, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) {  // past end of file: reads as zeros
      std::memset(p, 0, len);
      return 0;
    }
    p += r;
    off += r;
    len -= r;
  }
  return 0;
}

int pwrite_full(int fd, const void* buf, uint64_t len, uint64_t off) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len) {
    ssize_t r = ::pwrite(fd, p, len, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += r;
    off += r;
    len -= r;
  }
  return 0;
}

bool parse_prealloc(const std::string& s, Prealloc* out) {
  if (s == "off") *out = Prealloc::Off;
  else if (s == "metadata") *out = Prealloc::Metadata;
  else if (s == "falloc") *out = Prealloc::Falloc;
  else if (s == "full") *out = Prealloc::Full;
  else return false;
  return true;
}

const char* prealloc_name(Prealloc p) {
  switch (p) {
    case Prealloc::Metadata: return "metadata";
    case Prealloc::Falloc: return "falloc";
    case Prealloc::Full: return "full";
    default: return "off";
  }
}

int grow_raw(int fd, uint64_t from, uint64_t to, Prealloc prealloc, std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  if (prealloc == Prealloc::Metadata) return *error = "Unsupported preallocation mode: metadata", -EINVAL;
  if (to < from && prealloc != Prealloc::Off)
    return *error = "Preallocation can only be used for growing images", -EINVAL;
  int r = 0;
  if (to > from && prealloc == Prealloc::Falloc) {
    // Mode 0: the blocks are reserved (unwritten extents read as zeros) and the size set.
    if (::fallocate(fd, 0, off_t(from), off_t(to - from))) {
      r = -errno;
      *error = std::string("preallocation=falloc: ") +
               (r == -EOPNOTSUPP ? "this file system cannot fallocate" : std::strerror(-r));
    }
  } else if (::ftruncate(fd, off_t(to))) {
    r = -errno;
    *error = std::string("cannot set the size: ") + std::strerror(-r);
  } else if (to > from && prealloc == Prealloc::Full) {
    static const std::vector<uint8_t> zeros(1 << 20, 0);
    for (uint64_t o = from; o < to && !r; o += zeros.size())
      r = pwrite_full(fd, zeros.data(), std::min<uint64_t>(zeros.size(), to - o), o);
    if (r) *error = std::string("preallocation=full: ") + std::strerror(-r);
  }
  if (!r && ::fdatasync(fd)) {
    r = -errno;
    *error = std::strerror(-r);
  }
  if (r && to > from && ::ftruncate(fd, off_t(from)) == 0) ::fdatasync(fd);  // back to what it was
  return r;
}

std::unique_ptr<RawBackend> RawBackend::open(const std::string& path, bool read_only,
                                             std::string* error, bool force_share) {
  int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) {
    if (error) *error = "could not open '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  if (!force_share && lock_image(fd, !read_only, path, error)) {
    ::close(fd);
    return nullptr;
  }
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    if (error) *error = "'" + path + "': cannot find size: " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<RawBackend>(new RawBackend(fd, uint64_t(end), read_only));
}

RawBackend::~RawBackend() { ::close(fd_); }

int RawBackend::pread(void* buf, uint64_t len, uint64_t off) {
  if (off > size_ || len > size_ - off) return -EIO;
  return pread_full(fd_, buf, len, off);
}

int RawBackend::pwrite(const void* buf, uint64_t len, uint64_t off) {
  if (ro_) return -EROFS;
  if (off > size_ || len > size_ - off) return -EIO;
  return pwrite_full(fd_, buf, len, off);
}

int RawBackend::flush() {
  if (ro_) return 0;
  return ::fdatasync(fd_) ? -errno : 0;
}

int RawBackend::block_status(uint64_t off, uint64_t len, uint64_t* n) {
  *n = 0;
  if (off > size_ || len > size_ - off) return -EIO;
  if (!len) return kZero;
  off_t d = ::lseek(fd_, off_t(off), SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO) {  // only a hole from here to the end
      *n = len;
      return kZero;
    }
    *n = len;  // no SEEK_DATA here (EINVAL): all data
    return kData;
  }
  if (uint64_t(d) > off) {
    *n = std::min<uint64_t>(len, uint64_t(d) - off);
    return kZero;
  }
  off_t h = ::lseek(fd_, off_t(off), SEEK_HOLE);
  *n = h < 0 || uint64_t(h) <= off ? len : std::min<uint64_t>(len, uint64_t(h) - off);
  return kData;
}

int RawBackend::discard(uint64_t off, uint64_t len) {
  if (ro_) return -EROFS;
  if (off > size_ || len > size_ - off) return -EIO;
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return 0;
  return 0;  // discard is advisory
}

int RawBackend::write_zeroes(uint64_t off, uint64_t len) {
  if (ro_) return -EROFS;
  if (off > size_ || len > size_ - off) return -EIO;
  if (len == 0) return 0;
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return 0;
  if (::fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return 0;
  return BlockBackend::write_zeroes(off, len);
}

}  // namespace vireo::block
