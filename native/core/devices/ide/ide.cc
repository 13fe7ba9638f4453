#include "devices/ide/ide.h"

#include "machine/state.h"

#include <algorithm>
#include <cstring>

namespace vireo::ide {

namespace {

constexpr uint8_t kReady = kStDrdy | kStDsc;
constexpr uint32_t kMaxPrdEntries = 8192;  // stop runaway PRD tables (64 KiB table)

// ATA strings: space padded, two characters per word with the first in the high byte.
void put_ata_string(std::vector<uint8_t>& id, int word, int words, const std::string& s) {
  for (int i = 0; i < words * 2; i++) {
    char c = i < int(s.size()) ? s[i] : ' ';
    id[size_t(word) * 2 + (i ^ 1)] = uint8_t(c);
  }
}
void put_word(std::vector<uint8_t>& id, int word, uint16_t v) {
  id[size_t(word) * 2] = uint8_t(v);
  id[size_t(word) * 2 + 1] = uint8_t(v >> 8);
}

class CmdBlock : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the IdeChannel
  explicit CmdBlock(std::shared_ptr<IdeChannel> c) : c_(std::move(c)) {}
  void read(uint64_t off, std::span<uint8_t> d) override {
    if (off == 0) {
      u64_to_span(c_->cmd_read(0, unsigned(d.size())), d);
      return;
    }
    for (size_t i = 0; i < d.size(); i++) d[i] = off + i < 8 ? uint8_t(c_->cmd_read(unsigned(off + i), 1)) : 0xff;
  }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    if (off == 0) {
      c_->cmd_write(0, uint32_t(span_to_u64(d)), unsigned(d.size()));
      return;
    }
    for (size_t i = 0; i < d.size() && off + i < 8; i++) c_->cmd_write(unsigned(off + i), d[i], 1);
  }

private:
  std::shared_ptr<IdeChannel> c_;
};

class CtlBlock : public IoDevice {
public:
  StateKind state_kind() const override { return StateKind::None; }  // saved by the IdeChannel
  explicit CtlBlock(std::shared_ptr<IdeChannel> c) : c_(std::move(c)) {}
  void read(uint64_t off, std::span<uint8_t> d) override {
    std::fill(d.begin(), d.end(), 0xff);
    if (off == 0 && !d.empty()) d[0] = c_->ctl_read();
  }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    if (off == 0 && !d.empty()) c_->ctl_write(d[0]);
  }

private:
  std::shared_ptr<IdeChannel> c_;
};

inline void be16(std::vector<uint8_t>& v, size_t at, uint16_t x) {
  v[at] = uint8_t(x >> 8);
  v[at + 1] = uint8_t(x);
}
inline void be32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  v[at] = uint8_t(x >> 24);
  v[at + 1] = uint8_t(x >> 16);
  v[at + 2] = uint8_t(x >> 8);
  v[at + 3] = uint8_t(x);
}
inline uint16_t get_be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline uint32_t get_be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }

// CD address as [0, M, S, F] (MSF) or a big-endian LBA.
void put_cd_addr(std::vector<uint8_t>& v, size_t at, uint32_t lba, bool msf) {
  if (!msf) {
    be32(v, at, lba);
    return;
  }
  uint32_t f = lba + 150;
  v[at] = 0;
  v[at + 1] = uint8_t(f / (75 * 60));
  v[at + 2] = uint8_t((f / 75) % 60);
  v[at + 3] = uint8_t(f % 75);
}

// SCSI / MMC opcodes and sense data used below.
enum : uint8_t {
  kTestUnitReady = 0x00, kRequestSense = 0x03, kInquiry = 0x12, kModeSense6 = 0x1a, kStartStopUnit = 0x1b,
  kPreventAllow = 0x1e, kReadCapacity = 0x25, kRead10 = 0x28, kSeek10 = 0x2b, kReadToc = 0x43,
  kGetConfiguration = 0x46, kGetEventStatus = 0x4a, kReadDiscInfo = 0x51, kModeSense10 = 0x5a,
  kRead12 = 0xa8, kSetCdSpeed = 0xbb, kMechanismStatus = 0xbd,
};
enum : uint8_t { kSenseNone = 0, kSenseNotReady = 2, kSenseMediumError = 3, kSenseIllegalRequest = 5, kSenseUnitAttention = 6 };
enum : uint8_t {
  kAscInvalidOpcode = 0x20, kAscLbaOutOfRange = 0x21, kAscInvalidField = 0x24, kAscMediumChanged = 0x28,
  kAscSavingNotSupported = 0x39, kAscMediumNotPresent = 0x3a, kAscRemovalPrevented = 0x53,
};

}  // namespace

IdeChannel::IdeChannel(IrqLine irq, const GuestMemory* mem, std::function<bool()> bus_master_enabled)
    : irq_(std::move(irq)), mem_(mem), bus_master_enabled_(std::move(bus_master_enabled)) {}

std::shared_ptr<IoDevice> IdeChannel::cmd_block() { return std::make_shared<CmdBlock>(shared_from_this()); }
std::shared_ptr<IoDevice> IdeChannel::ctl_block() { return std::make_shared<CtlBlock>(shared_from_this()); }

void IdeChannel::attach_disk(int unit, std::shared_ptr<block::BlockBackend> disk) {
  std::lock_guard g(mu_);
  if (unit < 0 || unit > 1 || !disk) return;
  backend_[unit] = std::move(disk);
  s_.drive[unit] = DriveState{};
  s_.drive[unit].kind = DriveKind::Disk;
  uint64_t n = disk_sectors(unit);
  s_.drive[unit].cyls = uint16_t(std::clamp<uint64_t>(n / (16 * 63), 1, 16383));
  set_signature(unit);
}

void IdeChannel::attach_cdrom(int unit, std::shared_ptr<block::BlockBackend> media) {
  std::lock_guard g(mu_);
  if (unit < 0 || unit > 1) return;
  backend_[unit] = std::move(media);
  s_.drive[unit] = DriveState{};
  s_.drive[unit].kind = DriveKind::Cdrom;
  set_signature(unit);
}

uint64_t IdeChannel::disk_sectors(int u) const { return backend_[u] ? backend_[u]->size() / 512 : 0; }
uint64_t IdeChannel::cd_sectors(int u) const { return backend_[u] ? backend_[u]->size() / 2048 : 0; }

bool IdeChannel::eject(int unit) {
  std::lock_guard g(mu_);
  if (unit < 0 || unit > 1 || s_.drive[unit].kind != DriveKind::Cdrom) return false;
  DriveState& d = s_.drive[unit];
  if (d.locked) {
    d.media_event = 1;  // eject request: the guest decides
    return false;
  }
  backend_[unit].reset();
  d.tray_open = true;
  d.media_event = 3;  // media removal
  return true;
}

void IdeChannel::change_media(int unit, std::shared_ptr<block::BlockBackend> media) {
  std::lock_guard g(mu_);
  if (unit < 0 || unit > 1 || s_.drive[unit].kind != DriveKind::Cdrom) return;
  DriveState& d = s_.drive[unit];
  backend_[unit] = std::move(media);
  if (backend_[unit]) {
    d.tray_open = false;
    d.unit_attention = true;
    d.media_event = 2;  // new media
  } else {
    d.tray_open = true;
    d.media_event = 3;
  }
}

