// UHCI register semantics and schedule processing follow Intel's UHCI
// Design Guide rev 1.1: chapter 2 (I/O registers), chapter 3 (frame list,
// TDs, QHs) and 3.4 (the execution model).
#include "devices/usb/uhci.h"

#include "machine/state.h"

#include <algorithm>
#include <chrono>

namespace vireo::usb {

namespace {

class UhciIo : public IoDevice {
public:
  explicit UhciIo(Uhci* u) : u_(u) {}
  StateKind state_kind() const override { return StateKind::None; }  // saved by the Uhci
  void read(uint64_t off, std::span<uint8_t> d) override { u64_to_span(u_->reg_read(uint32_t(off), int(d.size())), d); }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    u_->reg_write(uint32_t(off), int(d.size()), uint32_t(span_to_u64(d)));
  }

private:
  Uhci* u_;
};

constexpr int kNoDevice = -100;  // internal: nobody answered (a timeout on the wire)
constexpr uint16_t kLegSupRwMask = 0x20bf;   // bits 13, 7, 5:0 read/write (PIIX3 datasheet)
constexpr uint16_t kLegSupW1cMask = 0x8f00;  // bits 15, 11:8 write 1 to clear

}  // namespace

Uhci::Uhci(const GuestMemory* mem, Clock mono_ns) : mem_(mem), clock_(std::move(mono_ns)) {
  name = "piix3-uhci";
  io_ = std::make_shared<UhciIo>(this);
  set_ids(kVendor, kDevice, kClass, 0x01);
  add_bar(kBar, kIoSize, pci::BarKind::Io, io_);
  set_interrupt_pin(kIntPinD);
  cfg[kSbrn] = 0x10;  // USB 1.0
  cfg_set(kLegSup, 2, kLegSupDefault);
  wmask[kLegSup] = uint8_t(kLegSupRwMask);
  wmask[kLegSup + 1] = uint8_t(kLegSupRwMask >> 8);
  w1cmask[kLegSup + 1] = uint8_t(kLegSupW1cMask >> 8);
}

Uhci::~Uhci() { stop_thread(); }

void Uhci::attach(int port, std::shared_ptr<UsbDevice> dev) {
  std::lock_guard g(mu_);
  if (port < 0 || port >= kPorts) return;
  dev_[size_t(port)] = std::move(dev);
  portsc_[size_t(port)] = dev_[size_t(port)] ? uint16_t(kPortCcs | kPortCsc | (dev_[size_t(port)]->low_speed() ? kPortLsda : 0)) : 0;
}

void Uhci::hc_reset(bool devices) {
  cmd_ = 0;
  sts_ = kStsHalted;
  intr_ = 0;
  frnum_ = 0;
  flbase_ = 0;
  sofmod_ = 64;
  int_ioc_ = int_short_ = false;
  for (int p = 0; p < kPorts; p++) {
    auto& d = dev_[size_t(p)];
    portsc_[size_t(p)] = d ? uint16_t(kPortCcs | kPortCsc | (d->low_speed() ? kPortLsda : 0)) : 0;
    if (d && devices) d->bus_reset();
  }
  update_irq();
}

void Uhci::reset() {
  {
    std::lock_guard g(mu_);
    hc_reset(true);
  }
  std::lock_guard g(cfg_mu_);
  cfg_set(kLegSup, 2, kLegSupDefault);
}

Uhci::Counters Uhci::counters() const {
  std::lock_guard g(mu_);
  return c_;
}

// ---- registers ----

uint16_t Uhci::read16(uint32_t reg) {
  switch (reg) {
    case kUsbCmd:
      return cmd_;
    case kUsbSts:
      return sts_;
    case kUsbIntr:
      return intr_;
    case kFrNum:
      return frnum_;
    case kFlBaseAdd:
      return uint16_t(flbase_);
    case kFlBaseAdd + 2:
      return uint16_t(flbase_ >> 16);
    case kSofMod:
      return sofmod_;
    case kPortSc1:
    case kPortSc2: {
      size_t p = (reg - kPortSc1) / 2;
      uint16_t v = portsc_[p] | kPortAlways1;
      // Line state: idle J (D+ high at full speed, D- at low speed); SE0 in reset.
      if ((v & kPortCcs) && !(v & kPortPr)) v |= (v & kPortLsda) ? kPortDMinus : kPortDPlus;
      return v;
    }
    default:
      return 0;  // unused offsets read 0, so drivers counting ports stop at 2
  }
}

