#include "devices/ide/piix_ide.h"

namespace vireo::ide {

namespace {

class BmDma : public IoDevice {
public:
  explicit BmDma(std::array<std::shared_ptr<IdeChannel>, 2> ch) : ch_(std::move(ch)) {}
  StateKind state_kind() const override { return StateKind::None; }  // registers saved by each IdeChannel
  void read(uint64_t off, std::span<uint8_t> d) override {
    for (size_t i = 0; i < d.size(); i++) {
      uint64_t o = off + i;
      d[i] = o < 16 ? ch_[o >> 3]->bm_read(unsigned(o & 7)) : 0xff;
    }
  }
  void write(uint64_t off, std::span<const uint8_t> d) override {
    // Byte by byte, low first: a dword write of the PRD pointer lands whole
    // before anything else; a start bit written together with the direction
    // bit in one byte starts in the right direction.
    for (size_t i = 0; i < d.size(); i++) {
      uint64_t o = off + i;
      if (o < 16) ch_[o >> 3]->bm_write(unsigned(o & 7), d[i]);
    }
  }

private:
  std::array<std::shared_ptr<IdeChannel>, 2> ch_;
};

}  // namespace

PiixIde::PiixIde(const GuestMemory* mem, IrqLine irq14, IrqLine irq15) {
  name = "piix3-ide";
  auto master = [this] { return bus_master(); };
  ch_[0] = std::make_shared<IdeChannel>(std::move(irq14), mem, master);
  ch_[1] = std::make_shared<IdeChannel>(std::move(irq15), mem, master);
  bm_ = std::make_shared<BmDma>(ch_);
  set_ids(0x8086, 0x7010, 0x010180, 0x00);
  add_bar(4, 16, pci::BarKind::Io, bm_);
  // IDETIM primary/secondary (0x40-0x43) and SIDETIM (0x44): firmware writes
  // the decode-enable bits here; Linux's ata_piix reads them back.
  for (int i = 0x40; i <= 0x44; i++) wmask[i] = 0xff;
}

void PiixIde::reset() {
  ch_[0]->reset();
  ch_[1]->reset();
}

}  // namespace vireo::ide
