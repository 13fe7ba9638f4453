#include "kvm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace vireo::kvm {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

static std::string errstr(int e) { return std::strerror(e); }

namespace {
// One ioctl on a KVM fd; a failure throws KvmError naming the request ("KVM_GET_REGS failed: ...").
// Set requests only read their argument, so a const one may be passed.
void checked_ioctl(int fd, unsigned long req, const void* arg, const char* what) {
  if (::ioctl(fd, req, const_cast<void*>(arg)) < 0) throw KvmError(std::string(what) + " failed: " + errstr(errno), errno);
}
// The get/set pairs that copy one struct out of or into KVM.
template <typename T>
T get_state(int fd, unsigned long req, const char* what) {
  T v{};
  checked_ioctl(fd, req, &v, what);
  return v;
}
template <typename T>
void set_state(int fd, unsigned long req, const char* what, const T& v) {
  checked_ioctl(fd, req, &v, what);
}
}  // namespace

// Linux's uapi headers declare kvm_cpuid2 and kvm_msrs with
// __DECLARE_FLEX_ARRAY, which in C++ adds a one-byte empty struct: sizeof
// becomes 12 instead of 8, so both the ioctl numbers (which encode the size)
// and the offset of the entries are wrong when compiled as C++. Vireo spells
// the numbers with the C layout's 8-byte header and lays the buffers out by hand.
namespace {
constexpr size_t kFlexHeader = 8;  // u32 count + u32 padding
constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kFlexHeader);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kFlexHeader);
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kFlexHeader);
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kFlexHeader);
// kvm_xsave ends in a flexible array too: its C size is 4096.
constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, 4096);
constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, 4096);
constexpr unsigned long kGetXsave2 = _IOC(_IOC_READ, KVMIO, 0xcf, 4096);
// kvm_msr_list: u32 count + u32 indices[] (C size 4).
constexpr unsigned long kGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, 4);
}  // namespace

const char* kvm_device_path() {
  const char* p = getenv("VIREO_KVM_DEVICE");
  return p && *p ? p : "/dev/kvm";
}

std::string kvm_problem(const char* path) {
  struct stat st;
  if (::stat(path, &st) != 0) {
    return std::string(path) +
           " does not exist: KVM is not available. Enable virtualization (VT-x/AMD-V) in the "
           "firmware settings and load the module (sudo modprobe kvm_intel, or kvm_amd).";
  }
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == EACCES || e == EPERM) {
      return "no permission to open " + std::string(path) +
             ": add your user to the 'kvm' group (sudo usermod -aG kvm $USER), then log out and "
             "back in.";
    }
    return "cannot open " + std::string(path) + ": " + errstr(e);
  }
  int ver = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  ::close(fd);
  if (ver != KVM_API_VERSION) {
    return std::string(path) + " speaks KVM API version " + std::to_string(ver) + ", expected " +
           std::to_string(KVM_API_VERSION);
  }
  return {};
}

bool host_is_pvm() {
  // The kvm_pvm module registers itself as a vendor module next to kvm; on a
  // VT-x/AMD-V host kvm_intel or kvm_amd is loaded instead.
  struct stat st;
  bool pvm = ::stat("/sys/module/kvm_pvm", &st) == 0;
  bool hw = ::stat("/sys/module/kvm_intel", &st) == 0 || ::stat("/sys/module/kvm_amd", &st) == 0;
  if (const char* force = getenv("VIREO_ASSUME_PVM")) return force[0] == '1';
  return pvm && !hw;
}