uint32_t Uhci::reg_read(uint32_t off, int size) {
  std::lock_guard g(mu_);
  uint32_t v = 0;
  for (int i = 0; i < size && i < 4; i++) {
    uint32_t o = off + uint32_t(i);
    uint32_t b = o < kIoSize ? (read16(o & ~1u) >> (8 * (o & 1))) & 0xff : 0xff;
    v |= b << (8 * i);
  }
  return v;
}

void Uhci::reg_write(uint32_t off, int size, uint32_t value) {
  std::lock_guard g(mu_);
  // Split into the 16-bit registers the access covers; a byte write touches
  // only its own byte (so it clears no write-1-to-clear bit in the other).
  for (int i = 0; i < size && i < 4;) {
    uint32_t o = off + uint32_t(i);
    uint32_t reg = o & ~1u;
    uint16_t v = 0, written = 0;
    while (i < size && i < 4 && ((off + uint32_t(i)) & ~1u) == reg) {
      uint32_t sh = 8 * ((off + uint32_t(i)) & 1);
      v |= uint16_t(((value >> (8 * i)) & 0xff) << sh);
      written |= uint16_t(0xff << sh);
      i++;
    }
    if (reg < kIoSize) write16(reg, v, written);
  }
}

void Uhci::write16(uint32_t reg, uint16_t v, uint16_t written) {
  auto merge = [&](uint16_t old) { return uint16_t((old & ~written) | (v & written)); };
  switch (reg) {
    case kUsbCmd:
      write_cmd(merge(cmd_));
      break;
    case kUsbSts: {
      uint16_t clear = v & written & uint16_t(kStsUsbInt | kStsError | kStsResume | kStsHse | kStsHcpe);
      sts_ &= uint16_t(~clear);
      if (clear & kStsUsbInt) int_ioc_ = int_short_ = false;
      update_irq();
      break;
    }
    case kUsbIntr:
      intr_ = merge(intr_) & 0xf;
      update_irq();
      break;
    case kFrNum:
      if (sts_ & kStsHalted) frnum_ = merge(frnum_) & 0x7ff;  // writable only while stopped
      break;
    case kFlBaseAdd:
      flbase_ = (flbase_ & 0xffff0000u) | (merge(uint16_t(flbase_)) & 0xf000u);
      break;
    case kFlBaseAdd + 2:
      flbase_ = (flbase_ & 0x0000ffffu) | uint32_t(merge(uint16_t(flbase_ >> 16))) << 16;
      break;
    case kSofMod:
      if (written & 0xff) sofmod_ = uint8_t(v & 0x7f);
      break;
    case kPortSc1:
    case kPortSc2:
      write_port(int((reg - kPortSc1) / 2), v, written);
      break;
    default:
      break;
  }
}

void Uhci::write_cmd(uint16_t v) {
  uint16_t old = cmd_;
  if ((v & kCmdGReset) && !(old & kCmdGReset)) {
    // Global reset: everything, and a USB reset on both ports; the bit stays
    // until software clears it.
    hc_reset(true);
    cmd_ = kCmdGReset;
    return;
  }
  if (v & kCmdHcReset) {
    hc_reset(false);  // registers and ports; the bit clears itself when done
    return;
  }
  cmd_ = v & 0xff;
  if ((v & kCmdRs) && !(old & kCmdRs)) {
    sts_ &= uint16_t(~kStsHalted);
    next_frame_ns_ = now_locked() + kFrameNs;
    last_frame_busy_ = true;
    cv_.notify_all();
  } else if (!(v & kCmdRs) && (old & kCmdRs)) {
    sts_ |= kStsHalted;  // stops at the end of the current frame, which is always over here
  }
}

