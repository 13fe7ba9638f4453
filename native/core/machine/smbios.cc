#include "machine/smbios.h"

#include <algorithm>
#include <cstring>

namespace vireo::smbios {

namespace {

constexpr uint8_t kMajor = 2, kMinor = 8;
constexpr uint64_t kMiB = 1ull << 20, kKiB = 1ull << 10, k4GiB = 1ull << 32;
constexpr uint64_t kDeviceMax = 16ull << 30;  // one type 17 per 16 GiB, as QEMU splits them
constexpr uint16_t kNoHandle = 0xfffe;        // "not provided" (error information handles)
constexpr uint16_t kUnknownHandle = 0xffff;   // "no such structure" (cache handles)
constexpr uint16_t kHandleArray = 0x1000, kHandleDevice = 0x1100, kHandleMapped = 0x1300;

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One structure: the formatted area (header first) and its string set.
class Structure {
public:
  Structure(uint8_t type, uint8_t length, uint16_t handle) : f_(length, 0) {
    f_[0] = type;
    f_[1] = length;
    w16(2, handle);
  }
  void w8(size_t off, uint8_t v) { f_[off] = v; }
  void w16(size_t off, uint16_t v) {
    f_[off] = uint8_t(v);
    f_[off + 1] = uint8_t(v >> 8);
  }
  void w32(size_t off, uint32_t v) {
    for (int i = 0; i < 4; i++) f_[off + i] = uint8_t(v >> (8 * i));
  }
  void w64(size_t off, uint64_t v) {
    for (int i = 0; i < 8; i++) f_[off + i] = uint8_t(v >> (8 * i));
  }
  void bytes(size_t off, const uint8_t* p, size_t n) { std::memcpy(&f_[off], p, n); }
  // A string field: its 1-based number in the set, or 0 for an empty string.
  void str(size_t off, const std::string& s) {
    if (s.empty()) {
      f_[off] = 0;
      return;
    }
    strings_.push_back(s);
    f_[off] = uint8_t(strings_.size());
  }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out = f_;
    for (const std::string& s : strings_) {
      out.insert(out.end(), s.begin(), s.end());
      out.push_back(0);
    }
    if (strings_.empty()) out.push_back(0);
    out.push_back(0);
    return out;
  }

private:
  std::vector<uint8_t> f_;
  std::vector<std::string> strings_;
};

uint8_t checksum_fix(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; i++) s = uint8_t(s + p[i]);
  return uint8_t(-s);
}

}  // namespace

std::optional<Uuid> parse_uuid(const std::string& t) {
  if (t.size() != 36) return std::nullopt;
  Uuid u{};
  size_t n = 0;
  for (size_t i = 0; i < t.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (t[i] != '-') return std::nullopt;
      i++;
      continue;
    }
    int hi = hexval(t[i]), lo = hexval(t[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    u[n++] = uint8_t(hi << 4 | lo);
    i += 2;
  }
  return n == 16 ? std::optional<Uuid>(u) : std::nullopt;
}

std::string format_uuid(const Uuid& u) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += hex[u[i] >> 4];
    s += hex[u[i] & 15];
  }
  return s;
}

std::array<uint8_t, 16> smbios_uuid_bytes(const Uuid& u) {
  std::array<uint8_t, 16> b = u;
  std::reverse(b.begin(), b.begin() + 4);
  std::reverse(b.begin() + 4, b.begin() + 6);
  std::reverse(b.begin() + 6, b.begin() + 8);
  return b;
}

std::string seabios_version(const std::vector<uint8_t>& img) {
  // SeaBIOS' build puts BUILDINFO ("gcc: (...) ... binutils: ...") and then
  // VERSION next to each other (out/version.c); take the string after it
  // when it looks like a version (starts with a digit, printable).
  static const std::string key = "gcc: ";
  auto it = std::search(img.begin(), img.end(), key.begin(), key.end());
  if (it == img.end()) return "";
  it = std::find(it, img.end(), uint8_t(0));
  if (it == img.end() || ++it == img.end() || *it < '0' || *it > '9') return "";
  std::string v;
  for (; it != img.end() && *it; ++it) {
    if (*it < 0x20 || *it >= 0x7f || v.size() >= 64) return "";
    v += char(*it);
  }
  return v;
}

