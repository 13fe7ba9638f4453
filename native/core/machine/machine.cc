#include "machine/machine.h"
#include "machine/smbios.h"

#include <cpuid.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <unordered_map>
#include <vector>

#include "devices/legacy/serial.h"
#include "kvm/assist.h"
#include "kvm/cpuid.h"
#include "kvm/kvm.h"
#include "machine/kernel_boot.h"
#include "machine/layout.h"
#include "machine/pc_board.h"
#include "machine/state.h"
#include "machine/vcpu_sample.h"
#include "sandbox/confine.h"

namespace vireo {

const char* run_state_name(RunState s) {
  switch (s) {
    case RunState::Created: return "created";
    case RunState::Running: return "running";
    case RunState::Paused: return "paused";
    case RunState::Stopped: return "stopped";
    case RunState::Crashed: return "crashed";
  }
  return "?";
}

namespace {

// vCPU threads are kicked out of KVM_RUN with this signal; its handler does
// nothing, the point is the EINTR. A real-time signal, so nothing in Node,
// libuv or Chromium already uses it.
int kick_signal() { return SIGRTMIN + 5; }

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kick_signal(), &sa, nullptr);
  });
}

// VIREO_PROFILE_EXITS=1: each vCPU counts its exits by kind and port (or
// MMIO page) with the time spent in KVM_RUN and in our handlers, and prints
// the busiest at the end. A tool for the start-up benchmarks, off by default.
class ExitProfile {
public:
  explicit ExitProfile(int vcpu) : vcpu_(vcpu) {}
  static bool enabled() {
    static const bool on = std::getenv("VIREO_PROFILE_EXITS") != nullptr;
    return on;
  }
  static int64_t now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  void add(const kvm_run* run, int64_t run_ns, int64_t handle_ns) {
    uint64_t where = 0;
    if (run->exit_reason == KVM_EXIT_IO) where = run->io.port;
    else if (run->exit_reason == KVM_EXIT_MMIO) where = run->mmio.phys_addr & ~uint64_t(0xfff);
    Entry& e = by_[(uint64_t(run->exit_reason) << 48) | where];
    e.count++;
    e.handle_ns += handle_ns;
    total_run_ns_ += run_ns;
    total_handle_ns_ += handle_ns;
    exits_++;
  }
  void print() const {
    std::vector<std::pair<uint64_t, Entry>> v(by_.begin(), by_.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.count > b.second.count; });
    std::fprintf(stderr, "[vireo] vCPU %d: %llu exits, %.3f s in KVM_RUN, %.3f s in exit handlers\n", vcpu_,
                 (unsigned long long)exits_, double(total_run_ns_) / 1e9, double(total_handle_ns_) / 1e9);
    for (size_t i = 0; i < v.size() && i < 25; i++) {
      unsigned reason = unsigned(v[i].first >> 48);
      uint64_t where = v[i].first & ((uint64_t(1) << 48) - 1);
      const char* kind = reason == KVM_EXIT_IO ? "io" : reason == KVM_EXIT_MMIO ? "mmio" : "exit";
      std::fprintf(stderr, "[vireo]   %-4s %-6u %#10llx %10llu exits %8.3f s handling\n", kind, reason, (unsigned long long)where,
                   (unsigned long long)v[i].second.count, double(v[i].second.handle_ns) / 1e9);
    }
  }

private:
  struct Entry {
    uint64_t count = 0;
    int64_t handle_ns = 0;
  };
  int vcpu_;
  std::unordered_map<uint64_t, Entry> by_;
  int64_t total_run_ns_ = 0, total_handle_ns_ = 0;
  uint64_t exits_ = 0;
};

// Port-I/O devices that are only a few lines each.
struct DebugconDevice : IoDevice {
  // SeaBIOS and QEMU's debugcon: reads return 0xe9 so guests can detect it.
  void read(uint64_t, std::span<uint8_t> d) override {
    for (auto& b : d) b = 0;
    d[0] = 0xe9;
  }
  void write(uint64_t, std::span<const uint8_t> d) override {
    if (to_stderr) fwrite(d.data(), 1, 1, stderr);
  }
  StateKind state_kind() const override { return StateKind::None; }
  // VIREO_DEBUGCON=1 copies the firmware's debug log (SeaBIOS writes it here) to stderr.
  const bool to_stderr = getenv("VIREO_DEBUGCON") != nullptr;
};

struct DebugExitDevice : IoDevice {
  Machine* m;
  explicit DebugExitDevice(Machine* m) : m(m) {}
  void read(uint64_t, std::span<uint8_t> d) override { std::fill(d.begin(), d.end(), 0); }
  void write(uint64_t, std::span<const uint8_t> d) override {
    StopInfo info;
    info.kind = "exit";
    info.code = int(span_to_u64(d));
    info.message = "guest wrote " + std::to_string(info.code) + " to the debug-exit port";
    m->request_stop(info);
  }
  StateKind state_kind() const override { return StateKind::None; }
};

// Port 0x61 (PIT channel 2 gate / speaker) is left to userspace by
// KVM_PIT_SPEAKER_DUMMY. Bit 0 is channel 2's gate (passed to the in-kernel
// PIT), bit 4 toggles on each read (the refresh bit delay loops poll), bit 5
// is channel 2's output, computed from the in-kernel PIT's channel state as
// the 8254 would drive it: firmware and kernels time delays by programming
// channel 2 and polling bit 5 (iPXE's udelay, Linux's pit_calibrate_tsc), and
// without it such a loop never ends.
struct SpeakerPortDevice : IoDevice {
  explicit SpeakerPortDevice(kvm::KvmVm* vm) : vm_(vm) {}
  void read(uint64_t, std::span<uint8_t> d) override {
    std::lock_guard g(mu_);
    v_ ^= 0x10;
    std::fill(d.begin(), d.end(), 0);
    d[0] = uint8_t(v_ | (out2() ? 0x20 : 0));
  }
  void write(uint64_t, std::span<const uint8_t> d) override {
    std::lock_guard g(mu_);
    uint8_t old = v_;
    v_ = uint8_t((v_ & 0x10) | (d[0] & 0x0f));
    if (((old ^ v_) & 1) && vm_) {
      try {  // the gate, as QEMU's pcspk does with an in-kernel PIT
        kvm_pit_state2 p = vm_->pit();
        p.channels[2].gate = v_ & 1;
        vm_->set_pit(p);
      } catch (const kvm::KvmError&) {
      }
    }
  }
  // State: the register's bits (gate, speaker enable, refresh toggle); channel 2 itself is in
  // the in-kernel PIT, saved with the VM.
  StateKind state_kind() const override { return StateKind::Saved; }
  void save(state::StateWriter& w) const override {
    std::lock_guard g(mu_);
    w.u8(v_);
  }
  void load(state::StateReader& r) override {
    if (r.version() != 1) r.fail("unknown version");
    uint8_t nv = r.u8();
    r.finish();
    std::lock_guard g(mu_);
    v_ = nv;
  }

private:
  // 8254 OUT for channel 2 from its mode, count and the time the count was loaded.
  bool out2() {
    if (!vm_) return false;
    kvm_pit_state2 p;
    try {
      p = vm_->pit();
    } catch (const kvm::KvmError&) {
      return false;
    }
    const kvm_pit_channel_state& c = p.channels[2];
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // KVM's count_load_time is ktime_get()
    int64_t now = int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    int64_t ns = now - c.count_load_time;
    if (ns < 0) ns = 0;
    uint64_t ticks = uint64_t((__int128)ns * 1193182 / 1'000'000'000);
    uint64_t count = c.count ? c.count : 0x10000;
    switch (c.mode) {
      case 0: case 1:
        return ticks >= count;
      case 2: case 6:
        return ticks % count != count - 1;
      case 3: case 7:
        return ticks % count < (count + 1) / 2;
      default:  // 4, 5: a one-tick strobe at terminal count
        return ticks != count;
    }
  }
  kvm::KvmVm* vm_;
  mutable std::mutex mu_;
  uint8_t v_ = 0;
};

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
  return b;
}

}  // namespace

struct Machine::PowerOn {
  std::vector<kvm_regs> regs;
  std::vector<kvm_sregs> sregs;
  std::vector<kvm_fpu> fpu;
  std::vector<kvm_lapic_state> lapic;
  std::vector<kvm_mp_state> mp;
  kvm_irqchip chips[3];
  kvm_pit_state2 pit;
};

