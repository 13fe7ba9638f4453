// QEMU as a reference peer for comparison tests: starts qemu-system-x86_64
// (never a runtime dependency of Vireo; tests skip without it), talks QMP over
// a unix socket, reads the VGA text buffer and sends keys.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace qemu_peer {

// Full path of `prog` on $PATH, or "".
inline std::string find_program(const std::string& prog) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string cand = p.substr(start, end - start) + "/" + prog;
    if (access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return {};
}

// The same mapping as vga::VgaDevice::text_screen(): printable ASCII as is,
// NUL as space, CP437 single/double box lines as | and -, the other box
// drawing characters (0xb4..0xda) as +, anything else as '?'; one line per
// row with trailing spaces trimmed.
inline std::string text_from_vram(const std::vector<uint8_t>& b, int cols, int rows) {
  std::string out;
  for (int r = 0; r < rows; r++) {
    std::string line;
    for (int c = 0; c < cols; c++) {
      size_t i = size_t(r * cols + c) * 2;
      uint8_t chr = i < b.size() ? b[i] : 0;
      char o;
      if (chr >= 0x20 && chr < 0x7f) o = char(chr);
      else if (chr == 0) o = ' ';
      else if (chr == 0xb3 || chr == 0xba) o = '|';
      else if (chr == 0xc4 || chr == 0xcd) o = '-';
      else if (chr >= 0xb4 && chr <= 0xda) o = '+';
      else o = '?';
      line.push_back(o);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out.push_back('\n');
  }
  return out;
}

class Qemu {
public:
  // args: everything after the program name; the QMP socket is added here.
  Qemu(const std::string& binary, std::vector<std::string> args, const std::string& workdir) : dir_(workdir) {
    sock_path_ = dir_ + "/qmp.sock";
    unlink(sock_path_.c_str());
    args.insert(args.begin(), binary);
    args.push_back("-qmp");
    args.push_back("unix:" + sock_path_ + ",server=on,wait=off");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string log = dir_ + "/qemu.log";
    // fork + exec rather than posix_spawn: the child asks to be killed when
    // this test process dies (a crash or a ctest timeout must not leave a
    // TCG guest spinning on a core for the rest of the suite).
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error(std::string("cannot fork for ") + binary + ": " + std::strerror(errno));
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    connect_qmp();
  }
  ~Qemu() {
    if (fd_ >= 0) close(fd_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Qemu(const Qemu&) = delete;
  Qemu& operator=(const Qemu&) = delete;

  // Sends one command (a JSON object text) and returns the response line
  // ("return" or "error"); asynchronous events in between are skipped.
  std::string command(const std::string& json) {
    std::string msg = json + "\n";
    if (::write(fd_, msg.data(), msg.size()) != ssize_t(msg.size())) throw std::runtime_error("QMP write failed");
    for (;;) {
      std::string line = read_line();
      if (line.find("\"return\"") != std::string::npos) return line;
      if (line.find("\"error\"") != std::string::npos) throw std::runtime_error("QMP error: " + line + " for " + json);
    }
  }

  // The 80x25 colour text buffer at 0xb8000 as the guest sees it, through
  // QMP pmemsave (what `xp /4000bx 0xb8000` shows, without parsing).
  std::vector<uint8_t> text_vram(size_t bytes = 4000) {
    std::string file = dir_ + "/vram.bin";
    unlink(file.c_str());
    command("{\"execute\":\"pmemsave\",\"arguments\":{\"val\":753664,\"size\":" + std::to_string(bytes) +
            ",\"filename\":\"" + file + "\"}}");
    std::ifstream f(file, std::ios::binary);
    std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return b;
  }
  std::string screen_text() { return text_from_vram(text_vram(), 80, 25); }

  // QEMU key names (qcodes): "c", "e", "spc", "ret", "shift"...
  void send_key(const std::string& qcode) {
    command("{\"execute\":\"send-key\",\"arguments\":{\"keys\":[{\"type\":\"qcode\",\"data\":\"" + qcode + "\"}]}}");
  }
  // Types `text` on a US layout: letters, digits, space, Enter and - _ = . / ; :
  void type(const std::string& text) {
    for (char c : text) {
      std::string k;
      bool shift = (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
      if (c >= 'a' && c <= 'z') k = std::string(1, c);
      else if (c >= 'A' && c <= 'Z') k = std::string(1, char(c - 'A' + 'a'));
      else if (c >= '0' && c <= '9') k = std::string(1, c);
      else if (c == ' ') k = "spc";
      else if (c == '\n') k = "ret";
      else if (c == '-' || c == '_') k = "minus";
      else if (c == '=') k = "equal";
      else if (c == '.') k = "dot";
      else if (c == '/') k = "slash";
      else if (c == ';' || c == ':') k = "semicolon";
      else throw std::runtime_error(std::string("qemu_peer::type: no key for '") + c + "'");
      std::string keys = "{\"type\":\"qcode\",\"data\":\"" + k + "\"}";
      if (shift) keys = "{\"type\":\"qcode\",\"data\":\"shift\"}," + keys;
      command("{\"execute\":\"send-key\",\"arguments\":{\"keys\":[" + keys + "]}}");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // The screen as QEMU's display shows it (QMP screendump, a binary PPM).
  struct Image {
    uint32_t width = 0, height = 0;
    std::vector<uint8_t> rgb;  // width*height*3
  };
  Image screendump() {
    std::string file = dir_ + "/screen.ppm";
    unlink(file.c_str());
    command("{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"" + file + "\"}}");
    std::ifstream f(file, std::ios::binary);
    std::string magic;
    int maxval = 0;
    Image img;
    f >> magic >> img.width >> img.height >> maxval;
    f.get();  // the single whitespace byte after the header
    if (magic != "P6" || maxval != 255) throw std::runtime_error("screendump: not an 8-bit PPM: " + file);
    img.rgb.resize(size_t(img.width) * img.height * 3);
    f.read(reinterpret_cast<char*>(img.rgb.data()), std::streamsize(img.rgb.size()));
    if (!f) throw std::runtime_error("screendump: short file " + file);
    return img;
  }

  bool alive() {
    if (pid_ <= 0) return false;
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

private:
  void connect_qmp() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strncpy(a.sun_path, sock_path_.c_str(), sizeof(a.sun_path) - 1);
      if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) break;
      close(fd_);
      fd_ = -1;
      if (!alive()) throw std::runtime_error("qemu exited at start; see " + dir_ + "/qemu.log");
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("no QMP socket from qemu");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    read_line();  // greeting
    command("{\"execute\":\"qmp_capabilities\"}");
  }
  std::string read_line() {
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      char tmp[4096];
      ssize_t n = ::read(fd_, tmp, sizeof(tmp));
      if (n <= 0) throw std::runtime_error("QMP connection closed");
      buf_.append(tmp, size_t(n));
    }
  }

  std::string dir_, sock_path_, buf_;
  pid_t pid_ = -1;
  int fd_ = -1;
};

}  // namespace qemu_peer
