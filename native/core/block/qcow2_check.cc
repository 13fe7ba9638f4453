// qcow2 consistency check and refcount rebuild (used by vireo-img check -r and
// when opening an image whose dirty bit says its refcounts may be stale).
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>

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
void st32(uint8_t* p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
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

struct Qcow2Backend::Refs {
  std::vector<uint64_t> counts;  // references per host cluster index
};

// Counts every reference to every host cluster by walking all metadata.
// Corruption found on the way (misaligned or out-of-file pointers) is reported in res.
int Qcow2Backend::count_refs(Refs* refs, CheckResult* res, bool include_refcount_structs) {
  auto& cnt = refs->counts;
  cnt.assign(div_up(file_end_, cs_), 0);
  auto add = [&](uint64_t off, uint64_t len) {
    if (!len) return;
    for (uint64_t c = off / cs_; c <= (off + len - 1) / cs_; c++) {
      if (c >= cnt.size()) {  // never size a table from a pointer we cannot trust
        res->corruptions++;
        res->messages.push_back(fmt("ERROR cluster %" PRIu64 " is referenced but lies beyond the end of the image", c));
        return;
      }
      cnt[c]++;
    }
  };
  add(0, cs_);  // header
  uint32_t shift = 62 - (cluster_bits_ - 8);
  std::vector<uint8_t> buf(cs_);
  auto walk = [&](const std::vector<uint64_t>& l1, bool active) -> int {
    uint64_t prev = 0;
    for (size_t i = 0; i < l1.size(); i++) {
      uint64_t l2off = l1[i] & kOffMask;
      if (!l2off) continue;
      if ((l2off & (cs_ - 1)) || l2off + cs_ > file_end_) {
        res->corruptions++;
        res->messages.push_back(fmt("ERROR l2_offset=%" PRIx64 ": L2 table is not cluster aligned or outside the image; L1 entry corrupted", l2off));
        continue;
      }
      add(l2off, cs_);
      if (int r = pread_full(fd_, buf.data(), cs_, l2off)) return r;
      // Unflushed tables live in the cache: prefer them.
      auto it = l2_cache_.find(l2off);
      size_t stride = ext_l2_ ? 2 : 1;
      for (size_t j = 0; j < cs_ / 8; j += stride) {
        uint64_t e = it != l2_cache_.end() ? it->second.e[j] : ld64(&buf[j * 8]);
        if (e & kCompressed) {
          uint64_t coff = e & ((1ULL << shift) - 1);
          uint64_t nb = ((e >> shift) & ((1ULL << (cluster_bits_ - 8)) - 1)) + 1;
          add(coff & ~511ULL, nb * 512);
          if (active) res->allocated_clusters++, res->compressed_clusters++;
        } else if (uint64_t off = e & kOffMask) {
          if (off & (cs_ - 1)) {
            res->corruptions++;
            res->messages.push_back(fmt("ERROR offset=%" PRIx64 ": Cluster is not properly aligned; L2 entry corrupted", off));
            continue;
          }
          add(off, cs_);
          if (active) {
            res->allocated_clusters++;
            if (prev && off != prev + cs_) res->fragmented_clusters++;
            prev = off;
          }
        } else if (ext_l2_ && (it != l2_cache_.end() ? it->second.e[j + 1] : ld64(&buf[j * 8 + 8])) & 0xffffffffULL) {
          res->corruptions++;
          res->messages.push_back(fmt("ERROR: L2 entry without a host cluster has allocated subclusters"));
        }
      }
    }
    return 0;
  };
  add(l1_offset_, l1_.size() * 8);
  if (int r = walk(l1_, true)) return r;
  if (include_refcount_structs) {
    add(rt_offset_, uint64_t(rt_clusters_) * cs_);
    for (uint64_t b : rt_) add(b, b ? cs_ : 0);
  }
  if (!snaps_.empty()) {
    uint64_t tot = 0;
    for (auto& s : snaps_) tot += div_up(40 + s.extra.size() + s.id.size() + s.name.size(), 8) * 8;
    add(snapshots_offset_, tot);
    for (auto& s : snaps_) {
      std::vector<uint64_t> sl1(s.l1_size);
      std::vector<uint8_t> b(uint64_t(s.l1_size) * 8);
      if (s.l1_size)
        if (int r = pread_full(fd_, b.data(), b.size(), s.l1_offset)) return r;
      for (size_t i = 0; i < sl1.size(); i++) sl1[i] = ld64(&b[i * 8]);
      add(s.l1_offset, b.size());
      if (int r = walk(sl1, false)) return r;
    }
  }
  return 0;
}

int Qcow2Backend::do_check(CheckResult* res) {
  Refs refs;
  res->total_clusters = div_up(size_, cs_);
  if (int r = count_refs(&refs, res, true)) {
    res->completed = false;
    return r;
  }
  auto& cnt = refs.counts;
  // Like qemu-img, refcounts of clusters past the end of the file are not
  // checked (a crash may leave them for clusters never written).
  uint64_t last = 0;
  uint64_t n = std::max<uint64_t>(cnt.size(), div_up(file_end_, cs_));
  for (uint64_t c = 0; c < n; c++) {
    uint64_t rc;
    if (int r = get_refcount(c, &rc)) {
      res->completed = false;
      return r;
    }
    uint64_t ref = c < cnt.size() ? cnt[c] : 0;
    if (rc) last = c + 1;
    if (rc == ref) continue;
    if (rc < ref) {
      res->corruptions++;
      res->messages.push_back(fmt("ERROR cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, c, rc, ref));
    } else {
      res->leaks++;
      res->messages.push_back(fmt("Leaked cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, c, rc, ref));
    }
  }
  // COPIED flags of the active tables.
  for (uint64_t l1e : l1_) {
    uint64_t l2off = l1e & kOffMask;
    if (!l2off || (l2off & (cs_ - 1)) || l2off + cs_ > file_end_) continue;
    uint64_t rc;
    get_refcount(l2off / cs_, &rc);
    if ((rc == 1) != bool(l1e & kCopied)) {
      res->corruptions++;
      res->messages.push_back(fmt("ERROR OFLAG_COPIED L2 cluster: l1_entry=%" PRIx64 " refcount=%" PRIu64, l1e, rc));
    }
    L2Table* t;
    if (int r = get_l2(l2off, &t)) {
      res->completed = false;
      return r;
    }
    size_t stride = ext_l2_ ? 2 : 1;
    for (size_t j = 0; j < t->e.size(); j += stride) {
      uint64_t e = t->e[j];
      if (e & kCompressed) {
        if (e & kCopied) {
          res->corruptions++;
          res->messages.push_back(fmt("ERROR: compressed cluster with OFLAG_COPIED: l2_entry=%" PRIx64, e));
        }
        continue;
      }
      uint64_t off = e & kOffMask;
      if (!off || (off & (cs_ - 1))) continue;
      get_refcount(off / cs_, &rc);
      if ((rc == 1) != bool(e & kCopied)) {
        res->corruptions++;
        res->messages.push_back(fmt("ERROR OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64, e, rc));
      }
    }
  }
  res->image_end_offset = std::max<uint64_t>(last * cs_, 0);
  return 0;
}

// Replaces the refcount structures with fresh ones computed from `counts`
// (references excluding refcount structures), placed past everything in use.
int Qcow2Backend::rebuild_refcounts(std::vector<uint64_t>& counts) {
  const uint64_t E = rb_entries_;
  uint64_t start = std::max<uint64_t>(counts.size(), div_up(file_end_, cs_));
  uint64_t rt_cl = 1, nb = 0;
  for (;;) {
    uint64_t nb2 = div_up(start + rt_cl + nb, E);
    uint64_t rt2 = std::max<uint64_t>(1, div_up(nb2 * 8, cs_));
    if (nb2 == nb && rt2 == rt_cl) break;
    nb = nb2, rt_cl = rt2;
  }
  uint64_t total = start + rt_cl + nb;
  counts.resize(total, 0);
  for (uint64_t c = start; c < total; c++) counts[c] = 1;
  uint64_t maxrc = refbits_ == 64 ? ~0ULL : (1ULL << refbits_) - 1;
  std::vector<uint64_t> nrt(rt_cl * cs_ / 8, 0);
  std::map<uint64_t, RefBlock> blocks;
  for (uint64_t i = 0; i < nb; i++) {
    uint64_t boff = (start + rt_cl + i) * cs_;
    nrt[i] = boff;
    RefBlock b;
    b.raw.assign(cs_, 0);
    blocks[boff] = std::move(b);
  }
  // Set values through the normal accessors on the new structures.
  rt_ = nrt;
  rb_cache_ = std::move(blocks);
  for (uint64_t c = 0; c < total; c++) {
    if (!counts[c]) continue;
    if (counts[c] > maxrc) return -ERANGE;
    if (int r = set_refcount(c, counts[c])) return r;
  }
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

int Qcow2Backend::rebuild_dirty() {
  Refs refs;
  CheckResult res;
  if (int r = count_refs(&refs, &res, false)) return r;
  return rebuild_refcounts(refs.counts);
}

CheckResult Qcow2Backend::check(bool repair) {
  std::lock_guard<std::mutex> g(mu_);
  CheckResult res;
  if (!ro_ && flush_metadata()) {
    res.completed = false;
    return res;
  }
  if (do_check(&res)) return res;
  if (repair && !ro_ && (res.corruptions || res.leaks)) {
    Refs refs;
    CheckResult scratch;
    if (count_refs(&refs, &scratch, false) || rebuild_refcounts(refs.counts)) {
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
      ::fdatasync(fd_);
    }
    return after;
  }
  return res;
}

}  // namespace vireo::block