KvmSystem::KvmSystem() {
  std::string p = kvm_problem();
  if (!p.empty()) throw KvmError(p);
  fd_ = Fd(::open(kvm_device_path(), O_RDWR | O_CLOEXEC));
  if (!fd_) throw KvmError(std::string("cannot open ") + kvm_device_path() + ": " + errstr(errno), errno);
  mmap_size_ = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size_ <= 0) throw KvmError("KVM_GET_VCPU_MMAP_SIZE failed: " + errstr(errno), errno);
  for (long cap : {KVM_CAP_IRQCHIP, KVM_CAP_USER_MEMORY, KVM_CAP_PIT2, KVM_CAP_EXT_CPUID}) {
    if (check_extension(cap) <= 0) {
      throw KvmError("this kernel's KVM lacks a required capability (" + std::to_string(cap) + ")");
    }
  }
}

int KvmSystem::check_extension(long cap) const { return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap); }

std::vector<kvm_cpuid_entry2> KvmSystem::supported_cpuid() const {
  int n = 128;
  for (;;) {
    std::vector<uint8_t> buf(kFlexHeader + n * sizeof(kvm_cpuid_entry2));
    uint32_t nent = uint32_t(n);
    std::memcpy(buf.data(), &nent, 4);
    if (::ioctl(fd_.get(), kGetSupportedCpuid, buf.data()) == 0) {
      std::memcpy(&nent, buf.data(), 4);
      std::vector<kvm_cpuid_entry2> out(nent);
      std::memcpy(out.data(), buf.data() + kFlexHeader, nent * sizeof(kvm_cpuid_entry2));
      return out;
    }
    if (errno != E2BIG || n > 4096) throw KvmError("KVM_GET_SUPPORTED_CPUID failed: " + errstr(errno), errno);
    n *= 2;
  }
}

KvmVm::KvmVm(KvmSystem& sys) : sys_(sys) {
  int fd;
  do {
    fd = ::ioctl(sys.fd(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw KvmError("KVM_CREATE_VM failed: " + errstr(errno), errno);
  fd_ = Fd(fd);
  // Addresses for Intel's real-mode TSS and identity map, just below the BIOS
  // ROM at the top of 4 GiB (the range QEMU uses; unused by guests).
  ::ioctl(fd_.get(), KVM_SET_TSS_ADDR, 0xfffbd000ul);
  uint64_t idmap = 0xfffbc000ull;
  ::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &idmap);
}

void KvmVm::set_memory(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0) {
    throw KvmError("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot) + " failed: " + errstr(errno), errno);
  }
}

void KvmVm::create_irqchip() {
  checked_ioctl(fd_.get(), KVM_CREATE_IRQCHIP, nullptr, "KVM_CREATE_IRQCHIP");
}

void KvmVm::create_pit() {
  kvm_pit_config cfg{};
  cfg.flags = KVM_PIT_SPEAKER_DUMMY;
  checked_ioctl(fd_.get(), KVM_CREATE_PIT2, &cfg, "KVM_CREATE_PIT2");
}

void KvmVm::irq_line(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  ::ioctl(fd_.get(), KVM_IRQ_LINE, &l);
}

void KvmVm::set_gsi_routing(const std::vector<IrqchipRoute>& routes) {
  // struct kvm_irq_routing is {u32 nr; u32 flags; entries[]}: in C the
  // entries start at offset 8 and sizeof is 8, which the ioctl number
  // encodes. C++ pads the struct to 16 (like kvm_coalesced_mmio_ring, see
  // docs/architecture.md), so both the layout and the request number are
  // spelled out here.
  constexpr size_t kHeader = 8;
  constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, uint64_t);  // 8-byte argument, as in C
  static_assert(kSetGsiRouting == 0x4008ae6aul);
  std::vector<uint8_t> buf(kHeader + routes.size() * sizeof(kvm_irq_routing_entry), 0);
  uint32_t nr = uint32_t(routes.size());
  std::memcpy(buf.data(), &nr, 4);
  for (size_t i = 0; i < routes.size(); i++) {
    kvm_irq_routing_entry e{};
    e.gsi = routes[i].gsi;
    e.type = KVM_IRQ_ROUTING_IRQCHIP;
    e.u.irqchip.irqchip = routes[i].chip;
    e.u.irqchip.pin = routes[i].pin;
    std::memcpy(buf.data() + kHeader + i * sizeof e, &e, sizeof e);
  }
  if (::ioctl(fd_.get(), kSetGsiRouting, buf.data()) < 0)
    throw KvmError("KVM_SET_GSI_ROUTING failed: " + errstr(errno), errno);
}

void KvmVm::dirty_log(uint32_t slot, uint64_t* bitmap) {
  kvm_dirty_log d{};
  d.slot = slot;
  d.dirty_bitmap = bitmap;
  checked_ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &d, "KVM_GET_DIRTY_LOG");
}

