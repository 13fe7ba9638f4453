// A virtual machine: guest RAM, the KVM VM and vCPU threads, the buses and
// devices of the board, and a small state machine (created → running ⇄ paused
// → stopped | crashed). Knows nothing about N-API; events go out through
// std::function callbacks that the binding turns into JS events.
#pragma once
#include <array>
#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <linux/kvm.h>

#include "bus/bus.h"
#include "kvm/assist.h"
#include "machine/boot.h"
#include "machine/guest_memory.h"
#include "machine/tick_pacer.h"

namespace vireo {

namespace kvm {
class KvmSystem;
class KvmVm;
class KvmVcpu;
}  // namespace kvm
namespace devices {
class Serial16550;
}
namespace state {
struct ConfigDesc;
}

struct DiskSpec {
  std::string path;
  std::string format;  // "raw" or "qcow2": required, never probed
  bool read_only = false;
  bool cdrom = false;
  bool virtio = false;
  bool snapshot = false;
};

// A network card. The PC board gives each one a PCI function at the first
// free slot from 3 (where QEMU's pc puts its NIC).
struct NicSpec {
  std::string model = "virtio";  // "virtio" (virtio-net) or "e1000" (Intel 82540EM)
  std::string mac;               // "" = 52:54:00:12:34:56 + index, as QEMU numbers its NICs
  // "user" = NAT through libslirp; "switch" = a Vireo isolated network's switch
  // (net/switch.h) on the UNIX socket `socket`; "tap" = a TAP device on the
  // host bridge `bridge` (or the existing TAP `tap`), net/tap.h.
  std::string backend = "user";
  bool link_up = true;
  // backend "user":
  bool restrict = false;             // no outside world, no host: slirp's DHCP/DNS and port forwards only
  std::vector<std::string> hostfwd;  // "tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT" (QEMU's hostfwd syntax)
  // The guest's IPv4 network ("" = 10.0.2.0/24, host .2, DHCP from .15, DNS .3): see net::SlirpOptions.
  std::string net;  // "A.B.C.D/PREFIX" or "A.B.C.D" (/24)
  std::string host, dhcp_start, dns;
  // backend "switch":
  std::string socket;
  // backend "tap":
  std::string bridge, tap;
  // Option ROM for the card's ROM BAR (e.g. Debian ipxe-qemu's
  // /usr/lib/ipxe/qemu/pxe-e1000.rom); "" = none, as now by default.
  std::string rom;
};

struct MachineConfig {
  uint64_t mem_bytes = 256ull << 20;
  int cpus = 1;
  std::string kernel, initrd, append;
  std::string flat;
  uint64_t flat_addr = 0x7c00;
  std::string bios, vga_bios;
  std::vector<DiskSpec> disks;
  std::vector<NicSpec> nics;
  std::string boot_order = "cdn";
  bool boot_menu = false;
  // How long SeaBIOS waits for ESC at "Press ESC for boot menu" (libvirt's
  // <bootmenu timeout=...>, QEMU's -boot splash-time), 0-65535 ms.
  uint32_t boot_menu_timeout_ms = 2500;
  // The machine's UUID, "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (RFC 4122
  // text). Firmware boot shows it in SMBIOS type 1 and fw_cfg's UUID key.
  // Empty: all zeros, as QEMU without -uuid.
  std::string uuid;
  // QEMU's -no-reboot: a guest reset or triple fault stops the machine (kind
  // "reset" / "triple-fault") instead of rebooting the PC.
  bool no_reboot = false;
  // PC board: a PIIX3 UHCI (00:01.2) with a USB tablet on port 1, the
  // absolute pointer PcBoard::pointer_abs drives (virt-manager's default).
  bool usb_tablet = true;
  // PC board: the display size the std-vga's EDID offers as preferred
  // (VgaDevice::set_preferred_size); 0 x 0: 1024x768.
  uint32_t display_width = 0, display_height = 0;
  // The least time between two TSC-deadline timer interrupts of one vCPU
  // (TickPacer; docs/linux-guest.md, "The timer pacer"), in microseconds.
  // -1: Vireo's choice (kPvmTickGapUs on kvm_pvm hosts, or
  // VIREO_PVM_TICK_GAP_US there; nothing on VT-x/AMD-V); 0: off.
  int64_t tick_gap_us = -1;
};

// kvm_pvm hosts: the TickPacer's gap unless MachineConfig or
// VIREO_PVM_TICK_GAP_US says otherwise.
constexpr int64_t kPvmTickGapUs = 20000;

enum class RunState { Created, Running, Paused, Stopped, Crashed };
const char* run_state_name(RunState s);

struct StopInfo {
  std::string kind;  // see electron/common/engine-api.ts StopReason.kind
  int code = 0;
  std::string message;
  int vcpu = -1;
  bool has_rip = false;
  uint64_t rip = 0;
  std::vector<uint8_t> bytes;
};

class MachineError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

class Board;  // the PC board's extra devices (firmware boot); see machine/pc_board.h
class KernelBoot;  // a kernel boot on the PC board; see machine/kernel_boot.h

class Machine {
public:
  // Validates the configuration (files exist and are readable, sizes sane),
  // creates the VM and loads the kernel or firmware. Throws MachineError /
  // kvm::KvmError / boot::BootError with a message for the user.
  explicit Machine(MachineConfig cfg);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  void start();
  // Parks every vCPU, then completes in-flight disk I/O and flushes the disks
  // (Board::quiesce) before reporting Paused.
  void pause();
  void resume();
  // Stops the vCPUs and joins their threads. Idempotent; safe from any thread
  // except a vCPU thread.
  void stop();

