#include "devices/usb/hid_tablet.h"

#include "machine/state.h"

#include <algorithm>

namespace vireo::usb {

namespace {

// HID report descriptor (HID 1.11 chapter 6.2.2; usages from the HID Usage
// Tables: Generic Desktop 0x01, Button 0x09, Consumer 0x0c). Each item is a
// prefix byte (tag, type, size 0/1/2 bytes) followed by its data.
constexpr uint8_t kReportDesc[] = {
    0x05, 0x01,        // Usage Page (Generic Desktop)
    0x09, 0x02,        // Usage (Mouse)
    0xa1, 0x01,        // Collection (Application)
    0x09, 0x01,        //   Usage (Pointer)
    0xa1, 0x00,        //   Collection (Physical)
    0x05, 0x09,        //     Usage Page (Button)
    0x19, 0x01,        //     Usage Minimum (1)
    0x29, 0x05,        //     Usage Maximum (5)
    0x15, 0x00,        //     Logical Minimum (0)
    0x25, 0x01,        //     Logical Maximum (1)
    0x95, 0x05,        //     Report Count (5)
    0x75, 0x01,        //     Report Size (1)
    0x81, 0x02,        //     Input (Data, Variable, Absolute): the buttons
    0x95, 0x01,        //     Report Count (1)
    0x75, 0x03,        //     Report Size (3)
    0x81, 0x01,        //     Input (Constant): padding to the byte
    0x05, 0x01,        //     Usage Page (Generic Desktop)
    0x09, 0x30,        //     Usage (X)
    0x09, 0x31,        //     Usage (Y)
    0x15, 0x00,        //     Logical Minimum (0)
    0x26, 0xff, 0x7f,  //     Logical Maximum (32767)
    0x35, 0x00,        //     Physical Minimum (0)
    0x46, 0xff, 0x7f,  //     Physical Maximum (32767)
    0x75, 0x10,        //     Report Size (16)
    0x95, 0x02,        //     Report Count (2)
    0x81, 0x02,        //     Input (Data, Variable, Absolute): X, Y
    0x09, 0x38,        //     Usage (Wheel)
    0x15, 0x81,        //     Logical Minimum (-127)
    0x25, 0x7f,        //     Logical Maximum (127)
    0x35, 0x00,        //     Physical Minimum (0)
    0x45, 0x00,        //     Physical Maximum (0): no physical unit
    0x75, 0x08,        //     Report Size (8)
    0x95, 0x01,        //     Report Count (1)
    0x81, 0x06,        //     Input (Data, Variable, Relative): wheel
    0x05, 0x0c,        //     Usage Page (Consumer)
    0x0a, 0x38, 0x02,  //     Usage (AC Pan)
    0x15, 0x81,        //     Logical Minimum (-127)
    0x25, 0x7f,        //     Logical Maximum (127)
    0x75, 0x08,        //     Report Size (8)
    0x95, 0x01,        //     Report Count (1)
    0x81, 0x06,        //     Input (Data, Variable, Relative): horizontal wheel
    0xc0,              //   End Collection
    0xc0,              // End Collection
};

constexpr uint8_t kManufacturer = 1, kProductStr = 2, kSerial = 3;
constexpr uint8_t kConfigValue = 1;
// bmRequestType fields (USB 2.0 table 9-2).
constexpr uint8_t kDirIn = 0x80;
constexpr uint8_t kTypeMask = 0x60, kTypeStandard = 0x00, kTypeClass = 0x20;
constexpr uint8_t kRecipMask = 0x1f, kRecipDevice = 0, kRecipInterface = 1, kRecipEndpoint = 2;
constexpr uint16_t kFeatureEndpointHalt = 0, kFeatureRemoteWakeup = 1;
constexpr uint8_t kReportTypeInput = 1;

void put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(uint8_t(x));
  v.push_back(uint8_t(x >> 8));
}

}  // namespace

HidTablet::HidTablet(Clock mono_ns) : clock_(std::move(mono_ns)) {}

