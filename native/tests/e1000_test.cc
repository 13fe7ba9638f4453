// The e1000 (82540EM) driven without a vCPU: the test does what Linux's e1000
// driver does at probe and open (reset, EEPROM MAC and checksum through the
// Microwire bit-banging, PHY through MDIC, rings, RCTL/TCTL), then moves
// frames through its descriptor rings in a GuestMemory over a heap buffer,
// with libslirp behind it (DHCP, a TCP exchange with a server on the host's
// 127.0.0.1, a host port forward) or a fake backend the test feeds and reads
// directly (offloads, TSO, interrupts, filters, statistics, bad rings). All
// traffic stays on loopback.
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "check.h"
#include "bus/bus.h"
#include "devices/net/e1000.h"
#include "devices/pci/pci.h"
#include "machine/guest_memory.h"
#include "net_test_util.h"
#include "pci_test_util.h"

using namespace vireo;
using namespace vireo::e1000;
using namespace nettest;
using nettest::Bytes;
using nettest::MacAddr;

namespace {

constexpr uint64_t kRamSize = 8 << 20;
constexpr uint64_t kBar0 = 0xe0000000;
constexpr uint16_t kIoBase = 0xc000;
constexpr int kSlot = 3;

struct Rig : PciTestBus {
  std::shared_ptr<net::NetBackend> be;
  std::shared_ptr<E1000> nic;

  explicit Rig(std::shared_ptr<net::NetBackend> b, E1000::Options o = {}) : PciTestBus(kRamSize, kSlot), be(std::move(b)) {
    o.mac = kGuestMac;
    nic = std::make_shared<E1000>(be, &mem, o);
    host.attach(kSlot, 0, nic);
    cfgw(pci::kBar0, 4, uint32_t(kBar0));
    cfgw(pci::kBar0 + 4, 4, kIoBase);
    cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdIo | pci::kCmdMaster);
    nic->start();
  }
  ~Rig() { nic->quiesce(); }
  uint32_t r(uint32_t off) { return uint32_t(mmio_read(kBar0 + off, 4)); }
  void w(uint32_t off, uint32_t v) { mmio_write(kBar0 + off, 4, v); }
  uint32_t io_r(uint32_t off) {  // IOADDR then IODATA
    io_write(kIoBase, 4, off);
    return uint32_t(io_read(kIoBase + 4, 4));
  }
};

// ------------------------------------------------------------ the driver

struct Driver {
  Rig& rig;
  static constexpr uint64_t kRxRing = 0x10000, kTxRing = 0x20000, kRxBufs = 0x100000, kTxBufs = 0x400000;
  uint32_t nrx = 64, ntx = 64;
  uint32_t rx_next = 0, tx_next = 0;
  bool secrc = false;
  std::vector<Bytes> frames;
  std::vector<uint8_t> rx_status, rx_errors;  // of each frame's last descriptor
  Bytes partial;

  explicit Driver(Rig& r, bool do_open = true, bool strip_crc = false) : rig(r), secrc(strip_crc) {
    probe();
    if (do_open) open();
  }

  // ---- probe: reset, EEPROM, PHY (what e1000_probe / e1000_reset_hw / e1000_init_hw do)
  void probe() {
    rig.w(reg::CTRL, rig.r(reg::CTRL) | kCtrlRst);
    CHECK(!(rig.r(reg::CTRL) & kCtrlRst));  // self-clearing
    rig.w(reg::IMC, 0xffffffff);
    rig.r(reg::ICR);
  }
  void ee_clock(uint32_t& eecd, bool di) {
    eecd = (eecd & ~kEecdDi) | (di ? kEecdDi : 0);
    rig.w(reg::EECD, eecd);
    rig.w(reg::EECD, eecd | kEecdSk);
    rig.w(reg::EECD, eecd);
  }
  // Microwire READ as e1000_read_eeprom does it for the 82540.
  uint16_t ee_read(uint32_t word) {
    uint32_t eecd = rig.r(reg::EECD);
    CHECK(eecd & kEecdPres);
    eecd |= kEecdReq;
    rig.w(reg::EECD, eecd);
    CHECK(rig.r(reg::EECD) & kEecdGnt);
    eecd &= ~(kEecdDi | kEecdSk);
    rig.w(reg::EECD, eecd);
    eecd |= kEecdCs;
    rig.w(reg::EECD, eecd);
    for (int i = 2; i >= 0; i--) ee_clock(eecd, (0x6 >> i) & 1);
    for (int i = 5; i >= 0; i--) ee_clock(eecd, (word >> i) & 1);
    uint16_t v = 0;
    for (int i = 0; i < 16; i++) {
      rig.w(reg::EECD, eecd | kEecdSk);
      uint32_t e = rig.r(reg::EECD);
      v = uint16_t(v << 1 | ((e & kEecdDo) ? 1 : 0));
      rig.w(reg::EECD, eecd);
    }
    eecd &= ~(kEecdCs | kEecdReq);
    rig.w(reg::EECD, eecd);
    return v;
  }
  uint32_t mdic(uint32_t op, int r, uint16_t data = 0, int phy = kPhyAddr) {
    rig.w(reg::MDIC, op | uint32_t(phy) << 21 | uint32_t(r) << 16 | data);
    uint32_t v = rig.r(reg::MDIC);
    CHECK(v & kMdicReady);
    return v;
  }
  uint16_t phy_read(int r) { return uint16_t(mdic(kMdicOpRead, r)); }