bool IdeChannel::media_present(int unit) {
  std::lock_guard g(mu_);
  return unit >= 0 && unit <= 1 && backend_[unit] && !s_.drive[unit].tray_open;
}

void IdeChannel::reset() {
  std::lock_guard g(mu_);
  for (int u = 0; u < 2; u++) {
    DriveKind k = s_.drive[u].kind;
    DriveState fresh;
    fresh.kind = k;
    fresh.cyls = s_.drive[u].cyls;
    fresh.tray_open = s_.drive[u].tray_open;
    s_.drive[u] = fresh;
    if (k != DriveKind::None) set_signature(u);
  }
  s_.unit = 0;
  s_.control = 0;
  s_.irq_pending = false;
  s_.xfer = Xfer::None;
  s_.bm_cmd = 0;
  s_.bm_status = 0;
  s_.bm_prd = 0;
  update_irq();
}

ChannelState IdeChannel::save() {
  std::lock_guard g(mu_);
  return s_;
}

void IdeChannel::restore(const ChannelState& s) {
  std::lock_guard g(mu_);
  s_ = s;
  s_.version = ChannelState::kVersion;
  update_irq();
}

namespace {
constexpr uint32_t kMaxSavedBuffer = 1u << 20;  // DRQ blocks and replies are far smaller
}

void IdeChannel::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  for (int u = 0; u < 2; u++) {
    const DriveState& d = s_.drive[u];
    w.u8(uint8_t(d.kind));
    w.boolean(backend_[u] != nullptr);
    for (uint8_t b : {d.tf.feature, d.tf.hob_feature, d.tf.nsector, d.tf.hob_nsector, d.tf.lbal, d.tf.hob_lbal,
                      d.tf.lbam, d.tf.hob_lbam, d.tf.lbah, d.tf.hob_lbah, d.tf.select, d.status, d.error})
      w.u8(b);
    w.u16(d.cyls);
    w.u16(d.heads);
    w.u16(d.spt);
    w.u8(d.mult_sectors);
    w.boolean(d.write_cache);
    w.boolean(d.standby);
    w.u8(d.xfer_mode);
    w.u8(d.sense_key);
    w.u8(d.asc);
    w.u8(d.ascq);
    w.boolean(d.unit_attention);
    w.boolean(d.locked);
    w.boolean(d.tray_open);
    w.u8(d.media_event);
  }
  w.u8(s_.unit);
  w.u8(s_.control);
  w.boolean(s_.irq_pending);
  w.u8(uint8_t(s_.xfer));
  w.u8(s_.xfer_unit);
  w.boolean(s_.xfer_from_reply);
  w.u64(s_.xfer_off);
  w.u64(s_.xfer_left);
  w.u32(s_.xfer_block);
  w.blob(s_.buf);
  w.u32(s_.buf_pos);
  w.blob(s_.reply);
  w.u16(s_.byte_limit);
  w.boolean(s_.packet_dma);
  w.u8(s_.bm_cmd);
  w.u8(s_.bm_status);
  w.u32(s_.bm_prd);
}

void IdeChannel::load(state::StateReader& r) {
  if (r.version() != ChannelState::kVersion)
    r.fail("unknown version (this Vireo has " + std::to_string(ChannelState::kVersion) + ")");
  ChannelState n;
  std::array<bool, 2> media{};
  std::array<DriveKind, 2> have;
  {
    std::lock_guard g(mu_);
    have = {s_.drive[0].kind, s_.drive[1].kind};
  }
  auto max = [&](uint64_t v, uint64_t m, const char* what) {
    if (v > m) r.fail(std::string(what) + " is " + std::to_string(v) + ", at most " + std::to_string(m));
  };
  static const char* kKinds[] = {"no drive", "a disk", "a CD-ROM drive"};
  for (int u = 0; u < 2; u++) {
    DriveState& d = n.drive[u];
    uint8_t kind = r.u8();
    max(kind, uint8_t(DriveKind::Cdrom), "drive kind");
    d.kind = DriveKind(kind);
    if (d.kind != have[u])
      r.fail(std::string("the state has ") + kKinds[kind] + " as " + (u ? "slave" : "master") + ", this machine has " +
             kKinds[int(have[u])]);
    media[u] = r.boolean();
    for (uint8_t* b : {&d.tf.feature, &d.tf.hob_feature, &d.tf.nsector, &d.tf.hob_nsector, &d.tf.lbal, &d.tf.hob_lbal,
                       &d.tf.lbam, &d.tf.hob_lbam, &d.tf.lbah, &d.tf.hob_lbah, &d.tf.select, &d.status, &d.error})
      *b = r.u8();
    d.cyls = r.u16();
    d.heads = r.u16();
    d.spt = r.u16();
    max(d.cyls, 65535, "cylinders");
    if (d.heads < 1 || d.heads > 16 || d.spt < 1 || d.spt > 255) r.fail("CHS geometry out of range");
    d.mult_sectors = r.u8();
    max(d.mult_sectors, 16, "READ/WRITE MULTIPLE block");
    if (d.mult_sectors & (d.mult_sectors - 1)) r.fail("READ/WRITE MULTIPLE block is not a power of two");
    d.write_cache = r.boolean();
    d.standby = r.boolean();
    d.xfer_mode = r.u8();
    d.sense_key = r.u8();
    max(d.sense_key, 0x0f, "sense key");
    d.asc = r.u8();
    d.ascq = r.u8();
    d.unit_attention = r.boolean();
    d.locked = r.boolean();
    d.tray_open = r.boolean();
    d.media_event = r.u8();
    max(d.media_event, 4, "media event");
    if (d.kind == DriveKind::Disk && !media[u]) r.fail("a disk without its image");
  }
  n.unit = r.u8();
  max(n.unit, 1, "selected device");
  n.control = r.u8();
  n.irq_pending = r.boolean();
  uint8_t xfer = r.u8();
  max(xfer, uint8_t(Xfer::AtapiDmaIn), "transfer kind");
  n.xfer = Xfer(xfer);
  n.xfer_unit = r.u8();
  max(n.xfer_unit, 1, "transfer device");
  if (n.xfer != Xfer::None && n.drive[n.xfer_unit].kind == DriveKind::None) r.fail("a transfer on no drive");
  n.xfer_from_reply = r.boolean();
  n.xfer_off = r.u64();
  n.xfer_left = r.u64();
  n.xfer_block = r.u32();
  if (n.xfer_block == 0) r.fail("transfer block size is 0");
  max(n.xfer_block, kMaxSavedBuffer, "transfer block size");
  n.buf = r.blob(kMaxSavedBuffer);
  n.buf_pos = r.u32();
  max(n.buf_pos, n.buf.size(), "data buffer position");
  n.reply = r.blob(kMaxSavedBuffer);
  if (n.xfer_from_reply) max(n.xfer_off, n.reply.size(), "reply position");
  n.byte_limit = r.u16();
  n.packet_dma = r.boolean();
  n.bm_cmd = r.u8();
  n.bm_status = r.u8();
  n.bm_prd = r.u32();
  r.finish();
  for (int u = 0; u < 2; u++) {
    if (n.drive[u].kind == DriveKind::Cdrom && media[u] && !backend_[u])
      r.fail(std::string("the state has a CD in the ") + (u ? "slave" : "master") + " drive, this machine has none");
  }
  std::lock_guard g(mu_);
  s_ = n;
  for (int u = 0; u < 2; u++)
    if (s_.drive[u].kind == DriveKind::Cdrom && !media[u]) backend_[u].reset();
  update_irq();
}

