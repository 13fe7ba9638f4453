// Vireo's ACPI tables without a vCPU: the files handed out through fw_cfg are
// loaded the way SeaBIOS's romfile_loader does it (into a fake guest memory),
// then every checksum, length and pointer is checked, the MADT is compared
// with the GSI routing PcBoard installs, and each table goes through
// `iasl -d`.
#include "machine/acpi.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "devices/fw_cfg.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/pci/piix3.h"
#include "devices/pci/piix4_pm.h"
#include "machine/layout.h"
#include "machine/pci_windows.h"
#include "machine/pc_irq.h"

using namespace vireo;

namespace {

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }
uint64_t le64(const uint8_t* p) { return le32(p) | uint64_t(le32(p + 4)) << 32; }
uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; i++) s = uint8_t(s + p[i]);
  return s;
}

// A guest memory holding the blobs where the loader placed them.
struct Loaded {
  struct Blob {
    uint64_t addr;
    std::vector<uint8_t> data;
  };
  std::map<std::string, Blob> blobs;
  // The blob holding [addr, addr+len), or null.
  const uint8_t* at(uint64_t addr, uint64_t len, std::string* which = nullptr) const {
    for (auto& [name, b] : blobs) {
      if (addr >= b.addr && addr + len <= b.addr + b.data.size() && addr + len >= addr) {
        if (which) *which = name;
        return b.data.data() + (addr - b.addr);
      }
    }
    return nullptr;
  }
};

std::string cstr(const uint8_t* p, size_t max) { return std::string(reinterpret_cast<const char*>(p), strnlen(reinterpret_cast<const char*>(p), max)); }

// Executes etc/table-loader as SeaBIOS 1.16 src/fw/romfile_loader.c does,
// with every check it makes turned into a test failure.
Loaded run_loader(const FwCfg& fw) {
  const std::vector<uint8_t>* loader = fw.file(acpi::kLoaderFile);
  CHECK(loader != nullptr);
  CHECK(!loader->empty());
  CHECK_EQ(loader->size() % acpi::kLoaderEntrySize, size_t(0));
  Loaded L;
  uint64_t high = 0x07fe0000, fseg = 0xf5a40;  // where SeaBIOS would put them (any aligned address)
  for (size_t off = 0; off < loader->size(); off += acpi::kLoaderEntrySize) {
    const uint8_t* e = loader->data() + off;
    uint32_t cmd = le32(e);
    const uint8_t* a = e + 4;
    if (cmd == acpi::kCmdAllocate) {
      CHECK_EQ(a[acpi::kLoaderFileSz - 1], uint8_t(0));
      std::string name = cstr(a, acpi::kLoaderFileSz);
      uint32_t align = le32(a + 56);
      uint8_t zone = a[60];
      CHECK(align && (align & (align - 1)) == 0);
      CHECK(zone == acpi::kZoneHigh || zone == acpi::kZoneFseg);
      CHECK(L.blobs.count(name) == 0);  // exactly once per file
      const std::vector<uint8_t>* data = fw.file(name);
      CHECK(data != nullptr);
      CHECK(!data->empty());
      uint64_t& cursor = zone == acpi::kZoneHigh ? high : fseg;
      cursor = (cursor + align - 1) & ~uint64_t(align - 1);
      L.blobs[name] = {cursor, *data};
      cursor += data->size();
      if (zone == acpi::kZoneFseg) CHECK(cursor <= 0x100000);
    } else if (cmd == acpi::kCmdAddPointer) {
      std::string dest = cstr(a, 56), src = cstr(a + 56, 56);
      uint32_t offset = le32(a + 112);
      uint8_t size = a[116];
      CHECK(L.blobs.count(dest) && L.blobs.count(src));  // allocated before use
      auto& d = L.blobs[dest];
      CHECK(size == 1 || size == 2 || size == 4 || size == 8);
      CHECK(uint64_t(offset) + size <= d.data.size());
      uint64_t v = 0;
      std::memcpy(&v, d.data.data() + offset, size);
      // The stored value is an offset into src: it must land inside it.
      CHECK(v < L.blobs[src].data.size());
      v += L.blobs[src].addr;
      std::memcpy(d.data.data() + offset, &v, size);
    } else if (cmd == acpi::kCmdAddChecksum) {
      std::string file = cstr(a, 56);
      uint32_t offset = le32(a + 56), start = le32(a + 60), len = le32(a + 64);
      CHECK(L.blobs.count(file));
      auto& d = L.blobs[file].data;
      CHECK(offset < d.size());
      CHECK(uint64_t(start) + len <= d.size());
      CHECK(offset >= start && offset < start + len);  // the checksum byte is inside what it sums
      d[offset] = uint8_t(d[offset] - sum(d.data() + start, len));
    } else {
      CHECK_EQ(cmd, 0u);  // unused commands are an error here: Vireo only emits the three above
    }
  }
  CHECK(L.blobs.count(acpi::kTablesFile) && L.blobs.count(acpi::kRsdpFile));
  return L;
}

struct Parsed {
  Loaded L;
  uint64_t rsdp = 0;
  std::map<std::string, uint64_t> tables;  // signature -> guest address
  std::vector<uint64_t> rsdt_entries, xsdt_entries;
};