Machine::Machine(MachineConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.cpus < 1 || cfg_.cpus > 64) throw MachineError("cpus must be between 1 and 64 (got " + std::to_string(cfg_.cpus) + ")");
  if (cfg_.mem_bytes < (16ull << 20)) throw MachineError("memory must be at least 16 MiB");
  if (cfg_.mem_bytes > (1ull << 40)) throw MachineError("memory must be at most 1 TiB");
  int boots = !cfg_.kernel.empty() + !cfg_.flat.empty() + !cfg_.bios.empty();
  if (boots == 0) throw MachineError("nothing to boot: give a kernel, a flat binary, or firmware (bios)");
  if (!cfg_.kernel.empty() && !cfg_.flat.empty()) throw MachineError("give either a kernel or a flat binary, not both");
  if (!cfg_.uuid.empty() && !smbios::parse_uuid(cfg_.uuid))
    throw MachineError("uuid '" + cfg_.uuid + "' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  if (!cfg_.nics.empty() && cfg_.bios.empty()) throw MachineError("network cards need the PC board (firmware); a bare kernel or flat boot has no PCI bus");

  // Read the boot files before anything else so a bad path fails fast. With
  // firmware, a kernel is booted by the PC board (machine/kernel_boot.h),
  // which reads and checks it.
  std::vector<uint8_t> kernel, initrd;
  const bool bare_kernel = !cfg_.kernel.empty() && cfg_.bios.empty();
  if (bare_kernel) kernel = boot::read_file(cfg_.kernel, "kernel");
  if (bare_kernel && !cfg_.initrd.empty()) initrd = boot::read_file(cfg_.initrd, "initrd");
  if (!cfg_.kernel.empty() && !bare_kernel) {
    kboot_ = std::make_shared<KernelBoot>(*this);  // reads and trial-loads the kernel (throws BootError naming it)
    boot_ = kboot_->planned();
  }
  if (!cfg_.bios.empty()) {
    bios_ = boot::read_file(cfg_.bios, "firmware");
    if (bios_.size() < 0x10000 || bios_.size() > (16u << 20) || bios_.size() % 0x10000)
      throw MachineError("firmware '" + cfg_.bios + "' must be a multiple of 64 KiB between 64 KiB and 16 MiB");
  }

  sys_ = std::make_unique<kvm::KvmSystem>();
  pvm_ = kvm::host_is_pvm();
  assists_.resize(size_t(cfg_.cpus));
  native_followers_.resize(size_t(cfg_.cpus));
  vm_ = std::make_unique<kvm::KvmVm>(*sys_);
  vm_->create_irqchip();
  vm_->create_pit();
  setup_memory();

  if (bare_kernel) {
    boot::ImageOptions o;
    o.name = "kernel '" + cfg_.kernel + "'";
    if (!cfg_.initrd.empty()) o.initrd_name = "initrd '" + cfg_.initrd + "'";
    std::string added;
    std::string cmdline = boot::host_kernel_cmdline(kernel, cfg_.append, pvm_, &added);
    log_host_kernel_words(added);
    boot_ = boot::load_kernel_image(mem_, ram_layout_, kernel, initrd, cmdline, o);
  } else if (!cfg_.flat.empty()) {
    boot_ = boot::load_flat(mem_, cfg_.flat, cfg_.flat_addr);
  }
  setup_devices();
  if (!cfg_.bios.empty()) board_ = std::make_unique<PcBoard>(*this, *vm_);
  if (board_) board_->register_chipset_state();
  for (int i = 0; i < cfg_.cpus; i++) {
    vcpus_.push_back(std::make_unique<kvm::KvmVcpu>(*vm_, i));
    setup_vcpu(*vcpus_.back(), i);
  }
  setup_tick_pacing();
  if (coalesced_page_ && !vcpus_.empty())
    coalesced_ring_ = reinterpret_cast<kvm_coalesced_mmio_ring*>(reinterpret_cast<uint8_t*>(vcpus_[0]->run_page()) +
                                                                 size_t(coalesced_page_) * size_t(sysconf(_SC_PAGESIZE)));
  if (board_) capture_power_on_state();
}

namespace {
constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrTscDeadline = 0x6e0;
}  // namespace

void Machine::setup_tick_pacing() {
  int64_t gap_us = cfg_.tick_gap_us;
  if (gap_us < 0) {
    gap_us = 0;
    if (pvm_) {
      gap_us = kPvmTickGapUs;
      if (const char* e = std::getenv("VIREO_PVM_TICK_GAP_US")) gap_us = std::strtoll(e, nullptr, 10);
    }
  }
  if (gap_us <= 0 || vcpus_.empty()) return;
  const uint64_t khz = vcpus_[0]->tsc_khz();
  if (!khz) return;
  if (!vm_->filter_msr_writes({kMsrTscDeadline})) {
    std::fprintf(stderr, "[vireo] this KVM cannot send TSC-deadline writes to userspace: the guest's timer is not paced\n");
    return;
  }
  for (size_t i = 0; i < vcpus_.size(); i++) pacers_.emplace_back(uint64_t(gap_us) * khz / 1000);
  if (cfg_.tick_gap_us < 0)
    std::fprintf(stderr,
                 "[vireo] kvm_pvm host: the guest's TSC-deadline timer interrupts at most every %lld us per vCPU "
                 "(guest kernel code is emulated here; VIREO_PVM_TICK_GAP_US=0 turns this off; docs/linux-guest.md)\n",
                 (long long)gap_us);
}

// KVM_EXIT_X86_WRMSR for the TSC-deadline MSR (the only one filtered).
bool Machine::pace_deadline_write(kvm::KvmVcpu& v) {
  kvm_run* run = v.run_page();
  uint64_t tsc = 0;
  if (run->msr.index != kMsrTscDeadline || size_t(v.id()) >= pacers_.size() || !v.get_msr(kMsrTsc, tsc)) {
    run->msr.error = 1;  // #GP, as a CPU without the MSR
    return true;
  }
  v.set_msrs({{kMsrTscDeadline, pacers_[size_t(v.id())].pace(run->msr.data, tsc)}});
  run->msr.error = 0;
  return true;
}

void Machine::add_coalesced_mmio(uint64_t addr, uint32_t size) {
  if (int page = vm_->register_coalesced_mmio(addr, size)) coalesced_page_ = page;
}

void Machine::flush_coalesced_mmio() {
  kvm_coalesced_mmio_ring* ring = coalesced_ring_;
  if (!ring) return;
  // The ring page: two u32 (first, last), then the entries. Spelled out, as
  // C++ compilers place the header's flexible array member at offset 16, not
  // 8 where the kernel writes it (the same uapi trap as kvm_cpuid2 in kvm.cc).
  // KVM appends at `last` under its own lock; we consume from `first`.
  constexpr size_t kHeader = 2 * sizeof(uint32_t);
  constexpr uint32_t kMax = uint32_t((4096 - kHeader) / sizeof(kvm_coalesced_mmio));
  const auto* entries = reinterpret_cast<const kvm_coalesced_mmio*>(reinterpret_cast<const uint8_t*>(ring) + kHeader);
  if (__atomic_load_n(&ring->first, __ATOMIC_RELAXED) == __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) return;  // empty
  std::lock_guard g(coalesced_mu_);
  uint32_t first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
  while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
    const kvm_coalesced_mmio& e = entries[first];
    mmio_.write(e.phys_addr, {e.data, std::min<size_t>(e.len, sizeof e.data)});
    first = (first + 1) % kMax;
    __atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
  }
}

void Machine::capture_power_on_state() {
  power_on_ = std::make_unique<PowerOn>();
  for (auto& v : vcpus_) {
    power_on_->regs.push_back(v->regs());
    power_on_->sregs.push_back(v->sregs());
    power_on_->fpu.push_back(v->fpu());
    power_on_->lapic.push_back(v->lapic());
    power_on_->mp.push_back(v->mp_state());
  }
  for (uint32_t i = 0; i < 3; i++) power_on_->chips[i] = vm_->irqchip(i);  // master PIC, slave PIC, IOAPIC
  power_on_->pit = vm_->pit();
}

void Machine::request_reset(const std::string& why) {
  if (!board_ || !power_on_ || cfg_.no_reboot) {
    StopInfo info;
    info.kind = "reset";
    info.message = "the guest reset the machine (" + why + ")";
    request_stop(info);
    return;
  }
  std::unique_lock g(mu_);
  if (stop_requested_ || reset_requested_) return;
  if (std::getenv("VIREO_TRACE_STEP")) std::fprintf(stderr, "[vireo] guest reset: %s\n", why.c_str());
  reset_why_ = why;
  reset_requested_ = true;
  pause_requested_ = true;
  cv_.notify_all();
  kick_all();
}