  // ---- open: rings, filters, RCTL/TCTL, interrupts (e1000_configure / e1000_up)
  void open() {
    rig.w(reg::RA, uint32_t(kGuestMac[0] | kGuestMac[1] << 8 | kGuestMac[2] << 16 | uint32_t(kGuestMac[3]) << 24));
    rig.w(reg::RA + 4, uint32_t(kGuestMac[4] | kGuestMac[5] << 8) | kRahAv);
    for (int i = 0; i < 128; i++) rig.w(reg::MTA + 4 * uint32_t(i), 0);
    rig.w(reg::TDBAL, uint32_t(kTxRing));
    rig.w(reg::TDBAH, 0);
    rig.w(reg::TDLEN, ntx * 16);
    rig.w(reg::TDH, 0);
    rig.w(reg::TDT, 0);
    rig.w(reg::TIPG, 0x00602008);
    rig.w(reg::TCTL, kTctlEn | (1u << 3) | (0xf << 4) | (0x40 << 12));
    rig.w(reg::RDTR, 0);
    rig.w(reg::RDBAL, uint32_t(kRxRing));
    rig.w(reg::RDBAH, 0);
    rig.w(reg::RDLEN, nrx * 16);
    rig.w(reg::RDH, 0);
    rig.w(reg::RDT, 0);
    rig.w(reg::RXCSUM, kRxcsumIpofld | kRxcsumTuofld);
    rig.w(reg::RCTL, kRctlEn | kRctlBam | (secrc ? kRctlSecrc : 0));  // BSIZE 2048
    post_rx(nrx - 1);  // as e1000_alloc_rx_buffers: all but one
    rig.w(reg::IMS, kIcrRxt0 | kIcrTxdw | kIcrRxdmt0 | kIcrRxseq | kIcrLsc);
  }
  uint8_t* ram(uint64_t a) { return rig.ram.data() + a; }
  void post_rx(uint32_t count) {
    uint32_t rdt = rig.r(reg::RDT);
    for (uint32_t i = 0; i < count; i++) {
      uint8_t* d = ram(kRxRing + 16 * rdt);
      std::memset(d, 0, 16);
      uint64_t buf = kRxBufs + 2048ull * rdt;
      std::memcpy(d, &buf, 8);
      rdt = (rdt + 1) % nrx;
    }
    rig.w(reg::RDT, rdt);
  }
  // e1000_clean_rx_irq: descriptors with DD, frames at EOP (FCS stripped), buffers back.
  void collect() {
    uint32_t given = 0;
    for (;;) {
      uint8_t* d = ram(kRxRing + 16 * rx_next);
      uint8_t st = std::atomic_ref<uint8_t>(d[12]).load(std::memory_order_acquire);
      if (!(st & kRxdStaDd)) break;
      uint16_t len = uint16_t(d[8] | d[9] << 8);
      uint64_t buf;
      std::memcpy(&buf, d, 8);
      partial.insert(partial.end(), ram(buf), ram(buf) + len);
      if (st & kRxdStaEop) {
        if (!secrc && partial.size() >= 4) partial.resize(partial.size() - 4);
        frames.push_back(partial);
        rx_status.push_back(st);
        rx_errors.push_back(d[13]);
        partial.clear();
      }
      d[12] = 0;
      rx_next = (rx_next + 1) % nrx;
      given++;
    }
    if (given) post_rx(given);
  }
  Bytes wait_for(const std::function<bool(const Bytes&)>& pred, int ms = 5000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    size_t seen = 0;
    for (;;) {
      collect();
      for (; seen < frames.size(); seen++) {
        if (pred(frames[seen])) return frames[seen];
      }
      if (std::chrono::steady_clock::now() > end) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  size_t index_of(const Bytes& f) {
    for (size_t i = 0; i < frames.size(); i++)
      if (frames[i] == f) return i;
    return SIZE_MAX;
  }

  // ---- transmit
  uint64_t put_desc(const uint8_t d[16]) {
    uint64_t at = kTxRing + 16 * tx_next;
    std::memcpy(ram(at), d, 16);
    tx_next = (tx_next + 1) % ntx;
    return at;
  }
  uint64_t buf_for(uint32_t idx) { return kTxBufs + 0x10000ull * (idx % 64); }
  // Legacy descriptors, the frame split into `pieces` buffers; RS|EOP|IFCS on the last.
  uint64_t legacy(const Bytes& f, int pieces = 1, uint8_t extra_cmd = 0, uint8_t cso = 0, uint8_t css = 0) {
    size_t per = (f.size() + size_t(pieces) - 1) / size_t(pieces);
    uint64_t last = 0;
    for (size_t off = 0; off < f.size(); off += per) {
      size_t len = std::min(per, f.size() - off);
      uint64_t buf = buf_for(tx_next);
      std::memcpy(ram(buf), f.data() + off, len);
      bool eop = off + len == f.size();
      uint8_t d[16] = {};
      std::memcpy(d, &buf, 8);
      d[8] = uint8_t(len);
      d[9] = uint8_t(len >> 8);
      d[10] = cso;
      d[11] = uint8_t(eop ? kTxdCmdEop | kTxdCmdIfcs | kTxdCmdRs | extra_cmd : kTxdCmdIfcs);
      d[13] = css;
      last = put_desc(d);
    }
    return last;
  }
  void kick() { rig.w(reg::TDT, tx_next); }
  void send(const Bytes& f) {
    legacy(f);
    kick();
  }
  // TCP/IP context descriptor.
  void context(uint8_t ipcss, uint8_t ipcso, uint16_t ipcse, uint8_t tucss, uint8_t tucso, uint16_t tucse,
               uint8_t tucmd, uint32_t paylen = 0, uint8_t hdrlen = 0, uint16_t mss = 0) {
    uint8_t d[16] = {};
    d[0] = ipcss;
    d[1] = ipcso;
    d[2] = uint8_t(ipcse);
    d[3] = uint8_t(ipcse >> 8);
    d[4] = tucss;
    d[5] = tucso;
    d[6] = uint8_t(tucse);
    d[7] = uint8_t(tucse >> 8);
    uint32_t w2 = (paylen & 0xfffff) | kDtypContext << 20 | uint32_t(tucmd | kTxdCmdDext) << 24;
    std::memcpy(d + 8, &w2, 4);
    d[13] = hdrlen;
    d[14] = uint8_t(mss);
    d[15] = uint8_t(mss >> 8);
    put_desc(d);
  }
  // Data descriptors carrying `f` in `pieces` buffers.
  uint64_t data(const Bytes& f, uint8_t popts, bool tse, int pieces = 1) {
    size_t per = (f.size() + size_t(pieces) - 1) / size_t(pieces);
    uint64_t last = 0;
    for (size_t off = 0; off < f.size(); off += per) {
      size_t len = std::min(per, f.size() - off);
      uint64_t buf = buf_for(tx_next);
      std::memcpy(ram(buf), f.data() + off, len);
      bool eop = off + len == f.size();
      uint8_t d[16] = {};
      std::memcpy(d, &buf, 8);
      uint8_t dcmd = uint8_t(kTxdCmdDext | kTxdCmdIfcs | (tse ? kTxdCmdTse : 0) | (eop ? kTxdCmdEop | kTxdCmdRs : 0));
      uint32_t w2 = uint32_t(len) | kDtypData << 20 | uint32_t(dcmd) << 24;
      std::memcpy(d + 8, &w2, 4);
      d[13] = popts;
      last = put_desc(d);
    }
    return last;
  }
};

uint16_t tcp_data_len(const Bytes& f) {
  size_t l4 = l4_off(f);
  return uint16_t(get16(f, 16) - (l4 - 14) - size_t(f[l4 + 12] >> 4) * 4);
}
bool ip_checksum_ok(const Bytes& f) { return fold(sum16(f.data() + 14, size_t(f[14] & 0xf) * 4)) == 0xffff; }

std::shared_ptr<FakeBackend> fake() { return std::make_shared<FakeBackend>(); }

// Waits until the fake backend holds `n` frames.
bool wait_sent(FakeBackend& b, size_t n, int ms = 2000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (b.nsent() < n) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

Bytes frame_to_guest(size_t payload = 100, const MacAddr& dst = kGuestMac) {
  MacAddr src{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
  Bytes data(payload, 0x5a);
  Bytes f = eth(src, kGuestMac, 0x0800, ipv4(kGwIp, kGuestIp, 17, udp(kGwIp, kGuestIp, 53, 5353, data)));
  std::memcpy(f.data(), dst.data(), 6);
  std::memcpy(f.data() + 6, src.data(), 6);
  return f;
}

}  // namespace

// ------------------------------------------------------------ identity, probe

TEST(pci_identity_and_bars) {
  Rig rig(fake());
  CHECK_EQ(rig.cfgr(pci::kVendorId, 4), 0x100e8086u);
  CHECK_EQ(rig.cfgr(pci::kRevision, 4) >> 8, 0x020000u);  // Ethernet controller
  CHECK_EQ(rig.cfgr(pci::kRevision, 1), 3u);
  CHECK_EQ(rig.cfgr(pci::kSubsysVendor, 4), 0x11001af4u);
  CHECK_EQ(rig.cfgr(pci::kIntPin, 1), 1u);  // INTA#
  // BAR sizing: 128 KiB memory, 64 bytes of I/O.
  rig.cfgw(pci::kBar0, 4, 0xffffffff);
  CHECK_EQ(rig.cfgr(pci::kBar0, 4), 0xfffe0000u);
  rig.cfgw(pci::kBar0 + 4, 4, 0xffffffff);
  CHECK_EQ(rig.cfgr(pci::kBar0 + 4, 4) & 0xffff, 0xffc1u);
  rig.cfgw(pci::kBar0, 4, uint32_t(kBar0));
  rig.cfgw(pci::kBar0 + 4, 4, kIoBase);
  // The I/O window reads the same registers.
  CHECK_EQ(rig.io_r(reg::STATUS), rig.r(reg::STATUS));
  CHECK_EQ(rig.io_r(reg::RA + 4), rig.r(reg::RA + 4));
}

TEST(probe_reads_mac_and_checksum_from_eeprom_and_finds_the_phy_linked) {
  Rig rig(fake());
  Driver d(rig, false);
  // EEPROM through Microwire bit-banging: MAC, then the checksum rule.
  uint16_t words[64];
  uint16_t sum = 0;
  for (uint32_t i = 0; i < 64; i++) {
    words[i] = d.ee_read(i);
    sum = uint16_t(sum + words[i]);
  }
  CHECK_EQ(sum, uint16_t(0xbaba));
  MacAddr mac{uint8_t(words[0]), uint8_t(words[0] >> 8), uint8_t(words[1]), uint8_t(words[1] >> 8), uint8_t(words[2]),
              uint8_t(words[2] >> 8)};
  CHECK(mac == kGuestMac);
  CHECK_EQ(words[0x0d], uint16_t(0x100e));
  CHECK_EQ(words[0x0e], uint16_t(0x8086));
  CHECK_EQ(words[0x0a] >> 14, 1);  // valid-signature bits
  // The same through EERD (the register iPXE uses).
  rig.w(reg::EERD, 1u << 8 | kEerdStart);
  uint32_t e = rig.r(reg::EERD);
  CHECK(e & kEerdDone);
  CHECK_EQ(uint16_t(e >> 16), words[1]);
  // RAL0/RAH0 come loaded from the EEPROM.
  CHECK_EQ(rig.r(reg::RA + 4), uint32_t(kGuestMac[4] | kGuestMac[5] << 8) | kRahAv);
  // PHY: M88E1011 ID, reset self-clears, autonegotiation done, link up.
  CHECK_EQ(d.phy_read(2), uint16_t(0x0141));
  CHECK_EQ(d.phy_read(3) & 0xfff0, 0x0c20);
  d.mdic(kMdicOpWrite, 0, kBmcrReset | kBmcrAnEnable);
  CHECK(!(d.phy_read(0) & kBmcrReset));
  d.mdic(kMdicOpWrite, 0, kBmcrAnEnable | kBmcrAnRestart);
  CHECK(!(d.phy_read(0) & kBmcrAnRestart));
  uint16_t bmsr = d.phy_read(1);
  CHECK(bmsr & kBmsrLink);
  CHECK(bmsr & kBmsrAnComplete);
  d.mdic(kMdicOpWrite, 4, 0x01e1);
  CHECK_EQ(d.phy_read(4), uint16_t(0x01e1));  // advertisement is the driver's
  d.mdic(kMdicOpWrite, 1, 0);
  CHECK_EQ(d.phy_read(1), bmsr);  // status is not
  CHECK(d.mdic(kMdicOpRead, 1, 0, 2) & kMdicError);  // nothing at PHY address 2
  uint32_t st = rig.r(reg::STATUS);
  CHECK(st & kStatusLu);
  CHECK(st & kStatusFd);
  CHECK_EQ((st >> 6) & 3, 2u);  // 1000 Mb/s
}

TEST(software_reset_returns_registers_to_power_on) {
  Rig rig(fake());
  Driver d(rig);
  CHECK(rig.r(reg::RCTL) & kRctlEn);
  rig.w(reg::RA + 8, 0x12345678);
  rig.w(reg::CTRL, rig.r(reg::CTRL) | kCtrlRst);
  CHECK_EQ(rig.r(reg::RCTL), 0u);
  CHECK_EQ(rig.r(reg::TCTL), 0u);
  CHECK_EQ(rig.r(reg::IMS), 0u);
  CHECK_EQ(rig.r(reg::RDLEN), 0u);
  CHECK_EQ(rig.r(reg::RA + 8), 0u);
  CHECK(rig.r(reg::RA + 4) & kRahAv);  // RAR0 reloaded from the EEPROM
  CHECK(!rig.irq());
}

// ------------------------------------------------------------ through slirp

TEST(dhcp_discover_gets_offer_for_10_0_2_15) {
  Rig rig(slirp());
  Driver d(rig);
  Bytes r = dhcp_exchange(d, 0xdeadbeef);
  CHECK(!r.empty());
  CHECK_EQ(std::memcmp(r.data() + l4_off(r) + 8 + 16, kGuestIp.b, 4), 0);  // yiaddr
  CHECK_EQ(dhcp_opt(r, 53), Bytes{2});                                      // OFFER
  CHECK_EQ(dhcp_opt(r, 3), (Bytes{10, 0, 2, 2}));
  CHECK_EQ(dhcp_opt(r, 6), (Bytes{10, 0, 2, 3}));
  CHECK(l4_checksum_ok(r));
  // The descriptor says the IP and UDP checksums were checked and are good.
  size_t i = d.index_of(r);
  CHECK(i != SIZE_MAX);
  CHECK(d.rx_status[i] & kRxdStaIpcs);
  CHECK(d.rx_status[i] & kRxdStaTcpcs);
  CHECK(!(d.rx_status[i] & kRxdStaIxsm));
  CHECK_EQ(d.rx_errors[i], 0);
  CHECK(rig.nic->counters().rx_packets >= 1);
}

TEST(received_frames_carry_a_correct_fcs_unless_secrc) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  d.secrc = true;  // keep the FCS the device appended, to check it
  Bytes f = frame_to_guest(100);
  be->inject(f);
  Bytes got = d.wait_for([](const Bytes&) { return true; }, 1000);
  CHECK_EQ(got.size(), f.size() + 4);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < f.size(); i++) {
    c ^= f[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  c = ~c;
  CHECK_EQ(got[f.size()] | got[f.size() + 1] << 8 | got[f.size() + 2] << 16 | uint32_t(got[f.size() + 3]) << 24, c);
  // With RCTL.SECRC the device strips it; short frames are padded to 60.
  rig.w(reg::RCTL, rig.r(reg::RCTL) | kRctlSecrc);
  Bytes arp = arp_request(kGwIp, kGuestIp);
  std::memcpy(arp.data(), kGuestMac.data(), 6);
  be->inject(arp);
  Bytes got2 = d.wait_for([&](const Bytes& g) { return g.size() != got.size(); }, 1000);
  CHECK_EQ(got2.size(), size_t(60));
  CHECK(std::equal(arp.begin(), arp.end(), got2.begin()));
}

TEST(tcp_exchange_with_host_loopback_server_using_checksum_offload) {
  Listener srv;
  Rig rig(slirp());
  Driver d(rig);
  MacAddr gw = arp_gateway(d);
  const uint16_t sport = 40101;
  uint32_t iss = 1000;
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, iss, 0, kSyn, {}))));
  auto is_ours = [&](const Bytes& f) {
    return is_ipv4(f, 6) && get16(f, l4_off(f)) == srv.port && get16(f, l4_off(f) + 2) == sport;
  };
  Bytes sa = d.wait_for([&](const Bytes& f) { return is_ours(f) && (f[l4_off(f) + 13] & (kSyn | kAck)) == (kSyn | kAck); });
  CHECK(!sa.empty());
  CHECK(l4_checksum_ok(sa));
  CHECK_EQ(get32(sa, l4_off(sa) + 8), iss + 1);
  uint32_t peer = get32(sa, l4_off(sa) + 4) + 1;
  int conn = srv.accept(5000);
  CHECK(conn >= 0);
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, iss + 1, peer, kAck, {}))));
  // "hello" with the TCP checksum left to the device (TXSM) and the IP
  // checksum zeroed and left to it too (IXSM), as Linux hands them over.
  Bytes hello = {'h', 'e', 'l', 'l', 'o'};
  Bytes seg = eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, iss + 1, peer, kAck | kPsh, hello, true)));
  seg[24] = seg[25] = 0;
  d.context(14, 24, 33, 34, 50, 0, kTucmdTcp | kTucmdIp);
  d.data(seg, kPoptsIxsm | kPoptsTxsm, false, 2);
  d.kick();
  char buf[16] = {};
  pollfd p{conn, POLLIN, 0};
  CHECK_EQ(::poll(&p, 1, 5000), 1);
  CHECK_EQ(::read(conn, buf, sizeof buf), ssize_t(5));
  CHECK_EQ(std::string(buf, 5), std::string("hello"));
  CHECK_EQ(::write(conn, "world!", 6), ssize_t(6));
  Bytes back = d.wait_for([&](const Bytes& f) { return is_ours(f) && tcp_data_len(f) > 0; });
  CHECK(!back.empty());
  CHECK(l4_checksum_ok(back));
  size_t data = l4_off(back) + size_t(back[l4_off(back) + 12] >> 4) * 4;
  CHECK_EQ(std::string(back.begin() + long(data), back.begin() + long(data + 6)), std::string("world!"));
  CHECK_EQ(get32(back, l4_off(back) + 8), iss + 6);  // acknowledges "hello"
  ::close(conn);
  auto c = rig.nic->counters();
  CHECK(c.tx_packets >= 4);
  CHECK(c.rx_packets >= 3);
  CHECK_EQ(c.tx_malformed, 0u);
}

