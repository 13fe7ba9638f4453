#include "block/convert.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "block/image.h"
#include "block/lock.h"
#include "block/qcow2.h"
#include "block/raw.h"

namespace vireo::block {

namespace {

constexpr uint64_t kBuf = 4 << 20;       // one read: 4 MiB, aligned
constexpr int kBuffers = 4;              // in flight between reader and writer
constexpr uint64_t kCopyRange = 64 << 20;  // one copy_file_range call (progress, cancel)

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

// Where the data goes: the temporary's fd (raw) or a qcow2 backend on it.
// Every kKick bytes written, writeback of the file starts (sync_file_range,
// asynchronous), so the one fdatasync at the end finds little left to do.
constexpr uint64_t kKick = 32 << 20;
struct Sink {
  int fd = -1;    // the temporary (also under a qcow2 backend: same inode)
  BlockBackend* out = nullptr;
  uint64_t since_kick = 0;
  int write(const uint8_t* p, uint64_t n, uint64_t off) {
    int r = out ? out->pwrite(p, n, off) : pwrite_full(fd, p, n, off);
    if (!r) wrote(n);
    return r;
  }
  void wrote(uint64_t n) {
    if ((since_kick += n) >= kKick) {
      ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
      since_kick = 0;
    }
  }
};

struct Piece {
  uint64_t off = 0, len = 0;
  uint8_t* buf = nullptr;  // null: zeros (nothing to write)
  int err = 0;             // the reader failed here
  bool end = false;
};

// Reader thread: walks the allocation map from `start`, reads data pieces
// into free buffers. The caller's thread writes them.
class Pipeline {
public:
  Pipeline(BlockBackend& in, uint64_t start, const std::atomic<bool>* cancel) : in_(in), start_(start), cancel_(cancel) {
    for (int i = 0; i < kBuffers; i++) {
      void* p = std::aligned_alloc(4096, kBuf);
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
  Piece pop() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [&] { return !ready_.empty(); });
    Piece p = ready_.front();
    ready_.pop_front();
    return p;
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
  void push(const Piece& p) {
    {
      std::lock_guard<std::mutex> g(mu_);
      ready_.push_back(p);
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
  void run() {
    const uint64_t size = in_.size();
    uint64_t off = start_;
    Piece fail;
    if (all_.size() < size_t(kBuffers)) {
      fail.err = -ENOMEM;
      push(fail);
      return;
    }
    while (off < size) {
      {
        std::lock_guard<std::mutex> g(mu_);
        if (stop_) return;  // the writer gave up
      }
      if (cancel_ && cancel_->load()) {
        fail.off = off, fail.err = -ECANCELED;
        push(fail);
        return;
      }
      uint64_t n = 0;
      int st = in_.block_status(off, size - off, &n);
      if (st < 0 || n == 0) {
        fail.off = off, fail.err = st < 0 ? st : -EIO;
        push(fail);
        return;
      }
      if (st == BlockBackend::kZero) {
        Piece z;
        z.off = off, z.len = n;
        push(z);
        off += n;
        continue;
      }
      for (uint64_t end = off + n; off < end;) {
        uint64_t m = std::min(end - off, kBuf - (off % kBuf));  // aligned pieces
        uint8_t* b = take();
        if (!b) return;  // the writer stopped
        if (int r = in_.pread(b, m, off)) {
          give_back(b);
          fail.off = off, fail.err = r;
          push(fail);
          return;
        }
        Piece d;
        d.off = off, d.len = m, d.buf = b;
        push(d);
        off += m;
      }
    }
    Piece e;
    e.end = true;
    push(e);
  }

  BlockBackend& in_;
  uint64_t start_;
  const std::atomic<bool>* cancel_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Piece> ready_;
  std::vector<uint8_t*> free_, all_;
  bool stop_ = false;
  std::thread th_;
};

// raw -> raw in the kernel. Returns the offset it got to (size when done) and
// sets *err on a real failure; stops early, without an error, where the
// kernel can't copy between these files (EXDEV, EOPNOTSUPP, ENOSYS, EINVAL).
uint64_t copy_ranges(BlockBackend& in, int in_fd, Sink& sink, const ConvertOptions& o, int* err,
                     ConvertStats* st) {
  const int out_fd = sink.fd;
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
        sink.wrote(uint64_t(r));
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

  Sink sink;
  if (o.format == "raw") {
    if (::ftruncate(hold, off_t(size))) return abort_with(-errno, werr(-errno));
    sink.fd = hold;
  } else {
    std::string cerr;
    if (int r = create_qcow2(tmp, size, o.cluster_bits, "", "", o.version, &cerr, o.extended_l2))
      return abort_with(r, "could not write '" + target + "': " + cerr);
    OpenOptions oo;
    oo.format = "qcow2";
    qout = open_block(tmp, oo, &cerr);
    if (!qout) return abort_with(-EIO, "could not write '" + target + "': " + cerr);
    sink.out = qout.get();
    sink.fd = hold;
  }
  std::unique_ptr<Compressor> zc;
  if (o.compress) {
    auto* q = dynamic_cast<Qcow2Backend*>(qout.get());
    if (!q) return abort_with(-EINVAL, "could not write '" + target + "': not a qcow2 image");
    zc = std::make_unique<Compressor>(*q, size, st);
  }

  uint64_t start = 0;
  auto* raw_in = dynamic_cast<RawBackend*>(&in);
  if (raw_in && o.format == "raw" && o.allow_copy_range) {
    int r = 0;
    start = copy_ranges(in, raw_in->fd(), sink, o, &r, &st);
    if (r == -ECANCELED) return abort_with(r, "convert to '" + target + "' cancelled");
    if (r) return abort_with(r, werr(r));
  }

  if (start < size) {
    // qcow2: a cluster (or, with extended L2, a subcluster: 1/32 of one) is
    // the smallest unit left unallocated; raw: 64 KiB.
    const uint64_t grain = o.format != "qcow2" ? 64 << 10
                           : o.extended_l2     ? (1ULL << o.cluster_bits) / 32
                                               : std::max<uint64_t>(64 << 10, 1ULL << o.cluster_bits);
    Pipeline pipe(in, start, o.cancel);
    for (;;) {
      Piece p = pipe.pop();
      if (p.end) break;
      if (p.err) {
        if (p.err == -ECANCELED) return abort_with(p.err, "convert to '" + target + "' cancelled");
        return abort_with(p.err, "could not read the source image at offset " + std::to_string(p.off) + ": " +
                                     std::strerror(-p.err));
      }
      if (p.buf && zc) {
        st.data_bytes += p.len;
        int r = zc->piece(p.buf, p.off, p.len);
        pipe.give_back(p.buf);
        if (r) return abort_with(r, werr(r));
      } else if (p.buf) {
        st.data_bytes += p.len;
        // Write the non-zero runs (grain-aligned within the image): the new image reads zeros elsewhere.
        for (uint64_t q = 0; q < p.len;) {
          uint64_t m = std::min(grain - (p.off + q) % grain, p.len - q);
          if (all_zero(p.buf + q, m)) {
            q += m;
            continue;
          }
          uint64_t e = q + m;
          while (e < p.len) {
            uint64_t mm = std::min(grain - (p.off + e) % grain, p.len - e);
            if (all_zero(p.buf + e, mm)) break;
            e += mm;
          }
          if (int r = sink.write(p.buf + q, e - q, p.off + q)) {
            pipe.give_back(p.buf);
            return abort_with(r, werr(r));
          }
          st.written_bytes += e - q;
          q = e;
        }
        pipe.give_back(p.buf);
      }
      if (o.progress) o.progress(p.off + p.len, size);
    }
  }

  if (zc) {
    if (int r = zc->finish()) return abort_with(r, werr(r));
    zc.reset();
  }
  // Durable, then visible under its name.
  int r = qout ? qout->flush() : (::fdatasync(hold) ? -errno : 0);
  if (r) return abort_with(r, werr(r));
  qout.reset();  // closes it (and flushes again: nothing left to write)
  if (::rename(tmp.c_str(), target.c_str())) return abort_with(-errno, werr(-errno));
  ::close(hold);
  if ((r = fsync_dir(dir))) return fail(r, werr(r));
  if (o.progress) o.progress(size, size);
  return 0;
}

}  // namespace vireo::block