// A table at `addr`: inside a blob, its length inside the blob, checksum 0.
const uint8_t* table_at(const Loaded& L, uint64_t addr, const char* sig) {
  const uint8_t* h = L.at(addr, 36);
  CHECK(h != nullptr);
  CHECK_EQ(std::string(reinterpret_cast<const char*>(h), 4), std::string(sig));
  uint32_t len = le32(h + 4);
  CHECK(len >= 36);
  CHECK(L.at(addr, len) != nullptr);
  CHECK_EQ(sum(h, len), uint8_t(0));
  CHECK_EQ(std::string(reinterpret_cast<const char*>(h + 10), 6), std::string("VIREO "));
  return h;
}

Parsed load_and_walk(const acpi::Config& c) {
  FwCfg fw(nullptr);
  acpi::install(fw, acpi::build(c));
  Parsed P;
  P.L = run_loader(fw);
  const Loaded& L = P.L;
  P.rsdp = L.blobs.at(acpi::kRsdpFile).addr;
  CHECK(P.rsdp >= 0xe0000 && P.rsdp + 36 <= 0x100000 && P.rsdp % 16 == 0);  // where OSes scan
  const uint8_t* r = L.at(P.rsdp, 36);
  CHECK(std::memcmp(r, "RSD PTR ", 8) == 0);
  CHECK_EQ(sum(r, 20), uint8_t(0));
  CHECK_EQ(r[15], uint8_t(2));
  CHECK_EQ(le32(r + 20), 36u);
  CHECK_EQ(sum(r, 36), uint8_t(0));
  const uint8_t* rsdt = table_at(L, le32(r + 16), "RSDT");
  const uint8_t* xsdt = table_at(L, le64(r + 24), "XSDT");
  for (uint32_t i = 36; i < le32(rsdt + 4); i += 4) P.rsdt_entries.push_back(le32(rsdt + i));
  for (uint32_t i = 36; i < le32(xsdt + 4); i += 8) P.xsdt_entries.push_back(le64(xsdt + i));
  CHECK_EQ((le32(rsdt + 4) - 36) % 4, 0u);
  CHECK_EQ((le32(xsdt + 4) - 36) % 8, 0u);
  CHECK(P.rsdt_entries == P.xsdt_entries);
  for (uint64_t a : P.rsdt_entries) {
    const uint8_t* h = L.at(a, 4);
    CHECK(h != nullptr);
    std::string sig(reinterpret_cast<const char*>(h), 4);
    table_at(L, a, sig.c_str());
    CHECK(P.tables.count(sig) == 0);
    P.tables[sig] = a;
  }
  CHECK(P.tables.count("FACP") && P.tables.count("APIC") && P.tables.count("SSDT"));
  const uint8_t* f = L.at(P.tables["FACP"], 244);
  CHECK(f != nullptr);
  uint64_t dsdt = le32(f + 40);
  CHECK_EQ(le64(f + 140), dsdt);  // X_DSDT agrees
  table_at(L, dsdt, "DSDT");
  P.tables["DSDT"] = dsdt;
  uint64_t facs = le32(f + 36);
  CHECK_EQ(facs % 64, 0u);
  const uint8_t* fc = L.at(facs, 64);
  CHECK(fc != nullptr);
  CHECK(std::memcmp(fc, "FACS", 4) == 0);
  CHECK_EQ(le32(fc + 4), 64u);
  P.tables["FACS"] = facs;
  return P;
}

bool contains(const uint8_t* p, size_t n, const std::vector<uint8_t>& pat) {
  return std::search(p, p + n, pat.begin(), pat.end()) != p + n;
}
std::vector<uint8_t> io_desc(uint16_t port, uint8_t len) {  // IO(Decode16, port, port, 1, len)
  return {0x47, 0x01, uint8_t(port), uint8_t(port >> 8), uint8_t(port), uint8_t(port >> 8), 0x01, len};
}
std::vector<uint8_t> irq_desc(int irq) {  // IRQNoFlags () {irq}
  return {0x22, uint8_t((1u << irq) & 0xff), uint8_t((1u << irq) >> 8)};
}

Parsed load_and_walk(int cpus) {
  acpi::Config c;
  c.cpus = cpus;
  return load_and_walk(c);
}

// A machine's ACPI config the way PcBoard builds it: RAM split at 3 GiB
// (boot::ram_layout), windows from pci_windows().
acpi::Config machine_config(uint64_t mem_bytes, int phys_bits, int cpus = 2) {
  acpi::Config c;
  c.cpus = cpus;
  uint64_t low = std::min<uint64_t>(mem_bytes, layout::kPciHoleStart);
  c.pci = pci_windows(low, mem_bytes - low, phys_bits);
  return c;
}

// One address range a resource descriptor of PCI0._CRS declares.
struct CrsRange {
  uint8_t tag;  // 0x88 WordBusNumber/WordIO (by type), 0x87 DWord, 0x8a QWord, 0x47 IO
  uint8_t type;  // address space descriptors: 0 memory, 1 I/O, 2 bus number
  uint64_t min, max, len;
};