std::vector<uint8_t> HidTablet::device_descriptor() {
  std::vector<uint8_t> d = {18, kDescDevice};
  put16(d, 0x0110);          // bcdUSB 1.1
  d.insert(d.end(), {0, 0, 0});  // class/subclass/protocol: per interface
  d.push_back(kEp0MaxPacket);
  put16(d, kVendor);
  put16(d, kProduct);
  put16(d, 0x0100);          // bcdDevice
  d.insert(d.end(), {kManufacturer, kProductStr, kSerial, 1 /*configurations*/});
  return d;
}

std::vector<uint8_t> HidTablet::config_descriptor() {
  std::vector<uint8_t> d = {9, kDescConfig, 0, 0, 1 /*interfaces*/, kConfigValue, 0 /*iConfiguration*/,
                            0x80 /*bus powered*/, 50 /*100 mA*/};
  // Interface 0: HID (3), no subclass, no protocol, one endpoint.
  d.insert(d.end(), {9, kDescInterface, 0, 0, 1, 0x03, 0x00, 0x00, 0});
  // HID descriptor: bcdHID 1.11, no country, one report descriptor.
  d.insert(d.end(), {9, kDescHid, 0x11, 0x01, 0, 1, kDescReport});
  put16(d, uint16_t(sizeof kReportDesc));
  // Endpoint 0x81: interrupt IN.
  d.insert(d.end(), {7, kDescEndpoint, uint8_t(0x80 | kIntEndpoint), 0x03});
  put16(d, kIntMaxPacket);
  d.push_back(kIntIntervalMs);
  d[2] = uint8_t(d.size());
  d[3] = uint8_t(d.size() >> 8);
  return d;
}

std::span<const uint8_t> HidTablet::report_descriptor() { return kReportDesc; }

std::vector<uint8_t> HidTablet::string_descriptor(uint8_t index) {
  const char* s = nullptr;
  switch (index) {
    case 0:
      return {4, kDescString, 0x09, 0x04};  // LANGID: English (United States)
    case kManufacturer:
      s = "Vireo";
      break;
    case kProductStr:
      s = "Vireo USB Tablet";
      break;
    case kSerial:
      s = "1";
      break;
    default:
      return {};
  }
  std::vector<uint8_t> d = {0, kDescString};
  for (const char* p = s; *p; p++) put16(d, uint8_t(*p));  // UTF-16LE of ASCII
  d[0] = uint8_t(d.size());
  return d;
}

void HidTablet::pointer(int x, int y, uint8_t buttons, int wheel, int hwheel) {
  std::lock_guard g(mu_);
  x = std::clamp(x, 0, kMaxCoord);
  y = std::clamp(y, 0, kMaxCoord);
  buttons &= 0x1f;
  // The state the guest has not seen yet ends with this button change: it
  // becomes a report of its own (only for a configured device: nobody polls before).
  if (buttons != buttons_ && changed_ && config_ != 0) {
    if (queued_.size() < kQueueMax) queued_.push_back(report_locked());
    else merged_clicks_++;  // the guest takes nothing: states merge again, the latest wins
  }
  if (x != x_ || y != y_ || buttons != buttons_ || wheel || hwheel) changed_ = true;
  x_ = x;
  y_ = y;
  buttons_ = buttons;
  // Bounded so a flood of wheel steps cannot overflow; they drain 127 a report.
  wheel_ = std::clamp(wheel_ + std::clamp(wheel, -1000, 1000), -1000, 1000);
  hwheel_ = std::clamp(hwheel_ + std::clamp(hwheel, -1000, 1000), -1000, 1000);
}

bool HidTablet::active() const {
  std::lock_guard g(mu_);
  return config_ != 0 && polled_ && clock_() - last_poll_ns_ < kActiveNs;
}

uint64_t HidTablet::merged_clicks() const {
  std::lock_guard g(mu_);
  return merged_clicks_;
}

bool HidTablet::configured() const {
  std::lock_guard g(mu_);
  return config_ != 0;
}

void HidTablet::bus_reset() {
  std::lock_guard g(mu_);
  address_ = pending_address_ = 0;
  set_address_pending_ = false;
  config_ = 0;
  ep_halted_ = false;
  idle_ = 0;
  protocol_ = 1;
  polled_ = false;
  stage_ = Stage::Idle;
  ctrl_data_.clear();
  ctrl_pos_ = 0;
  queued_.clear();
  changed_ = true;  // the first poll after configuration reports where the pointer is
}

uint8_t HidTablet::address() const {
  std::lock_guard g(mu_);
  return address_;
}

