// Intel 82540EM Gigabit Ethernet controller ("e1000"), written from Intel's
// "PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
// Manual" (8254x; section numbers in e1000.cc), over a net::NetBackend.
//
// What a guest sees: PCI 8086:100E rev 3, class 0x020000, subsystem
// 1af4:1100 (as QEMU's e1000, so drivers take the same paths), BAR0 128 KiB
// of memory-mapped registers, BAR1 64 bytes of I/O (IOADDR at 0, IODATA at
// 4), INTA#. A 64-word Microwire EEPROM (MAC, IDs, checksum 0xBABA) behind
// EECD bit-banging and EERD, an M88E1011 PHY at MDIO address 1 behind MDIC,
// one receive and one transmit ring of legacy receive descriptors and
// legacy / TCP-IP context / data transmit descriptors (checksum offload and
// TCP segmentation), receive address filtering (RAL/RAH[16], MTA[128], VFTA),
// the statistics block (read-to-clear), interrupt causes in ICR (read to
// clear) with INTx level = (ICR & IMS) != 0.
//
// Not modelled: interrupt moderation timers (ITR, RDTR/RADV, TIDV/TADV are
// stored; causes are raised at once), flow control frames, the flash BAR,
// wake-up/manageability, 10/100 speeds (the PHY always resolves 1000/full).
//
// Guest errors never reach the host: descriptor rings or buffers outside RAM,
// head/tail past the ring, lengths past the limits are dropped and counted
// (NicCounters::tx_malformed / rx_bad_buffers); the transmit loop handles at
// most one ring's worth of descriptors per doorbell.
//
// Threading: register accesses (vCPU threads) and frames from the backend's
// thread take the device's one mutex; the backend's send() is called with it
// held (allowed by net/backend.h).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/pci/pci.h"
#include "machine/guest_memory.h"
#include "net/backend.h"
#include "net/nic.h"

