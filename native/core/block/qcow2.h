// qcow2 images (versions 2 and 3), written from the public qcow2 specification.
//
// Metadata is cached in memory (L1, L2 tables, refcount table and blocks) and
// written back on flush() in crash-safe order:
//   data clusters -> fdatasync -> refcount blocks (increments only) ->
//   fdatasync -> L2 tables -> fdatasync -> L1 table, header -> fdatasync ->
//   refcount decrements (clusters freed) -> fdatasync.
// So a crash at any point leaves the image as of the last flush plus, at most,
// leaked clusters. Freed clusters are reused only after their decrement is on
// disk. Writes into already-allocated, unshared clusters go straight to disk.
#pragma once
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "block/block.h"
#include "block/image.h"

namespace vireo::block {

struct Qcow2OpenFlags {
  bool read_only = false;
  bool no_backing = false;  // info/check: do not open the backing file
  bool allow_corrupt = false;  // check: open images marked corrupt (read-only)
  bool no_repair = false;   // check: do not rebuild refcounts of a dirty image
  bool force_share = false; // take no locks (block/lock.h), here and on the backing chain; read-only only
  // cache=unsafe (qemu-img convert's default -t): flush() and the syncs that
  // order metadata writes are skipped, so a crash or power loss can leave the
  // image inconsistent. For a convert target that gets its name only at the end.
  bool unsafe = false;
};

class Qcow2Backend : public BlockBackend, public SnapshotTarget {
public:
  // `chain` holds the canonical paths already open above this image (loop check).
  static std::unique_ptr<Qcow2Backend> open(const std::string& path, const Qcow2OpenFlags& flags,
                                            std::vector<std::string>* chain, std::string* error);
  ~Qcow2Backend() override;

  uint64_t size() const override { return size_; }
  bool read_only() const override { return ro_; }
  int pread(void* buf, uint64_t len, uint64_t off) override;
  int pwrite(const void* buf, uint64_t len, uint64_t off) override;
  int pread_ranges(const IoRange* r, size_t n) override;
  int pwrite_ranges(const IoRange* r, size_t n) override;
  int flush() override;
  int discard(uint64_t off, uint64_t len) override;
  int write_zeroes(uint64_t off, uint64_t len) override;
  std::string format() const override { return "qcow2"; }
  // From the L1/L2 map: data and compressed clusters are data, zero clusters
  // zero, unallocated ones what the backing file says (zero past its end or
  // without one). With extended L2 the same per subcluster (allocated, zero
  // or unallocated).
  int block_status(uint64_t off, uint64_t len, uint64_t* n) override;

  std::vector<SnapshotInfo> snapshots() override;
  int snapshot_create(const std::string& name, std::string* error) override;
  int snapshot_apply(const std::string& name, std::string* error, bool by_name = false) override;
  int snapshot_delete(const std::string& name, std::string* error, bool by_name = false) override;

  // Grows or shrinks the virtual disk, like qemu-img resize. Growing: the L1
  // table grows as needed (over a larger backing file, the new range reads as
  // zeros), the new range preallocated as `prealloc` says (preallocate), and
  // only then the header's size changes, so a failed preallocation leaves the
  // old size. Internal snapshots (v3) keep their own L1 tables and sizes;
  // one without its size recorded (an incomplete entry) gets the old size
  // written first. Shrinking: clusters past the new end are freed, L1 entries and L2
  // tables past it dropped, refcount blocks that count nothing freed and the
  // file truncated after its last used cluster; the tail of a partly kept
  // cluster is zeroed; with v3 snapshots (as qemu-img) only the active L1's
  // references go, so what a snapshot shares keeps its data and applying the
  // snapshot brings its size back. The size must be a multiple of 512.
  // Refused: any resize of a v2 image with snapshots (as qemu-img),
  // preallocation when shrinking. 0 or -errno with *error saying why.
  int resize(uint64_t new_size, std::string* error = nullptr, Prealloc prealloc = Prealloc::Off);

  // qemu-img's preallocation of the guest range [off, off+len) (create -o
  // preallocation=, resize --preallocation=): every cluster there without a
  // host cluster gets one (compressed and allocated ones are left alone). Per
  // L2 table: the table first, then one run of clusters per stretch, the
  // refcount blocks a run needs placed right after it, so a new image is laid
  // out as qemu-img lays it out. Metadata: the clusters are not written (the
  // file is extended over them; a reused cluster is punched, or zeroed), so
  // they read zeros; falloc: fallocate'd as well; full: zeros written. With
  // extended L2 the subclusters stay unallocated (zeros or the backing file
  // show), as qemu-img leaves them. An entry is set only once its cluster is
  // ready; should that fail the run is freed again. Flushed. 0 or -errno, *error saying why.
  int preallocate(uint64_t off, uint64_t len, Prealloc prealloc, std::string* error = nullptr);

