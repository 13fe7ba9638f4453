// Intel 82540EM ("e1000"). See e1000.h. Section numbers are those of Intel's
// "PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
// Manual" (317453): 3.2 receive descriptors, 3.3 transmit descriptors and
// TCP segmentation, 5 EEPROM, 8 registers (13 in later revisions), 13.7
// statistics. QEMU's hw/net/e1000.c was read to see what drivers rely on; no
// code was taken from it.
#include "devices/net/e1000.h"

#include "machine/state.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace vireo::e1000 {

namespace {

// Ones'-complement sum of big-endian 16-bit words (RFC 1071), unfolded.
uint32_t csum_add(const uint8_t* p, size_t len, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t(p[i]) << 8 | p[i + 1];
  if (len & 1) sum += uint32_t(p[len - 1]) << 8;
  return sum;
}
uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}
uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
void put_be16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (24 - 8 * i));
}
uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint64_t le64(const uint8_t* p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }

// IEEE 802.3 FCS: CRC-32, reflected polynomial 0xEDB88320, sent low byte first.
uint32_t crc32_ieee(const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return ~c;
}

constexpr size_t kMinRxFrame = 60;          // shorter frames are padded, as the wire's 64-byte minimum
constexpr size_t kMaxStdFrame = 1522;       // with FCS and a VLAN tag; longer needs RCTL.LPE
constexpr size_t kMaxLongFrame = 16384;     // with LPE
constexpr size_t kMaxTxPacket = 16384;      // 3.3.1: a packet without TSO is at most 16288 bytes
constexpr size_t kMaxTsoPacket = 65536 + 256;  // header + 64 KiB of payload (Linux's GSO limit)
// A guest's MSS of 1 would make 64 K frames of one packet; Linux's smallest
// MSS (48) makes at most 1366, so more than this many is refused.
constexpr size_t kMaxTsoSegments = 2048;
constexpr uint32_t kVet = 0x0038;
constexpr uint16_t kEthIpv4 = 0x0800;
// PHY registers (IEEE 802.3 clause 22 + M88E1011 specific).
constexpr int kBmcr = 0, kBmsr = 1, kPhyIdr1 = 2, kPhyIdr2 = 3, kAnar = 4, kAnlpar = 5, kAner = 6, k1000Ctrl = 9,
              k1000Stat = 10, kExtStat = 15, kM88Pscr = 16, kM88Pssr = 17;
// Word offsets in the EEPROM (5.6, table 5-2).
constexpr int kEeInitCtrl1 = 0x0a, kEeSubsysId = 0x0b, kEeSubsysVendor = 0x0c, kEeDeviceId = 0x0d, kEeVendorId = 0x0e,
              kEeInitCtrl2 = 0x0f, kEeChecksum = 0x3f;

}  // namespace

// BAR0: the registers. 32-bit accesses are the rule; narrower ones read or
// merge into the dword, 64-bit ones are two dwords.
class E1000::Mmio : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the E1000
  explicit Mmio(E1000& d) : d_(d) {}
  void read(uint64_t off, std::span<uint8_t> data) override {
    uint64_t v = 0;
    uint32_t base = uint32_t(off & ~3ull);
    uint32_t lo = d_.read_reg(base);
    v = lo;
    if (data.size() == 8) v |= uint64_t(d_.read_reg(base + 4)) << 32;
    u64_to_span(v >> (8 * (off & 3)), data);
  }
  void write(uint64_t off, std::span<const uint8_t> data) override {
    uint64_t v = span_to_u64(data);
    uint32_t base = uint32_t(off & ~3ull);
    if (data.size() == 8) {
      d_.write_reg(base, uint32_t(v));
      d_.write_reg(base + 4, uint32_t(v >> 32));
      return;
    }
    if (data.size() == 4 && (off & 3) == 0) {
      d_.write_reg(base, uint32_t(v));
      return;
    }
    // Narrow write: merge into the stored value (no read side effects).
    uint32_t cur;
    {
      std::lock_guard g(d_.mu_);
      cur = base / 4 < d_.regs_.size() ? d_.regs_[base / 4] : 0;
    }
    unsigned shift = unsigned(8 * (off & 3));
    uint32_t mask = data.size() >= 4 ? 0xffffffffu : ((1u << (8 * data.size())) - 1);
    cur = (cur & ~(mask << shift)) | ((uint32_t(v) & mask) << shift);
    d_.write_reg(base, cur);
  }

private:
  E1000& d_;
};

// BAR1: IOADDR (0) selects a register, IODATA (4) reads or writes it (13.2.2).
class E1000::Io : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the E1000
  explicit Io(E1000& d) : d_(d) {}
  void read(uint64_t off, std::span<uint8_t> data) override {
    uint32_t v = 0xffffffffu;
    if (off == 0 && data.size() == 4) {
      std::lock_guard g(d_.mu_);
      v = d_.ioaddr_;
    } else if (off == 4 && data.size() == 4) {
      uint32_t a;
      {
        std::lock_guard g(d_.mu_);
        a = d_.ioaddr_;
      }
      v = d_.read_reg(a & 0x1fffc);
    }
    u64_to_span(v, data);
  }
  void write(uint64_t off, std::span<const uint8_t> data) override {
    if (data.size() != 4) return;
    uint32_t v = uint32_t(span_to_u64(data));
    if (off == 0) {
      std::lock_guard g(d_.mu_);
      d_.ioaddr_ = v;
    } else if (off == 4) {
      uint32_t a;
      {
        std::lock_guard g(d_.mu_);
        a = d_.ioaddr_;
      }
      d_.write_reg(a & 0x1fffc, v);
    }
  }

