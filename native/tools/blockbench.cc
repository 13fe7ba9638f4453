// vireo-blockbench IMAGE OPSFILE: runs a list of synchronous requests
// ("r OFFSET LEN" / "w OFFSET LEN" / "f", one a line) against IMAGE through the
// block layer, then flushes, and prints the elapsed seconds. bench/block/bench.sh
// feeds the same list to qemu-io for comparison.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "block/image.h"

using namespace vireo::block;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: vireo-blockbench IMAGE OPSFILE\n");
    return 1;
  }
  struct Op { char kind; uint64_t off, len; };
  std::vector<Op> ops;
  FILE* f = std::fopen(argv[2], "r");
  if (!f) { std::perror(argv[2]); return 1; }
  char k;
  unsigned long long off, len;
  char line[256];
  uint64_t maxlen = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, " %c %llu %llu", &k, &off, &len) == 3) ops.push_back({k, off, len});
    else if (line[0] == 'f') ops.push_back({'f', 0, 0});
    if (len > maxlen) maxlen = len;
  }
  std::fclose(f);
  std::string err;
  auto b = open_block(argv[1], OpenOptions{}, &err);
  if (!b) { std::fprintf(stderr, "%s\n", err.c_str()); return 1; }
  std::vector<uint8_t> buf(maxlen ? maxlen : 4096, 0xcd);
  auto t0 = std::chrono::steady_clock::now();
  for (auto& o : ops) {
    int r = o.kind == 'r' ? b->pread(buf.data(), o.len, o.off)
          : o.kind == 'w' ? b->pwrite(buf.data(), o.len, o.off) : b->flush();
    if (r) { std::fprintf(stderr, "request failed: %s\n", std::strerror(-r)); return 1; }
  }
  b->flush();
  b.reset();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%.4f\n", s);
  return 0;
}