TEST(partial_checksum_without_offload_never_reaches_the_server) {
  // The control for the test above: the same kind of segment with only the
  // pseudo-header sum and no TXSM is dropped by slirp.
  Listener srv;
  Rig rig(slirp());
  Driver d(rig);
  MacAddr gw = arp_gateway(d);
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, 40102, srv.port, 1, 0, kSyn, {}, true))));
  CHECK_EQ(srv.accept(700), -1);
}

TEST(tso_send_reaches_the_host_server_whole) {
  Listener srv;
  Rig rig(slirp());
  Driver d(rig);
  MacAddr gw = arp_gateway(d);
  const uint16_t sport = 40103;
  d.send(eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, 5000, 0, kSyn, {}))));
  Bytes sa = d.wait_for([&](const Bytes& f) {
    return is_ipv4(f, 6) && get16(f, l4_off(f) + 2) == sport && (f[l4_off(f) + 13] & (kSyn | kAck)) == (kSyn | kAck);
  });
  CHECK(!sa.empty());
  uint32_t peer = get32(sa, l4_off(sa) + 4) + 1;
  int conn = srv.accept(5000);
  CHECK(conn >= 0);
  // 4000 bytes in one TSO packet, MSS 1460: three segments on the wire.
  Bytes payload(4000);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = uint8_t('a' + i % 26);
  Bytes big = eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, sport, srv.port, 5001, peer, kAck | kPsh, payload)));
  // As Linux prepares a TSO packet: IP length and checksum 0, TCP checksum =
  // pseudo-header sum without the length.
  put16(big, 16, 0);
  put16(big, 24, 0);
  Ip4 s = kGuestIp, t = kGwIp;
  put16(big, 50, fold(pseudo(s, t, 6, 0)));
  d.context(14, 24, 33, 34, 50, 0, kTucmdTcp | kTucmdIp | kTxdCmdTse, uint32_t(payload.size()), 54, 1460);
  d.data(big, kPoptsIxsm | kPoptsTxsm, true, 3);
  d.kick();
  std::string got;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.size() < payload.size() && std::chrono::steady_clock::now() < end) {
    pollfd p{conn, POLLIN, 0};
    if (::poll(&p, 1, 200) != 1) continue;
    char buf[8192];
    ssize_t n = ::read(conn, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  ::close(conn);
  CHECK_EQ(got.size(), payload.size());
  CHECK(std::equal(payload.begin(), payload.end(), got.begin()));
  CHECK_EQ(rig.nic->counters().tx_malformed, 0u);
  CHECK_EQ(rig.r(reg::TSCTC), 1u);
}

TEST(host_port_forward_reaches_guest) {
  uint16_t port = free_port();
  net::SlirpOptions o;
  o.hostfwd.push_back(net::parse_hostfwd("tcp:127.0.0.1:" + std::to_string(port) + "-:22"));
  Rig rig(slirp(o));
  Driver d(rig);
  arp_gateway(d);
  check_port_forward_to_guest(d, port, 7000);
}

// ------------------------------------------------------------ offloads, exactly

TEST(tso_segments_have_correct_headers_and_checksums) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  MacAddr gw{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
  Bytes payload(3000);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = uint8_t(i * 7);
  Bytes big = eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, 1234, 80, 0x10000000, 42, kAck | kPsh | kFin, payload)));
  put16(big, 16, 0);
  put16(big, 18, 0x0100);  // IP ID
  put16(big, 24, 0);
  Ip4 s = kGuestIp, t = kGwIp;
  put16(big, 50, fold(pseudo(s, t, 6, 0)));
  d.context(14, 24, 33, 34, 50, 0, kTucmdTcp | kTucmdIp | kTxdCmdTse, 3000, 54, 1000);
  d.data(big, kPoptsIxsm | kPoptsTxsm, true, 4);
  d.kick();
  CHECK(wait_sent(*be, 3));
  for (size_t i = 0; i < 3; i++) {
    const Bytes& f = be->sent[i];
    CHECK_EQ(f.size(), size_t(54 + 1000));
    CHECK_EQ(get16(f, 16), uint16_t(1040));            // IP total length
    CHECK_EQ(get16(f, 18), uint16_t(0x0100 + i));      // IP ID counts up
    CHECK(ip_checksum_ok(f));
    CHECK(l4_checksum_ok(f));
    CHECK_EQ(get32(f, 38), uint32_t(0x10000000 + 1000 * i));  // sequence number
    uint8_t flags = f[47];
    CHECK(flags & kAck);
    CHECK_EQ(bool(flags & (kPsh | kFin)), i == 2);  // PSH/FIN only on the last segment
    CHECK(std::equal(f.begin() + 54, f.end(), payload.begin() + long(1000 * i)));
  }
  // A last segment shorter than MSS.
  Bytes odd(2500, 0x33);
  Bytes big2 = eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 6, tcp(kGuestIp, kGwIp, 1234, 80, 7, 42, kAck, odd)));
  put16(big2, 16, 0);
  put16(big2, 24, 0);
  put16(big2, 50, fold(pseudo(s, t, 6, 0)));
  d.context(14, 24, 33, 34, 50, 0, kTucmdTcp | kTucmdIp | kTxdCmdTse, 2500, 54, 1000);
  d.data(big2, kPoptsIxsm | kPoptsTxsm, true);
  d.kick();
  CHECK(wait_sent(*be, 6));
  CHECK_EQ(be->sent[5].size(), size_t(54 + 500));
  CHECK(l4_checksum_ok(be->sent[5]));
  CHECK(ip_checksum_ok(be->sent[5]));
  CHECK_EQ(rig.r(reg::GPTC), 6u);
  CHECK_EQ(rig.nic->counters().tx_malformed, 0u);
}