namespace vireo::e1000 {

using MacAddr = std::array<uint8_t, 6>;

// Register offsets (manual 13.4, table 13-2).
namespace reg {
constexpr uint32_t CTRL = 0x0000, STATUS = 0x0008, EECD = 0x0010, EERD = 0x0014, CTRL_EXT = 0x0018,
                   MDIC = 0x0020, ICR = 0x00c0, ITR = 0x00c4, ICS = 0x00c8, IMS = 0x00d0, IMC = 0x00d8,
                   RCTL = 0x0100, TCTL = 0x0400, TIPG = 0x0410, PBA = 0x1000, RDBAL = 0x2800, RDBAH = 0x2804,
                   RDLEN = 0x2808, RDH = 0x2810, RDT = 0x2818, RDTR = 0x2820, RADV = 0x282c, TDBAL = 0x3800,
                   TDBAH = 0x3804, TDLEN = 0x3808, TDH = 0x3810, TDT = 0x3818, TIDV = 0x3820, TADV = 0x382c,
                   STATS = 0x4000, STATS_END = 0x4100, RXCSUM = 0x5000, MTA = 0x5200, RA = 0x5400, VFTA = 0x5600;
// Statistics (13.7), all read-to-clear; the 64-bit ones clear when the high half is read.
constexpr uint32_t CRCERRS = 0x4000, MPC = 0x4010, RLEC = 0x4040, PRC64 = 0x405c, GPRC = 0x4074, BPRC = 0x4078,
                   MPRC = 0x407c, GPTC = 0x4080, GORCL = 0x4088, GORCH = 0x408c, GOTCL = 0x4090, GOTCH = 0x4094,
                   RNBC = 0x40a0, RUC = 0x40a4, ROC = 0x40ac, TORL = 0x40c0, TORH = 0x40c4, TOTL = 0x40c8,
                   TOTH = 0x40cc, TPR = 0x40d0, TPT = 0x40d4, PTC64 = 0x40d8, MPTC = 0x40f0, BPTC = 0x40f4,
                   TSCTC = 0x40f8, TSCTFC = 0x40fc;
}  // namespace reg

// Bits.
constexpr uint32_t kCtrlFd = 1u << 0, kCtrlSlu = 1u << 6, kCtrlRst = 1u << 26, kCtrlPhyRst = 1u << 31;
constexpr uint32_t kStatusFd = 1u << 0, kStatusLu = 1u << 1, kStatusSpeed1000 = 2u << 6;
constexpr uint32_t kEecdSk = 1u << 0, kEecdCs = 1u << 1, kEecdDi = 1u << 2, kEecdDo = 1u << 3, kEecdReq = 1u << 6,
                   kEecdGnt = 1u << 7, kEecdPres = 1u << 8;
constexpr uint32_t kEerdStart = 1u << 0, kEerdDone = 1u << 4;
constexpr uint32_t kMdicOpWrite = 1u << 26, kMdicOpRead = 2u << 26, kMdicReady = 1u << 28, kMdicIe = 1u << 29,
                   kMdicError = 1u << 30;
// Interrupt causes (ICR/ICS/IMS/IMC).
constexpr uint32_t kIcrTxdw = 1u << 0, kIcrTxqe = 1u << 1, kIcrLsc = 1u << 2, kIcrRxseq = 1u << 3,
                   kIcrRxdmt0 = 1u << 4, kIcrRxo = 1u << 6, kIcrRxt0 = 1u << 7, kIcrMdac = 1u << 9;
constexpr uint32_t kRctlEn = 1u << 1, kRctlSbp = 1u << 2, kRctlUpe = 1u << 3, kRctlMpe = 1u << 4, kRctlLpe = 1u << 5,
                   kRctlBam = 1u << 15, kRctlVfe = 1u << 18, kRctlBsex = 1u << 25, kRctlSecrc = 1u << 26;
constexpr uint32_t kTctlEn = 1u << 1;
constexpr uint32_t kRxcsumIpofld = 1u << 8, kRxcsumTuofld = 1u << 9;
constexpr uint32_t kRahAv = 1u << 31;
// Receive descriptor status/errors (3.2.3).
constexpr uint8_t kRxdStaDd = 0x01, kRxdStaEop = 0x02, kRxdStaIxsm = 0x04, kRxdStaTcpcs = 0x20, kRxdStaIpcs = 0x40;
constexpr uint8_t kRxdErrTcpe = 0x20, kRxdErrIpe = 0x40, kRxdErrRxe = 0x80;
// Transmit descriptor command bits (3.3): legacy CMD / data DCMD / context TUCMD.
constexpr uint8_t kTxdCmdEop = 0x01, kTxdCmdIfcs = 0x02, kTxdCmdIc = 0x04, kTxdCmdTse = 0x04, kTxdCmdRs = 0x08,
                  kTxdCmdDext = 0x20, kTxdCmdVle = 0x40, kTxdCmdIde = 0x80;
constexpr uint8_t kTucmdTcp = 0x01, kTucmdIp = 0x02;
constexpr uint8_t kTxdStaDd = 0x01;
constexpr uint8_t kPoptsIxsm = 0x01, kPoptsTxsm = 0x02;
// Descriptor types (DTYP, bits 23:20 of the command dword).
constexpr uint32_t kDtypContext = 0, kDtypData = 1;

// PHY (M88E1011, at MDIO address 1) registers.
constexpr int kPhyAddr = 1;
constexpr uint16_t kPhyId1 = 0x0141, kPhyId2 = 0x0c20;  // M88E1011: OUI 0x005043, model 2
constexpr uint16_t kBmcrReset = 0x8000, kBmcrAnEnable = 0x1000, kBmcrAnRestart = 0x0200;
constexpr uint16_t kBmsrLink = 0x0004, kBmsrAnComplete = 0x0020;

constexpr uint32_t kEepromChecksum = 0xbaba;
constexpr int kEepromWords = 64;

class E1000 : public pci::PciFunction, public net::Nic, public Stateful {
public:
  static constexpr uint16_t kVendor = 0x8086, kDevice = 0x100e;
  static constexpr uint64_t kMmioSize = 128 << 10, kIoSize = 64;
  struct Options {
    MacAddr mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    bool link_up = true;
    size_t rx_fifo = 64;  // frames held while the guest has no receive descriptors (the packet buffer)
  };

  E1000(std::shared_ptr<net::NetBackend> backend, GuestMemory* mem, Options opt);
  ~E1000() override;

