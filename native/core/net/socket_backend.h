// A NIC on a Vireo isolated network: a client of the network's switch
// (net/switch.h) over its UNIX SOCK_SEQPACKET socket, one Ethernet frame per
// packet. Frames for the guest are read on this backend's thread; send()
// writes without blocking (a full socket drops the frame, as a busy switch
// port would).
#pragma once
#include <atomic>
#include <string>
#include <thread>

#include "net/backend.h"

namespace vireo::net {

class SocketBackend : public NetBackend {
public:
  // Connects; throws NetError saying no switch listens there (the network is
  // not started) or why the socket can't be reached.
  explicit SocketBackend(std::string path);
  ~SocketBackend() override;

  void start(Receiver rx) override;
  void stop() override;
  bool send(std::span<const uint8_t> frame) override;
  std::string kind() const override { return "switch"; }
  // Frames longer than the switch carries, dropped here.
  uint64_t dropped() const { return dropped_.load(); }

private:
  void run();
  std::string path_;
  int fd_ = -1, wake_fd_ = -1;
  Receiver rx_;
  std::thread thread_;
  std::atomic<bool> quit_{false}, stopped_{false};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace vireo::net