  // Compressed clusters (qemu-img convert -c). deflate_cluster compresses one
  // cluster (`n` <= cluster size, zero-padded to it) as raw deflate (zlib,
  // windowBits -12): the compressed bytes, or empty when that is not smaller
  // than a cluster (or zlib is missing). Thread-safe; no image needed.
  static std::vector<uint8_t> deflate_cluster(const uint8_t* data, uint64_t n, uint64_t cluster_size);
  // Stores the cluster at guest offset `off` (cluster-aligned; `n` bytes, a
  // whole cluster or the image's last partial one): as a compressed cluster
  // when `z` (from deflate_cluster) is non-empty and the cluster is
  // unallocated, otherwise as a normal write of `data`. Compressed data is
  // packed byte-wise into shared host clusters, each counted once per
  // compressed cluster that touches it, as the qcow2 spec and QEMU do.
  int write_compressed(const uint8_t* data, uint64_t n, uint64_t off, const std::vector<uint8_t>& z);
  uint64_t cluster_size() const { return cs_; }

  // Convert targets only (block/convert.cc): the data of whole clusters that
  // pwrite_ranges allocates is handed to `sink` (bytes, length, host offset)
  // instead of being written here, so the caller can write it with O_DIRECT
  // straight from its buffer. The L2 entries point at it at once: the caller
  // must have it on disk before flush(), and nobody may read the image before
  // then (a convert target under its temporary name). Partial clusters,
  // in-place writes and all metadata are still written here. A sink error
  // fails the write as a failed write does. Set before the first write.
  using NewDataSink = std::function<int(const uint8_t* data, uint64_t len, uint64_t host)>;
  void set_new_data_sink(NewDataSink sink) { sink_ = std::move(sink); }

  struct Info {
    uint32_t version = 0, cluster_bits = 0, refcount_bits = 0;
    uint64_t size = 0;
    std::string backing_file, backing_format, compression;
    bool lazy_refcounts = false, corrupt = false, dirty = false, extended_l2 = false;
  };
  Info info() const;
  BlockBackend* backing() const { return backing_.get(); }
  // Walks all metadata and compares refcounts; with repair, rebuilds the
  // refcount structures when anything is wrong (needs a writable image).
  CheckResult check(bool repair);
  // Bytes held by the L2 table and refcount block caches (tests).
  uint64_t cache_bytes() const;
  // True once a request found corrupt metadata (the image is then marked
  // corrupt on disk, v3, and refuses every further write).
  bool found_corrupt() const;

