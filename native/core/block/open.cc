// open_block / probe / create for raw and qcow2, plus the throwaway overlay.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/image.h"
#include "block/lock.h"
#include "block/qcow2.h"
#include "block/raw.h"

namespace vireo::block {

namespace {
void st64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = uint8_t(v); v >>= 8; }
}
void st32(uint8_t* p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
void st16(uint8_t* p, uint16_t v) { p[0] = v >> 8; p[1] = uint8_t(v); }
uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
// Longest backing chain opened (QEMU has no fixed limit; a chain this deep is
// a mistake or an attack on memory and file descriptors).
constexpr size_t kMaxChainDepth = 16;
std::string dir_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? "" : p.substr(0, s + 1);
}
}  // namespace

std::string probe_format(const std::string& path, std::string* error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (error) *error = "could not open '" + path + "': " + std::strerror(errno);
    return "";
  }
  uint8_t m[4] = {};
  ssize_t n = ::pread(fd, m, 4, 0);
  ::close(fd);
  if (n == 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb) return "qcow2";
  return "raw";
}

std::unique_ptr<BlockBackend> open_chain(const std::string& path, const OpenOptions& o,
                                         std::vector<std::string>* chain, std::string* error) {
  char rp[PATH_MAX];
  if (!::realpath(path.c_str(), rp)) {
    *error = "could not open '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  std::string canon = rp;
  if (chain->size() >= kMaxChainDepth) {
    *error = "'" + path + "': backing chain deeper than " + std::to_string(kMaxChainDepth) + " images";
    return nullptr;
  }
  for (auto& c : *chain)
    if (c == canon) {
      std::string loop;
      for (auto& x : *chain) loop += x + " -> ";
      *error = "backing file loop: " + loop + canon;
      return nullptr;
    }
  std::string fmt = o.format;
  if (fmt.empty()) {
    fmt = probe_format(path, error);
    if (fmt.empty()) return nullptr;
  }
  std::unique_ptr<BlockBackend> b;
  chain->push_back(canon);
  if (o.force_share && !o.read_only) {
    *error = "'" + path + "': force-share (-U) is only for read-only opens";
  } else if (fmt == "raw") {
    b = RawBackend::open(path, o.read_only, error, o.force_share);
  } else if (fmt == "qcow2") {
    Qcow2OpenFlags f;
    f.read_only = o.read_only;
    f.force_share = o.force_share;
    f.unsafe = o.unsafe && chain->size() == 1;  // the image itself, not its backing files
    b = Qcow2Backend::open(path, f, chain, error);
  } else {
    *error = "'" + path + "': unknown image format '" + fmt + "'";
  }
  chain->pop_back();
  return b;
}

std::unique_ptr<BlockBackend> open_block(const std::string& path, const OpenOptions& opts,
                                         std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  std::vector<std::string> chain;
  if (!opts.snapshot) return open_chain(path, opts, &chain, error);

  // Throwaway overlay: check the base opens read-only, then put a qcow2 in
  // $TMPDIR over it and unlink that file once it is open.
  OpenOptions ro = opts;
  ro.read_only = true;
  ro.snapshot = false;
  std::string fmt;
  uint64_t size;
  {
    auto base = open_chain(path, ro, &chain, error);
    if (!base) return nullptr;
    fmt = base->format();
    size = base->size();
  }
  char rp[PATH_MAX];
  if (!::realpath(path.c_str(), rp)) {
    *error = "could not open '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/vireo-snapshot-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back(0);
  int fd = ::mkstemp(name.data());
  if (fd < 0) {
    *error = "cannot create a temporary overlay in '" + tmpl + "': " + std::strerror(errno);
    return nullptr;
  }
  ::close(fd);
  std::string tmp = name.data();
  if (int r = create_qcow2(tmp, size, 16, rp, fmt, 3, error)) {
    (void)r;
    ::unlink(tmp.c_str());
    return nullptr;
  }
  Qcow2OpenFlags f;
  auto q = Qcow2Backend::open(tmp, f, &chain, error);
  ::unlink(tmp.c_str());
  return q;
}

int set_backing_file(const std::string& path, const std::string& backing, const std::string& backing_fmt,
                     std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  if (!backing.empty() && backing_fmt != "raw" && backing_fmt != "qcow2")
    return *error = "the backing file's format must be stated (-F raw or -F qcow2)", -EINVAL;
  if (backing.size() > 1023) return *error = "backing file name too long", -EINVAL;
  {  // a valid qcow2 image (no backing opened), writable
    Qcow2OpenFlags f;
    f.no_backing = true;
    f.no_repair = true;
    std::vector<std::string> chain;
    auto q = Qcow2Backend::open(path, f, &chain, error);
    if (!q) return -EINVAL;
  }
  if (!backing.empty()) {  // the new chain must open with the stated format
    std::string bpath = backing[0] == '/' ? backing : dir_of(path) + backing;
    OpenOptions o;
    o.format = backing_fmt;
    o.read_only = true;
    std::vector<std::string> chain;
    char rp[PATH_MAX];
    if (::realpath(path.c_str(), rp)) chain.push_back(rp);
    if (!open_chain(bpath, o, &chain, error)) return -EINVAL;
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return *error = "could not open '" + path + "': " + std::strerror(errno), -errno;
  if (int r = lock_image(fd, true, path, error)) {
    ::close(fd);
    return r;
  }
  uint8_t h0[104] = {};
  int r = pread_full(fd, h0, sizeof h0, 0);
  auto ld32 = [](const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; };
  uint32_t version = ld32(h0 + 4), cbits = ld32(h0 + 20);
  uint64_t cs = 1ULL << cbits;
  uint32_t hlen = version >= 3 ? ld32(h0 + 100) : 72;
  std::vector<uint8_t> hc(cs, 0), out(cs, 0);
  if (!r) r = pread_full(fd, hc.data(), cs, 0);
  if (r) {
    ::close(fd);
    return *error = "cannot read the header of '" + path + "'", r;
  }
  uint64_t old_off = 0;
  for (int i = 0; i < 8; i++) old_off = (old_off << 8) | hc[8 + i];
  uint64_t ext_end = old_off && old_off < cs ? old_off : cs;
  std::memcpy(out.data(), hc.data(), hlen);
  uint64_t pos = hlen;
  if (!backing.empty()) {
    st32(&out[pos], 0xe2792aca);
    st32(&out[pos + 4], uint32_t(backing_fmt.size()));
    std::memcpy(&out[pos + 8], backing_fmt.data(), backing_fmt.size());
    pos += 8 + div_up(backing_fmt.size(), 8) * 8;
  }
  for (uint64_t p = hlen; p + 8 <= ext_end;) {  // keep every other extension
    uint32_t type = ld32(&hc[p]), len = ld32(&hc[p + 4]);
    uint64_t step = 8 + div_up(len, 8) * 8;
    if (type == 0 || p + step > ext_end) break;
    if (type != 0xe2792aca) {
      if (pos + step + 8 > cs) {
        ::close(fd);
        return *error = "header extensions do not fit in the header cluster", -EINVAL;
      }
      std::memcpy(&out[pos], &hc[p], step);
      pos += step;
    }
    p += step;
  }
  pos += 8;  // end of extensions
  if (pos + backing.size() > cs) {
    ::close(fd);
    return *error = "backing file name does not fit in the header cluster", -EINVAL;
  }
  st64(&out[8], backing.empty() ? 0 : pos);
  st32(&out[16], uint32_t(backing.size()));
  std::memcpy(&out[pos], backing.data(), backing.size());
  r = pwrite_full(fd, out.data(), cs, 0);
  if (!r && ::fsync(fd)) r = -errno;
  ::close(fd);
  if (r) *error = "could not write '" + path + "': " + std::strerror(-r);
  return r;
}

int create_raw(const std::string& path, uint64_t size, std::string* error, Prealloc prealloc) {
  if (prealloc == Prealloc::Metadata) {  // refused before anything is created
    if (error) *error = "Unsupported preallocation mode: metadata";
    return -EINVAL;
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    if (error) *error = "could not create '" + path + "': " + std::strerror(e);
    return -e;
  }
  // Never truncate an image another process has open (a running VM's disk).
  if (int r = lock_image(fd, true, path, error)) {
    ::close(fd);
    return r;
  }
  if (::ftruncate(fd, 0) || (prealloc == Prealloc::Off && ::ftruncate(fd, off_t(size)))) {
    int e = errno;
    if (error) *error = "'" + path + "': cannot set size: " + std::strerror(e);
    ::close(fd);
    return -e;
  }
  if (prealloc != Prealloc::Off) {
    std::string why;
    if (int r = grow_raw(fd, 0, size, prealloc, &why)) {  // falloc reserves the whole file, full writes it
      ::unlink(path.c_str());
      ::close(fd);
      if (error) *error = "'" + path + "': " + why + " (the file was removed)";
      return r;
    }
  }
  ::close(fd);
  return 0;
}

int check_qcow2_options(int cluster_bits, int version, bool extended_l2, std::string* error) {
  std::string scratch;
  if (!error) error = &scratch;
  if (cluster_bits < 9 || cluster_bits > 21) return *error = "cluster size must be a power of two between 512 and 2M", -EINVAL;
  if (version != 2 && version != 3) return *error = "qcow2 version must be 2 (compat=0.10) or 3 (compat=1.1)", -EINVAL;
  // The same refusals as qemu-img create -o extended_l2=on.
  if (extended_l2 && version < 3)
    return *error = "Extended L2 entries (extended_l2=on) are only supported with compat=1.1 (qcow2 v3), not compat=0.10", -EINVAL;
  if (extended_l2 && cluster_bits < 14)
    return *error = "Extended L2 entries (extended_l2=on) are only supported with cluster sizes of at least 16384 bytes (cluster_size=" +
                    std::to_string(1ULL << cluster_bits) + ")",
           -EINVAL;
  return 0;
}

int create_qcow2(const std::string& path, uint64_t size, int cluster_bits,
                 const std::string& backing, const std::string& backing_fmt, int version,
                 std::string* error, bool extended_l2, Prealloc prealloc, bool durable) {
  std::string scratch;
  if (!error) error = &scratch;
  if (int r = check_qcow2_options(cluster_bits, version, extended_l2, error)) return r;
  // qemu-img's rule: without subclusters a preallocated cluster would hide the backing file.
  if (!backing.empty() && prealloc != Prealloc::Off && !extended_l2)
    return *error = "Backing file and preallocation can only be used at the same time if extended_l2 is on", -EINVAL;
  std::string bfmt = backing_fmt;
  if (!backing.empty()) {
    if (backing.size() > 1023) return *error = "backing file name too long", -EINVAL;
    if (bfmt != "raw" && bfmt != "qcow2")
      return *error = "the backing file's format must be stated (-F raw or -F qcow2): it is never guessed", -EINVAL;
    std::string bpath = backing[0] == '/' ? backing : dir_of(path) + backing;
    OpenOptions o;
    o.format = bfmt;
    o.read_only = true;
    std::vector<std::string> chain;
    auto b = open_chain(bpath, o, &chain, error);
    if (!b) {
      *error = "could not open backing file '" + backing + "' for '" + path + "': " + *error;
      return -ENOENT;
    }
    if (size == 0) size = b->size();
  }
  // An odd size would lose its last bytes in QEMU (a 40 MiB + 1000 byte raw
  // converted to qcow2 read back 488 bytes short there).
  size = whole_sectors(size);
  const uint64_t cs = 1ULL << cluster_bits;
  uint64_t l2_entries = cs / (extended_l2 ? 16 : 8);  // 128-bit entries with extended L2
  uint64_t l1_size = div_up(size, cs * l2_entries);
  if (l1_size * 8 > (32ULL << 20)) return *error = "image size too large for this cluster size", -EFBIG;
  uint64_t l1_cl = std::max<uint64_t>(1, div_up(l1_size * 8, cs));
  uint64_t E = cs * 8 / 16;
  uint64_t rt_cl = 1, nb = 1;
  for (;;) {
    uint64_t total = 1 + rt_cl + nb + l1_cl;
    uint64_t nb2 = div_up(total, E), rt2 = std::max<uint64_t>(1, div_up(nb2 * 8, cs));
    if (nb2 == nb && rt2 == rt_cl) break;
    nb = nb2, rt_cl = rt2;
  }
  uint64_t rt_off = cs, rb_off = cs * (1 + rt_cl), l1_off = rb_off + nb * cs;
  uint64_t total = 1 + rt_cl + nb + l1_cl;

  std::vector<uint8_t> h(cs, 0);
  st32(&h[0], 0x514649fb);
  st32(&h[4], uint32_t(version));
  st32(&h[20], uint32_t(cluster_bits));
  st64(&h[24], size);
  st32(&h[36], uint32_t(l1_size));
  st64(&h[40], l1_off);
  st64(&h[48], rt_off);
  st32(&h[56], uint32_t(rt_cl));
  uint64_t pos = 72;
  if (version == 3) {
    if (extended_l2) st64(&h[72], 16);  // incompatible feature bit 4: extended L2 entries
    st32(&h[96], 4);    // refcount_order: 16-bit refcounts
    st32(&h[100], 112); // header_length, including compression_type (0 = zlib)
    pos = 112;
  }
  if (!bfmt.empty() && !backing.empty()) {
    st32(&h[pos], 0xe2792aca);
    st32(&h[pos + 4], uint32_t(bfmt.size()));
    std::memcpy(&h[pos + 8], bfmt.data(), bfmt.size());
    pos += 8 + div_up(bfmt.size(), 8) * 8;
  }
  if (version == 3) {  // feature name table, so other tools can name our bits
    static const struct { uint8_t type, bit; const char* name; } feats[] = {
        {0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 2, "external data file"},
        {0, 3, "compression type"}, {0, 4, "extended L2 entries"},
        {1, 0, "lazy refcounts"}, {2, 0, "bitmaps"}, {2, 1, "raw external data"}};
    uint32_t n = sizeof feats / sizeof feats[0];
    if (pos + 8 + n * 48 + 8 + backing.size() <= cs) {
      st32(&h[pos], 0x6803f857);
      st32(&h[pos + 4], n * 48);
      for (uint32_t i = 0; i < n; i++) {
        h[pos + 8 + i * 48] = feats[i].type;
        h[pos + 8 + i * 48 + 1] = feats[i].bit;
        std::memcpy(&h[pos + 8 + i * 48 + 2], feats[i].name, std::strlen(feats[i].name));
      }
      pos += 8 + n * 48;
    }
  }
  pos += 8;  // end-of-extensions marker (zeros)
  if (!backing.empty()) {
    if (pos + backing.size() > cs) return *error = "backing file name does not fit in the header cluster", -EINVAL;
    st64(&h[8], pos);
    st32(&h[16], uint32_t(backing.size()));
    std::memcpy(&h[pos], backing.data(), backing.size());
  }
  std::vector<uint8_t> rt(rt_cl * cs, 0), rb(nb * cs, 0);
  for (uint64_t i = 0; i < nb; i++) st64(&rt[i * 8], rb_off + i * cs);
  for (uint64_t c = 0; c < total; c++) st16(&rb[c * 2], 1);

  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    *error = "could not create '" + path + "': " + std::strerror(e);
    return -e;
  }
  if (int r = lock_image(fd, true, path, error)) {  // never truncate an image in use
    ::close(fd);
    return r;
  }
  int r = ::ftruncate(fd, 0) ? -errno : 0;
  if (!r) r = pwrite_full(fd, h.data(), cs, 0);
  if (!r) r = pwrite_full(fd, rt.data(), rt.size(), rt_off);
  if (!r) r = pwrite_full(fd, rb.data(), rb.size(), rb_off);
  if (!r && ::ftruncate(fd, off_t(total * cs))) r = -errno;
  if (!r && durable && ::fsync(fd)) r = -errno;
  ::close(fd);
  if (r) {
    *error = "could not write '" + path + "': " + std::strerror(-r);
    return r;
  }
  if (prealloc != Prealloc::Off && size) {
    // On the image as created (its backing file is never read: every cluster
    // is new, and with extended L2 its subclusters stay unallocated).
    Qcow2OpenFlags fl;
    fl.no_backing = true;
    std::vector<std::string> chain;
    std::string why;
    auto q = Qcow2Backend::open(path, fl, &chain, &why);
    if (q) r = q->preallocate(0, size, prealloc, &why);
    else r = -EIO;
    q.reset();
    if (r) {
      ::unlink(path.c_str());
      *error = "'" + path + "': preallocation=" + prealloc_name(prealloc) + ": " + why + " (the file was removed)";
      return r;
    }
  }
  return 0;
}

}  // namespace vireo::block