// Runs on vCPU 0's thread once every other vCPU is parked: puts the board,
// the interrupt controllers and every vCPU back to their power-on state and
// the firmware's shadow copy back to the ROM image, then lets them run.
void Machine::do_reset() {
  {
    std::unique_lock g(mu_);
    cv_.wait(g, [&] { return parked_ >= live_threads_ - 1 || stop_requested_; });
    if (stop_requested_) return;
  }
  try {
    flush_coalesced_mmio();
    board_->reset_devices();
    size_t shadow = std::min<size_t>(bios_.size(), 0x20000);
    std::memcpy(ram_ + layout::kBiosShadowTop - shadow, bios_.data() + bios_.size() - shadow, shadow);
    for (uint32_t i = 0; i < 3; i++) vm_->set_irqchip(power_on_->chips[i]);
    vm_->set_pit(power_on_->pit);
    for (size_t i = 0; i < vcpus_.size(); i++) {
      auto& v = *vcpus_[i];
      v.set_sregs(power_on_->sregs[i]);
      v.set_regs(power_on_->regs[i]);
      v.set_fpu(power_on_->fpu[i]);
      v.set_lapic(power_on_->lapic[i]);
      v.set_mp_state(power_on_->mp[i]);
    }
  } catch (std::exception& e) {
    StopInfo info;
    info.kind = "error";
    info.message = std::string("reset failed: ") + e.what();
    {
      std::lock_guard g(mu_);
      reset_requested_ = false;
    }
    request_stop(info, RunState::Crashed);
    return;
  }
  reset_count_++;
  std::lock_guard g(mu_);
  reset_requested_ = false;
  pause_requested_ = false;
  cv_.notify_all();
}

Machine::~Machine() {
  stop();
  board_.reset();
  coalesced_ring_ = nullptr;  // it lives in vCPU 0's mmap
  vcpus_.clear();
  vm_.reset();
  if (ram_) ::munmap(ram_, ram_size_);
  if (bios_map_) ::munmap(bios_map_, bios_.size());
}

void Machine::setup_memory() {
  ram_layout_ = boot::ram_layout(cfg_.mem_bytes);
  ram_size_ = cfg_.mem_bytes;
  // 2 MiB-aligned, so guest-physical 2 MiB pages line up with host huge
  // pages (transparent huge pages, asked for with MADV_HUGEPAGE as QEMU does;
  // hosts set to THP "madvise" give none otherwise). Fewer TLB misses for
  // the guest, and for the host's emulator on kvm_pvm.
  constexpr size_t kHuge = 2u << 20;
  const size_t reserve = ram_size_ + kHuge;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw MachineError("cannot reserve " + std::to_string(ram_size_ >> 20) + " MiB of guest memory");
  auto* base = static_cast<uint8_t*>(p);
  auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~uintptr_t(kHuge - 1));
  if (aligned > base) ::munmap(base, size_t(aligned - base));
  if (size_t tail = size_t(base + reserve - (aligned + ram_size_))) ::munmap(aligned + ram_size_, tail);
  ram_ = aligned;
  ::madvise(ram_, ram_size_, MADV_HUGEPAGE);
  ::madvise(ram_, ram_size_, MADV_MERGEABLE);
  uint32_t slot = 0;
  if (!cfg_.bios.empty()) {
    // Firmware boot: the legacy VGA window 0xa0000-0xbffff is device memory,
    // so low RAM is two slots around it.
    vm_->set_memory(slot++, 0, layout::kVgaWindow, ram_);
    mem_.add_region(0, layout::kVgaWindow, ram_);
    uint64_t rest = ram_layout_.low_end - layout::kOptionRomBase;
    vm_->set_memory(slot++, layout::kOptionRomBase, rest, ram_ + layout::kOptionRomBase);
    mem_.add_region(layout::kOptionRomBase, rest, ram_ + layout::kOptionRomBase);
  } else {
    vm_->set_memory(slot++, 0, ram_layout_.low_end, ram_);
    mem_.add_region(0, ram_layout_.low_end, ram_);
  }
  if (ram_layout_.high_size) {
    vm_->set_memory(slot++, layout::k4GiB, ram_layout_.high_size, ram_ + ram_layout_.low_end);
    mem_.add_region(layout::k4GiB, ram_layout_.high_size, ram_ + ram_layout_.low_end);
  }
  if (!bios_.empty()) {
    // The firmware image sits at the top of 4 GiB (the reset vector is at
    // 0xfffffff0) and its last 128 KiB are also visible at 0xe0000-0xfffff.
    void* b = ::mmap(nullptr, bios_.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) throw MachineError("cannot map the firmware image");
    bios_map_ = static_cast<uint8_t*>(b);
    std::memcpy(bios_map_, bios_.data(), bios_.size());
    uint32_t flags = sys_->check_extension(KVM_CAP_READONLY_MEM) > 0 ? KVM_MEM_READONLY : 0;
    vm_->set_memory(slot++, layout::k4GiB - bios_.size(), bios_.size(), bios_map_, flags);
    size_t shadow = std::min<size_t>(bios_.size(), 0x20000);
    std::memcpy(ram_ + layout::kBiosShadowTop - shadow, bios_.data() + bios_.size() - shadow, shadow);
  }
}

void Machine::setup_devices() {
  // COM1 and COM2 on their ISA interrupt lines through the in-kernel PIC/IOAPIC.
  const uint16_t ports[2] = {layout::kCom1Port, layout::kCom2Port};
  const uint8_t irqs[2] = {layout::kCom1Irq, layout::kCom2Irq};
  for (int i = 0; i < 2; i++) {
    kvm::KvmVm* vm = vm_.get();
    uint8_t irq = irqs[i];
    serial_[i] = std::make_shared<devices::Serial16550>(IrqLine([vm, irq](bool l) { vm->irq_line(irq, l); }),
                                                        [this, i](uint8_t b) {
                                                          bool was_empty;
                                                          {
                                                            std::lock_guard g(out_mu_);
                                                            was_empty = out_[0].empty() && out_[1].empty();
                                                            out_[i].push_back(b);
                                                          }
                                                          if (was_empty && on_serial_ready) on_serial_ready();
                                                        });
    pio_.insert(serial_[i], ports[i], 8, i == 0 ? "com1" : "com2");
    register_state(i == 0 ? "com1" : "com2", serial_[i]);
  }
  pio_.insert(std::make_shared<DebugconDevice>(), layout::kDebugconPort, 1, "debugcon");
  pio_.insert(std::make_shared<DebugExitDevice>(this), layout::kDebugExitPort, 1, "debug-exit");
  auto speaker = std::make_shared<SpeakerPortDevice>(vm_.get());
  pio_.insert(speaker, layout::kPitSpeakerPort, 1, "speaker");
  register_state("speaker", speaker);
}

void Machine::setup_vcpu(kvm::KvmVcpu& v, int id) {
  kvm::CpuidOptions co;
  co.vcpu_id = id;
  co.vcpu_count = cfg_.cpus;
  co.pvm_host = pvm_;
  auto table = kvm::build_cpuid(sys_->supported_cpuid(), co);
  v.set_cpuid(table);
  if (id == 0) {
    guest_cpuid_ = table;
    if (pvm_) {
      // kvm_pvm answers the feature leaves (1 ECX, 7, 0xd) from the hardware,
      // whatever the table says (docs/architecture.md, "CPUID on kvm_pvm
      // hosts"): the assist works with what the guest really sees.
      std::erase_if(guest_cpuid_, [](const kvm_cpuid_entry2& e) { return e.function == 7 || e.function == 0xd; });
      for (uint32_t i = 0; i < 64; i++) {
        kvm_cpuid_entry2 e{};
        e.function = 0xd;
        e.index = i;
        e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        __cpuid_count(0xd, i, e.eax, e.ebx, e.ecx, e.edx);
        guest_cpuid_.push_back(e);
      }
      kvm_cpuid_entry2 e{};
      e.function = 7;
      e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
      __cpuid_count(7, 0, e.eax, e.ebx, e.ecx, e.edx);
      guest_cpuid_.push_back(e);
    }
  }
  v.set_fpu_defaults();
  if (id != 0) return;  // APs wait for INIT/SIPI from the BSP in the in-kernel LAPIC
  if (!cfg_.bios.empty() && cfg_.flat.empty()) return;  // reset vector: firmware boot (a kernel too, through the ROM)

  kvm_sregs s = v.sregs();
  kvm_regs r{};
  r.rflags = 0x2;
  const auto& cpu = boot_.cpu;
  if (cpu.mode == boot::CpuInit::Mode::Protected32) {
    auto seg = [](kvm_segment& sg, uint16_t sel, uint8_t type) {
      sg.base = 0;
      sg.limit = 0xffffffff;
      sg.selector = sel;
      sg.type = type;
      sg.present = 1;
      sg.dpl = 0;
      sg.db = 1;
      sg.s = 1;
      sg.l = 0;
      sg.g = 1;
      sg.avl = 0;
      sg.unusable = 0;
    };
    seg(s.cs, 0x10, 0xb);
    seg(s.ds, 0x18, 0x3);
    seg(s.es, 0x18, 0x3);
    seg(s.fs, 0x18, 0x3);
    seg(s.gs, 0x18, 0x3);
    seg(s.ss, 0x18, 0x3);
    s.gdt.base = layout::kBootGdt;
    s.gdt.limit = 4 * 8 - 1;
    s.cr0 = 0x11;  // PE | ET
    s.cr4 = 0;
    s.efer = 0;
    r.rip = cpu.rip;
    r.rax = cpu.eax;
    r.rbx = cpu.ebx;
    r.rsi = cpu.esi;
    r.rsp = cpu.rsp;
  } else {
    auto seg = [](kvm_segment& sg, uint16_t sel) {
      sg.selector = sel;
      sg.base = uint64_t(sel) << 4;
    };
    seg(s.cs, cpu.real_cs);
    seg(s.ds, 0);
    seg(s.es, 0);
    seg(s.ss, 0);
    r.rip = cpu.rip;
    r.rsp = cpu.rsp;
  }
  v.set_sregs(s);
  v.set_regs(r);
}