std::array<uint8_t, HidTablet::kReportLen> HidTablet::report_locked() {
  int w = std::clamp(wheel_, -127, 127), h = std::clamp(hwheel_, -127, 127);
  wheel_ -= w;
  hwheel_ -= h;
  return {buttons_, uint8_t(x_), uint8_t(x_ >> 8), uint8_t(y_), uint8_t(y_ >> 8), uint8_t(int8_t(w)), uint8_t(int8_t(h))};
}

std::vector<uint8_t> HidTablet::current_report() {
  std::lock_guard g(mu_);
  if (!queued_.empty()) return {queued_.front().begin(), queued_.front().end()};
  int w = wheel_, h = hwheel_;
  auto r = report_locked();
  wheel_ = w;  // a peek: the steps stay for the endpoint
  hwheel_ = h;
  return {r.begin(), r.end()};
}

int HidTablet::transfer(Pid pid, uint8_t ep, std::span<uint8_t> data) {
  std::lock_guard g(mu_);
  if (ep == 0) return control(pid, data);
  if (ep == kIntEndpoint && pid == Pid::In) return interrupt_in(data);
  return kStall;
}

int HidTablet::interrupt_in(std::span<uint8_t> data) {
  if (config_ == 0 || ep_halted_) return kStall;
  int64_t now = clock_();
  last_poll_ns_ = now;
  polled_ = true;
  bool idle_due = idle_ != 0 && now - last_report_ns_ >= int64_t(idle_) * 4'000'000;
  std::array<uint8_t, kReportLen> r;
  if (!queued_.empty()) {
    r = queued_.front();  // the current state stays due after it
    queued_.pop_front();
  } else {
    if (!changed_ && !idle_due) return kNak;
    r = report_locked();
    changed_ = wheel_ != 0 || hwheel_ != 0;  // steps past +-127 go in the next report
  }
  last_report_ns_ = now;
  size_t n = std::min(data.size(), r.size());
  std::copy_n(r.begin(), n, data.begin());
  return int(n);
}

int HidTablet::control(Pid pid, std::span<uint8_t> data) {
  switch (pid) {
    case Pid::Setup: {
      // A device always accepts a SETUP (it aborts any transfer in progress);
      // a request it cannot do stalls its data or status stage.
      ctrl_data_.clear();
      ctrl_pos_ = 0;
      set_address_pending_ = false;
      if (data.size() != 8) {
        stage_ = Stage::Stalled;
        return int(data.size());
      }
      setup_ = SetupPacket::parse(data);
      if (!setup(setup_)) {
        stage_ = Stage::Stalled;
      } else if (setup_.request_type & kDirIn) {
        if (ctrl_data_.size() > setup_.length) ctrl_data_.resize(setup_.length);
        stage_ = Stage::DataIn;
      } else {
        stage_ = setup_.length ? Stage::DataOut : Stage::StatusIn;
      }
      return 8;
    }
    case Pid::In:
      if (stage_ == Stage::DataIn) {
        size_t n = std::min({ctrl_data_.size() - ctrl_pos_, data.size(), size_t(kEp0MaxPacket)});
        std::copy_n(ctrl_data_.begin() + ptrdiff_t(ctrl_pos_), n, data.begin());
        ctrl_pos_ += n;
        return int(n);
      }
      if (stage_ == Stage::StatusIn) {
        // Status stage of a no-data or OUT request: the new address applies
        // only now (USB 2.0 9.4.6), after this handshake at the old one.
        if (set_address_pending_) address_ = pending_address_;
        set_address_pending_ = false;
        stage_ = Stage::Idle;
        return 0;
      }
      return kStall;
    case Pid::Out:
      if (stage_ == Stage::DataIn) {  // status stage of an IN request
        stage_ = Stage::Idle;
        return int(data.size());
      }
      if (stage_ == Stage::DataOut) {
        // No OUT request with data is accepted by setup(); take the bytes anyway.
        ctrl_pos_ += data.size();
        if (ctrl_pos_ >= setup_.length) stage_ = Stage::StatusIn;
        return int(data.size());
      }
      return kStall;
  }
  return kStall;
}