void Uhci::write_port(int p, uint16_t v, uint16_t written) {
  uint16_t& ps = portsc_[size_t(p)];
  uint16_t old = ps;
  uint16_t clear = v & written & uint16_t(kPortCsc | kPortPec);
  constexpr uint16_t kRw = kPortPe | kPortRd | kPortPr | kPortSusp;
  uint16_t rw = uint16_t(((old & ~written) | (v & written)) & kRw);
  if (!(old & kPortCcs)) rw &= uint16_t(~kPortPe);  // nothing to enable
  if ((rw & kPortPr) && !(old & kPortPr)) {
    // Port reset: the device sees a USB reset and the port is disabled until
    // software enables it after the reset ends.
    if (dev_[size_t(p)]) dev_[size_t(p)]->bus_reset();
    rw &= uint16_t(~kPortPe);
  }
  if (rw & kPortPr) rw &= uint16_t(~kPortPe);
  ps = uint16_t((old & ~(kRw | clear)) | rw);
}

void Uhci::update_irq() {
  bool usbint = (sts_ & kStsUsbInt) && ((int_ioc_ && (intr_ & kIntrIoc)) || (int_short_ && (intr_ & kIntrShort)));
  bool err = (sts_ & kStsError) && (intr_ & kIntrTimeoutCrc);
  bool resume = (sts_ & kStsResume) && (intr_ & kIntrResume);
  set_intx(usbint || err || resume || (sts_ & (kStsHse | kStsHcpe)));
}

void Uhci::halt(uint16_t why) {
  sts_ |= uint16_t(why | kStsHalted);
  cmd_ &= uint16_t(~kCmdRs);
  update_irq();
}

// ---- the schedule ----

int Uhci::run_due(int64_t now) {
  std::lock_guard g(mu_);
  if (paused_ || !(cmd_ & kCmdRs) || now < next_frame_ns_) return 0;
  int64_t due = (now - next_frame_ns_) / kFrameNs + 1;
  int64_t run = std::min<int64_t>(due, kMaxCatchUp);
  if (due > run) {
    c_.frames_skipped += uint64_t(due - run);
    frnum_ = uint16_t((frnum_ + (due - run)) & 0x7ff);
  }
  next_frame_ns_ += due * kFrameNs;
  int n = 0;
  for (; n < run && (cmd_ & kCmdRs); n++) frame_locked();
  return n;
}

void Uhci::run_frame() {
  std::lock_guard g(mu_);
  if (cmd_ & kCmdRs) frame_locked();
}

void Uhci::start_thread() {
  std::lock_guard g(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock lk(mu_);
    while (!stop_) {
      if (paused_ || !(cmd_ & kCmdRs)) {
        cv_.wait(lk);
        continue;
      }
      // A schedule with nothing active is looked at every kIdleTickNs (the
      // frames in between run then, at once): a guest adding a TD does not
      // tell the controller, so that is its latency; with TDs active, every 1 ms.
      int64_t wake = last_frame_busy_ ? next_frame_ns_ : next_frame_ns_ + kIdleTickNs - kFrameNs;
      int64_t now = clock_();
      if (now < wake) {
        cv_.wait_for(lk, std::chrono::nanoseconds(wake - now));
        continue;
      }
      lk.unlock();
      run_due(now);
      lk.lock();
    }
  });
}

void Uhci::pause() {
  std::lock_guard g(mu_);
  if (paused_) return;
  paused_ = true;
  paused_at_ = clock_();
  cv_.notify_all();  // a thread in a timed wait goes back to sleep without a timeout
}

void Uhci::resume() {
  {
    std::lock_guard g(mu_);
    if (!paused_) return;
    paused_ = false;
    next_frame_ns_ += clock_() - paused_at_;
  }
  cv_.notify_all();
}

bool Uhci::paused() const {
  std::lock_guard g(mu_);
  return paused_;
}

void Uhci::stop_thread() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

UsbDevice* Uhci::device_at(uint8_t address) {
  for (int p = 0; p < kPorts; p++) {
    uint16_t ps = portsc_[size_t(p)];
    auto& d = dev_[size_t(p)];
    if (d && (ps & kPortPe) && !(ps & (kPortSusp | kPortPr)) && d->address() == address) return d.get();
  }
  return nullptr;
}

