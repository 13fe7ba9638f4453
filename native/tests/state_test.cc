// The state-file format (machine/state.h): round trip, sparse RAM, and every
// kind of bad file giving a clear StateError.
#include "check.h"
#include "machine/state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using namespace vireo::state;

namespace {

std::string tmp_path(const char* tag) { return "/tmp/vireo_state_test_" + std::to_string(getpid()) + "_" + tag; }

ConfigDesc desc(uint64_t ram = 64ull << 20, int cpus = 1, const char* devices = "com1,com2,debugcon") {
  ConfigDesc d;
  d.set("ram", std::to_string(ram));
  d.set("cpus", std::to_string(cpus));
  d.set("board", "flat");
  d.set("devices", devices);
  return d;
}

std::vector<uint8_t> slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// A 1 MiB "RAM" with a few non-zero pages, including the last one.
std::vector<uint8_t> sample_ram() {
  std::vector<uint8_t> ram(1 << 20, 0);
  for (size_t i = 0; i < 4096; i++) ram[i] = uint8_t(i * 7 + 1);
  ram[5 * 4096 + 100] = 0x55;
  ram[6 * 4096] = 0x66;
  ram[ram.size() - 1] = 0xee;
  return ram;
}

std::string write_sample(const char* tag) {
  std::string p = tmp_path(tag);
  StateFileWriter w(p, desc());
  StateWriter a;
  a.u8(1);
  a.u16(0x1234);
  a.u32(0xdeadbeef);
  a.u64(0x0123456789abcdefull);
  a.i64(-5);
  a.boolean(true);
  a.str("hello");
  w.section("dev-a", 3, a.data());
  w.section("empty", 1, {});
  auto ram = sample_ram();
  w.ram_section("ram", ram.data(), ram.size());
  w.finish();
  return p;
}

std::string error_of(const std::string& path) {
  try {
    StateFile f(path);
  } catch (const StateError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

}  // namespace

TEST(round_trip) {
  std::string p = write_sample("rt");
  StateFile f(p);
  CHECK_EQ(f.config().text(), desc().text());
  f.check_config(desc());
  CHECK(f.has("dev-a") && f.has("empty") && f.has("ram"));
  CHECK_EQ(f.names().size(), size_t(3));
  StateReader r = f.reader("dev-a");
  CHECK_EQ(r.version(), 3u);
  CHECK_EQ(r.u8(), uint8_t(1));
  CHECK_EQ(r.u16(), uint16_t(0x1234));
  CHECK_EQ(r.u32(), 0xdeadbeefu);
  CHECK_EQ(r.u64(), 0x0123456789abcdefull);
  CHECK_EQ(r.i64(), int64_t(-5));
  CHECK(r.boolean());
  CHECK_EQ(r.str(16), std::string("hello"));
  r.finish();
  CHECK_EQ(f.reader("empty").left(), size_t(0));
  // RAM: pages not in the file are zeroed, the others copied.
  std::vector<uint8_t> ram(1 << 20, 0xaa);
  f.load_ram("ram", ram.data(), ram.size());
  CHECK(ram == sample_ram());
  // Sparse: 4 non-zero pages of 256.
  auto bytes = slurp(p);
  CHECK(bytes.size() < 5 * 4096 + 1024);
  bool threw = false;
  try {
    f.reader("missing");
  } catch (const StateError& e) {
    threw = contains(e.what(), "no section 'missing'");
  }
  CHECK(threw);
  std::remove(p.c_str());
}

TEST(reader_bounds) {
  std::vector<uint8_t> b = {1, 2, 3};
  StateReader r(b, "com1", 1);
  CHECK_EQ(r.u16(), uint16_t(0x0201));
  std::string msg;
  try {
    r.u32();
  } catch (const StateError& e) {
    msg = e.what();
  }
  CHECK(contains(msg.c_str(), "com1") && contains(msg, "truncated"));
  StateReader r2(b, "x", 1);
  r2.u8();
  msg.clear();
  try {
    r2.finish();
  } catch (const StateError& e) {
    msg = e.what();
  }
  CHECK(contains(msg, "2 unread bytes"));
  std::vector<uint8_t> flag = {2};
  StateReader r3(flag, "x", 1);
  msg.clear();
  try {
    r3.boolean();
  } catch (const StateError& e) {
    msg = e.what();
  }
  CHECK(contains(msg, "not 0 or 1"));
}

TEST(truncated_every_length) {
  std::string p = write_sample("tr");
  auto bytes = slurp(p);
  std::string q = tmp_path("tr2");
  // Every cut gives an error, never a crash or a silent load.
  for (size_t n = 0; n < bytes.size(); n += (n < 256 || bytes.size() - n < 256) ? 1 : 97) {
    spit(q, {bytes.begin(), bytes.begin() + long(n)});
    std::string e = error_of(q);
    if (e.empty()) {
      std::fprintf(stderr, "cut at %zu of %zu loaded\n", n, bytes.size());
      CHECK(false);
    }
  }
  spit(q, {bytes.begin(), bytes.end() - 1});
  CHECK(contains(error_of(q), "truncated"));
  std::remove(p.c_str());
  std::remove(q.c_str());
}

TEST(bit_flips) {
  std::string p = write_sample("bf");
  auto bytes = slurp(p);
  std::string q = tmp_path("bf2");
  for (size_t i = 0; i < bytes.size(); i += (i < 200 || bytes.size() - i < 300) ? 1 : 61) {
    auto b = bytes;
    b[i] ^= 0x10;
    spit(q, b);
    std::string e = error_of(q);
    if (e.empty()) {
      std::fprintf(stderr, "flip at %zu of %zu loaded\n", i, bytes.size());
      CHECK(false);
    }
  }
  // A flip inside RAM data: the file checksum catches it.
  auto b = bytes;
  b[bytes.size() / 2] ^= 1;
  spit(q, b);
  CHECK(contains(error_of(q), "corrupted"));
  std::remove(p.c_str());
  std::remove(q.c_str());
}

TEST(wrong_magic_and_version) {
  std::string p = write_sample("mv");
  auto bytes = slurp(p);
  std::string q = tmp_path("mv2");
  auto b = bytes;
  b[0] = 'X';
  spit(q, b);
  CHECK(contains(error_of(q), "not a Vireo state file"));
  spit(q, {'h', 'e', 'l', 'l', 'o'});
  CHECK(contains(error_of(q), "not a Vireo state file"));
  b = bytes;
  b[8] = 2;  // format version 2
  spit(q, b);
  std::string e = error_of(q);
  CHECK(contains(e, "format version 2") && contains(e, "reads version 1"));
  CHECK(contains(error_of(tmp_path("does-not-exist")), "cannot open"));
  std::remove(p.c_str());
  std::remove(q.c_str());
}

TEST(config_mismatch_names_what_differs) {
  std::string p = write_sample("cfg");
  StateFile f(p);
  auto msg = [&](const ConfigDesc& d) {
    try {
      f.check_config(d);
    } catch (const StateError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_EQ(msg(desc()), std::string());
  std::string e = msg(desc(128ull << 20));
  CHECK(contains(e, "RAM size: the state file has 64 MiB, this machine has 128 MiB"));
  e = msg(desc(64ull << 20, 2));
  CHECK(contains(e, "vCPU count: the state file has 1, this machine has 2"));
  CHECK(!contains(e, "RAM"));
  e = msg(desc(64ull << 20, 1, "com1,com2,debugcon,virtio-blk@5"));
  CHECK(contains(e, "only in this machine: virtio-blk@5"));
  e = msg(desc(64ull << 20, 1, "com1,debugcon"));
  CHECK(contains(e, "only in the state file: com2"));
  e = msg(desc(32ull << 20, 4));
  CHECK(contains(e, "RAM size") && contains(e, "vCPU count"));
  std::remove(p.c_str());
}

TEST(failed_save_leaves_no_file) {
  std::string p = tmp_path("partial");
  {
    StateFileWriter w(p, desc());
    w.section("a", 1, {});
    // no finish(): an error mid-save
  }
  CHECK(access(p.c_str(), F_OK) != 0);
  CHECK(access((p + ".partial").c_str(), F_OK) != 0);
  bool threw = false;
  try {
    StateFileWriter w(p, desc());
    w.section("a", 1, {});
    w.section("a", 1, {});
  } catch (const StateError& e) {
    threw = contains(e.what(), "twice");
  }
  CHECK(threw);
}

TEST(crc32c_known_value) {
  // The CRC-32C check value (RFC 3720 / iSCSI): "123456789" -> 0xe3069283.
  CHECK_EQ(crc32c("123456789", 9), 0xe3069283u);
  // Incremental equals one shot.
  CHECK_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xe3069283u);
}
