#include "block/convert.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "block/image.h"
#include "block/lock.h"
#include "block/qcow2.h"
#include "block/raw.h"

#ifdef VIREO_HAVE_URING
#include <liburing.h>
#endif

namespace vireo::block {

namespace {

constexpr uint64_t kBuf = 1 << 20;       // one batch buffer
constexpr int kBuffers = 16;             // batches in flight between reader, writer and the disk
constexpr size_t kMaxRanges = 1024;      // extents in one batch
constexpr uint64_t kCopyRange = 64 << 20;  // one copy_file_range call (progress, cancel)
constexpr uint64_t kAlign = 4096;        // O_DIRECT: file offset, length and memory

bool all_zero(const uint8_t* p, uint64_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

std::string dir_of(const std::string& p) {
  auto s = p.rfind('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : p.substr(0, s);
}
std::string base_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

int fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int r = ::fsync(fd) ? -errno : 0;
  ::close(fd);
  return r == -EINVAL ? 0 : r;  // some file systems can't fsync a directory
}

// Buffered writes: every kKick bytes written, writeback of the file is started
// (sync_file_range, asynchronous), so the one fdatasync at the end finds
// little left. Called on the writing thread: the same call from a thread of
// its own, racing the writes, doubled the CPU time of a raw -> qcow2 convert
// (measured: 0.48 s against 0.23 s for 512 MiB).
constexpr uint64_t kKick = 32 << 20;
class Flusher {
public:
  explicit Flusher(int fd, bool on = true) : fd_(fd), on_(on) {}
  void wrote(uint64_t n) {
    if (!on_ || (since_ += n) < kKick) return;
    since_ = 0;
    ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
  }

private:
  const int fd_;
  const bool on_;  // false: not durable, nothing to start early
  uint64_t since_ = 0;
};

#ifdef VIREO_HAVE_URING
// Raw targets: the data goes to the disk with O_DIRECT, up to kQueue writes in
// flight through io_uring, straight from the batch buffers (no copy into the
// page cache, no writeback afterwards, no writeback throttling: O_DIRECT
// writes are not throttled). Synchronous O_DIRECT writes would not do: ext4
// holds the inode lock until a write into a hole completes, so threads would
// write one at a time. The parts of a write that are not 4 KiB-aligned (file
// offset, length: a raw source's odd end) go through the buffered descriptor;
// they never share a page with the direct parts. A buffer goes back to the
// reader when all of its writes completed.
class DirectWriter {
public:
  static constexpr unsigned kQueue = 64;
  static std::unique_ptr<DirectWriter> open(const std::string& path, int buffered_fd,
                                            std::function<void(uint8_t*)> done) {
    int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return nullptr;  // no O_DIRECT here: the buffered path
    // tmpfs/ramfs are the page cache itself: direct I/O gains nothing there.
    struct statfs sf;
    if (::fstatfs(fd, &sf) == 0 && (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC)) {
      ::close(fd);
      return nullptr;
    }
    auto w = std::unique_ptr<DirectWriter>(new DirectWriter(fd, buffered_fd, std::move(done)));
    if (io_uring_queue_init(kQueue, &w->ring_, 0) < 0) return nullptr;  // io_uring disabled
    w->ring_ok_ = true;
    for (unsigned i = 0; i < kQueue; i++) w->free_.push_back(i);
    return w;
  }
  ~DirectWriter() {
    if (ring_ok_) {
      // Every submitted write completes before its buffer goes; a ring that can no longer
      // submit or wait is left rather than spun on.
      while (inflight_) {
        if (flush() < 0) break;
        io_uring_cqe* cqe = nullptr;
        int r = io_uring_wait_cqe(&ring_, &cqe);
        if (r == -EINTR) continue;
        if (r < 0) break;
        reap(false);
      }
      io_uring_queue_exit(&ring_);
    }
    ::close(fd_);
  }
  unsigned inflight() const { return inflight_; }
  uint64_t direct_bytes() const { return direct_bytes_; }
  // Queues the writes; `tag` (the batch buffer) is handed to done() once all
  // of them completed (at once when none went to io_uring).
  int submit(const std::vector<IoRange>& w, uint8_t* tag) {
    pending_[tag]++;  // held until the end of this call
    int err = 0;
    for (const auto& r : w) {
      uint64_t a = (r.off + kAlign - 1) / kAlign * kAlign, b = (r.off + r.len) / kAlign * kAlign;
      if (a >= b || ((uintptr_t(r.buf) + (a - r.off)) % kAlign)) a = b = r.off + r.len;  // all buffered
      if (a > r.off)
        if ((err = pwrite_full(bfd_, r.buf, a - r.off, r.off))) break;
      if (b < r.off + r.len)
        if ((err = pwrite_full(bfd_, r.buf + (b - r.off), r.off + r.len - b, b))) break;
      for (uint64_t o = a; o < b;) {
        uint64_t m = std::min<uint64_t>(b - o, 4 << 20);
        if ((err = queue(r.buf + (o - r.off), m, o, tag))) break;
        o += m;
      }
      if (err) break;
    }
    // Whatever was queued goes out even after an error: a queued write counts as in flight,
    // and drain() and the destructor wait for it (never submitted, it would never complete:
    // CI's sanitizer run hung that way when an earlier write's ENOSPC came back mid-batch).
    if (int r = flush(); r < 0 && !err) err = r;
    release(tag);
    return err ? err : err_;
  }
  // Handles completions; waits for one first when `wait`. 0 or the first error.
  int reap(bool wait) {
    io_uring_cqe* cqe = nullptr;
    if (wait && inflight_) {
      if (int r = flush(); r < 0) return r;  // never wait on writes not yet submitted
      int r = io_uring_wait_cqe(&ring_, &cqe);
      if (r < 0 && r != -EINTR) return r;
    }
    while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe) {
      const unsigned i = unsigned(cqe->user_data);
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      Slot& s = slots_[i];
      if (res < 0 && !err_) err_ = res;
      else if (res >= 0 && uint64_t(res) < s.len && !err_)  // short: the rest synchronously
        err_ = pwrite_full(bfd_, s.buf + res, s.len - res, s.off + res);
      if (res > 0) direct_bytes_ += uint64_t(res);
      free_.push_back(i);
      inflight_--;
      release(s.tag);
    }
    return err_;
  }
  // Everything queued, completed.
  int drain() {
    while (inflight_) {
      int r = reap(true);
      if (r && r != -EINTR) return r;
    }
    return err_;
  }

private:
  struct Slot {
    uint8_t* buf = nullptr;
    uint64_t len = 0, off = 0;
    uint8_t* tag = nullptr;
  };
  DirectWriter(int fd, int bfd, std::function<void(uint8_t*)> done) : fd_(fd), bfd_(bfd), done_(std::move(done)) {}
  int queue(uint8_t* buf, uint64_t len, uint64_t off, uint8_t* tag) {
    while (free_.empty() || !io_uring_get_sqe_peek()) {
      if (io_uring_sq_ready(&ring_)) {
        int r = io_uring_submit(&ring_);
        if (r < 0) return r;
      }
      if (free_.empty())
        if (int r = reap(true); r && r != -EINTR) return r;
    }
    unsigned i = free_.back();
    free_.pop_back();
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_write(sqe, fd_, buf, unsigned(len), off);
    io_uring_sqe_set_data64(sqe, i);
    slots_[i] = Slot{buf, len, off, tag};
    pending_[tag]++;
    inflight_++;
    return 0;
  }
  bool io_uring_get_sqe_peek() { return io_uring_sq_space_left(&ring_) > 0; }
  // Submits the prepared writes (0 when there were none).
  int flush() {
    if (!io_uring_sq_ready(&ring_)) return 0;
    int r = io_uring_submit(&ring_);
    return r < 0 ? r : 0;
  }
  void release(uint8_t* tag) {
    auto it = pending_.find(tag);
    if (it != pending_.end() && --it->second == 0) {
      pending_.erase(it);
      done_(tag);
    }
  }
  const int fd_, bfd_;
  std::function<void(uint8_t*)> done_;
  io_uring ring_{};
  bool ring_ok_ = false;
  Slot slots_[kQueue];
  std::vector<unsigned> free_;
  std::map<uint8_t*, int> pending_;
  unsigned inflight_ = 0;
  uint64_t direct_bytes_ = 0;
  int err_ = 0;
};
#endif

// A batch: the data extents of a stretch of the virtual disk, read into one
// buffer (each at a memory address congruent to its offset modulo 4 KiB, so
// aligned parts can be written with O_DIRECT straight from it).
struct Batch {
  uint8_t* buf = nullptr;      // null: nothing read (zeros only, or an error)
  std::vector<IoRange> ext;    // data read, in order
  uint64_t end = 0;            // the virtual disk is done up to here
  int err = 0;                 // the reader failed at err_off
  uint64_t err_off = 0;
  bool last = false;
};

// Reader thread: walks the allocation map from `start`, gathers data extents
// into batches and reads each batch with one pread_ranges (qcow2: one pread
// per run of clusters adjacent in the file). The caller's thread writes them.
class Pipeline {
public:
  // `cut`: where an extent that does not fit the buffer may be split (a power of two; a
  // qcow2 target's cluster size, so a batch never ends inside a cluster it could write whole).
  Pipeline(BlockBackend& in, uint64_t start, const std::atomic<bool>* cancel, uint64_t cut = kAlign)
      : in_(in), start_(start), cancel_(cancel), cut_(cut) {
    for (int i = 0; i < kBuffers; i++) {
      void* p = std::aligned_alloc(kAlign, kBuf);
      if (p) free_.push_back(static_cast<uint8_t*>(p)), all_.push_back(static_cast<uint8_t*>(p));
    }
    th_ = std::thread([this] { run(); });
  }
  ~Pipeline() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    th_.join();
    for (auto* p : all_) std::free(p);
  }
  Batch pop() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [&] { return !ready_.empty(); });
    Batch b = std::move(ready_.front());
    ready_.pop_front();
    return b;
  }
  bool try_pop(Batch* b) {
    std::lock_guard<std::mutex> g(mu_);
    if (ready_.empty()) return false;
    *b = std::move(ready_.front());
    ready_.pop_front();
    return true;
  }
  void give_back(uint8_t* b) {
    if (!b) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      free_.push_back(b);
    }
    cv_.notify_all();
  }