void Machine::start() {
  std::unique_lock g(mu_);
  if (state_ != RunState::Created) throw MachineError(std::string("cannot start a machine that is ") + run_state_name(state_));
  install_kick_handler();
  if (board_) board_->resume_devices();  // built paused (Board::pause_devices)
  state_ = RunState::Running;
  live_threads_ = int(vcpus_.size());
  started_ns_ = ExitProfile::now();
  for (size_t i = 0; i < vcpus_.size(); i++) threads_.emplace_back([this, i] { vcpu_loop(int(i)); });
  if (pvm_) halt_watch_ = std::thread([this] { halt_watch_loop(); });
  if (const char* e = std::getenv("VIREO_SAMPLE_VCPUS")) {
    const double period = std::atof(e);
    if (period > 0) sampler_ = std::thread([this, period] { sampler_loop(period); });
    else std::fprintf(stderr, "[vireo] VIREO_SAMPLE_VCPUS=%s is not a number of seconds > 0: no samples\n", e);
  }
  g.unlock();
  if (on_state) on_state(RunState::Running, {});
}

void Machine::kick_all() {
  for (size_t i = 0; i < vcpus_.size(); i++) {
    vcpus_[i]->run_page()->immediate_exit = 1;
    if (i < threads_.size() && threads_[i].joinable()) pthread_kill(threads_[i].native_handle(), kick_signal());
  }
}

void Machine::set_irq_window_stepping(bool on) {
  if (step_wanted_.exchange(on) == on || !on) return;  // turning off: the next debug exit sees it
  std::lock_guard g(mu_);
  if (state_ != RunState::Running) return;
  kick_all();  // each vCPU leaves KVM_RUN once and switches single-stepping on
}

void Machine::pause() {
  std::unique_lock g(mu_);
  if (state_ != RunState::Running) return;
  pause_requested_ = true;
  kick_all();
  cv_.wait(g, [&] { return parked_ == live_threads_ || stop_requested_; });
  if (stop_requested_) return;
  state_ = RunState::Paused;
  g.unlock();
  // No device thread changes guest memory or raises an interrupt from here
  // on (USB frames, RTC timer, received packets, pending virtio kicks).
  if (board_) board_->pause_devices();
  // Paused means the disks are consistent on disk (a full clone copies them).
  if (board_) board_->quiesce();
  if (on_state) on_state(RunState::Paused, {});
}

void Machine::create_disk_snapshots(const std::string& name) {
  RunState st = state();
  if (st != RunState::Paused && st != RunState::Created)
    throw MachineError(std::string("cannot snapshot the disks of a machine that is ") + run_state_name(st) +
                       ": pause it first");
  if (name.empty()) throw MachineError("a snapshot needs a name");
  if (!board_) throw MachineError("this machine has no disks to snapshot");
  if (int r = board_->quiesce())
    throw MachineError(std::string("cannot snapshot the disks: flushing them failed: ") + std::strerror(-r));
  board_->create_disk_snapshots(name);
}

void Machine::delete_disk_snapshots(const std::string& name) {
  RunState st = state();
  if (st != RunState::Paused && st != RunState::Created)
    throw MachineError(std::string("cannot delete disk snapshots of a machine that is ") + run_state_name(st) +
                       ": pause it first");
  if (!board_) throw MachineError("this machine has no disks to snapshot");
  board_->delete_disk_snapshots(name);
}

void Machine::resume() {
  std::unique_lock g(mu_);
  if (state_ != RunState::Paused) return;
  if (board_) board_->resume_devices();
  pause_requested_ = false;
  state_ = RunState::Running;
  cv_.notify_all();
  g.unlock();
  if (on_state) on_state(RunState::Running, {});
}

void Machine::request_stop(StopInfo info, RunState final_state) {
  std::unique_lock g(mu_);
  if (stop_requested_) return;
  stop_info_ = std::move(info);
  final_state_ = final_state;
  stop_requested_ = true;
  cv_.notify_all();
  kick_all();
}

void Machine::stop() {
  {
    std::unique_lock g(mu_);
    if (state_ == RunState::Created) {
      state_ = RunState::Stopped;
      return;
    }
  }
  StopInfo info;
  info.kind = "stopped";
  info.message = "stopped by the host";
  request_stop(info);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (sampler_.joinable()) sampler_.join();
  if (halt_watch_.joinable()) halt_watch_.join();
  // Every vCPU is out: finish in-flight disk requests and write back cached
  // metadata now (closing the images, when the Machine goes, flushes again).
  if (board_) board_->quiesce();
}

uint64_t Machine::vcpu_cpu_ns() const {
  uint64_t total = 0;
  for (size_t i = 0; i < vcpus_.size() && i < vcpu_tids_.size(); i++) {
    int tid = vcpu_tids_[i].load();
    if (!tid) continue;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    // schedstat: "<ns on CPU> <ns waiting> <slices>"; without it (kernels
    // without CONFIG_SCHED_INFO) the clock of the thread's CPU time.
    if (FILE* f = std::fopen(path, "r")) {
      unsigned long long ns = 0;
      if (std::fscanf(f, "%llu", &ns) == 1) total += ns;
      std::fclose(f);
      continue;
    }
    clockid_t cid = clockid_t(((~unsigned(tid)) << 3) | 6);  // CPUCLOCK_SCHED per-thread clock of tid (Linux ABI)
    timespec ts{};
    if (clock_gettime(cid, &ts) == 0) total += uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  }
  return total;
}

uint64_t Machine::ram_resident_bytes() const {
  if (!ram_ || !ram_size_) return 0;
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t pages = (ram_size_ + page - 1) / page;
  std::vector<unsigned char> v(std::min<size_t>(pages, 1u << 20));
  uint64_t resident = 0;
  for (size_t at = 0; at < pages; at += v.size()) {
    size_t n = std::min(v.size(), pages - at);
    if (::mincore(ram_ + at * page, n * page, v.data()) != 0) return 0;
    for (size_t i = 0; i < n; i++) resident += v[i] & 1;
  }
  return resident * page;
}

RunState Machine::state() const {
  std::lock_guard g(mu_);
  return state_;
}

StopInfo Machine::stop_info() const {
  std::lock_guard g(mu_);
  return stop_info_;
}

void Machine::write_serial(int port, const uint8_t* data, size_t len) {
  if (port < 0 || port > 1) return;
  serial_[port]->queue_input({data, len});
}

std::vector<uint8_t> Machine::take_serial(int port) {
  std::lock_guard g(out_mu_);
  std::vector<uint8_t> v;
  if (port >= 0 && port <= 1) v.swap(out_[port]);
  return v;
}

void Machine::set_state(RunState s, const StopInfo& info) {
  {
    std::lock_guard g(mu_);
    state_ = s;
  }
  if (on_state) on_state(s, info);
}

void Machine::fill_fault_info(kvm::KvmVcpu& v, StopInfo& info) {
  info.vcpu = v.id();
  try {
    kvm_regs r = v.regs();
    kvm_sregs s = v.sregs();
    info.has_rip = true;
    info.rip = r.rip;
    uint64_t linear = s.cs.base + r.rip, gpa = linear;
    if (!(s.cr0 & 0x80000000u) || v.translate(linear, gpa)) {
      uint8_t b[16];
      if (mem_.read(gpa, b, sizeof b)) info.bytes.assign(b, b + sizeof b);
    }
  } catch (...) {
  }
}