// ---------------------------------------------------------------- interrupts, reset

void IdeChannel::set_irq() {
  s_.irq_pending = true;
  s_.bm_status |= kBmStIrq;
  update_irq();
}

void IdeChannel::update_irq() { irq_.set(s_.irq_pending && !(s_.control & kCtlNien)); }

// Reset signature (ATA-6 9.12): count/LBA low 1; LBA mid/high 00/00 for ATA,
// 14h/EBh for packet devices.
void IdeChannel::set_signature(int u) {
  DriveState& d = s_.drive[u];
  d.tf.nsector = d.tf.lbal = 1;
  bool cd = d.kind == DriveKind::Cdrom;
  d.tf.lbam = cd ? 0x14 : 0;
  d.tf.lbah = cd ? 0xeb : 0;
  d.tf.select = uint8_t(0xa0 | (u << 4));
  d.error = 0x01;  // diagnostics passed
  d.status = cd ? 0 : kReady;
}

void IdeChannel::soft_reset() {
  for (int u = 0; u < 2; u++) {
    if (!present(u)) continue;
    set_signature(u);
    s_.drive[u].mult_sectors = 16;
    s_.drive[u].standby = false;
  }
  s_.unit = 0;
  s_.xfer = Xfer::None;
  s_.irq_pending = false;
  update_irq();
}

// ---------------------------------------------------------------- registers

uint32_t IdeChannel::cmd_read(unsigned reg, unsigned size) {
  std::lock_guard g(mu_);
  if (!present(0) && !present(1)) return 0;
  DriveState& d = sel();
  bool hob = s_.control & kCtlHob;
  switch (reg) {
    case 0:
      return data_read(size);
    case 1:
      return present(s_.unit) ? (hob ? 0 : d.error) : 0;
    case 2:
      return hob ? d.tf.hob_nsector : d.tf.nsector;
    case 3:
      return hob ? d.tf.hob_lbal : d.tf.lbal;
    case 4:
      return hob ? d.tf.hob_lbam : d.tf.lbam;
    case 5:
      return hob ? d.tf.hob_lbah : d.tf.lbah;
    case 6:
      return d.tf.select;
    case 7:
      if (!present(s_.unit)) return 0;
      s_.irq_pending = false;
      update_irq();
      return d.status;
    default:
      return 0xff;
  }
}

void IdeChannel::cmd_write(unsigned reg, uint32_t v, unsigned size) {
  std::lock_guard g(mu_);
  if (reg == 0) {
    data_write(v, size);
    return;
  }
  uint8_t b = uint8_t(v);
  if (reg >= 1 && reg <= 5) s_.control &= uint8_t(~kCtlHob);  // a register write clears HOB
  for (auto& d : s_.drive) {
    TaskFile& t = d.tf;
    switch (reg) {
      case 1: t.hob_feature = t.feature; t.feature = b; break;
      case 2: t.hob_nsector = t.nsector; t.nsector = b; break;
      case 3: t.hob_lbal = t.lbal; t.lbal = b; break;
      case 4: t.hob_lbam = t.lbam; t.lbam = b; break;
      case 5: t.hob_lbah = t.lbah; t.lbah = b; break;
      case 6: t.select = b; break;
      default: break;
    }
  }
  if (reg == 6) s_.unit = (b >> 4) & 1;
  if (reg == 7) {
    if (s_.control & kCtlSrst) return;  // in reset: commands are ignored
    if (b == 0x90) {                     // EXECUTE DEVICE DIAGNOSTIC: both devices answer
      for (int u = 0; u < 2; u++)
        if (present(u)) set_signature(u);
      s_.unit = 0;
      s_.xfer = Xfer::None;
      set_irq();
      return;
    }
    if (!present(s_.unit)) return;
    execute(b);
  }
}

uint8_t IdeChannel::ctl_read() {
  std::lock_guard g(mu_);
  if (!present(0) && !present(1)) return 0;
  return present(s_.unit) ? sel().status : 0;
}

void IdeChannel::ctl_write(uint8_t v) {
  std::lock_guard g(mu_);
  bool was_reset = s_.control & kCtlSrst;
  s_.control = v;
  if ((v & kCtlSrst) && !was_reset) {
    for (auto& d : s_.drive)
      if (d.kind != DriveKind::None) d.status = kStBsy;
    s_.xfer = Xfer::None;
    s_.irq_pending = false;
  } else if (!(v & kCtlSrst) && was_reset) {
    soft_reset();
  }
  update_irq();
}

// ---------------------------------------------------------------- commands

void IdeChannel::cmd_done(DriveState& d) {
  d.status = kReady;
  d.error = 0;
  s_.xfer = Xfer::None;
  set_irq();
}

void IdeChannel::cmd_abort(DriveState& d, uint8_t err) {
  d.status = kReady | kStErr;
  d.error = err;
  s_.xfer = Xfer::None;
  set_irq();
}

