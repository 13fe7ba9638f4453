// A NIC bridged onto the host's LAN: a TAP device (Linux tun/tap, IFF_TAP)
// made for the NIC and attached to a host bridge (SIOCBRADDIF), as QEMU's
// -netdev bridge does through qemu-bridge-helper. Making a TAP and adding it
// to a bridge needs CAP_NET_ADMIN; without it, a persistent TAP the user owns
// that is already a port of the bridge and up can be named instead
// (`ip tuntap add dev vireo-tap0 mode tap user $USER`,
// `ip link set vireo-tap0 master br0 up`). Missing rights or a missing bridge
// throw NetError saying what is missing and how to grant it.
#pragma once
#include <atomic>
#include <string>
#include <thread>

#include "net/backend.h"

namespace vireo::net {

struct TapOptions {
  std::string bridge;  // the host bridge the TAP joins ("" = none: the TAP only)
  std::string tap;     // an existing (persistent) TAP to use; "" = make one named vireo%d
};

class TapBackend : public NetBackend {
public:
  explicit TapBackend(TapOptions opt);
  ~TapBackend() override;

  void start(Receiver rx) override;
  void stop() override;
  bool send(std::span<const uint8_t> frame) override;
  std::string kind() const override { return "tap"; }
  // The TAP's name (the kernel's choice when none was given).
  const std::string& ifname() const { return ifname_; }

private:
  void run();
  TapOptions opt_;
  std::string ifname_;
  int fd_ = -1, wake_fd_ = -1;
  Receiver rx_;
  std::thread thread_;
  std::atomic<bool> quit_{false}, stopped_{false};
};

}  // namespace vireo::net
