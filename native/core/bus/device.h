// The one handler shape for port I/O and MMIO. A device sees an offset into the
// range it was registered at and a byte span; it never sees an absolute address.
#pragma once
#include <cstdint>
#include <span>

namespace vireo {

namespace state {
class StateWriter;
class StateReader;
}  // namespace state

// Saved state (machine/state.h, docs/state.md). Every device says what it
// has: nothing (None), state it saves and loads (Saved), or state it cannot
// save yet (Unsupported, the default) -- a machine with such a device refuses
// to save, naming it, rather than write a state that would lose something.
class Stateful {
public:
  enum class StateKind { None, Saved, Unsupported };
  virtual ~Stateful() = default;
  virtual StateKind state_kind() const { return StateKind::Unsupported; }
  // The layout version written with the section; load() gets the file's in
  // the reader (StateReader::version) and refuses versions it does not know.
  virtual uint32_t state_version() const { return 1; }
  // Called with the machine paused (no vCPU inside the device).
  virtual void save(state::StateWriter&) const {}
  // Into a device built from the same configuration, before the machine runs.
  // Throws state::StateError on a bad section, leaving the device usable.
  virtual void load(state::StateReader&) {}
};

class IoDevice : public Stateful {
public:
  virtual ~IoDevice() = default;
  // Fill `data` (1, 2, 4 or 8 bytes, little-endian) with the value at `offset`.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  // Store `data` at `offset`.
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

// Little-endian helpers for devices that think in integers.
inline uint64_t span_to_u64(std::span<const uint8_t> d) {
  uint64_t v = 0;
  for (size_t i = 0; i < d.size() && i < 8; i++) v |= uint64_t(d[i]) << (8 * i);
  return v;
}
inline void u64_to_span(uint64_t v, std::span<uint8_t> d) {
  for (size_t i = 0; i < d.size() && i < 8; i++) d[i] = uint8_t(v >> (8 * i));
}

}  // namespace vireo
