#include "machine/acpi.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "devices/fw_cfg.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/pci/piix3.h"
#include "devices/pci/piix4_pm.h"
#include "machine/layout.h"
#include "machine/pc_irq.h"

// iasl -tc output: unsigned char dsdt_aml_code[] (generated at build time).
#include "dsdt.hex"

namespace vireo::acpi {

namespace {

// Identification in every table header (ACPI 5.2.6).
constexpr char kOemId[] = "VIREO ";        // 6 bytes
constexpr char kOemTableId[] = "VIREOPC ";  // 8 bytes
constexpr uint32_t kOemRevision = 1;
constexpr char kCreatorId[] = "VIRO";
constexpr uint32_t kCreatorRevision = 1;
constexpr size_t kHeaderLen = 36;
constexpr size_t kChecksumOffset = 9;

// FADT (ACPI 2.0 layout, revision 3: 244 bytes) field offsets (ACPI 6.4 table 5.9).
constexpr uint8_t kFadtRevision = 3;
constexpr size_t kFadtLen = 244;
enum FadtOff : size_t {
  kFirmwareCtrl = 36, kDsdt = 40, kSciInt = 46, kSmiCmd = 48, kAcpiEnable = 52, kAcpiDisable = 53,
  kPm1aEvtBlk = 56, kPm1aCntBlk = 64, kPmTmrBlk = 76, kGpe0Blk = 80, kPm1EvtLen = 88, kPm1CntLen = 89,
  kPmTmrLen = 91, kGpe0BlkLen = 92, kPLvl2Lat = 96, kPLvl3Lat = 98, kCentury = 108, kIapcBootArch = 109,
  kFlags = 112, kResetReg = 116, kResetValue = 128, kXDsdt = 140, kXPm1aEvtBlk = 148, kXPm1aCntBlk = 172,
  kXPmTmrBlk = 208, kXGpe0Blk = 220,
};
// FADT flags (ACPI 6.4 table 5.10).
constexpr uint32_t kFWbinvd = 1u << 0, kFProcC1 = 1u << 2, kFSlpButton = 1u << 5, kFRtcS4 = 1u << 7,
                   kFResetRegSup = 1u << 10, kFUsePlatformClock = 1u << 15;
// IA-PC boot architecture flags: LEGACY_DEVICES (ISA devices the OS may probe), 8042.
constexpr uint16_t kBootArchLegacy = 1u << 0, kBootArch8042 = 1u << 1;
constexpr uint16_t kCStateUnsupportedC2 = 0x0fff, kCStateUnsupportedC3 = 0x0fff;  // > 100 / > 1000 us: none
// Generic Address Structure: space id and access size.
constexpr uint8_t kGasSystemIo = 1, kGasAccessByte = 1;
// PIIX3 reset control register: SRST (hard reset) | RCPU (reset the CPU), what QEMU's FADT writes.
constexpr uint8_t kResetValueHard = 0x06;

// PM blocks as Piix4Pm decodes them at the base SeaBIOS programs into PMBA:
// 0x600 once it sees etc/table-loader (not its default 0xb000).
constexpr uint16_t kPmBase = pci::Piix4Pm::kLoaderPmBase;
constexpr uint8_t kPm1EvtLenBytes = 4;  // PM1_STS + PM1_EN
constexpr uint8_t kPm1CntLenBytes = 2;
constexpr uint8_t kPmTmrLenBytes = 4;

constexpr uint32_t kFacsLen = 64;
constexpr uint8_t kFacsVersion = 1;  // ACPI 2.0+ layout

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  b[off] = uint8_t(v);
  b[off + 1] = uint8_t(v >> 8);
}
void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; i++) b[off + i] = uint8_t(v >> (8 * i));
}
void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; i++) b[off + i] = uint8_t(v >> (8 * i));
}
void put32_at(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
void put64_at(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = uint8_t(v >> (8 * i));
}
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }
void append16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v));
  b.push_back(uint8_t(v >> 8));
}
void append32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; i++) b.push_back(uint8_t(v >> (8 * i)));
}

std::vector<uint8_t> header(const char* sig, uint8_t revision) {
  std::vector<uint8_t> h(kHeaderLen, 0);
  std::memcpy(&h[0], sig, 4);
  h[8] = revision;
  std::memcpy(&h[10], kOemId, 6);
  std::memcpy(&h[16], kOemTableId, 8);
  put32(h, 24, kOemRevision);
  std::memcpy(&h[28], kCreatorId, 4);
  put32(h, 32, kCreatorRevision);
  return h;
}
void set_length(std::vector<uint8_t>& t) { put32(t, 4, uint32_t(t.size())); }

