// A kernel boot on the PC board (vireo boot --kernel, the wizard's direct
// kernel boot): the same PC as a firmware boot, as QEMU's -kernel. SeaBIOS
// runs its POST, then boots Vireo's option ROM (native/roms/kboot.asm,
// fw_cfg "genroms/vireo-kboot.bin", first in "bootorder"). The ROM collects
// the firmware's E820 map and writes the address of its parameter block to
// this device's port; the write handler runs Vireo's loaders (boot.cc) over
// guest RAM with that map and writes the entry state back into the block,
// and the ROM enters the kernel. Every guest reset runs POST and this again,
// so a rebooted guest gets a fresh kernel, as on QEMU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "bus/device.h"
#include "machine/boot.h"

namespace vireo {

class Machine;

// The ROM image as built (kboot_rom.cc, generated from native/roms/kboot.asm).
extern const uint8_t kKernelBootRom[];
extern const size_t kKernelBootRomSize;

// Pads an option ROM to whole 512-byte blocks and sets its size byte, its PnP
// header checksum and the image checksum (all bytes sum to 0), which SeaBIOS
// checks before running it.
std::vector<uint8_t> finish_option_rom(std::vector<uint8_t> rom);

// What the port write does, on its own (unit-tested without KVM): reads the
// E820 map from the ROM's parameter block at `params`, loads the kernel with
// it, writes the entry state into the block. Throws BootError on a bad block
// or a kernel that does not fit.
boot::BootResult load_from_rom_request(const GuestMemory& mem, uint64_t params, const boot::RamLayout& ram,
                                       const std::vector<uint8_t>& kernel, const std::vector<uint8_t>& initrd,
                                       const std::string& cmdline, boot::ImageOptions names);

// Prints the words boot::host_kernel_cmdline added (nothing when none), on
// stderr, where `vireo boot` and the VM's log show it.
void log_host_kernel_words(const std::string& added);

class KernelBoot : public IoDevice {
public:
  static constexpr const char* kRomFile = "genroms/vireo-kboot.bin";
  static constexpr const char* kRomBootPath = "/rom@genroms/vireo-kboot.bin";
  static constexpr uint32_t kModeReal = 1, kModeProtected = 2;

  // Reads the kernel and initrd the machine's config names and loads them
  // once into scratch memory shaped like the guest's, so that a bad file
  // fails here (BootError naming it) rather than after the firmware ran.
  // The Machine makes it before the VM (only m.config() is used here).
  explicit KernelBoot(Machine& m);
  // What that trial load found (format, addresses).
  const boot::BootResult& planned() const { return planned_; }
  // The finished ROM image for fw_cfg; throws MachineError when Vireo was
  // built without nasm.
  static std::vector<uint8_t> option_rom();

  void read(uint64_t offset, std::span<uint8_t> data) override;
  // A 32-bit write: the guest-physical address of the ROM's parameter block.
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  // Nothing to save: a write runs the whole load before it returns (the
  // kernel is then in guest RAM), and the files come from the configuration.
  StateKind state_kind() const override { return StateKind::None; }

private:
  Machine& m_;
  std::vector<uint8_t> kernel_, initrd_;
  std::string cmdline_;
  boot::ImageOptions names_;
  boot::RamLayout ram_{};
  boot::BootResult planned_;
};

}  // namespace vireo