Uhci::TdResult Uhci::execute_td(uint32_t addr, uint32_t link, uint32_t ctrl, uint32_t token, uint32_t buffer) {
  (void)link;
  c_.tds++;
  uint32_t maxlen = token >> kTdMaxLenShift;
  uint8_t pid = uint8_t(token);
  if ((maxlen > kTdMaxLenLimit && maxlen != kTdMaxLenNull) ||
      (pid != uint8_t(Pid::In) && pid != uint8_t(Pid::Out) && pid != uint8_t(Pid::Setup))) {
    c_.bad_tds++;
    halt(kStsHcpe);
    return TdResult::Halted;
  }
  size_t len = maxlen == kTdMaxLenNull ? 0 : maxlen + 1;
  std::array<uint8_t, kTdMaxLenLimit + 1> buf{};
  Pid p = Pid(pid);
  if (p != Pid::In && len && !mem_->read(buffer, buf.data(), len)) {
    c_.bad_memory++;
    halt(kStsHse);
    return TdResult::Halted;
  }
  UsbDevice* d = device_at(uint8_t((token >> 8) & 0x7f));
  int r = d ? d->transfer(p, uint8_t((token >> 15) & 0xf), std::span<uint8_t>(buf.data(), len)) : kNoDevice;
  const uint32_t cleared = ctrl & ~(kTdStatusMask | kTdActLen);  // active off, status clear
  if (r >= 0) {
    r = std::min(r, int(len));
    if (p == Pid::In && r > 0 && !mem_->write(buffer, buf.data(), size_t(r))) {
      c_.bad_memory++;
      halt(kStsHse);
      return TdResult::Halted;
    }
    frame_bytes_ += r;
    mem_->write_obj(addr + 4, cleared | (r ? uint32_t(r - 1) : kTdActLen));
    if (ctrl & kTdIoc) int_ioc_ = true;
    if (p == Pid::In && size_t(r) < len && (ctrl & kTdSpd)) {
      int_short_ = true;  // short packet: the queue stops at this TD for software to look at
      return TdResult::Stay;
    }
    return TdResult::Advance;
  }
  if (r == kNak) {
    mem_->write_obj(addr + 4, ctrl | kTdNak);  // stays active: tried again next time round
    return TdResult::Stay;
  }
  if (r == kStall) {
    mem_->write_obj(addr + 4, cleared | kTdStalled | kTdActLen);
    sts_ |= kStsError;
    if (ctrl & kTdIoc) int_ioc_ = true;
    return TdResult::Stay;
  }
  // No device answered: a time-out. The error counter counts down to 0 and
  // retires the TD; a counter of 0 means retry for ever.
  uint32_t cerr = (ctrl & kTdCerrMask) >> kTdCerrShift;
  uint32_t nc = ctrl | kTdCrcTimeout;
  if (cerr) {
    cerr--;
    nc = (nc & ~kTdCerrMask) | cerr << kTdCerrShift;
    if (!cerr) {
      nc &= ~kTdActive;
      sts_ |= kStsError;
      if (ctrl & kTdIoc) int_ioc_ = true;
    }
  }
  mem_->write_obj(addr + 4, nc);
  return TdResult::Stay;
}

