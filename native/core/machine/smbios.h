// SMBIOS tables for the PC board, handed to SeaBIOS through fw_cfg as QEMU
// does: "etc/smbios/smbios-anchor" holds a 31-byte SMBIOS 2.1 entry point
// (structure table address left 0; SeaBIOS fills it in when it copies the
// tables into the F segment) and "etc/smbios/smbios-tables" the structures
// (SeaBIOS src/fw/biostables.c smbios_romfile_setup). With both present
// SeaBIOS uses them instead of building its own (smbios_legacy_setup).
//
// Layouts follow DMTF DSP0134 (SMBIOS 2.8): types 0 (BIOS), 1 (system, with
// the VM's UUID), 3 (enclosure), 4 (one per socket), 16 (memory array), 17
// (memory devices, at most 16 GiB each), 19 (one per RAM range), 32 (boot
// status), 127 (end). Handles follow QEMU's numbering (type << 8 + index,
// type 16 at 0x1000...). Pure functions; no I/O.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vireo::smbios {

// A UUID in RFC 4122 byte order (the order its text form is written in).
using Uuid = std::array<uint8_t, 16>;

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex digits of either case); nullopt otherwise.
std::optional<Uuid> parse_uuid(const std::string& text);
std::string format_uuid(const Uuid& u);  // lower case
// SMBIOS 2.6+ stores the first three fields little-endian (DSP0134 7.2.1).
std::array<uint8_t, 16> smbios_uuid_bytes(const Uuid& u);

struct Config {
  Uuid uuid{};
  // RAM as the guest sees it: [0, ram_below_4g) and [4 GiB, 4 GiB + ram_above_4g).
  uint64_t ram_below_4g = 0;
  uint64_t ram_above_4g = 0;
  int sockets = 1, cores_per_socket = 1, threads_per_core = 1;
  // CPUID leaf 1 EAX (signature) and EDX (features): type 4's Processor ID.
  uint32_t cpuid_signature = 0, cpuid_features = 0;
  std::string cpu_vendor = "unknown";  // CPUID leaf 0 ("GenuineIntel", "AuthenticAMD")
  uint16_t cpu_speed_mhz = 2000;  // what QEMU reports when nothing is known
  // Type 0: the firmware that runs (SeaBIOS), its version and date.
  std::string bios_vendor = "SeaBIOS";
  std::string bios_version = "unknown";
  std::string bios_date = "04/01/2014";  // SeaBIOS' own BIOS_DATE
  uint64_t bios_rom_bytes = 128 * 1024;  // size of the firmware image
  // Types 1 and 3.
  std::string manufacturer = "Vireo";
  std::string product = "Vireo PC (i440FX + PIIX, 1996)";
  std::string version = "1";
  std::string family = "Vireo";
};

struct Tables {
  std::vector<uint8_t> anchor;  // 31-byte "_SM_" entry point
  std::vector<uint8_t> tables;  // the structures, type 127 last
};
Tables build(const Config& c);

// "1.16.2-debian-1.16.2-1" out of a SeaBIOS image (its VERSION string, which
// the build places right after BUILDINFO "gcc: ..."); "" when not found.
std::string seabios_version(const std::vector<uint8_t>& bios_image);

constexpr const char* kAnchorFile = "etc/smbios/smbios-anchor";
constexpr const char* kTablesFile = "etc/smbios/smbios-tables";

}  // namespace vireo::smbios