bool HidTablet::setup(const SetupPacket& s) {
  const uint8_t type = s.request_type & kTypeMask, recip = s.request_type & kRecipMask;
  const bool in = s.request_type & kDirIn;
  auto reply = [&](std::vector<uint8_t> v) {
    ctrl_data_ = std::move(v);
    return true;
  };
  if (type == kTypeStandard && recip == kRecipDevice) {
    switch (s.request) {
      case kReqGetStatus:
        return in && reply({0, 0});  // bus powered, remote wakeup off
      case kReqClearFeature:
      case kReqSetFeature:
        return !in && s.value == kFeatureRemoteWakeup;  // accepted, nothing to wake
      case kReqSetAddress:
        if (in || s.value > 127 || s.index || s.length) return false;
        pending_address_ = uint8_t(s.value);
        set_address_pending_ = true;
        return true;
      case kReqGetDescriptor: {
        if (!in) return false;
        uint8_t dtype = uint8_t(s.value >> 8), idx = uint8_t(s.value);
        if (dtype == kDescDevice) return reply(device_descriptor());
        if (dtype == kDescConfig && idx == 0) return reply(config_descriptor());
        if (dtype == kDescString) {
          auto d = string_descriptor(idx);
          return !d.empty() && reply(std::move(d));
        }
        return false;  // device qualifier etc.: a full-speed-only device stalls (USB 2.0 9.6.2)
      }
      case kReqGetConfiguration:
        return in && reply({config_});
      case kReqSetConfiguration:
        if (in || (s.value & 0xff) > kConfigValue) return false;
        config_ = uint8_t(s.value);
        ep_halted_ = false;
        polled_ = false;
        changed_ = true;
        return true;
      default:
        return false;
    }
  }
  if (type == kTypeStandard && recip == kRecipInterface) {
    if ((s.index & 0xff) != 0) return false;  // the only interface is 0
    switch (s.request) {
      case kReqGetStatus:
        return in && reply({0, 0});
      case kReqGetDescriptor: {
        if (!in) return false;
        uint8_t dtype = uint8_t(s.value >> 8);
        if (dtype == kDescReport) return reply({std::begin(kReportDesc), std::end(kReportDesc)});
        if (dtype == kDescHid) {
          auto c = config_descriptor();
          return reply({c.begin() + 18, c.begin() + 27});
        }
        return false;
      }
      case kReqGetInterface:
        return in && config_ && reply({0});
      case kReqSetInterface:
        return !in && config_ && s.value == 0;
      default:
        return false;
    }
  }
  if (type == kTypeStandard && recip == kRecipEndpoint) {
    uint8_t ep = uint8_t(s.index);
    bool int_ep = ep == (0x80 | kIntEndpoint);
    if (ep != 0 && ep != 0x80 && !int_ep) return false;
    switch (s.request) {
      case kReqGetStatus:
        return in && reply({uint8_t(int_ep && ep_halted_), 0});
      case kReqClearFeature:
      case kReqSetFeature:
        if (in || s.value != kFeatureEndpointHalt) return false;
        if (int_ep) ep_halted_ = s.request == kReqSetFeature;
        return true;
      default:
        return false;
    }
  }
  if (type == kTypeClass && recip == kRecipInterface && (s.index & 0xff) == 0) {
    switch (s.request) {
      case kGetReport: {
        if (!in || (s.value >> 8) != kReportTypeInput || (s.value & 0xff) != 0) return false;
        auto r = report_locked();
        return reply({r.begin(), r.end()});
      }
      case kGetIdle:
        return in && reply({idle_});
      case kGetProtocol:
        return in && reply({protocol_});
      case kSetIdle:
        if (in) return false;
        idle_ = uint8_t(s.value >> 8);
        last_report_ns_ = clock_();
        return true;
      case kSetProtocol:
        if (in || s.value > 1) return false;
        protocol_ = uint8_t(s.value);
        return true;
      default:
        return false;  // SET_REPORT: the tablet has no output or feature report
    }
  }
  return false;
}

// ---- saved state ----