// Generic Address Structure for a port-I/O register block.
void gas_io(std::vector<uint8_t>& b, size_t off, uint8_t bit_width, uint8_t access, uint64_t port) {
  b[off] = kGasSystemIo;
  b[off + 1] = bit_width;
  b[off + 2] = 0;  // bit offset
  b[off + 3] = access;
  put64(b, off + 4, port);
}

// AML PkgLength (ACPI 6.4 20.2.4): the length counts its own encoding.
void aml_pkg(std::vector<uint8_t>& out, const std::vector<uint8_t>& body) {
  size_t n = body.size();
  if (n + 1 < 0x40) {
    out.push_back(uint8_t(n + 1));
  } else {
    size_t bytes = n + 2 < 0x1000 ? 2 : n + 3 < 0x100000 ? 3 : 4;
    size_t len = n + bytes;
    out.push_back(uint8_t(((bytes - 1) << 6) | (len & 0x0f)));
    for (size_t i = 1; i < bytes; i++) out.push_back(uint8_t(len >> (4 + 8 * (i - 1))));
  }
  out.insert(out.end(), body.begin(), body.end());
}

// SSDT: Scope (\_SB) { Processor (Cnnn, n, 0, 0) {} ... } -- one per vCPU,
// its processor ID the MADT's ACPI processor UID. No P_BLK (no C2/C3).
std::vector<uint8_t> build_ssdt(int cpus) {
  constexpr uint8_t kScopeOp = 0x10, kExtOpPrefix = 0x5b, kProcessorOp = 0x83, kRootChar = 0x5c;
  std::vector<uint8_t> scope_body = {kRootChar, '_', 'S', 'B', '_'};
  for (int i = 0; i < cpus; i++) {
    char name[16];
    std::snprintf(name, sizeof name, "C%03X", unsigned(i) & 0xfffu);
    std::vector<uint8_t> p(name, name + 4);
    p.push_back(uint8_t(i));  // ProcID
    append32(p, 0);           // PblkAddress
    p.push_back(0);           // PblkLength
    scope_body.push_back(kExtOpPrefix);
    scope_body.push_back(kProcessorOp);
    aml_pkg(scope_body, p);
  }
  std::vector<uint8_t> t = header("SSDT", 1);
  t.push_back(kScopeOp);
  aml_pkg(t, scope_body);
  set_length(t);
  return t;
}

std::vector<uint8_t> build_madt(int cpus) {
  std::vector<uint8_t> t = header("APIC", 1);
  append32(t, uint32_t(layout::kLapicBase));
  append32(t, kMadtPcatCompat);
  for (int i = 0; i < cpus; i++) {
    t.insert(t.end(), {kMadtLapic, 8, uint8_t(i) /*ACPI processor UID*/, uint8_t(i) /*APIC ID*/});
    append32(t, kLapicEnabled);
  }
  t.insert(t.end(), {kMadtIoApic, 12, kIoApicId, 0});
  append32(t, uint32_t(layout::kIoApicBase));
  append32(t, 0);  // GSI base: IOAPIC pin n is GSI n
  // Interrupt source overrides, from the routing table PcBoard installs:
  // an ISA IRQ whose IOAPIC pin differs from its number (IRQ 0 -> 2), and
  // the level-triggered ones (SCI, PCI links), which are active high on
  // KVM's IOAPIC as on QEMU's pc.
  auto routes = pcirq::pc_routes();
  auto iso = [&t](uint8_t irq, uint32_t gsi, uint16_t flags) {
    t.insert(t.end(), {kMadtIso, 10, 0 /*bus: ISA*/, irq});
    append32(t, gsi);
    append16(t, flags);
  };
  for (uint32_t irq = 0; irq < pcirq::kIsaIrqs; irq++) {
    if (irq == pcirq::kCascadeIrq) continue;
    int pin = pcirq::ioapic_pin(routes, irq);
    if (pin < 0) throw std::logic_error("acpi: ISA IRQ without an IOAPIC route");
    bool level = irq == uint32_t(pci::Piix4Pm::kSciIrq);
    for (uint8_t l : kPciLinkIrqs) level |= irq == l;
    if (level)
      iso(uint8_t(irq), uint32_t(pin), kIsoLevelHigh);
    else if (uint32_t(pin) != irq)
      iso(uint8_t(irq), uint32_t(pin), kIsoConforming);
  }
  t.insert(t.end(), {kMadtLapicNmi, 6, 0xff /*all processors*/});
  append16(t, 0);  // flags: bus-default
  t.push_back(kLint1);
  set_length(t);
  return t;
}