private:
  E1000& d_;
};

E1000::E1000(std::shared_ptr<net::NetBackend> backend, GuestMemory* mem, Options opt)
    : backend_(std::move(backend)), mem_(mem), opt_(opt), regs_(kMmioSize / 4, 0) {
  set_ids(kVendor, kDevice, 0x020000, 3, 0x1af4, 0x1100);
  set_interrupt_pin(1);
  add_bar(0, kMmioSize, pci::BarKind::Mem32, std::make_shared<Mmio>(*this));
  add_bar(1, kIoSize, pci::BarKind::Io, std::make_shared<Io>(*this));
  name = "e1000";
  link_up_ = opt_.link_up;

  // EEPROM image (5.6): MAC, the initialization control words Linux reads,
  // the PCI IDs it would load, checksum word making the sum 0xBABA.
  for (int i = 0; i < 3; i++) eeprom_[size_t(i)] = uint16_t(opt_.mac[size_t(2 * i)] | opt_.mac[size_t(2 * i + 1)] << 8);
  eeprom_[kEeInitCtrl1] = 0x4000 | 0x0400 | 0x0008;  // signature 01b, FRCSPD... ILOS 0, load subsystem IDs
  eeprom_[kEeSubsysId] = 0x1100;
  eeprom_[kEeSubsysVendor] = 0x1af4;
  eeprom_[kEeDeviceId] = kDevice;
  eeprom_[kEeVendorId] = kVendor;
  eeprom_[kEeInitCtrl2] = 0x3000;  // advertise PAUSE and ASM_DIR
  uint16_t sum = 0;
  for (int i = 0; i < kEeChecksum; i++) sum = uint16_t(sum + eeprom_[size_t(i)]);
  eeprom_[kEeChecksum] = uint16_t(kEepromChecksum - sum);

  std::lock_guard g(mu_);
  reset_locked();
}

E1000::~E1000() { quiesce(); }

void E1000::start() {
  backend_->start([this](std::span<const uint8_t> f) { receive(f); });
}

void E1000::quiesce() {
  if (backend_) backend_->stop();
}

void E1000::set_paused(bool paused) {
  std::lock_guard g(mu_);
  if (paused_ == paused) return;
  paused_ = paused;
  if (!paused_ && !fifo_.empty()) {
    bool had_room = rx_free() > 0;
    flush_rx();
    if (!fifo_.empty() && !had_room) stat_add(reg::RNBC);
  }
}

void E1000::reset() {
  std::lock_guard g(mu_);
  reset_locked();
  update_irq();
}

void E1000::phy_reset() {
  phy_ = {};
  phy_[kBmcr] = kBmcrAnEnable | 0x0100 | 0x0040;  // autoneg, full duplex, 1000 Mb/s
  phy_[kPhyIdr1] = kPhyId1;
  phy_[kPhyIdr2] = kPhyId2;
  phy_[kAnar] = 0x0de1;      // pause, asym pause, 100/10 full/half, 802.3
  phy_[k1000Ctrl] = 0x0300;  // advertise 1000 full/half
  phy_[kExtStat] = 0x3000;   // 1000BASE-T full/half capable
  phy_[kM88Pscr] = 0x0068;
  bool up = link_up_;
  phy_[kBmsr] = 0x7949 | (up ? kBmsrLink | kBmsrAnComplete : 0);
  phy_[kAnlpar] = up ? 0x45e1 : 0;
  phy_[kAner] = up ? 0x0001 : 0;
  phy_[k1000Stat] = up ? 0x3c00 : 0;
  phy_[kM88Pssr] = up ? 0xbc00 : 0;  // 1000 Mb/s, full duplex, resolved, link
}

void E1000::reset_locked() {
  std::fill(regs_.begin(), regs_.end(), 0);
  stats_ = {};
  regs_[reg::CTRL / 4] = kCtrlFd | kCtrlSlu | (2u << 8);  // 1000 Mb/s
  regs_[reg::PBA / 4] = 0x30;                            // 48 KiB receive, 16 KiB transmit
  regs_[reg::RXCSUM / 4] = kRxcsumIpofld | kRxcsumTuofld;
  regs_[kVet / 4] = 0x8100;
  // RAL0/RAH0 are loaded from the EEPROM after reset (5.6.1).
  regs_[reg::RA / 4] = le32(opt_.mac.data());
  regs_[reg::RA / 4 + 1] = uint32_t(le16(opt_.mac.data() + 4)) | kRahAv;
  eecd_ = 0;
  ee_bits_ = 0;
  ee_cmd_ = 0;
  ioaddr_ = 0;
  fifo_.clear();
  ctx_ = {};
  tx_ = {};
  phy_reset();
}

net::NicCounters E1000::counters() const {
  net::NicCounters n;
  n.rx_packets = c_.rx_packets;
  n.rx_bytes = c_.rx_bytes;
  n.rx_dropped = c_.rx_dropped;
  n.tx_packets = c_.tx_packets;
  n.tx_bytes = c_.tx_bytes;
  n.tx_dropped = c_.tx_dropped;
  n.tx_malformed = c_.tx_malformed;
  n.rx_bad_buffers = c_.rx_bad_buffers;
  return n;
}