// \_SB.PCI0._CRS of a DSDT, decoded here independently of acpi.cc: the first
// Name (_CRS, Buffer) after the PCI0 device's name, its descriptors up to the
// end tag (whose checksum byte must be 0 or make the template sum to 0).
std::vector<CrsRange> pci0_crs(const uint8_t* t, size_t n) {
  const uint8_t pci0[] = {'P', 'C', 'I', '0'};
  const uint8_t* dev = std::search(t, t + n, std::begin(pci0), std::end(pci0));
  CHECK(dev != t + n);
  const uint8_t crs[] = {0x08, '_', 'C', 'R', 'S', 0x11};
  const uint8_t* p = std::search(dev, t + n, std::begin(crs), std::end(crs));
  CHECK(p != t + n);
  p += sizeof crs;
  size_t bytes = size_t(p[0] >> 6) + 1, pkg = p[0] & (bytes == 1 ? 0x3f : 0x0f);
  for (size_t i = 1; i < bytes; i++) pkg |= size_t(p[i]) << (4 + 8 * (i - 1));
  const uint8_t* end = p + pkg;
  CHECK(end <= t + n);
  p += bytes;
  size_t size = 0;
  if (*p == 0x0a) size = p[1], p += 2;
  else if (*p == 0x0b) size = le16(p + 1), p += 3;
  else CHECK(false);
  CHECK_EQ(size_t(end - p), size);  // BufferSize is what follows
  const uint8_t* tmpl = p;
  std::vector<CrsRange> out;
  for (;;) {
    CHECK(p < end);
    if (*p == 0x79) {  // end tag: checksum 0 ("treat as summed") or a summing byte
      CHECK(p + 2 <= end);
      CHECK(p[1] == 0 || sum(tmpl, size_t(p + 2 - tmpl)) == 0);
      break;
    }
    if (*p & 0x80) {
      size_t len = le16(p + 1);
      CHECK(p + 3 + len <= end);
      if (*p == 0x87) {
        CHECK_EQ(len, size_t(0x17));
        out.push_back({0x87, p[3], le32(p + 10), le32(p + 14), le32(p + 22)});
      } else if (*p == 0x8a) {
        CHECK_EQ(len, size_t(0x2b));
        out.push_back({0x8a, p[3], le64(p + 14), le64(p + 22), le64(p + 38)});
      } else if (*p == 0x88) {
        CHECK_EQ(len, size_t(0x0d));
        out.push_back({0x88, p[3], le16(p + 8), le16(p + 10), le16(p + 14)});
      } else {
        CHECK(false);  // no other large descriptor in PCI0._CRS
      }
      p += 3 + len;
    } else {
      size_t len = *p & 7;
      if (*p == 0x47) out.push_back({0x47, 1, le16(p + 2), le16(p + 4), p[7]});
      p += 1 + len;
    }
  }
  return out;
}

}  // namespace

TEST(routing_table_sends_the_pit_to_ioapic_pin_2) {
  auto r = pcirq::pc_routes();
  CHECK_EQ(pcirq::ioapic_pin(r, pcirq::kPitGsi), 2);
  CHECK_EQ(pcirq::ioapic_pin(r, 2), -1);  // the cascade: no route at all
  for (uint32_t g = 0; g < pcirq::kIoApicPins; g++)
    if (g != 0 && g != 2) CHECK_EQ(pcirq::ioapic_pin(r, g), int(g));
  int pic_routes = 0;
  for (auto& e : r) {
    CHECK(e.gsi != 2);
    if (e.chip == pcirq::Chip::PicMaster) {
      CHECK(e.gsi < 8);
      CHECK_EQ(e.pin, e.gsi);
      pic_routes++;
    } else if (e.chip == pcirq::Chip::PicSlave) {
      CHECK(e.gsi >= 8 && e.gsi < 16);
      CHECK_EQ(e.pin, e.gsi - 8);
      pic_routes++;
    }
  }
  CHECK_EQ(pic_routes, 15);
  CHECK_EQ(r.size(), size_t(15 + 23));
}

TEST(loader_checksums_lengths_and_pointers) {
  for (int n : {1, 2, 4, 64, 255}) load_and_walk(n);
}

