// Writes hand-made seed inputs for every libFuzzer target in this directory:
//   fuzz_seeds OUTDIR [KERNEL...]
// makes OUTDIR/<target>/<seed> (qcow2 seeds come from make-corpus.sh). Each
// seed is a short program in the target's input format (fuzz_input.h) that
// reaches the interesting code: a complete request, a mode set, a DMA
// transfer. KERNEL files (e.g. the test guests' ELF images) become
// kernel_fuzz seeds as they are.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "devices/virtio/blk/device.h"
#include "devices/virtio/net/device.h"
#include "fuzz_input.h"

using namespace vireo;
using namespace vireo::fuzz;

namespace {

std::string g_out;

void save(const std::string& target, const std::string& name, const std::vector<uint8_t>& v) {
  std::string dir = g_out + "/" + target;
  mkdir(dir.c_str(), 0755);
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size()));
}

// ---- virtio (virtio_rig.h ops) ----
void desc(Writer& w, int q, uint16_t i, uint32_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  w.u8(6).u8(q).u16(i).u32(addr).u8(0).u32(len).u16(flags).u16(next);
}
void poke(Writer& w, uint16_t off, std::vector<uint8_t> b) { w.u8(5).u16(off).u8(b.size()).bytes(b); }
void publish(Writer& w, int q, uint16_t head) { w.u8(7).u8(q).u16(head); }
void kick(Writer& w, int q) { w.u8(8).u8(q); }
std::vector<uint8_t> le32s(std::initializer_list<uint32_t> xs) {
  std::vector<uint8_t> v;
  for (uint32_t x : xs)
    for (int i = 0; i < 4; i++) v.push_back(uint8_t(x >> (8 * i)));
  return v;
}

void virtio_blk() {
  using namespace virtio;
  const uint64_t f = bit(kBlkFFlush) | bit(kBlkFBlkSize) | bit(kBlkFSegMax) | bit(kBlkFDiscard) |
                     bit(kBlkFWriteZeroes) | bit(kFIndirectDesc) | bit(kFEventIdx);
  auto start = [&](Writer& w) { w.u16(0).u8(1).u64(f).u8(4); };  // no image; init; 16 entries
  auto request = [&](const char* name, uint32_t type, uint32_t data_len, bool writable) {
    Writer w;
    start(w);
    poke(w, 0x8000, le32s({type, 0, 1, 0}));
    desc(w, 0, 0, 0x8000, 16, kDescNext, 1);
    desc(w, 0, 1, 0x9000, data_len, uint16_t(kDescNext | (writable ? kDescWrite : 0)), 2);
    desc(w, 0, 2, 0x8010, 1, kDescWrite, 0);
    publish(w, 0, 0);
    kick(w, 0);
    w.u8(9);
    save("virtio_blk_fuzz", name, w.v);
  };
  request("read", kBlkTIn, 1024, true);
  request("write", kBlkTOut, 512, false);
  request("get-id", kBlkTGetId, 20, true);
  request("discard", kBlkTDiscard, 16, false);
  request("write-zeroes", kBlkTWriteZeroes, 16, false);
  {  // a flush (header + status only) and an indirect read chain
    Writer w;
    start(w);
    poke(w, 0x8000, le32s({kBlkTFlush, 0, 0, 0}));
    desc(w, 0, 0, 0x8000, 16, kDescNext, 1);
    desc(w, 0, 1, 0x8010, 1, kDescWrite, 0);
    publish(w, 0, 0);
    poke(w, 0x8100, le32s({kBlkTIn, 0, 3, 0}));
    // indirect table at 0xa000: header, data, status
    poke(w, 0xa000, le32s({0x8100, 0, 16, kDescNext | (1u << 16), 0x9000, 0, 512, (kDescNext | kDescWrite) | (2u << 16),
                           0x8110, 0, 1, kDescWrite}));
    desc(w, 0, 2, 0xa000, 48, kDescIndirect, 0);
    publish(w, 0, 2);
    kick(w, 0);
    w.u8(9);
    save("virtio_blk_fuzz", "flush-indirect", w.v);
  }
}