void E1000::set_link(bool up) {
  std::lock_guard g(mu_);
  if (link_up_.exchange(up) == up) return;
  if (!up) {
    c_.rx_dropped += fifo_.size();
    fifo_.clear();
  }
  uint16_t keep_ctrl = phy_[kBmcr], keep_anar = phy_[kAnar], keep_1000 = phy_[k1000Ctrl], keep_pscr = phy_[kM88Pscr];
  phy_reset();  // recomputes the link-dependent PHY registers
  phy_[kBmcr] = keep_ctrl;
  phy_[kAnar] = keep_anar;
  phy_[k1000Ctrl] = keep_1000;
  phy_[kM88Pscr] = keep_pscr;
  set_cause(kIcrLsc);  // STATUS.LU follows link_up_
}

// ------------------------------------------------------------ interrupts

void E1000::update_irq() {
  set_intx((regs_[reg::ICR / 4] & regs_[reg::IMS / 4]) != 0);
}

void E1000::set_cause(uint32_t bits) {
  regs_[reg::ICR / 4] |= bits;
  update_irq();
}

// ------------------------------------------------------------ EEPROM (5.3, Microwire)

uint32_t E1000::eecd_read() const {
  uint32_t v = (eecd_ & (kEecdSk | kEecdCs | kEecdDi | kEecdReq | 0x30)) | kEecdPres;
  if (eecd_ & kEecdReq) v |= kEecdGnt;
  // READ is start bit + opcode 10b, then 6 address bits; data comes out MSB
  // first on the rising clock edges after that (a 64-word 93C46 part).
  if ((eecd_ & kEecdCs) && ee_bits_ > 9 && (ee_cmd_ >> 6) == 0x6) {
    int idx = ee_bits_ - 10;
    int word = int((ee_cmd_ & 0x3f) + uint32_t(idx / 16)) % kEepromWords;
    if ((eeprom_[size_t(word)] >> (15 - idx % 16)) & 1) v |= kEecdDo;
  }
  return v;
}

void E1000::eecd_write(uint32_t v) {
  uint32_t old = eecd_;
  eecd_ = v;
  if (!(v & kEecdCs)) {  // deselected: the part goes back to waiting for a start bit
    ee_bits_ = 0;
    ee_cmd_ = 0;
    return;
  }
  if (!(old & kEecdSk) && (v & kEecdSk)) {  // rising clock
    if (ee_bits_ < 9) ee_cmd_ = (ee_cmd_ << 1) | ((v & kEecdDi) ? 1 : 0);
    if (ee_bits_ < 10 + 16 * kEepromWords) ee_bits_++;
  }
}

// ------------------------------------------------------------ PHY through MDIC (8.2.4)

void E1000::mdic_write(uint32_t v) {
  int phy = int((v >> 21) & 0x1f), r = int((v >> 16) & 0x1f);
  uint32_t op = v & (3u << 26);
  uint32_t out = v & ~(kMdicReady | kMdicError);
  if (phy != kPhyAddr || (op != kMdicOpRead && op != kMdicOpWrite)) {
    out |= kMdicError;
  } else if (op == kMdicOpRead) {
    out = (out & ~0xffffu) | phy_[size_t(r)];
  } else {
    uint16_t d = uint16_t(v);
    switch (r) {
      case kBmcr:
        if (d & kBmcrReset) {
          phy_reset();
        } else {
          phy_[kBmcr] = uint16_t(d & ~kBmcrAnRestart);  // restart completes at once
        }
        break;
      case kBmsr: case kPhyIdr1: case kPhyIdr2: case kAnlpar: case kAner: case k1000Stat: case kExtStat:
      case kM88Pssr:
        break;  // read-only
      default:
        phy_[size_t(r)] = d;
    }
  }
  regs_[reg::MDIC / 4] = out | kMdicReady;
  if (v & kMdicIe) set_cause(kIcrMdac);
}

// ------------------------------------------------------------ statistics (13.7)

uint32_t E1000::stats_read(uint32_t off) {
  size_t i = (off - reg::STATS) / 4;
  auto pair_lo = [](uint32_t o) { return o == reg::GORCL || o == reg::GOTCL || o == reg::TORL || o == reg::TOTL; };
  auto pair_hi = [](uint32_t o) { return o == reg::GORCH || o == reg::GOTCH || o == reg::TORH || o == reg::TOTH; };
  if (pair_lo(off)) return uint32_t(stats_[i]);
  if (pair_hi(off)) {  // reading the high half clears the pair
    uint32_t v = uint32_t(stats_[i - 1] >> 32);
    stats_[i - 1] = 0;
    return v;
  }
  uint32_t v = uint32_t(std::min<uint64_t>(stats_[i], 0xffffffffu));
  stats_[i] = 0;
  return v;
}

void E1000::stat_add(uint32_t off, uint64_t n) { stats_[(off - reg::STATS) / 4] += n; }
void E1000::stat_add64(uint32_t lo, uint64_t n) { stats_[(lo - reg::STATS) / 4] += n; }

// ------------------------------------------------------------ registers

uint32_t E1000::read_reg(uint32_t off) {
  std::lock_guard g(mu_);
  off &= ~3u;
  if (off >= kMmioSize) return 0;
  switch (off) {
    case reg::STATUS:
      return (link_up_ ? kStatusLu | kStatusFd | kStatusSpeed1000 : 0) | (2u << 8) /* ASDV 1000 */;
    case reg::EECD:
      return eecd_read();
    case reg::ICR: {  // read-to-clear
      uint32_t v = regs_[off / 4];
      regs_[off / 4] = 0;
      update_irq();
      return v;
    }
    case reg::ICS: case reg::IMC:
      return 0;  // write-only
    default:
      break;
  }
  if (off >= reg::STATS && off < reg::STATS_END) return stats_read(off);
  return regs_[off / 4];
}

