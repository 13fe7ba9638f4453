#include "machine/state.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>

namespace vireo::state {

namespace {

constexpr uint32_t kSectTag = 0x54434553;  // "SECT"
constexpr uint32_t kTablTag = 0x4c424154;  // "TABL"
constexpr uint32_t kPage = 4096;
constexpr size_t kTrailer = 8 + 4 + 8;

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    t[i] = c;
  }
  return t;
}

uint32_t crc32c_sw(const uint8_t* p, size_t n, uint32_t c) {
  static const auto t = make_table();
  for (size_t i = 0; i < n; i++) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const uint8_t* p, size_t n, uint32_t c) {
  uint64_t c64 = c;
  while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
    c64 = __builtin_ia32_crc32qi(uint32_t(c64), *p++);
    n--;
  }
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = uint32_t(c64);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

void put_le(std::vector<uint8_t>& v, uint64_t x, int n) {
  for (int i = 0; i < n; i++) v.push_back(uint8_t(x >> (8 * i)));
}

uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

bool page_zero(const uint8_t* p) {
  const uint64_t* q = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < kPage / 8; i += 8) {
    if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7]) return false;
  }
  return true;
}

std::string label(const std::string& key) {
  if (key == "ram") return "RAM size";
  if (key == "cpus") return "vCPU count";
  if (key == "devices") return "devices";
  if (key == "board") return "board";
  return key;
}

std::string shown(const std::string& key, const std::string& v) {
  if (v.empty()) return "nothing";
  if (key == "ram") {
    char* end = nullptr;
    unsigned long long b = std::strtoull(v.c_str(), &end, 10);
    if (end && !*end && b % (1 << 20) == 0) return std::to_string(b >> 20) + " MiB";
  }
  return v;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  c = hw ? crc32c_hw(p, n, c) : crc32c_sw(p, n, c);
#else
  c = crc32c_sw(p, n, c);
#endif
  return ~c;
}

// ---- ConfigDesc ----

void ConfigDesc::set(const std::string& k, const std::string& v) {
  for (auto& [key, val] : items)
    if (key == k) {
      val = v;
      return;
    }
  items.emplace_back(k, v);
}

std::string ConfigDesc::text() const {
  std::string s;
  for (auto& [k, v] : items) s += k + "=" + v + "\n";
  return s;
}

ConfigDesc ConfigDesc::parse(const std::string& text) {
  ConfigDesc d;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) throw StateError("the machine description in the state file is malformed");
    std::string line = text.substr(pos, nl - pos);
    size_t eq = line.find('=');
    if (eq == std::string::npos) throw StateError("the machine description in the state file is malformed");
    d.items.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    pos = nl + 1;
  }
  return d;
}

uint64_t ConfigDesc::hash() const {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text()) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string ConfigDesc::differences(const ConfigDesc& machine) const {
  std::string out;
  auto find = [](const ConfigDesc& d, const std::string& k) -> const std::string* {
    for (auto& [key, v] : d.items)
      if (key == k) return &v;
    return nullptr;
  };
  auto line = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  for (auto& [k, v] : items) {
    const std::string* m = find(machine, k);
    if (!m) {
      line(label(k) + ": the state file has " + shown(k, v) + ", this machine has none");
    } else if (*m != v) {
      if (k == "devices") {
        // Name the devices on either side only.
        auto split = [](const std::string& s) {
          std::vector<std::string> r;
          size_t p = 0;
          while (p <= s.size() && !s.empty()) {
            size_t c = s.find(',', p);
            r.push_back(s.substr(p, c == std::string::npos ? std::string::npos : c - p));
            if (c == std::string::npos) break;
            p = c + 1;
          }
          return r;
        };
        auto a = split(v), b = split(*m);
        std::string only_file, only_machine;
        for (auto& x : a)
          if (std::find(b.begin(), b.end(), x) == b.end()) only_file += (only_file.empty() ? "" : ", ") + x;
        for (auto& x : b)
          if (std::find(a.begin(), a.end(), x) == a.end()) only_machine += (only_machine.empty() ? "" : ", ") + x;
        std::string s = "devices:";
        if (!only_file.empty()) s += " only in the state file: " + only_file;
        if (!only_machine.empty()) s += std::string(only_file.empty() ? "" : ",") + " only in this machine: " + only_machine;
        if (only_file.empty() && only_machine.empty()) s += " in a different order";
        line(s);
      } else {
        line(label(k) + ": the state file has " + shown(k, v) + ", this machine has " + shown(k, *m));
      }
    }
  }
  for (auto& [k, v] : machine.items)
    if (!find(*this, k)) line(label(k) + ": the state file has none, this machine has " + shown(k, v));
  return out;
}