void virtio_net() {
  using namespace virtio;
  const uint64_t f = bit(kNetFMac) | bit(kNetFStatus) | bit(kNetFMrgRxbuf) | bit(kNetFCsum) | bit(kFEventIdx);
  std::vector<uint8_t> frame(12, 0);  // virtio_net_hdr (v1: 12 bytes)
  const uint8_t eth[14] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06};
  frame.insert(frame.end(), eth, eth + 14);
  frame.resize(12 + 60, 0x11);
  for (bool mrg : {true, false}) {
    Writer w;
    w.u16(0).u8(1).u64(mrg ? f : f & ~bit(kNetFMrgRxbuf)).u8(4).u8(4);
    // RX buffers first, then one TX frame, then loop it back.
    desc(w, 0, 0, 0xc000, 2048, kDescWrite, 0);
    desc(w, 0, 1, 0xd000, 40, kDescWrite | kDescNext, 2);
    desc(w, 0, 2, 0xd100, 2048, kDescWrite, 0);
    publish(w, 0, 0);
    publish(w, 0, 1);
    kick(w, 0);
    poke(w, 0xe000, frame);
    desc(w, 1, 0, 0xe000, 12, kDescNext, 1);
    desc(w, 1, 1, 0xe00c, 60, 0, 0);
    publish(w, 1, 0);
    kick(w, 1);
    w.u8(10);
    w.u8(9).u16(60).bytes({frame.data() + 12, 60});  // and one injected frame
    save("virtio_net_fuzz", mrg ? "tx-rx-mergeable" : "tx-rx", w.v);
  }
}

// ---- e1000 (e1000_fuzz.cc ops) ----
void e1000() {
  auto reg = [](Writer& w, uint32_t off, uint32_t v) { w.u8(0).u32(off).u32(v); };
  auto txd = [](Writer& w, uint8_t i, uint64_t addr, uint16_t len, uint8_t cso, uint8_t cmd, uint8_t css) {
    w.u8(7).u8(i).u64(addr).u16(len).u8(cso).u8(cmd).u8(0).u8(css).u16(0);
  };
  // An ARP broadcast and a UDP/IPv4 packet with checksum offload, looped back into the RX ring.
  std::vector<uint8_t> arp(60, 0);
  const uint8_t head[14] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06};
  std::copy(head, head + 14, arp.begin());
  std::vector<uint8_t> udp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00,
                              0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2,
                              0x30, 0x39, 0, 53, 0, 12, 0, 0, 'v', 'i', 'r', 'e'};
  for (bool tso : {false, true}) {
    Writer w;
    w.u16(0);
    reg(w, 0x0000, 1u << 26);   // CTRL.RST
    reg(w, 0x0000, 1u << 6);    // CTRL.SLU
    reg(w, 0x00d0, 0x9f);       // IMS: TXDW TXQE LSC RXDMT0 RXO RXT0
    reg(w, 0x5400, 0x12005452); // RAL0/RAH0: 52:54:00:12:34:56, AV
    reg(w, 0x5404, 0x80005634);
    reg(w, 0x2800, 0x2000);     // RX ring at 0x2000, 16 descriptors, buffers at 0x4000 + 2 KiB each
    reg(w, 0x2804, 0);
    reg(w, 0x2808, 256);
    reg(w, 0x2810, 0);
    for (int i = 0; i < 16; i++) w.u8(2).u16(0x2000 + 16 * i).u8(8).u64(0x4000 + 2048ull * (i % 8));
    reg(w, 0x2818, 15);
    reg(w, 0x0100, (1u << 1) | (1u << 3) | (1u << 15));  // RCTL: EN UPE BAM, 2 KiB buffers
    reg(w, 0x3800, 0x1000);     // TX ring at 0x1000, 16 descriptors
    reg(w, 0x3804, 0);
    reg(w, 0x3808, 256);
    reg(w, 0x3810, 0);
    reg(w, 0x3818, 0);
    reg(w, 0x0400, (1u << 1) | (1u << 3));  // TCTL: EN PSP
    w.u8(2).u16(0x3000).u8(60).bytes(arp);
    w.u8(2).u16(0x3100).u8(uint8_t(udp.size())).bytes(udp);
    txd(w, 0, 0x3000, 60, 0, 0x0b, 0);  // legacy: EOP IFCS RS
    if (!tso) {
      txd(w, 1, 0x3100, uint16_t(udp.size()), 40, 0x0f, 34);  // legacy with IC: UDP checksum at 40 from 34
      reg(w, 0x3818, 2);
    } else {
      // Context (TSE, IP + TCP/UDP offsets, MSS 16) then one data descriptor with TSE.
      w.u8(7).u8(1).u8(14).u8(24).u16(33).u8(34).u8(40).u16(0).u32(uint32_t(udp.size() - 42) | (0x2cu << 24)).u8(0).u8(42).u16(16);
      w.u8(7).u8(2).u64(0x3100).u32(uint32_t(udp.size()) | (0x1u << 20) | (0x2fu << 24)).u8(0).u8(0x3).u16(0);
      reg(w, 0x3818, 3);
    }
    w.u8(4);                      // loop what was sent back into RX
    w.u8(1).u32(0x00c0);          // ICR (read-to-clear)
    w.u8(3).u16(60).bytes(arp);   // a frame from the outside
    w.u8(5).u8(0).u8(5).u8(1);    // link down, up
    save("e1000_fuzz", tso ? "tx-tso-rx" : "tx-csum-rx", w.v);
  }
}

