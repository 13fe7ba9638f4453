#include "bus/bus.h"

#include <algorithm>

namespace vireo {

bool Bus::insert(std::shared_ptr<IoDevice> dev, uint64_t base, uint64_t len, std::string name) {
  if (!dev || len == 0 || base + len < base) return false;
  std::unique_lock g(mu_);
  // Overlap check: the first range starting at or after base, and the one before.
  auto it = map_.lower_bound(base);
  if (it != map_.end() && it->first < base + len) return false;
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.len > base) return false;
  }
  std::shared_ptr<std::mutex> lock;
  auto li = locks_.find(dev.get());
  if (li != locks_.end()) lock = li->second.lock();
  if (!lock) {
    lock = std::make_shared<std::mutex>();
    locks_[dev.get()] = lock;
  }
  map_.emplace(base, Entry{len, std::move(dev), std::move(lock), std::move(name)});
  return true;
}

bool Bus::remove(uint64_t base) {
  std::unique_lock g(mu_);
  auto it = map_.find(base);
  if (it == map_.end()) return false;
  const IoDevice* d = it->second.dev.get();
  map_.erase(it);
  bool still = std::any_of(map_.begin(), map_.end(), [d](auto& e) { return e.second.dev.get() == d; });
  if (!still) locks_.erase(d);
  return true;
}

bool Bus::find(uint64_t addr, uint64_t& base, Entry& out) const {
  std::shared_lock g(mu_);
  auto it = map_.upper_bound(addr);
  if (it == map_.begin()) return false;
  --it;
  if (addr - it->first >= it->second.len) return false;
  base = it->first;
  out = it->second;
  return true;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) {
  uint64_t base;
  Entry e;
  if (!find(addr, base, e)) {
    std::fill(data.begin(), data.end(), 0xff);
    return false;
  }
  std::lock_guard g(*e.lock);
  e.dev->read(addr - base, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) {
  uint64_t base;
  Entry e;
  if (!find(addr, base, e)) return false;
  std::lock_guard g(*e.lock);
  e.dev->write(addr - base, data);
  return true;
}

std::vector<std::pair<Bus::Range, std::string>> Bus::ranges() const {
  std::shared_lock g(mu_);
  std::vector<std::pair<Range, std::string>> out;
  for (auto& [b, e] : map_) out.push_back({Range{b, e.len}, e.name});
  return out;
}

std::shared_ptr<IoDevice> Bus::device_at(uint64_t addr) const {
  uint64_t base;
  Entry e;
  if (!find(addr, base, e)) return nullptr;
  return e.dev;
}

}  // namespace vireo