namespace {

// Guest-linear memory through KVM_TRANSLATE, page by page, for the assist.
class VcpuMemory : public kvm::AssistMemory {
public:
  VcpuMemory(kvm::KvmVcpu& v, GuestMemory& mem, bool paging, bool user) : v_(v), mem_(mem), paging_(paging), user_(user) {}
  bool read(uint64_t linear, void* dst, size_t n, uint32_t& pf) override {
    return access(linear, static_cast<uint8_t*>(dst), n, false, pf);
  }
  bool write(uint64_t linear, const void* src, size_t n, uint32_t& pf) override {
    return access(linear, const_cast<uint8_t*>(static_cast<const uint8_t*>(src)), n, true, pf);
  }
  // KVM_TRANSLATE first; in long mode, where it refuses (SMAP, U/S), the
  // guest's tables walked here (present bits only).
  bool peek(uint64_t linear, void* dst, size_t n) override {
    uint32_t pf;
    if (read(linear, dst, n, pf)) return true;
    if (!paging_ || !(v_.sregs().efer & (1u << 10))) return false;
    const kvm_sregs s = v_.sregs();
    auto* out = static_cast<uint8_t*>(dst);
    while (n) {
      const size_t chunk = std::min<size_t>(n, 4096 - (linear & 4095));
      uint64_t gpa;
      auto read_phys = [&](uint64_t a, uint64_t& e) { return mem_.read(a, &e, 8); };
      if (!kvm::walk_long_mode_tables(s.cr3, s.cr4 & (1u << 12), linear, read_phys, gpa) || !mem_.ptr(gpa, chunk))
        return false;
      mem_.read(gpa, out, chunk);
      linear += chunk;
      out += chunk;
      n -= chunk;
    }
    return true;
  }

private:
  bool access(uint64_t linear, uint8_t* p, size_t n, bool write, uint32_t& pf) {
    // Check every page first, so that a fault leaves memory untouched.
    for (int pass = 0; pass < 2; pass++) {
      uint64_t a = linear;
      size_t left = n;
      uint8_t* q = p;
      while (left) {
        size_t chunk = std::min<size_t>(left, 4096 - (a & 4095));
        uint64_t gpa = a;
        bool w = true;
        if (paging_ && !v_.translate(a, gpa, &w)) {
          pf = (write ? 2u : 0u) | (user_ ? 4u : 0u);
          return false;
        }
        if (write && !w) {
          pf = 1u | 2u | (user_ ? 4u : 0u);
          return false;
        }
        if (!mem_.ptr(gpa, chunk)) {
          pf = 0;  // not RAM (MMIO): the assist does not reach devices
          return false;
        }
        if (pass == 1) {
          if (write) mem_.write(gpa, q, chunk);
          else mem_.read(gpa, q, chunk);
        }
        a += chunk;
        q += chunk;
        left -= chunk;
      }
    }
    return true;
  }
  kvm::KvmVcpu& v_;
  GuestMemory& mem_;
  bool paging_, user_;
};

}  // namespace

void Machine::sampler_loop(double period_s) {
  const auto period = std::chrono::milliseconds(int64_t(period_s * 1000));
  std::unique_lock g(mu_);
  while (!stop_requested_) {
    if (cv_.wait_for(g, period, [&] { return bool(stop_requested_); })) break;
    if (state_ != RunState::Running || pause_requested_) continue;
    for (size_t i = 0; i < vcpus_.size() && i < sample_wanted_.size(); i++) sample_wanted_[i] = true;
    // A kick that lands outside KVM_RUN is lost (the handler does nothing):
    // kick again until every vCPU has taken its sample, for up to a second.
    for (int tries = 0; tries < 20 && !stop_requested_; tries++) {
      bool all = true;
      for (size_t i = 0; i < vcpus_.size() && i < sample_wanted_.size(); i++) {
        if (!sample_wanted_[i]) continue;
        all = false;
        vcpus_[i]->run_page()->immediate_exit = 1;
        if (i < threads_.size() && threads_[i].joinable()) pthread_kill(threads_[i].native_handle(), kick_signal());
      }
      if (all) break;
      cv_.wait_for(g, std::chrono::milliseconds(50), [&] { return bool(stop_requested_); });
    }
  }
}

void Machine::halt_watch_loop() {
  std::array<uint64_t, 64> last{};
  std::unique_lock g(mu_);
  while (!stop_requested_) {
    if (cv_.wait_for(g, std::chrono::seconds(1), [&] { return bool(stop_requested_); })) break;
    if (state_ != RunState::Running || pause_requested_) {
      last.fill(~uint64_t(0));  // parked vCPUs do not count as a second inside KVM_RUN
      continue;
    }
    for (size_t i = 0; i < vcpus_.size() && i < last.size(); i++) {
      const uint64_t runs = run_count_[i].load(std::memory_order_relaxed);
      const bool inside = runs == last[i];  // no KVM_RUN returned for a whole second
      last[i] = runs;
      if (!inside) continue;
      halt_check_wanted_[i] = true;
      vcpus_[i]->run_page()->immediate_exit = 1;
      if (i < threads_.size() && threads_[i].joinable()) pthread_kill(threads_[i].native_handle(), kick_signal());
    }
  }
}

// kvm_pvm, now and then, and more often when the host is busy: the first
// instruction run after single-stepping is switched off leaves the vCPU
// halted, with interrupts off, at the next instruction, which is not HLT
// (seen after a keyboard-controller reset: stepping off at SeaBIOS's
// `ljmp 8:...` into 32-bit code or at the `mov ecx, 0x10` after it, then
// halted for good at the following instruction; no event pending, DR6
// clear). Real hardware halts only at HLT, and with IF=0 only an NMI, SMI,
// INIT or reset ends that, so a vCPU halted with IF=0 whose previous byte is
// not HLT (F4) is KVM's mistake: make it runnable again. A vCPU halted after
// a real HLT is left alone, and so are the other wrong states of
// native/tools/pvm-step-hang (halted with IF=1 or in an interrupt shadow):
// made runnable there, its real-mode guest ran off into garbage in 2 runs of
// 4, while waking only the IF=0, no-shadow ones kept it correct (6 of 6).
bool Machine::repair_false_halt(kvm::KvmVcpu& v, int id) {
  try {
    if (v.mp_state().mp_state != KVM_MP_STATE_HALTED) return false;
    const auto r = v.regs();
    if (r.rflags & 0x200) return false;  // IF=1: an interrupt ends it
    const auto ev = v.events();
    if (ev.interrupt.shadow || ev.nmi.pending || ev.nmi.injected) return false;
    const auto sr = v.sregs();
    const bool paging = (sr.cr0 & 0x80000001u) == 0x80000001u;
    const uint64_t linear = (sr.efer & 0x400) && sr.cs.l ? r.rip - 1 : uint64_t(uint32_t(sr.cs.base + r.rip - 1));
    VcpuMemory m(v, mem_, paging, false);
    uint8_t before = 0;
    if (!m.peek(linear, &before, 1) || before == 0xf4) return false;
    v.set_mp_state_runnable();
    false_halts_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr,
                 "[vireo] kvm_pvm left vCPU %d halted with interrupts off at %04x:%llx, which is not after a HLT "
                 "(this host's single-step hazard): it runs on\n",
                 id, sr.cs.selector, (unsigned long long)r.rip);
    return true;
  } catch (const kvm::KvmError&) {
    return false;
  }
}

void Machine::halt_vcpu_for_test(int id) {
  std::lock_guard g(mu_);
  if (state_ != RunState::Paused) throw MachineError("halt_vcpu_for_test needs a paused machine");
  kvm_mp_state s{};
  s.mp_state = KVM_MP_STATE_HALTED;
  vcpus_.at(size_t(id))->set_mp_state(s);
}

void Machine::take_vcpu_sample(kvm::KvmVcpu& v, int id) {
  VcpuSample s;
  s.vcpu = id;
  s.t_s = double(ExitProfile::now() - started_ns_) / 1e9;
  const uint64_t runs = run_count_[size_t(id)].load(std::memory_order_relaxed);
  s.exits = runs - sample_last_exits_[size_t(id)];
  sample_last_exits_[size_t(id)] = runs;
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
    const uint64_t ns = uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
    s.cpu_ns = ns - sample_last_cpu_ns_[size_t(id)];
    sample_last_cpu_ns_[size_t(id)] = ns;
  }
  try {
    s.regs = v.regs();
    s.sregs = v.sregs();
    s.mp_state = v.mp_state().mp_state;
    s.events = v.events();
  } catch (const kvm::KvmError& e) {
    std::fprintf(stderr, "[vireo] sample vCPU %d: %s\n", id, e.what());
    return;
  }
  try {
    s.lapic = v.lapic();
    s.have_lapic = true;
  } catch (const kvm::KvmError&) {
  }
  uint64_t tsc = 0, deadline = 0;
  if (v.get_msr(0x10, tsc) && v.get_msr(0x6e0, deadline)) {
    s.have_deadline = true;
    s.tsc = tsc;
    s.tsc_deadline = deadline;
  }
  if (s.sregs.cr0 & 0x80000000u) {
    VcpuMemory m(v, mem_, true, false);
    uint64_t q[32];
    size_t n = 32;
    const uint64_t to_page_end = (4096 - (s.regs.rsp & 4095)) / 8;
    if (!m.peek(s.regs.rsp, q, sizeof q)) n = std::min<uint64_t>(to_page_end, 32);
    if (n == 32 || (n && m.peek(s.regs.rsp, q, n * 8))) s.stack.assign(q, q + n);
  }
  const std::string line = format_vcpu_sample(s) + "\n";
  std::fputs(line.c_str(), stderr);
}

