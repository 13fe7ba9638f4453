// qcow2 reader/writer. Layout facts come from the public qcow2 specification
// (docs/interop/qcow2.txt); the code is Vireo's own.
#include "block/qcow2.h"

#include "block/lock.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <set>
#include <tuple>

#include "block/raw.h"
#ifdef VIREO_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef VIREO_HAVE_ZSTD
#include <zstd.h>
#endif

namespace vireo::block {

// Defined in open.cc: opens a backing file with loop detection.
std::unique_ptr<BlockBackend> open_chain(const std::string& path, const OpenOptions& o,
                                         std::vector<std::string>* chain, std::string* error);

namespace {
constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint64_t kOffMask = 0x00fffffffffffe00ULL;  // bits 9-55
constexpr uint64_t kCopied = 1ULL << 63;
constexpr uint64_t kCompressed = 1ULL << 62;
constexpr uint64_t kZeroFlag = 1ULL;
constexpr uint64_t kIncDirty = 1, kIncCorrupt = 2, kIncDataFile = 4, kIncCompression = 8,
                   kIncExtL2 = 16;
constexpr uint64_t kCompatLazy = 1;
// Extended L2 bitmap (the entry's second word): bit s set = subcluster s is
// allocated (bits 0-31), bit 32 + s set = it reads as zeros.
constexpr uint64_t kSubAlloc = 0xffffffffULL;
// Subclusters [a, b) as allocation bits (a <= b <= 32).
uint64_t sc_mask(uint64_t a, uint64_t b) { return ((1ULL << b) - 1) & ~((1ULL << a) - 1); }
constexpr uint32_t kExtEnd = 0, kExtBackingFmt = 0xe2792aca, kExtFeatures = 0x6803f857;
constexpr uint64_t kMaxL1Bytes = 32ULL << 20;
constexpr uint64_t kMaxRefTableBytes = 8ULL << 20;
// Cache bounds in bytes (a count of tables would allow 4 GiB of L2 tables with
// 2 MiB clusters). Trimmed between requests, so one request may go one table over.
constexpr uint64_t kMaxL2CacheBytes = 32ULL << 20, kMaxRbCacheBytes = 16ULL << 20;

uint64_t ld64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}
uint32_t ld32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
uint16_t ld16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
void st64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = uint8_t(v); v >>= 8; }
}
void st32(uint8_t* p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
void st16(uint8_t* p, uint16_t v) { p[0] = v >> 8; p[1] = uint8_t(v); }
uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}
std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "%#" PRIx64, v);
  return b;
}
}  // namespace

// ---------------------------------------------------------------- refcounts

