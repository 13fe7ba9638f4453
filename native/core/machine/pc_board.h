// The PC board: an i440FX/PIIX3 machine as SeaBIOS expects it, wired on top of
// the base Machine (RAM, vCPUs, COM1/COM2, debug ports):
//   00:00.0 i440FX host bridge        00:01.0 PIIX3 ISA bridge (PIRQ, ELCR, 0xcf9, 0x92)
//   00:01.1 PIIX3 IDE (0x1f0/0x3f6 IRQ14, 0x170/0x376 IRQ15, bus-master BAR4)
//   00:02.0 std-vga 1234:1111 (LFB as a dirty-logged KVM slot, legacy VGA, dispi)
//   00:01.2 PIIX3 UHCI (USB 1.1, INTD) with a USB tablet on port 1 (MachineConfig::usb_tablet)
//   00:01.3 PIIX4 PM (ACPI: SCI on IRQ 9 through PIIX3, PM timer, power button, S5 poweroff)
//   ISA: i8042 0x60/0x64 (IRQ1, IRQ12), CMOS/RTC 0x70 (IRQ8), fw_cfg 0x510, POST 0x80
// ACPI tables are Vireo's own (machine/acpi.h, through fw_cfg's
// etc/table-loader), and the KVM GSI routing matches their MADT (pc_irq.h).
// Every port and IRQ number is a named constant in machine/layout.h or the
// device's header.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <condition_variable>
#include <thread>
#include <string>
#include <vector>

#include "block/block.h"
#include "block/counting.h"
#include "devices/net/e1000.h"
#include "devices/virtio/blk/device.h"
#include "devices/virtio/net/device.h"
#include "machine/pci_windows.h"

namespace vireo {

class Machine;
struct MachineConfig;
namespace kvm {
class KvmVm;
}
namespace vga {
class StdVgaPci;
struct FrameUpdate;
struct Frame;
}  // namespace vga
namespace pci {
class PciHost;
class Piix3;
class I440fx;
class Piix4Pm;
}  // namespace pci
namespace ide {
class PiixIde;
}
namespace usb {
class Uhci;
class HidTablet;
}  // namespace usb
namespace virtio {
class VirtioPci;
class VirtioDevice;
class NotifyThread;
}  // namespace virtio
struct DiskSpec;
class I8042;
class CmosRtc;
class FwCfg;
class MiscPorts;
class KernelBoot;
namespace block {
class BlockBackend;
class SnapshotTarget;
}

class Board {
public:
  virtual ~Board() = default;
  // Puts every device back in its power-on state (guest reset).
  virtual void reset_devices() = 0;
  // With the vCPUs stopped: completes every in-flight disk request and flushes
  // every writable disk (qcow2 metadata and L2/refcount caches included), so
  // the image files are consistent as they are. 0 or the first -errno.
  virtual int quiesce() { return 0; }
  // The machine pauses (every vCPU parked; before quiesce) or resumes (before
  // the vCPUs run again): device and backend threads (USB frames, the RTC's
  // timer, network receive, virtio notifications) stop changing guest memory
  // and raising interrupts, and use no CPU, until resume_devices(). A board
  // is built paused; Machine::start() resumes it.
  virtual void pause_devices() {}
  virtual void resume_devices() {}
  // Registers the board's saved state with the Machine (Machine::register_state).
  virtual void register_chipset_state() {}
  // Internal disk snapshots (Machine::create_disk_snapshots): with the vCPUs
  // parked and the disks quiesced. Throws MachineError.
  virtual void create_disk_snapshots(const std::string& name);
  virtual void delete_disk_snapshots(const std::string& name);
};

class PcBoard : public Board {
public:
  // KVM memory slot for the std-vga linear framebuffer (the Machine uses 0..3).
  static constexpr uint32_t kLfbSlot = 8;
  // KVM memory slots for PCI expansion ROMs while their ROM BAR decodes
  // (PciHost::rom_mapped), one per function that has a ROM, from here on.
  static constexpr uint32_t kRomSlotFirst = 9, kRomSlotCount = 8;

  // Builds and registers every device. Throws MachineError naming a disk or
  // ISO that cannot be opened.
  PcBoard(Machine& m, kvm::KvmVm& vm);
  ~PcBoard() override;

