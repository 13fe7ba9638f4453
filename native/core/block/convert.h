// Whole-image copy (vireo-img convert, the app's full clone): walks only the
// source's allocated data (BlockBackend::block_status: SEEK_DATA/SEEK_HOLE on
// raw, the L1/L2 map on qcow2, through the backing chain), never reads holes,
// reads 4 MiB pieces on one thread while another writes them, copy_file_range
// for raw -> raw where the kernel allows it, and makes the target durable once
// at the end (unless ConvertOptions::durable is false: qemu-img's -t unsafe).
//
// The target is written under a temporary name in its own directory,
// `.<name>.vireo-convert-<random>`, flock()ed while it is being written; only
// a complete, fsynced copy is renamed to the target's name (then the
// directory is fsynced). A failed or cancelled copy removes the temporary; a
// killed one leaves it, and the next convert into that directory removes every
// such file nobody holds (sweep_convert_temps).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "block/block.h"

namespace vireo::block {

struct ConvertOptions {
  std::string format = "raw";  // target: "raw" or "qcow2"
  int cluster_bits = 16;       // qcow2 target
  int version = 3;             // qcow2 target: 2 (compat=0.10) or 3
  // qcow2 target: extended L2 entries (32 subclusters per cluster; v3, clusters
  // >= 16 KiB). Zero runs are then skipped per subcluster, not per cluster.
  bool extended_l2 = false;
  // qcow2 target: compressed clusters (qemu-img convert -c). Each non-zero
  // cluster is deflated (raw deflate, windowBits -12, on up to 4 threads) and
  // stored compressed when that is smaller than a cluster, else as it is.
  bool compress = false;
  // Called on the writing thread with bytes of the virtual disk done (holes count).
  std::function<void(uint64_t done, uint64_t total)> progress;
  const std::atomic<bool>* cancel = nullptr;  // set -> the copy stops with -ECANCELED
  // raw -> raw: a reflink of the whole file (FICLONE) where the file system
  // shares extents (btrfs, XFS). false: always the read/write path.
  bool allow_copy_range = true;
  // raw -> raw without reflinks: the kernel's copy_file_range per data extent
  // instead of the read/write path (on ext4 a page-cache copy that must then be
  // written back: slower than O_DIRECT writes; kept for comparison and tests).
  bool copy_file_range = false;
  // Durable copies: the data goes with O_DIRECT writes through io_uring where
  // the file system and kernel allow (raw targets: all of it; qcow2 targets
  // with clusters of 4 KiB or more: the new clusters' data, the metadata
  // buffered; not with -c). Else, or false, buffered writes with writeback
  // started as the copy goes.
  bool direct_io = true;
  // true (Vireo's default; qemu-img's -t writeback): the target is on stable
  // storage before it gets its name (fdatasync / the qcow2 flush with its
  // ordering syncs, then the directory fsynced). false (qemu-img convert's
  // default, -t unsafe): written through the page cache with no syncs at all;
  // it still gets its name only when complete, but a crash or power loss soon
  // after can leave it partly written.
  bool durable = true;
};

// What the last convert did (tests and benchmarks).
struct ConvertStats {
  uint64_t data_bytes = 0;      // bytes of the source read (or copied by the kernel)
  uint64_t written_bytes = 0;   // bytes written to the target (zero pieces skipped)
  uint64_t copy_range_bytes = 0;
  uint64_t compressed_clusters = 0;  // convert -c: clusters stored compressed
  uint64_t plain_clusters = 0;       // convert -c: clusters that did not compress
  bool used_copy_range = false;
  bool reflinked = false;            // raw -> raw: one FICLONE
  uint64_t direct_bytes = 0;         // written with O_DIRECT
};

// Copies `in` (its whole backing chain, flattened) to a new image at `target`.
// An existing target is replaced, unless another process holds it (a running
// VM's disk): that is refused with the lock message. 0 or -errno, with *error
// naming the target ("could not write 'out.raw': No space left on device").
int convert_image(BlockBackend& in, const std::string& target, const ConvertOptions& opts,
                  std::string* error, ConvertStats* stats = nullptr);

// Removes leftovers of killed converts in `dir` (unheld temporaries). Returns how many.
int sweep_convert_temps(const std::string& dir);

// The temporary-name marker (".<name>" + kConvertTempMarker + random).
constexpr const char* kConvertTempMarker = ".vireo-convert-";

}  // namespace vireo::block