  struct L2Table {
    std::vector<uint64_t> e;  // host-order entries (2 words each with extended L2)
    bool dirty = false;
  };
  struct RefBlock {
    std::vector<uint8_t> raw;  // on-disk bytes
    bool dirty = false;
  };
  struct Snap {
    uint64_t l1_offset = 0;
    uint32_t l1_size = 0;
    std::string id, name;
    uint32_t date_sec = 0, date_nsec = 0;
    uint64_t vm_clock_nsec = 0;
    uint32_t vm_state_size = 0;
    std::vector<uint8_t> extra;
  };

private:
  Qcow2Backend() = default;
  int parse(std::string* error, const Qcow2OpenFlags& flags);
  // metadata access (mu_ held)
  int get_l2(uint64_t off, L2Table** t);
  int get_rb(uint64_t off, RefBlock** b);
  int get_refcount(uint64_t cidx, uint64_t* rc);
  int set_refcount(uint64_t cidx, uint64_t rc);
  int alloc_clusters(uint64_t n, uint64_t* off);
  // The new table and the refcount blocks it needs go at the first cluster
  // past what the old table covers, the file's end and `at`.
  int grow_refcount_table(uint64_t min_index, uint64_t at = 0);
  // Writes rt_ as the refcount table at cluster `start` (rt_cl clusters), then
  // points the header at it, with a flush after each step.
  int install_refcount_table(uint64_t start, uint64_t rt_cl);
  int grow_l1(uint64_t min_entries);
  void free_later(uint64_t off, uint64_t len, uint64_t times = 1);
  void free_entry(uint64_t entry);
  int flush_metadata();
  int write_header_core();
  int write_at(const void* buf, uint64_t len, uint64_t off);
  int lookup(uint64_t off, uint64_t* entry, uint64_t* bitmap);
  int read_in_cluster(uint64_t entry, uint64_t bitmap, uint8_t* p, uint64_t in, uint64_t n,
                      uint64_t vbase);
  int read_backing(uint8_t* p, uint64_t n, uint64_t off);
  int read_compressed(uint64_t entry, uint8_t* out);
  int l2_for_write(uint64_t off, L2Table** t, uint64_t* idx);
  // A guest write into a cluster this image owns alone, done after mu_ is let go.
  struct DataWrite {
    const uint8_t* p;
    uint64_t len, host;
  };
  // Within one cluster. With `defer`, a write into a cluster the image owns
  // alone (COPIED, inside the file) is appended there instead of written.
  int write_chunk(const uint8_t* p, uint64_t len, uint64_t off, std::vector<DataWrite>* defer = nullptr);
  int zero_range(uint64_t off, uint64_t len, bool discard);
  // Extended L2 entries (32 subclusters per cluster), within one cluster.
  int write_chunk_ext(const uint8_t* p, uint64_t len, uint64_t off);
  int zero_subclusters(uint64_t off, uint64_t len, bool discard);
  // -EIO (image marked corrupt) for a standard extended L2 entry QEMU calls
  // invalid: allocated subclusters without a host cluster, or a subcluster
  // both allocated and reading as zeros.
  int check_bitmap(uint64_t entry, uint64_t bitmap);
  int shrink(uint64_t new_size);
  // preallocate's work (mu_ held); `why` set on errors that errno does not say.
  int prealloc_range(uint64_t from, uint64_t to, Prealloc prealloc, std::string* why);
  // `n` contiguous free clusters for preallocate: the first such run from
  // free_hint_, its missing refcount blocks placed right after it (where
  // alloc_clusters places them inside the run and looks again), a refcount
  // table that must grow too; alloc_clusters where a block placed there would
  // need a block of its own.
  int alloc_run(uint64_t n, uint64_t* off);
  // Makes new clusters [host, host+len) read zeros as `prealloc` says (see preallocate).
  int prepare_run(uint64_t host, uint64_t len, Prealloc prealloc, std::string* why);
  int free_empty_refblocks();
  int read_l1(uint64_t off, uint32_t n, std::vector<uint64_t>* l1);
  int refcount_walk(const std::vector<uint64_t>& l1, int delta, bool later);
  int fix_copied_flags();
  int write_snapshot_table(const std::vector<Snap>& snaps);
  // What snapshot apply and delete start with (mu_ and data_mu_ held): the writable,
  // sound image's snapshot `name` found, metadata flushed, its L1 table read into *sl1.
  // Returns its index, or < 0 with *error set.
  int snapshot_open(const std::string& name, bool by_name, std::string* error, std::vector<uint64_t>* sl1);
  // The snapshot `key` names (by_name) or names or numbers (see
  // SnapshotTarget): its index, -ENOENT or -EINVAL (ambiguous), *error set.
  int find_snapshot(const std::string& key, bool by_name, std::string* error) const;
  void trim_caches();
  struct Refs;
  int count_refs(Refs* refs, CheckResult* res, bool include_refcount_structs);
  int rebuild_refcounts(Refs& refs, std::string* why);
  int do_check(CheckResult* res);
  int rebuild_dirty(std::string* why);
  // Metadata overlap checks (like QEMU's): every cluster that holds metadata,
  // as sorted byte ranges with their kind, rebuilt lazily after metadata moves.
  enum MetaKind : uint8_t { kMetaHeader, kMetaL1, kMetaL2, kMetaRT, kMetaRB, kMetaSnapTable, kMetaSnapL1 };
  struct MetaRange { uint64_t start, end; MetaKind kind; };
  void meta_changed() { meta_stale_ = true; }
  void meta_add(uint64_t off, uint64_t len, MetaKind kind);
  int rebuild_meta();
  // The kind of metadata overlapping [off, off+len), or -1 if none (-2: error).
  int meta_overlap(uint64_t off, uint64_t len, bool ignore_l2 = false);
  // Checks a data cluster before it is read (write=false) or written in place.
  int check_l2_host(uint64_t l2off);
  int check_data_host(uint64_t host, uint64_t len, bool write, const char* what);
  int mark_corrupt(const std::string& why);
  int read_l2_uncached(uint64_t off, std::vector<uint64_t>* e);
  int read_rb_uncached(uint64_t off, std::vector<uint8_t>* raw);

