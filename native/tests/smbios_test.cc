// SMBIOS tables as the PC board hands them to SeaBIOS (machine/smbios.h):
// parsed here structure by structure, then decoded by Debian's dmidecode.
#include "machine/smbios.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "check.h"

using namespace vireo;

namespace {

struct Parsed {
  uint8_t type, length;
  uint16_t handle;
  std::vector<uint8_t> formatted;
  std::vector<std::string> strings;
  std::string str(size_t off) const {
    uint8_t n = formatted.at(off);
    return n == 0 ? std::string() : strings.at(n - 1);
  }
  uint16_t u16(size_t off) const { return uint16_t(formatted.at(off) | formatted.at(off + 1) << 8); }
  uint32_t u32(size_t off) const { return uint32_t(u16(off)) | uint32_t(u16(off + 2)) << 16; }
};

// Walks the structure table the way DSP0134 6.1.3 lays it out; fails the
// test on any structure that runs past the end or lacks its double NUL.
std::vector<Parsed> parse(const std::vector<uint8_t>& t, size_t* max_size) {
  std::vector<Parsed> out;
  size_t p = 0;
  *max_size = 0;
  while (p < t.size()) {
    CHECK(p + 4 <= t.size());
    Parsed s;
    s.type = t[p];
    s.length = t[p + 1];
    s.handle = uint16_t(t[p + 2] | t[p + 3] << 8);
    CHECK(s.length >= 4);
    CHECK(p + s.length + 2 <= t.size());
    s.formatted.assign(t.begin() + long(p), t.begin() + long(p + s.length));
    size_t q = p + s.length;
    if (t[q] == 0) {
      CHECK_EQ(t[q + 1], 0);  // no strings: two NULs
      q += 2;
    } else {
      while (true) {
        CHECK(q < t.size());
        size_t e = q;
        while (e < t.size() && t[e]) e++;
        CHECK(e < t.size());
        s.strings.emplace_back(reinterpret_cast<const char*>(&t[q]), e - q);
        q = e + 1;
        CHECK(q < t.size());
        if (t[q] == 0) {
          q++;
          break;
        }
      }
    }
    *max_size = std::max(*max_size, q - p);
    p = q;
    out.push_back(std::move(s));
  }
  return out;
}

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; i++) s = uint8_t(s + p[i]);
  return s;
}

smbios::Config sample() {
  smbios::Config c;
  c.uuid = *smbios::parse_uuid("6f1a7b2c-3d4e-4f50-8a61-72839405a6b7");
  c.ram_below_4g = 512ull << 20;
  c.sockets = 2;
  c.cpuid_signature = 0x000306a9;
  c.cpuid_features = 0x0f8bfbff;
  c.cpu_vendor = "GenuineIntel";
  c.bios_version = "1.16.2-debian-1.16.2-1";
  return c;
}

}  // namespace

