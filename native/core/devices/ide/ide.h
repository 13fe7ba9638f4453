// IDE channel: two device slots (ATA disk or ATAPI CD-ROM), the task-file
// registers, PIO data transfers, and this channel's half of the PIIX bus-master
// DMA engine (PRD tables in guest memory). Bus-independent; the PIIX3 PCI
// function (piix_ide.h) owns two channels and wires them to ports and IRQs.
//
// Commands complete synchronously: by the time an OUT to the command register
// returns, the device is ready (DRQ for a data phase, or done with an IRQ).
// A DMA command runs when both the command and the bus-master start bit are
// present, whichever comes last.
//
// Threading: every entry point takes the channel mutex; the block backend is
// called with it held (the vCPU waits, as it would on real hardware).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "block/block.h"
#include "bus/device.h"
#include "devices/irq.h"
#include "machine/guest_memory.h"

namespace vireo::ide {

// Status register bits.
constexpr uint8_t kStBsy = 0x80, kStDrdy = 0x40, kStDf = 0x20, kStDsc = 0x10, kStDrq = 0x08, kStErr = 0x01;
// Error register bits.
constexpr uint8_t kErrAbrt = 0x04, kErrIdnf = 0x10, kErrUnc = 0x40;
// Device control bits.
constexpr uint8_t kCtlNien = 0x02, kCtlSrst = 0x04, kCtlHob = 0x80;
// Bus-master registers (per channel, 8 bytes).
constexpr uint8_t kBmCmdStart = 0x01, kBmCmdToMemory = 0x08;
constexpr uint8_t kBmStActive = 0x01, kBmStError = 0x02, kBmStIrq = 0x04;
// ATAPI interrupt reason (sector count register).
constexpr uint8_t kIrCoD = 0x01, kIrIo = 0x02;

enum class DriveKind : uint8_t { None, Disk, Cdrom };

// What the data port / DMA engine is doing.
enum class Xfer : uint8_t {
  None,
  BufferIn,     // PIO in from `reply` (IDENTIFY)
  AtaPioIn,     // READ SECTORS / MULTIPLE: blocks from the disk
  AtaPioOut,    // WRITE SECTORS / MULTIPLE: blocks to the disk
  AtaDmaIn,     // READ DMA: waiting for / running the bus master
  AtaDmaOut,    // WRITE DMA
  AtapiPacket,  // PACKET: collecting the 12-byte command
  AtapiPioIn,   // ATAPI data-in by PIO (reply buffer or CD sectors)
  AtapiDmaIn,   // ATAPI data-in by DMA
};

struct TaskFile {
  uint8_t feature = 0, hob_feature = 0;
  uint8_t nsector = 0, hob_nsector = 0;
  uint8_t lbal = 0, hob_lbal = 0;
  uint8_t lbam = 0, hob_lbam = 0;
  uint8_t lbah = 0, hob_lbah = 0;
  uint8_t select = 0xa0;
};

struct DriveState {
  DriveKind kind = DriveKind::None;
  TaskFile tf;  // every device latches register writes; reads come from the selected one
  uint8_t status = 0;
  uint8_t error = 0;
  // ATA
  uint16_t cyls = 0, heads = 16, spt = 63;  // current CHS translation
  uint8_t mult_sectors = 16;                // READ/WRITE MULTIPLE block (0 = disabled)
  bool write_cache = true;
  bool standby = false;
  uint8_t xfer_mode = 0x0c;  // SET FEATURES 03h value; default PIO 4
  // ATAPI
  uint8_t sense_key = 0, asc = 0, ascq = 0;
  bool unit_attention = false;
  bool locked = false;
  bool tray_open = false;
  uint8_t media_event = 0;  // GET EVENT STATUS NOTIFICATION media event code pending
};

struct ChannelState {
  static constexpr uint32_t kVersion = 1;
  uint32_t version = kVersion;
  std::array<DriveState, 2> drive{};
  uint8_t unit = 0;     // selected device (DEV bit of the last select write)
  uint8_t control = 0;  // device control register
  bool irq_pending = false;
  // Current transfer.
  Xfer xfer = Xfer::None;
  uint8_t xfer_unit = 0;
  bool xfer_from_reply = false;  // source is `reply` rather than the backend
  uint64_t xfer_off = 0;         // byte offset on the backend (or into reply)
  uint64_t xfer_left = 0;        // bytes still to move for the whole command
  uint32_t xfer_block = 512;     // bytes per DRQ block
  std::vector<uint8_t> buf;      // the current DRQ block
  uint32_t buf_pos = 0;
  std::vector<uint8_t> reply;    // small ATAPI / IDENTIFY responses
  uint16_t byte_limit = 0;       // ATAPI PIO byte count limit
  bool packet_dma = false;
  // Bus master.
  uint8_t bm_cmd = 0;
  uint8_t bm_status = 0;
  uint32_t bm_prd = 0;
};

class IdeChannel : public std::enable_shared_from_this<IdeChannel>, public Stateful {
public:
  // Create with std::make_shared: the bus adapters hold a reference.
  // `bus_master_enabled` is asked before every DMA (PCI command bit 2); null = always.
  IdeChannel(IrqLine irq, const GuestMemory* mem, std::function<bool()> bus_master_enabled = {});

