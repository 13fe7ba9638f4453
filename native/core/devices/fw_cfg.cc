#include "devices/fw_cfg.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "machine/state.h"

namespace vireo {

namespace {

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint64_t be64(const uint8_t* p) { return uint64_t(be32(p)) << 32 | be32(p + 4); }
void put_be32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}
// The guest wrote `d` with outl(cpu_to_be32(x)): bytes on the wire are x big-endian.
uint64_t span_be(std::span<const uint8_t> d) {
  uint64_t v = 0;
  for (uint8_t b : d) v = v << 8 | b;
  return v;
}

// FWCfgDmaAccess: control (be32), length (be32), address (be64).
constexpr uint64_t kDescSize = 16;
// A guest asking for gigabytes in one descriptor is either broken or hostile:
// copy in bounded chunks so we never allocate what it asks for.
constexpr uint32_t kDmaChunk = 64 * 1024;

}  // namespace

FwCfg::FwCfg(const GuestMemory* mem) : mem_(mem) {
  set_item(kSignature, {'Q', 'E', 'M', 'U'});
  set_u32(kId, kIdTraditional | (mem ? kIdDma : 0));
  rebuild_dir();
}

void FwCfg::set_item(uint16_t key, std::vector<uint8_t> bytes) {
  key &= kKeyMask;
  items_[key].data = std::move(bytes);
}
void FwCfg::set_u16(uint16_t key, uint16_t v) { set_item(key, fwcfg::le16(v)); }
void FwCfg::set_u32(uint16_t key, uint32_t v) { set_item(key, fwcfg::le32(v)); }
void FwCfg::set_u64(uint16_t key, uint64_t v) { set_item(key, fwcfg::le64(v)); }

uint16_t FwCfg::add_file(const std::string& name, std::vector<uint8_t> bytes, bool writable) {
  std::string n = name.substr(0, kFileNameMax - 1);
  int k = file_key(n);
  uint16_t key;
  if (k >= 0) {
    key = uint16_t(k);
  } else {
    key = uint16_t(kFileFirst + files_.size());
    files_.push_back({n, key});
  }
  Item& it = items_[key];
  it.data = std::move(bytes);
  it.writable = writable;
  rebuild_dir();
  return key;
}

const std::vector<uint8_t>* FwCfg::item(uint16_t key) const {
  auto it = items_.find(uint16_t(key & kKeyMask));
  return it == items_.end() ? nullptr : &it->second.data;
}

const std::vector<uint8_t>* FwCfg::file(const std::string& name) const {
  int k = file_key(name);
  return k < 0 ? nullptr : item(uint16_t(k));
}

int FwCfg::file_key(const std::string& name) const {
  for (auto& [n, k] : files_) {
    if (n == name) return k;
  }
  return -1;
}

void FwCfg::rebuild_dir() {
  // struct FWCfgFile { be32 size; be16 select; u16 reserved; char name[56]; } after a be32 count.
  std::vector<uint8_t> d(4 + files_.size() * 64, 0);
  put_be32(d.data(), uint32_t(files_.size()));
  for (size_t i = 0; i < files_.size(); i++) {
    uint8_t* e = d.data() + 4 + i * 64;
    put_be32(e, uint32_t(items_[files_[i].second].data.size()));
    e[4] = uint8_t(files_[i].second >> 8);
    e[5] = uint8_t(files_[i].second);
    std::copy(files_[i].first.begin(), files_[i].first.end(), e + 8);
  }
  items_[kFileDir].data = std::move(d);
}

void FwCfg::select(uint16_t key) {
  s.selector = key & kKeyMask;
  s.offset = 0;
}

FwCfg::Item* FwCfg::current() {
  auto it = items_.find(s.selector);
  return it == items_.end() ? nullptr : &it->second;
}

void FwCfg::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset == kOffData && !data.empty()) {
    // Byte stream; past the end (or an absent key) reads zero.
    Item* it = current();
    for (auto& b : data) {
      if (it && s.offset < it->data.size()) {
        b = it->data[s.offset++];
      } else {
        b = 0;
      }
    }
    return;
  }
  if (offset >= kOffDmaHigh && offset + data.size() <= kOffDmaLow + 4) {
    // Signature, big-endian across the 8 bytes of the address registers.
    for (size_t i = 0; i < data.size(); i++) data[i] = uint8_t(kDmaSignature >> (8 * (7 - (offset - kOffDmaHigh + i))));
    return;
  }
  if (offset == kOffSelector) {
    // The selector is write-only on real QEMU; reads give zero.
    std::fill(data.begin(), data.end(), 0);
    return;
  }
  std::fill(data.begin(), data.end(), 0);
}