TEST(uuid_text_round_trip_and_smbios_byte_order) {
  auto u = smbios::parse_uuid("00112233-4455-6677-8899-AABBCCDDEEFF");
  CHECK(u.has_value());
  CHECK_EQ(smbios::format_uuid(*u), std::string("00112233-4455-6677-8899-aabbccddeeff"));
  auto b = smbios::smbios_uuid_bytes(*u);
  const uint8_t want[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
                            0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  CHECK(std::memcmp(b.data(), want, 16) == 0);
  CHECK(!smbios::parse_uuid("00112233-4455-6677-8899-AABBCCDDEEF").has_value());
  CHECK(!smbios::parse_uuid("00112233x4455-6677-8899-AABBCCDDEEFF").has_value());
  CHECK(!smbios::parse_uuid("0011223g-4455-6677-8899-AABBCCDDEEFF").has_value());
}

TEST(entry_point_checksums_and_counts) {
  auto t = smbios::build(sample());
  const auto& a = t.anchor;
  CHECK_EQ(a.size(), size_t(31));
  CHECK(std::memcmp(a.data(), "_SM_", 4) == 0);
  CHECK(std::memcmp(&a[0x10], "_DMI_", 5) == 0);
  CHECK_EQ(a[0x05], 0x1f);
  CHECK_EQ(sum(a.data(), 0x10), 0);        // what SeaBIOS checks
  CHECK_EQ(sum(a.data(), a[0x05]), 0);     // what DSP0134 and dmidecode check
  CHECK_EQ(sum(&a[0x10], 0x0f), 0);        // intermediate checksum
  CHECK_EQ(a[0x06], 2);
  CHECK_EQ(a[0x07], 8);
  CHECK_EQ(a[0x1e], 0x28);
  CHECK_EQ(size_t(a[0x16] | a[0x17] << 8), t.tables.size());  // SeaBIOS requires equality
  CHECK_EQ(uint32_t(a[0x18] | a[0x19] << 8 | a[0x1a] << 16 | a[0x1b] << 24), 0u);
  size_t max_size;
  auto s = parse(t.tables, &max_size);
  CHECK_EQ(size_t(a[0x1c] | a[0x1d] << 8), s.size());
  CHECK_EQ(size_t(a[0x08] | a[0x09] << 8), max_size);
}

TEST(every_type_present_with_its_length_and_strings) {
  auto t = smbios::build(sample());
  size_t max_size;
  auto s = parse(t.tables, &max_size);
  const std::map<int, int> lengths = {{0, 0x18},  {1, 0x1b},  {3, 0x16},  {4, 0x2a},  {16, 0x17},
                                      {17, 0x28}, {19, 0x1f}, {32, 0x0b}, {127, 0x04}};
  std::map<int, int> count;
  std::map<uint16_t, int> handles;
  for (auto& x : s) {
    CHECK(lengths.count(x.type));
    CHECK_EQ(int(x.length), lengths.at(x.type));
    count[x.type]++;
    handles[x.handle]++;
  }
  for (auto& [type, len] : lengths) CHECK(count[type] >= 1);
  CHECK_EQ(count[4], 2);  // one per socket
  CHECK_EQ(count[17], 1);
  CHECK_EQ(count[19], 1);
  CHECK_EQ(int(s.back().type), 127);
  for (auto& [h, n] : handles) CHECK_EQ(n, 1);

  for (auto& x : s) {
    if (x.type == 0) {
      CHECK_EQ(x.str(0x04), std::string("SeaBIOS"));
      CHECK_EQ(x.str(0x05), std::string("1.16.2-debian-1.16.2-1"));
      CHECK_EQ(x.u16(0x06), 0xe800);
    } else if (x.type == 1) {
      CHECK_EQ(x.str(0x04), std::string("Vireo"));
      CHECK_EQ(x.str(0x05), std::string("Vireo PC (i440FX + PIIX, 1996)"));
      CHECK_EQ(x.str(0x07), std::string("6f1a7b2c-3d4e-4f50-8a61-72839405a6b7"));
      const uint8_t want[16] = {0x2c, 0x7b, 0x1a, 0x6f, 0x4e, 0x3d, 0x50, 0x4f,
                                0x8a, 0x61, 0x72, 0x83, 0x94, 0x05, 0xa6, 0xb7};
      CHECK(std::memcmp(&x.formatted[0x08], want, 16) == 0);
      CHECK_EQ(x.formatted[0x19], 0);  // empty SKU: no string
    } else if (x.type == 4) {
      CHECK(x.str(0x04) == "CPU 0" || x.str(0x04) == "CPU 1");
      CHECK_EQ(x.str(0x07), std::string("GenuineIntel"));
      CHECK_EQ(x.u32(0x08), 0x000306a9u);
      CHECK_EQ(x.formatted[0x23], 1);  // cores
      CHECK_EQ(x.formatted[0x18], 0x41);
    } else if (x.type == 16) {
      CHECK_EQ(x.u32(0x07), 512u * 1024);  // KiB
      CHECK_EQ(x.u16(0x0d), 1);
    } else if (x.type == 17) {
      CHECK_EQ(x.u16(0x0c), 512);  // MiB
      CHECK_EQ(x.u16(0x04), 0x1000);
      CHECK_EQ(x.str(0x10), std::string("DIMM 0"));
    } else if (x.type == 19) {
      CHECK_EQ(x.u32(0x04), 0u);
      CHECK_EQ(x.u32(0x08), 512u * 1024 - 1);
    }
    // Every string field names a string of the set, and every string is named.
    static const std::map<int, std::vector<size_t>> str_fields = {
        {0, {0x04, 0x05, 0x08}}, {1, {0x04, 0x05, 0x06, 0x07, 0x19, 0x1a}}, {3, {0x04, 0x06, 0x07, 0x08, 0x15}},
        {4, {0x04, 0x07, 0x10, 0x20, 0x21, 0x22}}, {17, {0x10, 0x11, 0x17, 0x18, 0x19, 0x1a}}};
    std::vector<bool> named(x.strings.size(), false);
    if (str_fields.count(x.type)) {
      for (size_t off : str_fields.at(x.type)) {
        uint8_t n = x.formatted[off];
        CHECK(n <= x.strings.size());
        if (n) named[n - 1] = true;
      }
    }
    for (bool b : named) CHECK(b);
  }
}

TEST(large_memory_splits_devices_and_ranges) {
  smbios::Config c = sample();
  c.ram_below_4g = 3ull << 30;
  c.ram_above_4g = 37ull << 30;  // 40 GiB in all: 16 + 16 + 8
  c.sockets = 1;
  auto t = smbios::build(c);
  size_t max_size;
  auto s = parse(t.tables, &max_size);
  std::vector<Parsed> dev, map;
  for (auto& x : s) {
    if (x.type == 17) dev.push_back(x);
    if (x.type == 19) map.push_back(x);
    if (x.type == 16) {
      CHECK_EQ(x.u32(0x07), uint32_t(40ull << 20));
      CHECK_EQ(x.u16(0x0d), 3);
    }
  }
  CHECK_EQ(dev.size(), size_t(3));
  CHECK_EQ(dev[0].u16(0x0c), 16384);  // MiB; below 0x7fff, so no extended size
  CHECK_EQ(dev[0].u32(0x1c), 0u);
  CHECK_EQ(dev[2].u16(0x0c), 8192);
  CHECK_EQ(map.size(), size_t(2));
  CHECK_EQ(map[1].u32(0x04), uint32_t(4ull << 20));  // 4 GiB in KiB
  CHECK_EQ(map[1].u32(0x08), uint32_t((41ull << 20) - 1));
}

TEST(seabios_version_from_the_image) {
  std::string img = std::string(100, '\xff') + "SeaBIOS (version %s)\n" + std::string(1, 0) +
                    "gcc: (Debian 12.2.0-14) 12.2.0 binutils: 2.40" + std::string(1, 0) + "1.16.2-debian-1.16.2-1" +
                    std::string(10, 0);
  CHECK_EQ(smbios::seabios_version(std::vector<uint8_t>(img.begin(), img.end())),
           std::string("1.16.2-debian-1.16.2-1"));
  CHECK_EQ(smbios::seabios_version(std::vector<uint8_t>(50, 0)), std::string());
  FILE* f = std::fopen("/usr/share/seabios/bios.bin", "rb");
  if (!f) return;
  std::vector<uint8_t> bios(1 << 20);
  bios.resize(std::fread(bios.data(), 1, bios.size(), f));
  std::fclose(f);
  std::string v = smbios::seabios_version(bios);
  std::printf("  Debian's bios.bin says version \"%s\"\n", v.c_str());
  CHECK(!v.empty() && v[0] >= '0' && v[0] <= '9');
}

// dmidecode --dump-bin writes the 2.1 entry point at offset 0 with its
// structure table address changed to 32, and the table at offset 32;
// --from-dump reads that back. Build such a file from Vireo's tables and
// let Debian's decoder read it.
TEST(dmidecode_decodes_the_tables) {
  const char* dmidecode = "/usr/sbin/dmidecode";
  if (access(dmidecode, X_OK) != 0) SKIP("/usr/sbin/dmidecode is missing (Debian package dmidecode)");
  smbios::Config c = sample();
  c.ram_below_4g = 3ull << 30;
  c.ram_above_4g = 1ull << 30;
  c.sockets = 2;
  c.cores_per_socket = 2;
  auto t = smbios::build(c);
  std::vector<uint8_t> dump(32, 0);
  std::memcpy(dump.data(), t.anchor.data(), t.anchor.size());
  dump[0x18] = 32;
  dump[0x15] = 0;
  dump[0x15] = uint8_t(-sum(&dump[0x10], 0x0f));
  dump[0x04] = 0;
  dump[0x04] = uint8_t(-sum(dump.data(), 0x10));
  dump.insert(dump.end(), t.tables.begin(), t.tables.end());
  char path[] = "/tmp/vireo-smbios-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, dump.data(), dump.size()), ssize_t(dump.size()));
  close(fd);
  std::string out;
  if (FILE* p = popen((std::string(dmidecode) + " --from-dump " + path + " 2>&1").c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  unlink(path);
  auto has = [&](const std::string& s) {
    bool ok = out.find(s) != std::string::npos;
    if (!ok) std::printf("dmidecode output lacks \"%s\":\n%s\n", s.c_str(), out.c_str());
    return ok;
  };
  CHECK(has("SMBIOS 2.8 present."));
  CHECK(has("UUID: 6f1a7b2c-3d4e-4f50-8a61-72839405a6b7"));
  CHECK(has("Product Name: Vireo PC (i440FX + PIIX, 1996)"));
  CHECK(has("Manufacturer: Vireo"));
  CHECK(has("Vendor: SeaBIOS"));
  CHECK(has("Maximum Capacity: 4 GB"));
  CHECK(has("Size: 4 GB"));
  CHECK(has("Range Size: 3 GB"));
  CHECK(has("Range Size: 1 GB"));
  CHECK(has("ID: A9 06 03 00 FF FB 8B 0F"));
  CHECK(has("Core Count: 2"));
  CHECK(has("Thread Count: 2"));
  size_t cpus = 0;
  for (size_t p = 0; (p = out.find("Processor Information", p)) != std::string::npos; p++) cpus++;
  CHECK_EQ(cpus, size_t(2));
  for (const char* bad : {"Invalid", "nvalid", "rong", "runcated", "OUT OF SPEC", "Bad ", "Unknown Type"})
    CHECK(out.find(bad) == std::string::npos);
}
