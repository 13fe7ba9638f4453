#include "block/lock.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace vireo::block {

namespace {
constexpr off_t kPermBase = 100, kSharedBase = 200;
enum { kRead = 0, kWrite = 1, kWriteUnchanged = 2, kResize = 3 };
const char* const kPermName[] = {"consistent read", "write", "write unchanged", "resize"};

// fcntl with an OFD lock on one byte. 0 or -errno.
int ofd(int fd, int cmd, short type, off_t off, short* found = nullptr) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = off;
  fl.l_len = 1;
  fl.l_pid = 0;  // must be 0 for OFD locks
  while (::fcntl(fd, cmd, &fl) < 0) {
    if (errno != EINTR) return -errno;
  }
  if (found) *found = fl.l_type;
  return 0;
}

void unlock_all(int fd) {
  struct flock fl {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = kPermBase;
  fl.l_len = kSharedBase + 100 - kPermBase;
  ::fcntl(fd, F_OFD_SETLK, &fl);
}
}  // namespace

int lock_image(int fd, bool write, const std::string& path, std::string* error) {
  const unsigned used = write ? (1u << kRead) | (1u << kWrite) | (1u << kResize) : (1u << kRead);
  const unsigned unshared = (1u << kWrite) | (1u << kResize);
  auto conflict = [&](const std::string& why) {
    unlock_all(fd);
    if (error)
      *error = "'" + path + "' " + kLockConflictPhrase + " (a running VM, QEMU or an image tool): " + why +
               (write ? "; two writers, or a writer under a reader, would corrupt it"
                      : "; it is not read while another process changes it (vireo-img/qemu-img -U reads anyway)");
    return -EAGAIN;
  };
  for (int p = 0; p < 4; p++) {
    for (int range = 0; range < 2; range++) {
      bool want = range == 0 ? (used >> p) & 1 : (unshared >> p) & 1;
      if (!want) continue;
      int r = ofd(fd, F_OFD_SETLK, F_RDLCK, (range == 0 ? kPermBase : kSharedBase) + p);
      if (r == -EINVAL || r == -ENOLCK || r == -EOPNOTSUPP || r == -ENOSYS) {
        unlock_all(fd);
        return 0;  // no OFD locks here (old kernel, some network file systems)
      }
      if (r == -EAGAIN || r == -EACCES)
        return conflict(std::string("another process holds an exclusive lock on its '") + kPermName[p] + "' byte");
      if (r) {
        unlock_all(fd);
        if (error) *error = "'" + path + "': cannot lock it: " + std::strerror(-r);
        return r;
      }
    }
  }
  // Someone using what we do not share (a writer), then someone not sharing
  // what we use (a reader keeping writers out).
  for (int p = 0; p < 4; p++) {
    short t = F_UNLCK;
    if (!((unshared >> p) & 1)) continue;
    if (ofd(fd, F_OFD_GETLK, F_WRLCK, kPermBase + p, &t)) return unlock_all(fd), 0;
    if (t != F_UNLCK)
      return conflict(p == kWrite ? std::string("it has the file open for writing")
                                  : std::string("it may ") + kPermName[p] + " the file");
  }
  for (int p = 0; p < 4; p++) {
    short t = F_UNLCK;
    if (!((used >> p) & 1)) continue;
    if (ofd(fd, F_OFD_GETLK, F_WRLCK, kSharedBase + p, &t)) return unlock_all(fd), 0;
    if (t != F_UNLCK) return conflict(std::string("it does not allow '") + kPermName[p] + "' to others");
  }
  return 0;
}

}  // namespace vireo::block