void FwCfg::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == kOffSelector && !data.empty()) {
    select(uint16_t(span_to_u64(data)));
    return;
  }
  if (offset == kOffData) return;  // legacy data writes are ignored (QEMU >= 2.4 too)
  if (!mem_) return;
  if (offset == kOffDmaHigh && data.size() == 8) {
    s.dma_addr = span_be(data);
    dma_transfer(s.dma_addr);
  } else if (offset == kOffDmaHigh && data.size() == 4) {
    s.dma_addr = (s.dma_addr & 0xffffffffull) | (span_be(data) << 32);
  } else if (offset == kOffDmaLow && data.size() == 4) {
    s.dma_addr = (s.dma_addr & ~0xffffffffull) | span_be(data);
    dma_transfer(s.dma_addr);
    s.dma_addr = 0;  // the high half is per-transfer
  }
}

void FwCfg::dma_transfer(uint64_t desc_addr) {
  if (!mem_) return;
  uint8_t desc[kDescSize];
  if (!mem_->read(desc_addr, desc, kDescSize)) return;  // nowhere to report an error
  uint32_t control = be32(desc);
  uint32_t length = be32(desc + 4);
  uint64_t addr = be64(desc + 8);
  bool error = false;

  if (control & kDmaSelect) select(uint16_t(control >> 16));

  if (control & kDmaRead) {
    Item* it = current();
    std::vector<uint8_t> buf;
    while (length && !error) {
      uint32_t n = std::min(length, kDmaChunk);
      buf.assign(n, 0);
      if (it && s.offset < it->data.size()) {
        size_t avail = std::min<size_t>(n, it->data.size() - s.offset);
        std::copy_n(it->data.begin() + s.offset, avail, buf.begin());
      }
      if (!mem_->write(addr, buf.data(), n)) error = true;
      s.offset = uint32_t(std::min<uint64_t>(uint64_t(s.offset) + n, 0xffffffffu));
      addr += n;
      length -= n;
    }
  } else if (control & kDmaWrite) {
    Item* it = current();
    if (!it || !it->writable || uint64_t(s.offset) + length > it->data.size()) {
      error = true;
    } else if (!mem_->read(addr, it->data.data() + s.offset, length)) {
      error = true;
    } else {
      s.offset += length;
    }
  } else if (control & kDmaSkip) {
    s.offset = uint32_t(std::min<uint64_t>(uint64_t(s.offset) + length, 0xffffffffu));
  }

  uint8_t done[4];
  put_be32(done, error ? kDmaError : 0);
  mem_->write(desc_addr, done, 4);
}

// ---------------------------------------------------------------- saved state

namespace {
constexpr uint32_t kNoItem = 0xffffffffu;
std::string key_name(uint16_t k) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%04x", k);
  return b;
}
}  // namespace

void FwCfg::save(state::StateWriter& w) const {
  w.u16(s.selector);
  w.u32(s.offset);
  w.u64(s.dma_addr);
  auto it = items_.find(s.selector);
  w.u32(it == items_.end() ? kNoItem : uint32_t(it->second.data.size()));
  uint32_t n = 0;
  for (auto& [k, item] : items_) n += item.writable;
  w.u32(n);
  for (auto& [k, item] : items_) {
    if (!item.writable) continue;
    w.u16(k);
    w.blob(item.data);
  }
}

void FwCfg::load(state::StateReader& r) {
  if (r.version() != State::kVersion) r.fail("unknown version (this Vireo has " + std::to_string(State::kVersion) + ")");
  State n;
  n.selector = r.u16();
  n.offset = r.u32();
  n.dma_addr = r.u64();
  uint32_t size = r.u32();
  if (n.selector & ~kKeyMask) r.fail("selector has the write bit set");
  auto it = items_.find(n.selector);
  uint32_t here = it == items_.end() ? kNoItem : uint32_t(it->second.data.size());
  if (size != here) {
    auto say = [](uint32_t v) { return v == kNoItem ? std::string("absent") : std::to_string(v) + " bytes"; };
    r.fail("fw_cfg item " + key_name(n.selector) + " is " + say(size) + " in the state file and " + say(here) +
           " on this machine");
  }
  uint32_t count = r.u32();
  std::vector<std::pair<uint16_t, std::vector<uint8_t>>> writes;
  for (uint32_t i = 0; i < count; i++) {
    uint16_t k = r.u16();
    auto w = items_.find(k);
    if (w == items_.end() || !w->second.writable) r.fail("fw_cfg item " + key_name(k) + " is not writable here");
    auto data = r.blob(w->second.data.size());
    if (data.size() != w->second.data.size()) r.fail("fw_cfg item " + key_name(k) + " has another size here");
    writes.emplace_back(k, std::move(data));
  }
  r.finish();
  s = n;
  for (auto& [k, d] : writes) items_[k].data = std::move(d);
}

