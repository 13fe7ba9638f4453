// TickPacer (machine/tick_pacer.h): the deadline handed to KVM when the guest
// writes its TSC-deadline MSR, fed recorded (deadline, TSC) pairs.
#include "machine/tick_pacer.h"

#include "check.h"

using vireo::TickPacer;

TEST(a_deadline_is_passed_through_until_one_has_fired) {
  TickPacer p(1000);
  CHECK_EQ(p.pace(5000, 100), 5000u);  // nothing fired yet: nothing to space from
  CHECK_EQ(p.pace(4000, 200), 4000u);  // re-armed earlier before the first fired: still nothing fired
  CHECK_EQ(p.delayed(), 0u);
  CHECK_EQ(p.writes(), 2u);
}

TEST(the_next_deadline_comes_no_sooner_than_the_gap_after_the_last_interrupt) {
  TickPacer p(1000);
  CHECK_EQ(p.pace(5000, 100), 5000u);
  // The handler of the interrupt at 5000 arms the next tick 400 later: moved to 5000 + 1000.
  CHECK_EQ(p.pace(5400, 5100), 6000u);
  CHECK_EQ(p.delayed(), 1u);
  // That one fired at 6000; a far deadline (idle) is left alone.
  CHECK_EQ(p.pace(90000, 6050), 90000u);
  CHECK_EQ(p.delayed(), 1u);
}

TEST(a_deadline_already_due_when_written_fired_at_the_write) {
  TickPacer p(1000);
  CHECK_EQ(p.pace(5000, 100), 5000u);
  CHECK_EQ(p.pace(5100, 5050), 6000u);  // last fire 5000
  // Fired at 6000. The guest, late, arms a deadline already in the past at 9000:
  // nothing was due in between, so it goes through and fires at once (at 9000).
  CHECK_EQ(p.pace(8000, 9000), 8000u);
  // The next write measures the gap from that write (9000), not from the stale deadline.
  CHECK_EQ(p.pace(9500, 9100), 10000u);
}

TEST(reprogramming_a_pending_deadline_keeps_the_last_real_interrupt) {
  TickPacer p(1000);
  CHECK_EQ(p.pace(5000, 100), 5000u);
  CHECK_EQ(p.pace(5400, 5100), 6000u);  // pending at 6000
  // A device interrupt wakes the guest at 5200 and it wants a timer at 5300:
  // still within the gap after 5000, so 6000 (the pending one never fired).
  CHECK_EQ(p.pace(5300, 5200), 6000u);
  CHECK_EQ(p.pace(7000, 5250), 7000u);  // later than the gap: as written
}

TEST(zero_disarms_and_a_zero_gap_changes_nothing) {
  TickPacer p(1000);
  CHECK_EQ(p.pace(5000, 100), 5000u);
  CHECK_EQ(p.pace(0, 5100), 0u);  // disarm passes through
  CHECK_EQ(p.pace(5200, 5150), 6000u);
  TickPacer off(0);
  CHECK_EQ(off.pace(5000, 100), 5000u);
  CHECK_EQ(off.pace(5001, 5000), 5001u);
  CHECK_EQ(off.delayed(), 0u);
}


TEST(a_tsc_that_went_back_starts_the_pacing_over) {
  TickPacer p(1000);
  CHECK_EQ(p.pace(900000, 800000), 900000u);
  CHECK_EQ(p.pace(900400, 900100), 901000u);  // last fire 900000
  // A state saved at TSC 5000 is loaded: the old fire time would hold the
  // timer back by ~900,000 cycles.
  CHECK_EQ(p.pace(5400, 5100), 5400u);
  CHECK_EQ(p.pace(5500, 5350), 5500u);        // 5400 not yet due at 5350: nothing fired since the load
  CHECK_EQ(p.pace(5900, 5600), 6500u);        // it fired at 5500: the gap counts from there
}