TEST(udp_checksum_offload_and_legacy_insert_checksum) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  MacAddr gw{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
  Bytes u = udp(kGuestIp, kGwIp, 5000, 53, Bytes(77, 0x41));
  // Partial: the checksum field holds the pseudo-header sum (with length).
  Ip4 s = kGuestIp, t = kGwIp;
  put16(u, 6, fold(pseudo(s, t, 17, u.size())));
  Bytes f = eth(gw, kGuestMac, 0x0800, ipv4(kGuestIp, kGwIp, 17, u));
  d.context(14, 24, 33, 34, 40, 0, kTucmdIp);
  d.data(f, kPoptsTxsm, false, 3);
  d.kick();
  CHECK(wait_sent(*be, 1));
  CHECK(l4_checksum_ok(be->sent[0]));
  CHECK(ip_checksum_ok(be->sent[0]));
  // Legacy descriptor with IC: sum from CSS to the end, stored at CSO.
  Bytes f2 = f;
  put16(f2, 40, fold(pseudo(s, t, 17, u.size())));
  d.legacy(f2, 2, kTxdCmdIc, 40, 34);
  d.kick();
  CHECK(wait_sent(*be, 2));
  CHECK(l4_checksum_ok(be->sent[1]));
  // The control: the same frame without offload goes out with the partial sum.
  d.legacy(f2);
  d.kick();
  CHECK(wait_sent(*be, 3));
  CHECK(!l4_checksum_ok(be->sent[2]));
}

