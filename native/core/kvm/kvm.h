// The only place that calls ioctl() or mmap() on KVM file descriptors.
// Thin RAII wrappers: KvmSystem (/dev/kvm), KvmVm (a VM fd), KvmVcpu (a vCPU fd
// and its shared kvm_run page). Errors throw KvmError with a message that
// says what to do.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace vireo::kvm {

class KvmError : public std::runtime_error {
public:
  KvmError(const std::string& what, int err = 0) : std::runtime_error(what), err_(err) {}
  int err() const { return err_; }

private:
  int err_;
};

class Fd {
public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) { reset(); fd_ = o.fd_; o.fd_ = -1; }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset();

private:
  int fd_ = -1;
};

// Returns an empty string when /dev/kvm can be opened read-write, else one
// message saying what is wrong and what to do about it.
// The device node: /dev/kvm, or $VIREO_KVM_DEVICE (lets tests and users
// point Vireo elsewhere, e.g. to see the message for a missing device).
const char* kvm_device_path();
std::string kvm_problem(const char* path = kvm_device_path());
// True when the host's KVM is the kvm_pvm module: guest ring-0 code is run by
// KVM's instruction emulator, which lacks several instructions (see cpuid.cc).
bool host_is_pvm();

class KvmSystem {
public:
  KvmSystem();  // opens /dev/kvm; throws KvmError with kvm_problem()'s text
  int fd() const { return fd_.get(); }
  int vcpu_mmap_size() const { return mmap_size_; }
  int check_extension(long cap) const;
  std::vector<kvm_cpuid_entry2> supported_cpuid() const;
  // KVM_GET_MSR_INDEX_LIST: the MSRs this KVM saves and restores.
  std::vector<uint32_t> msr_index_list() const;

private:
  Fd fd_;
  int mmap_size_ = 0;
};

class KvmVcpu;

class KvmVm {
public:
  explicit KvmVm(KvmSystem& sys);
  int fd() const { return fd_.get(); }
  KvmSystem& system() { return sys_; }
  void set_memory(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags = 0);
  void create_irqchip();  // in-kernel PIC + IOAPIC (+ LAPIC per vCPU)
  void create_pit();      // KVM_CREATE_PIT2 with the speaker port left to userspace (dummy)
  void irq_line(uint32_t irq, bool level);
  // KVM_SET_GSI_ROUTING: replaces the whole GSI -> irqchip pin table (KVM's
  // default sends GSI n to PIC pin n and IOAPIC pin n). Each entry is
  // {gsi, chip (KVM_IRQCHIP_*), pin}. Needs the in-kernel irqchip.
  struct IrqchipRoute {
    uint32_t gsi, chip, pin;
  };
  void set_gsi_routing(const std::vector<IrqchipRoute>& routes);
  // Copies the dirty bitmap of `slot` (1 bit per 4 KiB page) and clears it in KVM.
  void dirty_log(uint32_t slot, uint64_t* bitmap);
  // Whole in-kernel interrupt controller / PIT state (save at power-on, put back on reset).
  kvm_irqchip irqchip(uint32_t chip_id) const;
  void set_irqchip(const kvm_irqchip& c);
  kvm_pit_state2 pit() const;
  void set_pit(const kvm_pit_state2& p);
  int register_ioeventfd(uint64_t addr, uint32_t len, int efd, bool pio, bool has_match = false, uint64_t match = 0);
  int register_irqfd(int efd, uint32_t gsi, bool deassign = false);
  // Removes an ioeventfd registered with the same arguments.
  int unregister_ioeventfd(uint64_t addr, uint32_t len, int efd, bool pio, bool has_match = false, uint64_t match = 0);
  // Injects one MSI (KVM_SIGNAL_MSI). Returns > 0 delivered, 0 blocked by the
  // guest, -errno on failure (e.g. no in-kernel irqchip).
  int signal_msi(uint64_t addr, uint32_t data);
  // Guest writes to [addr, addr+size) are queued in KVM's coalesced-MMIO ring
  // instead of exiting to userspace; reads still exit. Returns the ring's page
  // offset inside each vCPU's mmap, or 0 when this KVM has no coalesced MMIO.
  int register_coalesced_mmio(uint64_t addr, uint32_t size);
  // kvmclock (KVM_GET_CLOCK / KVM_SET_CLOCK): the guest's clock in ns.
  kvm_clock_data clock() const;
  void set_clock(const kvm_clock_data& c);
  // Guest WRMSRs to these MSRs exit to userspace (KVM_EXIT_X86_WRMSR) instead
  // of reaching KVM (KVM_CAP_X86_USER_SPACE_MSR + KVM_X86_SET_MSR_FILTER);
  // every other MSR access stays in KVM. Host-side KVM_SET_MSRS is not
  // filtered. Returns false (nothing changed) where KVM lacks either cap.
  bool filter_msr_writes(const std::vector<uint32_t>& msrs);

private:
  KvmSystem& sys_;
  Fd fd_;
};