  // Starts the backend (frames for the guest arrive from then on).
  void start();

  // net::Nic
  void set_link(bool up) override;
  bool link_up() const override { return link_up_.load(); }
  net::NicCounters counters() const override;
  void quiesce() override;
  void set_paused(bool paused) override;

  // PCI function reset (machine reset): device registers back to power-on.
  void reset() override;

  // Register access as the guest makes it (BAR0 offset); public for tests.
  uint32_t read_reg(uint32_t off);
  void write_reg(uint32_t off, uint32_t v);
  // A frame for the guest (the backend's receiver; public for tests).
  void receive(std::span<const uint8_t> frame);

  const std::array<uint16_t, kEepromWords>& eeprom() const { return eeprom_; }
  const MacAddr& mac() const { return opt_.mac; }

  // Saved state (machine/state.h, docs/state.md, section `dev:e1000@<slot>`):
  // the BAR0 registers (ring bases, lengths, heads and tails, interrupt
  // registers, filters...; written as the non-zero ones), the EEPROM and its
  // Microwire state, the PHY registers, the statistics, the I/O window
  // address, the link, the frames waiting for receive descriptors and the
  // transmit context and packet being gathered. The descriptors themselves
  // are in guest RAM. PCI config space is the PCI host's.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return 1; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

private:
  class Mmio;
  class Io;
  void reset_locked();
  void update_irq();
  void set_cause(uint32_t bits);
  uint32_t eecd_read() const;
  void eecd_write(uint32_t v);
  void mdic_write(uint32_t v);
  void phy_reset();
  uint32_t stats_read(uint32_t off);
  void stat_add(uint32_t off, uint64_t n = 1);
  void stat_add64(uint32_t lo, uint64_t n);

  // Receive.
  bool accept(std::span<const uint8_t> f) const;
  uint32_t rx_ring_size() const;  // descriptors, 0 = not usable
  uint32_t rx_free() const;
  uint32_t rx_buf_size() const;
  void flush_rx();
  enum class Rx { Done, NoDescriptors, Dropped };
  Rx deliver(const std::vector<uint8_t>& frame);

  // Transmit.
  void transmit();
  struct TxContext {
    uint8_t ipcss = 0, ipcso = 0, tucss = 0, tucso = 0, tucmd = 0, hdrlen = 0;
    uint16_t ipcse = 0, tucse = 0, mss = 0;
    uint32_t paylen = 0;
  };
  struct TxState {
    std::vector<uint8_t> data;  // the packet being gathered (TSO: header + all payload)
    bool tse = false, legacy = false, bad = false;
    uint8_t popts = 0, cso = 0, css = 0, cmd = 0;
    bool first = true;
  };
  void tx_packet();
  // Inserts the checksums POPTS asks for (tso: the TCP/UDP field holds the
  // pseudo-header sum without the length) and sends; false: offsets outside f.
  bool tx_segment(std::vector<uint8_t>& f, uint8_t popts, bool tso);
  void tx_send(const std::vector<uint8_t>& f);

  std::shared_ptr<net::NetBackend> backend_;
  GuestMemory* mem_;
  Options opt_;
  std::atomic<bool> link_up_{true};
  mutable std::mutex mu_;
  bool paused_ = false;  // under mu_

  std::vector<uint32_t> regs_;  // BAR0 as 32-bit registers (plain stored values)
  std::array<uint16_t, kEepromWords> eeprom_{};
  std::array<uint16_t, 32> phy_{};
  std::array<uint64_t, 64> stats_{};  // (off - STATS) / 4
  // Microwire EEPROM state (EECD bit-banging).
  uint32_t eecd_ = 0;
  int ee_bits_ = 0;  // clock edges since chip select
  uint32_t ee_cmd_ = 0;
  uint32_t ioaddr_ = 0;

  std::deque<std::vector<uint8_t>> fifo_;
  TxContext ctx_;
  TxState tx_;

  struct Counters {
    std::atomic<uint64_t> rx_packets{0}, rx_bytes{0}, rx_dropped{0}, tx_packets{0}, tx_bytes{0}, tx_dropped{0},
        tx_malformed{0}, rx_bad_buffers{0};
  } c_;
};

}  // namespace vireo::e1000
