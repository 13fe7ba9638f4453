// Image locks that QEMU's and Vireo's processes both see.
//
// Like QEMU's file-posix driver, every image file (and every backing file) is
// locked with open file description locks (fcntl F_OFD_SETLK, shared locks on
// single bytes) at two ranges of byte offsets, one byte per permission:
//   100 + p  held while this opener USES permission p
//   200 + p  held while this opener does NOT ALLOW others permission p
// with p = 0 consistent read, 1 write, 2 write-unchanged, 3 resize.
// An opener first takes its bytes, then tests (F_OFD_GETLK) the other range:
// a byte 200+p held by someone else means p is refused to us; a byte 100+p
// held by someone else means they use what we refuse to share. Measured from
// qemu-system-x86_64 with a writable qcow2 over a backing file (/proc/locks):
// the writable image holds 100, 101, 103, 201, 203; the backing file 100, 201,
// 203. Vireo takes the same bytes, so a VM of either, qemu-img and vireo-img
// all refuse to open an image another one writes, while any number of readers
// (backing files, read-only disks) share one.
//
// OFD locks belong to the open file description, so two opens in one process
// conflict like two processes (unlike classic POSIX locks), and they go away
// when the descriptor is closed or the process dies.
#pragma once
#include <string>

namespace vireo::block {

// Takes the locks for `fd` (opened on `path`): a writer (uses read, write,
// resize; shares neither write nor resize) or a reader (uses read; shares
// neither write nor resize). 0, or -EAGAIN with *error naming the file and
// "is in use by another process" when an opener elsewhere conflicts (then no
// lock of ours is left on fd). A file system without OFD locks is not an error
// (nothing is locked, as QEMU does with a warning).
int lock_image(int fd, bool write, const std::string& path, std::string* error);

// The phrase every lock conflict's message contains (the app matches it).
constexpr const char* kLockConflictPhrase = "is in use by another process";

}  // namespace vireo::block