TEST(bad_checksums_to_the_guest_are_flagged) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  Bytes f = frame_to_guest(40);
  f[f.size() - 1] ^= 0xff;  // UDP checksum now wrong
  be->inject(f);
  Bytes g = f;
  g[24] ^= 0x01;  // IP header checksum wrong too
  be->inject(g);
  CHECK(!d.wait_for([&](const Bytes&) { return d.frames.size() >= 2; }, 1000).empty());
  CHECK(d.rx_errors[0] & kRxdErrTcpe);
  CHECK(!(d.rx_errors[0] & kRxdErrIpe));
  CHECK(d.rx_errors[1] & kRxdErrIpe);
  // ARP: not IP, the checksum was not looked at.
  Bytes arp = arp_request(kGwIp, kGuestIp);
  std::memcpy(arp.data(), kGuestMac.data(), 6);
  be->inject(arp);
  CHECK(!d.wait_for([&](const Bytes&) { return d.frames.size() >= 3; }, 1000).empty());
  CHECK(d.rx_status[2] & kRxdStaIxsm);
}

// ------------------------------------------------------------ interrupts

TEST(interrupt_causes_masking_and_read_to_clear) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  rig.r(reg::ICR);
  CHECK(!rig.irq());
  // ICS sets a cause; INTx follows ICR & IMS.
  rig.w(reg::IMC, 0xffffffff);
  rig.w(reg::ICS, kIcrRxo);
  CHECK(!rig.irq());
  rig.w(reg::IMS, kIcrRxo);
  CHECK(rig.irq());
  CHECK_EQ(rig.r(reg::IMS), kIcrRxo);
  rig.w(reg::IMC, kIcrRxo);
  CHECK(!rig.irq());
  rig.w(reg::IMS, kIcrRxo);
  CHECK(rig.irq());
  CHECK_EQ(rig.r(reg::ICR) & kIcrRxo, kIcrRxo);
  CHECK(!rig.irq());
  CHECK_EQ(rig.r(reg::ICR), 0u);  // read cleared it
  // Writing 1s to ICR clears those causes too.
  rig.w(reg::ICS, kIcrRxo | kIcrRxseq);
  rig.w(reg::ICR, kIcrRxo);
  CHECK_EQ(rig.r(reg::ICR), kIcrRxseq);
  // Transmit: TXDW (RS written back) and TXQE (ring empty).
  rig.w(reg::IMS, kIcrTxdw | kIcrTxqe | kIcrRxt0 | kIcrRxdmt0 | kIcrLsc | kIcrMdac);
  uint64_t desc = d.legacy(frame_to_guest(20, kBcastMac));
  d.kick();
  CHECK(rig.irq());
  uint32_t icr = rig.r(reg::ICR);
  CHECK(icr & kIcrTxdw);
  CHECK(icr & kIcrTxqe);
  CHECK(rig.ram[desc + 12] & kTxdStaDd);
  CHECK_EQ(rig.r(reg::TDH), rig.r(reg::TDT));
  // Receive: RXT0.
  be->inject(frame_to_guest());
  icr = rig.r(reg::ICR);
  CHECK(icr & kIcrRxt0);
  CHECK(!(icr & kIcrRxdmt0));  // 62 of 64 descriptors still free
  // RXDMT0 once free descriptors fall to half of the ring (RDMTS 00).
  for (int i = 0; i < 32; i++) be->inject(frame_to_guest());
  CHECK(rig.r(reg::ICR) & kIcrRxdmt0);
  // MDIC with the interrupt-enable bit: MDAC.
  d.mdic(kMdicOpRead | kMdicIe, 1);
  CHECK(rig.r(reg::ICR) & kIcrMdac);
  // INTx-disable in the command register holds the line low.
  rig.w(reg::ICS, kIcrLsc);
  CHECK(rig.irq());
  rig.cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdIo | pci::kCmdMaster | pci::kCmdIntxDisable);
  CHECK(!rig.irq());
  CHECK(rig.cfgr(pci::kStatus, 2) & pci::kStatusIntx);
  rig.cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdIo | pci::kCmdMaster);
  CHECK(rig.irq());
  CHECK_EQ(rig.intx_pin, 1);
}

