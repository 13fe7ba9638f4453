// The TAP + host bridge backend (net/tap.h) in a network namespace the test
// makes (`ip netns add`): a bridge and a veth pair inside it, the kernel on
// the veth's far end answering ARP. The test thread enters the namespace
// before making the TAP, so the TAP, the bridge and every frame stay inside
// it; the namespace is deleted at the end. Needs root/CAP_NET_ADMIN and
// `ip`; skipped with the reason otherwise.

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "net/tap.h"

using namespace vireo;
using Bytes = std::vector<uint8_t>;

namespace {

const std::string kNs = "vireo-tap-test-" + std::to_string(::getpid());

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// Enters a fresh namespace with br0 (bridge) ← v0 ~ v1 (10.9.0.1/24); leaves and deletes it on destruction.
struct Netns {
  int home = -1;
  bool entered = false;
  std::string problem;
  Netns() {
    if (::geteuid() != 0) {
      problem = "not root: making a network namespace, a bridge and a TAP needs CAP_NET_ADMIN";
      return;
    }
    if (!sh("ip -V")) {
      problem = "the ip command (iproute2) is missing";
      return;
    }
    if (!sh("ip netns add " + kNs)) {
      problem = "`ip netns add` failed (no CAP_NET_ADMIN/CAP_SYS_ADMIN in this container?)";
      return;
    }
    std::string n = "ip -n " + kNs + " ";
    bool ok = sh(n + "link add br0 type bridge") && sh(n + "link add v0 type veth peer name v1") && sh(n + "link set v0 master br0") &&
              sh(n + "addr add 10.9.0.1/24 dev v1") && sh(n + "link set br0 up") && sh(n + "link set v0 up") && sh(n + "link set v1 up");
    home = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = ::open(("/run/netns/" + kNs).c_str(), O_RDONLY | O_CLOEXEC);
    if (!ok || home < 0 || fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      problem = "could not set up the bridge and veth in the namespace";
    } else {
      entered = true;
    }
    if (fd >= 0) ::close(fd);
  }
  ~Netns() {
    if (entered) ::setns(home, CLONE_NEWNET);
    if (home >= 0) ::close(home);
    sh("ip netns del " + kNs);
  }
};

Netns& ns() {
  static Netns n;
  if (!n.problem.empty()) SKIP(n.problem);
  return n;
}

TEST(without_cap_net_admin_the_error_says_what_is_missing) {
  ns();
  // A child that gives up root (and with it every capability) tries to make the TAP.
  int pipefd[2];
  CHECK(::pipe(pipefd) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    std::string msg = "no error";
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      try {
        net::TapBackend t({"br0", ""});
      } catch (net::NetError& e) {
        msg = e.what();
      }
    } else {
      msg = "setuid failed";
    }
    if (::write(pipefd[1], msg.data(), msg.size()) < 0) _exit(2);
    _exit(0);
  }
  ::close(pipefd[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) got.append(buf, size_t(n));
  ::close(pipefd[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  std::printf("        %s\n", got.c_str());
  CHECK(got.find("needs CAP_NET_ADMIN") != std::string::npos);
  CHECK(got.find("ip tuntap add") != std::string::npos);
}

TEST(a_missing_bridge_or_a_non_bridge_is_refused_by_name) {
  ns();
  bool missing = false, notbridge = false;
  try {
    net::TapBackend t({"nosuchbr0", ""});
  } catch (net::NetError& e) {
    missing = std::string(e.what()).find("no network interface 'nosuchbr0'") != std::string::npos;
  }
  try {
    net::TapBackend t({"v1", ""});
  } catch (net::NetError& e) {
    notbridge = std::string(e.what()).find("'v1' is not a bridge") != std::string::npos;
  }
  CHECK(missing);
  CHECK(notbridge);
}

TEST(a_tap_on_the_bridge_carries_the_guests_frames_both_ways) {
  ns();
  std::mutex mu;
  std::vector<Bytes> got;
  auto tap = std::make_unique<net::TapBackend>(net::TapOptions{"br0", ""});
  std::printf("        TAP %s on br0 in netns %s\n", tap->ifname().c_str(), kNs.c_str());
  CHECK(sh("ip -n " + kNs + " -o link show " + tap->ifname() + " | grep -q 'master br0'"));
  tap->start([&](std::span<const uint8_t> f) {
    std::lock_guard g(mu);
    got.emplace_back(f.begin(), f.end());
  });
  // The guest (52:54:00:00:09:02, 10.9.0.2) asks who has 10.9.0.1: the veth's far end answers through the bridge.
  const uint8_t gmac[6] = {0x52, 0x54, 0x00, 0x00, 0x09, 0x02};
  Bytes arp(42, 0);
  std::memset(arp.data(), 0xff, 6);
  std::memcpy(arp.data() + 6, gmac, 6);
  arp[12] = 0x08, arp[13] = 0x06;
  const uint8_t body[] = {0, 1, 8, 0, 6, 4, 0, 1};
  std::memcpy(arp.data() + 14, body, 8);
  std::memcpy(arp.data() + 22, gmac, 6);
  const uint8_t sip[] = {10, 9, 0, 2}, tip[] = {10, 9, 0, 1};
  std::memcpy(arp.data() + 28, sip, 4);
  std::memcpy(arp.data() + 38, tip, 4);
  bool answered = false;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!answered && std::chrono::steady_clock::now() < end) {
    CHECK(tap->send(arp));  // the bridge port may still be in its learning state: repeat
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::lock_guard g(mu);
    for (auto& f : got) {
      if (f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && std::memcmp(f.data(), gmac, 6) == 0 &&
          std::memcmp(f.data() + 28, tip, 4) == 0) {
        answered = true;
      }
    }
  }
  CHECK(answered);
  std::string name = tap->ifname();
  tap.reset();
  CHECK(sh("ip -n " + kNs + " link show br0"));
  CHECK(!sh("ip -n " + kNs + " link show " + name));  // the TAP went away with its NIC
}

}  // namespace