void E1000::write_reg(uint32_t off, uint32_t v) {
  std::lock_guard g(mu_);
  off &= ~3u;
  if (off >= kMmioSize) return;
  uint32_t& r = regs_[off / 4];
  switch (off) {
    case reg::CTRL:
      if (v & kCtrlRst) {  // 8.2.1: a software reset; the bit clears itself
        reset_locked();
        update_irq();
        return;
      }
      if ((v & kCtrlPhyRst) && !(r & kCtrlPhyRst)) phy_reset();
      r = v;
      return;
    case reg::STATUS:
      return;
    case reg::EECD:
      eecd_write(v);
      return;
    case reg::EERD:
      if (v & kEerdStart) {
        uint32_t a = (v >> 8) & 0xff;
        uint16_t w = a < kEepromWords ? eeprom_[a] : 0;
        r = uint32_t(w) << 16 | a << 8 | kEerdDone;
      } else {
        r = v & ~kEerdDone;
      }
      return;
    case reg::MDIC:
      mdic_write(v);
      return;
    case reg::ICR:  // write 1 to clear
      r &= ~v;
      update_irq();
      return;
    case reg::ICS:
      set_cause(v);
      return;
    case reg::IMS:
      r |= v;
      update_irq();
      return;
    case reg::IMC:
      regs_[reg::IMS / 4] &= ~v;
      update_irq();
      return;
    case reg::RCTL: {
      bool was = r & kRctlEn;
      r = v;
      if (!(v & kRctlEn)) {
        c_.rx_dropped += fifo_.size();
        fifo_.clear();
      } else if (!was) {
        flush_rx();
      }
      return;
    }
    case reg::TCTL:
      r = v;
      if (v & kTctlEn) transmit();
      return;
    case reg::RDBAL: case reg::TDBAL:
      r = v & ~0xfu;
      return;
    case reg::RDLEN: case reg::TDLEN:
      r = v & 0xfff80;  // 128-byte multiples, at most 64 K descriptors' worth of bits
      return;
    case reg::RDH: case reg::TDH:
      r = v & 0xffff;
      return;
    case reg::RDT:
      r = v & 0xffff;
      flush_rx();
      return;
    case reg::TDT:
      r = v & 0xffff;
      transmit();
      return;
    default:
      break;
  }
  if (off >= reg::STATS && off < reg::STATS_END) return;  // read-only counters
  r = v;
}

// ------------------------------------------------------------ receive (3.2)

bool E1000::accept(std::span<const uint8_t> f) const {
  uint32_t rctl = regs_[reg::RCTL / 4];
  const uint8_t* d = f.data();
  if ((rctl & kRctlVfe) && be16(d + 12) == uint16_t(regs_[kVet / 4])) {  // 802.1Q tag: VLAN filter table
    if (f.size() < 16) return false;  // a tag type with no tag after it (a 14- or 15-byte frame): malformed
    uint16_t vid = be16(d + 14) & 0xfff;
    if (!((regs_[reg::VFTA / 4 + vid / 32] >> (vid % 32)) & 1)) return false;
  }
  static const uint8_t kBcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  if (std::memcmp(d, kBcast, 6) == 0) return (rctl & kRctlBam) || (rctl & kRctlMpe);
  if (d[0] & 1) {
    if (rctl & kRctlMpe) return true;
    // Multicast table: 12 bits of the address chosen by RCTL.MO (8.2.9).
    int mo = int((rctl >> 12) & 3);
    static const int shift[4] = {4, 3, 2, 0};
    uint32_t h = ((uint32_t(d[4]) >> shift[mo]) | (uint32_t(d[5]) << (8 - shift[mo]))) & 0xfff;
    return (regs_[reg::MTA / 4 + h / 32] >> (h % 32)) & 1;
  }
  if (rctl & kRctlUpe) return true;
  for (int i = 0; i < 16; i++) {
    uint32_t lo = regs_[reg::RA / 4 + 2 * i], hi = regs_[reg::RA / 4 + 2 * i + 1];
    if (!(hi & kRahAv)) continue;
    uint8_t a[6] = {uint8_t(lo), uint8_t(lo >> 8), uint8_t(lo >> 16), uint8_t(lo >> 24), uint8_t(hi), uint8_t(hi >> 8)};
    if (std::memcmp(a, d, 6) == 0) return true;
  }
  return false;
}

uint32_t E1000::rx_ring_size() const { return regs_[reg::RDLEN / 4] / 16; }

uint32_t E1000::rx_free() const {
  uint32_t n = rx_ring_size();
  if (!n) return 0;
  return (regs_[reg::RDT / 4] + n - regs_[reg::RDH / 4]) % n;
}

uint32_t E1000::rx_buf_size() const {
  uint32_t rctl = regs_[reg::RCTL / 4];
  uint32_t bs = (rctl >> 16) & 3;
  if (rctl & kRctlBsex) return bs == 0 ? 2048 : 16384u >> (bs - 1);  // 00 is reserved: read as 2048
  return 2048u >> bs;
}