void Uhci::frame_locked() {
  c_.frames++;
  frame_bytes_ = 0;
  last_frame_busy_ = false;
  auto end_frame = [&] {
    frnum_ = uint16_t((frnum_ + 1) & 0x7ff);
    if (int_ioc_ || int_short_) sts_ |= kStsUsbInt;
    update_irq();
  };
  if (!bus_master()) {  // the controller cannot fetch anything
    end_frame();
    return;
  }
  uint32_t link = 0;
  if (!mem_->read_obj(uint64_t(flbase_) + (frnum_ & 0x3ffu) * 4, link)) {
    c_.bad_memory++;
    halt(kStsHse);
    return;
  }
  // Queue heads seen this frame with the number of TDs retired by then: seeing
  // one again with no TD retired in between means a loop with nothing to do.
  struct Seen {
    uint32_t addr;
    uint64_t retired;
  };
  std::array<Seen, 32> seen{};
  size_t nseen = 0;
  uint64_t retired = 0;
  int links = 0;
  auto over_budget = [&] {
    if (++links > kMaxLinks) {
      c_.link_budget++;
      return true;
    }
    if (frame_bytes_ >= kMaxFrameBytes) {
      c_.byte_budget++;
      return true;
    }
    return false;
  };
  bool stop = false;
  while (!stop && !(link & kLinkT)) {
    if (over_budget()) break;
    uint32_t addr = link & kLinkAddr;
    if (link & kLinkQh) {
      bool found = false, loop = false;
      for (size_t i = 0; i < nseen; i++) {
        if (seen[i].addr != addr) continue;
        found = true;
        if (seen[i].retired == retired) loop = true;
        seen[i].retired = retired;
      }
      if (loop) {
        c_.qh_loops++;
        break;
      }
      if (!found && nseen < seen.size()) seen[nseen++] = {addr, retired};
      uint32_t qh[2];
      if (!mem_->read(addr, qh, sizeof qh)) {
        c_.bad_memory++;
        halt(kStsHse);
        return;
      }
      uint32_t elem = qh[1];
      while (!(elem & kLinkT)) {
        if (elem & kLinkQh) {  // a queue head below a queue head: not followed
          c_.nested_qhs++;
          break;
        }
        if (over_budget()) {
          stop = true;
          break;
        }
        uint32_t td[4];
        uint32_t td_addr = elem & kLinkAddr;
        if (!mem_->read(td_addr, td, sizeof td)) {
          c_.bad_memory++;
          halt(kStsHse);
          return;
        }
        if (!(td[1] & kTdActive)) break;  // a stopped queue: software's turn
        last_frame_busy_ = true;
        TdResult r = execute_td(td_addr, td[0], td[1], td[2], td[3]);
        if (r == TdResult::Halted) return;
        if (r == TdResult::Stay) break;
        retired++;
        elem = td[0];
        mem_->write_obj(addr + 4, elem);  // the queue advances
        if (!(elem & kLinkVf)) break;     // breadth first: on to the next queue
      }
      link = qh[0];
    } else {
      uint32_t td[4];
      if (!mem_->read(addr, td, sizeof td)) {
        c_.bad_memory++;
        halt(kStsHse);
        return;
      }
      if (td[1] & kTdActive) {
        last_frame_busy_ = true;
        TdResult r = execute_td(addr, td[0], td[1], td[2], td[3]);
        if (r == TdResult::Halted) return;
        if (r == TdResult::Advance) retired++;
      }
      link = td[0];
    }
  }
  end_frame();
}

// ---- saved state ----

void Uhci::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  w.u16(cmd_);
  w.u16(sts_);
  w.u16(intr_);
  w.u16(frnum_);
  w.u32(flbase_);
  w.u8(sofmod_);
  for (uint16_t p : portsc_) w.u16(p);
  w.boolean(int_ioc_);
  w.boolean(int_short_);
  w.boolean(last_frame_busy_);
  w.i64(next_frame_ns_ - now_locked());
}

void Uhci::load(state::StateReader& r) {
  if (r.version() != 1) r.fail("unknown version (this Vireo has 1)");
  uint16_t cmd = r.u16(), sts = r.u16(), intr = r.u16(), frnum = r.u16();
  uint32_t flbase = r.u32();
  uint8_t sofmod = r.u8();
  std::array<uint16_t, kPorts> ports{};
  for (auto& p : ports) p = r.u16();
  bool ioc = r.boolean(), shrt = r.boolean(), busy = r.boolean();
  int64_t to_next = r.i64();
  r.finish();
  if (cmd & ~0xffu) r.fail("USBCMD has undefined bits");
  if (sts & ~0x3fu) r.fail("USBSTS has undefined bits");
  if (intr & ~0xfu) r.fail("USBINTR has undefined bits");
  if (frnum > 0x7ff) r.fail("the frame number is past 2047");
  if (flbase & 0xfffu) r.fail("the frame list base is not 4 KiB aligned");
  if (sofmod > 0x7f) r.fail("SOFMOD is past 127");
  std::lock_guard g(mu_);
  for (int p = 0; p < kPorts; p++) {
    if (bool(ports[size_t(p)] & kPortCcs) != bool(dev_[size_t(p)]))
      r.fail("port " + std::to_string(p + 1) + (dev_[size_t(p)] ? " has a device here, none in the state" : " has a device in the state, none here"));
  }
  cmd_ = cmd;
  sts_ = sts;
  intr_ = intr;
  frnum_ = frnum;
  flbase_ = flbase;
  sofmod_ = sofmod;
  portsc_ = ports;
  int_ioc_ = ioc;
  int_short_ = shrt;
  last_frame_busy_ = busy;
  next_frame_ns_ = now_locked() + std::clamp<int64_t>(to_next, 0, kFrameNs);
  update_irq();
  cv_.notify_all();
}

}  // namespace vireo::usb