std::vector<uint8_t> build_fadt() {
  std::vector<uint8_t> t = header("FACP", kFadtRevision);
  t.resize(kFadtLen, 0);
  put16(t, kSciInt, pci::Piix4Pm::kSciIrq);
  put32(t, kSmiCmd, pci::Piix4Pm::kApmPort);
  t[kAcpiEnable] = pci::Piix4Pm::kAcpiEnable;
  t[kAcpiDisable] = pci::Piix4Pm::kAcpiDisable;
  put32(t, kPm1aEvtBlk, kPmBase + pci::Piix4Pm::kPm1Sts);
  put32(t, kPm1aCntBlk, kPmBase + pci::Piix4Pm::kPm1Cnt);
  put32(t, kPmTmrBlk, kPmBase + pci::Piix4Pm::kPmTmr);
  put32(t, kGpe0Blk, pci::Piix4Pm::kGpePort);
  t[kPm1EvtLen] = kPm1EvtLenBytes;
  t[kPm1CntLen] = kPm1CntLenBytes;
  t[kPmTmrLen] = kPmTmrLenBytes;
  t[kGpe0BlkLen] = uint8_t(pci::Piix4Pm::kGpeLen);
  put16(t, kPLvl2Lat, kCStateUnsupportedC2);
  put16(t, kPLvl3Lat, kCStateUnsupportedC3);
  t[kCentury] = CmosRtc::kCentury;
  put16(t, kIapcBootArch, kBootArchLegacy | kBootArch8042);
  // PWR_BUTTON (bit 4) clear: the power button is the fixed-feature one in
  // PM1 (Piix4Pm kPwrBtnSts). SLP_BUTTON set: there is no sleep button.
  // TMR_VAL_EXT clear: the PM timer is 24 bits. USE_PLATFORM_CLOCK as QEMU:
  // the PM timer, not the TSC, is the reference clock.
  put32(t, kFlags, kFWbinvd | kFProcC1 | kFSlpButton | kFRtcS4 | kFResetRegSup | kFUsePlatformClock);
  gas_io(t, kResetReg, 8, kGasAccessByte, pci::Piix3::kRcrPort);
  t[kResetValue] = kResetValueHard;
  gas_io(t, kXPm1aEvtBlk, kPm1EvtLenBytes * 8, 0, kPmBase + pci::Piix4Pm::kPm1Sts);
  gas_io(t, kXPm1aCntBlk, kPm1CntLenBytes * 8, 0, kPmBase + pci::Piix4Pm::kPm1Cnt);
  gas_io(t, kXPmTmrBlk, kPmTmrLenBytes * 8, 0, kPmBase + pci::Piix4Pm::kPmTmr);
  gas_io(t, kXGpe0Blk, pci::Piix4Pm::kGpeLen * 8, 0, pci::Piix4Pm::kGpePort);
  // FIRMWARE_CTRL, DSDT and X_DSDT are pointers, set by the loader.
  set_length(t);
  return t;
}

std::vector<uint8_t> build_facs() {
  std::vector<uint8_t> t(kFacsLen, 0);
  std::memcpy(&t[0], "FACS", 4);
  put32(t, 4, kFacsLen);
  t[32] = kFacsVersion;
  return t;
}

struct Loader {
  std::vector<uint8_t> out;
  std::vector<uint8_t>& entry(uint32_t cmd) {
    size_t at = out.size();
    out.resize(at + kLoaderEntrySize, 0);
    put32(out, at, cmd);
    cur = at + 4;
    return out;
  }
  size_t cur = 0;
  void name(const char* n) {
    size_t len = std::strlen(n);
    if (len >= kLoaderFileSz) throw std::logic_error("acpi: loader file name too long");
    std::memcpy(&out[cur], n, len);
    cur += kLoaderFileSz;
  }
  void allocate(const char* file, uint32_t align, uint8_t zone) {
    entry(kCmdAllocate);
    name(file);
    put32(out, cur, align);
    out[cur + 4] = zone;
  }
  void add_pointer(const char* dest, const char* src, uint32_t offset, uint8_t size) {
    entry(kCmdAddPointer);
    name(dest);
    name(src);
    put32(out, cur, offset);
    out[cur + 4] = size;
  }
  void add_checksum(const char* file, uint32_t offset, uint32_t start, uint32_t length) {
    entry(kCmdAddChecksum);
    name(file);
    put32(out, cur, offset);
    put32(out, cur + 4, start);
    put32(out, cur + 8, length);
  }
};