  mutable std::mutex mu_;
  // Guest data I/O runs outside mu_ (parallel requests): a read of plain data
  // clusters, and a write into a cluster it owns alone (COPIED, refcount 1),
  // look the clusters up under mu_, take data_mu_ shared before letting mu_
  // go, and do the pread/pwrite holding only data_mu_. What could make such a
  // cluster hold something else takes data_mu_ exclusively while holding mu_
  // (so it waits for the data I/O in flight, and no new one starts): the
  // refcount decrements that free clusters (flush_metadata's last step,
  // shrink), internal snapshot create/apply/delete (a cluster shared with a
  // snapshot must not change after it was taken). Order: mu_, then data_mu_.
  mutable std::shared_mutex data_mu_;
public:
  // Tests only: each data read done outside mu_ first sleeps this long, which
  // widens the window a free must not fall into (block_qcow2_test). 0: none.
  static inline std::atomic<uint32_t> test_data_read_delay_us{0};

private:
  bool data_excl_ = false;  // data_mu_ is held exclusively (under mu_): nested takers skip it
  // Holds data_mu_ exclusively for a scope, unless an outer scope already does (mu_ held).
  struct DataExclusive {
    explicit DataExclusive(Qcow2Backend* b) : b_(b), own_(!b->data_excl_) {
      if (own_) b_->data_mu_.lock(), b_->data_excl_ = true;
    }
    ~DataExclusive() {
      if (own_) b_->data_excl_ = false, b_->data_mu_.unlock();
    }
    DataExclusive(const DataExclusive&) = delete;
    DataExclusive& operator=(const DataExclusive&) = delete;
    Qcow2Backend* b_;
    bool own_;
  };
  std::string path_;
  int fd_ = -1;
  bool ro_ = true;
  bool unsafe_ = false;  // Qcow2OpenFlags::unsafe
  // fdatasync, or nothing with cache=unsafe. 0 or -1 with errno, as fdatasync.
  int sync_fd() const { return unsafe_ ? 0 : ::fdatasync(fd_); }
  uint32_t version_ = 3;
  uint32_t cluster_bits_ = 16;
  uint64_t cs_ = 65536;
  uint64_t size_ = 0;
  uint64_t file_end_ = 0;  // bytes in the file (grows as we write)
  uint32_t header_length_ = 72;
  uint64_t incompat_ = 0, compat_ = 0, autoclear_ = 0;
  uint32_t refcount_order_ = 4;
  uint32_t refbits_ = 16;
  uint64_t rb_entries_ = 0;
  uint8_t compression_type_ = 0;
  bool ext_l2_ = false;
  uint32_t l2_bits_ = 13;  // log2(entries per L2 table)
  uint64_t l2_entries_ = 0;
  std::vector<uint64_t> l1_;
  uint64_t l1_offset_ = 0;
  bool l1_dirty_ = false, header_dirty_ = false, rt_dirty_ = false;
  std::vector<uint64_t> rt_;
  uint64_t rt_offset_ = 0;
  uint32_t rt_clusters_ = 0;
  std::map<uint64_t, L2Table> l2_cache_;
  std::map<uint64_t, RefBlock> rb_cache_;
  std::vector<std::pair<uint64_t, uint64_t>> pending_free_;  // (cluster, by how much) to decrement after metadata
  uint64_t free_hint_ = 0;
  NewDataSink sink_;  // set_new_data_sink
  std::vector<Snap> snaps_;
  uint64_t snapshots_offset_ = 0;
  std::string backing_file_, backing_format_;
  std::unique_ptr<BlockBackend> backing_;
  std::vector<MetaRange> meta_;
  std::vector<uint64_t> meta_maxend_;  // running maximum of meta_[..].end
  bool meta_stale_ = true;
  std::vector<uint64_t> snap_l2_;  // distinct L2 tables of all snapshots
  bool snap_l2_stale_ = true;
  bool corrupt_ = false;           // found at run time: no more writes
  std::string corrupt_why_;
  std::vector<uint8_t> zbuf_;  // write_compressed's sector-padded copy
  uint64_t zfree_ = 0;  // next free byte for compressed data (0: start a new cluster)
  uint64_t zc_host_ = ~0ULL;  // last decompressed cluster (L2 entry) and its data
  std::vector<uint8_t> zc_data_;
};

}  // namespace vireo::block
