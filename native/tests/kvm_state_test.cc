// Save and restore a running machine (machine/state.h) under /dev/kvm: a
// guest counting on COM1 off the in-kernel PIT and PIC is saved, restored into
// a new Machine, and goes on counting where it was.
#include "kvm_helpers.h"
#include "machine/state.h"

#include <unistd.h>

#include <thread>

using namespace vireo;

namespace {

std::string tmp_path(const char* tag) { return "/tmp/vireo_kvm_state_" + std::to_string(getpid()) + "_" + tag; }

MachineConfig count_config() {
  MachineConfig c;
  c.flat = guest("count.bin");
  c.flat_addr = 0x7c00;
  c.mem_bytes = 32 << 20;
  return c;
}

// The numbers in "1\r\n2\r\n..." (a last line without CR LF is left out).
std::vector<long> numbers(const std::string& s) {
  std::vector<long> v;
  size_t p = 0;
  for (;;) {
    size_t e = s.find("\r\n", p);
    if (e == std::string::npos) break;
    v.push_back(std::strtol(s.substr(p, e - p).c_str(), nullptr, 10));
    p = e + 2;
  }
  return v;
}

std::string run_for(Machine& m, Run& r, int ms) {
  r.attach(m);
  m.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  m.pause();
  CHECK(m.state() == RunState::Paused);
  auto b = m.take_serial(0);
  std::lock_guard g(r.mu);
  r.serial.append(b.begin(), b.end());
  return r.serial;
}

}  // namespace

TEST(counting_guest_continues_after_restore) {
  require_kvm();
  std::string path = tmp_path("count");
  std::string before;
  {
    Machine m(count_config());
    Run r;
    before = run_for(m, r, 3000);
    m.save_state(path);
    m.stop();
  }
  auto a = numbers(before);
  std::fprintf(stderr, "before save: %zu numbers (last %ld), %zu bytes\n", a.size(), a.empty() ? 0L : a.back(), before.size());
  if (a.size() < 3) SKIP("the guest printed fewer than 3 numbers in 3 s (a very slow host); nothing to compare");
  Machine m2(count_config());
  m2.load_state(path);
  Run r2;
  r2.attach(m2);
  m2.start();
  // Wait for three more numbers.
  const long want = a.back() + 3;
  for (int i = 0; i < 100; i++) {
    {
      std::lock_guard g(r2.mu);
      auto b = m2.take_serial(0);
      r2.serial.append(b.begin(), b.end());
      auto all = numbers(before + r2.serial);
      if (!all.empty() && all.back() >= want) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  m2.stop();
  std::string after;
  {
    std::lock_guard g(r2.mu);
    after = r2.serial;
  }
  std::fprintf(stderr, "after restore: %.40s...\n", after.c_str());
  // Not a restart: the restored guest does not print "1" first.
  CHECK(after.rfind("1\r\n", 0) != 0 || a.back() == 0);
  // Before + after is one unbroken count from 1.
  auto all = numbers(before + after);
  CHECK(all.size() >= a.size() + 3);
  for (size_t i = 0; i < all.size(); i++) {
    if (all[i] != long(i + 1)) {
      std::fprintf(stderr, "number %zu is %ld\n", i, all[i]);
      CHECK(false);
    }
  }
  std::remove(path.c_str());
}

TEST(save_needs_pause_and_restore_refuses_changed_config) {
  require_kvm();
  std::string path = tmp_path("cfg");
  {
    Machine m(count_config());
    Run r;
    r.attach(m);
    m.start();
    bool threw = false;
    try {
      m.save_state(path);
    } catch (const MachineError& e) {
      threw = std::string(e.what()).find("paused") != std::string::npos;
    }
    CHECK(threw);
    m.pause();
    m.save_state(path);
    m.stop();
  }
  MachineConfig c = count_config();
  c.mem_bytes = 64 << 20;
  Machine m2(c);
  std::string msg;
  try {
    m2.load_state(path);
  } catch (const state::StateError& e) {
    msg = e.what();
  }
  CHECK(msg.find("RAM size: the state file has 32 MiB, this machine has 64 MiB") != std::string::npos);
  // A corrupted file: a clear error, and the machine it was meant for is untouched.
  {
    FILE* f = std::fopen(path.c_str(), "r+b");
    CHECK(f);
    std::fseek(f, 200, SEEK_SET);
    int ch = std::fgetc(f);
    std::fseek(f, 200, SEEK_SET);
    std::fputc(ch ^ 0xff, f);
    std::fclose(f);
  }
  Machine m3(count_config());
  msg.clear();
  try {
    m3.load_state(path);
  } catch (const state::StateError& e) {
    msg = e.what();
  }
  CHECK(msg.find("corrupted") != std::string::npos);
  std::remove(path.c_str());
}