  void attach_disk(int unit, std::shared_ptr<block::BlockBackend> disk);
  void attach_cdrom(int unit, std::shared_ptr<block::BlockBackend> media /*null: empty drive*/);

  // Host side of a CD-ROM. eject() fails (returns false, and the guest sees an
  // eject-request event) while the guest has locked the tray.
  bool eject(int unit);
  void change_media(int unit, std::shared_ptr<block::BlockBackend> media);
  bool media_present(int unit);

  // Register access. `reg` 0-7 is the command block (0x1f0-0x1f7), the control
  // block is the single register at 0x3f6; bus-master offsets are 0-7.
  uint32_t cmd_read(unsigned reg, unsigned size);
  void cmd_write(unsigned reg, uint32_t v, unsigned size);
  uint8_t ctl_read();
  void ctl_write(uint8_t v);
  uint8_t bm_read(unsigned off);
  void bm_write(unsigned off, uint8_t v);

  // Bus adapters: register cmd_block() at 0x1f0/0x170 (len 8) and
  // ctl_block() at 0x3f6/0x376 (len 1).
  std::shared_ptr<IoDevice> cmd_block();
  std::shared_ptr<IoDevice> ctl_block();

  void reset();  // power-on / PCI reset of both devices
  ChannelState save();
  void restore(const ChannelState& s);

  // Saved state (machine/state.h, docs/state.md, sections `dev:ide0` and
  // `dev:ide1`): both devices' task files, status, ATA settings, ATAPI sense
  // and media state (whether a medium is in), the current transfer with its
  // buffers (a PIO transfer saved between two data-port accesses goes on where
  // it was) and the bus-master registers. Commands run to completion inside
  // the vCPU's port access, so a paused machine has none half done. The
  // drives themselves (disks, CD-ROM) come from the configuration: a state
  // whose drive kinds differ is refused; a CD-ROM saved empty is emptied.
  StateKind state_kind() const override { return StateKind::Saved; }
  uint32_t state_version() const override { return ChannelState::kVersion; }
  void save(state::StateWriter& w) const override;
  void load(state::StateReader& r) override;

private:
  DriveState& sel() { return s_.drive[s_.unit]; }
  bool present(int u) const { return s_.drive[u].kind != DriveKind::None; }
  uint64_t disk_sectors(int u) const;
  void set_irq();
  void update_irq();
  void set_signature(int u);
  void soft_reset();
  void execute(uint8_t cmd);
  void cmd_done(DriveState& d);
  void cmd_abort(DriveState& d, uint8_t err = kErrAbrt);
  bool decode_lba(DriveState& d, bool lba48, uint64_t& lba, uint64_t& count);
  void start_ata_rw(uint8_t cmd, bool lba48, bool write, bool dma, bool multiple);
  void identify_disk(std::vector<uint8_t>& out);
  void identify_cdrom(std::vector<uint8_t>& out);
  void start_buffer_in(std::vector<uint8_t> data);
  uint32_t data_read(unsigned size);
  void data_write(uint32_t v, unsigned size);
  void pio_block_done();
  bool load_pio_in_block();
  bool fill_from_source(uint8_t* dst, uint64_t n);
  void try_dma();
  void run_dma();
  // ATAPI
  void atapi_packet();
  void atapi_ok();
  void atapi_check(uint8_t key, uint8_t asc, uint8_t ascq);
  void atapi_reply(std::vector<uint8_t> data, uint32_t alloc_len);
  void atapi_read(uint32_t lba, uint32_t count);
  void atapi_start_data_in();
  void atapi_next_pio_chunk();
  bool cd_ready(DriveState& d);
  uint64_t cd_sectors(int u) const;
  std::vector<uint8_t> mode_page(uint8_t page, bool changeable);

  mutable std::mutex mu_;
  ChannelState s_;
  std::array<std::shared_ptr<block::BlockBackend>, 2> backend_{};
  IrqLine irq_;
  const GuestMemory* mem_;
  std::function<bool()> bus_master_enabled_;
  std::vector<uint8_t> dma_tmp_;
};

}  // namespace vireo::ide