bool Machine::assist(kvm::KvmVcpu& v, std::string& why) {
  kvm_run* run = v.run_page();
  kvm::AssistState st;
  st.regs = v.regs();
  st.sregs = v.sregs();
  st.cpuid = guest_cpuid_;
  const bool paging = st.sregs.cr0 & 0x80000000u;
  const bool user = (st.sregs.cr0 & 1) && (st.sregs.cs.selector & 3) == 3;
  VcpuMemory mem(v, mem_, paging, user);
  // The instruction bytes: from the exit when KVM gives them, else fetched at CS:RIP.
  uint8_t bytes[15] = {};
  size_t n = 0;
  if (run->emulation_failure.ndata >= 3 &&
      (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
      run->emulation_failure.insn_size > 0) {
    n = std::min<size_t>(run->emulation_failure.insn_size, 15);
    std::memcpy(bytes, run->emulation_failure.insn_bytes, n);
  }
  const uint64_t rip_linear = st.sregs.cs.base + st.regs.rip;
  if (n < 15) {
    // Fetch all 15 (KVM may give only what it decoded); stop at an unmapped page.
    uint32_t pf;
    size_t to_page_end = 4096 - (rip_linear & 4095), got = 0;
    if (mem.read(rip_linear, bytes, 15, pf)) got = 15;
    else if (to_page_end < 15 && mem.read(rip_linear, bytes, to_page_end, pf)) got = to_page_end;
    n = std::max(n, got);
  }
  if (n == 0) {
    why = "the instruction at RIP could not be read";
    return false;
  }
  // A ring-3 SYSCALL that kvm_pvm left at CPL 3 shows up here, at the first
  // instruction of the guest's #PF handler (see kvm::failed_syscall_frame).
  kvm::SyscallFrame sc_frame;
  if (kvm::failed_syscall_frame(st, mem, sc_frame)) {
    v.get_msr(0xc0000081, st.star);
    v.get_msr(0xc0000082, st.lstar);
    kvm::AssistResult r = kvm::complete_failed_syscall(st, sc_frame);
    if (r.action == kvm::AssistResult::Action::Completed) return apply_assist(v, st, r, bytes, n);
  }
  const unsigned needs = kvm::assist_needs(bytes, n, st.sregs);
  if (needs & kvm::kNeedTscAux) v.get_msr(0xc0000103, st.tsc_aux);
  if (needs & kvm::kNeedSyscallMsrs) {
    v.get_msr(0xc0000081, st.star);
    v.get_msr(0xc0000102, st.kernel_gs_base);
  }
  if (needs & kvm::kNeedXsave) {
    uint8_t buf[4096];
    v.xsave(buf);
    std::memcpy(st.xsave.data(), buf, sizeof buf);
    st.have_xsave = true;
    uint64_t xss = 0;
    if (v.get_msr(0xda0, xss)) st.xss = xss;
    st.xcr0 = v.xcr0();
  }
  kvm::AssistResult r = kvm::assist_instruction(bytes, n, st, mem);
  if (r.action == kvm::AssistResult::Action::Unhandled) {
    if (trace_assist_) trace_assist(v, st, r, bytes, n);
    why = r.what.empty() ? "not an instruction Vireo's assist knows" : "the assist does not handle " + r.what;
    return false;
  }
  return apply_assist(v, st, r, bytes, n);
}

void Machine::trace_assist(kvm::KvmVcpu& v, const kvm::AssistState& st, const kvm::AssistResult& r, const uint8_t* bytes,
                           size_t n) {
  std::fprintf(stderr, "[vireo] assist vCPU %d rip %#llx:", v.id(), (unsigned long long)st.regs.rip);
  for (size_t i = 0; i < std::min<size_t>(n, 8); i++) std::fprintf(stderr, " %02x", bytes[i]);
  std::fprintf(stderr, " -> %s (%s)\n", kvm::assist_kind_name(r.kind), r.what.c_str());
}

bool Machine::apply_assist(kvm::KvmVcpu& v, kvm::AssistState& st, const kvm::AssistResult& r, const uint8_t* bytes,
                           size_t n) {
  if (trace_assist_) {
    if (r.kind == kvm::AssistKind::Syscall) {
      std::fprintf(stderr, "[vireo] assist vCPU %d: SYSCALL at %#llx (from %#llx, rsp %#llx): %s\n", v.id(),
                   (unsigned long long)st.regs.rip, (unsigned long long)st.regs.rcx, (unsigned long long)st.regs.rsp,
                   r.what.c_str());
    } else {
      trace_assist(v, st, r, bytes, n);
    }
  }
  // KVM queues a #UD of its own when emulation fails; replace it with ours (or nothing).
  kvm_vcpu_events ev = v.events();
  ev.exception.injected = 0;
  ev.exception.pending = 0;
  ev.exception.has_error_code = 0;
  ev.exception.error_code = 0;
  ev.exception_has_payload = 0;
  ev.interrupt.shadow = 0;
  ev.flags &= KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
  ev.flags |= KVM_VCPUEVENT_VALID_SHADOW;
  if (r.sregs_changed) v.set_sregs(st.sregs);
  if (r.action == kvm::AssistResult::Action::Exception) {
    if (r.vector == 14) {
      kvm_sregs s = v.sregs();
      s.cr2 = r.cr2;
      v.set_sregs(s);
    }
    ev.exception.injected = 1;
    ev.exception.nr = r.vector;
    ev.exception.has_error_code = r.has_error_code;
    ev.exception.error_code = r.error_code;
  }
  if (r.xcr0_changed) v.set_xcr0(st.xcr0);
  if (r.xsave_changed) {
    uint8_t buf[4096];
    std::memcpy(buf, st.xsave.data(), sizeof buf);
    v.set_xsave(buf);
  }
  if (r.kernel_gs_base_changed) v.set_msrs({{0xc0000102, st.kernel_gs_base}});
  if (r.regs_changed) v.set_regs(st.regs);
  v.set_events(ev);
  assists_[size_t(v.id())][size_t(r.kind)]++;
  native_followers_[size_t(v.id())] += uint64_t(r.followers);
  return true;
}

bool Machine::handle_exit(kvm::KvmVcpu& v) {
  kvm_run* run = v.run_page();
  flush_coalesced_mmio();  // writes queued in the coalesced-MMIO ring happened before this exit
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint8_t* p = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; i++, p += run->io.size) {
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          pio_.write(run->io.port, {p, run->io.size});
        } else {
          pio_.read(run->io.port, {p, run->io.size});
        }
      }
      return true;
    }
    case KVM_EXIT_MMIO:
      if (run->mmio.is_write) {
        mmio_.write(run->mmio.phys_addr, {run->mmio.data, run->mmio.len});
      } else {
        mmio_.read(run->mmio.phys_addr, {run->mmio.data, run->mmio.len});
      }
      return true;
    case KVM_EXIT_X86_WRMSR:
      return pace_deadline_write(v);
    case KVM_EXIT_DEBUG:  // a single step (see set_irq_window_stepping)
    case KVM_EXIT_HLT:
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return true;
    case KVM_EXIT_SHUTDOWN: {
      if (board_ && !cfg_.no_reboot) {
        // A PC resets on a triple fault; the firmware starts over.
        request_reset("triple fault on vCPU " + std::to_string(v.id()));
        return true;
      }
      StopInfo info;
      info.kind = "triple-fault";
      fill_fault_info(v, info);
      info.message = "the guest triple-faulted (vCPU " + std::to_string(v.id()) + " shut down" +
                     (info.has_rip ? " at RIP " + hex(info.rip) : std::string()) + ")";
      request_stop(info, RunState::Crashed);
      return false;
    }
    case KVM_EXIT_INTERNAL_ERROR: {
      std::string assist_why;
      if (pvm_ && run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
        try {
          if (assist(v, assist_why)) return true;
        } catch (const kvm::KvmError& e) {
          assist_why = e.what();
        }
      }
      StopInfo info;
      info.kind = "internal-error";
      fill_fault_info(v, info);
      const char* what = run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? "instruction emulation failed"
                         : run->internal.suberror == KVM_INTERNAL_ERROR_SIMUL_EX ? "exception while delivering an exception"
                         : run->internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV ? "event delivery failed"
                                                                                     : "internal error";
      info.message = std::string("KVM internal error (") + what + ", suberror " + std::to_string(run->internal.suberror) +
                     ") on vCPU " + std::to_string(v.id()) + (info.has_rip ? " at RIP " + hex(info.rip) : std::string());
      if (pvm_) {
        info.message += "; this host's KVM (kvm_pvm) emulates guest kernel code and cannot run every instruction";
        if (!assist_why.empty()) info.message += " (Vireo's assist: " + assist_why + ")";
        if (!info.bytes.empty()) {
          info.message += "; bytes at RIP:";
          char b[4];
          for (size_t i = 0; i < std::min<size_t>(info.bytes.size(), 8); i++) {
            std::snprintf(b, sizeof b, " %02x", info.bytes[i]);
            info.message += b;
          }
        }
      }
      request_stop(info, RunState::Crashed);
      return false;
    }
    case KVM_EXIT_FAIL_ENTRY: {
      StopInfo info;
      info.kind = "entry-failure";
      fill_fault_info(v, info);
      info.message = "KVM could not enter the guest (hardware entry failure reason " +
                     hex(run->fail_entry.hardware_entry_failure_reason) + ")";
      request_stop(info, RunState::Crashed);
      return false;
    }
    case KVM_EXIT_SYSTEM_EVENT: {
      StopInfo info;
      if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
        if (board_) {
          request_reset("system reset event");
          return true;
        }
        info.kind = "reset";
        info.message = "the guest reset the machine";
      } else {
        info.kind = "poweroff";
        info.message = "the guest powered off";
      }
      request_stop(info);
      return false;
    }
    default: {
      StopInfo info;
      info.kind = "error";
      fill_fault_info(v, info);
      info.message = "unexpected KVM exit reason " + std::to_string(run->exit_reason);
      request_stop(info, RunState::Crashed);
      return false;
    }
  }
}