void E1000::receive(std::span<const uint8_t> frame) {
  std::lock_guard g(mu_);
  if (frame.size() < net::kMinFrame || frame.size() > net::kMaxFrame || !link_up_ ||
      !(regs_[reg::RCTL / 4] & kRctlEn)) {
    c_.rx_dropped++;
    return;
  }
  if (!accept(frame)) return;  // not for this station: filtered, as on the wire
  size_t wire = std::max(frame.size(), kMinRxFrame) + 4;
  if (wire > ((regs_[reg::RCTL / 4] & kRctlLpe) ? kMaxLongFrame : kMaxStdFrame)) {
    stat_add(reg::ROC);
    c_.rx_dropped++;
    return;
  }
  if (fifo_.size() >= opt_.rx_fifo) {  // the packet buffer is full: missed
    stat_add(reg::MPC);
    c_.rx_dropped++;
    if (!paused_) set_cause(kIcrRxo);
    return;
  }
  fifo_.emplace_back(frame.begin(), frame.end());
  if (paused_) return;  // delivered by set_paused(false)
  bool had_room = fifo_.size() == 1 && rx_free() > 0;
  flush_rx();
  if (!fifo_.empty() && !had_room) stat_add(reg::RNBC);
}

void E1000::flush_rx() {
  if (!(regs_[reg::RCTL / 4] & kRctlEn) || !link_up_) return;
  if (!fifo_.empty() && !bus_master()) return;
  bool any = false;
  while (!fifo_.empty()) {
    Rx r = deliver(fifo_.front());
    if (r == Rx::NoDescriptors) break;
    any |= r == Rx::Done;
    fifo_.pop_front();
  }
  if (any) {
    uint32_t n = rx_ring_size();
    int rdmts = std::min(int((regs_[reg::RCTL / 4] >> 8) & 3), 2);
    uint32_t causes = kIcrRxt0;
    if (rx_free() <= (n >> (1 + rdmts))) causes |= kIcrRxdmt0;
    set_cause(causes);
  }
}

E1000::Rx E1000::deliver(const std::vector<uint8_t>& in) {
  uint32_t n = rx_ring_size();
  uint32_t& rdh = regs_[reg::RDH / 4];
  uint32_t rdt = regs_[reg::RDT / 4];
  uint64_t base = uint64_t(regs_[reg::RDBAH / 4]) << 32 | regs_[reg::RDBAL / 4];
  if (n == 0 || rdh >= n || rdt >= n || !mem_->ptr(base, uint64_t(n) * 16)) {
    // No usable ring (zero length, head/tail past it, outside RAM): dropped.
    c_.rx_bad_buffers++;
    c_.rx_dropped++;
    return Rx::Dropped;
  }
  // The frame as the MAC hands it up: padded to 60 bytes, FCS appended
  // unless RCTL.SECRC strips it.
  std::vector<uint8_t> f(in);
  if (f.size() < kMinRxFrame) f.resize(kMinRxFrame, 0);
  size_t data_len = f.size();
  if (!(regs_[reg::RCTL / 4] & kRctlSecrc)) {
    uint32_t fcs = crc32_ieee(f.data(), f.size());
    for (int i = 0; i < 4; i++) f.push_back(uint8_t(fcs >> (8 * i)));
  }
  uint32_t bsize = rx_buf_size();
  uint32_t need = uint32_t((f.size() + bsize - 1) / bsize);
  if (rx_free() < need) return Rx::NoDescriptors;

  // Checksum offload status (3.2.4 / 8.2.13 RXCSUM).
  uint8_t status = kRxdStaIxsm, errors = 0;
  uint32_t rxcsum = regs_[reg::RXCSUM / 4];
  const uint8_t* d = f.data();
  if (data_len >= 34 && be16(d + 12) == kEthIpv4 && (d[14] >> 4) == 4 && (rxcsum & (kRxcsumIpofld | kRxcsumTuofld))) {
    size_t ihl = size_t(d[14] & 0xf) * 4, tot = be16(d + 16);
    if (ihl >= 20 && 14 + ihl <= data_len && tot >= ihl && 14 + tot <= data_len) {
      status = 0;
      if (rxcsum & kRxcsumIpofld) {
        status |= kRxdStaIpcs;
        if (csum_fold(csum_add(d + 14, ihl)) != 0xffff) errors |= kRxdErrIpe;
      }
      uint8_t proto = d[23];
      bool frag = (be16(d + 20) & 0x3fff) != 0;
      if ((rxcsum & kRxcsumTuofld) && !frag && (proto == 6 || proto == 17)) {
        size_t l4 = 14 + ihl, l4len = tot - ihl;
        bool udp_nocsum = proto == 17 && l4len >= 8 && be16(d + l4 + 6) == 0;
        if (l4len >= (proto == 6 ? 20u : 8u) && !udp_nocsum) {
          status |= kRxdStaTcpcs;
          uint32_t ps = csum_add(d + 26, 8) + proto + uint32_t(l4len);
          if (csum_fold(csum_add(d + l4, l4len, ps)) != 0xffff) errors |= kRxdErrTcpe;
        }
      }
      if (!status) status = kRxdStaIxsm;
    }
  }
  size_t pcss = rxcsum & 0xff;
  uint16_t pcsum = pcss < data_len ? csum_fold(csum_add(d + pcss, data_len - pcss)) : 0;

  size_t off = 0;
  bool ok = true;
  while (off < f.size()) {
    uint64_t da = base + uint64_t(rdh) * 16;
    uint8_t desc[16];
    mem_->read(da, desc, 16);
    uint64_t buf = le64(desc);
    size_t chunk = std::min<size_t>(bsize, f.size() - off);
    bool last = off + chunk == f.size();
    uint8_t wb[8] = {};
    if (!mem_->write(buf, f.data() + off, chunk)) {
      // The guest's buffer is outside RAM: the descriptor comes back with
      // an error and the rest of the frame is dropped.
      c_.rx_bad_buffers++;
      wb[5] = kRxdErrRxe;
      wb[4] = kRxdStaDd | kRxdStaEop;
      ok = false;
    } else {
      wb[0] = uint8_t(chunk);
      wb[1] = uint8_t(chunk >> 8);
      wb[2] = uint8_t(pcsum);
      wb[3] = uint8_t(pcsum >> 8);
      wb[4] = uint8_t(kRxdStaDd | (last ? kRxdStaEop | status : 0));
      wb[5] = last ? errors : 0;
    }
    // Length, checksum, errors, special first; the status byte (DD) last.
    uint8_t* p = mem_->ptr(da + 8, 8);
    std::memcpy(p, wb, 4);
    std::memcpy(p + 5, wb + 5, 3);
    std::atomic_thread_fence(std::memory_order_release);
    std::atomic_ref<uint8_t>(p[4]).store(wb[4], std::memory_order_release);
    rdh = (rdh + 1) % n;
    if (!ok) break;
    off += chunk;
  }
  if (!ok) {
    c_.rx_dropped++;
    return Rx::Dropped;
  }
  // Statistics count the frame as received on the wire (with FCS).
  uint64_t wire = std::max(data_len, kMinRxFrame) + 4;
  stat_add(reg::TPR);
  stat_add(reg::GPRC);
  stat_add64(reg::TORL, wire);
  stat_add64(reg::GORCL, wire);
  if (std::all_of(d, d + 6, [](uint8_t b) { return b == 0xff; })) stat_add(reg::BPRC);
  else if (d[0] & 1) stat_add(reg::MPRC);
  static const uint64_t bucket[] = {64, 127, 255, 511, 1023, 1522};
  for (int i = 0; i < 6; i++) {
    if (wire <= bucket[i] || i == 5) {
      if (wire <= 1522) stat_add(reg::PRC64 + 4 * uint32_t(i));
      break;
    }
  }
  c_.rx_packets++;
  c_.rx_bytes += in.size();
  return Rx::Done;
}

