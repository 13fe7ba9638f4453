// The saved-state file ("vireo state", docs/state.md): a running machine's
// RAM, vCPU and interrupt-controller state and every device's state, so a
// later process can resume it.
//
//   header   magic "VIREOST\0", u32 format version, u32 flags (0), u64 config
//            hash, u32 length + the machine description ("key=value" lines:
//            ram, cpus, board, devices), u32 CRC32C of the header
//   sections one after another: u32 'SECT', u16 name length, name, u32
//            version, u64 length, the bytes, u32 CRC32C (name .. bytes)
//   table    u32 'TABL', u32 count, per section: u16 name length, name, u32
//            version, u64 offset of its bytes, u64 length, u32 CRC32C
//   trailer  u64 offset of the table, u32 CRC32C of the whole file before
//            it, magic "VIREOEND"
// The table sits at the end so the writer streams (RAM goes out in large
// sequential writes); the reader maps the file, checks the trailer, the whole
// file's CRC, the header and every section's CRC and bounds before anything is
// used. All integers are little-endian. Sections are named by what they hold
// ("ram", "cpu0", "vm", "com1", ...) and carry their own version, so one
// device's layout can change without a new file format.
//
// Device state goes through StateWriter / StateReader: an in-memory byte
// buffer and a bounds-checked cursor over one section's bytes.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace vireo::state {

constexpr uint32_t kFormatVersion = 1;
constexpr char kMagic[8] = {'V', 'I', 'R', 'E', 'O', 'S', 'T', '\0'};
constexpr char kEndMagic[8] = {'V', 'I', 'R', 'E', 'O', 'E', 'N', 'D'};

// Every problem with a state file or a section: the message says what and where.
class StateError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// What the state belongs to: the parts of the machine's configuration that
// must match for the state to make sense (RAM size, vCPU count, board, the
// devices list). Ordered "key=value" pairs; the hash is over their text.
struct ConfigDesc {
  std::vector<std::pair<std::string, std::string>> items;
  void set(const std::string& k, const std::string& v);
  std::string text() const;  // "k=v\n" per item
  static ConfigDesc parse(const std::string& text);
  uint64_t hash() const;  // FNV-1a 64 of text()
  // Empty when equal; else one line per difference, e.g. "RAM size: the
  // state file has 256 MiB, this machine has 512 MiB".
  std::string differences(const ConfigDesc& machine) const;
};