  // Input (DOM KeyboardEvent.code names; see devices/legacy/i8042.h).
  bool key(const std::string& code, bool down);
  bool combo(const std::string& name);
  void mouse(int dx, int dy, int dz, uint8_t buttons);
  // The USB tablet: the pointer at framebuffer pixel (x, y) of the current
  // screen (scaled to the tablet's 0..32767), buttons (1 left, 2 right, 4
  // middle, 8 back, 16 forward), wheel steps (+ away from the user) and
  // horizontal wheel steps (+ right). False when the board has no tablet.
  bool pointer_abs(int x, int y, uint8_t buttons, int wheel, int hwheel = 0);
  // The guest drives the tablet: configured, and its interrupt endpoint
  // polled within the last second (Linux polls only while something has the
  // input device open, e.g. a desktop). Consoles send absolute positions then.
  bool tablet_active() const;
  // The display size the EDID offers as preferred, changed while the guest runs
  // (the console window's size): false where VgaDevice::set_preferred_size refuses it.
  bool set_display_size(uint32_t width, uint32_t height);
  std::pair<uint32_t, uint32_t> display_size() const;
  // Input a guest that does not read it lost since power-on: keys dropped past
  // the keyboard's 4096 waiting (I8042::dropped_keys) and tablet button
  // changes merged past its 16 queued reports (HidTablet::merged_clicks).
  struct InputLoss {
    uint64_t dropped_keys = 0, merged_clicks = 0;
  };
  InputLoss input_loss() const;
  // The tablet itself (null without MachineConfig::usb_tablet), for tests.
  usb::HidTablet* tablet() { return tablet_.get(); }
  // The UHCI (null without a tablet), for tests.
  usb::Uhci* uhci() { return uhci_.get(); }

  // Display: what changed since the last poll (nothing while the screen is still).
  std::optional<vga::FrameUpdate> poll(bool force_full);
  std::vector<uint8_t> screenshot_png();
  // The whole current screen, BGRX (what screenshot_png encodes).
  vga::Frame frame();
  // Text-mode screen contents (empty in graphics modes); see VgaDevice::text_screen.
  std::string screen_text();

  // ACPI power button (a polite shutdown request). False when the guest has
  // not enabled the power-button event (no ACPI-aware OS running).
  bool press_power_button();
  // True while keyboard or mouse bytes wait in the controller for the guest.
  bool input_pending();
  // One line on the keyboard path (controller status, queued bytes, the
  // master PIC's IRR/IMR/ISR) for diagnosing lost input.
  std::string input_debug();

  void reset_devices() override;
  int quiesce() override;
  void pause_devices() override;
  void resume_devices() override;
  void create_disk_snapshots(const std::string& name) override;
  void delete_disk_snapshots(const std::string& name) override;
  // Registers the chipset's saved state with the Machine (docs/state.md):
  // "pci" (config space of every function, first, so BARs are mapped before
  // the devices behind them load), "i8042", "rtc", "piix3", "piix4-pm",
  // "fw_cfg", "post", "misc-ports".
  void register_chipset_state() override;
  // The kernel-boot device when the machine boots a kernel (else null).
  KernelBoot* kernel_boot() { return kboot_.get(); }
  // CD-ROM: insert another ISO (the guest sees a media change). Throws
  // MachineError naming an ISO that cannot be opened, or when there is no drive.
  void change_cdrom(const std::string& path);
  // Ejects the CD. False when the guest has locked the tray (PREVENT MEDIUM
  // REMOVAL); the guest is then told an eject was requested, as a real drive's
  // button does.
  bool eject_cdrom();

  // Network cards, in MachineConfig::nics order. Link up/down as a cable
  // pulled or plugged (the guest is told); false for no such NIC.
  size_t nic_count() const { return nics_.size(); }
  bool set_nic_link(size_t i, bool up);
  bool nic_link_up(size_t i) const { return i < nics_.size() && nics_[i]->link_up(); }
  // Counters of NIC i (zeros for no such NIC).
  net::NicCounters nic_counters(size_t i) const;
  // The DHCP leases NIC i's user-mode NAT handed out (none for other backends).
  std::vector<net::DhcpLease> nic_leases(size_t i) const;

  // Disk traffic per disk and CD-ROM, in MachineConfig::disks order (a
  // changed CD keeps its drive's counters); see block/counting.h.
  struct DiskIo {
    std::string path;
    bool cdrom;
    uint64_t read_bytes, read_ops, write_bytes, write_ops, flush_ops;
  };
  std::vector<DiskIo> disk_io() const;

  // Every PCI function on bus 0 as the guest's config cycles see it (IDs and
  // class read through the host bridge's config mechanism), for diagnostics.
  struct PciInfo {
    int slot, fn;
    uint16_t vendor, device;
    uint32_t class_code;  // class<<16 | subclass<<8 | prog-if
    std::string name;
  };
  std::vector<PciInfo> pci_functions() const;