// ------------------------------------------------------------ transmit (3.3)

void E1000::transmit() {
  if (!(regs_[reg::TCTL / 4] & kTctlEn)) return;
  uint32_t n = regs_[reg::TDLEN / 4] / 16;
  uint32_t& tdh = regs_[reg::TDH / 4];
  uint32_t tdt = regs_[reg::TDT / 4];
  if (tdh == tdt) return;
  uint64_t base = uint64_t(regs_[reg::TDBAH / 4]) << 32 | regs_[reg::TDBAL / 4];
  if (n == 0 || tdh >= n || tdt >= n || !mem_->ptr(base, uint64_t(n) * 16)) {
    c_.tx_malformed++;  // no usable ring: nothing is sent until the guest fixes it
    return;
  }
  if (!bus_master()) return;
  uint32_t causes = 0;
  // At most one ring's worth per doorbell: the loop always ends.
  for (uint32_t budget = n; tdh != tdt && budget; budget--) {
    uint64_t da = base + uint64_t(tdh) * 16;
    uint8_t desc[16];
    mem_->read(da, desc, 16);
    uint64_t addr = le64(desc);
    uint32_t w2 = le32(desc + 8), w3 = le32(desc + 12);
    uint8_t cmd = uint8_t(w2 >> 24);
    auto gather = [&](uint64_t a, size_t len, bool first) {
      if (first) tx_.data.clear();
      size_t limit = tx_.tse ? kMaxTsoPacket : kMaxTxPacket;
      if (tx_.bad || len == 0) return;
      const uint8_t* p = mem_->ptr(a, len);
      if (!p || tx_.data.size() + len > limit) {
        tx_.bad = true;
        return;
      }
      tx_.data.insert(tx_.data.end(), p, p + len);
    };
    if (cmd & kTxdCmdDext) {
      uint32_t dtyp = (w2 >> 20) & 0xf;
      if (dtyp == kDtypContext) {  // 3.3.6: TCP/IP context descriptor
        ctx_.ipcss = desc[0];
        ctx_.ipcso = desc[1];
        ctx_.ipcse = le16(desc + 2);
        ctx_.tucss = desc[4];
        ctx_.tucso = desc[5];
        ctx_.tucse = le16(desc + 6);
        ctx_.paylen = w2 & 0xfffff;
        ctx_.tucmd = cmd;
        ctx_.hdrlen = uint8_t(w3 >> 8);
        ctx_.mss = uint16_t(w3 >> 16);
        if (cmd & kTxdCmdTse) stat_add(reg::TSCTC);
      } else if (dtyp == kDtypData) {  // 3.3.7: TCP/IP data descriptor
        bool first = tx_.first;
        if (first) {
          tx_.first = false;
          tx_.legacy = false;
          tx_.bad = false;
          tx_.tse = cmd & kTxdCmdTse;
          tx_.popts = uint8_t(w3 >> 8);
        }
        gather(addr, w2 & 0xfffff, first);
        if (cmd & kTxdCmdEop) tx_packet();
      } else {
        c_.tx_malformed++;  // reserved descriptor type: skipped
      }
    } else {  // 3.3.3: legacy descriptor
      bool first = tx_.first;
      if (first) {
        tx_.first = false;
        tx_.legacy = true;
        tx_.bad = false;
        tx_.tse = false;
      }
      gather(addr, w2 & 0xffff, first);
      if (cmd & kTxdCmdEop) {
        tx_.cso = uint8_t(w2 >> 16);
        tx_.css = uint8_t(w3 >> 8);
        tx_.cmd = cmd;
        tx_packet();
      }
    }
    if (cmd & kTxdCmdRs) {  // report status: DD in the descriptor's status byte
      uint8_t* p = mem_->ptr(da + 12, 1);
      std::atomic_thread_fence(std::memory_order_release);
      std::atomic_ref<uint8_t>(*p).store(uint8_t(*p | kTxdStaDd), std::memory_order_release);
      causes |= kIcrTxdw;
    }
    tdh = (tdh + 1) % n;
  }
  if (tdh == tdt) causes |= kIcrTxqe;
  if (causes) set_cause(causes);
}