// ---------------------------------------------------------------- helpers

namespace fwcfg {

std::vector<uint8_t> le16(uint16_t v) { return {uint8_t(v), uint8_t(v >> 8)}; }
std::vector<uint8_t> le32(uint32_t v) { return {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)}; }
std::vector<uint8_t> le64(uint64_t v) {
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; i++) b[i] = uint8_t(v >> (8 * i));
  return b;
}

std::vector<uint8_t> e820_bytes(const std::vector<E820Entry>& entries) {
  std::vector<uint8_t> out;
  out.reserve(entries.size() * 20);
  for (auto& e : entries) {
    auto a = le64(e.addr), l = le64(e.len), t = le32(e.type);
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), l.begin(), l.end());
    out.insert(out.end(), t.begin(), t.end());
  }
  return out;
}

std::string pci_device_path(const std::string& devname, int slot, int fn) {
  char buf[96];
  if (fn) {
    std::snprintf(buf, sizeof buf, "/pci@i0cf8/%s@%x,%x", devname.c_str(), slot, fn);
  } else {
    std::snprintf(buf, sizeof buf, "/pci@i0cf8/%s@%x", devname.c_str(), slot);
  }
  return buf;
}

std::string ide_path(int slot, int fn, int channel, int unit) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "/drive@%x/disk@%x", channel, unit);
  return pci_device_path("ide", slot, fn) + buf;
}

std::string floppy_path(int isa_slot, int isa_fn, int drive) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "/fdc@%04x/floppy@%x", 0x3f0, drive);
  return pci_device_path("isa", isa_slot, isa_fn) + buf;
}

std::vector<uint8_t> bootorder_bytes(const std::vector<std::string>& paths) {
  std::string s;
  for (size_t i = 0; i < paths.size(); i++) {
    if (i) s += '\n';
    s += paths[i];
  }
  std::vector<uint8_t> out(s.begin(), s.end());
  out.push_back(0);
  return out;
}

void configure_seabios(FwCfg& fw, const SeabiosConfig& c) {
  fw.set_u16(FwCfg::kNbCpus, c.cpus);
  fw.set_u16(FwCfg::kMaxCpus, std::max(c.max_cpus, c.cpus));
  fw.set_u64(FwCfg::kRamSize, c.ram_size);
  fw.set_item(FwCfg::kUuid, std::vector<uint8_t>(c.uuid.begin(), c.uuid.end()));
  fw.set_u16(FwCfg::kNoGraphic, c.nographic ? 1 : 0);
  // NUMA: u64 node count, then max_cpus u64 cpu->node entries, then per-node sizes.
  fw.set_item(FwCfg::kNuma, std::vector<uint8_t>(8 * (1 + size_t(std::max(c.max_cpus, c.cpus))), 0));
  fw.set_u16(FwCfg::kBootMenu, c.boot_menu ? 1 : 0);
  fw.set_item(FwCfg::kIrq0Override, {uint8_t(c.irq0_override ? 1 : 0)});
  fw.set_u16(FwCfg::kAcpiTables, 0);
  fw.set_u16(FwCfg::kSmbiosEntries, 0);
  fw.set_u32(FwCfg::kE820Table, 0);
  fw.add_file("etc/e820", e820_bytes(c.e820));
  if (!c.boot_order.empty()) fw.add_file("bootorder", bootorder_bytes(c.boot_order));
  // SeaBIOS defaults etc/show-boot-menu to 1 and etc/boot-menu-wait to 2500 ms
  // when the files are missing; always say what we mean.
  fw.add_file("etc/show-boot-menu", le16(c.boot_menu ? 1 : 0));
  fw.add_file("etc/boot-menu-wait", le16(c.boot_menu ? c.boot_menu_wait_ms : 0));
  fw.add_file("etc/boot-fail-wait", le32(c.boot_fail_wait_ms));
}

}  // namespace fwcfg
}  // namespace vireo