// kvm_pvm: single-stepping switched off while the guest runs real-mode code
// leaves later `sti; hlt` waits halted for good (the vCPU stays halted with
// an interrupt shadow, or halted at the wrong instruction; reproduced with a
// 30-line real-mode guest). Switched off in protected mode, where GRUB and
// SeaBIOS's 32-bit code spend most of their time, no such hang was seen. So
// stepping stops only there, not halted and not in an interrupt shadow.
bool Machine::safe_to_stop_stepping(kvm::KvmVcpu& v) {
  try {
    if (!(v.sregs().cr0 & 1)) return false;
    if (v.mp_state().mp_state == KVM_MP_STATE_HALTED) return false;
    return v.interrupt_shadow() == 0;
  } catch (const kvm::KvmError&) {
    return false;
  }
}

// CPL 3 in protected or long mode (CS's RPL is the CPL there).
bool Machine::at_cpl3(kvm::KvmVcpu& v) {
  try {
    auto sr = v.sregs();
    return (sr.cr0 & 1) && (sr.cs.selector & 3) == 3;
  } catch (const kvm::KvmError&) {
    return false;
  }
}

void Machine::vcpu_loop(int id) {
  // Only this thread receives the kick signal's EINTR; keep it unblocked here.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  // In a confined engine host this thread runs guest-driven device code:
  // it keeps only I/O on what is open (sandbox/confine.h).
  const std::string thread_name = "vCPU " + std::to_string(id);
  if (pvm_ && sandbox::device_threads_confined()) kvm::prepare_native_assist();  // its executable page, first
  sandbox::confine_device_thread(thread_name.c_str());
  kvm::KvmVcpu& v = *vcpus_[size_t(id)];
  struct TidMark {
    std::atomic<int>& slot;
    explicit TidMark(std::atomic<int>& s) : slot(s) { slot.store(int(::gettid())); }
    ~TidMark() { slot.store(0); }
  } tid_mark(vcpu_tids_[size_t(id)]);
  bool stepping = false, at_boundary = true;
  const bool trace_step = std::getenv("VIREO_TRACE_STEP") != nullptr;  // log single-step on/off to stderr
  std::unique_ptr<ExitProfile> profile = ExitProfile::enabled() ? std::make_unique<ExitProfile>(id) : nullptr;
  // An I/O or MMIO exit is complete only once KVM_RUN is entered again (KVM's
  // api.rst, KVM_RUN): the emulator still holds the instruction. Before the
  // vCPU parks or its registers are replaced, enter once with immediate_exit
  // so KVM finishes it and returns at once; otherwise KVM finishes it later,
  // on top of the registers a reset has just loaded (on kvm_pvm hosts this
  // left a keyboard-controller reset with the vCPU halted for good, now and
  // then).
  auto complete_pending_exit = [&] {
    if (at_boundary) return;
    v.run_page()->immediate_exit = 1;
    v.run();
    v.run_page()->immediate_exit = 0;
    at_boundary = true;
  };
  for (;;) {
    if (stop_requested_) break;
    if (sample_wanted_[size_t(id)].exchange(false)) take_vcpu_sample(v, id);
    if (halt_check_wanted_[size_t(id)].exchange(false) && at_boundary) repair_false_halt(v, id);
    if (reset_requested_ && id == 0) {
      complete_pending_exit();
      do_reset();
      continue;
    }
    if (pause_requested_) {
      complete_pending_exit();
      std::unique_lock g(mu_);
      parked_++;
      cv_.notify_all();
      cv_.wait(g, [&] { return !pause_requested_ || stop_requested_ || (id == 0 && reset_requested_); });
      parked_--;
      continue;
    }
    // Switch single-stepping only between whole instructions: never while an
    // I/O or MMIO exit waits for KVM_RUN to complete the instruction.
    bool want = step_wanted_.load(std::memory_order_relaxed);
    // kvm_pvm runs ring 3 natively and hands a single step's #DB to the guest
    // there instead of exiting (guests/fbloop.asm was given thousands a key):
    // no stepping while the vCPU is at CPL 3. Its interrupt gets in at the next
    // entry with IF=1 (user space runs with IF=1); a step exit that lands in
    // ring 3 (an IRET from stepped ring-0 code) switches stepping off here.
    if (want && pvm_ && at_boundary && at_cpl3(v)) want = false;
    if (want != stepping && at_boundary && (want || safe_to_stop_stepping(v))) {
      try {
        v.set_single_step(want);
        stepping = want;
        if (trace_step) std::fprintf(stderr, "[vireo] vCPU %d single-step %s\n", id, want ? "on" : "off");
      } catch (const kvm::KvmError&) {
        step_wanted_ = false;  // this KVM cannot single-step: input stays as slow as before
      }
    }
    const int64_t t0 = profile ? ExitProfile::now() : 0;
    int r = v.run();
    v.run_page()->immediate_exit = 0;
    run_count_[size_t(id)].fetch_add(1, std::memory_order_relaxed);
    at_boundary = r < 0 || (v.run_page()->exit_reason != KVM_EXIT_IO && v.run_page()->exit_reason != KVM_EXIT_MMIO);
    if (r == -EINTR || r == -EAGAIN) continue;
    if (r < 0) {
      StopInfo info;
      info.kind = "error";
      info.vcpu = id;
      info.message = std::string("KVM_RUN failed on vCPU ") + std::to_string(id) + ": " + std::strerror(-r);
      request_stop(info, RunState::Crashed);
      break;
    }
    const int64_t t1 = profile ? ExitProfile::now() : 0;
    const bool go_on = handle_exit(v);
    if (profile) profile->add(v.run_page(), t1 - t0, ExitProfile::now() - t1);
    if (!go_on) break;
  }
  if (profile) {
    profile->print();
    const auto& a = assists_[size_t(id)];
    for (size_t k = 1; k < a.size(); k++)
      if (a[k])
        std::fprintf(stderr, "[vireo]   assist %-12s %10llu\n", kvm::assist_kind_name(kvm::AssistKind(k)),
                     (unsigned long long)a[k]);
    if (native_followers_[size_t(id)])
      std::fprintf(stderr, "[vireo]   assist %-12s %10llu (SIMD instructions run in the same exits)\n", "+following",
                   (unsigned long long)native_followers_[size_t(id)]);
    if (size_t(id) < pacers_.size())
      std::fprintf(stderr, "[vireo]   timer deadlines %10llu written, %llu moved later by the pacer\n",
                   (unsigned long long)pacers_[size_t(id)].writes(), (unsigned long long)pacers_[size_t(id)].delayed());
  }
  // The last vCPU thread out reports the final state.
  bool last;
  RunState fs;
  StopInfo info;
  {
    std::lock_guard g(mu_);
    last = --live_threads_ == 0;
    fs = final_state_;
    info = stop_info_;
    cv_.notify_all();
  }
  if (last) set_state(fs, info);
}

// ---- saved state (machine/state.h) ----

namespace {

// MSRs a vCPU's state needs beyond what KVM_GET/SET_SREGS carries (EFER,
// APIC base): those of this list that KVM reports in its index list, or
// reads (MTRRs are not in the list on every kernel), are saved.
constexpr uint32_t kStateMsrs[] = {
    0x10,        // TSC
    0x3b,        // TSC_ADJUST
    0x48,        // SPEC_CTRL
    0x174, 0x175, 0x176,  // SYSENTER CS/ESP/EIP
    0x1a0,       // MISC_ENABLE
    0x277,       // PAT
    0x2ff,       // MTRR default type
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,  // fixed MTRRs
    0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,  // STAR, LSTAR, CSTAR, SFMASK
    0xc0000102,  // KERNEL_GS_BASE
    0xc0000103,  // TSC_AUX
    0x11, 0x12,  // kvmclock (old)
    0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04,  // kvmclock, async PF, steal time, PV EOI
    0x6e0,       // TSC_DEADLINE (after the TSC)
};

template <class T>
void put_raw(state::StateWriter& w, const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  w.blob({reinterpret_cast<const uint8_t*>(&v), sizeof v});
}
template <class T>
T get_raw(state::StateReader& r) {
  static_assert(std::is_trivially_copyable_v<T>);
  auto b = r.blob(sizeof(T));
  if (b.size() != sizeof(T)) r.fail("a KVM structure is " + std::to_string(b.size()) + " bytes, " + std::to_string(sizeof(T)) + " expected");
  T v;
  std::memcpy(&v, b.data(), sizeof v);
  return v;
}

}  // namespace