void IdeChannel::execute(uint8_t cmd) {
  DriveState& d = sel();
  bool disk = d.kind == DriveKind::Disk;
  s_.xfer = Xfer::None;
  d.error = 0;
  s_.irq_pending = false;
  update_irq();
  if (!disk) {
    // Packet devices accept only a few ATA commands.
    switch (cmd) {
      case 0xa0: {  // PACKET
        s_.packet_dma = d.tf.feature & 1;
        s_.byte_limit = uint16_t(d.tf.lbam | (d.tf.lbah << 8));
        s_.xfer = Xfer::AtapiPacket;
        s_.xfer_unit = s_.unit;
        s_.buf.assign(12, 0);
        s_.buf_pos = 0;
        d.tf.nsector = kIrCoD;
        d.status = kReady | kStDrq;
        return;
      }
      case 0xa1: {  // IDENTIFY PACKET DEVICE
        std::vector<uint8_t> id(512, 0);
        identify_cdrom(id);
        start_buffer_in(std::move(id));
        return;
      }
      case 0x08:  // DEVICE RESET
        set_signature(s_.unit);
        return;
      case 0xec:  // IDENTIFY DEVICE: abort with the packet signature so hosts look again
        set_signature(s_.unit);
        cmd_abort(d);
        d.status = kStDrdy | kStErr;
        return;
      case 0xef:  // SET FEATURES
        if (d.tf.feature == 0x03) {
          d.xfer_mode = d.tf.nsector;
          cmd_done(d);
        } else if (d.tf.feature == 0x02 || d.tf.feature == 0x82 || d.tf.feature == 0x66 || d.tf.feature == 0xcc) {
          cmd_done(d);
        } else {
          cmd_abort(d);
        }
        return;
      case 0xe0: case 0xe1: case 0xe2: case 0xe3: case 0xe5: case 0xe6: case 0xe7: case 0xe8:
        // power management and flush on a CD: accepted
        if (cmd == 0xe5) d.tf.nsector = 0xff;
        cmd_done(d);
        return;
      default:
        cmd_abort(d);
        return;
    }
  }

  switch (cmd) {
    case 0xec: {  // IDENTIFY DEVICE
      std::vector<uint8_t> id(512, 0);
      identify_disk(id);
      start_buffer_in(std::move(id));
      return;
    }
    case 0x20: case 0x21: start_ata_rw(cmd, false, false, false, false); return;
    case 0x24: start_ata_rw(cmd, true, false, false, false); return;
    case 0x30: case 0x31: start_ata_rw(cmd, false, true, false, false); return;
    case 0x34: start_ata_rw(cmd, true, true, false, false); return;
    case 0xc4: start_ata_rw(cmd, false, false, false, true); return;
    case 0x29: start_ata_rw(cmd, true, false, false, true); return;
    case 0xc5: start_ata_rw(cmd, false, true, false, true); return;
    case 0x39: start_ata_rw(cmd, true, true, false, true); return;
    case 0xc8: case 0xc9: start_ata_rw(cmd, false, false, true, false); return;
    case 0x25: start_ata_rw(cmd, true, false, true, false); return;
    case 0xca: case 0xcb: start_ata_rw(cmd, false, true, true, false); return;
    case 0x35: start_ata_rw(cmd, true, true, true, false); return;
    case 0x40: case 0x41: case 0x42: {  // READ VERIFY SECTORS (EXT)
      uint64_t lba, count;
      if (decode_lba(d, cmd == 0x42, lba, count)) cmd_done(d);
      return;
    }
    case 0xc6: {  // SET MULTIPLE MODE
      uint8_t n = d.tf.nsector;
      if (n > 16 || (n & (n - 1))) {
        cmd_abort(d);
      } else {
        d.mult_sectors = n;
        cmd_done(d);
      }
      return;
    }
    case 0x91: {  // INITIALIZE DEVICE PARAMETERS
      uint16_t heads = uint16_t((d.tf.select & 0x0f) + 1), spt = d.tf.nsector;
      if (spt == 0) {
        cmd_abort(d);
        return;
      }
      d.heads = heads;
      d.spt = spt;
      d.cyls = uint16_t(std::clamp<uint64_t>(disk_sectors(s_.unit) / (uint64_t(heads) * spt), 1, 65535));
      cmd_done(d);
      return;
    }
    case 0xe7: case 0xea:  // FLUSH CACHE (EXT)
      if (backend_[s_.unit]->flush() != 0) cmd_abort(d);
      else cmd_done(d);
      return;
    case 0xef:  // SET FEATURES
      switch (d.tf.feature) {
        case 0x02: d.write_cache = true; break;
        case 0x82: d.write_cache = false; break;
        case 0x03: {
          uint8_t m = d.tf.nsector;
          bool ok = m <= 1 || (m >= 0x08 && m <= 0x0c) || (m >= 0x20 && m <= 0x22) || (m >= 0x40 && m <= 0x45);
          if (!ok) {
            cmd_abort(d);
            return;
          }
          d.xfer_mode = m;
          break;
        }
        case 0x55: case 0xaa: case 0x66: case 0xcc: break;  // look-ahead, defaults
        default:
          cmd_abort(d);
          return;
      }
      cmd_done(d);
      return;
    case 0xe0: case 0x94: case 0xe2: case 0x96: case 0xe6: case 0x99:  // STANDBY (IMMEDIATE), SLEEP
      d.standby = true;
      cmd_done(d);
      return;
    case 0xe1: case 0x95: case 0xe3: case 0x97:  // IDLE (IMMEDIATE)
      d.standby = false;
      cmd_done(d);
      return;
    case 0xe5: case 0x98:  // CHECK POWER MODE
      cmd_done(d);
      d.tf.nsector = d.standby ? 0x00 : 0xff;
      return;
    case 0x70:  // SEEK
      cmd_done(d);
      return;
    case 0xf8: case 0x27: {  // READ NATIVE MAX ADDRESS (EXT)
      uint64_t max = disk_sectors(s_.unit) ? disk_sectors(s_.unit) - 1 : 0;
      if (cmd == 0xf8) max = std::min<uint64_t>(max, 0x0fffffff);
      d.tf.lbal = uint8_t(max);
      d.tf.lbam = uint8_t(max >> 8);
      d.tf.lbah = uint8_t(max >> 16);
      if (cmd == 0xf8) {
        d.tf.select = uint8_t((d.tf.select & 0xf0) | ((max >> 24) & 0x0f));
      } else {
        d.tf.hob_lbal = uint8_t(max >> 24);
        d.tf.hob_lbam = uint8_t(max >> 32);
        d.tf.hob_lbah = uint8_t(max >> 40);
      }
      cmd_done(d);
      return;
    }
    default:
      if (cmd >= 0x10 && cmd <= 0x1f) {  // RECALIBRATE
        cmd_done(d);
        return;
      }
      cmd_abort(d);
      return;
  }
}

bool IdeChannel::decode_lba(DriveState& d, bool lba48, uint64_t& lba, uint64_t& count) {
  const TaskFile& t = d.tf;
  if (lba48) {
    lba = uint64_t(t.lbal) | (uint64_t(t.lbam) << 8) | (uint64_t(t.lbah) << 16) | (uint64_t(t.hob_lbal) << 24) |
          (uint64_t(t.hob_lbam) << 32) | (uint64_t(t.hob_lbah) << 40);
    count = uint64_t(t.nsector) | (uint64_t(t.hob_nsector) << 8);
    if (count == 0) count = 65536;
  } else {
    if (t.select & 0x40) {
      lba = uint64_t(t.lbal) | (uint64_t(t.lbam) << 8) | (uint64_t(t.lbah) << 16) | (uint64_t(t.select & 0x0f) << 24);
    } else {
      // CHS: sectors count from 1; heads and sectors per track as last set.
      uint32_t cyl = t.lbam | (t.lbah << 8), head = t.select & 0x0f, sect = t.lbal;
      if (sect == 0 || sect > d.spt || head >= d.heads) {
        cmd_abort(d, kErrIdnf);
        return false;
      }
      lba = (uint64_t(cyl) * d.heads + head) * d.spt + sect - 1;
    }
    count = t.nsector ? t.nsector : 256;
  }
  uint64_t total = disk_sectors(s_.unit);
  if (lba >= total || count > total - lba) {
    cmd_abort(d, kErrIdnf);
    return false;
  }
  return true;
}

void IdeChannel::start_ata_rw(uint8_t cmd, bool lba48, bool write, bool dma, bool multiple) {
  DriveState& d = sel();
  if (multiple && d.mult_sectors == 0) {
    cmd_abort(d);
    return;
  }
  if (write && backend_[s_.unit]->read_only()) {
    cmd_abort(d);
    return;
  }
  uint64_t lba, count;
  if (!decode_lba(d, lba48, lba, count)) return;
  s_.xfer_unit = s_.unit;
  s_.xfer_from_reply = false;
  s_.xfer_off = lba * 512;
  s_.xfer_left = count * 512;
  s_.xfer_block = (multiple ? d.mult_sectors : 1) * 512u;
  if (dma) {
    s_.xfer = write ? Xfer::AtaDmaOut : Xfer::AtaDmaIn;
    d.status = kReady | kStDrq;
    try_dma();
    return;
  }
  if (write) {
    s_.xfer = Xfer::AtaPioOut;
    s_.buf.assign(std::min<uint64_t>(s_.xfer_block, s_.xfer_left), 0);
    s_.buf_pos = 0;
    d.status = kReady | kStDrq;  // first block: no interrupt
    return;
  }
  s_.xfer = Xfer::AtaPioIn;
  load_pio_in_block();
}