void E1000::tx_send(const std::vector<uint8_t>& f) {
  if (!link_up_) {
    c_.tx_dropped++;
    return;
  }
  uint64_t wire = std::max<size_t>(f.size(), kMinRxFrame) + 4;
  stat_add(reg::TPT);
  stat_add64(reg::TOTL, wire);
  if (!backend_->send(f)) {
    c_.tx_dropped++;
    return;
  }
  stat_add(reg::GPTC);
  stat_add64(reg::GOTCL, wire);
  if (std::all_of(f.begin(), f.begin() + 6, [](uint8_t b) { return b == 0xff; })) stat_add(reg::BPTC);
  else if (f[0] & 1) stat_add(reg::MPTC);
  c_.tx_packets++;
  c_.tx_bytes += f.size();
}

void E1000::tx_packet() {
  TxState t = std::move(tx_);
  tx_ = {};
  std::vector<uint8_t>& p = t.data;
  if (t.bad || p.size() < net::kMinFrame) {
    c_.tx_malformed++;
    return;
  }
  if (t.legacy) {
    // 3.3.3.1: with IC, sum from CSS to the end and store at CSO.
    if (t.cmd & kTxdCmdIc) {
      if (t.css >= p.size() || size_t(t.cso) + 2 > p.size()) {
        c_.tx_malformed++;
        return;
      }
      put_be16(p.data() + t.cso, uint16_t(~csum_fold(csum_add(p.data() + t.css, p.size() - t.css))));
    }
    tx_send(p);
    return;
  }
  if (!t.tse) {
    if (!tx_segment(p, t.popts, false)) c_.tx_malformed++;
    return;
  }
  // 3.5: TCP segmentation. The first HDRLEN bytes are the header template,
  // the rest is cut into MSS-byte payloads, each sent behind a fixed-up copy.
  const TxContext& c = ctx_;
  bool tcp = c.tucmd & kTucmdTcp, ip4 = c.tucmd & kTucmdIp;
  size_t hl = c.hdrlen;
  if (hl < net::kEthHeader || hl > p.size() || c.mss == 0 || size_t(c.tucss) + (tcp ? 20 : 8) > hl ||
      size_t(c.ipcss) + (ip4 ? 20 : 40) > hl || size_t(c.tucso) + 2 > hl || (ip4 && size_t(c.ipcso) + 2 > hl)) {
    c_.tx_malformed++;
    return;
  }
  size_t payload = p.size() - hl;
  size_t segs = payload ? (payload + c.mss - 1) / c.mss : 1;
  if (segs > kMaxTsoSegments) {
    c_.tx_malformed++;
    return;
  }
  for (size_t s = 0; s < segs; s++) {
    size_t off = s * c.mss, len = std::min<size_t>(c.mss, payload - off);
    std::vector<uint8_t> f(p.begin(), p.begin() + long(hl));
    f.insert(f.end(), p.begin() + long(hl + off), p.begin() + long(hl + off + len));
    uint8_t* ip = f.data() + c.ipcss;
    uint8_t* l4 = f.data() + c.tucss;
    if (ip4) {
      put_be16(ip + 2, uint16_t(f.size() - c.ipcss));
      put_be16(ip + 4, uint16_t(be16(ip + 4) + s));
    } else {
      put_be16(ip + 4, uint16_t(f.size() - c.ipcss - 40));
    }
    if (tcp) {
      put_be32(l4 + 4, be32(l4 + 4) + uint32_t(off));
      if (s + 1 < segs) l4[13] &= uint8_t(~0x09);  // FIN and PSH only on the last segment
    } else {
      put_be16(l4 + 4, uint16_t(f.size() - c.tucss));
    }
    if (!tx_segment(f, t.popts, true)) {
      c_.tx_malformed++;
      return;
    }
  }
}

bool E1000::tx_segment(std::vector<uint8_t>& f, uint8_t popts, bool tso) {
  const TxContext& c = ctx_;
  if (popts & kPoptsIxsm) {  // IP header checksum over IPCSS..IPCSE (inclusive; 0 = to the end)
    size_t end = c.ipcse ? size_t(c.ipcse) + 1 : f.size();
    if (c.ipcss >= end || end > f.size() || size_t(c.ipcso) + 2 > f.size()) return false;
    f[c.ipcso] = f[size_t(c.ipcso) + 1] = 0;
    put_be16(f.data() + c.ipcso, uint16_t(~csum_fold(csum_add(f.data() + c.ipcss, end - c.ipcss))));
  }
  if (popts & kPoptsTxsm) {  // TCP/UDP checksum over TUCSS..TUCSE, seeded by the driver's pseudo-header sum
    size_t end = c.tucse ? size_t(c.tucse) + 1 : f.size();
    if (c.tucss >= end || end > f.size() || size_t(c.tucso) + 2 > f.size()) return false;
    uint32_t sum = csum_add(f.data() + c.tucss, end - c.tucss);
    if (tso) sum += uint32_t(f.size() - c.tucss);  // the segment's length completes the pseudo header
    put_be16(f.data() + c.tucso, uint16_t(~csum_fold(sum)));
  }
  tx_send(f);
  return true;
}

