// qcow2 consistency check and refcount rebuild (used by vireo-img check -r and
// when opening an image whose dirty bit says its refcounts may be stale).
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <set>

#include "block/qcow2.h"
#include "block/raw.h"

namespace vireo::block {

namespace {
constexpr uint64_t kOffMask = 0x00fffffffffffe00ULL;
constexpr uint64_t kCopied = 1ULL << 63;
constexpr uint64_t kCompressed = 1ULL << 62;
uint64_t ld64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}
void st64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = uint8_t(v); v >>= 8; }
}
uint32_t ld32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
// QEMU's limit on the refcount table (8 MiB), also ours when rebuilding.
constexpr uint64_t kMaxRefTableBytesCheck = 8ULL << 20;
uint64_t rb_get_raw(const std::vector<uint8_t>& raw, uint32_t bits, uint64_t i) {
  switch (bits) {
    case 64: return ld64(&raw[i * 8]);
    case 32: return ld32(&raw[i * 4]);
    case 16: return uint16_t((raw[i * 2] << 8) | raw[i * 2 + 1]);
    case 8: return raw[i];
    default: {
      uint64_t bit = i * bits;
      return (raw[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
  }
}
uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char b[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}
}  // namespace

// References per host cluster, sparse: (cluster, count) pairs, sorted and
// merged by compact(). Memory follows what is referenced, not the file size.
struct Qcow2Backend::Refs {
  std::vector<std::pair<uint64_t, uint64_t>> v;
  size_t compacted = 0;
  void push(uint64_t c, uint64_t n) {
    v.push_back({c, n});
    if (v.size() >= 2 * compacted + (1u << 20)) compact();
  }
  void compact() {
    std::sort(v.begin(), v.end());
    size_t o = 0;
    for (size_t i = 0; i < v.size(); i++) {
      if (o && v[o - 1].first == v[i].first) v[o - 1].second += v[i].second;
      else v[o++] = v[i];
    }
    v.resize(o);
    v.shrink_to_fit();
    compacted = o;
  }
};

int Qcow2Backend::read_l2_uncached(uint64_t off, std::vector<uint64_t>* e) {
  auto it = l2_cache_.find(off);  // unflushed tables live in the cache: prefer them
  if (it != l2_cache_.end()) {
    *e = it->second.e;
    return 0;
  }
  std::vector<uint8_t> buf(cs_);
  if (int r = pread_full(fd_, buf.data(), cs_, off)) return r;
  e->resize(cs_ / 8);
  for (size_t j = 0; j < cs_ / 8; j++) (*e)[j] = ld64(&buf[j * 8]);
  return 0;
}

int Qcow2Backend::read_rb_uncached(uint64_t off, std::vector<uint8_t>* raw) {
  auto it = rb_cache_.find(off);
  if (it != rb_cache_.end()) {
    *raw = it->second.raw;
    return 0;
  }
  if ((off & (cs_ - 1)) || off + cs_ > file_end_) return -EIO;
  raw->resize(cs_);
  return pread_full(fd_, raw->data(), cs_, off);
}

// Counts every reference to every host cluster by walking all metadata.
// Each distinct L2 table is read once, with the number of L1 entries (in all
// L1 tables) that point at it. Corruption found on the way (misaligned or
// out-of-file pointers) is reported in res.
int Qcow2Backend::count_refs(Refs* refs, CheckResult* res, bool include_refcount_structs) {
  const uint64_t fc = div_up(file_end_, cs_);
  auto add = [&](uint64_t off, uint64_t len, uint64_t mult) {
    if (!len) return;
    for (uint64_t c = off / cs_; c <= (off + len - 1) / cs_; c++) {
      if (c >= fc) {
        res->corruptions++;
        res->messages.push_back(fmt("ERROR cluster %" PRIu64 " is referenced but lies beyond the end of the image", c));
        return;
      }
      refs->push(c, mult);
    }
  };
  add(0, cs_, 1);  // header
  uint32_t shift = 62 - (cluster_bits_ - 8);
  struct Use { uint64_t total = 0, active = 0; };
  std::map<uint64_t, Use> tables;
  std::vector<uint64_t> order;  // first appearance, active table first
  auto collect = [&](const std::vector<uint64_t>& l1, bool active) {
    for (uint64_t l1e : l1) {
      uint64_t l2off = l1e & kOffMask;
      if (!l2off) continue;
      if ((l2off & (cs_ - 1)) || l2off + cs_ > file_end_) {
        res->corruptions++;
        res->messages.push_back(fmt("ERROR l2_offset=%" PRIx64 ": L2 table is not cluster aligned or outside the image; L1 entry corrupted", l2off));
        continue;
      }
      Use& u = tables[l2off];
      if (!u.total) order.push_back(l2off);
      u.total++;
      if (active) u.active++;
    }
  };
  add(l1_offset_, l1_.size() * 8, 1);
  collect(l1_, true);
  if (include_refcount_structs) {
    add(rt_offset_, uint64_t(rt_clusters_) * cs_, 1);
    for (uint64_t b : rt_) add(b, b ? cs_ : 0, 1);
  }
  if (!snaps_.empty()) {
    uint64_t tot = 0;
    for (auto& s : snaps_) tot += div_up(40 + s.extra.size() + s.id.size() + s.name.size(), 8) * 8;
    add(snapshots_offset_, tot, 1);
    for (auto& s : snaps_) {
      std::vector<uint64_t> sl1;
      if (int r = read_l1(s.l1_offset, s.l1_size, &sl1)) return r;
      add(s.l1_offset, uint64_t(s.l1_size) * 8, 1);
      collect(sl1, false);
    }
  }
  uint64_t prev = 0;
  std::vector<uint64_t> e;
  size_t stride = ext_l2_ ? 2 : 1;
  for (uint64_t l2off : order) {
    const Use& u = tables[l2off];
    add(l2off, cs_, u.total);
    if (int r = read_l2_uncached(l2off, &e)) return r;
    for (size_t j = 0; j < e.size(); j += stride) {
      uint64_t x = e[j];
      if (ext_l2_) {  // the subcluster bitmap, as qemu-img check judges it
        uint64_t bm = e[j + 1];
        if ((x & kCompressed) && bm) {
          res->corruptions++;
          res->messages.push_back(fmt("ERROR compressed cluster with a non-zero subcluster bitmap: l2_entry=%" PRIx64 " bitmap=%" PRIx64, x, bm));
        } else if (!(x & kCompressed) && (bm & 0xffffffffULL & (bm >> 32))) {
          res->corruptions++;
          res->messages.push_back(fmt("ERROR subclusters both allocated and zero: l2_entry=%" PRIx64 " bitmap=%" PRIx64, x, bm));
        }
      }
      if (x & kCompressed) {
        uint64_t coff = x & ((1ULL << shift) - 1);
        uint64_t nb = ((x >> shift) & ((1ULL << (cluster_bits_ - 8)) - 1)) + 1;
        add(coff & ~511ULL, nb * 512, u.total);
        res->allocated_clusters += u.active, res->compressed_clusters += u.active;
      } else if (uint64_t off = x & kOffMask) {
        if (off & (cs_ - 1)) {
          res->corruptions++;
          res->messages.push_back(fmt("ERROR offset=%" PRIx64 ": Cluster is not properly aligned; L2 entry corrupted", off));
          continue;
        }
        add(off, cs_, u.total);
        if (u.active) {
          res->allocated_clusters += u.active;
          if (prev && off != prev + cs_) res->fragmented_clusters++;
          prev = off;
        }
      } else if (ext_l2_ && (e[j + 1] & 0xffffffffULL)) {
        res->corruptions++;
        res->messages.push_back(fmt("ERROR: L2 entry without a host cluster has allocated subclusters"));
      }
    }
  }
  refs->compact();
  return 0;
}

int Qcow2Backend::do_check(CheckResult* res) {
  Refs refs;
  res->total_clusters = div_up(size_, cs_);
  if (int r = count_refs(&refs, res, true)) {
    res->completed = false;
    return r;
  }
  // Like qemu-img, refcounts of clusters past the end of the file are not
  // checked (a crash may leave them for clusters never written). Only the
  // refcount blocks that exist are read, one at a time, past the caches.
  const uint64_t fc = div_up(file_end_, cs_), E = rb_entries_;
  const auto& v = refs.v;
  uint64_t last = 0;
  auto report = [&](uint64_t c, uint64_t rc, uint64_t ref) {
    if (rc < ref) {
      res->corruptions++;
      res->messages.push_back(fmt("ERROR cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, c, rc, ref));
    } else {
      res->leaks++;
      res->messages.push_back(fmt("Leaked cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, c, rc, ref));
    }
  };
  std::vector<uint8_t> raw;
  size_t p = 0;  // next reference in v
  for (uint64_t ti = 0; ti < rt_.size() && ti * E < fc; ti++) {
    uint64_t base = ti * E, lim = std::min<uint64_t>(E, fc - base);
    // references in blocks that do not exist: refcount 0
    for (; p < v.size() && v[p].first < base; p++) report(v[p].first, 0, v[p].second);
    if (!rt_[ti]) continue;
    if (int r = read_rb_uncached(rt_[ti], &raw)) {
      res->completed = false;
      return r;
    }
    for (uint64_t k = 0; k < lim; k++) {
      uint64_t c = base + k;
      uint64_t rc = rb_get_raw(raw, refbits_, k);
      uint64_t ref = 0;
      if (p < v.size() && v[p].first == c) ref = v[p++].second;
      if (rc) last = c + 1;
      if (rc != ref) report(c, rc, ref);
    }
  }
  for (; p < v.size(); p++) report(v[p].first, 0, v[p].second);
  // COPIED flags of the active tables, each distinct L2 table once.
  std::set<uint64_t> seen;
  std::vector<uint64_t> e;
  for (uint64_t l1e : l1_) {
    uint64_t l2off = l1e & kOffMask;
    if (!l2off || (l2off & (cs_ - 1)) || l2off + cs_ > file_end_) continue;
    uint64_t rc;
    if (int r = get_refcount(l2off / cs_, &rc)) {
      res->completed = false;
      return r;
    }
    if ((rc == 1) != bool(l1e & kCopied)) {
      res->corruptions++;
      res->messages.push_back(fmt("ERROR OFLAG_COPIED L2 cluster: l1_entry=%" PRIx64 " refcount=%" PRIu64, l1e, rc));
    }
    if (!seen.insert(l2off).second) continue;
    if (int r = read_l2_uncached(l2off, &e)) {
      res->completed = false;
      return r;
    }
    size_t stride = ext_l2_ ? 2 : 1;
    for (size_t j = 0; j < e.size(); j += stride) {
      uint64_t x = e[j];
      if (x & kCompressed) {
        if (x & kCopied) {
          res->corruptions++;
          res->messages.push_back(fmt("ERROR: compressed cluster with OFLAG_COPIED: l2_entry=%" PRIx64, x));
        }
        continue;
      }
      uint64_t off = x & kOffMask;
      if (!off || (off & (cs_ - 1))) continue;
      if (int r = get_refcount(off / cs_, &rc)) {
        res->completed = false;
        return r;
      }
      if ((rc == 1) != bool(x & kCopied)) {
        res->corruptions++;
        res->messages.push_back(fmt("ERROR OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64, x, rc));
      }
    }
  }
  res->image_end_offset = last * cs_;
  trim_caches();
  return 0;
}

// Replaces the refcount structures with fresh ones computed from `refs`
// (references excluding refcount structures). The new table and blocks go
// past every referenced cluster and the old refcount structures (kept intact
// until the header points at the new table); blocks are made only for ranges
// that hold references.
int Qcow2Backend::rebuild_refcounts(Refs& refs, std::string* why) {
  const uint64_t E = rb_entries_;
  const auto& v = refs.v;
  uint64_t start = v.empty() ? 1 : v.back().first + 1;
  start = std::max<uint64_t>(start, div_up(rt_offset_ + uint64_t(rt_clusters_) * cs_, cs_));
  for (uint64_t b : rt_)
    if (b) start = std::max<uint64_t>(start, b / cs_ + 1);
  std::vector<uint64_t> tis;  // refcount table indices with references
  for (auto& [c, n] : v)
    if (tis.empty() || tis.back() != c / E) tis.push_back(c / E);
  uint64_t rt_cl = 1, nb = 0;
  std::vector<uint64_t> all;
  for (int iter = 0;; iter++) {
    all = tis;
    for (uint64_t ti = start / E; ti <= (start + rt_cl + nb - 1) / E; ti++)
      if (all.empty() || all.back() < ti) all.push_back(ti);
    uint64_t nb2 = all.size();
    uint64_t entries = all.back() + 1;
    if (entries * 8 > kMaxRefTableBytesCheck) {
      if (why)
        *why = "the refcount table would need " + std::to_string(entries) + " entries (" +
               std::to_string(entries * 8 >> 20) + " MiB; the limit is " + std::to_string(kMaxRefTableBytesCheck >> 20) +
               " MiB): clusters are referenced too far into the file for this cluster size";
      return -EFBIG;
    }
    uint64_t rt2 = std::max<uint64_t>(1, div_up(entries * 8, cs_));
    if (nb2 == nb && rt2 == rt_cl) break;
    nb = nb2, rt_cl = rt2;
    if (iter > 64) return -EIO;
  }
  uint64_t maxrc = refbits_ == 64 ? ~0ULL : (1ULL << refbits_) - 1;
  std::vector<uint64_t> nrt(rt_cl * cs_ / 8, 0);
  std::map<uint64_t, RefBlock> blocks;
  for (uint64_t i = 0; i < nb; i++) {
    uint64_t boff = (start + rt_cl + i) * cs_;
    nrt[all[i]] = boff;
    RefBlock b;
    b.raw.assign(cs_, 0);
    blocks[boff] = std::move(b);
  }
  // Set values through the normal accessors on the new structures.
  rt_ = nrt;
  rb_cache_ = std::move(blocks);
  for (auto& [c, n] : v) {
    if (n > maxrc) {
      if (why) *why = "cluster " + std::to_string(c) + " has " + std::to_string(n) + " references, more than refcount_bits=" + std::to_string(refbits_) + " can count";
      return -ERANGE;
    }
    if (int r = set_refcount(c, n)) return r;
  }
  for (uint64_t c = start; c < start + rt_cl + nb; c++)
    if (int r = set_refcount(c, 1)) return r;
  for (auto& [o, b] : rb_cache_) {
    if (int r = write_at(b.raw.data(), cs_, o)) return r;
    b.dirty = false;
  }
  if (int r = install_refcount_table(start, rt_cl)) return r;
  pending_free_.clear();
  free_hint_ = 0;
  if (int r = fix_copied_flags()) return r;
  return flush_metadata();
}

int Qcow2Backend::rebuild_dirty(std::string* why) {
  Refs refs;
  CheckResult res;
  if (int r = count_refs(&refs, &res, false)) return r;
  return rebuild_refcounts(refs, why);
}

CheckResult Qcow2Backend::check(bool repair) {
  std::lock_guard<std::mutex> g(mu_);
  DataExclusive x(this);  // a repair rewrites refcounts (qcow2.h, data_mu_)
  CheckResult res;
  if (!ro_ && flush_metadata()) {
    res.completed = false;
    return res;
  }
  if (do_check(&res)) return res;
  if (repair && !ro_ && (res.corruptions || res.leaks)) {
    Refs refs;
    CheckResult scratch;
    if (count_refs(&refs, &scratch, false) || rebuild_refcounts(refs, nullptr)) {
      res.completed = false;
      return res;
    }
    CheckResult after;
    after.messages = res.messages;
    do_check(&after);
    after.corruptions_fixed = res.corruptions > after.corruptions ? res.corruptions - after.corruptions : 0;
    after.leaks_fixed = res.leaks > after.leaks ? res.leaks - after.leaks : 0;
    if (version_ >= 3 && (incompat_ & 3)) {  // dirty always; corrupt once clean
      incompat_ &= after.corruptions ? ~1ULL : ~3ULL;
      uint8_t f[8];
      st64(f, incompat_);
      write_at(f, 8, 72);
      sync_fd();
    }
    return after;
  }
  return res;
}

}  // namespace vireo::block