  // The host bridge's memory windows (machine/pci_windows.h) as the DSDT's
  // PCI0._CRS and fw_cfg etc/reserved-memory-end describe them.
  const PciWindows& pci_windows() const { return pci_windows_; }
  // The fw_cfg device's files as the firmware reads them (tests, diagnostics).
  const FwCfg& fw_cfg() const { return *fw_; }

private:
  void wire_ide();
  void watch_input();
  void input_watch_loop();
  // A DiskSpec with virtio = true: a virtio-blk PCI function at the next
  // free slot from 5 (QEMU's first slot for -device virtio-blk-pci).
  void wire_virtio_blk(const DiskSpec& d);
  // A virtio device as a PCI function at `slot`: its ioeventfd thread, MSI-X
  // and INTx hooks; named "<kind>@<slot>". `before_start` may hand queues'
  // eventfds to another thread before the notify thread starts.
  std::shared_ptr<virtio::VirtioPci> attach_virtio(
      std::shared_ptr<virtio::VirtioDevice> dev, int slot, const char* kind,
      const std::function<void(virtio::NotifyThread&, virtio::VirtioPci&)>& before_start = {});
  void configure_firmware();
  void configure_smbios();
  void map_rom(int devfn, uint64_t gpa, uint8_t* host, uint64_t size, bool mapped);
  // MachineConfig::nics: a virtio-net or e1000 function per NIC at the next
  // free slot from 3, each with its backend. Throws MachineError naming the NIC.
  void wire_nics();

  Machine& m_;
  kvm::KvmVm& vm_;
  PciWindows pci_windows_;
  std::unique_ptr<pci::PciHost> host_;
  std::shared_ptr<pci::I440fx> i440fx_;
  std::shared_ptr<pci::Piix3> piix3_;
  std::shared_ptr<pci::Piix4Pm> pm_;
  std::shared_ptr<MiscPorts> misc_;
  std::shared_ptr<ide::PiixIde> ide_;
  std::shared_ptr<usb::Uhci> uhci_;
  std::shared_ptr<usb::HidTablet> tablet_;
  std::shared_ptr<vga::StdVgaPci> vga_;
  std::shared_ptr<I8042> kbd_;
  std::shared_ptr<CmosRtc> rtc_;
  std::shared_ptr<FwCfg> fw_;
  std::shared_ptr<IoDevice> post_;
  std::shared_ptr<KernelBoot> kboot_;
  int cdrom_channel_ = -1, cdrom_unit_ = -1;
  std::vector<std::string> boot_paths_disk_, boot_paths_cdrom_;

  // kvm_pvm hosts only (see Machine::set_irq_window_stepping): while host
  // input waits in the keyboard controller, this thread has the vCPUs
  // single-step so IRQ 1/12 gets in at the guest's first interrupt window,
  // and stops once the guest has taken everything (or 10 s after it last
  // took a byte; see input_watch_loop).
  bool pvm_host_ = false;
  std::thread input_watch_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool input_arrived_ = false;
  bool watch_quit_ = false;

  std::mutex lfb_mu_;
  uint64_t lfb_gpa_ = 0;
  bool lfb_mapped_ = false;
  std::vector<uint64_t> dirty_;

  // ROM BARs as read-only memory slots (only where KVM has
  // KVM_CAP_READONLY_MEM; elsewhere the bus handler serves them, as QEMU
  // falls back to MMIO for ROM without it).
  struct RomSlot {
    int devfn = -1;
    uint64_t gpa = 0;
    bool mapped = false;
  };
  std::mutex rom_mu_;
  bool rom_slots_ok_ = false;
  std::array<RomSlot, kRomSlotCount> rom_slots_{};

  // virtio-blk functions and their ioeventfd threads (declared last so the
  // threads stop before anything they kick goes away).
  std::vector<std::shared_ptr<virtio::VirtioPci>> virtio_blk_;
  std::vector<std::shared_ptr<virtio::VirtioBlk>> blk_devs_;        // for quiesce()
  std::vector<std::shared_ptr<block::BlockBackend>> disk_backends_;  // every disk, for quiesce()
  struct DiskCounted {
    std::string path;
    bool cdrom;
    std::shared_ptr<block::IoCounters> io;
  };
  std::vector<DiskCounted> disk_counters_;  // MachineConfig::disks order
  std::shared_ptr<block::IoCounters> cdrom_io_;  // the first CD-ROM drive's (change_cdrom)
  // Puts a CountingBackend in front of `be`, counting into `io`.
  static std::shared_ptr<block::BlockBackend> counted(std::unique_ptr<block::BlockBackend> be,
                                                      const std::shared_ptr<block::IoCounters>& io);
  // disk_backends_[i]'s spec: path, format, read-only, temporary overlay.
  struct DiskInfo {
    std::string path, format;
    bool read_only = false, overlay = false;
  };
  std::vector<DiskInfo> disk_info_;
  // The disks a snapshot covers (writable ones); throws MachineError for raw
  // disks or disks running with temporary changes, naming them.
  std::vector<std::pair<block::SnapshotTarget*, const DiskInfo*>> snapshot_disks();
  std::vector<std::shared_ptr<net::Nic>> nics_;  // backends stop first in ~PcBoard
  std::vector<std::shared_ptr<net::NetBackend>> nic_backends_;  // nics_[i]'s
  std::vector<std::shared_ptr<e1000::E1000>> e1000_;
  std::vector<std::shared_ptr<virtio::VirtioPci>> virtio_net_;
  std::vector<std::unique_ptr<virtio::NotifyThread>> virtio_notify_;
};

}  // namespace vireo
