#include "devices/legacy/misc_ports.h"

#include <algorithm>
#include <string>

#include "machine/state.h"

namespace vireo {

namespace {
class RangeHandler : public IoDevice {
public:
  RangeHandler(MiscPorts& m, const MiscPorts::Range& r) : m_(m), r_(r) {}
  StateKind state_kind() const override { return StateKind::None; }  // MiscPorts' (section "misc-ports")
  void read(uint64_t off, std::span<uint8_t> d) override { m_.on_read(r_, off, d); }
  void write(uint64_t off, std::span<const uint8_t> d) override { m_.on_write(r_, off, d); }

private:
  MiscPorts& m_;
  MiscPorts::Range r_;
};
}  // namespace

MiscPorts::MiscPorts(std::function<void(uint8_t)> debug_out) : debug_out_(std::move(debug_out)) {}

std::shared_ptr<IoDevice> MiscPorts::handler(const Range& r) { return std::make_shared<RangeHandler>(*this, r); }

std::vector<std::string> MiscPorts::register_all(Bus& pio) {
  std::vector<std::string> skipped;
  for (const Range& r : kAll) {
    if (!pio.insert(handler(r), r.base, r.len, r.name)) skipped.push_back(r.name);
  }
  return skipped;
}

void MiscPorts::on_read(const Range& r, uint64_t off, std::span<uint8_t> d) {
  std::lock_guard g(mu_);
  uint8_t v = r.read_value;
  if (r.kind == Kind::Post) v = s.post_code;
  std::fill(d.begin(), d.end(), v);
}

void MiscPorts::on_write(const Range& r, uint64_t off, std::span<const uint8_t> d) {
  if (d.empty()) return;
  if (r.kind == Kind::DebugCon) {
    if (debug_out_) {
      for (uint8_t b : d) debug_out_(b);
    }
    return;
  }
  std::lock_guard g(mu_);
  if (r.kind == Kind::Post) {
    s.post_code = d[0];
    s.post_writes++;
  } else {
    s.dummy_writes++;
  }
}

uint8_t MiscPorts::post_code() const {
  std::lock_guard g(mu_);
  return s.post_code;
}

void MiscPorts::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  w.u8(s.post_code);
  w.u64(s.post_writes);
  w.u64(s.dummy_writes);
}

void MiscPorts::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  n.post_code = r.u8();
  n.post_writes = r.u64();
  n.dummy_writes = r.u64();
  r.finish();
  std::lock_guard g(mu_);
  s = n;
}

MiscPorts::State MiscPorts::snapshot() const {
  std::lock_guard g(mu_);
  return s;
}

}  // namespace vireo
