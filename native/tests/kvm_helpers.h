// Helpers for tests that boot guests under /dev/kvm.
#pragma once
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "kvm/kvm.h"
#include "machine/machine.h"

// The DOM KeyboardEvent.code that types `c` on a US layout, and whether it
// needs Shift: letters, digits, space, Enter, Backspace, Tab and every
// printable symbol (electron/common/keys.ts has the same map for the app).
inline std::pair<std::string, bool> us_key(char c) {
  if (c >= 'a' && c <= 'z') return {std::string("Key") + char(c - 'a' + 'A'), false};
  if (c >= 'A' && c <= 'Z') return {std::string("Key") + c, true};
  if (c >= '0' && c <= '9') return {std::string("Digit") + c, false};
  switch (c) {
    case ' ': return {"Space", false};
    case '\n': return {"Enter", false};
    case '\b': return {"Backspace", false};
    case '-': return {"Minus", false};
    case '_': return {"Minus", true};
    case '=': return {"Equal", false};
    case '.': return {"Period", false};
    case '/': return {"Slash", false};
    case ';': return {"Semicolon", false};
    case ':': return {"Semicolon", true};
    case '(': return {"Digit9", true};
    case ')': return {"Digit0", true};
    case '+': return {"Equal", true};
    case '\t': return {"Tab", false};
    case '[': return {"BracketLeft", false};
    case ']': return {"BracketRight", false};
    case '\\': return {"Backslash", false};
    case '\'': return {"Quote", false};
    case '`': return {"Backquote", false};
    case ',': return {"Comma", false};
    case '!': return {"Digit1", true};
    case '@': return {"Digit2", true};
    case '#': return {"Digit3", true};
    case '$': return {"Digit4", true};
    case '%': return {"Digit5", true};
    case '^': return {"Digit6", true};
    case '&': return {"Digit7", true};
    case '*': return {"Digit8", true};
    case '{': return {"BracketLeft", true};
    case '}': return {"BracketRight", true};
    case '|': return {"Backslash", true};
    case '"': return {"Quote", true};
    case '~': return {"Backquote", true};
    case '<': return {"Comma", true};
    case '>': return {"Period", true};
    case '?': return {"Slash", true};
  }
  return {"", false};
}

// Pixels with green > 0x80 in rows [y0, y1) of an image `bpp` bytes per pixel
// (RGB: offset 1 is green; BGRX likewise). Rows past the image count nothing.
inline size_t lit_rows(const std::vector<uint8_t>& px, int bpp, uint32_t width, uint32_t y0, uint32_t y1) {
  size_t n = 0;
  for (uint32_t y = y0; y < y1; y++)
    for (uint32_t x = 0; x < width; x++) {
      size_t i = (size_t(y) * width + x) * size_t(bpp) + 1;
      if (i < px.size()) n += px[i] > 0x80;
    }
  return n;
}

inline void require_kvm() {
  std::string p = vireo::kvm::kvm_problem();
  if (!p.empty()) SKIP("needs /dev/kvm: " + p);
}

inline std::string guest(const char* name) {
  const char* d = std::getenv("VIREO_GUEST_DIR");
  std::string path = std::string(d ? d : "guests") + "/" + name;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    return path;
  }
  SKIP("test guest " + path + " is not built (needs nasm)");
}

// A test guest's "name HEX" lines on COM1 (puts64/report32 in guests/lib64.inc),
// as name -> value; other lines are skipped.
inline std::map<std::string, uint64_t> serial_values(const std::string& serial) {
  std::map<std::string, uint64_t> out;
  std::istringstream in(serial);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto sp = line.find(' ');
    if (sp == std::string::npos) continue;
    try {
      out[line.substr(0, sp)] = std::stoull(line.substr(sp + 1), nullptr, 16);
    } catch (const std::exception&) {
    }
  }
  return out;
}

// Runs a machine until it stops (or the timeout passes), collecting COM1 output.
struct Run {
  std::mutex mu;
  std::condition_variable cv;
  std::string serial;
  bool done = false;
  vireo::RunState final_state = vireo::RunState::Created;
  vireo::StopInfo info;

  void attach(vireo::Machine& m) {
    m.on_serial_ready = [this, &m] {
      auto b = m.take_serial(0);
      std::lock_guard g(mu);
      serial.append(b.begin(), b.end());
      cv.notify_all();
    };
    m.on_state = [this](vireo::RunState s, const vireo::StopInfo& i) {
      if (s == vireo::RunState::Stopped || s == vireo::RunState::Crashed) {
        std::lock_guard g(mu);
        done = true;
        final_state = s;
        info = i;
        cv.notify_all();
      }
    };
  }
  bool wait_done(vireo::Machine& m, int seconds) {
    std::unique_lock g(mu);
    bool ok = cv.wait_for(g, std::chrono::seconds(seconds), [&] { return done; });
    g.unlock();
    auto b = m.take_serial(0);  // whatever came after the last notification
    g.lock();
    serial.append(b.begin(), b.end());
    return ok;
  }
  bool wait_output(const std::string& needle, int seconds) {
    std::unique_lock g(mu);
    return cv.wait_for(g, std::chrono::seconds(seconds), [&] { return serial.find(needle) != std::string::npos || done; }) &&
           serial.find(needle) != std::string::npos;
  }
};