kvm_irqchip KvmVm::irqchip(uint32_t chip_id) const {
  kvm_irqchip c{};
  c.chip_id = chip_id;
  checked_ioctl(fd_.get(), KVM_GET_IRQCHIP, &c, "KVM_GET_IRQCHIP");
  return c;
}
void KvmVm::set_irqchip(const kvm_irqchip& c) { set_state(fd_.get(), KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP", c); }
kvm_pit_state2 KvmVm::pit() const { return get_state<kvm_pit_state2>(fd_.get(), KVM_GET_PIT2, "KVM_GET_PIT2"); }
void KvmVm::set_pit(const kvm_pit_state2& p) { set_state(fd_.get(), KVM_SET_PIT2, "KVM_SET_PIT2", p); }

int KvmVm::register_ioeventfd(uint64_t addr, uint32_t len, int efd, bool pio, bool has_match, uint64_t match) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = efd;
  io.datamatch = match;
  io.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (has_match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
  return ::ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int KvmVm::unregister_ioeventfd(uint64_t addr, uint32_t len, int efd, bool pio, bool has_match, uint64_t match) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = efd;
  io.datamatch = match;
  io.flags = KVM_IOEVENTFD_FLAG_DEASSIGN | (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (has_match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
  return ::ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int KvmVm::register_coalesced_mmio(uint64_t addr, uint32_t size) {
  const int page = sys_.check_extension(KVM_CAP_COALESCED_MMIO);
  if (page <= 0) return 0;
  kvm_coalesced_mmio_zone z{};
  z.addr = addr;
  z.size = size;
  if (::ioctl(fd_.get(), KVM_REGISTER_COALESCED_MMIO, &z) < 0) return 0;
  return page;
}

int KvmVm::signal_msi(uint64_t addr, uint32_t data) {
  kvm_msi m{};
  m.address_lo = uint32_t(addr);
  m.address_hi = uint32_t(addr >> 32);
  m.data = data;
  int r = ::ioctl(fd_.get(), KVM_SIGNAL_MSI, &m);
  return r < 0 ? -errno : r;
}

bool KvmVm::filter_msr_writes(const std::vector<uint32_t>& msrs) {
  if (msrs.empty() || msrs.size() > KVM_MSR_FILTER_MAX_RANGES) return false;
  if (sys_.check_extension(KVM_CAP_X86_USER_SPACE_MSR) <= 0 || sys_.check_extension(KVM_CAP_X86_MSR_FILTER) <= 0)
    return false;
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
  if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &cap) < 0) return false;
  static const uint8_t deny = 0;  // bit 0 clear: the range's one MSR is denied to the guest (→ userspace)
  kvm_msr_filter f{};
  f.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  for (size_t i = 0; i < msrs.size(); i++) {
    f.ranges[i].flags = KVM_MSR_FILTER_WRITE;
    f.ranges[i].nmsrs = 1;
    f.ranges[i].base = msrs[i];
    f.ranges[i].bitmap = const_cast<uint8_t*>(&deny);
  }
  if (::ioctl(fd_.get(), KVM_X86_SET_MSR_FILTER, &f) < 0) throw KvmError("KVM_X86_SET_MSR_FILTER failed: " + errstr(errno), errno);
  return true;
}

int KvmVm::register_irqfd(int efd, uint32_t gsi, bool deassign) {
  kvm_irqfd f{};
  f.fd = efd;
  f.gsi = gsi;
  f.flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0;
  return ::ioctl(fd_.get(), KVM_IRQFD, &f) < 0 ? -errno : 0;
}

KvmVcpu::KvmVcpu(KvmVm& vm, int id) : id_(id) {
  int fd = ::ioctl(vm.fd(), KVM_CREATE_VCPU, id);
  if (fd < 0) throw KvmError("KVM_CREATE_VCPU " + std::to_string(id) + " failed: " + errstr(errno), errno);
  fd_ = Fd(fd);
  run_size_ = size_t(vm.system().vcpu_mmap_size());
  void* p = ::mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw KvmError("mmap of the vCPU run page failed: " + errstr(errno), errno);
  run_ = static_cast<kvm_run*>(p);
}

KvmVcpu::~KvmVcpu() {
  if (run_) ::munmap(run_, run_size_);
}

void KvmVcpu::set_single_step(bool on) {
  kvm_guest_debug d{};
  d.control = on ? (KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP) : 0;
  if (::ioctl(fd_.get(), KVM_SET_GUEST_DEBUG, &d) < 0)
    throw KvmError("KVM_SET_GUEST_DEBUG failed: " + errstr(errno), errno);
}

uint8_t KvmVcpu::interrupt_shadow() const {
  kvm_vcpu_events e{};
  if (::ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &e) < 0)
    throw KvmError("KVM_GET_VCPU_EVENTS failed: " + errstr(errno), errno);
  return e.interrupt.shadow;
}

int KvmVcpu::run() { return ::ioctl(fd_.get(), KVM_RUN, 0) < 0 ? -errno : 0; }

kvm_regs KvmVcpu::regs() const { return get_state<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS"); }
void KvmVcpu::set_regs(const kvm_regs& r) { set_state(fd_.get(), KVM_SET_REGS, "KVM_SET_REGS", r); }
kvm_sregs KvmVcpu::sregs() const { return get_state<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS"); }
void KvmVcpu::set_sregs(const kvm_sregs& s) { set_state(fd_.get(), KVM_SET_SREGS, "KVM_SET_SREGS", s); }

void KvmVcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf(kFlexHeader + entries.size() * sizeof(kvm_cpuid_entry2));
  uint32_t nent = uint32_t(entries.size());
  std::memcpy(buf.data(), &nent, 4);
  std::memcpy(buf.data() + kFlexHeader, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  checked_ioctl(fd_.get(), kSetCpuid2, buf.data(), "KVM_SET_CPUID2");
}

void KvmVcpu::set_fpu_defaults() {
  kvm_fpu f{};
  f.fcw = 0x37f;
  f.mxcsr = 0x1f80;
  ::ioctl(fd_.get(), KVM_SET_FPU, &f);
}

void KvmVcpu::set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  std::vector<uint8_t> buf(kFlexHeader + msrs.size() * sizeof(kvm_msr_entry));
  uint32_t n = uint32_t(msrs.size());
  std::memcpy(buf.data(), &n, 4);
  for (size_t i = 0; i < msrs.size(); i++) {
    kvm_msr_entry e{};
    e.index = msrs[i].first;
    e.data = msrs[i].second;
    std::memcpy(buf.data() + kFlexHeader + i * sizeof e, &e, sizeof e);
  }
  ::ioctl(fd_.get(), kSetMsrs, buf.data());
}

void KvmVcpu::set_mp_state_runnable() {
  kvm_mp_state s{};
  s.mp_state = KVM_MP_STATE_RUNNABLE;
  ::ioctl(fd_.get(), KVM_SET_MP_STATE, &s);
}

kvm_mp_state KvmVcpu::mp_state() const { return get_state<kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE"); }
void KvmVcpu::set_mp_state(const kvm_mp_state& s) { set_state(fd_.get(), KVM_SET_MP_STATE, "KVM_SET_MP_STATE", s); }
kvm_lapic_state KvmVcpu::lapic() const { return get_state<kvm_lapic_state>(fd_.get(), KVM_GET_LAPIC, "KVM_GET_LAPIC"); }
void KvmVcpu::set_lapic(const kvm_lapic_state& l) { set_state(fd_.get(), KVM_SET_LAPIC, "KVM_SET_LAPIC", l); }
kvm_fpu KvmVcpu::fpu() const { return get_state<kvm_fpu>(fd_.get(), KVM_GET_FPU, "KVM_GET_FPU"); }
void KvmVcpu::set_fpu(const kvm_fpu& f) { set_state(fd_.get(), KVM_SET_FPU, "KVM_SET_FPU", f); }

bool KvmVcpu::translate(uint64_t gva, uint64_t& gpa, bool* writeable) const {
  kvm_translation t{};
  t.linear_address = gva;
  if (::ioctl(fd_.get(), KVM_TRANSLATE, &t) < 0 || !t.valid) return false;
  gpa = t.physical_address;
  if (writeable) *writeable = t.writeable;
  return true;
}

kvm_vcpu_events KvmVcpu::events() const { return get_state<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS"); }
void KvmVcpu::set_events(const kvm_vcpu_events& e) { set_state(fd_.get(), KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", e); }
void KvmVcpu::xsave(uint8_t (&buf)[4096]) const {
  checked_ioctl(fd_.get(), kGetXsave, buf, "KVM_GET_XSAVE");
}
void KvmVcpu::set_xsave(const uint8_t (&buf)[4096]) {
  checked_ioctl(fd_.get(), kSetXsave, buf, "KVM_SET_XSAVE");
}
uint64_t KvmVcpu::xcr0() const {
  kvm_xcrs x{};
  checked_ioctl(fd_.get(), KVM_GET_XCRS, &x, "KVM_GET_XCRS");
  for (uint32_t i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
    if (x.xcrs[i].xcr == 0) return x.xcrs[i].value;
  return 1;
}
void KvmVcpu::set_xcr0(uint64_t v) {
  kvm_xcrs x{};
  x.nr_xcrs = 1;
  x.xcrs[0].xcr = 0;
  x.xcrs[0].value = v;
  checked_ioctl(fd_.get(), KVM_SET_XCRS, &x, "KVM_SET_XCRS");
}
uint32_t KvmVcpu::tsc_khz() const {
  const int r = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  return r > 0 ? uint32_t(r) : 0;
}

bool KvmVcpu::get_msr(uint32_t index, uint64_t& value) const {
  uint8_t buf[kFlexHeader + sizeof(kvm_msr_entry)] = {};
  uint32_t n = 1;
  std::memcpy(buf, &n, 4);
  kvm_msr_entry e{};
  e.index = index;
  std::memcpy(buf + kFlexHeader, &e, sizeof e);
  if (::ioctl(fd_.get(), kGetMsrs, buf) != 1) return false;
  std::memcpy(&e, buf + kFlexHeader, sizeof e);
  value = e.data;
  return true;
}

}  // namespace vireo::kvm

namespace vireo::kvm {

std::vector<uint32_t> KvmSystem::msr_index_list() const {
  std::vector<uint32_t> buf(1 + 1024);
  buf[0] = 1024;
  if (::ioctl(fd_.get(), kGetMsrIndexList, buf.data()) < 0)
    throw KvmError("KVM_GET_MSR_INDEX_LIST failed: " + errstr(errno), errno);
  return {buf.begin() + 1, buf.begin() + 1 + std::min<uint32_t>(buf[0], 1024)};
}

kvm_clock_data KvmVm::clock() const { return get_state<kvm_clock_data>(fd_.get(), KVM_GET_CLOCK, "KVM_GET_CLOCK"); }
void KvmVm::set_clock(const kvm_clock_data& c) {
  kvm_clock_data copy{};
  copy.clock = c.clock;  // no flags: KVM takes the value as of now
  checked_ioctl(fd_.get(), KVM_SET_CLOCK, &copy, "KVM_SET_CLOCK");
}

std::vector<std::pair<uint32_t, uint64_t>> KvmVcpu::get_msrs(const std::vector<uint32_t>& indices) const {
  std::vector<uint8_t> buf(kFlexHeader + indices.size() * sizeof(kvm_msr_entry));
  uint32_t n = uint32_t(indices.size());
  std::memcpy(buf.data(), &n, 4);
  for (size_t i = 0; i < indices.size(); i++) {
    kvm_msr_entry e{};
    e.index = indices[i];
    std::memcpy(buf.data() + kFlexHeader + i * sizeof e, &e, sizeof e);
  }
  int got = ::ioctl(fd_.get(), kGetMsrs, buf.data());
  if (got < 0) throw KvmError("KVM_GET_MSRS failed: " + errstr(errno), errno);
  std::vector<std::pair<uint32_t, uint64_t>> out;
  for (int i = 0; i < got; i++) {
    kvm_msr_entry e;
    std::memcpy(&e, buf.data() + kFlexHeader + size_t(i) * sizeof e, sizeof e);
    out.emplace_back(e.index, e.data);
  }
  return out;
}

void KvmVcpu::set_msrs_all(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  std::vector<uint8_t> buf(kFlexHeader + msrs.size() * sizeof(kvm_msr_entry));
  uint32_t n = uint32_t(msrs.size());
  std::memcpy(buf.data(), &n, 4);
  for (size_t i = 0; i < msrs.size(); i++) {
    kvm_msr_entry e{};
    e.index = msrs[i].first;
    e.data = msrs[i].second;
    std::memcpy(buf.data() + kFlexHeader + i * sizeof e, &e, sizeof e);
  }
  int done = ::ioctl(fd_.get(), kSetMsrs, buf.data());
  if (done < 0) throw KvmError("KVM_SET_MSRS failed: " + errstr(errno), errno);
  if (size_t(done) != msrs.size()) {
    char b[16];
    std::snprintf(b, sizeof b, "%#x", msrs[size_t(done)].first);
    throw KvmError("KVM_SET_MSRS refused MSR " + std::string(b) + " (" + std::to_string(done) + " of " +
                   std::to_string(msrs.size()) + " set)");
  }
}

std::vector<uint8_t> KvmVcpu::xsave_state(size_t size) const {
  std::vector<uint8_t> buf(std::max<size_t>(size, 4096));
  // KVM_GET_XSAVE2 copies as much as KVM_CAP_XSAVE2 said (its ioctl number
  // encodes the 4 KiB struct, the buffer is the capability's size).
  unsigned long req = buf.size() > 4096 ? kGetXsave2 : kGetXsave;
  if (::ioctl(fd_.get(), req, buf.data()) < 0) {
    if (req == kGetXsave2) throw KvmError("KVM_GET_XSAVE2 failed: " + errstr(errno), errno);
    throw KvmError("KVM_GET_XSAVE failed: " + errstr(errno), errno);
  }
  return buf;
}
void KvmVcpu::set_xsave_state(const std::vector<uint8_t>& buf) {
  if (buf.size() < 4096) throw KvmError("XSAVE state is shorter than 4 KiB");
  checked_ioctl(fd_.get(), kSetXsave, buf.data(), "KVM_SET_XSAVE");
}
kvm_xcrs KvmVcpu::xcrs() const { return get_state<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS"); }
void KvmVcpu::set_xcrs(const kvm_xcrs& x) { set_state(fd_.get(), KVM_SET_XCRS, "KVM_SET_XCRS", x); }
kvm_debugregs KvmVcpu::debugregs() const { return get_state<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS"); }
void KvmVcpu::set_debugregs(const kvm_debugregs& d) { set_state(fd_.get(), KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", d); }

}  // namespace vireo::kvm