private:
  void push(Batch&& b) {
    {
      std::lock_guard<std::mutex> g(mu_);
      ready_.push_back(std::move(b));
    }
    cv_.notify_all();
  }
  uint8_t* take() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [&] { return stop_ || !free_.empty(); });
    if (stop_) return nullptr;
    uint8_t* b = free_.back();
    free_.pop_back();
    return b;
  }
  void fail(uint64_t off, int err, uint8_t* buf) {
    give_back(buf);
    Batch f;
    f.err = err, f.err_off = off;
    push(std::move(f));
  }
  void run() {
    const uint64_t size = in_.size();
    uint64_t off = start_;
    if (all_.size() < size_t(kBuffers)) return fail(off, -ENOMEM, nullptr);
    while (off < size) {
      if (cancel_ && cancel_->load()) return fail(off, -ECANCELED, nullptr);
      uint8_t* buf = take();
      if (!buf) return;  // the writer stopped
      Batch b;
      b.buf = buf;
      uint64_t pos = 0;
      while (off < size && b.ext.size() < kMaxRanges) {
        uint64_t n = 0;
        int st = in_.block_status(off, size - off, &n);
        if (st < 0 || n == 0) return fail(off, st < 0 ? st : -EIO, buf);
        if (st == BlockBackend::kZero) {
          off += n;
          continue;
        }
        uint64_t at = (pos + kAlign - 1) / kAlign * kAlign + off % kAlign;
        if (at >= kBuf) break;
        uint64_t m = std::min(n, kBuf - at);
        if (m < n) {  // split at a `cut` boundary where there is one in the buffer
          const uint64_t cm = (off + m) / cut_ * cut_;
          if (cm > off) m = cm - off;
          else if (!b.ext.empty()) break;  // none: the next batch starts with it
        }
        if (!b.ext.empty() && m < n && m < (256 << 10)) break;  // a large extent starts the next batch
        b.ext.push_back(IoRange{buf + at, off, m});
        pos = at + m, off += m;
        if (pos + kAlign > kBuf) break;
      }
      {
        // The writer gave up: the buffer stays in all_ (freed by the destructor). Not
        // give_back() here: it takes mu_, held here (a self-deadlock CI's sanitizer run hit
        // when an ENOSPC stopped the writer while this thread was between take() and here).
        std::lock_guard<std::mutex> g(mu_);
        if (stop_) return;
      }
      if (int r = in_.pread_ranges(b.ext.data(), b.ext.size())) return fail(b.ext.front().off, r, buf);
      b.end = off;
      push(std::move(b));
    }
    Batch e;
    e.last = true, e.end = size;
    push(std::move(e));
  }

  BlockBackend& in_;
  uint64_t start_;
  const std::atomic<bool>* cancel_;
  const uint64_t cut_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  std::vector<uint8_t*> free_, all_;
  bool stop_ = false;
  std::thread th_;
};