void IdeChannel::start_buffer_in(std::vector<uint8_t> data) {
  DriveState& d = sel();
  s_.xfer = Xfer::BufferIn;
  s_.xfer_unit = s_.unit;
  s_.buf = std::move(data);
  s_.buf_pos = 0;
  d.status = kReady | kStDrq;
  set_irq();
}

// Reads the next DRQ block from the source; false (and an error) on failure.
bool IdeChannel::load_pio_in_block() {
  DriveState& d = s_.drive[s_.xfer_unit];
  uint64_t n = std::min<uint64_t>(s_.xfer_block, s_.xfer_left);
  s_.buf.resize(n);
  s_.buf_pos = 0;
  if (!fill_from_source(s_.buf.data(), n)) {
    cmd_abort(d, kErrUnc | kErrAbrt);
    return false;
  }
  d.status = kReady | kStDrq;
  set_irq();
  return true;
}

bool IdeChannel::fill_from_source(uint8_t* dst, uint64_t n) {
  if (s_.xfer_from_reply) {
    if (s_.xfer_off + n > s_.reply.size()) return false;
    std::memcpy(dst, s_.reply.data() + s_.xfer_off, n);
  } else {
    auto& be = backend_[s_.xfer_unit];
    if (!be || be->pread(dst, n, s_.xfer_off) != 0) return false;
  }
  s_.xfer_off += n;
  s_.xfer_left -= n;
  return true;
}

uint32_t IdeChannel::data_read(unsigned size) {
  if ((s_.xfer != Xfer::BufferIn && s_.xfer != Xfer::AtaPioIn && s_.xfer != Xfer::AtapiPioIn) ||
      s_.unit != s_.xfer_unit)
    return 0;
  uint32_t v = 0;
  for (unsigned i = 0; i < size && s_.buf_pos < s_.buf.size(); i++) v |= uint32_t(s_.buf[s_.buf_pos++]) << (8 * i);
  if (s_.buf_pos >= s_.buf.size()) pio_block_done();
  return v;
}

void IdeChannel::data_write(uint32_t v, unsigned size) {
  if ((s_.xfer != Xfer::AtaPioOut && s_.xfer != Xfer::AtapiPacket) || s_.unit != s_.xfer_unit) return;
  for (unsigned i = 0; i < size && s_.buf_pos < s_.buf.size(); i++) s_.buf[s_.buf_pos++] = uint8_t(v >> (8 * i));
  if (s_.buf_pos >= s_.buf.size()) pio_block_done();
}