// ---- StateFileWriter ----

StateFileWriter::StateFileWriter(const std::string& path, const ConfigDesc& config) : path_(path), tmp_(path + ".partial") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) throw StateError("cannot create the state file '" + tmp_ + "': " + std::strerror(errno));
  std::vector<uint8_t> h(kMagic, kMagic + 8);
  put_le(h, kFormatVersion, 4);
  put_le(h, 0, 4);
  put_le(h, config.hash(), 8);
  std::string desc = config.text();
  put_le(h, desc.size(), 4);
  h.insert(h.end(), desc.begin(), desc.end());
  put_le(h, crc32c(h.data(), h.size()), 4);
  write(h.data(), h.size());
}

StateFileWriter::~StateFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_.c_str());
}

void StateFileWriter::write(const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  file_crc_ = crc32c(b, n, file_crc_);
  pos_ += n;
  while (n) {
    ssize_t w = ::write(fd_, b, std::min<size_t>(n, 64u << 20));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw StateError("cannot write the state file '" + tmp_ + "': " + std::strerror(w < 0 ? errno : ENOSPC));
    b += w;
    n -= size_t(w);
  }
}

void StateFileWriter::begin_section(const std::string& name, uint32_t version, uint64_t len, uint32_t& crc) {
  if (name.empty() || name.size() > 255) throw StateError("bad state section name '" + name + "'");
  for (auto& e : entries_)
    if (e.name == name) throw StateError("state section '" + name + "' written twice");
  std::vector<uint8_t> h;
  put_le(h, kSectTag, 4);
  put_le(h, name.size(), 2);
  h.insert(h.end(), name.begin(), name.end());
  put_le(h, version, 4);
  put_le(h, len, 8);
  crc = crc32c(h.data() + 4, h.size() - 4);
  write(h.data(), h.size());
  entries_.push_back({name, version, pos_, len, 0});
}

void StateFileWriter::section(const std::string& name, uint32_t version, std::span<const uint8_t> bytes) {
  uint32_t crc;
  begin_section(name, version, bytes.size(), crc);
  crc = crc32c(bytes.data(), bytes.size(), crc);
  write(bytes.data(), bytes.size());
  entries_.back().crc = crc;
  std::vector<uint8_t> t;
  put_le(t, crc, 4);
  write(t.data(), t.size());
}

void StateFileWriter::ram_section(const std::string& name, const uint8_t* ram, uint64_t size) {
  const uint64_t pages = (size + kPage - 1) / kPage;
  std::vector<uint8_t> head;
  put_le(head, size, 8);
  put_le(head, kPage, 4);
  head.resize(head.size() + (pages + 7) / 8);
  uint8_t* bitmap = head.data() + 12;
  uint64_t nonzero = 0;
  for (uint64_t p = 0; p < pages; p++) {
    bool z;
    if ((p + 1) * kPage <= size) {
      z = page_zero(ram + p * kPage);
    } else {
      z = std::all_of(ram + p * kPage, ram + size, [](uint8_t b) { return b == 0; });
    }
    if (!z) {
      bitmap[p / 8] |= uint8_t(1u << (p % 8));
      nonzero++;
    }
  }
  // The last page may be partial (sizes are whole MiB in practice).
  uint64_t body = 0;
  for (uint64_t p = 0; p < pages; p++)
    if (bitmap[p / 8] & (1u << (p % 8))) body += std::min<uint64_t>(kPage, size - p * kPage);
  uint32_t crc;
  begin_section(name, 1, head.size() + body, crc);
  crc = crc32c(head.data(), head.size(), crc);
  write(head.data(), head.size());
  for (uint64_t p = 0; p < pages;) {
    if (!(bitmap[p / 8] & (1u << (p % 8)))) {
      p++;
      continue;
    }
    uint64_t q = p;
    while (q < pages && (bitmap[q / 8] & (1u << (q % 8))) && q - p < (64u << 20) / kPage) q++;
    uint64_t len = std::min<uint64_t>(q * kPage, size) - p * kPage;
    crc = crc32c(ram + p * kPage, len, crc);
    write(ram + p * kPage, len);
    p = q;
  }
  entries_.back().crc = crc;
  std::vector<uint8_t> t;
  put_le(t, crc, 4);
  write(t.data(), t.size());
}