// raw -> raw in the kernel. Returns the offset it got to (size when done) and
// sets *err on a real failure; stops early, without an error, where the
// kernel can't copy between these files (EXDEV, EOPNOTSUPP, ENOSYS, EINVAL).
uint64_t copy_ranges(BlockBackend& in, int in_fd, int out_fd, Flusher& flusher, const ConvertOptions& o, int* err,
                     ConvertStats* st) {
  const uint64_t size = in.size();
  uint64_t off = 0;
  *err = 0;
  while (off < size) {
    if (o.cancel && o.cancel->load()) {
      *err = -ECANCELED;
      return off;
    }
    uint64_t n = 0;
    int s = in.block_status(off, size - off, &n);
    if (s < 0 || n == 0) {
      *err = s < 0 ? s : -EIO;
      return off;
    }
    if (s == BlockBackend::kData) {
      uint64_t end = off + n;
      while (off < end) {
        if (o.cancel && o.cancel->load()) {
          *err = -ECANCELED;
          return off;
        }
        loff_t a = loff_t(off), b = loff_t(off);
        ssize_t r = ::copy_file_range(in_fd, &a, out_fd, &b, std::min(end - off, kCopyRange), 0);
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) return off;
          *err = -errno;
          return off;
        }
        if (r == 0) return off;  // source shrank under us: let the read path decide
        st->used_copy_range = true;
        st->copy_range_bytes += uint64_t(r);
        st->data_bytes += uint64_t(r);
        st->written_bytes += uint64_t(r);
        off += uint64_t(r);
        flusher.wrote(uint64_t(r));
        if (o.progress) o.progress(off, size);
      }
    } else {
      off += n;
      if (o.progress) o.progress(off, size);
    }
  }
  return off;
}

