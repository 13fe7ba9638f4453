// A PCI bus without a CPU, for device tests (virtio_blk_test,
// virtio_net_test, e1000_test): guest RAM as a GuestMemory over a heap
// buffer, the PIO and MMIO buses, a PciHost whose INTx routing is recorded
// (level, pin, rising edges), config-space access to the device's slot and
// sized MMIO / port accessors. A test's Rig derives from it and attaches its
// function at `slot`.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "bus/bus.h"
#include "bus/device.h"
#include "devices/pci/pci.h"
#include "machine/guest_memory.h"

struct PciTestBus {
  std::vector<uint8_t> ram;
  vireo::GuestMemory mem;
  vireo::Bus pio, mmio;
  vireo::pci::PciHost host{pio, mmio};
  int slot;
  std::mutex mu;  // guards the INTx record (and whatever else a Rig records from device threads)
  bool intx = false;
  int intx_raises = 0, intx_pin = 0;

  PciTestBus(uint64_t ram_size, int slot_) : ram(ram_size, 0), slot(slot_) {
    mem.add_region(0, ram_size, ram.data());
    host.route_intx = [this](int, int pin, bool level) {
      std::lock_guard g(mu);
      if (level && !intx) intx_raises++;
      intx = level;
      intx_pin = pin;
    };
  }
  uint32_t cfgr(uint32_t reg, int size) { return host.config_read(0, slot, 0, reg, size); }
  void cfgw(uint32_t reg, int size, uint32_t v) { host.config_write(0, slot, 0, reg, size, v); }
  uint64_t mmio_read(uint64_t addr, int size) {
    uint8_t b[8] = {};
    mmio.read(addr, {b, size_t(size)});
    return vireo::span_to_u64({b, size_t(size)});
  }
  void mmio_write(uint64_t addr, int size, uint64_t v) {
    uint8_t b[8];
    vireo::u64_to_span(v, {b, size_t(size)});
    mmio.write(addr, {b, size_t(size)});
  }
  uint64_t io_read(uint16_t port, int size) {
    uint8_t b[8] = {};
    pio.read(port, {b, size_t(size)});
    return vireo::span_to_u64({b, size_t(size)});
  }
  void io_write(uint16_t port, int size, uint64_t v) {
    uint8_t b[8];
    vireo::u64_to_span(v, {b, size_t(size)});
    pio.write(port, {b, size_t(size)});
  }
  bool irq() {
    std::lock_guard g(mu);
    return intx;
  }
};
