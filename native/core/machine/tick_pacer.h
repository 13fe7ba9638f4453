// Timer pacing for kvm_pvm hosts (docs/linux-guest.md, "The timer pacer").
//
// On kvm_pvm every guest ring-0 instruction is emulated, and one Linux timer
// interrupt there costs ~10 ms (hrtimer_interrupt → scheduler_tick → ...),
// longer than the 4 ms between ticks at HZ=250: the vCPU spends nearly all of
// its time in its own tick. Vireo sees each write of the TSC-deadline MSR
// (an MSR filter sends them to userspace) and hands KVM a deadline no earlier
// than `min_gap` after the last timer interrupt that vCPU took. The guest's
// clock is untouched (time stays real); its timers fire late, as on a loaded
// host, and one interrupt then runs everything that expired since.
#pragma once
#include <cstdint>

namespace vireo {

class TickPacer {
 public:
  // min_gap: in guest TSC cycles; 0 passes every deadline through.
  explicit TickPacer(uint64_t min_gap = 0) : gap_(min_gap) {}

  // The guest wrote `deadline` (0 disarms) when its TSC read `tsc_now`:
  // returns the deadline to program into KVM.
  uint64_t pace(uint64_t deadline, uint64_t tsc_now) {
    writes_++;
    // The TSC went back (a saved state or snapshot was loaded): what came
    // before no longer says when the last interrupt was.
    if (tsc_now < armed_at_) armed_ = armed_at_ = last_fire_ = 0;
    // Was the deadline armed before this write reached? It fired then, or
    // when it was written if it was already due.
    if (armed_ && armed_ <= tsc_now) last_fire_ = armed_ > armed_at_ ? armed_ : armed_at_;
    uint64_t out = deadline;
    if (deadline && gap_ && last_fire_ && deadline < last_fire_ + gap_) {
      out = last_fire_ + gap_;
      delayed_++;
    }
    armed_ = out;
    armed_at_ = tsc_now;
    return out;
  }

  uint64_t min_gap() const { return gap_; }
  uint64_t writes() const { return writes_; }
  uint64_t delayed() const { return delayed_; }

 private:
  uint64_t gap_;
  uint64_t armed_ = 0, armed_at_ = 0, last_fire_ = 0;
  uint64_t writes_ = 0, delayed_ = 0;
};

}  // namespace vireo