// convert -c: takes the pieces in order, stores every non-zero cluster of the
// target through Qcow2Backend::write_compressed, in order. Clusters are copied
// out of the piece and deflated by up to 4 worker threads while this thread
// writes finished ones (at most kZInFlight waiting), so reading, deflating and
// writing overlap. A cluster split across pieces (source extents need not be
// cluster-aligned) is gathered in a staging buffer first.
constexpr size_t kZInFlight = 128;
class Compressor {
public:
  Compressor(Qcow2Backend& q, uint64_t size, ConvertStats& st)
      : q_(q), cs_(q.cluster_size()), size_(size), st_(st) {
    unsigned hc = std::thread::hardware_concurrency();
    unsigned n = std::max(1u, std::min(4u, hc ? hc : 1u));
    for (unsigned i = 0; i < n; i++) workers_.emplace_back([this] { work(); });
  }
  ~Compressor() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int piece(const uint8_t* buf, uint64_t off, uint64_t len) {
    for (uint64_t c = off / cs_; c * cs_ < off + len; c++) {
      uint64_t cstart = c * cs_, cend = std::min(cstart + cs_, size_);
      uint64_t lo = std::max(off, cstart), hi = std::min(off + len, cend);
      if (lo == cstart && hi == cend && !(staged_ && stage_c_ == c)) {
        if (!all_zero(buf + (lo - off), hi - lo))
          if (int r = submit(cstart, buf + (lo - off), hi - lo)) return r;
        continue;
      }
      if (staged_ && stage_c_ != c)
        if (int r = flush_stage()) return r;
      if (!staged_) {
        stage_.assign(cs_, 0);
        stage_c_ = c;
        staged_ = true;
      }
      std::memcpy(stage_.data() + (lo - cstart), buf + (lo - off), hi - lo);
    }
    return drain(false);
  }
  int flush_stage() {
    if (!staged_) return 0;
    staged_ = false;
    uint64_t cstart = stage_c_ * cs_, n = std::min(cs_, size_ - cstart);
    if (all_zero(stage_.data(), n)) return 0;
    return submit(cstart, stage_.data(), n);
  }
  // Everything submitted, written.
  int finish() {
    if (int r = flush_stage()) return r;
    return drain(true);
  }

private:
  struct Job {
    uint64_t off = 0;
    std::vector<uint8_t> data, z;
    bool done = false;
  };
  int submit(uint64_t off, const uint8_t* p, uint64_t n) {
    auto j = std::make_shared<Job>();
    j->off = off;
    j->data.assign(p, p + n);
    {
      std::lock_guard<std::mutex> g(mu_);
      todo_.push_back(j);
      order_.push_back(j);
    }
    cv_.notify_one();
    return drain(false);
  }
  // Writes finished jobs from the front; waits while too many are in flight (or all, at the end).
  int drain(bool all) {
    for (;;) {
      std::shared_ptr<Job> j;
      {
        std::unique_lock<std::mutex> g(mu_);
        if (order_.empty()) return 0;
        if (!order_.front()->done) {
          if (!all && order_.size() < kZInFlight) return 0;
          done_cv_.wait(g, [&] { return order_.front()->done; });
        }
        j = order_.front();
        order_.pop_front();
      }
      int r = q_.write_compressed(j->data.data(), j->data.size(), j->off, j->z);
      if (r) return r;
      (j->z.empty() ? st_.plain_clusters : st_.compressed_clusters)++;
      st_.written_bytes += j->z.empty() ? j->data.size() : j->z.size();
    }
  }
  void work() {
    for (;;) {
      std::shared_ptr<Job> j;
      {
        std::unique_lock<std::mutex> g(mu_);
        cv_.wait(g, [&] { return stop_ || !todo_.empty(); });
        if (stop_) return;
        j = todo_.front();
        todo_.pop_front();
      }
      auto z = Qcow2Backend::deflate_cluster(j->data.data(), j->data.size(), cs_);
      {
        std::lock_guard<std::mutex> g(mu_);
        j->z = std::move(z);
        j->done = true;
      }
      done_cv_.notify_all();
    }
  }
  Qcow2Backend& q_;
  const uint64_t cs_, size_;
  ConvertStats& st_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::shared_ptr<Job>> todo_, order_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::vector<uint8_t> stage_;
  uint64_t stage_c_ = 0;
  bool staged_ = false;
};