// AML resource descriptors (ACPI 6.4 6.4.3): large ones are tag, 16-bit
// length, body; the DWord/QWord address space descriptors' field offsets.
constexpr uint8_t kAmlNameOp = 0x08, kAmlBufferOp = 0x11, kAmlBytePrefix = 0x0a, kAmlWordPrefix = 0x0b,
                  kAmlDwordPrefix = 0x0c;
constexpr uint8_t kResEndTag = 0x79, kResWordBus = 0x88, kResDwordAddr = 0x87, kResQwordAddr = 0x8a;
constexpr uint8_t kResTypeMemory = 0;
constexpr size_t kDwordMin = 10, kDwordMax = 14, kDwordLen = 22;
constexpr size_t kQwordMin = 14, kQwordMax = 22, kQwordLen = 38;

// PkgLength at p (ACPI 6.4 20.2.4): the package's length and the encoding's size.
bool read_pkg_len(const uint8_t* p, const uint8_t* end, size_t& len, size_t& bytes) {
  if (p >= end) return false;
  bytes = size_t(p[0] >> 6) + 1;
  if (p + bytes > end) return false;
  if (bytes == 1) {
    len = p[0] & 0x3f;
  } else {
    len = p[0] & 0x0f;
    for (size_t i = 1; i < bytes; i++) len |= size_t(p[i]) << (4 + 8 * (i - 1));
  }
  return true;
}

}  // namespace

std::span<const uint8_t> dsdt_aml() { return {dsdt_aml_code, sizeof dsdt_aml_code}; }

std::vector<uint8_t> dsdt(const PciWindows& w) {
  if (w.mem32_base >= w.mem32_end || w.mem32_end > (1ull << 32) || w.mem64_base >= w.mem64_end)
    throw std::invalid_argument("acpi: a PCI window is empty or the 32-bit one passes 4 GiB");
  auto aml = dsdt_aml();
  std::vector<uint8_t> t(aml.begin(), aml.end());
  // PCI0's _CRS is the first Name (_CRS, Buffer) in the table: the ISA
  // devices' come after it (dsdt.asl).
  const uint8_t pat[] = {kAmlNameOp, '_', 'C', 'R', 'S', kAmlBufferOp};
  auto at = std::search(t.begin(), t.end(), std::begin(pat), std::end(pat));
  if (at == t.end()) throw std::logic_error("acpi: the DSDT has no _CRS buffer");
  uint8_t* p = &*at + sizeof pat;
  uint8_t* end = t.data() + t.size();
  size_t pkg = 0, pkg_bytes = 0;
  if (!read_pkg_len(p, end, pkg, pkg_bytes) || p + pkg > end) throw std::logic_error("acpi: bad _CRS PkgLength");
  uint8_t* buf_end = p + pkg;
  p += pkg_bytes;
  // BufferSize, then the resource template.
  if (*p == kAmlBytePrefix) p += 2;
  else if (*p == kAmlWordPrefix) p += 3;
  else if (*p == kAmlDwordPrefix) p += 5;
  else throw std::logic_error("acpi: unexpected _CRS BufferSize encoding");
  if (p >= buf_end || *p != kResWordBus) throw std::logic_error("acpi: the first _CRS is not PCI0's (no bus range first)");
  int dwords = 0, qwords = 0;
  while (p < buf_end && *p != kResEndTag) {
    size_t n;
    if (*p & 0x80) {
      if (p + 3 > buf_end) break;
      n = 3 + size_t(p[1] | p[2] << 8);
    } else {
      n = 1 + size_t(*p & 7);
    }
    if (p + n > buf_end) throw std::logic_error("acpi: PCI0._CRS descriptor runs past its buffer");
    // The 32-bit window is the DWord memory range ending below the IOAPIC
    // (the other one is the VGA window); the QWord one is the only QWord.
    if (*p == kResDwordAddr && n >= kDwordLen + 4 && p[3] == kResTypeMemory &&
        le32(p + kDwordMax) == uint32_t(pciwin::kMem32End - 1)) {
      put32_at(p + kDwordMin, uint32_t(w.mem32_base));
      put32_at(p + kDwordMax, uint32_t(w.mem32_end - 1));
      put32_at(p + kDwordLen, uint32_t(w.mem32_end - w.mem32_base));
      dwords++;
    } else if (*p == kResQwordAddr && n >= kQwordLen + 8 && p[3] == kResTypeMemory) {
      put64_at(p + kQwordMin, w.mem64_base);
      put64_at(p + kQwordMax, w.mem64_end - 1);
      put64_at(p + kQwordLen, w.mem64_end - w.mem64_base);
      qwords++;
    }
    p += n;
  }
  if (p >= buf_end || dwords != 1 || qwords != 1)
    throw std::logic_error("acpi: PCI0._CRS lacks its 32-bit or 64-bit window (dsdt.asl)");
  t[kChecksumOffset] = 0;
  uint8_t s = 0;
  for (uint8_t b : t) s = uint8_t(s + b);
  t[kChecksumOffset] = uint8_t(-s);
  return t;
}

