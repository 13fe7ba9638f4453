#include "machine/pc_board.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "block/image.h"
#include "devices/fw_cfg.h"
#include "devices/ide/piix_ide.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/misc_ports.h"
#include "devices/pci/piix4_pm.h"
#include "devices/pci/i440fx.h"
#include "devices/pci/pci.h"
#include "devices/pci/piix3.h"
#include "devices/usb/hid_tablet.h"
#include "devices/usb/uhci.h"
#include "devices/vga/std_vga_pci.h"
#include "devices/vga/vga.h"
#include "devices/virtio/blk/device.h"
#include "devices/virtio/notify_thread.h"
#include "devices/virtio/pci_transport.h"
#include "kvm/kvm.h"
#include "net/slirp.h"
#include "net/socket_backend.h"
#include "net/tap.h"
#include "machine/acpi.h"
#include "machine/boot.h"
#include "machine/kernel_boot.h"
#include "machine/layout.h"
#include "machine/machine.h"
#include "machine/smbios.h"
#include "machine/state.h"
#include "kvm/cpuid.h"
#include "machine/pc_irq.h"

namespace vireo {

namespace {

// ISA ports and IRQs of the PC/AT (IBM PC AT Technical Reference).
constexpr uint16_t kPciConfigPort = 0xcf8, kPciConfigLen = 8;  // mechanism #1 (+0xcf9 reset control)
constexpr uint16_t kKbdDataPort = 0x60, kKbdCmdPort = 0x64;
constexpr uint16_t kRtcPort = 0x70, kRtcLen = 2;
constexpr uint16_t kPostPort = 0x80;
constexpr uint16_t kIdePrimaryCmd = 0x1f0, kIdePrimaryCtl = 0x3f6, kIdeSecondaryCmd = 0x170, kIdeSecondaryCtl = 0x376;
constexpr uint16_t kVgaLegacyPorts = 0x3b0, kVgaLegacyLen = 0x30, kDispiPort = 0x1ce, kDispiLen = 3;
constexpr int kInputWatchUs = 500;  // how often PcBoard's input watch looks (kvm_pvm hosts only)
constexpr uint8_t kIrqSci = pci::Piix4Pm::kSciIrq;  // ACPI SCI, as the FADT (machine/acpi.cc) declares
constexpr uint8_t kIrqKbd = 1, kIrqRtc = 8, kIrqMouse = 12, kIrqIdePrimary = 14, kIrqIdeSecondary = 15;
// PCI slots of QEMU's "pc" machine, which SeaBIOS and guests' drivers know.
constexpr int kIdeSlot = 1, kIdeFn = 1, kVgaSlot = 2;

int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// POST codes (port 0x80) are kept for diagnostics; everything else there is a delay write.
struct PostPort : IoDevice {
  uint8_t last = 0;
  void read(uint64_t, std::span<uint8_t> d) override {
    std::fill(d.begin(), d.end(), 0);
    d[0] = last;
  }
  void write(uint64_t, std::span<const uint8_t> d) override { last = d[0]; }
  // Saved state (section "post", version 1): the last code.
  StateKind state_kind() const override { return StateKind::Saved; }
  void save(state::StateWriter& w) const override { w.u8(last); }
  void load(state::StateReader& r) override {
    if (r.version() != 1) r.fail("unknown version (this Vireo has 1)");
    uint8_t v = r.u8();
    r.finish();
    last = v;
  }
};


}  // namespace

PcBoard::PcBoard(Machine& m, kvm::KvmVm& vm) : m_(m), vm_(vm) {
  const MachineConfig& cfg = m.config();
  Bus& pio = m.pio();
  Bus& mmio = m.mmio();
  auto isa_irq = [&vm](uint8_t irq) { return IrqLine([&vm, irq](bool l) { vm.irq_line(irq, l); }); };

  // The PC's GSI routing (machine/pc_irq.h): the PIT (GSI 0) reaches IOAPIC
  // pin 2, as the MADT built in configure_firmware says.
  std::vector<kvm::KvmVm::IrqchipRoute> routes;
  for (const pcirq::Route& r : pcirq::pc_routes()) routes.push_back({r.gsi, uint32_t(r.chip), r.pin});
  vm.set_gsi_routing(routes);

  host_ = std::make_unique<pci::PciHost>(pio, mmio);
  rom_slots_ok_ = vm.system().check_extension(KVM_CAP_READONLY_MEM) > 0;
  host_->rom_mapped = [this](pci::PciFunction& f, uint64_t gpa, uint8_t* p, uint64_t size, bool mapped) {
    map_rom(f.devfn(), gpa, p, size, mapped);
  };
  pio.insert(host_->config_port(), kPciConfigPort, kPciConfigLen, "pci-config");

  i440fx_ = std::make_shared<pci::I440fx>();
  host_->attach(pci::I440fx::kSlot, pci::I440fx::kFn, i440fx_);

  pci::Piix3::Callbacks pcb;
  pcb.set_isa_irq = [&vm](int irq, bool level) { vm.irq_line(uint32_t(irq), level); };
  pcb.reset = [&m] { m.request_reset("reset control register 0xcf9 / port 0x92"); };
  piix3_ = std::make_shared<pci::Piix3>(*host_, pcb);
  host_->attach(pci::Piix3::kSlot, pci::Piix3::kFn, piix3_);
  pio.insert(piix3_->port92(), pci::Piix3::kPort92, 1, "port92");

  pci::Piix4Pm::Callbacks pmcb;
  pmcb.poweroff = [&m] {
    StopInfo i;
    i.kind = "poweroff";
    i.message = "the guest powered off (ACPI S5)";
    m.request_stop(i);
  };
  pm_ = std::make_shared<pci::Piix4Pm>(
      IrqLine([this](bool l) { piix3_->external_irq(kIrqSci, pci::Piix3::kSrcSci, l); }), mono_ns, pmcb);
  host_->attach(pci::Piix4Pm::kSlot, pci::Piix4Pm::kFn, pm_);
  pio.insert(pm_->gpe_port(), pci::Piix4Pm::kGpePort, pci::Piix4Pm::kGpeLen, "acpi-gpe0");
  pio.insert(pm_->apm_port(), pci::Piix4Pm::kApmPort, pci::Piix4Pm::kApmLen, "apm");

  ide_ = std::make_shared<ide::PiixIde>(&m.memory(), isa_irq(kIrqIdePrimary), isa_irq(kIrqIdeSecondary));
  host_->attach(kIdeSlot, kIdeFn, ide_);
  pio.insert(ide_->channel(0)->cmd_block(), kIdePrimaryCmd, 8, "ide0-cmd");
  pio.insert(ide_->channel(0)->ctl_block(), kIdePrimaryCtl, 1, "ide0-ctl");
  pio.insert(ide_->channel(1)->cmd_block(), kIdeSecondaryCmd, 8, "ide1-cmd");
  pio.insert(ide_->channel(1)->ctl_block(), kIdeSecondaryCtl, 1, "ide1-ctl");
  wire_ide();
  m.register_state("ide0", ide_->channel(0));
  m.register_state("ide1", ide_->channel(1));

  if (cfg.usb_tablet) {
    // PIIX3 function 2, INTD (PIRQD by the i440FX swizzle), as on QEMU's pc.
    tablet_ = std::make_shared<usb::HidTablet>(mono_ns);
    uhci_ = std::make_shared<usb::Uhci>(&m.memory(), mono_ns);
    uhci_->attach(0, tablet_);
    host_->attach(usb::Uhci::kSlot, usb::Uhci::kFn, uhci_);
    m.register_state("uhci", uhci_);
    m.register_state("tablet", tablet_);
  }

  std::vector<uint8_t> vgabios;
  if (!cfg.vga_bios.empty()) vgabios = boot::read_file(cfg.vga_bios, "VGA BIOS");
  vga_ = std::make_shared<vga::StdVgaPci>(std::move(vgabios));
  dirty_.assign(vga_->vga()->vram_size() / 4096 / 64 + 1, 0);
  if (cfg.display_width || cfg.display_height) {
    if (!vga_->vga()->set_preferred_size(cfg.display_width, cfg.display_height))
      throw MachineError("display size " + std::to_string(cfg.display_width) + "x" + std::to_string(cfg.display_height) +
                         " is not possible: between 640x480 and 4095x4095, and at 32 bits per pixel within the " +
                         std::to_string(vga_->vga()->vram_size() >> 20) + " MiB of video memory");
  }
  vga_->on_lfb_mapped = [this](uint64_t gpa, bool mapped) {
    std::lock_guard g(lfb_mu_);
    if (lfb_mapped_) vm_.set_memory(kLfbSlot, lfb_gpa_, 0, nullptr);  // size 0 deletes the slot
    lfb_mapped_ = false;
    if (mapped) {
      vm_.set_memory(kLfbSlot, gpa, vga_->vga()->vram_size(), vga_->vga()->vram(), KVM_MEM_LOG_DIRTY_PAGES);
      lfb_gpa_ = gpa;
      lfb_mapped_ = true;
    }
  };
  host_->attach(kVgaSlot, 0, vga_);
  m.register_state("vga", vga_->vga());
  pio.insert(vga_->vga()->legacy_ports(), kVgaLegacyPorts, kVgaLegacyLen, "vga");
  pio.insert(vga_->vga()->dispi_ports(), kDispiPort, kDispiLen, "vbe-dispi");
  mmio.insert(vga_->vga()->legacy_memory(), layout::kVgaWindow, layout::kVgaWindowSize, "vga-window");
  // Text and planar writes there are many and need no answer: they wait in
  // KVM's ring (reads still exit, after the ring is applied).
  m_.add_coalesced_mmio(layout::kVgaWindow, layout::kVgaWindowSize);

  I8042::Callbacks kcb;
  kcb.reset = [&m] { m.request_reset("keyboard controller reset line"); };
  kbd_ = std::make_shared<I8042>(isa_irq(kIrqKbd), isa_irq(kIrqMouse), kcb);
  pio.insert(kbd_->data_port(), kKbdDataPort, 1, "i8042-data");
  pio.insert(kbd_->command_port(), kKbdCmdPort, 1, "i8042-cmd");

  rtc_ = std::make_shared<CmosRtc>(isa_irq(kIrqRtc), mono_ns, wall_ns());
  pio.insert(rtc_, kRtcPort, kRtcLen, "rtc");
  post_ = std::make_shared<PostPort>();
  pio.insert(post_, kPostPort, 1, "post");
  wire_nics();

  fw_ = std::make_shared<FwCfg>(&m.memory());
  pio.insert(fw_, FwCfg::kPortBase, FwCfg::kPortLen, "fw_cfg");
  if (m.kernel_boot()) {
    // Kernel boot: SeaBIOS boots Vireo's option ROM first (machine/kernel_boot.h).
    kboot_ = m.kernel_boot();
    pio.insert(kboot_, layout::kKernelBootPort, 4, "kernel-boot");
    fw_->add_file(KernelBoot::kRomFile, KernelBoot::option_rom());
  }
  configure_firmware();
  // Last: dummy handlers for the legacy ports nothing above claimed (DMA
  // controllers, LPT, floppy...), so no guest access is left unanswered.
  misc_ = std::make_shared<MiscPorts>();
  misc_->register_all(pio);
  // Built paused: nothing runs on its own until Machine::start() (a state
  // being loaded into this machine must not be changed by a frame or a
  // received packet before then).
  pause_devices();
  rtc_->start_thread();
  if (uhci_) uhci_->start_thread();
  pvm_host_ = kvm::host_is_pvm();
  if (pvm_host_) input_watch_ = std::thread([this] { input_watch_loop(); });
}

PcBoard::~PcBoard() {
  for (auto& n : nics_) n->quiesce();  // no frame arrives from a backend thread after this
  if (uhci_) uhci_->stop_thread();
  if (rtc_) rtc_->stop_thread();
  if (input_watch_.joinable()) {
    {
      std::lock_guard g(watch_mu_);
      watch_quit_ = true;
    }
    watch_cv_.notify_all();
    input_watch_.join();
  }
}

void PcBoard::watch_input() {
  if (!pvm_host_) return;
  {
    std::lock_guard g(watch_mu_);
    input_arrived_ = true;
  }
  watch_cv_.notify_all();
}

// While input waits: single-step, so the interrupt gets in at the guest's
// next window. Stepping stays on while the guest takes bytes and stops 10 s
// after it last took one (a guest that does not read its keyboard must not
// run at a tenth of its speed for ever); new input starts it again.
// (Switching stepping on and off in short bursts instead was tried: GRUB
// then triple-faulted now and then on this host, so stepping changes as
// rarely as possible.)
void PcBoard::input_watch_loop() {
  constexpr int64_t kGiveUpNs = 10'000'000'000;
  std::unique_lock g(watch_mu_);
  size_t last_backlog = 0;
  int64_t until = 0;
  while (!watch_quit_) {
    bool arrived = input_arrived_;
    input_arrived_ = false;
    g.unlock();
    size_t backlog = kbd_->backlog();
    int64_t now = mono_ns();
    if (backlog && (arrived || backlog < last_backlog)) until = now + kGiveUpNs;
    bool stepping = backlog && now < until;
    m_.set_irq_window_stepping(stepping);
    last_backlog = backlog;
    g.lock();
    if (!stepping)
      watch_cv_.wait(g, [&] { return watch_quit_ || input_arrived_; });
    else
      watch_cv_.wait_for(g, std::chrono::microseconds(kInputWatchUs));
  }
  g.unlock();
  m_.set_irq_window_stepping(false);
}

void PcBoard::wire_ide() {
  const MachineConfig& cfg = m_.config();
  // Disks fill the primary channel first; CD-ROMs start at the secondary
  // master, as QEMU places -hda and -cdrom.
  bool used[2][2] = {};
  auto place = [&](bool cdrom, int& ch, int& unit) {
    const int order[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const int cd_order[4][2] = {{1, 0}, {1, 1}, {0, 1}, {0, 0}};
    for (auto& p : cdrom ? cd_order : order) {
      if (!used[p[0]][p[1]]) {
        ch = p[0];
        unit = p[1];
        used[ch][unit] = true;
        return true;
      }
    }
    return false;
  };
  for (const DiskSpec& d : cfg.disks) {
    if (d.virtio) {
      wire_virtio_blk(d);
      continue;
    }
    if (d.format.empty())  // a disk's format is stated, never guessed from what a guest wrote
      throw MachineError("disk image '" + d.path + "': no format given (raw or qcow2)");
    block::OpenOptions o;
    o.format = d.format;
    o.read_only = d.read_only || d.cdrom;
    o.snapshot = d.snapshot && !d.cdrom;
    std::string err;
    auto be = block::open_block(d.path, o, &err);
    if (!be) throw MachineError((d.cdrom ? "CD-ROM image " : "disk image ") + err);
    int ch, unit;
    if (!place(d.cdrom, ch, unit)) throw MachineError("too many IDE devices: at most four disks and CD-ROMs");
    auto io = std::make_shared<block::IoCounters>();
    disk_counters_.push_back({d.path, d.cdrom, io});
    std::shared_ptr<block::BlockBackend> shared = counted(std::move(be), io);
    if (!d.cdrom) {
      disk_backends_.push_back(shared);
      disk_info_.push_back({d.path, d.format, d.read_only, d.snapshot});
    }
    std::string path = fwcfg::ide_path(kIdeSlot, kIdeFn, ch, unit);
    if (d.cdrom) {
      ide_->channel(ch)->attach_cdrom(unit, shared);
      boot_paths_cdrom_.push_back(path);
      if (cdrom_channel_ < 0) {
        cdrom_channel_ = ch;
        cdrom_unit_ = unit;
        cdrom_io_ = io;
      }
    } else {
      ide_->channel(ch)->attach_disk(unit, shared);
      boot_paths_disk_.push_back(path);
    }
  }
}

void PcBoard::pause_devices() {
  // Notifications first: a kick signalled before the vCPUs parked starts its
  // request now, so quiesce() (after this) drains it.
  for (auto& n : virtio_notify_) n->pause();
  for (auto& n : nics_) n->set_paused(true);
  if (uhci_) uhci_->pause();
  if (rtc_) rtc_->pause();
}

void PcBoard::resume_devices() {
  if (rtc_) rtc_->resume();
  if (uhci_) uhci_->resume();
  for (auto& n : nics_) n->set_paused(false);
  for (auto& n : virtio_notify_) n->resume();
}

int PcBoard::quiesce() {
  for (auto& d : blk_devs_) d->drain();  // IDE runs its transfers on the vCPU threads: done once they stop
  int first = 0;
  for (auto& b : disk_backends_) {
    if (b->read_only()) continue;
    int r = b->flush();
    if (r && !first) first = r;
  }
  return first;
}

void Board::create_disk_snapshots(const std::string&) {
  throw MachineError("this machine has no disks to snapshot");
}
void Board::delete_disk_snapshots(const std::string&) {
  throw MachineError("this machine has no disks to snapshot");
}

std::vector<std::pair<block::SnapshotTarget*, const PcBoard::DiskInfo*>> PcBoard::snapshot_disks() {
  std::vector<std::pair<block::SnapshotTarget*, const DiskInfo*>> out;
  std::string raw, overlay;
  for (size_t i = 0; i < disk_backends_.size(); i++) {
    const DiskInfo& d = disk_info_[i];
    if (d.read_only) continue;  // nothing writes it: nothing to snapshot
    if (d.overlay) {
      overlay += (overlay.empty() ? "" : ", ") + d.path;
      continue;
    }
    block::BlockBackend* be = disk_backends_[i].get();
    if (auto* c = dynamic_cast<block::CountingBackend*>(be)) be = c->inner();  // the image behind the I/O counters
    block::SnapshotTarget* t = block::as_snapshots(be);
    if (!t || d.format != "qcow2") {
      raw += (raw.empty() ? "" : ", ") + d.path;
      continue;
    }
    out.push_back({t, &d});
  }
  if (!raw.empty()) throw MachineError("snapshots need qcow2 disks: " + raw);
  if (!overlay.empty())
    throw MachineError("cannot snapshot disks running with temporary changes: " + overlay);
  return out;
}

void PcBoard::create_disk_snapshots(const std::string& name) {
  auto disks = snapshot_disks();
  if (disks.empty()) throw MachineError("this machine has no writable disk to snapshot");
  // Nothing is made unless every disk can take it: refuse a name in use first.
  for (auto& [t, d] : disks)
    for (auto& s : t->snapshots())
    {
      if (s.name == name) throw MachineError("disk '" + d->path + "' already has a snapshot named '" + name + "'");
      if (s.id == name)
        throw MachineError("'" + name + "' is the ID of snapshot '" + s.name + "' on disk '" + d->path +
                           "' (a number names that snapshot in qemu-img); choose another name");
    }
  std::vector<block::SnapshotTarget*> made;
  for (auto& [t, d] : disks) {
    std::string err;
    if (t->snapshot_create(name, &err) != 0) {
      // All or nothing: take back the ones already made.
      for (auto* m : made) {
        std::string ignored;
        m->snapshot_delete(name, &ignored, true);
      }
      throw MachineError("could not create snapshot '" + name + "' on disk '" + d->path + "': " + err);
    }
    made.push_back(t);
  }
}

void PcBoard::delete_disk_snapshots(const std::string& name) {
  auto disks = snapshot_disks();
  std::string failed;
  for (auto& [t, d] : disks) {
    bool has = false;
    for (auto& s : t->snapshots()) has = has || s.name == name;
    if (!has) continue;  // a disk added after the snapshot was taken
    std::string err;
    if (t->snapshot_delete(name, &err, true) != 0) failed += (failed.empty() ? "" : "; ") + d->path + ": " + err;
  }
  if (!failed.empty()) throw MachineError("could not delete snapshot '" + name + "' on disk " + failed);
}

void PcBoard::wire_virtio_blk(const DiskSpec& d) {
  // QEMU's "pc" machine puts the first -device virtio-blk-pci at slot 5 when
  // slots 3 and 4 are taken by a NIC and others; guests do not care, SeaBIOS
  // boots it by the slot named in the bootorder path.
  constexpr int kVirtioFirstSlot = 5, kLastSlot = 31;
  if (d.cdrom) throw MachineError("disk '" + d.path + "': a CD-ROM cannot be a virtio-blk device here; use the IDE bus");
  int slot = kVirtioFirstSlot;
  while (slot <= kLastSlot && host_->function(slot, 0)) slot++;
  if (slot > kLastSlot) throw MachineError("disk '" + d.path + "': no free PCI slot for another virtio-blk device");
  if (d.format.empty()) throw MachineError("disk image '" + d.path + "': no format given (raw or qcow2)");
  block::OpenOptions o;
  o.format = d.format;
  o.read_only = d.read_only;
  o.snapshot = d.snapshot;
  std::string err;
  auto be = block::open_block(d.path, o, &err);
  if (!be) throw MachineError("disk image " + err);
  virtio::VirtioBlk::Options bo;
  bo.read_only = d.read_only;
  auto io = std::make_shared<block::IoCounters>();
  disk_counters_.push_back({d.path, false, io});
  std::shared_ptr<block::BlockBackend> shared = counted(std::move(be), io);
  disk_backends_.push_back(shared);
  disk_info_.push_back({d.path, d.format, d.read_only, d.snapshot});
  auto dev = std::make_shared<virtio::VirtioBlk>(shared, bo);
  blk_devs_.push_back(dev);

  virtio_blk_.push_back(attach_virtio(dev, slot, "virtio-blk"));
  boot_paths_disk_.push_back(fwcfg::pci_device_path("scsi", slot) + "/disk@0,0");
}

std::shared_ptr<virtio::VirtioPci> PcBoard::attach_virtio(
    std::shared_ptr<virtio::VirtioDevice> dev, int slot, const char* kind,
    const std::function<void(virtio::NotifyThread&, virtio::VirtioPci&)>& before_start) {
  // Notifications: an ioeventfd per queue where KVM takes it (else the
  // notify write exits as MMIO); interrupts as MSI-X messages or INTA#.
  auto* vm = &vm_;
  auto notify = std::make_unique<virtio::NotifyThread>(dev->num_queues(), [vm](uint64_t gpa, int efd, bool assign) {
    // Any write length where KVM supports it (len 0), else the 16-bit
    // write drivers use for the queue index.
    if (!assign) {
      int r = vm->unregister_ioeventfd(gpa, 0, efd, false);
      return r == 0 ? 0 : vm->unregister_ioeventfd(gpa, 2, efd, false);
    }
    int r = vm->register_ioeventfd(gpa, 0, efd, false);
    return r == 0 ? 0 : vm->register_ioeventfd(gpa, 2, efd, false);
  });
  virtio::VirtioPci::Hooks hooks;
  hooks.msi = [vm](uint64_t addr, uint32_t data) { vm->signal_msi(addr, data); };
  auto* n = notify.get();
  hooks.notify_mapped = [n](int q, uint64_t gpa, bool mapped) { n->mapped(q, gpa, mapped); };
  auto fn = std::make_shared<virtio::VirtioPci>(std::move(dev), &m_.memory(), hooks);
  fn->name = std::string(kind) + "@" + std::to_string(slot);
  if (before_start) before_start(*n, *fn);
  n->start([t = fn.get()](int q) { t->notify(q); });
  host_->attach(slot, 0, fn);
  m_.register_state(fn->name, fn);
  virtio_notify_.push_back(std::move(notify));
  return fn;
}

void PcBoard::wire_nics() {
  // QEMU's pc machine puts its first NIC at slot 3; virtio-blk disks start at
  // 5, so NICs take 3 and 4 and then whatever is free after the disks.
  constexpr int kNicFirstSlot = 3, kLastSlot = 31;
  const MachineConfig& cfg = m_.config();
  std::vector<virtio::MacAddr> macs;
  for (size_t i = 0; i < cfg.nics.size(); i++) {
    const NicSpec& n = cfg.nics[i];
    std::string who = "network card " + std::to_string(i + 1);
    if (n.model != "virtio" && n.model != "e1000") {
      throw MachineError(who + ": model '" + n.model + "' is not available (virtio or e1000)");
    }
    virtio::VirtioNet::Options o;
    if (n.mac.empty()) {
      o.mac = {0x52, 0x54, 0x00, 0x12, 0x34, uint8_t(0x56 + i)};
    } else if (!virtio::parse_mac(n.mac, o.mac)) {
      throw MachineError(who + ": '" + n.mac + "' is not a unicast MAC address (like 52:54:00:12:34:56)");
    }
    for (const auto& m : macs) {
      if (m == o.mac) throw MachineError(who + ": MAC address " + (n.mac.empty() ? "(default)" : n.mac) + " is used by another card");
    }
    macs.push_back(o.mac);
    o.link_up = n.link_up;
    std::shared_ptr<net::NetBackend> be;
    if (n.backend == "user") {
      net::SlirpOptions so;
      so.restrict = n.restrict;
      try {
        if (!n.net.empty()) {
          size_t sl = n.net.find('/');
          so.network = n.net.substr(0, sl);
          if (sl != std::string::npos) {
            std::string p = n.net.substr(sl + 1);
            if (p.empty() || p.size() > 2 || p.find_first_not_of("0123456789") != std::string::npos) {
              throw net::NetError("net '" + n.net + "': the prefix must be a number of bits");
            }
            so.prefix = std::stoi(p);
          }
        }
        so.host = n.host;
        so.dhcp_start = n.dhcp_start;
        so.dns = n.dns;
        for (const auto& f : n.hostfwd) so.hostfwd.push_back(net::parse_hostfwd(f));
        be = std::make_shared<net::SlirpBackend>(so);
      } catch (net::NetError& e) {
        throw MachineError(who + ": " + e.what());
      }
    } else if (n.backend == "switch" || n.backend == "tap") {
      try {
        if (n.backend == "switch") be = std::make_shared<net::SocketBackend>(n.socket);
        else be = std::make_shared<net::TapBackend>(net::TapOptions{n.bridge, n.tap});
      } catch (net::NetError& e) {
        throw MachineError(who + ": " + e.what());
      }
    } else {
      throw MachineError(who + ": backend '" + n.backend + "' is not available (user, switch or tap)");
    }
    int slot = kNicFirstSlot;
    while (slot <= kLastSlot && host_->function(slot, 0)) slot++;
    if (slot > kLastSlot) throw MachineError(who + ": no free PCI slot");
    std::vector<uint8_t> rom;
    if (!n.rom.empty()) {
      try {
        rom = boot::read_file(n.rom, "option ROM");
      } catch (std::exception& e) {
        throw MachineError(who + ": " + e.what());
      }
      if (rom.size() < 3 || rom[0] != 0x55 || rom[1] != 0xaa)
        throw MachineError(who + ": '" + n.rom + "' is not a PCI option ROM (no 55 AA signature)");
    }
    if (n.model == "e1000") {
      e1000::E1000::Options eo;
      eo.mac = o.mac;
      eo.link_up = o.link_up;
      auto dev = std::make_shared<e1000::E1000>(be, &m_.memory(), eo);
      dev->name = "e1000@" + std::to_string(slot);
      if (!rom.empty()) dev->set_rom(std::move(rom));
      host_->attach(slot, 0, dev);  // INTA# through the PIIX3 PIRQ routing, as every PCI function
      m_.register_state(dev->name, dev);
      dev->set_paused(true);  // until Machine::start()
      dev->start();
      e1000_.push_back(dev);
      nics_.push_back(dev);
      nic_backends_.push_back(be);
    } else {
      auto dev = std::make_shared<virtio::VirtioNet>(be, o);
      // The transmit queue's kicks go to the backend's own loop where it has
      // one (user-mode NAT): ring -> slirp on one thread, as in QEMU.
      auto fn = attach_virtio(dev, slot, "virtio-net", [&be, d = dev.get()](virtio::NotifyThread& n, virtio::VirtioPci& t) {
        if (be->run_kicks(
                n.eventfd(virtio::kNetTxQ), [&t] { t.notify(virtio::kNetTxQ); },
                [d](std::span<const uint8_t> f) { d->receive_locked(f); })) {
          n.hand_off(virtio::kNetTxQ);
        }
      });
      if (!rom.empty()) fn->set_rom(std::move(rom));
      virtio_net_.push_back(fn);
      dev->set_paused(true);  // until Machine::start()
      dev->start();
      nics_.push_back(dev);
      nic_backends_.push_back(be);
    }
    // No bootorder entry: SeaBIOS runs a card's option ROM (NicSpec::rom),
    // and boots it only after the disks and CD-ROMs, or when nothing else boots.
  }
}

bool PcBoard::set_nic_link(size_t i, bool up) {
  if (i >= nics_.size()) return false;
  nics_[i]->set_link(up);
  return true;
}

std::vector<net::DhcpLease> PcBoard::nic_leases(size_t i) const {
  return i < nic_backends_.size() ? nic_backends_[i]->leases() : std::vector<net::DhcpLease>{};
}

std::shared_ptr<block::BlockBackend> PcBoard::counted(std::unique_ptr<block::BlockBackend> be,
                                                      const std::shared_ptr<block::IoCounters>& io) {
  return std::make_shared<block::CountingBackend>(std::shared_ptr<block::BlockBackend>(std::move(be)), io);
}

std::vector<PcBoard::DiskIo> PcBoard::disk_io() const {
  std::vector<DiskIo> out;
  out.reserve(disk_counters_.size());
  for (const auto& d : disk_counters_) {
    const auto& c = *d.io;
    out.push_back({d.path, d.cdrom, c.read_bytes.load(std::memory_order_relaxed), c.read_ops.load(std::memory_order_relaxed),
                   c.write_bytes.load(std::memory_order_relaxed), c.write_ops.load(std::memory_order_relaxed),
                   c.flush_ops.load(std::memory_order_relaxed)});
  }
  return out;
}

net::NicCounters PcBoard::nic_counters(size_t i) const {
  return i < nics_.size() ? nics_[i]->counters() : net::NicCounters{};
}

std::vector<PcBoard::PciInfo> PcBoard::pci_functions() const {
  std::vector<PciInfo> out;
  if (!host_) return out;
  for (int slot = 0; slot < 32; slot++) {
    for (int fn = 0; fn < 8; fn++) {
      auto f = host_->function(slot, fn);
      if (!f) continue;
      uint32_t id = host_->config_read(0, slot, fn, 0x00, 4);
      uint32_t cls = host_->config_read(0, slot, fn, 0x08, 4) >> 8;
      out.push_back({slot, fn, uint16_t(id), uint16_t(id >> 16), cls, f->name});
    }
  }
  return out;
}

void PcBoard::configure_firmware() {
  const MachineConfig& cfg = m_.config();
  boot::RamLayout ram = boot::ram_layout(cfg.mem_bytes);
  fwcfg::SeabiosConfig sc;
  sc.cpus = uint16_t(cfg.cpus);
  sc.max_cpus = uint16_t(cfg.cpus);
  sc.ram_size = cfg.mem_bytes;
  sc.e820.push_back({0, ram.low_end, fwcfg::kE820Ram});
  if (ram.high_size) sc.e820.push_back({layout::k4GiB, ram.high_size, fwcfg::kE820Ram});
  if (kboot_) sc.boot_order.push_back(KernelBoot::kRomBootPath);  // the kernel first, then disks/CDs
  for (char c : cfg.boot_order) {
    const auto& paths = c == 'd' ? boot_paths_cdrom_ : c == 'c' ? boot_paths_disk_ : std::vector<std::string>{};
    sc.boot_order.insert(sc.boot_order.end(), paths.begin(), paths.end());
  }
  sc.boot_menu = cfg.boot_menu;
  sc.boot_menu_wait_ms = uint16_t(std::min<uint32_t>(cfg.boot_menu_timeout_ms, 65535));
  fwcfg::configure_seabios(*fw_, sc);
  configure_smbios();
  // The PCI windows (machine/pci_windows.h), sized by the guest's physical
  // address width as its CPUID reports it.
  kvm::CpuidOptions co;
  co.vcpu_count = cfg.cpus;
  co.pvm_host = kvm::host_is_pvm();
  int phys_bits = kvm::phys_addr_bits(kvm::build_cpuid(vm_.system().supported_cpuid(), co), pciwin::kDefaultPhysBits);
  try {
    pci_windows_ = vireo::pci_windows(ram.low_end, ram.high_size, phys_bits);
  } catch (const std::invalid_argument& e) {
    throw MachineError(std::string("memory: ") + e.what());
  }
  // Where SeaBIOS starts the 64-bit BARs it moves above 4 GiB (src/fw/pciinit.c
  // takes the larger of this and the end of RAM): the window's start.
  std::vector<uint8_t> reserved_end(8);
  for (int i = 0; i < 8; i++) reserved_end[i] = uint8_t(pci_windows_.mem64_base >> (8 * i));
  fw_->add_file(pciwin::kReservedMemoryEndFile, std::move(reserved_end));
  // Vireo's own ACPI tables (machine/acpi.h): SeaBIOS loads them and builds none.
  acpi::Config ac;
  ac.cpus = cfg.cpus;
  ac.pci = pci_windows_;
  acpi::install(*fw_, acpi::build(ac));

  rtc_->set_memory(ram.low_end, ram.high_size);
  rtc_->set_smp_count(cfg.cpus);
  std::vector<int> legacy;
  for (char c : cfg.boot_order) legacy.push_back(c == 'd' ? 3 : c == 'c' ? 2 : 4);
  if (legacy.size() > 3) legacy.resize(3);
  rtc_->set_boot_order(legacy);
}

// A function's expansion ROM as a read-only KVM slot at its ROM BAR: reads
// are plain memory (SeaBIOS copies the VGA BIOS out of it: ~10,000 MMIO
// exits otherwise); writes exit as MMIO to the bus handler, which drops them.
void PcBoard::map_rom(int devfn, uint64_t gpa, uint8_t* host, uint64_t size, bool mapped) {
  if (!rom_slots_ok_) return;
  std::lock_guard g(rom_mu_);
  RomSlot* s = nullptr;
  for (auto& r : rom_slots_) {
    if (r.devfn == devfn) s = &r;
  }
  if (!s && mapped) {
    for (auto& r : rom_slots_) {
      if (r.devfn < 0) {
        r.devfn = devfn;
        s = &r;
        break;
      }
    }
  }
  if (!s) return;  // more ROMs than slots: that one stays on the bus
  uint32_t slot = kRomSlotFirst + uint32_t(s - rom_slots_.data());
  if (s->mapped) vm_.set_memory(slot, s->gpa, 0, nullptr);  // size 0 deletes the slot
  s->mapped = false;
  if (!mapped) return;
  try {
    vm_.set_memory(slot, gpa, size, host, KVM_MEM_READONLY);
    s->gpa = gpa;
    s->mapped = true;
  } catch (const kvm::KvmError&) {
    // Overlaps another slot (RAM, the LFB): the bus handler serves it.
  }
}

// SMBIOS for SeaBIOS (machine/smbios.h): the VM's UUID, RAM as the e820
// map lays it out, one processor package with a core per vCPU (what each
// vCPU's CPUID says: leaf 1 and leaf 4 count every vCPU in one package), and
// SeaBIOS' own name and version in type 0. The UUID also goes to fw_cfg's
// UUID key (RFC byte order, as QEMU's -uuid).
void PcBoard::configure_smbios() {
  const MachineConfig& cfg = m_.config();
  boot::RamLayout ram = boot::ram_layout(cfg.mem_bytes);
  smbios::Config c;
  if (auto u = smbios::parse_uuid(cfg.uuid)) c.uuid = *u;  // Machine rejected a malformed one
  c.ram_below_4g = ram.low_end;
  c.ram_above_4g = ram.high_size;
  c.sockets = 1;
  c.cores_per_socket = cfg.cpus;
  kvm::CpuidOptions co;
  co.vcpu_count = cfg.cpus;
  co.pvm_host = kvm::host_is_pvm();
  for (const kvm_cpuid_entry2& e : kvm::build_cpuid(vm_.system().supported_cpuid(), co)) {
    if (e.function == 0) {
      char v[13] = {};
      std::memcpy(v, &e.ebx, 4);
      std::memcpy(v + 4, &e.edx, 4);
      std::memcpy(v + 8, &e.ecx, 4);
      c.cpu_vendor = v;
    } else if (e.function == 1) {
      c.cpuid_signature = e.eax;
      c.cpuid_features = e.edx;
    }
  }
  std::vector<uint8_t> bios = boot::read_file(cfg.bios, "firmware");
  c.bios_rom_bytes = bios.size();
  std::string version = smbios::seabios_version(bios);
  if (!version.empty()) c.bios_version = version;
  smbios::Tables t = smbios::build(c);
  fw_->add_file(smbios::kAnchorFile, std::move(t.anchor));
  fw_->add_file(smbios::kTablesFile, std::move(t.tables));
  fw_->set_item(FwCfg::kUuid, std::vector<uint8_t>(c.uuid.begin(), c.uuid.end()));
}

PcBoard::InputLoss PcBoard::input_loss() const {
  InputLoss l;
  if (kbd_) l.dropped_keys = kbd_->dropped_keys();
  if (tablet_) l.merged_clicks = tablet_->merged_clicks();
  return l;
}

bool PcBoard::key(const std::string& code, bool down) {
  bool ok = kbd_->key(code, down);
  watch_input();
  return ok;
}
bool PcBoard::combo(const std::string& name) {
  bool ok = kbd_->combo(name);
  watch_input();
  return ok;
}
void PcBoard::mouse(int dx, int dy, int dz, uint8_t buttons) {
  kbd_->mouse(dx, dy, dz, buttons);
  watch_input();
}

bool PcBoard::pointer_abs(int x, int y, uint8_t buttons, int wheel, int hwheel) {
  if (!tablet_) return false;
  auto [w, h] = vga_->vga()->size();
  // Pixel 0 is 0 and the last pixel is 32767, as guests map the range back.
  auto scale = [](int v, uint32_t n) {
    if (n <= 1) return 0;
    int64_t c = std::clamp<int64_t>(v, 0, int64_t(n) - 1);
    return int((c * usb::HidTablet::kMaxCoord + (int64_t(n) - 1) / 2) / (int64_t(n) - 1));
  };
  tablet_->pointer(scale(x, w), scale(y, h), buttons, wheel, hwheel);
  return true;
}

bool PcBoard::tablet_active() const { return tablet_ && tablet_->active(); }

bool PcBoard::set_display_size(uint32_t width, uint32_t height) { return vga_->vga()->set_preferred_size(width, height); }

std::pair<uint32_t, uint32_t> PcBoard::display_size() const { return vga_->vga()->preferred_size(); }

std::optional<vga::FrameUpdate> PcBoard::poll(bool force_full) {
  m_.flush_coalesced_mmio();  // guest writes to the VGA window still in KVM's ring
  const uint64_t* bitmap = nullptr;
  {
    std::lock_guard g(lfb_mu_);
    if (lfb_mapped_) {
      std::fill(dirty_.begin(), dirty_.end(), 0);
      vm_.dirty_log(kLfbSlot, dirty_.data());
      bitmap = dirty_.data();
    }
  }
  // Without an LFB slot nothing reaches VRAM behind the device's back.
  std::vector<uint64_t> empty;
  if (!bitmap) {
    empty.assign(dirty_.size(), 0);
    bitmap = empty.data();
  }
  return vga_->vga()->poll(bitmap, uint64_t(mono_ns()), force_full);
}

std::vector<uint8_t> PcBoard::screenshot_png() {
  m_.flush_coalesced_mmio();
  return vga_->vga()->screenshot_png(uint64_t(mono_ns()));
}
vga::Frame PcBoard::frame() {
  m_.flush_coalesced_mmio();
  return vga_->vga()->snapshot(uint64_t(mono_ns()));
}

bool PcBoard::input_pending() { return kbd_->backlog() != 0; }

std::string PcBoard::input_debug() {
  auto st = kbd_->snapshot();
  auto pic = vm_.irqchip(KVM_IRQCHIP_PIC_MASTER).chip.pic;
  char b[200];
  std::snprintf(b, sizeof b, "i8042 status=%02x ctr=%02x out=%02x kbdq=%u ctrlq=%u | pic irr=%02x imr=%02x isr=%02x",
                st.status, st.ctr, st.out, unsigned(st.kbd_q.count), unsigned(st.ctrl_q.count), pic.irr, pic.imr, pic.isr);
  return b;
}

bool PcBoard::press_power_button() { return pm_->press_power_button(); }

std::string PcBoard::screen_text() {
  m_.flush_coalesced_mmio();
  return vga_->vga()->text_screen();
}

void PcBoard::reset_devices() {
  host_->reset_all();  // every PCI function: config space, BARs, IDE channels, VGA, PM
  kbd_->reset();
  {
    std::lock_guard g(lfb_mu_);
    if (lfb_mapped_) vm_.set_memory(kLfbSlot, lfb_gpa_, 0, nullptr);
    lfb_mapped_ = false;
  }
}

void PcBoard::register_chipset_state() {
  m_.register_state("pci", host_->config_port());  // first: BARs mapped before the functions' own sections load
  m_.register_state("i8042", kbd_);
  m_.register_state("rtc", rtc_);
  m_.register_state("piix3", piix3_);
  m_.register_state("piix4-pm", pm_);
  m_.register_state("fw_cfg", fw_);
  m_.register_state("post", post_);
  m_.register_state("misc-ports", misc_);
}

void PcBoard::change_cdrom(const std::string& path) {
  if (cdrom_channel_ < 0) throw MachineError("this machine has no CD-ROM drive");
  block::OpenOptions o;
  o.read_only = true;
  o.format = "raw";
  std::string err;
  auto be = block::open_block(path, o, &err);
  if (!be) throw MachineError("CD-ROM image " + err);
  if (!cdrom_io_) cdrom_io_ = std::make_shared<block::IoCounters>();
  ide_->channel(cdrom_channel_)->change_media(cdrom_unit_, counted(std::move(be), cdrom_io_));
}

bool PcBoard::eject_cdrom() {
  if (cdrom_channel_ < 0) throw MachineError("this machine has no CD-ROM drive");
  return ide_->channel(cdrom_channel_)->eject(cdrom_unit_);
}

}  // namespace vireo
