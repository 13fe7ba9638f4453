// Typing into a PC guest from tests, as a person at the console does.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "kvm_helpers.h"
#include "machine/pc_board.h"

// One key at a time (US layout, see us_key), the next once the guest has
// taken the last one from the keyboard controller.
inline void type_keys(vireo::PcBoard& b, const std::string& text) {
  for (char c : text) {
    auto [code, shift] = us_key(c);
    if (shift) b.key("ShiftLeft", true);
    b.key(code, true);
    b.key(code, false);
    if (shift) b.key("ShiftLeft", false);
    for (int i = 0; i < 600 && b.input_pending(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// The last line of a text screen that starts with `prompt`, or "".
inline std::string last_line_starting(const std::string& screen, const std::string& prompt) {
  size_t p = screen.rfind("\n" + prompt);
  if (p == std::string::npos) {
    if (screen.compare(0, prompt.size(), prompt) != 0) return {};
    p = 0;
  } else {
    p++;
  }
  size_t nl = screen.find('\n', p);
  return screen.substr(p, nl == std::string::npos ? std::string::npos : nl - p);
}

// Types a command at a text-mode prompt ("grub> ") and presses Enter once the
// whole line shows on screen. A PC BIOS keeps 15 keys: typing further ahead
// of a guest that is busy (GRUB loading a module) loses keys on a real PC
// too, so a person waits for the echo. False if the line never showed.
inline bool type_command(vireo::PcBoard& b, const std::string& prompt, const std::string& line, int seconds) {
  type_keys(b, line);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::string t;
  while (last_line_starting(t = b.screen_text(), prompt) != prompt + line) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::printf("typed \"%s\"; keyboard path: %s\nscreen:\n%s\n", line.c_str(), b.input_debug().c_str(), t.c_str());
      return false;
    }
    b.poll(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  type_keys(b, "\n");
  return true;
}