void StateFileWriter::finish() {
  std::vector<uint8_t> t;
  const uint64_t table_at = pos_;
  put_le(t, kTablTag, 4);
  put_le(t, entries_.size(), 4);
  for (auto& e : entries_) {
    put_le(t, e.name.size(), 2);
    t.insert(t.end(), e.name.begin(), e.name.end());
    put_le(t, e.version, 4);
    put_le(t, e.offset, 8);
    put_le(t, e.length, 8);
    put_le(t, e.crc, 4);
  }
  put_le(t, table_at, 8);
  write(t.data(), t.size());
  std::vector<uint8_t> end;
  put_le(end, file_crc_, 4);
  end.insert(end.end(), kEndMagic, kEndMagic + 8);
  write(end.data(), end.size());
  if (::fsync(fd_) != 0) throw StateError("cannot write the state file '" + tmp_ + "': " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw StateError("cannot rename '" + tmp_ + "' to '" + path_ + "': " + std::strerror(errno));
  done_ = true;
}

// ---- StateFile ----

StateFile::StateFile(const std::string& path) : path_(path) {
  const std::string where = "the state file '" + path + "'";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw StateError("cannot open " + where + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw StateError(where + " is not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw StateError("cannot map " + where + ": " + std::strerror(e));
    }
    map_ = static_cast<const uint8_t*>(m);
    ::madvise(const_cast<uint8_t*>(map_), size_, MADV_SEQUENTIAL);
  }
  ::close(fd);
  const uint8_t* p = map_;
  if (size_ < 8 || std::memcmp(p, kMagic, 8) != 0) throw StateError(where + " is not a Vireo state file (no VIREOST magic)");
  const size_t min_header = 8 + 4 + 4 + 8 + 4 + 4;
  if (size_ < min_header + kTrailer) throw StateError(where + " is truncated (" + std::to_string(size_) + " bytes)");
  uint32_t version = uint32_t(get_le(p + 8, 4));
  if (version != kFormatVersion)
    throw StateError(where + " has format version " + std::to_string(version) + "; this Vireo reads version " +
                     std::to_string(kFormatVersion));
  if (std::memcmp(p + size_ - 8, kEndMagic, 8) != 0)
    throw StateError(where + " is truncated or incomplete (no end marker): the save did not finish");
  const uint32_t want_file_crc = uint32_t(get_le(p + size_ - 12, 4));
  if (crc32c(p, size_ - 12) != want_file_crc) throw StateError(where + " is corrupted (file checksum mismatch)");
  // Header.
  uint32_t desc_len = uint32_t(get_le(p + 24, 4));
  if (desc_len > size_ - min_header - kTrailer) throw StateError(where + " is corrupted (bad header length)");
  size_t hdr_end = 28 + desc_len;
  if (crc32c(p, hdr_end) != uint32_t(get_le(p + hdr_end, 4))) throw StateError(where + " is corrupted (header checksum mismatch)");
  if (uint32_t flags = uint32_t(get_le(p + 12, 4)))
    throw StateError(where + " uses features this Vireo does not know (flags " + std::to_string(flags) + ")");
  hash_ = get_le(p + 16, 8);
  config_ = ConfigDesc::parse(std::string(reinterpret_cast<const char*>(p + 28), desc_len));
  if (config_.hash() != hash_) throw StateError(where + " is corrupted (machine description does not match its hash)");
  const size_t data_start = hdr_end + 4;
  // Table.
  const uint64_t table_at = get_le(p + size_ - kTrailer, 8);
  const size_t table_end = size_ - kTrailer;
  if (table_at < data_start || table_at + 8 > table_end) throw StateError(where + " is corrupted (bad section table offset)");
  size_t q = size_t(table_at);
  if (get_le(p + q, 4) != kTablTag) throw StateError(where + " is corrupted (no section table)");
  uint32_t count = uint32_t(get_le(p + q + 4, 4));
  q += 8;
  for (uint32_t i = 0; i < count; i++) {
    if (q + 2 > table_end) throw StateError(where + " is corrupted (section table runs past its end)");
    size_t nlen = size_t(get_le(p + q, 2));
    if (q + 2 + nlen + 24 > table_end) throw StateError(where + " is corrupted (section table runs past its end)");
    std::string name(reinterpret_cast<const char*>(p + q + 2), nlen);
    q += 2 + nlen;
    uint32_t sv = uint32_t(get_le(p + q, 4));
    uint64_t off = get_le(p + q + 4, 8), len = get_le(p + q + 12, 8);
    uint32_t crc = uint32_t(get_le(p + q + 20, 4));
    q += 24;
    // The section's own header sits just before its bytes: check it says the same.
    size_t sh = 4 + 2 + nlen + 4 + 8;
    if (off < data_start + sh || off > table_at || len > table_at - off || table_at - off - len < 4)
      throw StateError(where + " is corrupted (section '" + name + "' lies outside the data)");
    const uint8_t* s = p + off - sh;
    if (get_le(s, 4) != kSectTag || get_le(s + 4, 2) != nlen || std::memcmp(s + 6, name.data(), nlen) != 0 ||
        get_le(s + 6 + nlen, 4) != sv || get_le(s + 10 + nlen, 8) != len || get_le(p + off + len, 4) != crc)
      throw StateError(where + " is corrupted (section '" + name + "' does not match the table)");
    uint32_t c = crc32c(s + 4, sh - 4);
    if (crc32c(p + off, size_t(len), c) != crc) throw StateError(where + " is corrupted (section '" + name + "' checksum mismatch)");
    if (!sections_.emplace(name, Section{sv, {p + off, size_t(len)}}).second)
      throw StateError(where + " is corrupted (section '" + name + "' twice)");
    order_.push_back(name);
  }
  if (q != table_end) throw StateError(where + " is corrupted (bytes after the section table)");
}

StateFile::~StateFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

void StateFile::check_config(const ConfigDesc& machine) const {
  if (machine.hash() == hash_) return;
  std::string d = config_.differences(machine);
  if (d.empty()) d = "the machine description differs";
  throw StateError("the state in '" + path_ + "' was saved from a differently configured machine: " + d);
}

std::vector<std::string> StateFile::names() const { return order_; }

StateReader StateFile::reader(const std::string& name) const {
  auto it = sections_.find(name);
  if (it == sections_.end()) throw StateError("the state file '" + path_ + "' has no section '" + name + "'");
  return StateReader(it->second.data, name, it->second.version);
}

void StateFile::load_ram(const std::string& name, uint8_t* ram, uint64_t size) const {
  StateReader r = reader(name);
  if (r.version() != 1) r.fail("unknown RAM section version");
  uint64_t sz = r.u64();
  if (sz != size) r.fail("RAM is " + std::to_string(sz) + " bytes, this machine has " + std::to_string(size));
  if (r.u32() != kPage) r.fail("unknown page size");
  const uint64_t pages = (size + kPage - 1) / kPage;
  auto bitmap = r.span(size_t((pages + 7) / 8));
  uint64_t body = 0;
  for (uint64_t p = 0; p < pages; p++)
    if (bitmap[p / 8] & (1u << (p % 8))) body += std::min<uint64_t>(kPage, size - p * kPage);
  if (body != r.left()) r.fail("page data is " + std::to_string(r.left()) + " bytes, the bitmap says " + std::to_string(body));
  for (uint64_t p = 0; p < pages; p++) {
    uint8_t* dst = ram + p * kPage;
    size_t len = size_t(std::min<uint64_t>(kPage, size - p * kPage));
    if (bitmap[p / 8] & (1u << (p % 8))) {
      r.bytes(dst, len);
    } else if (len == kPage ? !page_zero(dst) : true) {
      std::memset(dst, 0, len);
    }
  }
  r.finish();
}

}  // namespace vireo::state