TEST(bad_cpu_counts_are_refused) {
  acpi::Config c;
  for (int n : {0, 256, -1}) {
    c.cpus = n;
    bool threw = false;
    try {
      acpi::build(c);
    } catch (std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
  }
}

TEST(madt_lists_every_vcpu_and_overrides_match_the_routing) {
  for (int n : {1, 3, 16}) {
    Parsed P = load_and_walk(n);
    const uint8_t* m = P.L.at(P.tables["APIC"], 44);
    uint32_t len = le32(m + 4);
    CHECK_EQ(le32(m + 36), uint32_t(layout::kLapicBase));
    CHECK_EQ(le32(m + 40), acpi::kMadtPcatCompat);
    std::vector<int> apic_ids;
    int ioapics = 0, nmis = 0;
    std::map<int, std::pair<uint32_t, uint16_t>> iso;  // source IRQ -> (GSI, flags)
    auto routes = pcirq::pc_routes();
    for (uint32_t off = 44; off < len;) {
      uint8_t type = m[off], elen = m[off + 1];
      CHECK(elen >= 2 && off + elen <= len);
      const uint8_t* e = m + off;
      if (type == acpi::kMadtLapic) {
        CHECK_EQ(elen, uint8_t(8));
        CHECK_EQ(e[2], e[3]);  // processor UID n has APIC ID n
        CHECK_EQ(le32(e + 4), acpi::kLapicEnabled);
        apic_ids.push_back(e[3]);
      } else if (type == acpi::kMadtIoApic) {
        CHECK_EQ(elen, uint8_t(12));
        CHECK_EQ(le32(e + 4), uint32_t(layout::kIoApicBase));
        CHECK_EQ(le32(e + 8), 0u);
        ioapics++;
      } else if (type == acpi::kMadtIso) {
        CHECK_EQ(elen, uint8_t(10));
        CHECK_EQ(e[2], uint8_t(0));
        CHECK(iso.count(e[3]) == 0);
        iso[e[3]] = {le32(e + 4), le16(e + 8)};
      } else if (type == acpi::kMadtLapicNmi) {
        CHECK_EQ(elen, uint8_t(6));
        CHECK_EQ(e[5], acpi::kLint1);
        nmis++;
      } else {
        CHECK(false);
      }
      off += elen;
    }
    CHECK_EQ(int(apic_ids.size()), n);
    for (int i = 0; i < n; i++) CHECK_EQ(apic_ids[size_t(i)], i);
    CHECK_EQ(ioapics, 1);
    CHECK_EQ(nmis, 1);
    // Every ISA IRQ: the GSI the OS will program is the IOAPIC pin KVM routes it to.
    for (uint32_t irq = 0; irq < 16; irq++) {
      if (irq == 2) continue;
      uint32_t gsi = iso.count(int(irq)) ? iso[int(irq)].first : irq;
      CHECK_EQ(int(gsi), pcirq::ioapic_pin(routes, irq));
    }
    CHECK(iso.count(0));
    CHECK_EQ(iso[0].first, 2u);
    CHECK_EQ(iso[0].second, acpi::kIsoConforming);
    CHECK(iso.count(pci::Piix4Pm::kSciIrq));
    CHECK_EQ(iso[pci::Piix4Pm::kSciIrq].second, acpi::kIsoLevelHigh);
    for (uint8_t l : acpi::kPciLinkIrqs) {
      CHECK(iso.count(l));
      CHECK_EQ(iso[l].second, acpi::kIsoLevelHigh);
    }
    CHECK_EQ(iso.size(), size_t(1 + 1 + std::size(acpi::kPciLinkIrqs)));
    // One Processor object per vCPU in the SSDT (ExtOpPrefix, ProcessorOp, PkgLength 11, "Cnnn", id).
    const uint8_t* s = P.L.at(P.tables["SSDT"], 36);
    uint32_t slen = le32(s + 4);
    for (int i = 0; i < n; i++) {
      char name[16];
      std::snprintf(name, sizeof name, "C%03X", unsigned(i));
      std::vector<uint8_t> pat = {0x5b, 0x83, 0x0b, uint8_t(name[0]), uint8_t(name[1]), uint8_t(name[2]),
                                  uint8_t(name[3]), uint8_t(i)};
      CHECK(contains(s, slen, pat));
    }
  }
}

TEST(fadt_matches_piix4_pm) {
  Parsed P = load_and_walk(1);
  const uint8_t* f = P.L.at(P.tables["FACP"], 244);
  CHECK_EQ(le32(f + 4), 244u);
  CHECK_EQ(f[8], uint8_t(3));
  CHECK_EQ(le16(f + 46), uint16_t(pci::Piix4Pm::kSciIrq));
  CHECK_EQ(le32(f + 48), uint32_t(pci::Piix4Pm::kApmPort));
  CHECK_EQ(f[52], pci::Piix4Pm::kAcpiEnable);
  CHECK_EQ(f[53], pci::Piix4Pm::kAcpiDisable);
  const uint32_t base = pci::Piix4Pm::kLoaderPmBase;  // what SeaBIOS programs when it runs a table-loader
  CHECK_EQ(le32(f + 56), base + pci::Piix4Pm::kPm1Sts);
  CHECK_EQ(le32(f + 64), base + pci::Piix4Pm::kPm1Cnt);
  CHECK_EQ(le32(f + 76), base + pci::Piix4Pm::kPmTmr);
  CHECK_EQ(le32(f + 80), uint32_t(pci::Piix4Pm::kGpePort));
  CHECK_EQ(f[88], uint8_t(4));
  CHECK_EQ(f[89], uint8_t(2));
  CHECK_EQ(f[91], uint8_t(4));
  CHECK_EQ(f[92], uint8_t(pci::Piix4Pm::kGpeLen));
  CHECK_EQ(f[108], uint8_t(CmosRtc::kCentury));
  uint32_t flags = le32(f + 112);
  CHECK_EQ(flags & (1u << 4), 0u);  // power button: fixed feature (PM1 PWRBTN_STS)
  CHECK_EQ(flags & (1u << 8), 0u);  // 24-bit PM timer
  CHECK(flags & (1u << 10));        // reset register
  CHECK_EQ(le64(f + 116 + 4), uint64_t(pci::Piix3::kRcrPort));
  CHECK_EQ(f[128], uint8_t(0x06));
  // X_ blocks agree with the 32-bit ones.
  CHECK_EQ(le64(f + 148 + 4), uint64_t(base + pci::Piix4Pm::kPm1Sts));
  CHECK_EQ(le64(f + 172 + 4), uint64_t(base + pci::Piix4Pm::kPm1Cnt));
  CHECK_EQ(le64(f + 208 + 4), uint64_t(base + pci::Piix4Pm::kPmTmr));
  CHECK_EQ(le64(f + 220 + 4), uint64_t(pci::Piix4Pm::kGpePort));
}

TEST(dsdt_resources_match_the_board_constants) {
  PciWindows w = pci_windows(128ull << 20, 0, 40);
  auto d = acpi::dsdt(w);
  const uint8_t* p = d.data();
  size_t n = d.size();
  CHECK(std::memcmp(p, "DSDT", 4) == 0);
  CHECK_EQ(size_t(le32(p + 4)), n);
  CHECK_EQ(sum(p, n), uint8_t(0));
  CHECK(contains(p, n, io_desc(layout::kCom1Port, 8)));
  CHECK(contains(p, n, irq_desc(layout::kCom1Irq)));
  CHECK(contains(p, n, io_desc(layout::kCom2Port, 8)));
  CHECK(contains(p, n, irq_desc(layout::kCom2Irq)));
  CHECK(contains(p, n, io_desc(CmosRtc::kPortBase, CmosRtc::kPortLen)));
  CHECK(contains(p, n, irq_desc(CmosRtc::kIrq)));
  CHECK(contains(p, n, io_desc(0x60, 1)));  // pc_board.cc kKbdDataPort
  CHECK(contains(p, n, io_desc(0x64, 1)));  // kKbdCmdPort
  CHECK(contains(p, n, irq_desc(1)));       // kIrqKbd
  CHECK(contains(p, n, irq_desc(12)));      // kIrqMouse
  // 32-bit PCI window: 0x80000000 (128 MiB of RAM) .. kIoApicBase - 1.
  std::vector<uint8_t> win;
  for (uint32_t v : {0x80000000u, uint32_t(layout::kIoApicBase - 1)})
    for (int i = 0; i < 4; i++) win.push_back(uint8_t(v >> (8 * i)));
  CHECK(contains(p, n, win));
  // 64-bit: 4 GiB .. 2^40 - 1.
  win.clear();
  for (uint64_t v : {uint64_t(layout::k4GiB), uint64_t((1ull << 40) - 1)})
    for (int i = 0; i < 8; i++) win.push_back(uint8_t(v >> (8 * i)));
  CHECK(contains(p, n, win));
  // The link _PRS: Interrupt(ResourceConsumer, Level, ActiveHigh, Shared) {5, 10, 11}.
  std::vector<uint8_t> prs = {0x89, 0x0e, 0x00, 0x09, uint8_t(std::size(acpi::kPciLinkIrqs))};
  for (uint8_t irq : acpi::kPciLinkIrqs) prs.insert(prs.end(), {irq, 0, 0, 0});
  CHECK(contains(p, n, prs));
  // PIRQ route registers: OperationRegion (P40C, PCI_Config, 0x60, 4).
  std::vector<uint8_t> region = {'P', '4', '0', 'C', 0x02, 0x0a, uint8_t(pci::Piix3::kPirqBase), 0x0a, 0x04};
  CHECK(contains(p, n, region));
  // SeaBIOS looks for the keyboard's EISA ID (PNP0303 = 41 d0 03 03) when it parses a DSDT.
  CHECK(contains(p, n, {0x0c, 0x41, 0xd0, 0x03, 0x03}));
}

namespace {
constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;
// RAM sizes across the splits: all below 2 GiB, 2-3 GiB, and above 3 GiB
// where the rest goes above 4 GiB (boot::ram_layout splits at kPciHoleStart).
constexpr uint64_t kMems[] = {16 * kMiB, 128 * kMiB, 2 * kGiB, 2 * kGiB + 4 * kMiB, 3 * kGiB,
                              3 * kGiB + 512 * kMiB, 4 * kGiB, 5 * kGiB, 64 * kGiB, 1024 * kGiB};
constexpr int kBits[] = {36, 39, 40, 46, 48, 52};
}  // namespace

// machine/pci_windows.h: the 32-bit window starts where SeaBIOS's i440FX
// setup allocates from (0x80000000 / 0xc0000000); the 64-bit one at the end
// of RAM above 4 GiB rounded up to 1 GiB, up to min(2^bits, 2^46).
TEST(pci_windows_follow_the_ram_and_the_address_width) {
  struct Want {
    uint64_t mem;
    int bits;
    uint64_t mem32_base, mem64_base, mem64_end;
  };
  const Want wants[] = {
      {128 * kMiB, 36, 0x80000000, 4 * kGiB, 1ull << 36},
      {2 * kGiB, 40, 0x80000000, 4 * kGiB, 1ull << 40},
      {2 * kGiB + 4 * kMiB, 39, 0xc0000000, 4 * kGiB, 1ull << 39},
      {3 * kGiB, 48, 0xc0000000, 4 * kGiB, 1ull << 46},
      {3 * kGiB + 512 * kMiB, 48, 0xc0000000, 5 * kGiB, 1ull << 46},  // RAM to 4.5 GiB
      {4 * kGiB, 40, 0xc0000000, 5 * kGiB, 1ull << 40},               // RAM to 5 GiB exactly
      {5 * kGiB, 52, 0xc0000000, 6 * kGiB, 1ull << 46},
      {1024 * kGiB, 46, 0xc0000000, 1025 * kGiB, 1ull << 46},
  };
  for (const Want& x : wants) {
    uint64_t low = std::min<uint64_t>(x.mem, layout::kPciHoleStart);
    PciWindows w = pci_windows(low, x.mem - low, x.bits);
    CHECK_EQ(w.mem32_base, x.mem32_base);
    CHECK_EQ(w.mem32_end, uint64_t(layout::kIoApicBase));
    CHECK_EQ(w.mem64_base, x.mem64_base);
    CHECK_EQ(w.mem64_end, x.mem64_end);
  }
  int checked = 0;
  for (uint64_t mem : kMems) {
    for (int bits : kBits) {
      uint64_t low = std::min<uint64_t>(mem, layout::kPciHoleStart), high = mem - low;
      uint64_t ram_end = layout::k4GiB + high, top = 1ull << std::min(bits, 46);
      if (ram_end >= top) {
        // RAM fills the address space: refused, with the numbers.
        bool threw = false;
        try {
          pci_windows(low, high, bits);
        } catch (const std::invalid_argument& e) {
          threw = std::string(e.what()).find("no room for the 64-bit PCI window") != std::string::npos;
        }
        CHECK(threw);
        continue;
      }
      PciWindows w = pci_windows(low, high, bits);
      CHECK(w.mem32_base >= low);                       // above RAM below 4 GiB
      CHECK(w.mem32_end <= layout::kIoApicBase);        // below the IOAPIC, LAPIC, BIOS
      CHECK(w.mem64_base >= ram_end);                   // above RAM above 4 GiB
      CHECK(w.mem64_base - ram_end < kGiB);             // ... by less than the rounding
      CHECK_EQ(w.mem64_base % kGiB, 0u);
      CHECK(w.mem64_end <= (1ull << bits));             // addressable by the guest
      CHECK(w.mem64_base < w.mem64_end);
      checked++;
    }
  }
  std::printf("  %d RAM size x address width pairs, windows clear of RAM\n", checked);
  CHECK(checked > 40);
  bool threw = false;
  try {
    pci_windows(layout::kPciHoleStart + 4096, 0, 40);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("RAM below 4 GiB") != std::string::npos;
  }
  CHECK(threw);
  threw = false;
  try {
    pci_windows(128 * kMiB, 0, 31);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("31 physical address bits") != std::string::npos;
  }
  CHECK(threw);
  threw = false;
  try {
    acpi::dsdt(PciWindows{0x80000000, 0xfec00000, 8 * kGiB, 8 * kGiB});
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

// The DSDT's \_SB.PCI0._CRS as an OS reads it, for RAM sizes on both sides
// of 4 GiB and several address widths: bus 0-255, the VGA window, the
// 32-bit window and the 64-bit QWordMemory one, each min + length - 1 ==
// max, no two overlapping, none over RAM (the e820 ranges SeaBIOS reports).
TEST(dsdt_pci0_crs_has_both_windows_clear_of_ram) {
  int checked = 0;
  for (uint64_t mem : kMems) {
    for (int bits : {36, 40, 48}) {
      uint64_t low = std::min<uint64_t>(mem, layout::kPciHoleStart), high = mem - low;
      if (layout::k4GiB + high >= (1ull << bits)) continue;  // refused (previous test)
      acpi::Config c = machine_config(mem, bits);
      Parsed P = load_and_walk(c);
      const uint8_t* d = P.L.at(P.tables["DSDT"], 8);
      auto ranges = pci0_crs(d, le32(d + 4));
      int bus = 0, mem32 = 0, mem64 = 0, vga = 0;
      std::vector<std::pair<uint64_t, uint64_t>> mems;
      for (const CrsRange& r : ranges) {
        if (r.tag == 0x47) continue;  // IO (config ports): min == max, length is the count
        CHECK_EQ(r.min + r.len - 1, r.max);
        if (r.type == 2) {
          bus++;
          CHECK_EQ(r.min, 0u);
          CHECK_EQ(r.max, 0xffu);
        }
        if (r.type != 0) continue;
        mems.push_back({r.min, r.max});
        if (r.tag == 0x87 && r.min == layout::kVgaWindow) {
          vga++;
          CHECK_EQ(r.len, layout::kVgaWindowSize);
        } else if (r.tag == 0x87) {
          mem32++;
          CHECK_EQ(r.min, c.pci.mem32_base);
          CHECK_EQ(r.max, c.pci.mem32_end - 1);
        } else if (r.tag == 0x8a) {
          mem64++;
          CHECK_EQ(r.min, c.pci.mem64_base);
          CHECK_EQ(r.max, c.pci.mem64_end - 1);
        }
      }
      CHECK_EQ(bus, 1);
      CHECK_EQ(vga, 1);
      CHECK_EQ(mem32, 1);
      CHECK_EQ(mem64, 1);
      // RAM as SeaBIOS's e820 has it (0-640 KiB, 1 MiB-low, 4 GiB-), and the
      // IOAPIC/LAPIC/BIOS from 0xfec00000 to 4 GiB.
      std::vector<std::pair<uint64_t, uint64_t>> taken = {{0, layout::kVgaWindow - 1},
                                                          {layout::kIoApicBase, layout::k4GiB - 1}};
      if (low > layout::kHighMemBase) taken.push_back({layout::kHighMemBase, low - 1});
      if (high) taken.push_back({layout::k4GiB, layout::k4GiB + high - 1});
      for (size_t i = 0; i < mems.size(); i++) {
        for (size_t j = i + 1; j < mems.size(); j++)
          CHECK(mems[i].second < mems[j].first || mems[j].second < mems[i].first);
        for (auto& t : taken) CHECK(mems[i].second < t.first || t.second < mems[i].first);
      }
      checked++;
    }
  }
  std::printf("  %d machines: PCI0._CRS windows clear of RAM and of each other\n", checked);
  CHECK(checked >= 25);
}

// Every table through `iasl -d`: no errors, no checksum complaints; for a
// 128 MiB machine with 36-bit addresses and a 5 GiB one (RAM above 4 GiB)
// with 48-bit ones, whose DSDT must show both PCI windows.
// VIREO_ACPI_DUMP=DIR keeps one machine's tables and their disassembly there
// (docs/acpi.md compares them with QEMU's): VIREO_ACPI_MEM_MIB (128) and
// VIREO_ACPI_PHYS_BITS (40, QEMU's TCG CPU) choose it.
TEST(every_table_disassembles_with_iasl) {
#ifdef VIREO_IASL
  const char* iasl = VIREO_IASL;
#else
  const char* iasl = "iasl";
#endif
  if (access(iasl, X_OK) != 0) SKIP(std::string(iasl) + " is missing (Debian package acpica-tools)");
  const char* keep = std::getenv("VIREO_ACPI_DUMP");
  std::vector<acpi::Config> configs = {machine_config(128 * kMiB, 36), machine_config(5 * kGiB, 48)};
  if (keep) {
    const char* m = std::getenv("VIREO_ACPI_MEM_MIB");
    const char* b = std::getenv("VIREO_ACPI_PHYS_BITS");
    configs = {machine_config((m ? std::strtoull(m, nullptr, 0) : 128) * kMiB, b ? std::atoi(b) : 40)};
  }
  for (const acpi::Config& c : configs) {
    Parsed P = load_and_walk(c);
    char dir[] = "/tmp/vireo-acpi-XXXXXX";
    std::string d = keep ? keep : "";
    if (keep) {
      mkdir(keep, 0755);
    } else {
      CHECK(mkdtemp(dir) != nullptr);
      d = dir;
    }
    auto dump = [&](const std::string& name, const uint8_t* p, size_t len) {
      std::ofstream(d + "/" + name + ".dat", std::ios::binary).write(reinterpret_cast<const char*>(p), std::streamsize(len));
    };
    for (auto& [sig, addr] : P.tables) {
      const uint8_t* h = P.L.at(addr, 8);
      dump(sig, h, le32(h + 4));
    }
    // Not the RSDP: iasl 20200925 cannot disassemble one from a file, not
    // even the one its own `iasl -T RSDP` template compiles to (checked by hand);
    // load_and_walk checks both its checksums and pointers.
    for (std::string name : {"RSDT", "XSDT", "FACP", "FACS", "APIC", "DSDT", "SSDT"}) {
      if (name == "RSDT" || name == "XSDT") {
        // listed by the RSDP, not in P.tables
        uint64_t a = name == "RSDT" ? le32(P.L.at(P.rsdp, 36) + 16) : le64(P.L.at(P.rsdp, 36) + 24);
        const uint8_t* h = P.L.at(a, 8);
        dump(name, h, le32(h + 4));
      }
      std::string cmd = std::string(iasl) + " -d " + d + "/" + name + ".dat > " + d + "/" + name + ".log 2>&1";
      int rc = std::system(cmd.c_str());
      std::ifstream lf(d + "/" + name + ".log");
      std::stringstream log;
      log << lf.rdbuf();
      std::string out = log.str();
      if (rc != 0 || out.find("rror") != std::string::npos || out.find("hecksum") != std::string::npos ||
          out.find("Unknown") != std::string::npos) {
        std::printf("iasl -d %s (rc %d):\n%s\n", name.c_str(), rc, out.c_str());
        CHECK(false);
      }
      struct stat st;
      CHECK(stat((d + "/" + name + ".dsl").c_str(), &st) == 0 && st.st_size > 0);
    }
    // The disassembled _CRS has both windows with this machine's numbers.
    std::ifstream df(d + "/DSDT.dsl");
    std::stringstream dsl;
    dsl << df.rdbuf();
    auto hexline = [](uint64_t v, int digits, const char* what) {
      char b[64];
      std::snprintf(b, sizeof b, "0x%0*llX, // %s", digits, static_cast<unsigned long long>(v), what);
      return std::string(b);
    };
    std::string text = dsl.str();
    // iasl pads the comments to a column: compare without spaces.
    auto squeeze = [](std::string v) {
      v.erase(std::remove(v.begin(), v.end(), ' '), v.end());
      return v;
    };
    text = squeeze(text);
    for (const std::string& want : {std::string("QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,"),
                                    hexline(c.pci.mem64_base, 16, "Range Minimum"), hexline(c.pci.mem64_end - 1, 16, "Range Maximum"),
                                    hexline(c.pci.mem64_end - c.pci.mem64_base, 16, "Length"),
                                    hexline(c.pci.mem32_base, 8, "Range Minimum")}) {
      if (text.find(squeeze(want)) == std::string::npos) {
        std::printf("DSDT.dsl lacks \"%s\"\n", want.c_str());
        CHECK(false);
      }
    }
    if (!keep) std::system(("rm -rf " + d).c_str());
  }
}

// The DSDT's control methods run under ACPICA's acpiexec (its simulated
// PCI config space starts at zero): a link reads as enabled with IRQ 0,
// _DIS sets PIRQRC bit 7 and _STA then says disabled, _PRS offers 5/10/11,
// \_S5 is SLP_TYP 0. Skips where acpiexec (acpica-tools) is missing.
TEST(dsdt_methods_run_under_acpiexec) {
  const char* exe = "/usr/bin/acpiexec";
  if (access(exe, X_OK) != 0) SKIP("/usr/bin/acpiexec is missing (Debian package acpica-tools)");
  Parsed P = load_and_walk(2);
  char dir[] = "/tmp/vireo-acpiexec-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  std::string d = dir;
  for (const char* sig : {"DSDT", "SSDT"}) {
    const uint8_t* h = P.L.at(P.tables[sig], 8);
    std::ofstream(d + "/" + sig + ".dat", std::ios::binary).write(reinterpret_cast<const char*>(h), le32(h + 4));
  }
  std::string cmd = std::string(exe) +
                    " -b \"evaluate \\_SB.LNKA._STA; evaluate \\_SB.LNKB._CRS; evaluate \\_SB.LNKC._DIS;"
                    " evaluate \\_SB.LNKC._STA; evaluate \\_SB.LNKD._PRS; evaluate \\_S5; evaluate \\_SB.PCI0.ISA.KBD._CRS\" " +
                    d + "/DSDT.dat " + d + "/SSDT.dat > " + d + "/out.txt 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream f(d + "/out.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string out = ss.str();
  std::system(("rm -rf " + d).c_str());
  auto has = [&](const std::string& s) {
    if (out.find(s) != std::string::npos) return true;
    std::printf("acpiexec output lacks \"%s\":\n%s\n", s.c_str(), out.c_str());
    return false;
  };
  CHECK_EQ(rc, 0);
  CHECK(out.find("ACPI Error") == std::string::npos || has("no ACPI Error"));
  CHECK(has("2 ACPI AML tables successfully acquired and loaded"));
  CHECK(has("Evaluation of \\_SB.LNKA._STA returned object"));
  CHECK(has("[Integer] = 000000000000000B"));  // enabled
  CHECK(has("89 06 00 09 01 00 00 00 00 79 00"));  // _CRS: level, high, shared, IRQ 0 (PIRQRC = 0)
  CHECK(has("[Integer] = 0000000000000009"));  // after _DIS: present, disabled
  CHECK(has("89 0E 00 09 03 05 00 00 00 0A 00 00 00 0B 00 00"));
  CHECK(has("[Package] Contains 4 Elements"));
  CHECK(has("47 01 60 00 60 00 01 01 47 01 64 00 64 00 01 01"));  // KBD ports 0x60, 0x64
}

// PCI0._CRS through ACPICA's resource manager (AcpiGetCurrentResources, what
// Linux's acpi_walk_resources calls for the host bridge windows), on a 5 GiB
// machine with 48-bit addresses: the 64-bit window decodes as a QWORD memory
// range 6 GiB .. 2^46 - 1 next to the 32-bit one 0xc0000000 .. 0xfebfffff.
TEST(pci0_crs_decodes_under_acpica_resource_manager) {
  const char* exe = "/usr/bin/acpiexec";
  if (access(exe, X_OK) != 0) SKIP("/usr/bin/acpiexec is missing (Debian package acpica-tools)");
  Parsed P = load_and_walk(machine_config(5 * kGiB, 48));
  char dir[] = "/tmp/vireo-acpiexec-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  std::string d = dir;
  for (const char* sig : {"DSDT", "SSDT"}) {
    const uint8_t* h = P.L.at(P.tables[sig], 8);
    std::ofstream(d + "/" + sig + ".dat", std::ios::binary).write(reinterpret_cast<const char*>(h), le32(h + 4));
  }
  std::string cmd = std::string(exe) + " -b \"resources \\_SB.PCI0\" " + d + "/DSDT.dat " + d + "/SSDT.dat > " + d +
                    "/out.txt 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream f(d + "/out.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string out = ss.str();
  std::system(("rm -rf " + d).c_str());
  // Compare without the column padding.
  std::string text;
  for (char ch : out)
    if (ch != ' ') text += ch;
  auto has = [&](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    if (text.find(s) != std::string::npos) return true;
    std::printf("acpiexec output lacks \"%s\":\n%s\n", s.c_str(), out.c_str());
    return false;
  };
  CHECK_EQ(rc, 0);
  CHECK(has("[06] 64-Bit QWORD Address Space Resource"));
  CHECK(has("Address Minimum : 0000000180000000"));
  CHECK(has("Address Maximum : 00003FFFFFFFFFFF"));
  CHECK(has("Address Length : 00003FFE80000000"));
  CHECK(has("Address Minimum : C0000000"));
  CHECK(has("Address Maximum : FEBFFFFF"));
  CHECK(has("RsConvertAmlToResources : Type 8A, AmlLength 2E"));
  CHECK(has("[07] EndTag Resource"));
  CHECK(out.find("ACPI Error") == std::string::npos || has("no ACPI Error"));
}