// ------------------------------------------------------------ saved state

void E1000::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  uint32_t nonzero = 0;
  for (uint32_t v : regs_) nonzero += v != 0;
  w.u32(nonzero);
  for (size_t i = 0; i < regs_.size(); i++) {
    if (!regs_[i]) continue;
    w.u32(uint32_t(i));
    w.u32(regs_[i]);
  }
  for (uint16_t v : eeprom_) w.u16(v);
  for (uint16_t v : phy_) w.u16(v);
  for (uint64_t v : stats_) w.u64(v);
  w.u32(eecd_);
  w.i32(ee_bits_);
  w.u32(ee_cmd_);
  w.u32(ioaddr_);
  w.boolean(link_up_.load());
  w.u32(uint32_t(fifo_.size()));
  for (const auto& f : fifo_) w.blob(f);
  for (uint8_t b : {ctx_.ipcss, ctx_.ipcso, ctx_.tucss, ctx_.tucso, ctx_.tucmd, ctx_.hdrlen}) w.u8(b);
  for (uint16_t v : {ctx_.ipcse, ctx_.tucse, ctx_.mss}) w.u16(v);
  w.u32(ctx_.paylen);
  w.blob(tx_.data);
  for (bool b : {tx_.tse, tx_.legacy, tx_.bad, tx_.first}) w.boolean(b);
  for (uint8_t b : {tx_.popts, tx_.cso, tx_.css, tx_.cmd}) w.u8(b);
}

void E1000::load(state::StateReader& r) {
  if (r.version() != 1) r.fail("unknown version (this Vireo has 1)");
  std::vector<uint32_t> regs(regs_.size(), 0);
  uint32_t nonzero = r.u32();
  if (nonzero > regs.size()) r.fail("more registers than the device has");
  for (uint32_t k = 0, last = 0; k < nonzero; k++) {
    uint32_t i = r.u32();
    if (i >= regs.size() || (k && i <= last)) r.fail("register index " + std::to_string(i) + " out of range or order");
    last = i;
    regs[i] = r.u32();
  }
  std::array<uint16_t, kEepromWords> eeprom;
  for (auto& v : eeprom) v = r.u16();
  uint16_t sum = 0;
  for (uint16_t v : eeprom) sum = uint16_t(sum + v);
  if (sum != 0xbaba) r.fail("the EEPROM checksum is wrong");
  if (eeprom[0] != le16(opt_.mac.data()) || eeprom[1] != le16(opt_.mac.data() + 2) || eeprom[2] != le16(opt_.mac.data() + 4))
    r.fail("the EEPROM holds another MAC address than this card's");
  std::array<uint16_t, 32> phy;
  for (auto& v : phy) v = r.u16();
  std::array<uint64_t, 64> stats;
  for (auto& v : stats) v = r.u64();
  uint32_t eecd = r.u32();
  int32_t ee_bits = r.i32();
  if (ee_bits < 0 || ee_bits > 10 + 16 * kEepromWords) r.fail("the EEPROM clock count is out of range");
  uint32_t ee_cmd = r.u32();
  if (ee_cmd >> 9) r.fail("the EEPROM command has more than 9 bits");
  uint32_t ioaddr = r.u32();
  bool link = r.boolean();
  uint32_t nf = r.u32();
  if (nf > opt_.rx_fifo) r.fail(std::to_string(nf) + " frames waiting, at most " + std::to_string(opt_.rx_fifo));
  std::deque<std::vector<uint8_t>> fifo;
  for (uint32_t i = 0; i < nf; i++) {
    fifo.push_back(r.blob(kMaxLongFrame));
    if (fifo.back().size() < net::kMinFrame) r.fail("a waiting frame is shorter than an Ethernet header");
  }
  TxContext ctx;
  for (uint8_t* b : {&ctx.ipcss, &ctx.ipcso, &ctx.tucss, &ctx.tucso, &ctx.tucmd, &ctx.hdrlen}) *b = r.u8();
  for (uint16_t* v : {&ctx.ipcse, &ctx.tucse, &ctx.mss}) *v = r.u16();
  ctx.paylen = r.u32();
  TxState tx;
  tx.data = r.blob(kMaxTsoPacket);
  for (bool* b : {&tx.tse, &tx.legacy, &tx.bad, &tx.first}) *b = r.boolean();
  for (uint8_t* b : {&tx.popts, &tx.cso, &tx.css, &tx.cmd}) *b = r.u8();
  if (!tx.tse && tx.data.size() > kMaxTxPacket) r.fail("the packet being gathered is longer than a packet without TSO");
  r.finish();
  std::lock_guard g(mu_);
  regs_ = std::move(regs);
  eeprom_ = eeprom;
  phy_ = phy;
  stats_ = stats;
  eecd_ = eecd;
  ee_bits_ = ee_bits;
  ee_cmd_ = ee_cmd;
  ioaddr_ = ioaddr;
  link_up_ = link;
  fifo_ = std::move(fifo);
  ctx_ = ctx;
  tx_ = std::move(tx);
  update_irq();
}

}  // namespace vireo::e1000