void Machine::register_state(const std::string& name, std::shared_ptr<Stateful> dev) {
  for (auto& [n, d] : state_devs_)
    if (n == name) throw MachineError("state name '" + name + "' registered twice");
  state_devs_.emplace_back(name, std::move(dev));
}

state::ConfigDesc Machine::state_config() const {
  state::ConfigDesc d;
  d.set("ram", std::to_string(cfg_.mem_bytes));
  d.set("cpus", std::to_string(cfg_.cpus));
  d.set("board", board_ ? "pc" : !cfg_.kernel.empty() ? "kernel" : "flat");
  std::string devs;
  for (auto& [n, dev] : state_devs_) devs += (devs.empty() ? "" : ",") + n;
  d.set("devices", devs);
  return d;
}

void Machine::save_state(const std::string& path) {
  if (state() != RunState::Paused) throw MachineError(std::string("save needs a paused machine (it is ") + run_state_name(state()) + ")");
  // Every device on the buses either has nothing to save or is registered.
  std::vector<const Stateful*> known;
  for (auto& [n, d] : state_devs_) known.push_back(d.get());
  std::string missing;
  for (Bus* bus : {&pio_, &mmio_}) {
    for (auto& [range, name] : bus->ranges()) {
      auto dev = bus->device_at(range.base);
      if (!dev || dev->state_kind() == Stateful::StateKind::None) continue;
      if (dev->state_kind() == Stateful::StateKind::Unsupported ||
          std::find(known.begin(), known.end(), static_cast<const Stateful*>(dev.get())) == known.end())
        missing += (missing.empty() ? "" : ", ") + (name.empty() ? hex(range.base) : name);
    }
  }
  for (auto& [n, d] : state_devs_)
    if (d->state_kind() == Stateful::StateKind::Unsupported) missing += (missing.empty() ? "" : ", ") + n;
  if (!missing.empty()) throw MachineError("cannot save this machine's state: these devices cannot save theirs yet: " + missing);
  flush_coalesced_mmio();

  state::StateFileWriter f(path, state_config());
  // vCPUs.
  std::vector<uint32_t> msr_list;
  {
    std::vector<uint32_t> kvm_list = sys_->msr_index_list();
    for (uint32_t m : kStateMsrs) {
      uint64_t v;
      bool listed = std::find(kvm_list.begin(), kvm_list.end(), m) != kvm_list.end();
      if (listed || vcpus_[0]->get_msr(m, v)) msr_list.push_back(m);
    }
  }
  const int xsave2 = sys_->check_extension(KVM_CAP_XSAVE2);
  const bool has_xsave = sys_->check_extension(KVM_CAP_XSAVE) > 0;
  const bool has_xcrs = sys_->check_extension(KVM_CAP_XCRS) > 0;
  for (auto& vp : vcpus_) {
    kvm::KvmVcpu& v = *vp;
    state::StateWriter w;
    put_raw(w, v.regs());
    put_raw(w, v.sregs());
    w.boolean(has_xsave);
    if (has_xsave) w.blob(v.xsave_state(size_t(std::max(xsave2, 4096))));
    else put_raw(w, v.fpu());
    w.boolean(has_xcrs);
    if (has_xcrs) put_raw(w, v.xcrs());
    auto msrs = v.get_msrs(msr_list);
    w.u32(uint32_t(msrs.size()));
    for (auto& [i, val] : msrs) {
      w.u32(i);
      w.u64(val);
    }
    put_raw(w, v.lapic());
    put_raw(w, v.events());
    put_raw(w, v.mp_state());
    kvm_debugregs dr{};
    bool has_dr = true;
    try {
      dr = v.debugregs();
    } catch (const kvm::KvmError&) {
      has_dr = false;
    }
    w.boolean(has_dr);
    if (has_dr) put_raw(w, dr);
    f.section("cpu" + std::to_string(v.id()), 1, w.data());
  }
  {
    state::StateWriter w;
    for (uint32_t i = 0; i < 3; i++) put_raw(w, vm_->irqchip(i));  // master PIC, slave PIC, IOAPIC
    put_raw(w, vm_->pit());
    w.u64(vm_->clock().clock);
    f.section("vm", 1, w.data());
  }
  for (auto& [name, dev] : state_devs_) {
    if (dev->state_kind() != Stateful::StateKind::Saved) continue;
    state::StateWriter w;
    dev->save(w);
    f.section("dev:" + name, dev->state_version(), w.data());
  }
  f.ram_section("ram", ram_, ram_size_);
  f.finish();
}

void Machine::load_state(const std::string& path) {
  if (state() != RunState::Created) throw MachineError("a state is loaded into a machine that has not started");
  state::StateFile f(path);
  f.check_config(state_config());
  // Everything is read and checked before anything is changed where that is
  // cheap (vCPU sections parse into structures first).
  struct Cpu {
    kvm_regs regs;
    kvm_sregs sregs;
    bool has_xsave;
    std::vector<uint8_t> xsave;
    kvm_fpu fpu{};
    bool has_xcrs;
    kvm_xcrs xcrs{};
    std::vector<std::pair<uint32_t, uint64_t>> msrs;
    kvm_lapic_state lapic;
    kvm_vcpu_events events;
    kvm_mp_state mp;
    bool has_dr;
    kvm_debugregs dr{};
  };
  std::vector<Cpu> cpus(vcpus_.size());
  for (size_t i = 0; i < vcpus_.size(); i++) {
    state::StateReader r = f.reader("cpu" + std::to_string(i));
    if (r.version() != 1) r.fail("unknown version");
    Cpu& c = cpus[i];
    c.regs = get_raw<kvm_regs>(r);
    c.sregs = get_raw<kvm_sregs>(r);
    c.has_xsave = r.boolean();
    if (c.has_xsave) {
      c.xsave = r.blob(1u << 20);
      if (c.xsave.size() < 4096) r.fail("XSAVE state shorter than 4 KiB");
    } else {
      c.fpu = get_raw<kvm_fpu>(r);
    }
    c.has_xcrs = r.boolean();
    if (c.has_xcrs) c.xcrs = get_raw<kvm_xcrs>(r);
    uint32_t n = r.u32();
    if (n > 4096) r.fail("too many MSRs");
    for (uint32_t k = 0; k < n; k++) {
      uint32_t idx = r.u32();
      uint64_t val = r.u64();
      c.msrs.emplace_back(idx, val);
    }
    c.lapic = get_raw<kvm_lapic_state>(r);
    c.events = get_raw<kvm_vcpu_events>(r);
    c.mp = get_raw<kvm_mp_state>(r);
    c.has_dr = r.boolean();
    if (c.has_dr) c.dr = get_raw<kvm_debugregs>(r);
    r.finish();
  }
  kvm_irqchip chips[3];
  kvm_pit_state2 pit;
  uint64_t clock;
  {
    state::StateReader r = f.reader("vm");
    if (r.version() != 1) r.fail("unknown version");
    for (auto& c : chips) c = get_raw<kvm_irqchip>(r);
    pit = get_raw<kvm_pit_state2>(r);
    clock = r.u64();
    r.finish();
  }
  for (auto& [name, dev] : state_devs_) {
    if (dev->state_kind() != Stateful::StateKind::Saved) continue;
    state::StateReader r = f.reader("dev:" + name);
    dev->load(r);
  }
  f.load_ram("ram", ram_, ram_size_);
  if (bios_map_) std::memcpy(bios_map_, bios_.data(), bios_.size());
  for (auto& c : chips) vm_->set_irqchip(c);
  vm_->set_pit(pit);
  kvm_clock_data cd{};
  cd.clock = clock;
  vm_->set_clock(cd);
  for (size_t i = 0; i < vcpus_.size(); i++) {
    kvm::KvmVcpu& v = *vcpus_[i];
    Cpu& c = cpus[i];
    v.set_sregs(c.sregs);
    v.set_regs(c.regs);
    if (c.has_xsave) v.set_xsave_state(c.xsave);
    else v.set_fpu(c.fpu);
    if (c.has_xcrs) v.set_xcrs(c.xcrs);
    v.set_msrs_all(c.msrs);
    v.set_lapic(c.lapic);
    v.set_mp_state(c.mp);
    c.events.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW |
                      KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
    v.set_events(c.events);
    if (c.has_dr) v.set_debugregs(c.dr);
  }
}

}  // namespace vireo