// ------------------------------------------------------------ link

TEST(link_down_stops_traffic_and_raises_lsc) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  d.send(frame_to_guest(20, kBcastMac));
  CHECK(wait_sent(*be, 1));
  rig.r(reg::ICR);
  rig.nic->set_link(false);
  CHECK(rig.irq());
  CHECK(rig.r(reg::ICR) & kIcrLsc);
  CHECK(!(rig.r(reg::STATUS) & kStatusLu));
  CHECK(!(d.phy_read(1) & kBmsrLink));
  CHECK(!rig.nic->link_up());
  auto before = rig.nic->counters();
  be->inject(frame_to_guest());
  d.send(frame_to_guest(20, kBcastMac));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  d.collect();
  CHECK_EQ(d.frames.size(), size_t(0));
  CHECK_EQ(be->nsent(), size_t(1));
  auto after = rig.nic->counters();
  CHECK_EQ(after.rx_dropped, before.rx_dropped + 1);
  CHECK_EQ(after.tx_dropped, before.tx_dropped + 1);
  CHECK_EQ(rig.r(reg::TDH), rig.r(reg::TDT));  // the descriptors still completed
  // Up again: LSC, link bits, traffic flows.
  rig.nic->set_link(true);
  CHECK(rig.r(reg::ICR) & kIcrLsc);
  CHECK(rig.r(reg::STATUS) & kStatusLu);
  CHECK(d.phy_read(1) & kBmsrLink);
  be->inject(frame_to_guest());
  CHECK(!d.wait_for([](const Bytes&) { return true; }, 1000).empty());
  d.send(frame_to_guest(20, kBcastMac));
  CHECK(wait_sent(*be, 2));
}

// ------------------------------------------------------------ filters, statistics

TEST(receive_address_filtering) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  MacAddr other{0x52, 0x54, 0x00, 0x99, 0x99, 0x99};
  MacAddr mcast{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
  auto count = [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    d.collect();
    return d.frames.size();
  };
  be->inject(frame_to_guest(10, other));
  be->inject(frame_to_guest(10, mcast));
  CHECK_EQ(count(), size_t(0));
  be->inject(frame_to_guest(10, kBcastMac));  // BAM
  CHECK_EQ(count(), size_t(1));
  rig.w(reg::RCTL, rig.r(reg::RCTL) & ~kRctlBam);
  be->inject(frame_to_guest(10, kBcastMac));
  CHECK_EQ(count(), size_t(1));
  // A second station address in RAR[1].
  rig.w(reg::RA + 8, uint32_t(other[0] | other[1] << 8 | other[2] << 16 | uint32_t(other[3]) << 24));
  rig.w(reg::RA + 12, uint32_t(other[4] | other[5] << 8) | kRahAv);
  be->inject(frame_to_guest(10, other));
  CHECK_EQ(count(), size_t(2));
  // Multicast through the MTA hash (MO 00: address bits 47:36).
  uint32_t h = ((mcast[4] >> 4) | (uint32_t(mcast[5]) << 4)) & 0xfff;
  rig.w(reg::MTA + 4 * (h / 32), 1u << (h % 32));
  be->inject(frame_to_guest(10, mcast));
  CHECK_EQ(count(), size_t(3));
  // Promiscuous unicast.
  MacAddr third{0x02, 0, 0, 0, 0, 3};
  be->inject(frame_to_guest(10, third));
  CHECK_EQ(count(), size_t(3));
  rig.w(reg::RCTL, rig.r(reg::RCTL) | kRctlUpe);
  be->inject(frame_to_guest(10, third));
  CHECK_EQ(count(), size_t(4));
}

// libFuzzer (e1000_fuzz, 2026-12-01): with the VLAN filter on, a frame whose
// type is the VLAN tag type but which ends there (14 or 15 bytes) had its tag
// read from past its end. Such a frame is dropped; a whole tagged frame goes
// through the filter table as before.
TEST(vlan_filter_drops_a_tag_type_with_no_tag) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  auto count = [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    d.collect();
    return d.frames.size();
  };
  rig.w(reg::RCTL, rig.r(reg::RCTL) | kRctlVfe);
  Bytes f = frame_to_guest(10);
  f[12] = 0x81;
  f[13] = 0x00;
  for (size_t n : {size_t(14), size_t(15)}) be->inject(Bytes(f.begin(), f.begin() + long(n)));
  CHECK_EQ(count(), size_t(0));
  f[14] = 0x00;
  f[15] = 0x05;  // VID 5, not in the table
  be->inject(f);
  CHECK_EQ(count(), size_t(0));
  rig.w(reg::VFTA, 1u << 5);
  be->inject(f);
  CHECK_EQ(count(), size_t(1));
}