class KvmVcpu {
public:
  KvmVcpu(KvmVm& vm, int id);
  ~KvmVcpu();
  KvmVcpu(const KvmVcpu&) = delete;
  KvmVcpu& operator=(const KvmVcpu&) = delete;
  int id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_page() const { return run_; }
  // One KVM_RUN. Returns 0, or -errno (EINTR when kicked by a signal).
  int run();
  kvm_regs regs() const;
  void set_regs(const kvm_regs& r);
  kvm_sregs sregs() const;
  void set_sregs(const kvm_sregs& s);
  void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
  void set_fpu_defaults();
  void set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
  void set_mp_state_runnable();
  kvm_mp_state mp_state() const;
  void set_mp_state(const kvm_mp_state& s);
  kvm_lapic_state lapic() const;
  void set_lapic(const kvm_lapic_state& l);
  kvm_fpu fpu() const;
  void set_fpu(const kvm_fpu& f);
  // KVM_SET_GUEST_DEBUG single-step on/off: with it on, KVM_RUN returns
  // KVM_EXIT_DEBUG after every guest instruction (TF stays hidden from the guest).
  void set_single_step(bool on);
  // KVM_GET_VCPU_EVENTS' interrupt shadow (0, or STI / MOV SS blocking).
  uint8_t interrupt_shadow() const;
  // Translate a guest-virtual address with the vCPU's current paging; false if unmapped.
  bool translate(uint64_t gva, uint64_t& gpa, bool* writeable = nullptr) const;
  // The userspace assist (kvm/assist.h): pending events, XSAVE state (KVM's
  // 4 KiB standard-format buffer), XCR0 and one MSR.
  kvm_vcpu_events events() const;
  void set_events(const kvm_vcpu_events& e);
  void xsave(uint8_t (&buf)[4096]) const;
  void set_xsave(const uint8_t (&buf)[4096]);
  uint64_t xcr0() const;
  void set_xcr0(uint64_t v);
  bool get_msr(uint32_t index, uint64_t& value) const;
  // The guest's TSC frequency (KVM_GET_TSC_KHZ); 0 when KVM does not say.
  uint32_t tsc_khz() const;
  // Saved state (machine/state.h): MSRs by index (only those KVM returned),
  // set back all-or-error; XSAVE through KVM_GET_XSAVE2 when KVM has it (its
  // size from KVM_CAP_XSAVE2), else KVM_GET_XSAVE's 4 KiB; every XCR; debug
  // registers.
  std::vector<std::pair<uint32_t, uint64_t>> get_msrs(const std::vector<uint32_t>& indices) const;
  void set_msrs_all(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
  std::vector<uint8_t> xsave_state(size_t size) const;
  void set_xsave_state(const std::vector<uint8_t>& buf);
  kvm_xcrs xcrs() const;
  void set_xcrs(const kvm_xcrs& x);
  kvm_debugregs debugregs() const;
  void set_debugregs(const kvm_debugregs& d);

private:
  int id_;
  Fd fd_;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

}  // namespace vireo::kvm