// Device-level writer: appends little-endian values to a buffer.
class StateWriter {
public:
  void u8(uint8_t v) { bytes(&v, 1); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void u16(uint16_t v) { le(v); }
  void u32(uint32_t v) { le(v); }
  void u64(uint64_t v) { le(v); }
  void i32(int32_t v) { le(uint32_t(v)); }
  void i64(int64_t v) { le(uint64_t(v)); }
  void bytes(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  // A length-prefixed blob (u32 length).
  void blob(std::span<const uint8_t> b) {
    u32(uint32_t(b.size()));
    bytes(b.data(), b.size());
  }
  void str(const std::string& s) { blob({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  // A memory area, sparse, as the `ram` section stores RAM: u64 size, u32
  // page size (4096), the page bitmap (bit set = page follows), then the
  // pages with their bit set, in order. All-zero pages are left out.
  void pages(const uint8_t* mem, uint64_t size) {
    constexpr uint64_t kPage = 4096;
    const uint64_t n = (size + kPage - 1) / kPage;
    u64(size);
    u32(uint32_t(kPage));
    std::vector<uint8_t> bitmap((n + 7) / 8, 0);
    auto zero = [&](uint64_t i) {
      const uint64_t len = std::min(kPage, size - i * kPage);
      for (uint64_t k = 0; k < len; k++)
        if (mem[i * kPage + k]) return false;
      return true;
    };
    for (uint64_t i = 0; i < n; i++)
      if (!zero(i)) bitmap[i / 8] |= uint8_t(1u << (i % 8));
    bytes(bitmap.data(), bitmap.size());
    for (uint64_t i = 0; i < n; i++)
      if (bitmap[i / 8] >> (i % 8) & 1) bytes(mem + i * kPage, std::min(kPage, size - i * kPage));
  }
  const std::vector<uint8_t>& data() const { return buf_; }
  std::vector<uint8_t> take() { return std::move(buf_); }

private:
  template <class T>
  void le(T v) {
    uint8_t b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); i++) b[i] = uint8_t(uint64_t(v) >> (8 * i));
    bytes(b, sizeof b);
  }
  std::vector<uint8_t> buf_;
};

// Device-level reader over one section: every read is bounds-checked and
// throws StateError naming the section and the offset.
class StateReader {
public:
  StateReader(std::span<const uint8_t> data, std::string name = "state", uint32_t version = 0)
      : d_(data), name_(std::move(name)), version_(version) {}
  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint8_t u8() {
    uint8_t v;
    bytes(&v, 1);
    return v;
  }
  bool boolean() {
    uint8_t v = u8();
    if (v > 1) fail("a flag is " + std::to_string(v) + ", not 0 or 1");
    return v;
  }
  uint16_t u16() { return le<uint16_t>(); }
  uint32_t u32() { return le<uint32_t>(); }
  uint64_t u64() { return le<uint64_t>(); }
  int32_t i32() { return int32_t(le<uint32_t>()); }
  int64_t i64() { return int64_t(le<uint64_t>()); }
  void bytes(void* p, size_t n) {
    need(n);
    std::memcpy(p, d_.data() + pos_, n);
    pos_ += n;
  }
  std::span<const uint8_t> span(size_t n) {
    need(n);
    auto s = d_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  // A blob of at most `max` bytes.
  std::vector<uint8_t> blob(size_t max) {
    uint32_t n = u32();
    if (n > max) fail("a field is " + std::to_string(n) + " bytes, at most " + std::to_string(max) + " expected");
    auto s = span(n);
    return {s.begin(), s.end()};
  }
  std::string str(size_t max) {
    auto b = blob(max);
    return {b.begin(), b.end()};
  }
  // What StateWriter::pages wrote, checked (size `size`, page size, bitmap
  // bits past the end clear, the data all there) but not yet applied: the
  // caller checks the rest of its section, then apply()s.
  struct Pages {
    uint64_t size = 0;
    std::span<const uint8_t> bitmap, data;
    // Copies the present pages to `mem` (`size` bytes) and zeroes the others.
    void apply(uint8_t* mem) const {
      constexpr uint64_t kPage = 4096;
      const uint64_t n = (size + kPage - 1) / kPage;
      const uint8_t* src = data.data();
      for (uint64_t i = 0; i < n; i++) {
        const uint64_t len = std::min(kPage, size - i * kPage);
        if (bitmap[i / 8] >> (i % 8) & 1) {
          std::memcpy(mem + i * kPage, src, len);
          src += len;
        } else {
          std::memset(mem + i * kPage, 0, len);
        }
      }
    }
  };
  Pages pages(uint64_t size) {
    constexpr uint64_t kPage = 4096;
    Pages p;
    p.size = u64();
    if (p.size != size) fail("a memory area of " + std::to_string(p.size) + " bytes, this device has " + std::to_string(size));
    if (u32() != kPage) fail("page size is not 4096");
    const uint64_t n = (size + kPage - 1) / kPage;
    p.bitmap = span((n + 7) / 8);
    uint64_t present = 0, bytes_wanted = 0;
    for (uint64_t i = 0; i < p.bitmap.size() * 8; i++) {
      if (!(p.bitmap[i / 8] >> (i % 8) & 1)) continue;
      if (i >= n) fail("page bitmap has bits past the end");
      present++;
      bytes_wanted += std::min(kPage, size - i * kPage);
    }
    p.data = span(bytes_wanted);
    (void)present;
    return p;
  }
  size_t left() const { return d_.size() - pos_; }
  // Call after the last field: bytes left over mean a layout mismatch.
  void finish() const {
    if (left()) fail(std::to_string(left()) + " unread bytes at the end");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw StateError("state section '" + name_ + "' (version " + std::to_string(version_) + "): " + what + " (at byte " +
                     std::to_string(pos_) + " of " + std::to_string(d_.size()) + ")");
  }

private:
  void need(size_t n) const {
    if (n > left()) fail("truncated: " + std::to_string(n) + " bytes wanted, " + std::to_string(left()) + " left");
  }
  template <class T>
  T le() {
    uint8_t b[sizeof(T)];
    bytes(b, sizeof b);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); i++) v |= uint64_t(b[i]) << (8 * i);
    return T(v);
  }
  std::span<const uint8_t> d_;
  size_t pos_ = 0;
  std::string name_;
  uint32_t version_;
};

// Writes a state file: header, then sections, then finish(). The file is
// written as PATH.partial and renamed over PATH only by finish(), so a failed
// save never leaves a half file under the name asked for.
class StateFileWriter {
public:
  StateFileWriter(const std::string& path, const ConfigDesc& config);
  ~StateFileWriter();  // without finish(): removes the partial file
  StateFileWriter(const StateFileWriter&) = delete;
  StateFileWriter& operator=(const StateFileWriter&) = delete;

  void section(const std::string& name, uint32_t version, std::span<const uint8_t> bytes);
  // Guest RAM, sparse: u64 size, u32 page size, the page bitmap (bit set =
  // page follows), then the pages with their bit set, in order. All-zero
  // pages are left out; runs of pages go out in one write each.
  void ram_section(const std::string& name, const uint8_t* ram, uint64_t size);
  void finish();

private:
  void write(const void* p, size_t n);  // appends, updating the file CRC
  void begin_section(const std::string& name, uint32_t version, uint64_t len, uint32_t& crc);
  struct Entry {
    std::string name;
    uint32_t version;
    uint64_t offset, length;
    uint32_t crc;
  };
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t pos_ = 0;
  uint32_t file_crc_ = 0;
  std::vector<Entry> entries_;
  bool done_ = false;
};

// Reads a state file: maps it and checks everything (trailer, whole-file CRC,
// header, format version, section table, every section's bounds and CRC) in
// the constructor, which throws StateError with a message for the user.
class StateFile {
public:
  explicit StateFile(const std::string& path);
  ~StateFile();
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  const ConfigDesc& config() const { return config_; }
  uint64_t config_hash() const { return hash_; }
  // Throws StateError listing what differs when `machine` is not the
  // configuration the state was saved with.
  void check_config(const ConfigDesc& machine) const;
  bool has(const std::string& name) const { return sections_.count(name) != 0; }
  std::vector<std::string> names() const;
  // A section's reader; throws StateError when it is missing.
  StateReader reader(const std::string& name) const;
  // Loads a ram_section into `ram` (`size` bytes, must match): pages not in
  // the file are zeroed.
  void load_ram(const std::string& name, uint8_t* ram, uint64_t size) const;

private:
  struct Section {
    uint32_t version;
    std::span<const uint8_t> data;
  };
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  ConfigDesc config_;
  uint64_t hash_ = 0;
  std::map<std::string, Section> sections_;
  std::vector<std::string> order_;
};

}  // namespace vireo::state