TEST(statistics_count_and_clear_on_read) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  for (int i = 0; i < 3; i++) be->inject(frame_to_guest(100));
  be->inject(frame_to_guest(100, kBcastMac));
  d.send(frame_to_guest(200, kBcastMac));
  d.send(frame_to_guest(200));
  CHECK(wait_sent(*be, 2));
  size_t rx_len = frame_to_guest(100).size() + 4, tx_len = frame_to_guest(200).size() + 4;
  CHECK_EQ(rig.r(reg::GPRC), 4u);
  CHECK_EQ(rig.r(reg::GPRC), 0u);  // read to clear
  CHECK_EQ(rig.r(reg::TPR), 4u);
  CHECK_EQ(rig.r(reg::BPRC), 1u);
  CHECK_EQ(rig.r(reg::GORCL), uint32_t(4 * rx_len));
  CHECK_EQ(rig.r(reg::GORCL), uint32_t(4 * rx_len));  // the low half alone does not clear
  CHECK_EQ(rig.r(reg::GORCH), 0u);
  CHECK_EQ(rig.r(reg::GORCL), 0u);  // the high half does
  CHECK_EQ(rig.r(reg::GPTC), 2u);
  CHECK_EQ(rig.r(reg::TPT), 2u);
  CHECK_EQ(rig.r(reg::BPTC), 1u);
  CHECK_EQ(rig.r(reg::GOTCL), uint32_t(2 * tx_len));
  CHECK_EQ(rig.r(reg::GOTCH), 0u);
  CHECK_EQ(rig.r(reg::PRC64 + 8), 4u);  // 128..255 bytes
  // Writes do not change counters.
  rig.w(reg::GPRC, 77);
  CHECK_EQ(rig.r(reg::GPRC), 0u);
  auto c = rig.nic->counters();
  CHECK_EQ(c.rx_packets, 4u);
  CHECK_EQ(c.tx_packets, 2u);
}

// ------------------------------------------------------------ receive corner cases

TEST(no_descriptors_frames_wait_then_overflow_is_missed) {
  auto be = fake();
  Rig rig(be);
  E1000::Options o;
  Driver d(rig, true);
  // Take every descriptor back: RDT == RDH.
  rig.w(reg::RDT, rig.r(reg::RDH));
  rig.r(reg::ICR);
  for (int i = 0; i < 70; i++) be->inject(frame_to_guest(50 + size_t(i)));
  d.collect();
  CHECK_EQ(d.frames.size(), size_t(0));
  CHECK(rig.r(reg::RNBC) >= 1u);
  CHECK_EQ(rig.r(reg::MPC), uint32_t(70 - o.rx_fifo));  // past the packet buffer: missed
  CHECK(rig.r(reg::ICR) & kIcrRxo);
  // Descriptors arrive: the waiting frames are delivered in order.
  d.post_rx(63);
  d.wait_for([&](const Bytes&) { return d.frames.size() >= 63; }, 1000);
  CHECK_EQ(d.frames.size(), size_t(63));
  CHECK_EQ(d.frames[0].size(), frame_to_guest(50).size());
  CHECK_EQ(d.frames[1].size(), frame_to_guest(51).size());
  d.wait_for([&](const Bytes&) { return d.frames.size() >= o.rx_fifo; }, 1000);
  CHECK_EQ(d.frames.size(), o.rx_fifo);
}

TEST(long_frames_need_lpe_and_span_descriptors) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  Bytes big = frame_to_guest(3000);
  be->inject(big);
  d.collect();
  CHECK_EQ(d.frames.size(), size_t(0));
  CHECK_EQ(rig.r(reg::ROC), 1u);
  rig.w(reg::RCTL, rig.r(reg::RCTL) | kRctlLpe);
  uint32_t head = rig.r(reg::RDH);
  be->inject(big);
  Bytes got = d.wait_for([](const Bytes&) { return true; }, 1000);
  CHECK(got == big);
  CHECK_EQ((rig.r(reg::RDH) + 64 - head) % 64, 2u);  // 3046 bytes + FCS in two 2 KiB buffers
  CHECK(l4_checksum_ok(got));
  // BSIZE 256 spreads it over 12.
  rig.w(reg::RCTL, rig.r(reg::RCTL) | 3u << 16);
  head = rig.r(reg::RDH);
  be->inject(big);
  CHECK(!d.wait_for([&](const Bytes&) { return d.frames.size() >= 2; }, 1000).empty());
  CHECK(d.frames[1] == big);
  CHECK_EQ((rig.r(reg::RDH) + 64 - head) % 64, 12u);
}

TEST(malformed_receive_rings_drop_and_count) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  auto bad0 = rig.nic->counters().rx_bad_buffers;
  // Zero-length ring.
  rig.w(reg::RDLEN, 0);
  be->inject(frame_to_guest());
  CHECK_EQ(rig.nic->counters().rx_bad_buffers, bad0 + 1);
  // Head past the ring.
  rig.w(reg::RDLEN, 64 * 16);
  rig.w(reg::RDH, 500);
  be->inject(frame_to_guest());
  CHECK_EQ(rig.nic->counters().rx_bad_buffers, bad0 + 2);
  // Ring outside RAM.
  rig.w(reg::RDH, 0);
  rig.w(reg::RDBAL, 0xfff00000);
  be->inject(frame_to_guest());
  CHECK_EQ(rig.nic->counters().rx_bad_buffers, bad0 + 3);
  // A buffer outside RAM: the descriptor comes back with RXE, nothing written.
  rig.w(reg::RDBAL, uint32_t(Driver::kRxRing));
  rig.w(reg::RDH, 0);
  d.rx_next = 0;
  uint64_t far = 0x7fff0000000ull;
  std::memcpy(d.ram(Driver::kRxRing), &far, 8);
  be->inject(frame_to_guest());
  CHECK_EQ(rig.nic->counters().rx_bad_buffers, bad0 + 4);
  CHECK(rig.ram[Driver::kRxRing + 12] & kRxdStaDd);
  CHECK(rig.ram[Driver::kRxRing + 13] & kRxdErrRxe);
  // The next descriptor is fine and the next frame arrives there.
  rig.ram[Driver::kRxRing + 12] = 0;
  d.rx_next = 1;
  be->inject(frame_to_guest());
  CHECK(!d.wait_for([](const Bytes&) { return true; }, 1000).empty());
  // Without bus mastering nothing is written to RAM (the frame waits).
  rig.cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdIo);
  size_t n = d.frames.size();
  be->inject(frame_to_guest());
  d.collect();
  CHECK_EQ(d.frames.size(), n);
  rig.cfgw(pci::kCommand, 2, pci::kCmdMem | pci::kCmdIo | pci::kCmdMaster);
  rig.w(reg::RDT, rig.r(reg::RDT));  // a doorbell delivers it
  CHECK(!d.wait_for([&](const Bytes&) { return d.frames.size() > n; }, 1000).empty());
}

