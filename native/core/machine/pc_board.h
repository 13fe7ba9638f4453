// The PC board: the chipset, firmware interface and display/disk devices that
// a firmware (SeaBIOS) boot needs on top of the base machine's serial ports.
#pragma once

namespace vireo {

class Machine;

class Board {
public:
  virtual ~Board() = default;
};

}  // namespace vireo
