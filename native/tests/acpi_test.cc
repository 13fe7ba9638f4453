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
#include <string>
#include <vector>

#include "check.h"
#include "devices/fw_cfg.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/pci/piix3.h"
#include "devices/pci/piix4_pm.h"
#include "machine/layout.h"
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

Parsed load_and_walk(int cpus) {
  FwCfg fw(nullptr);
  acpi::Config c;
  c.cpus = cpus;
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
  auto d = acpi::dsdt_aml();
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
  // 32-bit PCI window: kPciHoleStart .. kIoApicBase - 1.
  std::vector<uint8_t> win;
  for (uint32_t v : {uint32_t(layout::kPciHoleStart), uint32_t(layout::kIoApicBase - 1)})
    for (int i = 0; i < 4; i++) win.push_back(uint8_t(v >> (8 * i)));
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

// Every table through `iasl -d`: no errors, no checksum complaints.
TEST(every_table_disassembles_with_iasl) {
#ifdef VIREO_IASL
  const char* iasl = VIREO_IASL;
#else
  const char* iasl = "iasl";
#endif
  if (access(iasl, X_OK) != 0) SKIP(std::string(iasl) + " is missing (Debian package acpica-tools)");
  Parsed P = load_and_walk(2);
  // VIREO_ACPI_DUMP=DIR keeps the tables and their disassembly there
  // (docs/acpi.md compares them with QEMU's).
  const char* keep = std::getenv("VIREO_ACPI_DUMP");
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
  if (!keep) std::system(("rm -rf " + d).c_str());
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