// ---- IDE (ide_fuzz.cc ops; bit 7 of the opcode picks the channel) ----
void ide() {
  auto tf = [](Writer& w, int reg, uint8_t v, int ch = 0) { w.u8(0 | ch << 7).u8(reg).u8(v); };
  {
    Writer w;
    w.u16(0);
    tf(w, 6, 0xa0);
    tf(w, 7, 0xec);  // IDENTIFY
    w.u8(9).u8(32);
    tf(w, 2, 2);
    tf(w, 3, 1);
    tf(w, 4, 0);
    tf(w, 5, 0);
    tf(w, 6, 0xe0);
    tf(w, 7, 0x20);  // READ SECTORS
    w.u8(9).u8(64);
    tf(w, 7, 0x30);  // WRITE SECTORS
    w.u8(10).u8(64).u32(0x12345678);
    tf(w, 1, 0x03);
    tf(w, 2, 0x46);
    tf(w, 7, 0xef);  // SET FEATURES: UDMA 6
    save("ide_fuzz", "ata-pio", w.v);
  }
  {  // bus-master DMA read of 2 sectors into RAM through a PRD at 0x1000
    Writer w;
    std::vector<uint8_t> img(0x1008, 0);
    uint32_t prd[2] = {0x2000, 0x80000000u | 1024};
    std::memcpy(&img[0x1000], prd, 8);
    w.u16(img.size()).bytes(img);
    for (int i = 0; i < 4; i++) w.u8(6).u8(4 + i).u8(uint8_t(0x1000 >> (8 * i)));
    tf(w, 2, 2);
    tf(w, 3, 0);
    tf(w, 6, 0xe0);
    tf(w, 7, 0xc8);     // READ DMA
    w.u8(6).u8(0).u8(9);  // start, to memory
    w.u8(7).u8(2);
    w.u8(6).u8(0).u8(0);
    tf(w, 7, 0xca);     // WRITE DMA
    w.u8(6).u8(0).u8(1);
    save("ide_fuzz", "ata-dma", w.v);
  }
  // ATAPI packets on the CD (channel 0 unit 1 and channel 1 unit 0).
  const std::vector<std::vector<uint8_t>> packets = {
      {0x00}, {0x12, 0, 0, 0, 36}, {0x25}, {0x28, 0, 0, 0, 0, 1, 0, 0, 1}, {0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24},
      {0x46, 0x02, 0, 0, 0, 0, 0, 0x01, 0}, {0x5a, 0, 0x3f, 0, 0, 0, 0, 0x01, 0}, {0x03, 0, 0, 0, 18},
      {0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8}, {0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, {0x1b, 0, 0, 0, 2}, {0xa8, 0, 0, 0, 0, 2, 0, 0, 0, 1}};
  int n = 0;
  for (auto p : packets) {
    p.resize(12, 0);
    Writer w;
    w.u16(0);
    int ch = n & 1;
    tf(w, 6, ch ? 0xa0 : 0xb0, ch);
    tf(w, 1, 0, ch);
    tf(w, 4, 0x00, ch);
    tf(w, 5, 0x08, ch);
    tf(w, 7, 0xa0, ch);  // PACKET
    w.u8(8 | ch << 7);
    for (int k = 0; k < 12; k += 2) w.u16(p[k] | p[k + 1] << 8);
    w.u8(9 | ch << 7).u8(255);
    w.u8(3 | ch << 7).u8(7);
    save("ide_fuzz", "atapi-" + std::to_string(n++), w.v);
  }
}

// ---- VGA (vga_fuzz.cc ops) ----
void vga() {
  {  // VBE 640x480x32 with the LFB, pixels written, rendered
    Writer w;
    w.u8(9).u16(640).u16(480).u8(32).u16(640).u16(480).u16(0).u16(0).u8(0x41);
    for (int i = 0; i < 8; i++) w.u8(8).u32(i * 4096 + 64).u64(0x00ff00ff00ff00ffull).size(8);
    w.u8(10).u8(1).u8(1).u8(0);
    w.u8(11).u8(1);
    save("vga_fuzz", "vbe-32bpp", w.v);
  }
  {  // 8 bpp banked through the 0xa0000 window, palette through the DAC
    Writer w;
    w.u8(9).u16(320).u16(200).u8(8).u16(320).u16(200).u16(0).u16(0).u8(0x01);
    w.u8(2).u8(5).u16(1);  // bank 1
    w.u8(5).u32(0x100).size(4).u32(0x04030201);
    w.u8(0).u8(0x3c8 - 0x3b0).u8(1);
    for (int i = 0; i < 3; i++) w.u8(0).u8(0x3c9 - 0x3b0).u8(0x3f);
    w.u8(11).u8(1);
    save("vga_fuzz", "vbe-8bpp-banked", w.v);
  }
  {  // text mode: characters in 0xb8000, cursor via the CRTC, read back
    Writer w;
    w.u8(0).u8(0x3c2 - 0x3b0).u8(0x67);  // misc output: color, 0x3d4
    w.u8(4).u8(0x3c4 - 0x3b0).u16(0x0302);  // seq: map mask
    w.u8(4).u8(0x3ce - 0x3b0).u16(0x0e06);  // gc misc: b8000, text
    for (int i = 0; i < 8; i++) w.u8(5).u32(0x18000 + 2 * i).size(2).u32(0x0700 | ('A' + i));
    w.u8(4).u8(0x3d4 - 0x3b0).u16(0x000e);
    w.u8(4).u8(0x3d4 - 0x3b0).u16(0x050f);
    w.u8(10).u8(10).u8(0).u8(1);
    w.u8(11).u8(0);
    save("vga_fuzz", "text", w.v);
  }
  {  // planar 16-colour: sequencer/GC set up for write mode 2, memory writes
    Writer w;
    const uint16_t seq[] = {0x0100, 0x0101, 0x0f02, 0x0003, 0x0604, 0x0300};
    for (uint16_t s : seq) w.u8(4).u8(0x3c4 - 0x3b0).u16(s);
    const uint16_t gc[] = {0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0205, 0x0506, 0x0f07, 0xff08};
    for (uint16_t g : gc) w.u8(4).u8(0x3ce - 0x3b0).u16(g);
    w.u8(1).u8(0x3da - 0x3b0);
    for (int i = 0; i < 0x15; i++) w.u8(0).u8(0x3c0 - 0x3b0).u8(i).u8(0).u8(0x3c0 - 0x3b0).u8(i == 0x10 ? 0x01 : i);
    w.u8(0).u8(0x3c0 - 0x3b0).u8(0x20);
    w.u8(4).u8(0x3d4 - 0x3b0).u16(0x4f01);
    w.u8(4).u8(0x3d4 - 0x3b0).u16(0xdf12);
    for (int i = 0; i < 8; i++) w.u8(5).u32(i * 80).size(1).u32(i);
    w.u8(6).u32(0).size(1);
    w.u8(11).u8(1);
    save("vga_fuzz", "planar", w.v);
  }
}

// ---- i8042 (i8042_fuzz.cc ops) ----
void i8042() {
  {
    Writer w;
    w.u8(1).u8(0xaa).u8(2);  // self test, read 0x55
    w.u8(9).u8(0x60).u8(0x47);  // write CTR
    w.u8(1).u8(0x20).u8(2);
    w.u8(0).u8(0xff).u8(2).u8(2);  // keyboard reset: FA AA
    w.u8(0).u8(0xf0).u8(0).u8(0x01);  // scan set 1
    w.u8(4).u8(0x80).u8(2).u8(4).u8(0x00).u8(2);
    w.u8(0).u8(0xed).u8(0).u8(0x07);  // LEDs
    w.u8(9).u8(0xd1).u8(0xdd);  // output port: A20
    w.u8(9).u8(0xd2).u8(0x12);  // echo as keyboard
    w.u8(2).u8(6).u8(0);
    save("i8042_fuzz", "keyboard", w.v);
  }
  {
    Writer w;
    w.u8(1).u8(0xa8);
    for (uint8_t b : {0xf6, 0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf2, 0xf4}) w.u8(9).u8(0xd4).u8(b).u8(2);
    w.u8(5).u8(10).u8(0).u8(0xf6).u8(1).u8(1);
    for (int i = 0; i < 4; i++) w.u8(2);
    w.u8(9).u8(0xd4).u8(0xee);  // wrap mode
    w.u8(9).u8(0xd4).u8(0x42);
    w.u8(9).u8(0xd4).u8(0xec);
    w.u8(9).u8(0xd4).u8(0xf0);  // remote mode
    w.u8(9).u8(0xd4).u8(0xeb);  // read data
    w.u8(7).u8(2).u8(2).u8(2);
    w.u8(9).u8(0xfe).u8(0);  // pulse reset
    save("i8042_fuzz", "mouse", w.v);
  }
}

// ---- 16550 (serial_fuzz.cc ops: low 3 bits op, bits 3..5 register) ----
void serial() {
  auto wr = [](Writer& w, int reg, uint8_t v) { w.u8(0 | reg << 3).u8(v); };
  auto rd = [](Writer& w, int reg) { w.u8(1 | reg << 3); };
  Writer w;
  wr(w, 3, 0x80);
  wr(w, 0, 0x01);
  wr(w, 1, 0x00);
  wr(w, 3, 0x03);
  wr(w, 2, 0xc7);  // FIFO on, clear, trigger 14
  wr(w, 1, 0x0f);
  wr(w, 4, 0x0b);
  for (char c : std::string("hello")) wr(w, 0, uint8_t(c));
  rd(w, 2);
  w.u8(2).u8(20).str("twenty bytes of in..");
  w.u8(3).u8(40).str("forty bytes queued behind the full fifo.");
  for (int i = 0; i < 20; i++) rd(w, 0);
  rd(w, 5);
  rd(w, 2);
  wr(w, 4, 0x1f);  // loopback
  wr(w, 0, 0x41);
  rd(w, 0);
  rd(w, 6);
  save("serial_fuzz", "init-io-loopback", w.v);
}

// ---- fw_cfg (fw_cfg_fuzz.cc ops) ----
void fw_cfg() {
  auto be = [](uint64_t v, int n) {
    std::vector<uint8_t> b;
    for (int i = n - 1; i >= 0; i--) b.push_back(uint8_t(v >> (8 * i)));
    return b;
  };
  {
    Writer w;
    w.u16(0);
    w.u8(0).u16(0x0000).u8(1).u8(3).u8(0);  // signature
    w.u8(0).u16(0x0001).u8(1).u8(3).u8(2);  // id
    w.u8(0).u16(0x0019).u8(1).u8(255).u8(3);  // file directory
    w.u8(0).u16(0x0020).u8(1).u8(40).u8(2);
    w.u8(0).u16(0x8003).u8(1).u8(10).u8(3);
    save("fw_cfg_fuzz", "ports", w.v);
  }
  {  // DMA: select + read the directory, then select + write + read back every file key
    Writer w;
    w.u16(0);
    auto dma = [&](uint16_t at, uint32_t control, uint32_t len, uint32_t addr, bool split) {
      w.u8(3).u16(at).u32(control).u32(len).u32(addr);
      if (split) w.u8(5 | 0x80).u32(0).u16(at);
      else w.u8(4).u16(at);
    };
    dma(0x100, 0x19u << 16 | 0x08 | 0x02, 64, 0x1000, false);
    for (uint16_t key = 0x20; key < 0x30; key++) {
      dma(0x100, uint32_t(key) << 16 | 0x08 | 0x10, 16, 0x2000, key & 1);
      dma(0x120, uint32_t(key) << 16 | 0x08 | 0x04 | 0x02, 8, 0x3000, false);
    }
    dma(0x140, 0x01, 0, 0, true);  // error bit set by the guest
    save("fw_cfg_fuzz", "dma", w.v);
    (void)be;
  }
}

// ---- kernel loaders (kernel_fuzz.cc: u8 flags, u8 n + cmdline, u16 initrd KiB, image) ----
void w16(std::vector<uint8_t>& b, size_t o, uint16_t v) { std::memcpy(&b[o], &v, 2); }
void w32(std::vector<uint8_t>& b, size_t o, uint32_t v) { std::memcpy(&b[o], &v, 4); }
std::vector<uint8_t> bzimage() {
  std::vector<uint8_t> k(5 * 512 + 4096, 0);
  k[0x1f1] = 4;
  w16(k, 0x1fe, 0xAA55);
  k[0x201] = 0x66;
  std::memcpy(&k[0x202], "HdrS", 4);
  w16(k, 0x206, 0x020f);
  k[0x211] = 0x01;
  w32(k, 0x214, 0x100000);
  w32(k, 0x22c, 0x7fffffff);
  w32(k, 0x238, 2047);
  return k;
}
std::vector<uint8_t> aout_multiboot(uint32_t at) {
  std::vector<uint8_t> k(0x400, 0x90);
  w32(k, 0x20, 0x1BADB002);
  w32(k, 0x24, 0x00010003);
  w32(k, 0x28, uint32_t(-(0x1BADB002 + 0x00010003)));
  w32(k, 0x2c, at + 0x20);
  w32(k, 0x30, at);
  w32(k, 0x34, 0);
  w32(k, 0x38, at + 0x2000);
  w32(k, 0x3c, at + 0x40);
  return k;
}
void kernel(const std::vector<std::string>& files) {
  auto seed = [](const std::string& name, const std::vector<uint8_t>& k, bool rom) {
    Writer w;
    w.u8(rom ? 1 : 0);
    if (rom) {  // SeaBIOS's map for a 64 MiB PC
      const uint64_t top = (64 << 20) - (1 << 20);
      const uint64_t map[][3] = {{0, 0x9fc00, 1}, {0x9fc00, 0x400, 2}, {0xf0000, 0x10000, 2}, {0x100000, top - 0x100000, 1}, {top, 1 << 20, 2}};
      w.u8(5);
      for (auto& e : map) w.u64(e[0]).u64(e[1]).u32(e[2]);
    }
    w.u8(12).str("console=ttyS").u16(64).bytes(k);
    save("kernel_fuzz", name + (rom ? "-rom" : ""), w.v);
  };
  for (bool rom : {false, true}) {
    seed("bzimage", bzimage(), rom);
    seed("multiboot-aout", aout_multiboot(0x200000), rom);
    for (auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<uint8_t> k((std::istreambuf_iterator<char>(in)), {});
      if (k.empty()) continue;
      std::string base = f.substr(f.find_last_of('/') + 1);
      seed(base, k, rom);
    }
  }
}

// ---- UHCI + tablet (uhci_fuzz.cc ops) ----
void uhci() {
  // RAM image: frame list at 0x1000 -> QH at 0x2000 -> SETUP TD (GET_DESCRIPTOR
  // device) at 0x3000 -> IN TD at 0x3020 -> status OUT TD at 0x3040.
  std::vector<uint8_t> img(0x4200, 0);
  auto w32 = [&](uint32_t a, uint32_t v) { for (int i = 0; i < 4; i++) img[a + i] = uint8_t(v >> (8 * i)); };
  for (uint32_t i = 0; i < 1024; i++) w32(0x1000 + 4 * i, 0x2000 | 2);
  w32(0x2000, 1);
  w32(0x2004, 0x3000);
  const uint32_t active = (1u << 23) | (3u << 27);
  w32(0x3000, 0x3020 | 4);
  w32(0x3004, active);
  w32(0x3008, (7u << 21) | 0x2d);
  w32(0x300c, 0x4000);
  w32(0x3020, 0x3040 | 4);
  w32(0x3024, active);
  w32(0x3028, (17u << 21) | (1u << 19) | 0x69);
  w32(0x302c, 0x4100);
  w32(0x3040, 1);
  w32(0x3044, active | (1u << 24));
  w32(0x3048, (0x7ffu << 21) | (1u << 19) | 0xe1);
  const uint8_t setup[8] = {0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00};
  std::memcpy(img.data() + 0x4000, setup, 8);
  Writer w;
  w.u16(img.size()).bytes(img);
  auto reg = [&](uint8_t off, int size, uint32_t v) { w.u8(0).u8(off).u8(size == 1 ? 0 : size == 2 ? 1 : 2).u32(v); };
  reg(0x10, 2, 1u << 9);  // port 1 reset
  w.u8(6).u16(4000);      // 64 ms
  reg(0x10, 2, 0);
  reg(0x10, 2, 1u << 2);  // enable
  reg(0x08, 4, 0x1000);   // FLBASEADD
  reg(0x04, 2, 0xf);      // all interrupts
  reg(0x00, 2, 0x81);     // run, max packet 64
  for (int i = 0; i < 4; i++) w.u8(5);
  w.u8(1).u8(0x02).u8(1);  // USBSTS
  w.u8(7).u16(0x4000).u16(0x2000).u8(1).u8(1);
  w.u8(6).u16(100);
  save("uhci_fuzz", "get-device-descriptor", w.v);
}

// ---- saved-state loaders (state_load_fuzz.cc ops) ----
void state_load() {
  // Per device (8 in the target's list): its own section with a few flipped
  // bytes, and cut short with garbage after it.
  for (int dev = 0; dev < 8; dev++) {
    Writer w;
    w.u8(dev).u8(1).u8(0).u8(3).u16(1).u8(0x80).u16(9).u8(0x01).u16(40).u8(0xff);
    w.u8(dev).u8(2).u8(0).u16(12).u16(4).u32(0xdeadbeef);
    save("state_load_fuzz", "dev" + std::to_string(dev), w.v);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fuzz_seeds OUTDIR [KERNEL...]\n");
    return 2;
  }
  g_out = argv[1];
  mkdir(g_out.c_str(), 0755);
  virtio_blk();
  virtio_net();
  e1000();
  ide();
  vga();
  i8042();
  serial();
  fw_cfg();
  state_load();
  uhci();
  kernel(std::vector<std::string>(argv + 2, argv + argc));
  return 0;
}