std::string temp_name(const std::string& dir, const std::string& base) {
  std::random_device rd;
  char r[17];
  std::snprintf(r, sizeof r, "%08x%08x", rd(), rd());
  return dir + "/." + base + kConvertTempMarker + r;
}

}  // namespace

int sweep_convert_temps(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  int n = 0;
  int dfd = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 2 || name[0] != '.' || name.find(kConvertTempMarker) == std::string::npos) continue;
    int fd = ::openat(dfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st {};
    // Only a regular file nobody holds: a convert in progress keeps its flock.
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      if (::unlinkat(dfd, name.c_str(), 0) == 0) n++;
    }
    ::close(fd);
  }
  ::closedir(d);
  return n;
}

int convert_image(BlockBackend& in, const std::string& target, const ConvertOptions& o, std::string* error,
                  ConvertStats* stats) {
  ConvertStats local;
  ConvertStats& st = stats ? *stats : local;
  st = ConvertStats{};
  auto fail = [&](int r, const std::string& what) {
    if (error) *error = what;
    return r;
  };
  if (o.format != "raw" && o.format != "qcow2")
    return fail(-EINVAL, "unknown format '" + o.format + "'");
  if (o.compress && o.format != "qcow2") return fail(-EINVAL, "Compression not supported for this file format");
  if (o.format == "qcow2") {
    std::string oerr;
    if (int r = check_qcow2_options(o.cluster_bits, o.version, o.extended_l2, &oerr))
      return fail(r, "'" + target + "': " + oerr);
  }
  const std::string dir = dir_of(target), base = base_of(target);
  if (base.empty() || base == "." || base == "..") return fail(-EINVAL, "'" + target + "': not a file name");
  sweep_convert_temps(dir);

  // Never replace an image someone has open for writing or reading (a VM's disk).
  {
    int fd = ::open(target.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
      struct stat tst {};
      ::fstat(fd, &tst);
      std::string lerr;
      int r = S_ISREG(tst.st_mode) ? lock_image(fd, true, target, &lerr) : 0;
      ::close(fd);
      if (!S_ISREG(tst.st_mode)) return fail(-EINVAL, "'" + target + "' exists and is not a regular file");
      if (r) return fail(r, lerr);
    }
  }

  const uint64_t size = in.size();
  const std::string tmp = temp_name(dir, base);
  int hold = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (hold < 0) return fail(-errno, "could not write '" + target + "': " + std::strerror(errno));
  ::flock(hold, LOCK_EX);  // sweep_convert_temps leaves it alone while we live
  std::unique_ptr<BlockBackend> qout;
  auto abort_with = [&](int r, const std::string& what) {
    qout.reset();
    ::unlink(tmp.c_str());
    ::close(hold);
    return fail(r, what);
  };
  auto werr = [&](int r) { return "could not write '" + target + "': " + std::strerror(-r); };

  if (o.format == "raw") {
    if (::ftruncate(hold, off_t(size))) return abort_with(-errno, werr(-errno));
  } else {
    std::string cerr;
    if (int r = create_qcow2(tmp, size, o.cluster_bits, "", "", o.version, &cerr, o.extended_l2, Prealloc::Off,
                             o.durable))
      return abort_with(r, "could not write '" + target + "': " + cerr);
    OpenOptions oo;
    oo.format = "qcow2";
    oo.unsafe = !o.durable;
    qout = open_block(tmp, oo, &cerr);
    if (!qout) return abort_with(-EIO, "could not write '" + target + "': " + cerr);
  }
  std::unique_ptr<Compressor> zc;
  if (o.compress) {
    auto* q = dynamic_cast<Qcow2Backend*>(qout.get());
    if (!q) return abort_with(-EINVAL, "could not write '" + target + "': not a qcow2 image");
    zc = std::make_unique<Compressor>(*q, q->size(), st);  // the target's size: whole sectors, maybe past the source's end
  }

  uint64_t start = 0;
  auto* raw_in = dynamic_cast<RawBackend*>(&in);
  if (raw_in && o.format == "raw" && o.allow_copy_range) {
    // raw -> raw where the file system shares extents (btrfs, XFS): one clone
    // of the whole file, holes and all. Elsewhere (ext4: EOPNOTSUPP) the copy
    // below, which is faster there than the kernel's copy_file_range (a page
    // cache copy that then has to be written back).
    if (::ioctl(hold, FICLONE, raw_in->fd()) == 0) {
      st.reflinked = st.used_copy_range = true;
      for (uint64_t off = 0, n = 0; off < size; off += n) {
        int s = in.block_status(off, size - off, &n);
        if (s < 0 || !n) break;
        if (s == BlockBackend::kData) st.data_bytes += n, st.copy_range_bytes += n;
      }
      start = size;
    } else if (o.copy_file_range) {
      Flusher flusher(hold, o.durable);
      int r = 0;
      start = copy_ranges(in, raw_in->fd(), hold, flusher, o, &r, &st);
      if (r == -ECANCELED) return abort_with(r, "convert to '" + target + "' cancelled");
      if (r) return abort_with(r, werr(r));
    }
  }

  if (start < size) {
    // qcow2: a cluster (or, with extended L2, a subcluster: 1/32 of one) is
    // the smallest unit left unallocated; raw: 64 KiB.
    const uint64_t grain = o.format != "qcow2" ? 64 << 10
                           : o.extended_l2     ? (1ULL << o.cluster_bits) / 32
                                               : std::max<uint64_t>(64 << 10, 1ULL << o.cluster_bits);
    Pipeline pipe(in, start, o.cancel,
                  o.format == "qcow2" ? std::max<uint64_t>(kAlign, 1ULL << o.cluster_bits) : kAlign);
    std::optional<Flusher> flusher;
#ifdef VIREO_HAVE_URING
    std::unique_ptr<DirectWriter> dw;  // destroyed before pipe: waits for its writes first
    // qcow2 targets: the data of the new clusters goes the same way (the
    // backend hands it over instead of writing it, set_new_data_sink), its
    // metadata through the page cache; clusters under 4 KiB would put direct
    // and buffered writes in one page, so those stay buffered. Not durable:
    // through the page cache, as qemu-img -t unsafe (a direct write waits for
    // the disk; a buffered one only for the copy).
    std::vector<IoRange> direct;  // qcow2: this batch's new clusters, at their host offsets
    auto* qdirect = dynamic_cast<Qcow2Backend*>(qout.get());
    const bool direct_ok = o.format == "raw" || (qdirect && !zc && o.cluster_bits >= 12);
    if (direct_ok && o.direct_io && o.durable)
      dw = DirectWriter::open(tmp, hold, [&pipe](uint8_t* b) { pipe.give_back(b); });
    if (dw && qdirect)
      qdirect->set_new_data_sink([&direct](const uint8_t* p, uint64_t len, uint64_t host) {
        direct.push_back(IoRange{const_cast<uint8_t*>(p), host, len});
        return 0;
      });
    if (!dw) flusher.emplace(hold, o.durable);
#else
    flusher.emplace(hold, o.durable);
#endif
    std::vector<IoRange> w;
    for (;;) {
      Batch b;
#ifdef VIREO_HAVE_URING
      if (dw) {
        if (int r = dw->reap(false)) return abort_with(r, werr(r));
        if (!pipe.try_pop(&b)) {
          if (dw->inflight()) {
            if (int r = dw->reap(true)) return abort_with(r, werr(r));
            continue;
          }
          b = pipe.pop();
        }
      } else
#endif
        b = pipe.pop();
      if (b.last) break;
      if (b.err) {
        if (b.err == -ECANCELED) return abort_with(b.err, "convert to '" + target + "' cancelled");
        return abort_with(b.err, "could not read the source image at offset " + std::to_string(b.err_off) + ": " +
                                     std::strerror(-b.err));
      }
      for (const auto& e : b.ext) st.data_bytes += e.len;
      if (zc) {
        for (const auto& e : b.ext)
          if (int r = zc->piece(e.buf, e.off, e.len)) {
            pipe.give_back(b.buf);
            return abort_with(r, werr(r));
          }
        pipe.give_back(b.buf);
      } else {
        // The non-zero runs (grain-aligned within the image): the new image reads zeros elsewhere.
        w.clear();
        uint64_t bytes = 0;
        for (const auto& e : b.ext)
          for (uint64_t q = 0; q < e.len;) {
            uint64_t m = std::min(grain - (e.off + q) % grain, e.len - q);
            if (all_zero(e.buf + q, m)) {
              q += m;
              continue;
            }
            uint64_t end = q + m;
            while (end < e.len) {
              uint64_t mm = std::min(grain - (e.off + end) % grain, e.len - end);
              if (all_zero(e.buf + end, mm)) break;
              end += mm;
            }
            w.push_back(IoRange{e.buf + q, e.off + q, end - q});
            bytes += end - q;
            q = end;
          }
        st.written_bytes += bytes;
        int r = 0;
#ifdef VIREO_HAVE_URING
        if (dw) {
          if (qout) {  // metadata here, the new clusters' data to dw
            direct.clear();
            if ((r = qout->pwrite_ranges(w.data(), w.size()))) {
              pipe.give_back(b.buf);
              return abort_with(r, werr(r));
            }
          }
          r = dw->submit(qout ? direct : w, b.buf);  // gives the buffer back once written
          if (r) return abort_with(r, werr(r));
        } else
#endif
        {
          if (qout) r = qout->pwrite_ranges(w.data(), w.size());
          else
            for (const auto& x : w)
              if ((r = pwrite_full(hold, x.buf, x.len, x.off))) break;
          pipe.give_back(b.buf);
          if (r) return abort_with(r, werr(r));
          flusher->wrote(bytes);
        }
      }
      if (o.progress) o.progress(b.end, size);
    }
#ifdef VIREO_HAVE_URING
    if (dw) {
      if (int r = dw->drain()) return abort_with(r, werr(r));
      st.direct_bytes = dw->direct_bytes();
      if (qdirect) qdirect->set_new_data_sink(nullptr);  // `direct` goes with this scope
    }
#endif
  }

  if (zc) {
    if (int r = zc->finish()) return abort_with(r, werr(r));
    zc.reset();
  }
  // Durable, then visible under its name (not durable: the qcow2 metadata
  // written, no syncs).
  int r = qout ? qout->flush() : (o.durable && ::fdatasync(hold) ? -errno : 0);
  if (r) return abort_with(r, werr(r));
  qout.reset();  // closes it (and flushes again: nothing left to write)
  if (::rename(tmp.c_str(), target.c_str())) return abort_with(-errno, werr(-errno));
  ::close(hold);
  if (o.durable && (r = fsync_dir(dir))) return fail(r, werr(r));
  if (o.progress) o.progress(size, size);
  return 0;
}

}  // namespace vireo::block
