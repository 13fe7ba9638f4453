#include "bus/bus.h"

#include <memory>
#include <vector>

#include "check.h"

using namespace vireo;

namespace {
struct Recorder : IoDevice {
  std::vector<std::pair<uint64_t, uint64_t>> writes;  // offset, value
  uint64_t last_read_offset = ~0ull;
  void read(uint64_t off, std::span<uint8_t> d) override {
    last_read_offset = off;
    u64_to_span(0x1122334455667788ull + off, d);
  }
  void write(uint64_t off, std::span<const uint8_t> d) override { writes.push_back({off, span_to_u64(d)}); }
};
}  // namespace

TEST(dispatch_by_range_gives_offsets) {
  Bus bus;
  auto a = std::make_shared<Recorder>();
  auto b = std::make_shared<Recorder>();
  CHECK(bus.insert(a, 0x3f8, 8, "com1"));
  CHECK(bus.insert(b, 0x2f8, 8, "com2"));
  uint8_t v = 0x41;
  CHECK(bus.write(0x3fb, {&v, 1}));
  CHECK_EQ(a->writes.size(), size_t(1));
  CHECK_EQ(a->writes[0].first, uint64_t(3));
  CHECK_EQ(a->writes[0].second, uint64_t(0x41));
  CHECK(b->writes.empty());
  uint8_t buf[2];
  CHECK(bus.read(0x2f9, buf));
  CHECK_EQ(b->last_read_offset, uint64_t(1));
  CHECK_EQ(buf[0], uint8_t(0x89));
}

TEST(unclaimed_reads_all_ones) {
  Bus bus;
  uint8_t buf[4] = {0, 0, 0, 0};
  CHECK(!bus.read(0x1234, buf));
  CHECK_EQ(buf[0], uint8_t(0xff));
  CHECK_EQ(buf[3], uint8_t(0xff));
  uint8_t v = 1;
  CHECK(!bus.write(0x1234, {&v, 1}));
}

TEST(overlap_rejected_and_edges_exact) {
  Bus bus;
  auto a = std::make_shared<Recorder>();
  CHECK(bus.insert(a, 0x100, 0x10));
  CHECK(!bus.insert(a, 0x10f, 1));
  CHECK(!bus.insert(a, 0xf8, 0x9));
  CHECK(!bus.insert(a, 0x0, 0x1000));
  CHECK(bus.insert(a, 0x110, 1));
  CHECK(bus.insert(a, 0xff, 1));
  CHECK(!bus.insert(a, 0x200, 0));
  CHECK(bus.device_at(0x10f) == a);
  CHECK(bus.device_at(0x111) == nullptr);
}

TEST(remove_and_reinsert_like_a_bar_move) {
  Bus bus;
  auto a = std::make_shared<Recorder>();
  CHECK(bus.insert(a, 0xfebf0000, 0x1000, "bar"));
  CHECK(bus.remove(0xfebf0000));
  CHECK(!bus.remove(0xfebf0000));
  CHECK(bus.device_at(0xfebf0000) == nullptr);
  CHECK(bus.insert(a, 0xfe000000, 0x1000, "bar"));
  uint8_t v[4] = {1, 2, 3, 4};
  CHECK(bus.write(0xfe000010, v));
  CHECK_EQ(a->writes.back().first, uint64_t(0x10));
  CHECK_EQ(a->writes.back().second, uint64_t(0x04030201));
}

TEST(device_may_remap_itself_from_its_handler) {
  Bus bus;
  struct Mover : IoDevice {
    Bus* bus;
    std::shared_ptr<IoDevice> self;
    void read(uint64_t, std::span<uint8_t> d) override { u64_to_span(7, d); }
    void write(uint64_t, std::span<const uint8_t> d) override {
      bus->remove(0x1000);
      bus->insert(self, span_to_u64(d), 0x10);
    }
  };
  auto m = std::make_shared<Mover>();
  m->bus = &bus;
  m->self = m;
  CHECK(bus.insert(m, 0x1000, 0x10));
  uint8_t v[2] = {0x00, 0x20};
  CHECK(bus.write(0x1000, v));
  CHECK(bus.device_at(0x1000) == nullptr);
  CHECK(bus.device_at(0x2000) == m);
  m->self.reset();
}