void HidTablet::save(state::StateWriter& w) const {
  std::lock_guard g(mu_);
  const int64_t now = clock_();
  w.u8(address_);
  w.u8(pending_address_);
  w.boolean(set_address_pending_);
  w.u8(config_);
  w.boolean(ep_halted_);
  w.u8(idle_);
  w.u8(protocol_);
  w.i64(now - last_report_ns_);
  w.i64(now - last_poll_ns_);
  w.boolean(polled_);
  w.u8(uint8_t(stage_));
  for (uint8_t b : {setup_.request_type, setup_.request}) w.u8(b);
  for (uint16_t v : {setup_.value, setup_.index, setup_.length}) w.u16(v);
  w.blob(ctrl_data_);
  w.u32(uint32_t(ctrl_pos_));
  w.i32(x_);
  w.i32(y_);
  w.u8(buttons_);
  w.i32(wheel_);
  w.i32(hwheel_);
  w.boolean(changed_);
  w.u8(uint8_t(queued_.size()));
  for (auto& q : queued_)
    for (uint8_t b : q) w.u8(b);
}

void HidTablet::load(state::StateReader& r) {
  if (r.version() != 1 && r.version() != 2) r.fail("unknown version (this Vireo has 1 and 2)");
  auto in = [&](int64_t v, int64_t lo, int64_t hi, const char* what) {
    if (v < lo || v > hi) r.fail(std::string(what) + " is " + std::to_string(v) + ", not in " + std::to_string(lo) + ".." + std::to_string(hi));
  };
  uint8_t address = r.u8(), pending = r.u8();
  in(address, 0, 127, "the USB address");
  in(pending, 0, 127, "the pending USB address");
  bool pending_set = r.boolean();
  uint8_t config = r.u8();
  in(config, 0, 1, "the configuration");
  bool halted = r.boolean();
  uint8_t idle = r.u8(), protocol = r.u8();
  in(protocol, 0, 1, "the protocol");
  int64_t report_age = r.i64(), poll_age = r.i64();
  bool polled = r.boolean();
  uint8_t stage = r.u8();
  in(stage, 0, uint8_t(Stage::Stalled), "the control stage");
  SetupPacket setup;
  setup.request_type = r.u8();
  setup.request = r.u8();
  setup.value = r.u16();
  setup.index = r.u16();
  setup.length = r.u16();
  std::vector<uint8_t> data = r.blob(65535);
  uint32_t pos = r.u32();
  in(pos, 0, int64_t(data.size()), "the control data position");
  int32_t x = r.i32(), y = r.i32();
  in(x, 0, kMaxCoord, "x");
  in(y, 0, kMaxCoord, "y");
  uint8_t buttons = r.u8();
  in(buttons, 0, 0x1f, "the buttons");
  int32_t wheel = r.i32(), hwheel = r.i32();
  in(wheel, -1000, 1000, "the wheel");
  in(hwheel, -1000, 1000, "the horizontal wheel");
  bool changed = r.boolean();
  std::deque<std::array<uint8_t, kReportLen>> queued;
  if (r.version() >= 2) {
    uint8_t n = r.u8();
    in(n, 0, int64_t(kQueueMax), "the queued reports");
    for (int i = 0; i < n; i++) {
      std::array<uint8_t, kReportLen> q;
      for (auto& b : q) b = r.u8();
      in(q[0], 0, 0x1f, "a queued report's buttons");
      in(q[1] | q[2] << 8, 0, kMaxCoord, "a queued report's x");
      in(q[3] | q[4] << 8, 0, kMaxCoord, "a queued report's y");
      queued.push_back(q);
    }
  }
  r.finish();
  std::lock_guard g(mu_);
  const int64_t now = clock_();
  address_ = address;
  pending_address_ = pending;
  set_address_pending_ = pending_set;
  config_ = config;
  ep_halted_ = halted;
  idle_ = idle;
  protocol_ = protocol;
  // Ages at the save, from this process's clock (a negative age is a clock
  // that went backwards: treat it as just now).
  last_report_ns_ = now - std::max<int64_t>(report_age, 0);
  last_poll_ns_ = now - std::max<int64_t>(poll_age, 0);
  polled_ = polled;
  stage_ = Stage(stage);
  setup_ = setup;
  ctrl_data_ = std::move(data);
  ctrl_pos_ = pos;
  x_ = x;
  y_ = y;
  buttons_ = buttons;
  wheel_ = wheel;
  hwheel_ = hwheel;
  changed_ = changed;
  queued_ = std::move(queued);
}

}  // namespace vireo::usb
