// An interrupt line as a device sees it. The board wires it to KVM_IRQ_LINE
// (in-kernel PIC/IOAPIC), an irqfd, or, in unit tests, a recorder.
#pragma once
#include <functional>

namespace vireo {

class IrqLine {
public:
  IrqLine() = default;
  explicit IrqLine(std::function<void(bool)> fn) : fn_(std::move(fn)) {}
  void set(bool level) {
    level_ = level;
    if (fn_) fn_(level);
  }
  void raise() { set(true); }
  void lower() { set(false); }
  // Edge-style pulse for edge-triggered ISA lines.
  void pulse() { set(true); set(false); }
  bool level() const { return level_; }

private:
  std::function<void(bool)> fn_;
  bool level_ = false;
};

}  // namespace vireo