  RunState state() const;
  StopInfo stop_info() const;

  // Host → guest serial input on COM1 (port 0) or COM2 (port 1); never lost.
  void write_serial(int port, const uint8_t* data, size_t len);
  // Guest → host serial output is buffered; on_serial_ready fires (from a
  // vCPU thread) when the buffer goes from empty to non-empty, and the
  // The timer pacer, one per vCPU (empty when the timer is not paced): its
  // gap in guest TSC cycles, deadline writes seen and how many it moved later.
  // Read it once the machine has stopped.
  struct TickPacing { uint64_t gap_tsc, writes, delayed; };
  std::vector<TickPacing> tick_pacing() const {
    std::vector<TickPacing> out;
    for (const auto& p : pacers_) out.push_back({p.min_gap(), p.writes(), p.delayed()});
    return out;
  }
  // consumer drains it with take_serial().
  std::vector<uint8_t> take_serial(int port);

  // Callbacks: set before start(). They run on vCPU threads or the caller of
  // stop(); they must not call back into stop()/pause() synchronously.
  std::function<void()> on_serial_ready;
  std::function<void(RunState, const StopInfo&)> on_state;

  GuestMemory& memory() { return mem_; }
  Bus& pio() { return pio_; }
  Bus& mmio() { return mmio_; }
  const MachineConfig& config() const { return cfg_; }
  const boot::BootResult& boot_result() const { return boot_; }
  Board* board() { return board_.get(); }
  // The kernel-boot device when a kernel boots on the PC board (else null);
  // made, and the kernel checked, before the VM is.
  const std::shared_ptr<KernelBoot>& kernel_boot() const { return kboot_; }
  kvm::KvmVm& vm() { return *vm_; }
  // Asks every vCPU to stop with `info` (first caller wins). Used by devices
  // (exit port, ACPI poweroff) from vCPU threads; does not join.
  void request_stop(StopInfo info, RunState final_state = RunState::Stopped);
  // A guest-initiated reset (0xcf9, keyboard controller, triple fault in
  // firmware boot): with the PC board the machine reboots, as a PC does;
  // without one (direct kernel boot) it stops with kind "reset".
  void request_reset(const std::string& why);
  // kvm_pvm hosts: KVM injects a pending PIC interrupt only when it (re)enters
  // the guest and finds IF=1, and its emulator runs ring-0 code in batches of
  // up to ~1,000 instructions between entries. Firmware polls the keyboard
  // with interrupts enabled for two or three instructions at a time (SeaBIOS:
  // sti; nop; pause; cli), which a batch boundary almost never hits. While
  // host input waits for the guest, the board turns on single-stepping
  // (KVM_SET_GUEST_DEBUG): every instruction ends in an exit, so the interrupt
  // goes in at the first instruction boundary with IF=1. The guest runs about
  // ten times slower for those milliseconds. Not used with VT-x/AMD-V, whose
  // interrupt-window exits do this in hardware.
  void set_irq_window_stepping(bool on);
  // Write-mostly MMIO (the VGA window): the guest's writes there wait in
  // KVM's coalesced-MMIO ring instead of each costing an exit, as QEMU does
  // for vga-lowmem. Boards call it while the machine is built. The ring is
  // applied, in order, before every exit is handled and whenever a consumer
  // reads device state that such writes change (flush_coalesced_mmio()).
  void add_coalesced_mmio(uint64_t addr, uint32_t size);
  void flush_coalesced_mmio();
  // Saved state (machine/state.h, docs/state.md).
  // save_state: with the machine paused, writes guest RAM (sparse), every
  // vCPU (registers, special registers, XSAVE/FPU, XCRs, MSRs, LAPIC, pending
  // events, MP state, debug registers), the in-kernel PIC/IOAPIC/PIT and
  // kvmclock, and every registered device to `path`. Throws
  // state::StateError / MachineError (not paused; a device on the buses that
  // cannot save, named) and leaves nothing at `path` then.
  void save_state(const std::string& path);
  // load_state: before start(), replaces this freshly built machine's state
  // with the file's. Throws state::StateError for a bad file or one saved
  // from a different configuration (naming what differs); the machine must
  // then be discarded (RAM may be partly loaded).
  void load_state(const std::string& path);
  // What a state file must match: RAM size, vCPU count, board, devices.
  state::ConfigDesc state_config() const;
  // A device whose state goes into state files under `name` (boards call it
  // while the machine is built; names are unique).
  void register_state(const std::string& name, std::shared_ptr<Stateful> dev);
  // Internal disk snapshots (docs/state.md, "Snapshots"): with the machine
  // paused (the caller pauses; pause drains I/O and flushes the images) or
  // not started, creates an internal snapshot `name` on every writable qcow2
  // disk through its open image. All or nothing: a failure deletes the ones
  // already made. Read-only disks are skipped; raw disks are refused
  // ("snapshots need qcow2 disks: PATHS"), as are disks running with
  // temporary changes. Throws MachineError.
  void create_disk_snapshots(const std::string& name);
  // Deletes internal snapshot `name` from every writable qcow2 disk that has
  // it (a disk without it is skipped). Throws MachineError naming the disks
  // that failed.
  void delete_disk_snapshots(const std::string& name);
  // How many times the guest has rebooted.
  int reset_count() const { return reset_count_.load(); }