void IdeChannel::pio_block_done() {
  DriveState& d = s_.drive[s_.xfer_unit];
  switch (s_.xfer) {
    case Xfer::BufferIn:
      d.status = kReady;
      s_.xfer = Xfer::None;
      break;
    case Xfer::AtaPioIn:
      if (s_.xfer_left == 0) {
        d.status = kReady;
        s_.xfer = Xfer::None;
      } else {
        load_pio_in_block();
      }
      break;
    case Xfer::AtaPioOut: {
      auto& be = backend_[s_.xfer_unit];
      if (be->pwrite(s_.buf.data(), s_.buf.size(), s_.xfer_off) != 0) {
        cmd_abort(d, kErrAbrt);
        return;
      }
      s_.xfer_off += s_.buf.size();
      s_.xfer_left -= s_.buf.size();
      if (s_.xfer_left == 0) {
        if (!d.write_cache) be->flush();
        cmd_done(d);
      } else {
        s_.buf.assign(std::min<uint64_t>(s_.xfer_block, s_.xfer_left), 0);
        s_.buf_pos = 0;
        d.status = kReady | kStDrq;
        set_irq();
      }
      break;
    }
    case Xfer::AtapiPacket:
      atapi_packet();
      break;
    case Xfer::AtapiPioIn:
      if (s_.xfer_left == 0) atapi_ok();
      else atapi_next_pio_chunk();
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- bus master

uint8_t IdeChannel::bm_read(unsigned off) {
  std::lock_guard g(mu_);
  switch (off) {
    case 0: return s_.bm_cmd;
    case 2: return s_.bm_status;
    case 4: case 5: case 6: case 7: return uint8_t(s_.bm_prd >> (8 * (off - 4)));
    default: return 0;
  }
}

void IdeChannel::bm_write(unsigned off, uint8_t v) {
  std::lock_guard g(mu_);
  switch (off) {
    case 0: {
      bool was = s_.bm_cmd & kBmCmdStart;
      s_.bm_cmd = v & (kBmCmdStart | kBmCmdToMemory);
      if ((v & kBmCmdStart) && !was) {
        s_.bm_status |= kBmStActive;
        try_dma();
      } else if (!(v & kBmCmdStart)) {
        s_.bm_status &= uint8_t(~kBmStActive);
      }
      break;
    }
    case 2:
      // Bits 5-6 (drive DMA capable) are plain storage, 1-2 write-one-to-clear, 0 read-only.
      s_.bm_status = uint8_t((s_.bm_status & (kBmStActive | kBmStError | kBmStIrq)) | (v & 0x60));
      s_.bm_status &= uint8_t(~(v & (kBmStError | kBmStIrq)));
      break;
    case 4: case 5: case 6: case 7: {
      unsigned sh = 8 * (off - 4);
      s_.bm_prd = (s_.bm_prd & ~(0xffu << sh)) | (uint32_t(v) << sh);
      s_.bm_prd &= ~3u;
      break;
    }
    default:
      break;
  }
}

void IdeChannel::try_dma() {
  bool pending = s_.xfer == Xfer::AtaDmaIn || s_.xfer == Xfer::AtaDmaOut || s_.xfer == Xfer::AtapiDmaIn;
  if (!pending || !(s_.bm_cmd & kBmCmdStart)) return;
  if (bus_master_enabled_ && !bus_master_enabled_()) return;
  run_dma();
}

void IdeChannel::run_dma() {
  DriveState& d = s_.drive[s_.xfer_unit];
  bool to_mem = s_.xfer != Xfer::AtaDmaOut;
  bool atapi = s_.xfer == Xfer::AtapiDmaIn;
  uint32_t prd = s_.bm_prd;
  bool ok = mem_ != nullptr;
  bool eot = false;
  for (uint32_t n = 0; ok && s_.xfer_left > 0 && !eot && n < kMaxPrdEntries; n++, prd += 8) {
    uint32_t entry[2];
    if (!mem_->read(prd, entry, 8)) {
      ok = false;
      break;
    }
    uint32_t addr = entry[0] & ~1u;
    uint32_t len = entry[1] & 0xfffe;
    if (len == 0) len = 0x10000;
    eot = entry[1] & 0x80000000u;
    uint64_t chunk = std::min<uint64_t>(len, s_.xfer_left);
    dma_tmp_.resize(chunk);
    if (to_mem) {
      if (!fill_from_source(dma_tmp_.data(), chunk) || !mem_->write(addr, dma_tmp_.data(), chunk)) ok = false;
    } else {
      auto& be = backend_[s_.xfer_unit];
      if (!mem_->read(addr, dma_tmp_.data(), chunk) || be->pwrite(dma_tmp_.data(), chunk, s_.xfer_off) != 0) {
        ok = false;
      } else {
        s_.xfer_off += chunk;
        s_.xfer_left -= chunk;
      }
    }
  }
  s_.bm_status &= uint8_t(~kBmStActive);
  if (!ok || s_.xfer_left > 0) {
    // Unreadable PRD/target memory, a backend error, or a PRD table shorter
    // than the transfer: fail the command and flag the bus master.
    s_.bm_status |= kBmStError;
    if (atapi) {
      atapi_check(kSenseMediumError, 0x11, 0);  // unrecovered read error
    } else {
      cmd_abort(d, kErrAbrt | (to_mem ? kErrUnc : 0));
    }
    return;
  }
  if (atapi) {
    atapi_ok();
  } else {
    if (!to_mem && !d.write_cache) backend_[s_.xfer_unit]->flush();
    cmd_done(d);
  }
}

// ---------------------------------------------------------------- IDENTIFY

void IdeChannel::identify_disk(std::vector<uint8_t>& id) {
  DriveState& d = sel();
  uint64_t total = disk_sectors(s_.unit);
  uint16_t cyls = uint16_t(std::clamp<uint64_t>(total / (16 * 63), 1, 16383));
  put_word(id, 0, 0x0040);  // fixed, not removable
  put_word(id, 1, cyls);
  put_word(id, 3, 16);
  put_word(id, 6, 63);
  put_ata_string(id, 10, 10, "VIREO" + std::to_string(1000 + s_.unit));
  put_ata_string(id, 23, 4, "1.0");
  put_ata_string(id, 27, 20, "VIREO HARDDISK");
  put_word(id, 47, 0x8000 | 16);    // READ/WRITE MULTIPLE up to 16 sectors
  put_word(id, 48, 0x0001);         // dword PIO
  put_word(id, 49, 0x0b00);         // LBA, DMA, IORDY
  put_word(id, 50, 0x4000);
  put_word(id, 51, 0x0200);
  put_word(id, 52, 0x0200);
  put_word(id, 53, 0x0007);         // words 54-58, 64-70 and 88 valid
  uint64_t chs = uint64_t(d.cyls) * d.heads * d.spt;
  put_word(id, 54, d.cyls);
  put_word(id, 55, d.heads);
  put_word(id, 56, d.spt);
  put_word(id, 57, uint16_t(chs));
  put_word(id, 58, uint16_t(chs >> 16));
  put_word(id, 59, d.mult_sectors ? uint16_t(0x0100 | d.mult_sectors) : 0);
  uint32_t lba28 = uint32_t(std::min<uint64_t>(total, 0x0fffffff));
  put_word(id, 60, uint16_t(lba28));
  put_word(id, 61, uint16_t(lba28 >> 16));
  uint16_t mw = 0x0007;  // multiword DMA 0-2 supported
  if ((d.xfer_mode & 0xf8) == 0x20) mw |= uint16_t(1 << (8 + (d.xfer_mode & 7)));
  put_word(id, 63, mw);
  put_word(id, 64, 0x0003);  // PIO 3, 4
  put_word(id, 65, 120);
  put_word(id, 66, 120);
  put_word(id, 67, 120);
  put_word(id, 68, 120);
  put_word(id, 80, 0x00f0);  // ATA/ATAPI-4 to -7
  put_word(id, 81, 0x0016);
  put_word(id, 82, 0x4028);  // NOP, write cache, power management
  put_word(id, 83, 0x7400);  // LBA48, FLUSH CACHE, FLUSH CACHE EXT
  put_word(id, 84, 0x4000);
  put_word(id, 85, uint16_t(0x4008 | (d.write_cache ? 0x20 : 0)));
  put_word(id, 86, 0x3400);
  put_word(id, 87, 0x4000);
  uint16_t udma = 0x003f;  // UDMA 0-5 supported
  if ((d.xfer_mode & 0xf8) == 0x40) udma |= uint16_t(1 << (8 + (d.xfer_mode & 7)));
  put_word(id, 88, udma);
  put_word(id, 93, 0x6001);  // 80-conductor cable detected
  for (int i = 0; i < 4; i++) put_word(id, 100 + i, uint16_t(total >> (16 * i)));
}

void IdeChannel::identify_cdrom(std::vector<uint8_t>& id) {
  DriveState& d = sel();
  // ATAPI, CD-ROM, removable, accelerated DRQ, 12-byte packets.
  put_word(id, 0, 0x85c0);
  put_ata_string(id, 10, 10, "VIREOCD" + std::to_string(1000 + s_.unit));
  put_ata_string(id, 23, 4, "1.0");
  put_ata_string(id, 27, 20, "VIREO CD-ROM");
  put_word(id, 48, 0x0001);
  put_word(id, 49, 0x0b00);  // LBA, DMA, IORDY
  put_word(id, 53, 0x0007);
  uint16_t mw = 0x0007;
  if ((d.xfer_mode & 0xf8) == 0x20) mw |= uint16_t(1 << (8 + (d.xfer_mode & 7)));
  put_word(id, 63, mw);
  put_word(id, 64, 0x0003);
  put_word(id, 65, 0x00b4);
  put_word(id, 66, 0x00b4);
  put_word(id, 67, 0x012c);
  put_word(id, 68, 0x00b4);
  put_word(id, 71, 30);
  put_word(id, 72, 30);
  put_word(id, 80, 0x001e);  // ATA/ATAPI-1 to -4
  put_word(id, 82, 0x0014);  // PACKET, removable media
  put_word(id, 83, 0x4000);
  put_word(id, 84, 0x4000);
  put_word(id, 85, 0x0014);
  put_word(id, 87, 0x4000);
  uint16_t udma = 0x003f;
  if ((d.xfer_mode & 0xf8) == 0x40) udma |= uint16_t(1 << (8 + (d.xfer_mode & 7)));
  put_word(id, 88, udma);
  put_word(id, 93, 0x6001);
}

// ---------------------------------------------------------------- ATAPI

void IdeChannel::atapi_ok() {
  DriveState& d = s_.drive[s_.xfer_unit];
  d.status = kReady;
  d.error = 0;
  d.tf.nsector = kIrIo | kIrCoD;
  s_.xfer = Xfer::None;
  set_irq();
}

void IdeChannel::atapi_check(uint8_t key, uint8_t asc, uint8_t ascq) {
  DriveState& d = s_.drive[s_.xfer_unit];
  d.sense_key = key;
  d.asc = asc;
  d.ascq = ascq;
  d.status = kStDrdy | kStErr;
  d.error = uint8_t(key << 4) | (key == kSenseIllegalRequest ? kErrAbrt : 0);
  d.tf.nsector = kIrIo | kIrCoD;
  s_.xfer = Xfer::None;
  set_irq();
}

bool IdeChannel::cd_ready(DriveState& d) {
  if (backend_[s_.xfer_unit] && !d.tray_open) return true;
  atapi_check(kSenseNotReady, kAscMediumNotPresent, d.tray_open ? 0x02 : 0x01);
  return false;
}

void IdeChannel::atapi_reply(std::vector<uint8_t> data, uint32_t alloc_len) {
  if (data.size() > alloc_len) data.resize(alloc_len);
  if (data.empty()) {
    s_.drive[s_.xfer_unit].sense_key = kSenseNone;
    atapi_ok();
    return;
  }
  s_.reply = std::move(data);
  s_.xfer_from_reply = true;
  s_.xfer_off = 0;
  s_.xfer_left = s_.reply.size();
  atapi_start_data_in();
}

void IdeChannel::atapi_read(uint32_t lba, uint32_t count) {
  DriveState& d = s_.drive[s_.xfer_unit];
  if (!cd_ready(d)) return;
  uint64_t total = cd_sectors(s_.xfer_unit);
  if (lba >= total || count > total - lba) {
    atapi_check(kSenseIllegalRequest, kAscLbaOutOfRange, 0);
    return;
  }
  if (count == 0) {
    atapi_ok();
    return;
  }
  s_.xfer_from_reply = false;
  s_.xfer_off = uint64_t(lba) * 2048;
  s_.xfer_left = uint64_t(count) * 2048;
  atapi_start_data_in();
}

void IdeChannel::atapi_start_data_in() {
  DriveState& d = s_.drive[s_.xfer_unit];
  d.sense_key = kSenseNone;
  d.asc = d.ascq = 0;
  if (s_.packet_dma) {
    s_.xfer = Xfer::AtapiDmaIn;
    d.tf.nsector = kIrIo;
    d.status = kReady | kStDrq;
    try_dma();
    return;
  }
  s_.xfer = Xfer::AtapiPioIn;
  atapi_next_pio_chunk();
}

void IdeChannel::atapi_next_pio_chunk() {
  DriveState& d = s_.drive[s_.xfer_unit];
  uint32_t limit = s_.byte_limit;
  if (limit == 0 || limit == 0xffff) limit = 0xfffe;
  uint64_t n = s_.xfer_left;
  if (n > limit) n = limit & ~1u;
  s_.buf.resize(n);
  s_.buf_pos = 0;
  if (!fill_from_source(s_.buf.data(), n)) {
    atapi_check(kSenseMediumError, 0x11, 0);
    return;
  }
  d.tf.lbam = uint8_t(n);
  d.tf.lbah = uint8_t(n >> 8);
  d.tf.nsector = kIrIo;
  d.status = kReady | kStDrq;
  set_irq();
}

std::vector<uint8_t> IdeChannel::mode_page(uint8_t page, bool changeable) {
  std::vector<uint8_t> p;
  if (page == 0x01) {  // read/write error recovery
    p = {0x01, 0x06, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00};
  } else if (page == 0x2a) {  // CD/DVD capabilities and mechanical status
    p.assign(20, 0);
    p[0] = 0x2a;
    p[1] = 18;
    p[2] = 0x03;  // reads CD-R, CD-RW
    p[4] = 0x71;  // audio play, composite, digital ports, multisession
    p[5] = 0x7f;  // CD-DA commands, accurate stream, R-W, C2, ISRC, UPC
    const DriveState& d = s_.drive[s_.xfer_unit];
    p[6] = uint8_t(0x29 | (d.locked ? 0x02 : 0));  // tray, eject, lock supported (+ locked)
    be16(p, 8, 706);    // max read speed, kB/s (4x)
    be16(p, 10, 256);   // volume levels
    be16(p, 12, 512);   // buffer, KiB
    be16(p, 14, 706);   // current read speed
  }
  if (changeable)
    for (size_t i = 2; i < p.size(); i++) p[i] = 0;
  return p;
}

void IdeChannel::atapi_packet() {
  DriveState& d = s_.drive[s_.xfer_unit];
  uint8_t cdb[12];
  std::memcpy(cdb, s_.buf.data(), 12);
  uint8_t op = cdb[0];
  bool ua_allowed = op == kInquiry || op == kRequestSense || op == kGetConfiguration || op == kGetEventStatus;
  if (d.unit_attention && !ua_allowed) {
    d.unit_attention = false;
    atapi_check(kSenseUnitAttention, kAscMediumChanged, 0);
    return;
  }
  bool have = backend_[s_.xfer_unit] && !d.tray_open;
  switch (op) {
    case kTestUnitReady:
      if (cd_ready(d)) {
        d.sense_key = kSenseNone;
        atapi_ok();
      }
      return;
    case kRequestSense: {
      std::vector<uint8_t> r(18, 0);
      r[0] = 0x70;
      r[2] = d.sense_key;
      r[7] = 10;
      r[12] = d.asc;
      r[13] = d.ascq;
      if (d.sense_key == kSenseNone && d.unit_attention) {
        // A pending unit attention is what REQUEST SENSE reports (and clears).
        r[2] = kSenseUnitAttention;
        r[12] = kAscMediumChanged;
        d.unit_attention = false;
      }
      d.sense_key = d.asc = d.ascq = 0;
      atapi_reply(std::move(r), cdb[4]);
      return;
    }
    case kInquiry: {
      std::vector<uint8_t> r(36, 0);
      r[0] = 0x05;  // CD/DVD device
      r[1] = 0x80;  // removable
      r[2] = 0x00;
      r[3] = 0x21;  // ATAPI, response data format 1
      r[4] = 31;
      std::memcpy(&r[8], "VIREO   ", 8);
      std::memcpy(&r[16], "VIREO CD-ROM    ", 16);
      std::memcpy(&r[32], "1.0 ", 4);
      atapi_reply(std::move(r), get_be16(&cdb[3]));
      return;
    }
    case kReadCapacity: {
      if (!cd_ready(d)) return;
      std::vector<uint8_t> r(8, 0);
      uint64_t n = cd_sectors(s_.xfer_unit);
      be32(r, 0, uint32_t(n ? n - 1 : 0));
      be32(r, 4, 2048);
      atapi_reply(std::move(r), 8);
      return;
    }
    case kRead10:
      atapi_read(get_be32(&cdb[2]), get_be16(&cdb[7]));
      return;
    case kRead12:
      atapi_read(get_be32(&cdb[2]), get_be32(&cdb[6]));
      return;
    case kSeek10:
      if (cd_ready(d)) atapi_ok();
      return;
    case kReadToc: {
      if (!cd_ready(d)) return;
      bool msf = cdb[1] & 0x02;
      uint8_t format = cdb[2] & 0x0f;
      if (format == 0 && (cdb[9] >> 6)) format = cdb[9] >> 6;  // pre-MMC placement
      uint8_t track = cdb[6];
      uint32_t alloc = get_be16(&cdb[7]);
      uint32_t leadout = uint32_t(cd_sectors(s_.xfer_unit));
      std::vector<uint8_t> r;
      if (format == 0) {
        if (track > 1 && track != 0xaa) {
          atapi_check(kSenseIllegalRequest, kAscInvalidField, 0);
          return;
        }
        r.assign(4, 0);
        r[2] = 1;
        r[3] = 1;
        auto desc = [&](uint8_t tno, uint32_t lba) {
          size_t at = r.size();
          r.resize(at + 8, 0);
          r[at + 1] = 0x14;  // ADR 1, data track
          r[at + 2] = tno;
          put_cd_addr(r, at + 4, lba, msf);
        };
        if (track <= 1) desc(1, 0);
        desc(0xaa, leadout);
      } else if (format == 1) {  // session info
        r.assign(12, 0);
        r[2] = 1;
        r[3] = 1;
        r[5] = 0x14;
        r[6] = 1;
        put_cd_addr(r, 8, 0, msf);
      } else if (format == 2) {  // raw TOC: A0, A1, A2 and track 1 entries
        r.assign(4, 0);
        r[2] = 1;
        r[3] = 1;
        auto raw = [&](uint8_t point, uint8_t pm, uint8_t ps, uint8_t pf) {
          size_t at = r.size();
          r.resize(at + 11, 0);
          r[at] = 1;  // session
          r[at + 1] = 0x14;
          r[at + 3] = point;
          r[at + 8] = pm;
          r[at + 9] = ps;
          r[at + 10] = pf;
        };
        uint32_t f = leadout + 150;
        raw(0xa0, 1, 0, 0);  // first track 1, disc type CD-ROM
        raw(0xa1, 1, 0, 0);  // last track 1
        raw(0xa2, uint8_t(f / 4500), uint8_t((f / 75) % 60), uint8_t(f % 75));
        raw(0x01, 0, 2, 0);  // track 1 at 00:02:00
      } else {
        atapi_check(kSenseIllegalRequest, kAscInvalidField, 0);
        return;
      }
      be16(r, 0, uint16_t(r.size() - 2));
      atapi_reply(std::move(r), alloc);
      return;
    }
    case kGetConfiguration: {
      uint8_t rt = cdb[1] & 3;
      uint16_t start = get_be16(&cdb[2]);
      uint32_t alloc = get_be16(&cdb[7]);
      std::vector<uint8_t> r(8, 0);
      be16(r, 6, have ? 0x0008 : 0x0000);  // current profile: CD-ROM
      auto feature = [&](uint16_t code, bool current, uint8_t version, std::vector<uint8_t> body) {
        if (code < start && rt != 2) return;
        if (rt == 2 && code != start) return;
        if (rt == 1 && !current) return;
        size_t at = r.size();
        r.resize(at + 4 + body.size(), 0);
        be16(r, at, code);
        r[at + 2] = uint8_t((version << 2) | (code <= 3 ? 0x02 : 0) | (current ? 1 : 0));
        r[at + 3] = uint8_t(body.size());
        std::copy(body.begin(), body.end(), r.begin() + at + 4);
      };
      feature(0x0000, true, 0, {0x00, 0x08, uint8_t(have ? 1 : 0), 0});  // profile list: CD-ROM
      feature(0x0001, true, 1, {0, 0, 0, 2, 0, 0, 0, 0});                 // core: ATAPI
      feature(0x0002, true, 1, {0x02, 0, 0, 0});                          // morphing: OCEvent
      feature(0x0003, true, 0, {uint8_t(0x29), 0, 0, 0});                 // removable: tray, eject, lock
      feature(0x0010, have, 0, {0, 0, 0x08, 0x00, 0, 1, 0, 0});           // random readable, 2048
      feature(0x001e, have, 2, {0, 0, 0, 0});                             // CD read
      be32(r, 0, uint32_t(r.size() - 4));
      atapi_reply(std::move(r), alloc);
      return;
    }
    case kGetEventStatus: {
      if (!(cdb[1] & 1)) {  // only polled operation
        atapi_check(kSenseIllegalRequest, kAscInvalidField, 0);
        return;
      }
      uint32_t alloc = get_be16(&cdb[7]);
      std::vector<uint8_t> r(4, 0);
      r[3] = 0x10;  // supported: media class
      if (cdb[4] & 0x10) {
        r[2] = 0x04;  // media class
        r.resize(8, 0);
        r[4] = d.media_event;
        r[5] = uint8_t((have ? 0x02 : 0) | (d.tray_open ? 0x01 : 0));
        d.media_event = 0;
      } else {
        r[2] = 0x80;  // no event available
      }
      be16(r, 0, uint16_t(r.size() - 2));
      atapi_reply(std::move(r), alloc);
      return;
    }
    case kModeSense6:
    case kModeSense10: {
      bool ten = op == kModeSense10;
      uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3f;
      uint32_t alloc = ten ? get_be16(&cdb[7]) : cdb[4];
      if (pc == 3) {
        atapi_check(kSenseIllegalRequest, kAscSavingNotSupported, 0);
        return;
      }
      std::vector<uint8_t> r(ten ? 8 : 4, 0);
      std::vector<uint8_t> body;
      if (page == 0x3f) {
        auto a = mode_page(0x01, pc == 1), b = mode_page(0x2a, pc == 1);
        body.insert(body.end(), a.begin(), a.end());
        body.insert(body.end(), b.begin(), b.end());
      } else {
        body = mode_page(page, pc == 1);
      }
      if (body.empty()) {
        atapi_check(kSenseIllegalRequest, kAscInvalidField, 0);
        return;
      }
      r.insert(r.end(), body.begin(), body.end());
      if (ten) {
        be16(r, 0, uint16_t(r.size() - 2));
        r[2] = have ? 0x01 : 0x70;  // medium type: 120 mm data CD / door closed, no disc
      } else {
        r[0] = uint8_t(r.size() - 1);
        r[1] = have ? 0x01 : 0x70;
      }
      atapi_reply(std::move(r), alloc);
      return;
    }
    case kStartStopUnit: {
      bool start = cdb[4] & 1, loej = cdb[4] & 2;
      if (loej) {
        if (!start) {
          if (d.locked) {
            atapi_check(kSenseIllegalRequest, kAscRemovalPrevented, 0x02);
            return;
          }
          if (!d.tray_open) {
            d.tray_open = true;
            d.media_event = 3;
          }
        } else if (d.tray_open) {
          d.tray_open = false;
          if (backend_[s_.xfer_unit]) {
            d.media_event = 2;
          }
        }
      }
      d.sense_key = kSenseNone;
      atapi_ok();
      return;
    }
    case kPreventAllow:
      d.locked = cdb[4] & 1;
      d.sense_key = kSenseNone;
      atapi_ok();
      return;
    case kReadDiscInfo: {
      if ((cdb[1] & 7) != 0) {
        atapi_check(kSenseIllegalRequest, kAscInvalidField, 0);
        return;
      }
      if (!cd_ready(d)) return;
      std::vector<uint8_t> r(34, 0);
      be16(r, 0, 32);
      r[2] = 0x0e;  // complete disc, complete last session
      r[3] = 1;     // first track
      r[4] = 1;     // sessions
      r[5] = 1;     // first track in last session
      r[6] = 1;     // last track in last session
      r[7] = 0x20;  // unrestricted use
      r[8] = 0x00;  // CD-DA or CD-ROM
      be32(r, 16, 0xffffffff);
      be32(r, 20, 0xffffffff);
      atapi_reply(std::move(r), get_be16(&cdb[7]));
      return;
    }
    case kMechanismStatus: {
      std::vector<uint8_t> r(8, 0);
      r[1] = d.tray_open ? 0x10 : 0x00;  // door open bit
      atapi_reply(std::move(r), get_be16(&cdb[8]));
      return;
    }
    case kSetCdSpeed:
      d.sense_key = kSenseNone;
      atapi_ok();
      return;
    default:
      atapi_check(kSenseIllegalRequest, kAscInvalidOpcode, 0);
      return;
  }
}

}  // namespace vireo::ide