Tables build(const Config& c) {
  if (c.cpus < 1 || c.cpus > 255) throw std::invalid_argument("acpi: between 1 and 255 vCPUs (8-bit APIC IDs)");
  Tables out;
  Loader ld;
  ld.allocate(kTablesFile, kTablesAlign, kZoneHigh);
  ld.allocate(kRsdpFile, kRsdpAlign, kZoneFseg);

  auto& blob = out.tables;
  auto place = [&blob](std::vector<uint8_t> t) {
    while (blob.size() % 8) blob.push_back(0);
    uint32_t at = uint32_t(blob.size());
    blob.insert(blob.end(), t.begin(), t.end());
    return at;
  };
  // Pointer fields hold the target's offset in its blob; ADD_POINTER adds the blob's address.
  auto pointer = [&](const char* dest_file, std::vector<uint8_t>& dest, uint32_t field, uint8_t size,
                     uint32_t target) {
    if (size == 4)
      put32(dest, field, target);
    else
      put64(dest, field, target);
    ld.add_pointer(dest_file, kTablesFile, field, size);
  };
  auto checksum = [&](uint32_t at) {
    uint32_t len = uint32_t(blob[at + 4] | blob[at + 5] << 8 | blob[at + 6] << 16 | uint32_t(blob[at + 7]) << 24);
    blob[at + kChecksumOffset] = 0;
    ld.add_checksum(kTablesFile, at + uint32_t(kChecksumOffset), at, len);
  };

  uint32_t facs = place(build_facs());  // offset 0: 64-byte aligned with the blob
  uint32_t dsdt = place(acpi::dsdt(c.pci));
  checksum(dsdt);
  uint32_t ssdt = place(build_ssdt(c.cpus));
  checksum(ssdt);
  uint32_t fadt = place(build_fadt());
  pointer(kTablesFile, blob, fadt + kFirmwareCtrl, 4, facs);
  pointer(kTablesFile, blob, fadt + kDsdt, 4, dsdt);
  pointer(kTablesFile, blob, fadt + kXDsdt, 8, dsdt);
  checksum(fadt);
  uint32_t madt = place(build_madt(c.cpus));
  checksum(madt);

  // The tables the RSDT/XSDT list (the DSDT and FACS hang off the FADT).
  const uint32_t listed[] = {fadt, ssdt, madt};
  std::vector<uint8_t> rsdt_t = header("RSDT", 1);
  rsdt_t.resize(kHeaderLen + 4 * std::size(listed), 0);
  set_length(rsdt_t);
  uint32_t rsdt = place(rsdt_t);
  for (size_t i = 0; i < std::size(listed); i++) pointer(kTablesFile, blob, rsdt + kHeaderLen + 4 * i, 4, listed[i]);
  checksum(rsdt);
  std::vector<uint8_t> xsdt_t = header("XSDT", 1);
  xsdt_t.resize(kHeaderLen + 8 * std::size(listed), 0);
  set_length(xsdt_t);
  uint32_t xsdt = place(xsdt_t);
  for (size_t i = 0; i < std::size(listed); i++) pointer(kTablesFile, blob, xsdt + kHeaderLen + 8 * i, 8, listed[i]);
  checksum(xsdt);

  // RSDP (ACPI 2.0, 36 bytes; ACPI 6.4 5.2.5.3).
  auto& r = out.rsdp;
  r.assign(36, 0);
  std::memcpy(&r[0], "RSD PTR ", 8);
  std::memcpy(&r[9], kOemId, 6);
  r[15] = 2;  // revision: ACPI 2.0+ (has the XSDT)
  put32(r, 20, 36);
  pointer(kRsdpFile, r, 16, 4, rsdt);
  pointer(kRsdpFile, r, 24, 8, xsdt);
  ld.add_checksum(kRsdpFile, 8, 0, 20);   // ACPI 1.0 checksum over the first 20 bytes
  ld.add_checksum(kRsdpFile, 32, 0, 36);  // extended checksum over all of it
  out.loader = std::move(ld.out);
  return out;
}

void install(FwCfg& fw, const Tables& t) {
  fw.add_file(kTablesFile, t.tables);
  fw.add_file(kRsdpFile, t.rsdp);
  fw.add_file(kLoaderFile, t.loader);
}

}  // namespace vireo::acpi
