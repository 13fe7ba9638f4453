// Opening and creating disk images (raw, qcow2), snapshots and checks.
// Additive to block.h: device models keep using BlockBackend; this header is
// how a machine or tool gets one from a path.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block/block.h"

namespace vireo::block {

struct OpenOptions {
  std::string format;      // "" = probe (qcow2 magic, else raw), "raw" or "qcow2"
  bool read_only = false;  // writes return -EROFS; the file is opened O_RDONLY
  // Throwaway changes (like QEMU -snapshot): the image is opened read-only and
  // a qcow2 overlay in $TMPDIR (unlinked right after open) takes every write.
  bool snapshot = false;
  // Take no image locks (block/lock.h), like qemu-img -U: read-only opens only,
  // for reading an image some VM may be writing (the data may be inconsistent).
  bool force_share = false;
  // qcow2: cache=unsafe (Qcow2OpenFlags::unsafe); raw: nothing to skip (its
  // flush is the caller's fdatasync).
  bool unsafe = false;
};

// Opens `path` with its whole backing chain (at most 16 images). Every
// backing file is opened with the format its overlay states (the backing
// format header extension); a chain without one is refused. On failure returns null and sets
// *error to a message that names the file ("'a.qcow2': backing file 'b.qcow2'
// ...: No such file or directory").
std::unique_ptr<BlockBackend> open_block(const std::string& path, const OpenOptions& opts,
                                         std::string* error);

// "qcow2" or "raw"; "" and *error set when the file cannot be read.
std::string probe_format(const std::string& path, std::string* error);

// Preallocation, as qemu-img's `-o preallocation=` / `resize --preallocation=`:
// off: sparse; metadata (qcow2 only): every guest cluster mapped to a host
// cluster that is not written (reads zeros: a hole in the file); falloc: the
// same, and the file's blocks reserved with fallocate; full: zeros written.
enum class Prealloc { Off, Metadata, Falloc, Full };
// "off", "metadata", "falloc", "full" (what qemu-img takes); false otherwise.
bool parse_prealloc(const std::string& s, Prealloc* out);
const char* prealloc_name(Prealloc p);

// `n` bytes rounded up to whole 512-byte sectors, as qemu-img sizes new images
// (QEMU reads a qcow2 header's size in sectors).
inline uint64_t whole_sectors(uint64_t n) { return (n + 511) & ~uint64_t(511); }

// Creates a raw image of `size` bytes: sparse, or with `prealloc` falloc or
// full (metadata is refused: -EINVAL, "Unsupported preallocation mode:
// metadata", as qemu-img says). Should the preallocation fail (ENOSPC, no
// fallocate on this file system), the file is removed. 0 or -errno.
int create_raw(const std::string& path, uint64_t size, std::string* error,
               Prealloc prealloc = Prealloc::Off);

// Creates a qcow2 image. cluster_bits 9..21 (16 = 64 KiB is the usual),
// version 2 (compat=0.10) or 3 (compat=1.1). `backing` may be relative: it is
// stored as given and resolved against the new image's directory; its format
// (`backing_fmt`, "raw" or "qcow2") must be given: it is never probed. When size
// is 0 and there is a backing file, the backing file's size is used.
// `extended_l2`: 128-bit L2 entries with 32 subclusters per cluster
// (incompatible feature bit 4, qemu-img's extended_l2=on); v3 only, clusters
// of at least 16 KiB. `prealloc` (Qcow2Backend::preallocate): with a backing
// file only together with extended_l2, as qemu-img; should it fail, the file
// is removed. `durable` false: no fsync at the end (a convert target with
// -t unsafe). 0 or -errno.
int create_qcow2(const std::string& path, uint64_t size, int cluster_bits,
                 const std::string& backing, const std::string& backing_fmt, int version,
                 std::string* error, bool extended_l2 = false, Prealloc prealloc = Prealloc::Off,
                 bool durable = true);

// The checks create_qcow2 makes on its format options, where qemu-img refuses
// the same combinations: 0, or -EINVAL with *error naming the option.
int check_qcow2_options(int cluster_bits, int version, bool extended_l2, std::string* error);

// Rewrites a qcow2 image's backing file name and format in its header (like
// `qemu-img rebase -u`: no data is copied). `backing_fmt` must be "raw" or
// "qcow2"; the new chain must open with it. Empty `backing` removes it. 0 or -errno.
int set_backing_file(const std::string& path, const std::string& backing, const std::string& backing_fmt,
                     std::string* error);

// Internal snapshots (qcow2 only): obtain with as_snapshots(backend).
struct SnapshotInfo {
  std::string id, name;
  uint64_t vm_state_size = 0;
  uint32_t date_sec = 0, date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t disk_size = 0;
  uint64_t icount = ~0ULL;  // ~0 = not recorded
};

class SnapshotTarget {
public:
  virtual ~SnapshotTarget() = default;
  virtual std::vector<SnapshotInfo> snapshots() = 0;
  // All return 0 or -errno and set *error.
  // Create: refused when `name` is a snapshot's name (-EEXIST) or another
  // snapshot's ID (-EEXIST, naming it: qemu-img takes a number as an ID
  // first, so such a name would address the other one). New IDs skip
  // numbers that are names.
  // Apply / delete: `name` is a name or an ID; one that is the name of one
  // snapshot and the ID of another is ambiguous (-EINVAL, naming both).
  // With `by_name` only names match (the app's snapshots are names, as
  // libvirt's are), so the name wins.
  virtual int snapshot_create(const std::string& name, std::string* error) = 0;
  virtual int snapshot_apply(const std::string& name, std::string* error, bool by_name = false) = 0;
  virtual int snapshot_delete(const std::string& name, std::string* error, bool by_name = false) = 0;
};

// Null when the backend has no internal snapshots (raw, memory).
inline SnapshotTarget* as_snapshots(BlockBackend* b) { return dynamic_cast<SnapshotTarget*>(b); }

// Result of a consistency check (see Qcow2Backend::check and vireo-img check).
struct CheckResult {
  bool completed = true;
  uint64_t corruptions = 0, leaks = 0;
  uint64_t corruptions_fixed = 0, leaks_fixed = 0;
  uint64_t total_clusters = 0, allocated_clusters = 0, fragmented_clusters = 0,
           compressed_clusters = 0;
  uint64_t image_end_offset = 0;
  std::vector<std::string> messages;  // one line each, like qemu-img check
};

}  // namespace vireo::block