  // Performance numbers (addon machine.perfStats(), docs/app.md "Live
  // graphs"). vcpu_cpu_ns: CPU time the running vCPU threads have used so far
  // (user + system, which on kvm_pvm includes KVM's emulation of guest ring 0),
  // read from /proc/self/task/TID/schedstat from any thread; a thread that
  // has ended counts no more. ram_resident_bytes: guest RAM resident in host
  // memory, i.e. pages the guest (or a loaded state) touched: mincore over the
  // RAM mapping, one byte of scratch per 4 KiB page, so call it every second
  // or two, not per frame.
  uint64_t vcpu_cpu_ns() const;
  uint64_t ram_resident_bytes() const;
  uint64_t ram_bytes() const { return ram_size_; }
  int vcpu_count() const { return int(vcpus_.size()); }
  // kvm_pvm hosts: how many times a vCPU that KVM had left halted at an
  // instruction that is not after a HLT was made runnable again
  // (repair_false_halt).
  uint64_t false_halts_repaired() const { return false_halts_.load(); }
  // Tests only (kvm_halt_watch_test): puts vCPU `id` of a paused machine in
  // KVM's halted state where it stands, as kvm_pvm's single-step hazard does.
  void halt_vcpu_for_test(int id);

private:
  void setup_memory();
  void setup_devices();
  void setup_vcpu(kvm::KvmVcpu& v, int id);
  void vcpu_loop(int id);
  static bool safe_to_stop_stepping(kvm::KvmVcpu& v);
  static bool at_cpl3(kvm::KvmVcpu& v);
  bool handle_exit(kvm::KvmVcpu& v);
  void kick_all();
  void set_state(RunState s, const StopInfo& info);
  void fill_fault_info(kvm::KvmVcpu& v, StopInfo& info);
  // kvm_pvm hosts: completes the instruction KVM's emulator refused, or
  // delivers its exception (kvm/assist.h); also completes a ring-3 SYSCALL
  // that the host left at CPL 3. False: not one the assist knows.
  bool assist(kvm::KvmVcpu& v, std::string& why);
  // assist()'s second half: writes the result back into the vCPU.
  bool apply_assist(kvm::KvmVcpu& v, kvm::AssistState& st, const kvm::AssistResult& r, const uint8_t* bytes, size_t n);
  void trace_assist(kvm::KvmVcpu& v, const kvm::AssistState& st, const kvm::AssistResult& r, const uint8_t* bytes,
                    size_t n);
  void do_reset();
  void capture_power_on_state();
  // VIREO_SAMPLE_VCPUS=SECONDS (machine/vcpu_sample.h): the sampler thread
  // kicks every vCPU each period; each vCPU prints its own sample.
  void sampler_loop(double period_s);
  void take_vcpu_sample(kvm::KvmVcpu& v, int id);
  // kvm_pvm hosts: the halt watch kicks, once a second, each vCPU that has
  // not left KVM_RUN for that second; the vCPU then checks itself with
  // repair_false_halt() (docs/architecture.md, "Input on kvm_pvm hosts").
  void halt_watch_loop();
  bool repair_false_halt(kvm::KvmVcpu& v, int id);

