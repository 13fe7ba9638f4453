// Guest-physical memory as the host sees it: a list of regions, each a host
// mapping of a guest-physical range. Devices doing DMA and boot loaders use
// this; they never touch KVM. Tests build one over plain heap buffers.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace vireo {

class GuestMemory {
public:
  struct Region {
    uint64_t gpa;
    uint64_t size;
    uint8_t* host;
  };

  void add_region(uint64_t gpa, uint64_t size, uint8_t* host) { regions_.push_back({gpa, size, host}); }
  const std::vector<Region>& regions() const { return regions_; }

  // Host pointer for [gpa, gpa+len) if it lies wholly inside one region, else nullptr.
  uint8_t* ptr(uint64_t gpa, uint64_t len) const {
    for (auto& r : regions_) {
      if (gpa >= r.gpa && len <= r.size && gpa - r.gpa <= r.size - len) return r.host + (gpa - r.gpa);
    }
    return nullptr;
  }
  // Copy out/in; false (and nothing copied) if any byte is outside guest RAM.
  bool read(uint64_t gpa, void* dst, uint64_t len) const {
    uint8_t* p = ptr(gpa, len);
    if (!p) return false;
    std::memcpy(dst, p, len);
    return true;
  }
  bool write(uint64_t gpa, const void* src, uint64_t len) const {
    uint8_t* p = ptr(gpa, len);
    if (!p) return false;
    std::memcpy(p, src, len);
    return true;
  }
  template <class T> bool read_obj(uint64_t gpa, T& out) const { return read(gpa, &out, sizeof(T)); }
  template <class T> bool write_obj(uint64_t gpa, const T& v) const { return write(gpa, &v, sizeof(T)); }

private:
  std::vector<Region> regions_;
};

}  // namespace vireo