static uint64_t rb_get(const std::vector<uint8_t>& raw, uint32_t bits, uint64_t i) {
  switch (bits) {
    case 64: return ld64(&raw[i * 8]);
    case 32: return ld32(&raw[i * 4]);
    case 16: return ld16(&raw[i * 2]);
    case 8: return raw[i];
    default: {  // 1, 2, 4 bits: least significant bits first
      uint64_t bit = i * bits;
      return (raw[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
  }
}
static void rb_set(std::vector<uint8_t>& raw, uint32_t bits, uint64_t i, uint64_t v) {
  switch (bits) {
    case 64: st64(&raw[i * 8], v); break;
    case 32: st32(&raw[i * 4], uint32_t(v)); break;
    case 16: st16(&raw[i * 2], uint16_t(v)); break;
    case 8: raw[i] = uint8_t(v); break;
    default: {
      uint64_t bit = i * bits;
      uint8_t mask = uint8_t(((1u << bits) - 1) << (bit % 8));
      raw[bit / 8] = uint8_t((raw[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
    }
  }
}

int Qcow2Backend::write_at(const void* buf, uint64_t len, uint64_t off) {
  int r = pwrite_full(fd_, buf, len, off);
  if (!r && off + len > file_end_) file_end_ = off + len;
  return r;
}

int Qcow2Backend::get_rb(uint64_t off, RefBlock** b) {
  auto it = rb_cache_.find(off);
  if (it != rb_cache_.end()) {
    *b = &it->second;
    return 0;
  }
  if ((off & (cs_ - 1)) || off + cs_ > file_end_) return -EIO;
  RefBlock nb;
  nb.raw.resize(cs_);
  if (int r = pread_full(fd_, nb.raw.data(), cs_, off)) return r;
  *b = &(rb_cache_[off] = std::move(nb));
  return 0;
}

int Qcow2Backend::get_refcount(uint64_t cidx, uint64_t* rc) {
  uint64_t ti = cidx / rb_entries_;
  if (ti >= rt_.size() || !rt_[ti]) {
    *rc = 0;
    return 0;
  }
  RefBlock* b;
  if (int r = get_rb(rt_[ti], &b)) return r;
  *rc = rb_get(b->raw, refbits_, cidx % rb_entries_);
  return 0;
}

int Qcow2Backend::set_refcount(uint64_t cidx, uint64_t rc) {
  uint64_t ti = cidx / rb_entries_;
  if (ti >= rt_.size() || !rt_[ti]) return -EIO;
  if (refbits_ < 64 && rc >> refbits_) return -ERANGE;
  RefBlock* b;
  if (int r = get_rb(rt_[ti], &b)) return r;
  rb_set(b->raw, refbits_, cidx % rb_entries_, rc);
  b->dirty = true;
  return 0;
}

// Finds `n` contiguous free clusters, creating refcount blocks (placed inside
// the range they describe) and growing the refcount table as needed.
int Qcow2Backend::alloc_clusters(uint64_t n, uint64_t* off) {
  for (;;) {
    uint64_t start = std::max<uint64_t>(free_hint_, 1), run = 0;
    for (uint64_t i = start; run < n; i++) {
      uint64_t rc;
      if (int r = get_refcount(i, &rc)) return r;
      if (rc == 0) {
        if (run == 0) start = i;
        run++;
      } else {
        run = 0;
      }
    }
    bool again = false;
    for (uint64_t c = start; c < start + n; c++) {
      uint64_t ti = c / rb_entries_;
      if (ti >= rt_.size()) {
        if (int r = grow_refcount_table(ti)) return r;
        again = true;
        break;
      }
      if (!rt_[ti]) {
        rt_[ti] = c * cs_;
        RefBlock b;
        b.raw.assign(cs_, 0);
        b.dirty = true;
        rb_cache_[c * cs_] = std::move(b);
        meta_add(c * cs_, cs_, kMetaRB);
        if (int r = set_refcount(c, 1)) return r;
        rt_dirty_ = true;
        again = true;
        break;
      }
    }
    if (again) continue;
    for (uint64_t c = start; c < start + n; c++)
      if (int r = set_refcount(c, 1)) return r;
    if (n == 1) free_hint_ = start + 1;
    *off = start * cs_;
    return 0;
  }
}

int Qcow2Backend::grow_refcount_table(uint64_t min_index, uint64_t at) {
  const uint64_t E = rb_entries_;
  uint64_t start = std::max<uint64_t>({rt_.size() * E, div_up(file_end_, cs_), at});
  uint64_t entries = std::max<uint64_t>(rt_.size() * 2, min_index + 1);
  uint64_t rt_cl = 0, k = 0;
  for (;;) {
    rt_cl = div_up(entries * 8, cs_);
    uint64_t k2 = 0;
    for (;;) {
      uint64_t first = start / E, last = (start + rt_cl + k - 1) / E;
      k2 = 0;
      for (uint64_t ti = first; ti <= last; ti++)
        if (ti >= rt_.size() || !rt_[ti]) k2++;
      if (k2 == k) break;
      k = k2;
    }
    uint64_t last = (start + rt_cl + k - 1) / E;
    if (last < entries && min_index < entries) break;
    entries = std::max(last, min_index) + 1;
  }
  if (rt_cl * cs_ > kMaxRefTableBytes) return -EFBIG;
  // Every dirty block goes out before a table that may reference it.
  std::vector<uint64_t> nrt(rt_cl * cs_ / 8, 0);
  std::copy(rt_.begin(), rt_.end(), nrt.begin());
  uint64_t b = start + rt_cl;
  for (uint64_t ti = start / E; ti <= (start + rt_cl + k - 1) / E; ti++) {
    if (nrt[ti]) continue;
    nrt[ti] = b * cs_;
    RefBlock nb;
    nb.raw.assign(cs_, 0);
    nb.dirty = true;
    rb_cache_[b * cs_] = std::move(nb);
    b++;
  }
  uint64_t old_off = rt_offset_, old_cl = rt_clusters_;
  rt_ = std::move(nrt);
  for (uint64_t c = start; c < start + rt_cl + k; c++)
    if (int r = set_refcount(c, 1)) return r;
  for (auto& [o, blk] : rb_cache_)
    if (blk.dirty) {
      if (int r = write_at(blk.raw.data(), cs_, o)) return r;
      blk.dirty = false;
    }
  if (int r = install_refcount_table(start, rt_cl)) return r;
  free_later(old_off, old_cl * cs_);
  rt_dirty_ = false;
  return 0;
}

int Qcow2Backend::install_refcount_table(uint64_t start, uint64_t rt_cl) {
  std::vector<uint8_t> buf(rt_cl * cs_);
  for (size_t i = 0; i < rt_.size(); i++) st64(&buf[i * 8], rt_[i]);
  if (int r = write_at(buf.data(), buf.size(), start * cs_)) return r;
  if (sync_fd()) return -errno;
  rt_offset_ = start * cs_;
  rt_clusters_ = uint32_t(rt_cl);
  meta_changed();
  uint8_t h[12];
  st64(h, rt_offset_);
  st32(h + 8, rt_clusters_);
  if (int r = write_at(h, 12, 48)) return r;
  if (sync_fd()) return -errno;
  return 0;
}

void Qcow2Backend::free_later(uint64_t off, uint64_t len, uint64_t times) {
  if (!len) return;
  for (uint64_t c = off / cs_; c <= (off + len - 1) / cs_; c++) pending_free_.push_back({c, times});
}

void Qcow2Backend::free_entry(uint64_t e) {
  if (e & kCompressed) {
    uint32_t shift = 62 - (cluster_bits_ - 8);
    uint64_t coff = e & ((1ULL << shift) - 1);
    uint64_t nb = ((e >> shift) & ((1ULL << (cluster_bits_ - 8)) - 1)) + 1;
    free_later(coff & ~511ULL, nb * 512);
  } else if (e & kOffMask) {
    free_later(e & kOffMask, cs_);
  }
}

int Qcow2Backend::write_header_core() {
  uint8_t h[48];
  st64(h, size_);
  st32(h + 8, 0);  // crypt_method
  st32(h + 12, uint32_t(l1_.size()));
  st64(h + 16, l1_offset_);
  st64(h + 24, rt_offset_);
  st32(h + 32, rt_clusters_);
  st32(h + 36, uint32_t(snaps_.size()));
  st64(h + 40, snapshots_offset_);
  return write_at(h, 48, 24);
}

int Qcow2Backend::flush_metadata() {
  bool meta = rt_dirty_ || l1_dirty_ || header_dirty_ || !pending_free_.empty();
  for (auto& [o, b] : rb_cache_) meta = meta || b.dirty;
  for (auto& [o, t] : l2_cache_) meta = meta || t.dirty;
  if (!meta) return sync_fd() ? -errno : 0;
  // 1. data, 2. refcount increments, 3. L2, 4. L1 + header, 5. decrements.
  if (sync_fd()) return -errno;
  for (auto& [o, b] : rb_cache_)
    if (b.dirty) {
      if (int r = write_at(b.raw.data(), cs_, o)) return r;
      b.dirty = false;
    }
  if (rt_dirty_) {
    std::vector<uint8_t> buf(uint64_t(rt_clusters_) * cs_);
    for (size_t i = 0; i < rt_.size(); i++) st64(&buf[i * 8], rt_[i]);
    if (int r = write_at(buf.data(), buf.size(), rt_offset_)) return r;
    rt_dirty_ = false;
  }
  if (sync_fd()) return -errno;
  std::vector<uint8_t> buf(cs_);
  bool any_l2 = false;
  for (auto& [o, t] : l2_cache_)
    if (t.dirty) {
      for (size_t i = 0; i < t.e.size(); i++) st64(&buf[i * 8], t.e[i]);
      if (int r = write_at(buf.data(), cs_, o)) return r;
      t.dirty = false;
      any_l2 = true;
    }
  if (any_l2 && sync_fd()) return -errno;
  if (l1_dirty_ || header_dirty_) {
    if (l1_dirty_ && !l1_.empty()) {
      std::vector<uint8_t> l1b(l1_.size() * 8);
      for (size_t i = 0; i < l1_.size(); i++) st64(&l1b[i * 8], l1_[i]);
      if (int r = write_at(l1b.data(), l1b.size(), l1_offset_)) return r;
      if (header_dirty_ && sync_fd()) return -errno;
    }
    if (header_dirty_)
      if (int r = write_header_core()) return r;
    l1_dirty_ = header_dirty_ = false;
    if (sync_fd()) return -errno;
  }
  if (!pending_free_.empty()) {
    // Clusters may become free (and be reused, or punched): no data I/O of
    // another request may still be aimed at them.
    DataExclusive x(this);
    std::vector<uint64_t> freed;
    for (auto [c, times] : pending_free_) {
      uint64_t rc;
      if (int r = get_refcount(c, &rc)) return r;
      if (rc == 0) continue;  // already free: never go negative
      uint64_t nrc = rc > times ? rc - times : 0;
      if (int r = set_refcount(c, nrc)) return r;
      if (nrc == 0) freed.push_back(c);
    }
    pending_free_.clear();
    for (auto& [o, b] : rb_cache_)
      if (b.dirty) {
        if (int r = write_at(b.raw.data(), cs_, o)) return r;
        b.dirty = false;
      }
    if (sync_fd()) return -errno;
    // One hole punch per run of freed clusters (each call can cost a journal
    // commit: per cluster, shrinking 20 MiB of 4 KiB clusters took 7 s).
    std::sort(freed.begin(), freed.end());
    for (size_t i = 0; i < freed.size();) {
      size_t j = i + 1;
      while (j < freed.size() && freed[j] == freed[j - 1] + 1) j++;
      for (size_t k = i; k < j; k++) l2_cache_.erase(freed[k] * cs_);
      free_hint_ = std::min(free_hint_, freed[i]);
      ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, freed[i] * cs_, (freed[j - 1] - freed[i] + 1) * cs_);
      i = j;
    }
    if (!freed.empty()) zc_host_ = ~0ULL, meta_changed();
  }
  return 0;
}

uint64_t Qcow2Backend::cache_bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t n = 0;
  for (auto& [o, t] : l2_cache_) n += t.e.capacity() * 8;
  for (auto& [o, b] : rb_cache_) n += b.raw.capacity();
  return n;
}

bool Qcow2Backend::found_corrupt() const {
  std::lock_guard<std::mutex> g(mu_);
  return corrupt_;
}

void Qcow2Backend::trim_caches() {
  if (l2_cache_.size() * cs_ <= kMaxL2CacheBytes && rb_cache_.size() * cs_ <= kMaxRbCacheBytes) return;
  if (!ro_ && flush_metadata()) return;
  for (auto it = l2_cache_.begin(); it != l2_cache_.end();)
    it = it->second.dirty ? std::next(it) : l2_cache_.erase(it);
  for (auto it = rb_cache_.begin(); it != rb_cache_.end();)
    it = it->second.dirty ? std::next(it) : rb_cache_.erase(it);
}

// ---------------------------------------------------------------- overlap checks

// Every cluster holding metadata, sorted; rebuilt only after metadata moved
// (meta_changed()), so the per-request check is a binary search.
int Qcow2Backend::rebuild_meta() {
  if (snap_l2_stale_) {
    snap_l2_.clear();
    for (auto& s : snaps_) {
      std::vector<uint64_t> sl1;
      if (int r = read_l1(s.l1_offset, s.l1_size, &sl1)) return r;
      for (uint64_t e : sl1)
        if (e & kOffMask) snap_l2_.push_back(e & kOffMask);
      std::sort(snap_l2_.begin(), snap_l2_.end());
      snap_l2_.erase(std::unique(snap_l2_.begin(), snap_l2_.end()), snap_l2_.end());
    }
    snap_l2_stale_ = false;
  }
  std::vector<MetaRange> m;
  auto add = [&](uint64_t off, uint64_t len, MetaKind k) {
    if (!len) return;
    uint64_t a = off & ~(cs_ - 1), b = div_up(off + len, cs_) * cs_;
    m.push_back({a, b, k});
  };
  add(0, cs_, kMetaHeader);
  add(l1_offset_, l1_.size() * 8, kMetaL1);
  for (uint64_t e : l1_)
    if (e & kOffMask) add(e & kOffMask, cs_, kMetaL2);
  for (uint64_t o : snap_l2_) add(o, cs_, kMetaL2);
  add(rt_offset_, uint64_t(rt_clusters_) * cs_, kMetaRT);
  for (uint64_t b : rt_)
    if (b) add(b, cs_, kMetaRB);
  if (!snaps_.empty()) {
    uint64_t tot = 0;
    for (auto& s : snaps_) tot += div_up(40 + s.extra.size() + s.id.size() + s.name.size(), 8) * 8;
    add(snapshots_offset_, tot, kMetaSnapTable);
    for (auto& s : snaps_) add(s.l1_offset, uint64_t(s.l1_size) * 8, kMetaSnapL1);
  }
  // Sorted by start; identical ranges (an L2 table named by several L1
  // entries, active or in snapshots) kept once.
  auto key = [](const MetaRange& r) { return std::make_tuple(r.start, r.end, int(r.kind)); };
  std::sort(m.begin(), m.end(), [&](const MetaRange& a, const MetaRange& b) { return key(a) < key(b); });
  m.erase(std::unique(m.begin(), m.end(), [&](const MetaRange& a, const MetaRange& b) { return key(a) == key(b); }),
          m.end());
  meta_ = std::move(m);
  meta_maxend_.resize(meta_.size());
  for (size_t i = 0; i < meta_.size(); i++)
    meta_maxend_[i] = std::max(meta_[i].end, i ? meta_maxend_[i - 1] : 0);
  meta_stale_ = false;
  return 0;
}

// One new metadata cluster range, kept sorted without a rebuild. New tables
// usually land at the end of the file, so this is an append.
void Qcow2Backend::meta_add(uint64_t off, uint64_t len, MetaKind kind) {
  if (meta_stale_) return;  // rebuilt before the next lookup anyway
  MetaRange r{off & ~(cs_ - 1), div_up(off + len, cs_) * cs_, kind};
  auto key = [](const MetaRange& a) { return std::make_tuple(a.start, a.end, int(a.kind)); };
  auto it = std::lower_bound(meta_.begin(), meta_.end(), r, [&](const MetaRange& a, const MetaRange& b) { return key(a) < key(b); });
  if (it != meta_.end() && key(*it) == key(r)) return;
  size_t i = size_t(it - meta_.begin());
  meta_.insert(it, r);
  meta_maxend_.insert(meta_maxend_.begin() + i, 0);
  for (size_t j = i; j < meta_.size(); j++) {
    uint64_t m = std::max(meta_[j].end, j ? meta_maxend_[j - 1] : 0);
    if (j > i && meta_maxend_[j] == m) break;  // the rest is unchanged
    meta_maxend_[j] = m;
  }
}

int Qcow2Backend::meta_overlap(uint64_t off, uint64_t len, bool ignore_l2) {
  if (meta_stale_ || snap_l2_stale_)
    if (rebuild_meta()) return -2;
  uint64_t end = off + len;
  // Ranges before the first one starting at or after `end` all start before
  // it; one of them overlaps iff the largest end among them is past `off`.
  size_t i = std::lower_bound(meta_.begin(), meta_.end(), end,
                              [](const MetaRange& r, uint64_t v) { return r.start < v; }) - meta_.begin();
  while (i > 0 && meta_maxend_[i - 1] > off) {
    i--;
    if (meta_[i].end > off && !(ignore_l2 && meta_[i].kind == kMetaL2)) return meta_[i].kind;
  }
  return -1;
}

static const char* meta_name(int k) {
  static const char* n[] = {"the image header", "the active L1 table", "an L2 table", "the refcount table",
                            "a refcount block", "the snapshot table", "a snapshot L1 table"};
  return k >= 0 && k < 7 ? n[k] : "metadata";
}

// Marks the image corrupt (v3: the incompatible "corrupt" bit, as QEMU does)
// and refuses every further write. Always returns -EIO.
int Qcow2Backend::mark_corrupt(const std::string& why) {
  if (!corrupt_) {
    corrupt_ = true;
    corrupt_why_ = why;
    std::fprintf(stderr, "vireo: qcow2 '%s' is corrupt: %s; further writes refused\n", path_.c_str(), why.c_str());
    if (!ro_ && version_ >= 3) {
      incompat_ |= kIncCorrupt;
      uint8_t f[8];
      st64(f, incompat_);
      if (!pwrite_full(fd_, f, 8, 72)) sync_fd();
    }
  }
  return -EIO;
}

// An L2 table reached from an L1 entry must not sit on other metadata.
int Qcow2Backend::check_l2_host(uint64_t l2off) {
  if ((l2off & (cs_ - 1)) || l2off + cs_ > file_end_)
    return mark_corrupt("L2 table at " + hex(l2off) + " is misaligned or beyond the end of the file");
  int k = meta_overlap(l2off, cs_, true);
  if (k == -2) return -EIO;
  if (k >= 0) return mark_corrupt("L2 table at " + hex(l2off) + " overlaps " + meta_name(k));
  return 0;
}

int Qcow2Backend::check_data_host(uint64_t host, uint64_t len, bool write, const char* what) {
  if (write) {
    if (host & (cs_ - 1)) return mark_corrupt(std::string(what) + " at " + hex(host) + " is not cluster aligned");
    if (host >= file_end_) return mark_corrupt(std::string(what) + " at " + hex(host) + " lies beyond the end of the file");
  }
  int k = meta_overlap(host, len);
  if (k == -2) return -EIO;
  if (k >= 0) return mark_corrupt(std::string(what) + " at " + hex(host) + " overlaps " + meta_name(k));
  return 0;
}

// ---------------------------------------------------------------- open

std::unique_ptr<Qcow2Backend> Qcow2Backend::open(const std::string& path,
                                                 const Qcow2OpenFlags& flags,
                                                 std::vector<std::string>* chain,
                                                 std::string* error) {
  std::unique_ptr<Qcow2Backend> q(new Qcow2Backend());
  q->path_ = path;
  q->ro_ = flags.read_only;
  q->unsafe_ = flags.unsafe && !flags.read_only;
  q->fd_ = ::open(path.c_str(), (q->ro_ ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (q->fd_ < 0) {
    if (error) *error = "could not open '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  if (flags.force_share && !q->ro_) {
    if (error) *error = "'" + path + "': force-share (-U) is only for read-only opens";
    return nullptr;
  }
  if (!flags.force_share && lock_image(q->fd_, !q->ro_, path, error)) {
    ::close(q->fd_);
    q->fd_ = -1;
    return nullptr;
  }
  std::string err;
  if (q->parse(&err, flags)) {
    if (error) *error = "'" + path + "': " + err;
    return nullptr;
  }
  if (!q->backing_file_.empty() && !flags.no_backing) {
    // The backing file's format is never guessed from its contents: a raw
    // image whose guest wrote a qcow2 header would otherwise name any host
    // file as its own backing file (the CVE-2008-2004 pattern).
    if (q->backing_format_ != "raw" && q->backing_format_ != "qcow2") {
      if (error)
        *error = "'" + path + "': the format of its backing file '" + q->backing_file_ + "' is " +
                 (q->backing_format_.empty() ? std::string("not stated in the image")
                                             : "'" + q->backing_format_ + "', which is not supported") +
                 "; it is not opened without one. If you trust that file, state its format with "
                 "'vireo-img rebase -u -b " + q->backing_file_ + " -F raw|qcow2 " + path +
                 "' (or 'qemu-img rebase -u -b ... -F FMT')";
      return nullptr;
    }
    std::string bpath = q->backing_file_;
    if (bpath[0] != '/') {
      auto slash = path.rfind('/');
      if (slash != std::string::npos) bpath = path.substr(0, slash + 1) + bpath;
    }
    OpenOptions o;
    o.format = q->backing_format_;
    o.read_only = true;
    o.force_share = flags.force_share;
    std::string berr;
    q->backing_ = open_chain(bpath, o, chain, &berr);
    if (!q->backing_) {
      if (error) *error = "'" + path + "': could not open backing file '" + q->backing_file_ + "': " + berr;
      return nullptr;
    }
  }
  return q;
}

int Qcow2Backend::parse(std::string* error, const Qcow2OpenFlags& flags) {
  struct stat st;
  if (::fstat(fd_, &st)) return *error = std::strerror(errno), -errno;
  file_end_ = uint64_t(st.st_size);
  if (file_end_ < 72) {
    *error = "image is truncated (" + std::to_string(file_end_) + " bytes; a qcow2 header needs 72)";
    return -EINVAL;
  }
  uint8_t h0[112] = {};
  if (int r = pread_full(fd_, h0, std::min<uint64_t>(112, file_end_), 0)) return *error = std::strerror(-r), r;
  if (ld32(h0) != kMagic) return *error = "not a qcow2 image (bad magic)", -EINVAL;
  version_ = ld32(h0 + 4);
  if (version_ != 2 && version_ != 3)
    return *error = "unsupported qcow2 version " + std::to_string(version_), -ENOTSUP;
  uint64_t backing_off = ld64(h0 + 8);
  uint32_t backing_len = ld32(h0 + 16);
  cluster_bits_ = ld32(h0 + 20);
  if (cluster_bits_ < 9 || cluster_bits_ > 21)
    return *error = "invalid cluster size (cluster_bits " + std::to_string(cluster_bits_) + ")", -EINVAL;
  cs_ = 1ULL << cluster_bits_;
  size_ = ld64(h0 + 24);
  if (ld32(h0 + 32) != 0) return *error = "encrypted qcow2 images are not supported", -ENOTSUP;
  uint32_t l1_size = ld32(h0 + 36);
  l1_offset_ = ld64(h0 + 40);
  rt_offset_ = ld64(h0 + 48);
  rt_clusters_ = ld32(h0 + 56);
  uint32_t nb_snapshots = ld32(h0 + 60);
  snapshots_offset_ = ld64(h0 + 64);
  header_length_ = 72;
  refcount_order_ = 4;
  if (version_ == 3) {
    if (file_end_ < 104) return *error = "image is truncated (header incomplete)", -EINVAL;
    incompat_ = ld64(h0 + 72);
    compat_ = ld64(h0 + 80);
    autoclear_ = ld64(h0 + 88);
    refcount_order_ = ld32(h0 + 96);
    header_length_ = ld32(h0 + 100);
    if (header_length_ < 104 || header_length_ > cs_ || header_length_ > file_end_)
      return *error = "invalid header length " + std::to_string(header_length_), -EINVAL;
    if (header_length_ > 104) compression_type_ = h0[104];
  }
  if (refcount_order_ > 6)
    return *error = "invalid refcount order " + std::to_string(refcount_order_), -EINVAL;
  refbits_ = 1u << refcount_order_;
  rb_entries_ = cs_ * 8 / refbits_;

  // Header extensions, between the header and the backing file name.
  uint64_t ext_end = std::min<uint64_t>(cs_, file_end_);
  if (backing_off && backing_off < ext_end) ext_end = backing_off;
  std::vector<uint8_t> hc(std::min<uint64_t>(cs_, file_end_));
  if (int r = pread_full(fd_, hc.data(), hc.size(), 0)) return *error = std::strerror(-r), r;
  std::vector<std::pair<uint32_t, std::string>> feature_names;  // (type<<8|bit, name)
  for (uint64_t pos = header_length_; pos + 8 <= ext_end;) {
    uint32_t type = ld32(&hc[pos]), len = ld32(&hc[pos + 4]);
    if (type == kExtEnd) break;
    if (pos + 8 + len > ext_end) return *error = "header extension " + hex(type) + " overflows the header cluster", -EINVAL;
    const uint8_t* d = &hc[pos + 8];
    if (type == kExtBackingFmt) {
      backing_format_.assign(reinterpret_cast<const char*>(d), len);
      backing_format_ = backing_format_.c_str();  // stop at a NUL
    } else if (type == kExtFeatures) {
      for (uint32_t i = 0; i + 48 <= len; i += 48) {
        std::string nm(reinterpret_cast<const char*>(d + i + 2), 46);
        feature_names.push_back({uint32_t(d[i]) << 8 | d[i + 1], nm.c_str()});
      }
    }
    pos += 8 + div_up(len, 8) * 8;
  }
  uint64_t unknown = incompat_ & ~(kIncDirty | kIncCorrupt | kIncDataFile | kIncCompression | kIncExtL2);
  if (unknown) {
    std::string names;
    for (int bit = 0; bit < 64; bit++) {
      if (!(unknown >> bit & 1)) continue;
      std::string nm = "unknown incompatible feature bit " + std::to_string(bit);
      for (auto& [k, n] : feature_names)
        if (k == uint32_t(bit) && !n.empty()) nm = n;
      names += (names.empty() ? "" : ", ") + nm;
    }
    return *error = "unsupported qcow2 feature(s): " + names, -ENOTSUP;
  }
  if (incompat_ & kIncDataFile) return *error = "qcow2 external data files are not supported", -ENOTSUP;
  if ((incompat_ & kIncCompression) ? compression_type_ > 1 : compression_type_ != 0)
    return *error = "invalid compression type " + std::to_string(compression_type_), -EINVAL;
#ifndef VIREO_HAVE_ZSTD
  if (compression_type_ == 1) return *error = "zstd compression is not supported by this build", -ENOTSUP;
#endif
  ext_l2_ = incompat_ & kIncExtL2;
  if (ext_l2_ && cluster_bits_ < 14) return *error = "extended L2 entries need clusters of at least 16 KiB", -EINVAL;
  if ((incompat_ & kIncCorrupt) && !ro_ && !flags.allow_corrupt)
    return *error = "image is marked corrupt; open it read-only, or repair it with 'vireo-img check -r all'", -EUCLEAN;
  l2_bits_ = cluster_bits_ - 3 - (ext_l2_ ? 1 : 0);
  l2_entries_ = 1ULL << l2_bits_;
  if (size_ > (1ULL << 62)) return *error = "virtual size too large", -EFBIG;

  // L1 table.
  uint64_t need_l1 = div_up(size_, cs_ << l2_bits_);
  if (uint64_t(l1_size) * 8 > kMaxL1Bytes) return *error = "L1 table too large (" + std::to_string(l1_size) + " entries)", -EFBIG;
  if (l1_size < need_l1) return *error = "L1 table too small for the virtual size", -EINVAL;
  if (l1_size && ((l1_offset_ & (cs_ - 1)) || l1_offset_ + uint64_t(l1_size) * 8 > file_end_))
    return *error = "L1 table offset " + hex(l1_offset_) + " is invalid or outside the file (image truncated?)", -EINVAL;
  if (int r = read_l1(l1_offset_, l1_size, &l1_)) return *error = "cannot read L1 table", r;

  // Refcount table.
  if (rt_clusters_ == 0 || uint64_t(rt_clusters_) * cs_ > kMaxRefTableBytes)
    return *error = "refcount table size " + std::to_string(rt_clusters_) + " clusters is invalid", -EINVAL;
  if ((rt_offset_ & (cs_ - 1)) || rt_offset_ == 0 || rt_offset_ + uint64_t(rt_clusters_) * cs_ > file_end_)
    return *error = "refcount table offset " + hex(rt_offset_) + " points outside the file", -EINVAL;
  {
    std::vector<uint8_t> b(uint64_t(rt_clusters_) * cs_);
    if (int r = pread_full(fd_, b.data(), b.size(), rt_offset_)) return *error = "cannot read refcount table", r;
    rt_.resize(b.size() / 8);
    for (size_t i = 0; i < rt_.size(); i++) {
      rt_[i] = ld64(&b[i * 8]) & ~511ULL;
      if (rt_[i] && ((rt_[i] & (cs_ - 1)) || rt_[i] + cs_ > file_end_)) {
        if (!flags.allow_corrupt)
          return *error = "refcount block " + std::to_string(i) + " at " + hex(rt_[i]) + " is outside the file", -EINVAL;
        rt_[i] = 0;
      }
    }
  }

  // Backing file name.
  if (backing_off) {
    if (backing_len == 0 || backing_len > 1023 || backing_off + backing_len > std::min<uint64_t>(cs_, file_end_))
      return *error = "invalid backing file name location", -EINVAL;
    backing_file_.assign(reinterpret_cast<const char*>(&hc[backing_off]), backing_len);
  }

  // Snapshot table.
  if (nb_snapshots > 65536) return *error = "too many snapshots (" + std::to_string(nb_snapshots) + ")", -EINVAL;
  if (nb_snapshots && ((snapshots_offset_ & (cs_ - 1)) || snapshots_offset_ >= file_end_))
    return *error = "snapshot table offset " + hex(snapshots_offset_) + " is invalid", -EINVAL;
  uint64_t pos = snapshots_offset_;
  for (uint32_t i = 0; i < nb_snapshots; i++) {
    uint8_t e[40];
    if (pos + 40 > file_end_) return *error = "snapshot table is truncated", -EINVAL;
    if (int r = pread_full(fd_, e, 40, pos)) return *error = "cannot read snapshot table", r;
    Snap s;
    s.l1_offset = ld64(e);
    s.l1_size = ld32(e + 8);
    uint16_t id_len = ld16(e + 12), name_len = ld16(e + 14);
    s.date_sec = ld32(e + 16);
    s.date_nsec = ld32(e + 20);
    s.vm_clock_nsec = ld64(e + 24);
    s.vm_state_size = ld32(e + 32);
    uint32_t extra = ld32(e + 36);
    if (extra > 1024) return *error = "snapshot extra data too large", -EINVAL;
    uint64_t tot = 40ULL + extra + id_len + name_len;
    if (pos + tot > file_end_) return *error = "snapshot table is truncated", -EINVAL;
    std::vector<uint8_t> rest(tot - 40);
    if (int r = pread_full(fd_, rest.data(), rest.size(), pos + 40)) return *error = "cannot read snapshot table", r;
    s.extra.assign(rest.begin(), rest.begin() + extra);
    s.id.assign(reinterpret_cast<char*>(rest.data()) + extra, id_len);
    s.name.assign(reinterpret_cast<char*>(rest.data()) + extra + id_len, name_len);
    if (uint64_t(s.l1_size) * 8 > kMaxL1Bytes || (s.l1_offset & (cs_ - 1)) ||
        s.l1_offset + uint64_t(s.l1_size) * 8 > file_end_)
      return *error = "snapshot '" + s.name + "' has an invalid L1 table", -EINVAL;
    snaps_.push_back(std::move(s));
    pos += div_up(tot, 8) * 8;
  }

  // Metadata structures must not overlap each other (two L1 entries, active
  // or in snapshots, may share an L2 table; nothing else may share a cluster).
  if (int r = rebuild_meta()) return *error = "cannot read snapshot L1 tables", r;
  for (size_t i = 1; i < meta_.size() && !flags.allow_corrupt; i++) {
    if (meta_maxend_[i - 1] <= meta_[i].start) continue;
    size_t j = i - 1;
    while (meta_[j].end <= meta_[i].start) j--;  // stops: some range before i ends past start
    return *error = std::string(meta_name(meta_[i].kind)) + " at " + hex(meta_[i].start) + " overlaps " +
                    meta_name(meta_[j].kind) + " at " + hex(meta_[j].start) +
                    "; the image is corrupt (try 'vireo-img check')",
           -EUCLEAN;
  }

  if (!ro_) {
    bool hdr = false;
    if (autoclear_) {  // we keep no autoclear feature (e.g. bitmaps) up to date
      autoclear_ = 0;
      hdr = true;
    }
    if ((incompat_ & kIncDirty) && !flags.no_repair) {
      // Lazy refcounts left stale by a crash: rebuild them from the tables.
      std::string why;
      if (int r = rebuild_dirty(&why))
        return *error = "cannot rebuild the refcounts of this dirty image (" + (why.empty() ? std::string(std::strerror(-r)) : why) + ")", r;
      incompat_ &= ~kIncDirty;
      hdr = true;
    }
    if (hdr && version_ == 3) {
      uint8_t f[24];
      st64(f, incompat_);
      st64(f + 8, compat_);
      st64(f + 16, autoclear_);
      if (int r = write_at(f, 24, 72)) return *error = "cannot update header", r;
      if (sync_fd()) return -errno;
    }
  }
  return 0;
}

int Qcow2Backend::read_l1(uint64_t off, uint32_t n, std::vector<uint64_t>* l1) {
  std::vector<uint8_t> b(uint64_t(n) * 8);
  if (n)
    if (int r = pread_full(fd_, b.data(), b.size(), off)) return r;
  l1->resize(n);
  for (uint32_t i = 0; i < n; i++) (*l1)[i] = ld64(&b[i * 8]);
  return 0;
}

Qcow2Backend::~Qcow2Backend() {
  if (fd_ >= 0) {
    if (!ro_ && !corrupt_) {
      std::lock_guard<std::mutex> g(mu_);
      flush_metadata();
    }
    ::close(fd_);
  }
}

Qcow2Backend::Info Qcow2Backend::info() const {
  std::lock_guard<std::mutex> g(mu_);
  Info i;
  i.version = version_;
  i.cluster_bits = cluster_bits_;
  i.refcount_bits = refbits_;
  i.size = size_;
  i.backing_file = backing_file_;
  i.backing_format = backing_format_;
  i.compression = compression_type_ == 1 ? "zstd" : "zlib";
  i.lazy_refcounts = compat_ & kCompatLazy;
  i.corrupt = incompat_ & kIncCorrupt;
  i.dirty = incompat_ & kIncDirty;
  i.extended_l2 = ext_l2_;
  return i;
}

// ---------------------------------------------------------------- reading

int Qcow2Backend::get_l2(uint64_t off, L2Table** t) {
  auto it = l2_cache_.find(off);
  if (it != l2_cache_.end()) {
    *t = &it->second;
    return 0;
  }
  if ((off & (cs_ - 1)) || off + cs_ > file_end_) return -EIO;
  std::vector<uint8_t> b(cs_);
  if (int r = pread_full(fd_, b.data(), cs_, off)) return r;
  L2Table nt;
  nt.e.resize(cs_ / 8);
  for (size_t i = 0; i < nt.e.size(); i++) nt.e[i] = ld64(&b[i * 8]);
  *t = &(l2_cache_[off] = std::move(nt));
  return 0;
}

int Qcow2Backend::lookup(uint64_t off, uint64_t* entry, uint64_t* bitmap) {
  *entry = *bitmap = 0;
  uint64_t l1i = off >> (cluster_bits_ + l2_bits_);
  if (l1i >= l1_.size()) return 0;
  uint64_t l2off = l1_[l1i] & kOffMask;
  if (!l2off) return 0;
  if (!l2_cache_.count(l2off))
    if (int r = check_l2_host(l2off)) return r;
  L2Table* t;
  if (int r = get_l2(l2off, &t)) return r;
  uint64_t idx = (off >> cluster_bits_) & (l2_entries_ - 1);
  if (ext_l2_) {
    *entry = t->e[idx * 2];
    *bitmap = t->e[idx * 2 + 1];
  } else {
    *entry = t->e[idx];
  }
  return 0;
}

int Qcow2Backend::read_backing(uint8_t* p, uint64_t n, uint64_t off) {
  uint64_t m = 0;
  if (backing_ && off < backing_->size()) {
    m = std::min(n, backing_->size() - off);
    if (int r = backing_->pread(p, m, off)) return r;
  }
  std::memset(p + m, 0, n - m);
  return 0;
}

int Qcow2Backend::read_compressed(uint64_t e, uint8_t* out) {
  if (zc_host_ == e && zc_data_.size() == cs_) {
    std::memcpy(out, zc_data_.data(), cs_);
    return 0;
  }
  uint32_t shift = 62 - (cluster_bits_ - 8);
  uint64_t coff = e & ((1ULL << shift) - 1);
  uint64_t nb = ((e >> shift) & ((1ULL << (cluster_bits_ - 8)) - 1)) + 1;
  uint64_t clen = nb * 512 - (coff & 511);
  if (coff >= file_end_) return -EIO;
  if (int r = check_data_host(coff, clen, false, "compressed cluster")) return r;
  std::vector<uint8_t> in(clen);
  if (int r = pread_full(fd_, in.data(), clen, coff)) return r;
  if (compression_type_ == 0) {
#ifdef VIREO_HAVE_ZLIB
    z_stream z{};
    if (inflateInit2(&z, -12) != Z_OK) return -ENOMEM;
    z.next_in = in.data();
    z.avail_in = uInt(clen);
    z.next_out = out;
    z.avail_out = uInt(cs_);
    int r = inflate(&z, Z_FINISH);
    bool ok = r == Z_STREAM_END || (r == Z_BUF_ERROR && z.avail_out == 0);
    ok = ok && z.avail_out == 0;
    inflateEnd(&z);
    if (!ok) return -EIO;
#else
    return -ENOTSUP;
#endif
  } else {
#ifdef VIREO_HAVE_ZSTD
    ZSTD_DCtx* d = ZSTD_createDCtx();
    if (!d) return -ENOMEM;
    ZSTD_inBuffer ib{in.data(), clen, 0};
    ZSTD_outBuffer ob{out, cs_, 0};
    bool ok = true;
    while (ob.pos < ob.size) {
      size_t r = ZSTD_decompressStream(d, &ob, &ib);
      if (ZSTD_isError(r)) { ok = false; break; }
      if (r == 0) break;
      if (ib.pos == ib.size) { ok = false; break; }
    }
    ZSTD_freeDCtx(d);
    if (!ok || ob.pos != cs_) return -EIO;
#else
    return -ENOTSUP;
#endif
  }
  zc_host_ = e;
  zc_data_.assign(out, out + cs_);
  return 0;
}

// Reads [in, in+n) of the guest cluster at vbase whose L2 entry is `e`.
int Qcow2Backend::read_in_cluster(uint64_t e, uint64_t bitmap, uint8_t* p, uint64_t in,
                                  uint64_t n, uint64_t vbase) {
  if (e & kCompressed) {
    std::vector<uint8_t> c(cs_);
    if (int r = read_compressed(e, c.data())) return r;
    std::memcpy(p, c.data() + in, n);
    return 0;
  }
  uint64_t host = e & kOffMask;
  if (host && ((host & (cs_ - 1)) || host >= file_end_ + cs_)) return -EIO;
  if (host)
    if (int r = check_data_host(host, cs_, false, "data cluster")) return r;
  if (ext_l2_) {
    if (int r = check_bitmap(e, bitmap)) return r;
    uint64_t scs = cs_ / 32;
    while (n) {
      uint64_t sc = in / scs, m = std::min(n, scs - in % scs);
      if (bitmap >> sc & 1) {
        if (int r = pread_full(fd_, p, m, host + in)) return r;
      } else if (bitmap >> (32 + sc) & 1) {
        std::memset(p, 0, m);
      } else if (int r = read_backing(p, m, vbase + in)) {
        return r;
      }
      p += m, in += m, n -= m;
    }
    return 0;
  }
  if (version_ >= 3 && (e & kZeroFlag)) {
    std::memset(p, 0, n);
    return 0;
  }
  if (host) return pread_full(fd_, p, n, host + in);
  return read_backing(p, n, vbase + in);
}

int Qcow2Backend::pread(void* buf, uint64_t len, uint64_t off) {
  IoRange r{static_cast<uint8_t*>(buf), off, len};
  return pread_ranges(&r, 1);
}

// Data clusters that follow each other in the file and whose bytes go to
// adjacent memory are one pread (convert's batches: a qemu-img-made image
// keeps its clusters in virtual order, holes or not between them).
int Qcow2Backend::pread_ranges(const IoRange* rs, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (rs[i].off > size_ || rs[i].len > size_ - rs[i].off) return -EIO;
  std::unique_lock<std::mutex> g(mu_);
  trim_caches();
  auto plain = [&](uint64_t e, uint64_t bm) {  // a data cluster read as is
    if (ext_l2_) return !(e & kCompressed) && (e & kOffMask) && bm == kSubAlloc;  // every subcluster allocated
    return !(e & kCompressed) && !(version_ >= 3 && (e & kZeroFlag)) && (e & kOffMask);
  };
  struct Seg {
    uint64_t host = 0, len = 0;
    uint8_t* p = nullptr;
  } seg;  // the host read being gathered
  // Plain data is read after mu_ is released (data_mu_ shared): several
  // requests' reads go to the disk at once. Everything else (compressed, zero,
  // backing, partly allocated subclusters) is read here under mu_.
  std::vector<Seg> segs;
  auto flush_seg = [&]() -> int {
    if (!seg.len) return 0;
    segs.push_back(seg);
    seg.len = 0;
    return 0;
  };
  for (size_t i = 0; i < count; i++) {
    auto* p = rs[i].buf;
    uint64_t off = rs[i].off, len = rs[i].len;
    while (len) {
      uint64_t in = off & (cs_ - 1), n = std::min(len, cs_ - in);
      uint64_t e, bm;
      if (int r = lookup(off, &e, &bm)) return r;
      uint64_t host = e & kOffMask;
      if (plain(e, bm) && !(host & (cs_ - 1)) && host < file_end_ + cs_) {
        if (int r = check_data_host(host, cs_, false, "data cluster")) return r;
        if (seg.len && host + in == seg.host + seg.len && p == seg.p + seg.len && seg.len < (64u << 20)) {
          seg.len += n;
        } else {
          if (int r = flush_seg()) return r;
          seg.host = host + in, seg.len = n, seg.p = p;
        }
      } else {
        if (int r = flush_seg()) return r;
        if (int r = read_in_cluster(e, bm, p, in, n, off - in)) return r;
      }
      p += n, off += n, len -= n;
    }
  }
  flush_seg();
  if (segs.empty()) return 0;
  std::shared_lock<std::shared_mutex> d(data_mu_);
  g.unlock();
  if (uint32_t us = test_data_read_delay_us.load(std::memory_order_relaxed)) ::usleep(us);
  for (const auto& sg : segs)
    if (int r = pread_full(fd_, sg.p, sg.len, sg.host)) return r;
  return 0;
}

int Qcow2Backend::block_status(uint64_t off, uint64_t len, uint64_t* n) {
  *n = 0;
  if (off > size_ || len > size_ - off) return -EIO;
  if (!len) return kZero;
  enum { kUnalloc = 2 };
  int kind = -1;
  uint64_t run = 0;
  {
    std::lock_guard<std::mutex> g(mu_);
    trim_caches();
    while (run < len) {
      uint64_t o = off + run, m = std::min(len - run, cs_ - (o & (cs_ - 1)));
      int k;
      uint64_t l1i = o >> (cluster_bits_ + l2_bits_);
      if (l1i >= l1_.size() || !(l1_[l1i] & kOffMask)) {
        k = kUnalloc;  // a whole L2 table's range is unallocated
        uint64_t span = cs_ << l2_bits_;
        m = std::min(len - run, span - (o & (span - 1)));
      } else {
        uint64_t e, bm;
        if (int r = lookup(o, &e, &bm)) return r;
        if (ext_l2_ && !(e & kCompressed)) {  // per subcluster, or the whole cluster when all alike
          if ((bm & kSubAlloc) == kSubAlloc) k = kData;
          else if ((bm >> 32) == kSubAlloc) k = kZero;
          else if (!bm) k = kUnalloc;
          else {
            uint64_t scs = cs_ / 32, s = (o & (cs_ - 1)) / scs;
            m = std::min(len - run, scs - (o & (scs - 1)));
            k = (bm >> s & 1) ? kData : (bm >> (32 + s) & 1) ? kZero : kUnalloc;
          }
        } else if (e & kCompressed) k = kData;
        else if (version_ >= 3 && (e & kZeroFlag)) k = kZero;
        else k = (e & kOffMask) ? kData : kUnalloc;
      }
      if (k == kUnalloc && !backing_) k = kZero;  // zero clusters and holes in one run
      if (kind < 0) kind = k;
      else if (k != kind) break;
      run += m;
    }
  }
  if (kind != kUnalloc) {
    *n = run;
    return kind;
  }
  if (!backing_ || off >= backing_->size()) {
    *n = run;
    return kZero;
  }
  return backing_->block_status(off, std::min(run, backing_->size() - off), n);
}

// ---------------------------------------------------------------- writing

int Qcow2Backend::grow_l1(uint64_t min_entries) {
  uint64_t n = std::max<uint64_t>(min_entries, l1_.size() + l1_.size() / 2);
  if (n * 8 > kMaxL1Bytes) n = std::max<uint64_t>(min_entries, kMaxL1Bytes / 8);
  if (n * 8 > kMaxL1Bytes) return -EFBIG;
  uint64_t off;
  if (int r = alloc_clusters(div_up(n * 8, cs_), &off)) return r;
  if (!l1_.empty()) free_later(l1_offset_, l1_.size() * 8);
  l1_.resize(n, 0);
  l1_offset_ = off;
  meta_changed();
  l1_dirty_ = header_dirty_ = true;
  return 0;
}

// The L2 table covering `off`, allocated or copied (when shared with a snapshot).
int Qcow2Backend::l2_for_write(uint64_t off, L2Table** t, uint64_t* idx) {
  uint64_t l1i = off >> (cluster_bits_ + l2_bits_);
  if (l1i >= l1_.size())
    if (int r = grow_l1(l1i + 1)) return r;
  uint64_t l1e = l1_[l1i], l2off = l1e & kOffMask;
  if (l2off && !l2_cache_.count(l2off))
    if (int r = check_l2_host(l2off)) return r;
  if (!l2off || !(l1e & kCopied)) {
    L2Table nt;
    nt.e.assign(cs_ / 8, 0);
    if (l2off) {
      L2Table* old;
      if (int r = get_l2(l2off, &old)) return r;
      nt.e = old->e;
    }
    uint64_t c;
    if (int r = alloc_clusters(1, &c)) return r;
    nt.dirty = true;
    l2_cache_[c] = std::move(nt);
    if (l2off) free_later(l2off, cs_);
    l1_[l1i] = c | kCopied;
    l1_dirty_ = true;
    l2off = c;
    meta_add(c, cs_, kMetaL2);
  }
  *idx = (off >> cluster_bits_) & (l2_entries_ - 1);
  return get_l2(l2off, t);
}

int Qcow2Backend::write_chunk(const uint8_t* p, uint64_t n, uint64_t off, std::vector<DataWrite>* defer) {
  if (ext_l2_) return write_chunk_ext(p, n, off);
  uint64_t in = off & (cs_ - 1), vbase = off - in;
  L2Table* t;
  uint64_t idx;
  if (int r = l2_for_write(off, &t, &idx)) return r;
  uint64_t e = t->e[idx];
  uint64_t host = e & kOffMask;
  if ((e & kCopied) && !(e & kCompressed) && host && !(version_ >= 3 && (e & kZeroFlag))) {
    // A crafted entry could aim the guest's write at the header or other
    // metadata, or far past the end: check it is a data cluster we own alone.
    if (int r = check_data_host(host, cs_, true, "data cluster")) return r;
    uint64_t rc;
    if (int r = get_refcount(host / cs_, &rc)) return r;
    if (rc != 1) return mark_corrupt("data cluster at " + hex(host) + " has the COPIED flag but refcount " + std::to_string(rc));
    // Inside the file as it is: the caller writes it after letting mu_ go (data_mu_ shared).
    if (defer && host + cs_ <= file_end_) {
      defer->push_back({p, n, host + in});
      return 0;
    }
    return write_at(p, n, host + in);
  }
  uint64_t nc;
  if (int r = alloc_clusters(1, &nc)) return r;
  {  // a free cluster on metadata means the refcounts are wrong
    int k = meta_overlap(nc, cs_);
    if (k == -2) return -EIO;
    if (k >= 0) return mark_corrupt("cluster " + hex(nc) + " is free in the refcounts but holds " + meta_name(k));
  }
  bool fresh = nc >= file_end_;
  if (n == cs_) {
    if (int r = write_at(p, n, nc)) return r;
  } else {
    std::vector<uint8_t> c(cs_);
    if (int r = read_in_cluster(e, 0, c.data(), 0, cs_, vbase)) return r;
    if (fresh && all_zero(c.data(), cs_)) {
      if (int r = write_at(p, n, nc + in)) return r;
      if (file_end_ < nc + cs_) {
        if (::ftruncate(fd_, nc + cs_)) return -errno;
        file_end_ = nc + cs_;
      }
    } else {
      std::memcpy(c.data() + in, p, n);
      if (int r = write_at(c.data(), cs_, nc)) return r;
    }
  }
  // l2_for_write's table pointer stays valid: caches are trimmed only between requests.
  t->e[idx] = nc | kCopied;
  t->dirty = true;
  free_entry(e);
  return 0;
}

int Qcow2Backend::check_bitmap(uint64_t e, uint64_t bm) {
  if (e & kCompressed) return 0;  // no subclusters (the bitmap is reserved)
  if (bm & kSubAlloc & (bm >> 32))
    return mark_corrupt("extended L2 entry " + hex(e) + " has subclusters both allocated and zero (bitmap " + hex(bm) + ")");
  if (!(e & kOffMask) && (bm & kSubAlloc))
    return mark_corrupt("extended L2 entry without a host cluster has allocated subclusters (bitmap " + hex(bm) + ")");
  return 0;
}

// Extended L2: writes [in, in+n) of one guest cluster. Only the subclusters
// written become allocated (their zero bits cleared); the others keep what
// they were (data, zero, or unallocated: backing file). A partly written
// subcluster that was not allocated gets its current content (backing file
// or zeros) around the new bytes. Crash order as write_chunk: data first,
// the L2 entry with the flush.
int Qcow2Backend::write_chunk_ext(const uint8_t* p, uint64_t n, uint64_t off) {
  const uint64_t in = off & (cs_ - 1), vbase = off - in, end = in + n, scs = cs_ / 32;
  L2Table* t;
  uint64_t idx;
  if (int r = l2_for_write(off, &t, &idx)) return r;
  const uint64_t e = t->e[idx * 2], bm = t->e[idx * 2 + 1], host = e & kOffMask;
  if (int r = check_bitmap(e, bm)) return r;
  const uint64_t first = in / scs, last = (end - 1) / scs;
  const uint64_t touched = sc_mask(first, last + 1);
  if ((e & kCopied) && !(e & kCompressed) && host) {
    // Our own cluster: write in place (as write_chunk, after the same checks).
    if (int r = check_data_host(host, cs_, true, "data cluster")) return r;
    uint64_t rc;
    if (int r = get_refcount(host / cs_, &rc)) return r;
    if (rc != 1) return mark_corrupt("data cluster at " + hex(host) + " has the COPIED flag but refcount " + std::to_string(rc));
    uint64_t a = (in % scs && !(bm >> first & 1)) ? first * scs : in;
    uint64_t b = (end % scs && !(bm >> last & 1)) ? (last + 1) * scs : end;
    if (a == in && b == end) {
      if (int r = write_at(p, n, host + in)) return r;
    } else {
      std::vector<uint8_t> c(b - a);
      if (a < in)
        if (int r = read_in_cluster(e, bm, c.data(), a, in - a, vbase)) return r;
      if (end < b)
        if (int r = read_in_cluster(e, bm, c.data() + (end - a), end, b - end, vbase)) return r;
      std::memcpy(c.data() + (in - a), p, n);
      if (int r = write_at(c.data(), b - a, host + a)) return r;
    }
    uint64_t nbm = (bm | touched) & ~(touched << 32);
    if (nbm != bm) t->e[idx * 2 + 1] = nbm, t->dirty = true;
    return 0;
  }
  // A new cluster: this one is unallocated, compressed (no subclusters: all
  // of it is data) or shared with a snapshot. Its allocated subclusters and
  // the written ones are copied / written; zero bits stay where not written.
  const uint64_t alloc = ((e & kCompressed) ? kSubAlloc : (bm & kSubAlloc)) | touched;
  const uint64_t nbm = alloc | ((e & kCompressed) ? 0 : ((bm >> 32) & ~alloc) << 32);
  uint64_t nc;
  if (int r = alloc_clusters(1, &nc)) return r;
  {  // a free cluster on metadata means the refcounts are wrong
    int k = meta_overlap(nc, cs_);
    if (k == -2) return -EIO;
    if (k >= 0) return mark_corrupt("cluster " + hex(nc) + " is free in the refcounts but holds " + meta_name(k));
  }
  std::vector<uint8_t> c;
  for (uint64_t sc = 0; sc < 32;) {  // one write per run of allocated subclusters
    if (!(alloc >> sc & 1)) {
      sc++;
      continue;
    }
    uint64_t sc2 = sc;
    while (sc2 < 32 && (alloc >> sc2 & 1)) sc2++;
    const uint64_t ra = sc * scs, rb = sc2 * scs;
    sc = sc2;
    if (ra >= in && rb <= end) {
      if (int r = write_at(p + (ra - in), rb - ra, nc + ra)) return r;
      continue;
    }
    c.resize(rb - ra);
    if (ra < in)
      if (int r = read_in_cluster(e, bm, c.data(), ra, std::min(in, rb) - ra, vbase)) return r;
    if (rb > end) {
      uint64_t x = std::max(end, ra);
      if (int r = read_in_cluster(e, bm, c.data() + (x - ra), x, rb - x, vbase)) return r;
    }
    uint64_t lo = std::max(in, ra), hi = std::min(end, rb);
    if (lo < hi) std::memcpy(c.data() + (lo - ra), p + (lo - in), hi - lo);
    if (int r = write_at(c.data(), rb - ra, nc + ra)) return r;
  }
  if (file_end_ < nc + cs_) {  // the cluster's unwritten tail: inside the file
    if (::ftruncate(fd_, nc + cs_)) return -errno;
    file_end_ = nc + cs_;
  }
  t->e[idx * 2] = nc | kCopied;
  t->e[idx * 2 + 1] = nbm;
  t->dirty = true;
  free_entry(e);
  return 0;
}

int Qcow2Backend::pwrite(const void* buf, uint64_t len, uint64_t off) {
  IoRange r{static_cast<uint8_t*>(const_cast<void*>(buf)), off, len};
  return pwrite_ranges(&r, 1);
}

int Qcow2Backend::pwrite_ranges(const IoRange* rs, size_t count) {
  if (ro_) return -EROFS;
  for (size_t i = 0; i < count; i++)
    if (rs[i].off > size_ || rs[i].len > size_ - rs[i].off) return -EIO;
  std::unique_lock<std::mutex> g(mu_);
  if (corrupt_) return -EIO;
  trim_caches();
  // Writes into clusters this image owns alone (COPIED) go out after mu_ is
  // released, beside other requests' (data_mu_ shared); allocations, copy on
  // write and everything that changes metadata stay under mu_.
  std::vector<DataWrite> inplace;
  // Whole clusters written where nothing was allocated get new clusters, which
  // mostly follow each other at the end of the file: their data goes out in one
  // write (up to 8 MiB) when their bytes are adjacent in memory too (one range,
  // or a convert batch's ranges packed in one buffer), before this call
  // returns (or to sink_, which writes it later: convert targets). Should that
  // write fail, their L2 entries are put back (the clusters leak; nothing points
  // at unwritten data).
  struct Slot {
    L2Table* t;
    uint64_t i, old_bitmap;  // word index of the entry; extended L2: its bitmap before
  };
  struct Pending {
    uint64_t host = 0, len = 0;
    const uint8_t* p = nullptr;
    std::vector<Slot> slots;
  } pend;
  auto flush_pending = [&]() -> int {
    if (!pend.len) return 0;
    int r;
    if (sink_) {
      r = sink_(pend.p, pend.len, pend.host);
      if (!r && pend.host + pend.len > file_end_) file_end_ = pend.host + pend.len;
    } else {
      r = write_at(pend.p, pend.len, pend.host);
    }
    if (r)
      for (auto& sl : pend.slots) {
        sl.t->e[sl.i] = 0;
        if (ext_l2_) sl.t->e[sl.i + 1] = sl.old_bitmap;
      }
    pend.len = 0;
    pend.slots.clear();
    return r;
  };
  for (size_t ri = 0; ri < count; ri++) {
    const uint8_t* p = rs[ri].buf;
    uint64_t off = rs[ri].off, len = rs[ri].len;
    while (len) {
      uint64_t n = std::min(len, cs_ - (off & (cs_ - 1)));
      if (n == cs_) {
        L2Table* t;
        uint64_t idx;
        if (int r = l2_for_write(off, &t, &idx)) {
          flush_pending();
          return r;
        }
        // Unallocated (extended L2: no allocated subcluster; zero bits are overwritten).
        const uint64_t si = ext_l2_ ? idx * 2 : idx;
        if (t->e[si] == 0 && !(ext_l2_ && (t->e[si + 1] & kSubAlloc))) {
          uint64_t nc;
          if (int r = alloc_clusters(1, &nc)) {
            flush_pending();
            return r;
          }
          int k = meta_overlap(nc, cs_);
          if (k == -2 || k >= 0) {
            flush_pending();
            return k == -2 ? -EIO : mark_corrupt("cluster " + hex(nc) + " is free in the refcounts but holds " + meta_name(k));
          }
          if (pend.len && (nc != pend.host + pend.len || p != pend.p + pend.len || pend.len >= (8u << 20)))
            if (int r = flush_pending()) return r;
          if (!pend.len) pend.host = nc, pend.p = p;
          pend.len += cs_;
          pend.slots.push_back({t, si, ext_l2_ ? t->e[si + 1] : 0});
          t->e[si] = nc | kCopied;
          if (ext_l2_) t->e[si + 1] = kSubAlloc;
          t->dirty = true;
          p += n, off += n, len -= n;
          continue;
        }
      }
      if (int r = flush_pending()) return r;
      if (int r = write_chunk(p, n, off, &inplace)) return r;
      p += n, off += n, len -= n;
    }
  }
  if (int r = flush_pending()) return r;
  if (inplace.empty()) return 0;
  std::shared_lock<std::shared_mutex> d(data_mu_);
  g.unlock();
  for (const auto& w : inplace)
    if (int r = pwrite_full(fd_, w.p, w.len, w.host)) return r;
  return 0;
}

int Qcow2Backend::flush() {
  if (ro_) return 0;
  std::lock_guard<std::mutex> g(mu_);
  if (corrupt_) return -EIO;
  return flush_metadata();
}

int Qcow2Backend::zero_range(uint64_t off, uint64_t len, bool discard) {
  while (len) {
    uint64_t in = off & (cs_ - 1), n = std::min(len, cs_ - in);
    if (ext_l2_) {
      if (int r = zero_subclusters(off, n, discard)) return r;
    } else if (n < cs_) {  // partial cluster
      if (!discard) {
        std::vector<uint8_t> z(n, 0);
        if (int r = write_chunk(z.data(), n, off)) return r;
      }
    } else {
      uint64_t want;  // the entry that makes this cluster read as zeros
      if (!backing_) want = 0;
      else if (version_ >= 3) want = kZeroFlag;
      else want = ~0ULL;  // v2 over a backing file: no way but writing zeros
      if (want == ~0ULL) {
        if (!discard) {
          std::vector<uint8_t> z(cs_, 0);
          if (int r = write_chunk(z.data(), cs_, off)) return r;
        }
      } else {
        uint64_t e, bm;
        if (int r = lookup(off, &e, &bm)) return r;
        if ((e & ~kCopied) != want) {
          L2Table* t;
          uint64_t idx;
          if (int r = l2_for_write(off, &t, &idx)) return r;
          e = t->e[idx];
          t->e[idx] = want;
          t->dirty = true;
          free_entry(e);
        }
      }
    }
    off += n, len -= n;
  }
  return 0;
}

// Extended L2: makes [off, off+n), within one cluster, read as zeros. Whole
// subclusters get their zero bit (allocation bit cleared); a cluster left
// with no allocated subcluster is freed. A whole cluster becomes unallocated
// (all zero bits over a backing file). Parts of subclusters are written as
// zeros (write_zeroes) or left as they are (discard), as parts of clusters
// are without subclusters. A compressed cluster (no subclusters) is first
// rewritten as a normal one where only part of it is zeroed.
int Qcow2Backend::zero_subclusters(uint64_t off, uint64_t n, bool discard) {
  const uint64_t in = off & (cs_ - 1), vbase = off - in, end = in + n, scs = cs_ / 32;
  // The image's last subcluster counts as whole: nothing past the end is read.
  const uint64_t a = div_up(in, scs) * scs;
  const uint64_t b = vbase + end >= size_ ? std::min(cs_, div_up(end, scs) * scs) : end / scs * scs;
  if (a >= b) {  // no whole subcluster
    if (discard) return 0;
    std::vector<uint8_t> z(n, 0);
    return write_chunk_ext(z.data(), n, off);
  }
  if (!discard) {
    std::vector<uint8_t> z(std::max(a - in, end > b ? end - b : 0), 0);
    if (a > in)
      if (int r = write_chunk_ext(z.data(), a - in, off)) return r;
    if (end > b)
      if (int r = write_chunk_ext(z.data(), end - b, vbase + b)) return r;
  }
  const uint64_t mask = sc_mask(a / scs, b / scs);
  uint64_t e, bm;
  if (int r = lookup(vbase, &e, &bm)) return r;
  if ((e & kCompressed) && mask != kSubAlloc) {
    if (discard) return 0;
    std::vector<uint8_t> z(b - a, 0);
    if (int r = write_chunk_ext(z.data(), b - a, vbase + a)) return r;
    if (int r = lookup(vbase, &e, &bm)) return r;
  }
  uint64_t ne, nbm;
  if (mask == kSubAlloc) {
    ne = 0;
    nbm = backing_ ? kSubAlloc << 32 : 0;
  } else {
    if (int r = check_bitmap(e, bm)) return r;
    uint64_t alloc = bm & kSubAlloc & ~mask;
    nbm = alloc | ((((bm >> 32) | mask) & ~alloc) << 32);
    ne = alloc ? e : 0;
  }
  if ((ne & ~kCopied) == (e & ~kCopied) && nbm == bm) return 0;
  L2Table* t;
  uint64_t idx;
  if (int r = l2_for_write(vbase, &t, &idx)) return r;
  e = t->e[idx * 2];
  if (ne) ne = e;  // kept (its COPIED flag as the table has it)
  t->e[idx * 2] = ne;
  t->e[idx * 2 + 1] = nbm;
  t->dirty = true;
  if (!ne) free_entry(e);
  return 0;
}

int Qcow2Backend::discard(uint64_t off, uint64_t len) {
  if (ro_) return -EROFS;
  if (off > size_ || len > size_ - off) return -EIO;
  std::lock_guard<std::mutex> g(mu_);
  if (corrupt_) return -EIO;
  trim_caches();
  return zero_range(off, len, true);
}

int Qcow2Backend::write_zeroes(uint64_t off, uint64_t len) {
  if (ro_) return -EROFS;
  if (off > size_ || len > size_ - off) return -EIO;
  std::lock_guard<std::mutex> g(mu_);
  if (corrupt_) return -EIO;
  trim_caches();
  return zero_range(off, len, false);
}

int Qcow2Backend::resize(uint64_t new_size, std::string* error, Prealloc prealloc) {
  auto fail = [&](int r, const std::string& why) {
    if (error) *error = why.empty() ? std::string(std::strerror(-r)) : why;
    return r;
  };
  if (ro_) return fail(-EROFS, "");
  if (new_size % 512) return fail(-EINVAL, "The new size must be a multiple of 512");
  std::lock_guard<std::mutex> g(mu_);
  DataExclusive x(this);  // a shrink frees clusters (qcow2.h, data_mu_)
  if (corrupt_) return fail(-EIO, "the image is marked corrupt");
  if (!snaps_.empty() && version_ == 2) return fail(-ENOTSUP, "Can't resize a v2 image which has snapshots");
  if (new_size < size_ && prealloc != Prealloc::Off)
    return fail(-EINVAL, "Preallocation can only be used for growing images");
  const uint64_t old = size_;
  // Each snapshot keeps its size: one whose entry lacks it (v3 requires it;
  // without it the size read is the image's) gets the current one recorded,
  // before either a grow or a shrink changes the image's.
  if (!snaps_.empty()) {
    auto ns = snaps_;
    bool fix = false;
    for (auto& sn : ns) {
      if (sn.extra.size() >= 16) continue;
      uint64_t vm = sn.extra.size() >= 8 ? ld64(&sn.extra[0]) : sn.vm_state_size;
      sn.extra.resize(16, 0);
      st64(&sn.extra[0], vm);
      st64(&sn.extra[8], old);
      fix = true;
    }
    if (fix)
      if (int r = write_snapshot_table(ns)) return fail(r, "");
  }
  // Shrinking (v3 with snapshots too, as qemu-img 7.2): the active L1's
  // references past the new end are dropped; a table or cluster a snapshot
  // shares keeps the snapshot's count, so its data stays for snapshot -a.
  if (new_size < old) {
    int r = shrink(new_size);
    return r ? fail(r, "") : 0;
  }
  uint64_t need = div_up(new_size, cs_ << l2_bits_);
  if (need > l1_.size())
    if (int r = grow_l1(need)) return fail(r, "");
  // Everything below happens past the old end while the header still says the
  // old size: an error leaves the image as it was, only with a larger L1 table
  // and entries past its end that read zeros.
  std::string why;
  int r = 0;
  // A backing file larger than the old size would show through the new range:
  // make it read as zeros, as qemu-img does.
  if (backing_ && backing_->size() > old) r = zero_range(old, std::min(new_size, backing_->size()) - old, false);
  if (!r && (r = prealloc_range(old, new_size, prealloc, &why)))
    why = std::string("preallocation=") + prealloc_name(prealloc) + ": " + (why.empty() ? std::strerror(-r) : why);
  if (r) {
    flush_metadata();  // what was done stays consistent (freed runs given back)
    return fail(r, (why.empty() ? std::string(std::strerror(-r)) : why) + "; the image keeps its size");
  }
  size_ = new_size;
  header_dirty_ = true;
  r = flush_metadata();
  return r ? fail(r, "") : 0;
}

int Qcow2Backend::preallocate(uint64_t off, uint64_t len, Prealloc prealloc, std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  if (ro_) return *error = std::strerror(EROFS), -EROFS;
  std::lock_guard<std::mutex> g(mu_);
  DataExclusive x(this);  // clusters of a failed run are freed
  if (corrupt_) return *error = "the image is marked corrupt", -EIO;
  std::string why;
  int r = prealloc_range(off, off + len, prealloc, &why);
  int f = flush_metadata();
  if (!r) r = f;
  if (r) *error = why.empty() ? std::strerror(-r) : why;
  return r;
}

int Qcow2Backend::prealloc_range(uint64_t from, uint64_t to, Prealloc prealloc, std::string* why) {
  if (prealloc == Prealloc::Off || from >= to) return 0;
  const uint64_t c0 = from / cs_, c1 = div_up(to, cs_), per = l2_entries_, stride = ext_l2_ ? 2 : 1;
  // A partly kept first cluster that shows the backing file (entries without
  // subclusters have no way to say "this part only"): its content is copied
  // into its new cluster, as a write there would.
  if (!ext_l2_ && (from % cs_) && backing_ && c0 * cs_ < backing_->size()) {
    uint64_t e, bm;
    if (int r = lookup(c0 * cs_, &e, &bm)) return r;
    if (!(e & kCompressed) && !(e & kOffMask) && !(version_ >= 3 && (e & kZeroFlag))) {
      std::vector<uint8_t> head(from % cs_);
      if (int r = read_backing(head.data(), head.size(), c0 * cs_)) return r;
      if (int r = write_chunk(head.data(), head.size(), c0 * cs_)) return r;
    }
  }
  auto needs = [&](const uint64_t* ent) { return !(ent[0] & kCompressed) && !(ent[0] & kOffMask); };
  for (uint64_t t0 = c0 / per * per; t0 < c1; t0 += per) {
    const uint64_t a = std::max(t0, c0), b = std::min(t0 + per, c1), l1i = t0 / per;
    if (l1i < l1_.size() && (l1_[l1i] & kOffMask)) {  // an existing table: anything to do? (no copy of a snapshot's for nothing)
      uint64_t l2off = l1_[l1i] & kOffMask;
      if (!l2_cache_.count(l2off))
        if (int r = check_l2_host(l2off)) return r;
      L2Table* t;
      if (int r = get_l2(l2off, &t)) return r;
      bool any = false;
      for (uint64_t c = a; c < b && !any; c++) any = needs(&t->e[(c - t0) * stride]);
      if (!any) continue;
    }
    L2Table* t;
    uint64_t idx;
    if (int r = l2_for_write(a * cs_, &t, &idx)) return r;
    for (uint64_t c = a; c < b;) {
      if (!needs(&t->e[(c - t0) * stride])) {
        c++;
        continue;
      }
      uint64_t c2 = c;
      for (; c2 < b && needs(&t->e[(c2 - t0) * stride]); c2++)
        if (ext_l2_)
          if (int r = check_bitmap(t->e[(c2 - t0) * 2], t->e[(c2 - t0) * 2 + 1])) return r;
      const uint64_t n = c2 - c;
      uint64_t host;
      if (int r = alloc_run(n, &host)) return r;
      int k = meta_overlap(host, n * cs_);
      if (k == -2) return -EIO;
      if (k >= 0) return mark_corrupt("cluster " + hex(host) + " is free in the refcounts but holds " + meta_name(k));
      // The image's last cluster, when the guest sees only part of it, is
      // laid out as qemu-img leaves it: with extended L2 the file ends after
      // the last subcluster in use; without, the part past the guest's last
      // sector is written (zeros).
      uint64_t bytes = n * cs_;
      const bool tail = prealloc == Prealloc::Metadata && c2 == c1 && (to % cs_);
      if (tail && ext_l2_) bytes -= cs_ - div_up(to % cs_, cs_ / 32) * (cs_ / 32);
      int r = prepare_run(host, bytes, prealloc, why);
      if (!r && tail && !ext_l2_) {
        const uint64_t from_b = div_up(to % cs_, 512) * 512;
        std::vector<uint8_t> z(cs_, 0);
        if (from_b < cs_) r = write_at(z.data(), cs_ - from_b, host + bytes - cs_ + from_b);
      }
      if (r) {
        free_later(host, n * cs_);
        return r;
      }
      // Extended L2: the bitmap stays (no subcluster allocated; zero bits kept).
      for (uint64_t i = 0; i < n; i++) t->e[(c + i - t0) * stride] = (host + i * cs_) | kCopied;
      t->dirty = true;
      c = c2;
    }
    trim_caches();  // a large image's tables: written out and dropped as they fill the caches
  }
  return 0;
}

int Qcow2Backend::alloc_run(uint64_t n, uint64_t* off) {
  const uint64_t E = rb_entries_, from = std::max<uint64_t>(free_hint_, 1);
  uint64_t s = from, run = 0;
  for (uint64_t i = from; run < n; i++) {
    uint64_t rc;
    if (int r = get_refcount(i, &rc)) return r;
    if (rc == 0) {
      if (!run) s = i;
      run++;
    } else {
      run = 0;
    }
  }
  // Past what the refcount table covers: the table grows first, placed right
  // after the run (whose clusters it then covers), and the run is taken again.
  if ((s + n - 1) / E >= rt_.size()) {
    if (int r = grow_refcount_table((s + n - 1) / E, s + n)) return r;
    return alloc_run(n, off);
  }
  // The run's missing refcount blocks: the first free clusters after it, each
  // inside the range it describes or one whose block exists.
  std::vector<std::pair<uint64_t, uint64_t>> place;  // (refcount table index, cluster)
  uint64_t p = s + n;
  for (uint64_t ti = s / E; ti <= (s + n - 1) / E; ti++) {
    if (rt_[ti]) continue;
    for (;; p++) {
      uint64_t rc;
      if (int r = get_refcount(p, &rc)) return r;
      if (rc == 0) break;
    }
    uint64_t pt = p / E;
    if (pt != ti && (pt >= rt_.size() || !rt_[pt])) return alloc_clusters(n, off);
    place.push_back({ti, p++});
  }
  for (auto [ti, c] : place) {
    rt_[ti] = c * cs_;
    RefBlock blk;
    blk.raw.assign(cs_, 0);
    blk.dirty = true;
    rb_cache_[c * cs_] = std::move(blk);
    meta_add(c * cs_, cs_, kMetaRB);
    rt_dirty_ = true;
  }
  for (auto [ti, c] : place)
    if (int r = set_refcount(c, 1)) return r;
  for (uint64_t c = s; c < s + n; c++)
    if (int r = set_refcount(c, 1)) return r;
  if (s == from) free_hint_ = s + n;  // nothing free was skipped
  *off = s * cs_;
  return 0;
}

int Qcow2Backend::prepare_run(uint64_t host, uint64_t len, Prealloc prealloc, std::string* why) {
  const uint64_t end = host + len;
  if (prealloc != Prealloc::Full && host < file_end_) {
    // Reused clusters may hold old data: punched (reads zeros), else zeros written.
    uint64_t e = std::min(end, file_end_);
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(host), off_t(e - host))) {
      static const std::vector<uint8_t> zeros(1 << 20, 0);
      for (uint64_t o = host; o < e; o += zeros.size())
        if (int r = write_at(zeros.data(), std::min<uint64_t>(zeros.size(), e - o), o)) return r;
    }
  }
  switch (prealloc) {
    case Prealloc::Off:
      break;
    case Prealloc::Metadata:
      if (end > file_end_) {
        if (::ftruncate(fd_, off_t(end))) return -errno;
        file_end_ = end;
      }
      break;
    case Prealloc::Falloc:
      if (::fallocate(fd_, 0, off_t(host), off_t(len))) {
        int r = -errno;
        if (r == -EOPNOTSUPP) *why = "this file system cannot fallocate";
        return r;
      }
      file_end_ = std::max(file_end_, end);
      break;
    case Prealloc::Full: {
      static const std::vector<uint8_t> zeros(1 << 20, 0);
      for (uint64_t o = host; o < end; o += zeros.size())
        if (int r = write_at(zeros.data(), std::min<uint64_t>(zeros.size(), end - o), o)) return r;
      break;
    }
  }
  return 0;
}

// mu_ held. Crash-safe like every other metadata change: the
// L2 entries and L1 entries go first, then the header's size, then the
// refcount decrements; a crash in between leaks clusters at worst.
int Qcow2Backend::shrink(uint64_t new_size) {
  const uint64_t keep = div_up(new_size, cs_);  // guest clusters kept
  // Zero what is left of the last kept cluster past the new end, so growing
  // the image again reads zeros there.
  if (new_size % cs_) {
    uint64_t e, bm;
    if (int r = lookup(new_size, &e, &bm)) return r;
    bool has_data = (e & kCompressed) ||
                    ((e & kOffMask) && (ext_l2_ ? (bm & kSubAlloc) != 0 : !(version_ >= 3 && (e & kZeroFlag))));
    uint64_t n = std::min(size_, keep * cs_) - new_size;
    if (has_data && n && ext_l2_) {
      if (int r = zero_subclusters(new_size, n, false)) return r;  // zero bits where whole subclusters
    } else if (has_data && n) {
      std::vector<uint8_t> z(n, 0);
      if (int r = write_chunk(z.data(), n, new_size)) return r;
    }
  }
  const uint64_t per_l2 = l2_entries_, stride = ext_l2_ ? 2 : 1;  // words per entry
  for (uint64_t l1i = 0; l1i < l1_.size(); l1i++) {
    uint64_t first = l1i * per_l2;
    uint64_t l2off = l1_[l1i] & kOffMask;
    if (!l2off || first + per_l2 <= keep) continue;
    if (first >= keep) {
      // The whole table goes: its clusters, then the table itself.
      L2Table* t;
      if (int r = get_l2(l2off, &t)) return r;
      for (size_t i = 0; i < t->e.size(); i += stride) free_entry(t->e[i]);
      free_later(l2off, cs_);
      l2_cache_.erase(l2off);
      l1_[l1i] = 0;
      l1_dirty_ = true;
      meta_changed();
    } else {
      L2Table* t;
      uint64_t idx;
      if (int r = l2_for_write(keep * cs_, &t, &idx)) return r;
      for (uint64_t i = idx * stride; i < per_l2 * stride; i += stride)
        if (t->e[i] || (ext_l2_ && t->e[i + 1])) {
          free_entry(t->e[i]);
          t->e[i] = 0;
          if (ext_l2_) t->e[i + 1] = 0;
          t->dirty = true;
        }
    }
  }
  size_ = new_size;
  header_dirty_ = true;
  if (int r = flush_metadata()) return r;
  if (int r = free_empty_refblocks()) return r;
  // Cut the file after the last cluster still in use.
  uint64_t last = 0;
  for (uint64_t ti = rt_.size(); ti-- > 0 && !last;) {
    if (!rt_[ti]) continue;
    RefBlock* b;
    if (int r = get_rb(rt_[ti], &b)) return r;
    for (uint64_t j = rb_entries_; j-- > 0;)
      if (rb_get(b->raw, refbits_, j)) {
        last = ti * rb_entries_ + j;
        break;
      }
  }
  uint64_t len = (last + 1) * cs_;
  if (last && len < file_end_) {
    if (::ftruncate(fd_, off_t(len))) return -errno;
    file_end_ = len;
    if (sync_fd()) return -errno;
  }
  if (free_hint_ > last + 1) free_hint_ = last + 1;
  zfree_ = 0;
  return 0;
}

// Refcount blocks whose range holds no cluster in use but, possibly, the block
// itself: dropped from the refcount table (written first), then their own
// cluster freed. mu_ held.
int Qcow2Backend::free_empty_refblocks() {
  bool any = false;
  for (uint64_t ti = 0; ti < rt_.size(); ti++) {
    uint64_t off = rt_[ti];
    if (!off) continue;
    RefBlock* b;
    if (int r = get_rb(off, &b)) return r;
    uint64_t self = off / cs_;
    bool self_inside = self / rb_entries_ == ti;
    bool empty = true;
    for (uint64_t j = 0; j < rb_entries_ && empty; j++) {
      uint64_t rc = rb_get(b->raw, refbits_, j);
      if (rc && !(self_inside && ti * rb_entries_ + j == self && rc == 1)) empty = false;
    }
    if (!empty) continue;
    rt_[ti] = 0;
    rt_dirty_ = true;
    rb_cache_.erase(off);
    if (!self_inside) free_later(off, cs_);  // its count lives in another block
    any = true;
  }
  if (!any) return 0;
  meta_changed();
  return flush_metadata();
}

std::vector<uint8_t> Qcow2Backend::deflate_cluster(const uint8_t* data, uint64_t n, uint64_t cs) {
  std::vector<uint8_t> out;
#ifdef VIREO_HAVE_ZLIB
  std::vector<uint8_t> padded;
  if (n < cs) {
    padded.assign(cs, 0);
    std::memcpy(padded.data(), data, n);
    data = padded.data();
  }
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) return out;
  out.resize(cs - 1);  // anything not smaller than a cluster is stored as it is
  z.next_in = const_cast<uint8_t*>(data);
  z.avail_in = uInt(cs);
  z.next_out = out.data();
  z.avail_out = uInt(out.size());
  int r = deflate(&z, Z_FINISH);
  uint64_t got = out.size() - z.avail_out;
  deflateEnd(&z);
  if (r != Z_STREAM_END) out.clear();
  else out.resize(got);
#else
  (void)data, (void)n, (void)cs;
#endif
  return out;
}

int Qcow2Backend::write_compressed(const uint8_t* data, uint64_t n, uint64_t off, const std::vector<uint8_t>& z) {
  if (ro_) return -EROFS;
  if ((off & (cs_ - 1)) || off >= size_ || n > cs_ || n != std::min(cs_, size_ - off)) return -EINVAL;
  std::lock_guard<std::mutex> g(mu_);
  if (corrupt_) return -EIO;
  trim_caches();
  L2Table* t;
  uint64_t idx;
  if (int r = l2_for_write(off, &t, &idx)) return r;
  // Only into an unallocated cluster of a zlib image (zstd images get plain
  // clusters); with extended L2, one with no allocated subcluster.
  const uint64_t si = ext_l2_ ? idx * 2 : idx;
  if (z.empty() || z.size() >= cs_ || t->e[si] || (ext_l2_ && (t->e[si + 1] & kSubAlloc)) || compression_type_ != 0)
    return write_chunk(data, n, off);
  const uint64_t zlen = z.size();
  const uint64_t rc_max = refbits_ >= 64 ? ~0ULL : (1ULL << refbits_) - 1;
  uint64_t at = zfree_, rc = 0;
  if (at) {
    if (int r = get_refcount(at / cs_, &rc)) return r;
    if (rc == 0 || rc >= rc_max) at = 0;
  }
  auto fresh = [&](uint64_t* c) -> int {
    if (int r = alloc_clusters(1, c)) return r;
    int k = meta_overlap(*c, cs_);
    if (k == -2) return -EIO;
    if (k >= 0) return mark_corrupt("cluster " + hex(*c) + " is free in the refcounts but holds " + meta_name(k));
    return 0;
  };
  if (at && cs_ - (at & (cs_ - 1)) >= zlen) {
    if (int r = set_refcount(at / cs_, rc + 1)) return r;  // fits in the current cluster
  } else {
    uint64_t c;
    if (int r = fresh(&c)) return r;  // counted once (for this cluster's data) by alloc_clusters
    if (at && c == (at / cs_ + 1) * cs_) {
      if (int r = set_refcount(at / cs_, rc + 1)) return r;  // spans into the next cluster
    } else {
      at = c;
    }
  }
  // Padded with zeros to a whole sector, as readers read them (the next
  // compressed cluster overwrites the padding): one write, no truncate.
  uint64_t end = (at + zlen + 511) & ~511ULL;
  zbuf_.assign(z.begin(), z.end());
  zbuf_.resize(end - at, 0);
  if (int r = write_at(zbuf_.data(), zbuf_.size(), at)) return r;
  const uint32_t shift = 62 - (cluster_bits_ - 8);
  uint64_t sectors_m1 = ((at + zlen - 1) >> 9) - (at >> 9);
  t->e[si] = kCompressed | (sectors_m1 << shift) | at;
  if (ext_l2_) t->e[si + 1] = 0;  // compressed clusters have no subclusters
  t->dirty = true;
  zfree_ = (at + zlen) & (cs_ - 1) ? at + zlen : 0;
  return 0;
}

// ---------------------------------------------------------------- snapshots

// Adds `delta` (+1 now, or -1 later) to the refcount of every cluster the L1
// table references. Each distinct L2 table is walked once, with the number of
// L1 entries that name it.
int Qcow2Backend::refcount_walk(const std::vector<uint64_t>& l1, int delta, bool later) {
  uint64_t mult = 1;
  auto touch = [&](uint64_t off, uint64_t len) -> int {
    if (later) {
      free_later(off, len, mult);
      return 0;
    }
    for (uint64_t c = off / cs_; c <= (off + len - 1) / cs_; c++) {
      uint64_t rc;
      if (int r = get_refcount(c, &rc)) return r;
      if (delta > 0 && rc > ~0ULL - mult) return -ERANGE;
      if (int r = set_refcount(c, delta > 0 ? rc + mult : (rc > mult ? rc - mult : 0))) return r;
    }
    return 0;
  };
  std::map<uint64_t, uint64_t> uses;  // L2 table -> L1 entries naming it
  for (uint64_t l1e : l1)
    if (uint64_t l2off = l1e & kOffMask) uses[l2off]++;
  uint32_t shift = 62 - (cluster_bits_ - 8);
  for (auto [l2off, m] : uses) {
    mult = m;
    if (int r = touch(l2off, cs_)) return r;
    L2Table* t;
    if (int r = get_l2(l2off, &t)) return r;
    size_t stride = ext_l2_ ? 2 : 1;
    for (size_t i = 0; i < t->e.size(); i += stride) {
      uint64_t e = t->e[i];
      if (e & kCompressed) {
        uint64_t coff = e & ((1ULL << shift) - 1);
        uint64_t nb = ((e >> shift) & ((1ULL << (cluster_bits_ - 8)) - 1)) + 1;
        if (int r = touch(coff & ~511ULL, nb * 512)) return r;
      } else if (e & kOffMask) {
        if (int r = touch(e & kOffMask, cs_)) return r;
      }
    }
  }
  return 0;
}

// COPIED must be set exactly when a cluster's refcount is 1 (active tables only).
int Qcow2Backend::fix_copied_flags() {
  std::set<uint64_t> seen;  // an L2 table shared by several L1 entries is fixed once
  for (auto& l1e : l1_) {
    uint64_t l2off = l1e & kOffMask;
    if (!l2off) continue;
    uint64_t rc;
    if (int r = get_refcount(l2off / cs_, &rc)) return r;
    uint64_t want = rc == 1 ? (l1e | kCopied) : (l1e & ~kCopied);
    if (want != l1e) l1e = want, l1_dirty_ = true;
    if (!seen.insert(l2off).second) continue;
    L2Table* t;
    if (int r = get_l2(l2off, &t)) return r;
    size_t stride = ext_l2_ ? 2 : 1;
    for (size_t i = 0; i < t->e.size(); i += stride) {
      uint64_t e = t->e[i], w = e;
      if (e & kCompressed) w = e & ~kCopied;
      else if (e & kOffMask) {
        if (int r = get_refcount((e & kOffMask) / cs_, &rc)) return r;
        w = rc == 1 ? (e | kCopied) : (e & ~kCopied);
      }
      if (w != e) t->e[i] = w, t->dirty = true;
    }
  }
  return 0;
}

static std::vector<uint8_t> serialize_snaps(const std::vector<Qcow2Backend::Snap>& snaps) {
  std::vector<uint8_t> out;
  for (auto& s : snaps) {
    size_t base = out.size();
    uint64_t tot = 40 + s.extra.size() + s.id.size() + s.name.size();
    out.resize(base + (tot + 7) / 8 * 8, 0);
    uint8_t* e = &out[base];
    st64(e, s.l1_offset);
    st32(e + 8, s.l1_size);
    st16(e + 12, uint16_t(s.id.size()));
    st16(e + 14, uint16_t(s.name.size()));
    st32(e + 16, s.date_sec);
    st32(e + 20, s.date_nsec);
    st64(e + 24, s.vm_clock_nsec);
    st32(e + 32, s.vm_state_size);
    st32(e + 36, uint32_t(s.extra.size()));
    // (std::copy: memcpy from an empty vector's null data() is undefined, even for 0 bytes)
    std::copy(s.extra.begin(), s.extra.end(), e + 40);
    std::copy(s.id.begin(), s.id.end(), e + 40 + s.extra.size());
    std::copy(s.name.begin(), s.name.end(), e + 40 + s.extra.size() + s.id.size());
  }
  return out;
}

int Qcow2Backend::write_snapshot_table(const std::vector<Snap>& snaps) {
  std::vector<uint8_t> old = serialize_snaps(snaps_), nw = serialize_snaps(snaps);
  uint64_t off = 0;
  if (!nw.empty()) {
    if (int r = alloc_clusters(div_up(nw.size(), cs_), &off)) return r;
    if (int r = write_at(nw.data(), nw.size(), off)) return r;
  }
  if (!old.empty() && snapshots_offset_) free_later(snapshots_offset_, old.size());
  snaps_ = snaps;
  snapshots_offset_ = off;
  meta_changed();
  snap_l2_stale_ = true;
  header_dirty_ = true;
  return 0;
}

int Qcow2Backend::find_snapshot(const std::string& key, bool by_name, std::string* error) const {
  int named = -1, numbered = -1;
  for (size_t i = 0; i < snaps_.size(); i++) {
    if (named < 0 && snaps_[i].name == key) named = int(i);
    if (numbered < 0 && snaps_[i].id == key) numbered = int(i);
  }
  if (by_name) numbered = -1;
  if (named >= 0 && numbered >= 0 && named != numbered) {
    *error = "'" + key + "' is ambiguous: it is the name of snapshot ID " + snaps_[size_t(named)].id +
             " and the ID of snapshot '" + snaps_[size_t(numbered)].name + "'";
    return -EINVAL;
  }
  if (named >= 0) return named;
  if (numbered >= 0) return numbered;
  *error = "snapshot '" + key + "' not found";
  return -ENOENT;
}

std::vector<SnapshotInfo> Qcow2Backend::snapshots() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<SnapshotInfo> v;
  for (auto& s : snaps_) {
    SnapshotInfo i;
    i.id = s.id;
    i.name = s.name;
    i.vm_state_size = s.vm_state_size;
    if (s.extra.size() >= 8) i.vm_state_size = ld64(&s.extra[0]);
    i.disk_size = s.extra.size() >= 16 ? ld64(&s.extra[8]) : size_;
    if (s.extra.size() >= 24) i.icount = ld64(&s.extra[16]);
    i.date_sec = s.date_sec;
    i.date_nsec = s.date_nsec;
    i.vm_clock_nsec = s.vm_clock_nsec;
    v.push_back(i);
  }
  return v;
}

int Qcow2Backend::snapshot_create(const std::string& name, std::string* error) {
  std::lock_guard<std::mutex> g(mu_);
  DataExclusive x(this);  // no data I/O in flight (qcow2.h, data_mu_)
  if (ro_) return *error = "'" + path_ + "' is read-only", -EROFS;
  if (corrupt_) return *error = "'" + path_ + "' is corrupt: " + corrupt_why_, -EIO;
  if (name.empty() || name.size() > 65535) return *error = "invalid snapshot name", -EINVAL;
  for (auto& o : snaps_) {
    if (o.name == name) return *error = "snapshot '" + name + "' already exists", -EEXIST;
    if (o.id == name)
      return *error = "'" + name + "' is the ID of snapshot '" + o.name +
                      "' (a number names that snapshot in qemu-img); choose another name",
             -EEXIST;
  }
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  Snap s;
  if (!l1_.empty()) {
    if (int r = alloc_clusters(div_up(l1_.size() * 8, cs_), &s.l1_offset)) return *error = std::strerror(-r), r;
    std::vector<uint8_t> b(l1_.size() * 8);
    for (size_t i = 0; i < l1_.size(); i++) st64(&b[i * 8], l1_[i] & ~kCopied);
    if (int r = write_at(b.data(), b.size(), s.l1_offset)) return *error = std::strerror(-r), r;
  }
  s.l1_size = uint32_t(l1_.size());
  if (int r = refcount_walk(l1_, +1, false)) {
    *error = r == -ERANGE ? "refcount overflow (refcount_bits too small for snapshots)" : std::strerror(-r);
    return r;
  }
  if (int r = fix_copied_flags()) return *error = std::strerror(-r), r;
  // One past the highest ID, as QEMU numbers them, but never a number that
  // is a snapshot's name (the new name included): that would make it ambiguous.
  unsigned long maxid = 0;
  for (auto& o : snaps_) maxid = std::max(maxid, std::strtoul(o.id.c_str(), nullptr, 10));
  auto is_name = [&](const std::string& id) {
    if (id == name) return true;
    for (auto& o : snaps_)
      if (o.name == id) return true;
    return false;
  };
  do s.id = std::to_string(++maxid);
  while (is_name(s.id));
  s.name = name;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  s.date_sec = uint32_t(ts.tv_sec);
  s.date_nsec = uint32_t(ts.tv_nsec);
  if (version_ >= 3) {
    s.extra.assign(16, 0);
    st64(&s.extra[8], size_);
  }
  auto ns = snaps_;
  ns.push_back(s);
  if (int r = write_snapshot_table(ns)) return *error = std::strerror(-r), r;
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  return 0;
}

int Qcow2Backend::snapshot_open(const std::string& name, bool by_name, std::string* error, std::vector<uint64_t>* sl1) {
  if (ro_) return *error = "'" + path_ + "' is read-only", -EROFS;
  if (corrupt_) return *error = "'" + path_ + "' is corrupt: " + corrupt_why_, -EIO;
  int i = find_snapshot(name, by_name, error);
  if (i < 0) return i;
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  if (int r = read_l1(snaps_[i].l1_offset, snaps_[i].l1_size, sl1)) return *error = std::strerror(-r), r;
  return i;
}

int Qcow2Backend::snapshot_apply(const std::string& name, std::string* error, bool by_name) {
  std::lock_guard<std::mutex> g(mu_);
  DataExclusive x(this);  // no data I/O in flight (qcow2.h, data_mu_)
  std::vector<uint64_t> sl1;
  int i = snapshot_open(name, by_name, error, &sl1);
  if (i < 0) return i;
  Snap s = snaps_[i];
  uint64_t nsize = s.extra.size() >= 16 ? ld64(&s.extra[8]) : size_;
  uint64_t need = div_up(nsize, cs_ << l2_bits_);
  if (sl1.size() < need) sl1.resize(need, 0);
  if (int r = refcount_walk(sl1, +1, false)) return *error = std::strerror(-r), r;
  if (int r = refcount_walk(l1_, -1, true)) return *error = std::strerror(-r), r;
  uint64_t off = 0;
  if (!sl1.empty())
    if (int r = alloc_clusters(div_up(sl1.size() * 8, cs_), &off)) return *error = std::strerror(-r), r;
  if (!l1_.empty()) free_later(l1_offset_, l1_.size() * 8);
  for (auto& e : sl1) e &= ~kCopied;
  l1_ = sl1;
  l1_offset_ = off;
  meta_changed();
  size_ = nsize;
  l1_dirty_ = header_dirty_ = true;
  zc_host_ = ~0ULL;
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  if (int r = fix_copied_flags()) return *error = std::strerror(-r), r;
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  return 0;
}

int Qcow2Backend::snapshot_delete(const std::string& name, std::string* error, bool by_name) {
  std::lock_guard<std::mutex> g(mu_);
  DataExclusive x(this);  // no data I/O in flight (qcow2.h, data_mu_)
  std::vector<uint64_t> sl1;
  int i = snapshot_open(name, by_name, error, &sl1);
  if (i < 0) return i;
  Snap s = snaps_[i];
  auto ns = snaps_;
  ns.erase(ns.begin() + i);
  if (int r = write_snapshot_table(ns)) return *error = std::strerror(-r), r;
  if (int r = refcount_walk(sl1, -1, true)) return *error = std::strerror(-r), r;
  if (s.l1_size) free_later(s.l1_offset, uint64_t(s.l1_size) * 8);
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  if (int r = fix_copied_flags()) return *error = std::strerror(-r), r;
  if (int r = flush_metadata()) return *error = std::strerror(-r), r;
  return 0;
}

}  // namespace vireo::block