TEST(malformed_transmit_descriptors_drop_and_count) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  MacAddr gw{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
  Bytes ok = frame_to_guest(30, kBcastMac);
  auto mal = [&] { return rig.nic->counters().tx_malformed; };
  // A buffer outside RAM.
  uint8_t desc[16] = {};
  uint64_t far = 0x7fff0000000ull;
  std::memcpy(desc, &far, 8);
  desc[8] = 64;
  desc[11] = kTxdCmdEop | kTxdCmdRs;
  d.put_desc(desc);
  d.kick();
  CHECK_EQ(mal(), 1u);
  CHECK_EQ(rig.r(reg::TDH), rig.r(reg::TDT));
  // Shorter than an Ethernet header.
  d.send(Bytes(8, 1));
  CHECK_EQ(mal(), 2u);
  // A non-TSO packet past 16 KiB (four 5 KiB descriptors).
  Bytes huge(20000, 0x11);
  std::memcpy(huge.data(), ok.data(), 14);
  d.legacy(huge, 4);
  d.kick();
  CHECK_EQ(mal(), 3u);
  // TSO with a header length past the packet, and with MSS 0.
  d.context(14, 24, 33, 34, 50, 0, kTucmdTcp | kTucmdIp | kTxdCmdTse, 100, 200, 1000);
  d.data(Bytes(120, 0), kPoptsTxsm, true);
  d.kick();
  CHECK_EQ(mal(), 4u);
  d.context(14, 24, 33, 34, 50, 0, kTucmdTcp | kTucmdIp | kTxdCmdTse, 100, 54, 0);
  d.data(Bytes(154, 0), kPoptsTxsm, true);
  d.kick();
  CHECK_EQ(mal(), 5u);
  // Checksum offsets past the frame.
  d.context(14, 24, 33, 200, 210, 0, kTucmdTcp | kTucmdIp);
  d.data(ok, kPoptsTxsm, false);
  d.kick();
  CHECK_EQ(mal(), 6u);
  // A reserved descriptor type is skipped.
  uint8_t r[16] = {};
  uint32_t w2 = 0xfu << 20 | uint32_t(kTxdCmdDext | kTxdCmdRs) << 24;
  std::memcpy(r + 8, &w2, 4);
  d.put_desc(r);
  d.kick();
  CHECK_EQ(mal(), 7u);
  CHECK_EQ(be->nsent(), size_t(0));
  // The ring still works.
  d.send(ok);
  CHECK(wait_sent(*be, 1));
  CHECK(be->sent[0] == ok);
  // Zero-length ring, tail past it, ring outside RAM: nothing sent, no hang.
  rig.w(reg::TDLEN, 0);
  rig.w(reg::TDT, 5);
  CHECK_EQ(mal(), 8u);
  rig.w(reg::TDLEN, 64 * 16);
  rig.w(reg::TDT, 1000);
  CHECK_EQ(mal(), 9u);
  rig.w(reg::TDBAL, 0xfff00000);
  rig.w(reg::TDT, 3);
  CHECK_EQ(mal(), 10u);
  CHECK_EQ(be->nsent(), size_t(1));
  (void)gw;
}

TEST(transmit_loop_is_bounded_by_the_ring) {
  // A ring full of descriptors without EOP gathering into one packet: one
  // doorbell processes at most the ring once and the packet is refused as
  // too long, never a host hang or allocation past the limit.
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  for (uint32_t i = 0; i < 63; i++) {
    uint8_t desc[16] = {};
    uint64_t buf = Driver::kTxBufs;
    std::memcpy(desc, &buf, 8);
    desc[8] = 0;
    desc[9] = 0x40;  // 16 KiB each
    desc[11] = i == 62 ? kTxdCmdEop | kTxdCmdRs : 0;
    d.put_desc(desc);
  }
  d.kick();
  CHECK_EQ(rig.r(reg::TDH), 63u);
  CHECK_EQ(rig.nic->counters().tx_malformed, 1u);
  CHECK_EQ(be->nsent(), size_t(0));
}

TEST(seeded_register_and_ring_fuzz_never_crashes) {
  auto be = fake();
  Rig rig(be);
  Driver d(rig);
  std::mt19937 rng(11);
  const uint32_t regs[] = {reg::CTRL, reg::EECD, reg::EERD, reg::MDIC, reg::ICR, reg::ICS, reg::IMS, reg::IMC,
                           reg::RCTL, reg::TCTL, reg::RDBAL, reg::RDLEN, reg::RDH, reg::RDT, reg::TDBAL,
                           reg::TDLEN, reg::TDH, reg::TDT, reg::RXCSUM, reg::RA, reg::RA + 4, reg::MTA,
                           reg::GPRC, reg::GORCH};
  for (int i = 0; i < 100000; i++) {
    uint32_t op = rng() % 10;
    if (op < 4) {
      uint32_t r = regs[rng() % (sizeof regs / sizeof regs[0])];
      uint32_t v = rng();
      if (r == reg::RDLEN || r == reg::TDLEN) v &= 0x3ff80;
      if (r == reg::RDBAL || r == reg::TDBAL) v = rng() % 2 ? uint32_t(Driver::kRxRing) : v;
      if (r == reg::CTRL) v &= ~kCtrlRst;
      rig.w(r, v);
    } else if (op < 6) {
      rig.r(regs[rng() % (sizeof regs / sizeof regs[0])]);
    } else if (op < 8) {  // scribble on the rings
      uint64_t at = (rng() % 2 ? Driver::kRxRing : Driver::kTxRing) + rng() % 1024;
      rig.ram[at] = uint8_t(rng());
    } else if (op < 9) {
      be->inject(frame_to_guest(rng() % 2000, rng() % 2 ? kGuestMac : kBcastMac));
    } else {
      rig.w(reg::RCTL, kRctlEn | kRctlBam | (rng() % 2 ? kRctlLpe : 0));
      rig.w(reg::TCTL, kTctlEn);
    }
  }
  // Still a working NIC after a reset and a fresh open.
  Driver d2(rig);
  be->inject(frame_to_guest());
  CHECK(!d2.wait_for([](const Bytes&) { return true; }, 1000).empty());
  d2.send(frame_to_guest(20, kBcastMac));
  size_t before = be->nsent();
  d2.send(frame_to_guest(20, kBcastMac));
  CHECK(wait_sent(*be, before + 1));
}