Tables build(const Config& c) {
  std::vector<std::vector<uint8_t>> structs;

  // Type 0: BIOS Information (2.4+ layout, 0x18 bytes).
  {
    Structure s(0, 0x18, 0x0000);
    s.str(0x04, c.bios_vendor);
    s.str(0x05, c.bios_version);
    s.w16(0x06, 0xe800);  // starting segment, as SeaBIOS reports itself
    s.str(0x08, c.bios_date);
    uint64_t rom64k = std::clamp<uint64_t>((c.bios_rom_bytes + 0xffff) >> 16, 1, 256);
    s.w8(0x09, uint8_t(rom64k - 1));  // ROM size: 64 KiB * (n + 1)
    s.w8(0x0a, 0x08);     // characteristics: bit 3 "not supported" (SeaBIOS, QEMU)
    s.w8(0x13, 0x10 | 0x04);  // ext. byte 2: virtual machine (4), targeted content distribution (2)
    s.w8(0x14, 0);        // system BIOS release
    s.w8(0x15, 0);
    s.w8(0x16, 0xff);     // no embedded controller
    s.w8(0x17, 0xff);
    structs.push_back(s.bytes());
  }
  // Type 1: System Information (2.4+, 0x1b bytes).
  {
    Structure s(1, 0x1b, 0x0100);
    s.str(0x04, c.manufacturer);
    s.str(0x05, c.product);
    s.str(0x06, c.version);
    s.str(0x07, format_uuid(c.uuid));  // serial number: the UUID too (one name for the VM)
    auto ub = smbios_uuid_bytes(c.uuid);
    s.bytes(0x08, ub.data(), 16);
    s.w8(0x18, 0x06);  // wake-up type: power switch
    s.str(0x19, "");
    s.str(0x1a, c.family);
    structs.push_back(s.bytes());
  }
  // Type 3: System Enclosure (2.7+, no contained elements: 0x16 bytes).
  {
    Structure s(3, 0x16, 0x0300);
    s.str(0x04, c.manufacturer);
    s.w8(0x05, 0x03);  // desktop
    s.str(0x06, c.version);
    s.w8(0x09, 0x03);  // boot-up, power supply, thermal state: safe
    s.w8(0x0a, 0x03);
    s.w8(0x0b, 0x03);
    s.w8(0x0c, 0x02);  // security status: unknown
    structs.push_back(s.bytes());
  }
  // Type 4: Processor Information, one per socket (2.6+, 0x2a bytes).
  int sockets = std::max(1, c.sockets);
  int cores = std::clamp(c.cores_per_socket, 1, 255);
  int threads = std::clamp(cores * std::max(1, c.threads_per_core), 1, 255);
  for (int i = 0; i < sockets; i++) {
    Structure s(4, 0x2a, uint16_t(0x0400 + i));
    s.str(0x04, "CPU " + std::to_string(i));
    s.w8(0x05, 0x03);  // central processor
    s.w8(0x06, 0x01);  // family: other (as QEMU)
    s.str(0x07, c.cpu_vendor);
    s.w32(0x08, c.cpuid_signature);
    s.w32(0x0c, c.cpuid_features);
    s.str(0x10, "");
    s.w8(0x11, 0);
    s.w16(0x12, 0);  // external clock unknown
    s.w16(0x14, c.cpu_speed_mhz);
    s.w16(0x16, c.cpu_speed_mhz);
    s.w8(0x18, 0x41);  // socket populated, CPU enabled
    s.w8(0x19, 0x01);  // upgrade: other
    s.w16(0x1a, kUnknownHandle);
    s.w16(0x1c, kUnknownHandle);
    s.w16(0x1e, kUnknownHandle);
    s.w8(0x23, uint8_t(cores));
    s.w8(0x24, uint8_t(cores));
    s.w8(0x25, uint8_t(threads));
    s.w16(0x26, 0x04);    // characteristics: 64-bit capable
    s.w16(0x28, 0x0001);  // family 2: other
    structs.push_back(s.bytes());
  }
  // Type 16: Physical Memory Array (2.7+, 0x17 bytes).
  uint64_t total = c.ram_below_4g + c.ram_above_4g;
  int ndev = int(std::max<uint64_t>(1, (total + kDeviceMax - 1) / kDeviceMax));
  {
    Structure s(16, 0x17, kHandleArray);
    s.w8(0x04, 0x01);  // location: other
    s.w8(0x05, 0x03);  // use: system memory
    s.w8(0x06, 0x03);  // error correction: none
    uint64_t kib = total / kKiB;
    if (kib < 0x80000000ull) {
      s.w32(0x07, uint32_t(kib));
    } else {
      s.w32(0x07, 0x80000000u);
      s.w64(0x0f, total);
    }
    s.w16(0x0b, kNoHandle);
    s.w16(0x0d, uint16_t(ndev));
    structs.push_back(s.bytes());
  }
  // Type 17: Memory Device (2.8, 0x28 bytes).
  for (int i = 0; i < ndev; i++) {
    uint64_t bytes = i + 1 < ndev ? kDeviceMax : total - uint64_t(ndev - 1) * kDeviceMax;
    uint64_t mib = bytes / kMiB;
    Structure s(17, 0x28, uint16_t(kHandleDevice + i));
    s.w16(0x04, kHandleArray);
    s.w16(0x06, kNoHandle);
    s.w16(0x08, 64);  // total and data width, bits
    s.w16(0x0a, 64);
    if (mib < 0x7fff) {
      s.w16(0x0c, uint16_t(mib));
    } else {
      s.w16(0x0c, 0x7fff);
      s.w32(0x1c, uint32_t(mib));
    }
    s.w8(0x0e, 0x09);  // form factor: DIMM
    s.str(0x10, "DIMM " + std::to_string(i));
    s.w8(0x12, 0x07);     // type: RAM
    s.w16(0x13, 0x0002);  // type detail: other
    s.str(0x17, c.manufacturer);
    structs.push_back(s.bytes());
  }
  // Type 19: Memory Array Mapped Address (2.7+, 0x1f bytes), one per RAM range.
  struct Range {
    uint64_t start, len;
  };
  std::vector<Range> ranges;
  if (c.ram_below_4g) ranges.push_back({0, c.ram_below_4g});
  if (c.ram_above_4g) ranges.push_back({k4GiB, c.ram_above_4g});
  for (size_t i = 0; i < ranges.size(); i++) {
    Structure s(19, 0x1f, uint16_t(kHandleMapped + i));
    uint64_t start = ranges[i].start, end = ranges[i].start + ranges[i].len - 1;
    if (end / kKiB < 0xffffffffull) {
      s.w32(0x04, uint32_t(start / kKiB));
      s.w32(0x08, uint32_t(end / kKiB));
    } else {
      s.w32(0x04, 0xffffffffu);
      s.w32(0x08, 0xffffffffu);
      s.w64(0x0f, start);
      s.w64(0x17, end);
    }
    s.w16(0x0c, kHandleArray);
    s.w8(0x0e, uint8_t(ndev));  // partition width: devices that form the range
    structs.push_back(s.bytes());
  }
  // Type 32: System Boot Information (0x0b bytes): no errors detected.
  structs.push_back(Structure(32, 0x0b, 0x2000).bytes());
  // Type 127: End-of-Table.
  structs.push_back(Structure(127, 0x04, 0x7f00).bytes());

  Tables t;
  size_t max_size = 0;
  for (auto& s : structs) {
    max_size = std::max(max_size, s.size());
    t.tables.insert(t.tables.end(), s.begin(), s.end());
  }

  // SMBIOS 2.1 entry point (31 bytes): "_SM_" part (0x00-0x0f) and "_DMI_"
  // part (0x10-0x1e), each with its own checksum.
  std::vector<uint8_t>& a = t.anchor;
  a.assign(0x1f, 0);
  std::memcpy(&a[0], "_SM_", 4);
  a[0x05] = 0x1f;
  a[0x06] = kMajor;
  a[0x07] = kMinor;
  a[0x08] = uint8_t(max_size);
  a[0x09] = uint8_t(max_size >> 8);
  a[0x0a] = 0;  // entry point revision
  std::memcpy(&a[0x10], "_DMI_", 5);
  a[0x16] = uint8_t(t.tables.size());
  a[0x17] = uint8_t(t.tables.size() >> 8);
  // 0x18: structure table address, 0 here; the firmware fills it in.
  a[0x1c] = uint8_t(structs.size());
  a[0x1d] = uint8_t(structs.size() >> 8);
  a[0x1e] = uint8_t(kMajor << 4 | kMinor);  // BCD revision
  a[0x15] = checksum_fix(&a[0x10], 0x0f);
  a[0x04] = checksum_fix(&a[0], 0x10);
  return t;
}

}  // namespace vireo::smbios
