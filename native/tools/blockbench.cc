// vireo-blockbench [--inflight N] IMAGE OPSFILE: runs a list of requests
// ("r OFFSET LEN" / "w OFFSET LEN" / "f", one a line) against IMAGE through the
// block layer, then flushes, and prints the elapsed seconds. One at a time by
// default; --inflight N keeps N in flight through a BlockQueue with N I/O
// threads (as a virtio-blk queue does; "f" waits for all before it).
// bench/block/bench.sh feeds the same list to qemu-io for comparison.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "block/image.h"
#include "block/queue.h"

using namespace vireo::block;

int main(int argc, char** argv) {
  unsigned inflight = 0;
  if (argc == 5 && std::string(argv[1]) == "--inflight") {
    inflight = unsigned(std::atoi(argv[2]));
    argv += 2, argc -= 2;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: vireo-blockbench [--inflight N] IMAGE OPSFILE\n");
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
  if (inflight) {
    std::shared_ptr<BlockBackend> sb(std::move(b));
    std::vector<std::vector<uint8_t>> bufs(inflight, std::vector<uint8_t>(maxlen ? maxlen : 4096, 0xcd));
    std::vector<unsigned> free_slots;
    for (unsigned i = 0; i < inflight; i++) free_slots.push_back(i);
    std::mutex mu;
    std::condition_variable cv;
    int failed = 0;
    {
      BlockQueue q(sb, inflight);
      for (auto& o : ops) {
        if (o.kind == 'f') {
          q.drain();
          if (int r = sb->flush()) failed = r;
          continue;
        }
        unsigned slot;
        {
          std::unique_lock g(mu);
          cv.wait(g, [&] { return !free_slots.empty(); });
          slot = free_slots.back();
          free_slots.pop_back();
        }
        auto done = [&, slot](int r) {
          std::lock_guard g(mu);
          if (r) failed = r;
          free_slots.push_back(slot);
          cv.notify_one();
        };
        if (o.kind == 'r') q.read(bufs[slot].data(), o.len, o.off, done);
        else q.write(bufs[slot].data(), o.len, o.off, done);
      }
      q.drain();
    }
    if (failed) { std::fprintf(stderr, "request failed: %s\n", std::strerror(-failed)); return 1; }
    sb->flush();
    sb.reset();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%.4f\n", s);
    return 0;
  }
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
