// Virtio 1.x constants shared by the queue model, the PCI transport and the
// devices. Numbers are from the OASIS "Virtual I/O Device (VIRTIO) Version
// 1.2" specification; the section is named next to each group.
#pragma once
#include <cstdint>

namespace vireo::virtio {

// 2.1 Device status field.
constexpr uint8_t kStatusAcknowledge = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8,
                  kStatusNeedsReset = 64, kStatusFailed = 128;

// 6 Reserved feature bits.
constexpr int kFIndirectDesc = 28, kFEventIdx = 29, kFVersion1 = 32;
constexpr uint64_t bit(int n) { return uint64_t(1) << n; }

// 2.7.5 The virtqueue descriptor table: flags.
constexpr uint16_t kDescNext = 1, kDescWrite = 2, kDescIndirect = 4;
// 2.7.6 / 2.7.8 ring flags.
constexpr uint16_t kAvailNoInterrupt = 1, kUsedNoNotify = 1;
// 2.7 Split virtqueues: the queue size is a power of two, at most 32768.
constexpr uint16_t kMaxQueueSize = 32768;

// 4.1.4 Virtio structure PCI capabilities (cap id 0x09, vendor-specific).
constexpr uint8_t kPciCapVendor = 0x09, kPciCapMsix = 0x11;
constexpr uint8_t kCapCommonCfg = 1, kCapNotifyCfg = 2, kCapIsrCfg = 3, kCapDeviceCfg = 4, kCapPciCfg = 5;
// 4.1.2.1 PCI device IDs: 0x1040 + device type for modern-only devices.
constexpr uint16_t kPciVendor = 0x1af4, kPciDeviceBase = 0x1040;
constexpr uint16_t kNoVector = 0xffff;  // 4.1.5.1.2 VIRTIO_MSI_NO_VECTOR
// 4.1.4.5 ISR status bits.
constexpr uint8_t kIsrQueue = 1, kIsrConfig = 2;

// 5 Device types.
constexpr uint16_t kDeviceNet = 1, kDeviceBlock = 2;

}  // namespace vireo::virtio