  MachineConfig cfg_;
  GuestMemory mem_;
  Bus pio_, mmio_;
  uint8_t* ram_ = nullptr;
  uint64_t ram_size_ = 0;
  boot::RamLayout ram_layout_{};
  boot::BootResult boot_{};
  std::vector<uint8_t> bios_;
  uint8_t* bios_map_ = nullptr;

  std::unique_ptr<kvm::KvmSystem> sys_;
  std::unique_ptr<kvm::KvmVm> vm_;
  std::vector<std::unique_ptr<kvm::KvmVcpu>> vcpus_;
  std::vector<std::thread> threads_;
  std::shared_ptr<KernelBoot> kboot_;
  std::unique_ptr<Board> board_;
  int coalesced_page_ = 0;  // the ring's page offset in a vCPU mmap (0: none)
  kvm_coalesced_mmio_ring* coalesced_ring_ = nullptr;
  std::mutex coalesced_mu_;

  std::shared_ptr<devices::Serial16550> serial_[2];
  bool pvm_ = false;
  // CPUID as the guest sees it (leaf 0xd's layout for XSAVE; see assist()).
  std::vector<kvm_cpuid_entry2> guest_cpuid_;
  // Assists per vCPU and kind (each row written only by its vCPU thread).
  std::vector<std::array<uint64_t, size_t(kvm::AssistKind::Count)>> assists_;
  std::vector<uint64_t> native_followers_;
  // One per vCPU when the TSC-deadline timer is paced (each used only by its vCPU thread).
  std::vector<TickPacer> pacers_;
  void setup_tick_pacing();
  bool pace_deadline_write(kvm::KvmVcpu& v);
  const bool trace_assist_ = std::getenv("VIREO_TRACE_ASSIST") != nullptr;
  std::mutex out_mu_;
  std::vector<uint8_t> out_[2];

  mutable std::mutex mu_;
  std::condition_variable cv_;
  RunState state_ = RunState::Created;
  StopInfo stop_info_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> pause_requested_{false};
  std::atomic<bool> reset_requested_{false};
  std::atomic<int> reset_count_{0};
  std::atomic<bool> step_wanted_{false};
  std::string reset_why_;
  std::vector<std::pair<std::string, std::shared_ptr<Stateful>>> state_devs_;
  struct PowerOn;  // register and interrupt-controller state at power-on
  std::unique_ptr<PowerOn> power_on_;
  int parked_ = 0;
  int live_threads_ = 0;
  std::array<std::atomic<int>, 64> vcpu_tids_{};  // each vCPU thread's TID while it runs (0: none)
  RunState final_state_ = RunState::Stopped;
  std::thread sampler_;
  std::array<std::atomic<bool>, 64> sample_wanted_{};
  std::array<std::atomic<uint64_t>, 64> run_count_{};  // KVM_RUN returns per vCPU (VIREO_SAMPLE_VCPUS)
  std::array<uint64_t, 64> sample_last_exits_{}, sample_last_cpu_ns_{};  // each written by its vCPU thread
  std::thread halt_watch_;
  std::array<std::atomic<bool>, 64> halt_check_wanted_{};
  std::atomic<uint64_t> false_halts_{0};
  int64_t started_ns_ = 0;
};

}  // namespace vireo
