// vireo-img: create, inspect, check, convert and snapshot disk images.
// Commands, options, output and exit codes follow qemu-img where they overlap.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "block/convert.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "block/raw.h"

using namespace vireo::block;

namespace {

// -U / --force-share: read without taking image locks (block/lock.h), like qemu-img -U.
bool g_force_share = false;
// SIGINT/SIGTERM/SIGHUP during convert: stop and remove the temporary.
std::atomic<bool> g_cancel{false};

const char* const kUsage[][2] = {
    {"create", "create [-q] [-f qcow2|raw] [-b BACKING -F raw|qcow2] [-o cluster_size=N,compat=0.10|1.1,extended_l2=on|off,preallocation=off|metadata|falloc|full] FILE [SIZE]"},
    {"info", "info [-f FMT] [-U] [--output human|json] FILE"},
    {"check", "check [-q] [-f FMT] [-U] [-r leaks|all] [--output human|json] FILE"},
    {"convert", "convert [-q] [-p] [-c] [-U] [-t CACHE] [-f FMT] [-O qcow2|raw] [-o cluster_size=N,compat=...,extended_l2=on|off] IN OUT"},
    {"snapshot", "snapshot [-q] -c|-a|-d NAME FILE | snapshot [-U] -l FILE   (-a/-d --by-name: NAME is never an ID)"},
    {"resize", "resize [-q] [-f FMT] [--shrink] [--preallocation=off|metadata|falloc|full] FILE [+|-]SIZE"},
    {"rebase", "rebase -u -b BACKING -F raw|qcow2 FILE   (header only; -b \"\" removes it)"},
};

void print_usage(FILE* f, const std::string& only) {
  std::fprintf(f, "usage: vireo-img COMMAND ...\n");
  for (auto& u : kUsage)
    if (only.empty() || only == u[0]) std::fprintf(f, "  %s\n", u[1]);
  std::fprintf(f,
               "SIZE takes a suffix k, M, G, T (powers of 1024).\n"
               "convert -c writes compressed qcow2 clusters (deflate, like qemu-img convert -c).\n"
               "convert -t CACHE: writeback (the default here), writethrough, directsync or none: the copy is\n"
               "on stable storage before it gets its name; unsafe (qemu-img convert's default): no syncs, faster,\n"
               "but a crash or power loss soon after can leave it partly written.\n"
               "resize: shrinking needs --shrink; data past the new end is lost. A qcow2 v3 image with\n"
               "internal snapshots can grow or shrink: each snapshot keeps its size and data.\n"
               "preallocation (create -o, resize --preallocation, like qemu-img's): off (sparse), metadata (qcow2:\n"
               "every cluster mapped, nothing written), falloc (fallocate the data), full (write zeros); raw: off,\n"
               "falloc, full.\n"
               "Images are locked like QEMU's: an image a VM (Vireo or QEMU) writes is not opened;\n"
               "info, check (without -r), convert and snapshot -l take -U / --force-share to read it anyway.\n");
}

int usage(const std::string& only = "") {
  print_usage(stderr, only);
  return 1;
}

bool parse_size(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  char* end;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno || v < 0 || end == s.c_str()) return false;
  std::string suf = end;
  uint64_t mul = 1;
  if (suf.empty() || suf == "b" || suf == "B") mul = 1;
  else if (suf == "k" || suf == "K") mul = 1ULL << 10;
  else if (suf == "M" || suf == "m") mul = 1ULL << 20;
  else if (suf == "G" || suf == "g") mul = 1ULL << 30;
  else if (suf == "T" || suf == "t") mul = 1ULL << 40;
  else if (suf == "P" || suf == "p") mul = 1ULL << 50;
  else return false;
  *out = uint64_t(v * double(mul));
  return true;
}

std::string human(uint64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = double(n);
  int i = 0;
  while (v >= 1000 && i < 6) v /= 1024, i++;  // as qemu-img: 1000 bytes is "0.977 KiB"
  char b[64];
  std::snprintf(b, sizeof b, "%0.3g %s", v, units[i]);
  return b;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += char(c);
    else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else o += char(c);
  }
  return o + "\"";
}

// "-o a=b,c=d": cluster_size, compat (version) and extended_l2 for qcow2;
// preallocation for both formats.
bool parse_create_opts(const std::string& o, int* cluster_bits, int* version, std::string* backing,
                       std::string* backing_fmt, bool* extended_l2, std::string* prealloc) {
  size_t p = 0;
  while (p < o.size()) {
    size_t c = o.find(',', p);
    std::string kv = o.substr(p, c == std::string::npos ? std::string::npos : c - p);
    p = c == std::string::npos ? o.size() : c + 1;
    auto eq = kv.find('=');
    std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (k == "cluster_size") {
      uint64_t cs;
      if (!parse_size(v, &cs) || (cs & (cs - 1))) return false;
      *cluster_bits = __builtin_ctzll(cs);
    } else if (k == "compat") {
      if (v == "0.10" || v == "v2") *version = 2;
      else if (v == "1.1" || v == "v3") *version = 3;
      else return false;
    } else if (k == "extended_l2") {
      // qemu-img's boolean option values
      if (v == "on" || v == "yes" || v == "true" || v == "y") *extended_l2 = true;
      else if (v == "off" || v == "no" || v == "false" || v == "n") *extended_l2 = false;
      else {
        std::fprintf(stderr, "vireo-img: Parameter 'extended_l2' expects 'on' or 'off'\n");
        return false;
      }
    } else if (k == "preallocation") {
      Prealloc mode;
      if (!parse_prealloc(v, &mode)) {
        std::fprintf(stderr, "vireo-img: Parameter 'preallocation' does not accept value '%s'\n", v.c_str());
        return false;
      }
      *prealloc = v;
    } else if (k == "backing_file") {
      *backing = v;
    } else if (k == "backing_fmt") {
      *backing_fmt = v;
    } else if (k == "size" || k.empty()) {
      // ignored
    } else {
      std::fprintf(stderr, "vireo-img: unsupported option '%s'\n", k.c_str());
      return false;
    }
  }
  return true;
}

struct Args {
  std::vector<std::string> pos;
  std::string f, O, b, F, o, r, output = "human", snap_name, prealloc, cache;
  char snap_op = 0;
  bool by_name = false;  // snapshot -a/-d: NAME is a name, never an ID
  bool q = false, p = false, u = false, have_b = false, compress = false, shrink = false, help = false;
};

bool parse_args(const std::string& cmd, int argc, char** argv, Args* a) {
  bool opts = true;
  for (int i = 0; i < argc; i++) {
    std::string s = argv[i];
    if (!opts) {
      a->pos.push_back(s);
      continue;
    }
    if (s == "--") {  // the rest are operands (resize FILE -- -1G)
      opts = false;
      continue;
    }
    auto need = [&](std::string* dst) {
      if (i + 1 >= argc) return false;
      *dst = argv[++i];
      return true;
    };
    if (s == "-f") { if (!need(&a->f)) return false; }
    else if (s == "-O") { if (!need(&a->O)) return false; }
    else if (s == "-b") { if (!need(&a->b)) return false; a->have_b = true; }
    else if (s == "-u") a->u = true;
    else if (s == "-F") { if (!need(&a->F)) return false; }
    else if (s == "-o") { if (!need(&a->o)) return false; }
    else if (s == "-r") { if (!need(&a->r)) return false; }
    else if (s == "--output") { if (!need(&a->output)) return false; }
    else if (s.rfind("--output=", 0) == 0) a->output = s.substr(9);
    else if (s == "-q") a->q = true;
    else if (s == "-p") a->p = true;
    else if (s == "-U" || s == "--force-share") g_force_share = true;
    else if (s == "-h" || s == "--help") a->help = true;
    else if (cmd == "convert" && s == "-c") a->compress = true;
    else if (cmd == "convert" && s == "-t") { if (!need(&a->cache)) return false; }
    else if (cmd == "resize" && s == "--shrink") a->shrink = true;
    else if (cmd == "resize" && s == "--preallocation") { if (!need(&a->prealloc)) return false; }
    else if (cmd == "resize" && s.rfind("--preallocation=", 0) == 0) a->prealloc = s.substr(16);
    else if (cmd == "resize" && i == argc - 1 && s.size() > 1 && s[0] == '-') a->pos.push_back(s);  // -SIZE
    else if (s == "-c" || s == "-a" || s == "-d") {
      a->snap_op = s[1];
      if (!need(&a->snap_name)) return false;
    } else if (s == "-l") a->snap_op = 'l';
    else if (s == "--by-name") a->by_name = true;
    else if (s.size() > 1 && s[0] == '-' && !(s[1] >= '0' && s[1] <= '9')) {
      std::fprintf(stderr, "vireo-img: unknown option '%s'\n", s.c_str());
      return false;
    } else a->pos.push_back(s);
  }
  return true;
}

int cmd_create(Args& a) {
  if (a.pos.empty() || a.pos.size() > 2) return usage("create");
  std::string fmt = a.f.empty() ? "raw" : a.f;
  int cbits = 16, version = 3;
  bool ext_l2 = false;
  std::string backing = a.b, bfmt = a.F, pa = "off";
  if (!parse_create_opts(a.o, &cbits, &version, &backing, &bfmt, &ext_l2, &pa)) {
    std::fprintf(stderr, "vireo-img: invalid options '%s'\n", a.o.c_str());
    return 1;
  }
  Prealloc prealloc = Prealloc::Off;
  parse_prealloc(pa, &prealloc);
  if (ext_l2 && fmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: extended_l2 is a qcow2 option (-f qcow2)\n");
    return 1;
  }
  uint64_t size = 0;
  if (a.pos.size() == 2 && !parse_size(a.pos[1], &size)) {
    std::fprintf(stderr, "vireo-img: invalid image size '%s'\n", a.pos[1].c_str());
    return 1;
  }
  if (a.pos.size() == 1 && backing.empty()) {
    std::fprintf(stderr, "vireo-img: %s: size is required\n", a.pos[0].c_str());
    return 1;
  }
  std::string err;
  int r;
  if (fmt == "raw") {
    if (!backing.empty()) {
      std::fprintf(stderr, "vireo-img: raw images have no backing file\n");
      return 1;
    }
    if (prealloc == Prealloc::Metadata) {  // qemu-img's words, nothing created
      std::fprintf(stderr, "vireo-img: %s: Unsupported preallocation mode: metadata\n", a.pos[0].c_str());
      return 1;
    }
    r = create_raw(a.pos[0], whole_sectors(size), &err, prealloc);
    if (!r && !a.q)
      std::printf("Formatting '%s', fmt=raw size=%" PRIu64 "%s%s\n", a.pos[0].c_str(), size,
                  prealloc == Prealloc::Off ? "" : " preallocation=", prealloc == Prealloc::Off ? "" : prealloc_name(prealloc));
  } else if (fmt == "qcow2") {
    if (check_qcow2_options(cbits, version, ext_l2, &err)) {  // named like qemu-img's "FILE: reason"
      std::fprintf(stderr, "vireo-img: %s: %s\n", a.pos[0].c_str(), err.c_str());
      return 1;
    }
    if (!backing.empty() && prealloc != Prealloc::Off && !ext_l2) {
      std::fprintf(stderr, "vireo-img: %s: Backing file and preallocation can only be used at the same time "
                           "if extended_l2 is on\n", a.pos[0].c_str());
      return 1;
    }
    r = create_qcow2(a.pos[0], size, cbits, backing, bfmt, version, &err, ext_l2, prealloc);
    if (!r && !a.q) {
      std::printf("Formatting '%s', fmt=qcow2 cluster_size=%llu%s compat=%s", a.pos[0].c_str(),
                  1ULL << cbits, ext_l2 ? " extended_l2=on" : "", version == 2 ? "0.10" : "1.1");
      if (!backing.empty()) std::printf(" backing_file=%s", backing.c_str());
      if (!bfmt.empty()) std::printf(" backing_fmt=%s", bfmt.c_str());
      if (prealloc != Prealloc::Off) std::printf(" preallocation=%s", prealloc_name(prealloc));
      std::printf(" size=%" PRIu64 " refcount_bits=16\n", size);
    }
  } else {
    std::fprintf(stderr, "vireo-img: unknown format '%s'\n", fmt.c_str());
    return 1;
  }
  if (r) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  return 0;
}

std::unique_ptr<Qcow2Backend> open_qcow2_meta(const std::string& path, bool ro, std::string* err,
                                              bool for_check = false) {
  Qcow2OpenFlags fl;
  fl.read_only = ro;
  fl.no_backing = true;
  fl.allow_corrupt = for_check || ro;
  fl.no_repair = for_check;
  fl.force_share = g_force_share && ro;
  std::vector<std::string> chain;
  return Qcow2Backend::open(path, fl, &chain, err);
}

std::string fmt_date(uint32_t sec) {
  time_t t = sec;
  struct tm tm;
  localtime_r(&t, &tm);
  char b[32];
  strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", &tm);
  return b;
}
std::string fmt_clock(uint64_t ns) {
  uint64_t ms = ns / 1000000, s = ms / 1000;
  char b[32];
  std::snprintf(b, sizeof b, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64, s / 3600, s / 60 % 60,
                s % 60, ms % 1000);
  return b;
}

void print_snapshots(const std::vector<SnapshotInfo>& v) {
  std::printf("Snapshot list:\n");
  std::printf("%-9s %-17s %7s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
  for (auto& s : v)
    std::printf("%-9s %-17s %7s%20s%13s%11s\n", s.id.c_str(), s.name.c_str(),
                human(s.vm_state_size).c_str(), fmt_date(s.date_sec).c_str(),
                fmt_clock(s.vm_clock_nsec).c_str(),
                s.icount == ~0ULL ? "" : std::to_string(s.icount).c_str());
}

int cmd_info(Args& a) {
  if (a.pos.size() != 1) return usage("info");
  const std::string& path = a.pos[0];
  std::string err, fmt = a.f;
  if (fmt.empty()) fmt = probe_format(path, &err);
  if (fmt.empty()) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  struct stat st {};
  ::stat(path.c_str(), &st);
  uint64_t actual = uint64_t(st.st_blocks) * 512;
  bool json = a.output == "json";
  if (fmt == "raw") {
    auto r = RawBackend::open(path, true, &err, g_force_share);
    if (!r) {
      std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
      return 1;
    }
    if (json)
      std::printf("{\n    \"virtual-size\": %" PRIu64 ",\n    \"filename\": %s,\n    \"format\": \"raw\",\n"
                  "    \"actual-size\": %" PRIu64 ",\n    \"dirty-flag\": false\n}\n",
                  r->size(), json_str(path).c_str(), actual);
    else
      std::printf("image: %s\nfile format: raw\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n",
                  path.c_str(), human(r->size()).c_str(), r->size(), human(actual).c_str());
    return 0;
  }
  if (fmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: unknown format '%s'\n", fmt.c_str());
    return 1;
  }
  auto q = open_qcow2_meta(path, true, &err);
  if (!q) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  auto i = q->info();
  auto snaps = q->snapshots();
  std::string full;
  if (!i.backing_file.empty()) {
    full = i.backing_file;
    if (full[0] != '/') {
      auto sl = path.rfind('/');
      if (sl != std::string::npos) full = path.substr(0, sl + 1) + full;
    }
  }
  auto b = [](bool v) { return v ? "true" : "false"; };
  const char* compat = i.version == 2 ? "0.10" : "1.1";
  if (json) {
    std::printf("{\n");
    if (!snaps.empty()) {
      std::printf("    \"snapshots\": [\n");
      for (size_t k = 0; k < snaps.size(); k++) {
        auto& s = snaps[k];
        std::printf("        {\n");
        if (s.icount != ~0ULL) std::printf("            \"icount\": %" PRIu64 ",\n", s.icount);
        std::printf("            \"vm-clock-nsec\": %" PRIu64 ",\n            \"name\": %s,\n"
                    "            \"date-sec\": %u,\n            \"date-nsec\": %u,\n"
                    "            \"vm-clock-sec\": %" PRIu64 ",\n            \"id\": %s,\n"
                    "            \"vm-state-size\": %" PRIu64 "\n        }%s\n",
                    s.vm_clock_nsec % 1000000000, json_str(s.name).c_str(), s.date_sec, s.date_nsec,
                    s.vm_clock_nsec / 1000000000, json_str(s.id).c_str(), s.vm_state_size,
                    k + 1 < snaps.size() ? "," : "");
      }
      std::printf("    ],\n");
    }
    std::printf("    \"virtual-size\": %" PRIu64 ",\n    \"filename\": %s,\n    \"cluster-size\": %llu,\n"
                "    \"format\": \"qcow2\",\n    \"actual-size\": %" PRIu64 ",\n",
                i.size, json_str(path).c_str(), 1ULL << i.cluster_bits, actual);
    std::printf("    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n"
                "            \"compat\": \"%s\",\n", compat);
    if (i.version >= 3)
      std::printf("            \"compression-type\": \"%s\",\n            \"lazy-refcounts\": %s,\n",
                  i.compression.c_str(), b(i.lazy_refcounts));
    std::printf("            \"refcount-bits\": %u,\n            \"corrupt\": %s,\n"
                "            \"extended-l2\": %s\n        }\n    },\n",
                i.refcount_bits, b(i.corrupt), b(i.extended_l2));
    if (!i.backing_file.empty()) {
      std::printf("    \"backing-filename\": %s,\n    \"full-backing-filename\": %s,\n",
                  json_str(i.backing_file).c_str(), json_str(full).c_str());
      if (!i.backing_format.empty())
        std::printf("    \"backing-filename-format\": %s,\n", json_str(i.backing_format).c_str());
    }
    std::printf("    \"dirty-flag\": %s\n}\n", b(i.dirty));
    return 0;
  }
  std::printf("image: %s\nfile format: qcow2\nvirtual size: %s (%" PRIu64 " bytes)\ndisk size: %s\n"
              "cluster_size: %llu\n",
              path.c_str(), human(i.size).c_str(), i.size, human(actual).c_str(), 1ULL << i.cluster_bits);
  if (!i.backing_file.empty()) {
    std::printf("backing file: %s", i.backing_file.c_str());
    if (full != i.backing_file) std::printf(" (actual path: %s)", full.c_str());
    std::printf("\n");
    if (!i.backing_format.empty()) std::printf("backing file format: %s\n", i.backing_format.c_str());
  }
  if (!snaps.empty()) print_snapshots(snaps);
  std::printf("Format specific information:\n    compat: %s\n", compat);
  if (i.version >= 3)
    std::printf("    compression type: %s\n    lazy refcounts: %s\n", i.compression.c_str(), b(i.lazy_refcounts));
  std::printf("    refcount bits: %u\n    corrupt: %s\n    extended l2: %s\n", i.refcount_bits,
              b(i.corrupt), b(i.extended_l2));
  return 0;
}

int cmd_check(Args& a) {
  if (a.pos.size() != 1) return usage("check");
  const std::string& path = a.pos[0];
  std::string err, fmt = a.f;
  if (fmt.empty()) fmt = probe_format(path, &err);
  if (fmt.empty()) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  if (fmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: This image format does not support checks\n");
    return 63;
  }
  bool repair = !a.r.empty();
  if (repair && a.r != "leaks" && a.r != "all") {
    std::fprintf(stderr, "vireo-img: invalid -r argument '%s' (leaks or all)\n", a.r.c_str());
    return 1;
  }
  auto q = open_qcow2_meta(path, !repair, &err, true);
  if (!q) {
    std::fprintf(stderr, "vireo-img: Could not open '%s': %s\n", path.c_str(), err.c_str());
    return 1;
  }
  CheckResult res = q->check(repair);
  bool json = a.output == "json";
  if (json) {
    std::printf("{\n    \"image-end-offset\": %" PRIu64 ",\n    \"total-clusters\": %" PRIu64 ",\n"
                "    \"check-errors\": %d,\n    \"leaks\": %" PRIu64 ",\n    \"corruptions\": %" PRIu64 ",\n"
                "    \"allocated-clusters\": %" PRIu64 ",\n    \"filename\": %s,\n    \"format\": \"qcow2\",\n"
                "    \"fragmented-clusters\": %" PRIu64 ",\n    \"compressed-clusters\": %" PRIu64 "\n}\n",
                res.image_end_offset, res.total_clusters, res.completed ? 0 : 1, res.leaks, res.corruptions,
                res.allocated_clusters, json_str(path).c_str(), res.fragmented_clusters,
                res.compressed_clusters);
  } else if (!a.q) {
    for (auto& m : res.messages) std::printf("%s\n", m.c_str());
    if (!res.completed) std::printf("\nThe check could not be completed.\n");
    if (res.corruptions_fixed || res.leaks_fixed)
      std::printf("The following inconsistencies were found and repaired:\n\n    %" PRIu64
                  " leaked clusters\n    %" PRIu64 " corruptions\n\nDouble checking the fixed image now...\n",
                  res.leaks_fixed, res.corruptions_fixed);
    if (res.corruptions)
      std::printf("\n%" PRIu64 " errors were found on the image.\nData may be corrupted, or further writes "
                  "to the image may corrupt it.\n", res.corruptions);
    if (res.leaks)
      std::printf("\n%" PRIu64 " leaked clusters were found on the image.\nThis means waste of disk space, "
                  "but no harm to data.\n", res.leaks);
    if (res.completed && !res.corruptions && !res.leaks) std::printf("No errors were found on the image.\n");
    if (res.total_clusters)
      std::printf("%" PRIu64 "/%" PRIu64 " = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
                  res.allocated_clusters, res.total_clusters,
                  100.0 * double(res.allocated_clusters) / double(res.total_clusters),
                  res.allocated_clusters ? 100.0 * double(res.fragmented_clusters) / double(res.allocated_clusters) : 0.0,
                  res.allocated_clusters ? 100.0 * double(res.compressed_clusters) / double(res.allocated_clusters) : 0.0);
    std::printf("Image end offset: %" PRIu64 "\n", res.image_end_offset);
  }
  if (!res.completed) return 1;
  if (res.corruptions) return 2;
  if (res.leaks) return 3;
  return 0;
}

int cmd_convert(Args& a) {
  if (a.pos.size() != 2) return usage("convert");
  std::string err;
  OpenOptions o;
  o.format = a.f;
  o.read_only = true;
  o.force_share = g_force_share;
  auto in = open_block(a.pos[0], o, &err);
  if (!in) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  std::string ofmt = a.O.empty() ? "raw" : a.O;
  int cbits = 16, version = 3;
  bool ext_l2 = false;
  std::string ob, obf, pa;
  if (!parse_create_opts(a.o, &cbits, &version, &ob, &obf, &ext_l2, &pa)) {
    std::fprintf(stderr, "vireo-img: invalid options '%s'\n", a.o.c_str());
    return 1;
  }
  if (!pa.empty()) {
    std::fprintf(stderr, "vireo-img: convert does not preallocate (holes stay holes); create the image "
                         "with 'vireo-img create -o preallocation=...' to get a preallocated one\n");
    return 1;
  }
  if (ext_l2 && ofmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: extended_l2 is a qcow2 option (-O qcow2)\n");
    return 1;
  }
  int r = 0;
  if (ofmt != "raw" && ofmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: unknown format '%s'\n", ofmt.c_str());
    return 1;
  }
  if (a.compress && ofmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: Compression not supported for this file format\n");
    return 1;
  }
  ConvertOptions co;
  if (a.cache == "unsafe") co.durable = false;
  else if (!a.cache.empty() && a.cache != "writeback" && a.cache != "writethrough" && a.cache != "directsync" &&
           a.cache != "none") {
    std::fprintf(stderr, "vireo-img: Invalid cache option: %s\n", a.cache.c_str());
    return 1;
  }
  co.format = ofmt;
  co.compress = a.compress;
  co.cluster_bits = cbits;
  co.version = version;
  co.extended_l2 = ext_l2;
  co.cancel = &g_cancel;
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_cancel = true; };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  int last = -1;
  timespec t0 {};
  if (a.p) {
    co.progress = [&](uint64_t done, uint64_t total) {
      // like qemu-img's "    (NN.NN/100%)\r", at most every 1/100 % and 50 ms
      int v = total ? int(10000.0 * double(done) / double(total)) : 10000;
      timespec t {};
      clock_gettime(CLOCK_MONOTONIC, &t);
      double dt = double(t.tv_sec - t0.tv_sec) + double(t.tv_nsec - t0.tv_nsec) / 1e9;
      if (v == last || (v < 10000 && last >= 0 && dt < 0.05)) return;
      last = v, t0 = t;
      std::printf("    (%d.%02d/100%%)\r", v / 100, v % 100);
      std::fflush(stdout);
    };
    std::printf("    (0.00/100%%)\r");
    std::fflush(stdout);
  }
  r = convert_image(*in, a.pos[1], co, &err);
  if (a.p) std::printf("\n");
  if (r) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  return 0;
}

int cmd_snapshot(Args& a) {
  if (a.pos.size() != 1 || !a.snap_op) return usage("snapshot");
  std::string err;
  std::string fmt = probe_format(a.pos[0], &err);
  if (fmt.empty()) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  if (fmt != "qcow2") {
    std::fprintf(stderr, "vireo-img: '%s': format '%s' has no internal snapshots\n", a.pos[0].c_str(), fmt.c_str());
    return 1;
  }
  auto q = open_qcow2_meta(a.pos[0], a.snap_op == 'l', &err);
  if (!q) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  int r = 0;
  switch (a.snap_op) {
    case 'l': {
      auto v = q->snapshots();
      if (!v.empty()) print_snapshots(v);
      return 0;
    }
    case 'c': r = q->snapshot_create(a.snap_name, &err); break;
    case 'a': r = q->snapshot_apply(a.snap_name, &err, a.by_name); break;
    case 'd': r = q->snapshot_delete(a.snap_name, &err, a.by_name); break;
  }
  if (!r) r = q->flush();
  if (r) {
    const char* what = a.snap_op == 'c' ? "create" : a.snap_op == 'a' ? "apply" : "delete";
    std::fprintf(stderr, "vireo-img: Could not %s snapshot '%s': %s\n", what, a.snap_name.c_str(),
                 err.empty() ? std::strerror(-r) : err.c_str());
    return 1;
  }
  return 0;
}

// Like qemu-img resize: [+|-]SIZE; shrinking only with --shrink (raw: the
// file is truncated; qcow2: clusters past the end are freed).
int cmd_resize(Args& a) {
  if (a.pos.size() != 2) return usage("resize");
  const std::string& path = a.pos[0];
  std::string s = a.pos[1];
  int sign = s[0] == '+' ? 1 : s[0] == '-' ? -1 : 0;
  uint64_t n;
  if (!parse_size(sign ? s.substr(1) : s, &n)) {
    std::fprintf(stderr, "vireo-img: Invalid image size specified: '%s'\n", s.c_str());
    return 1;
  }
  Prealloc prealloc = Prealloc::Off;
  if (!a.prealloc.empty() && !parse_prealloc(a.prealloc, &prealloc)) {
    std::fprintf(stderr, "vireo-img: Invalid preallocation mode '%s'\n", a.prealloc.c_str());
    return 1;
  }
  std::string err;
  OpenOptions o;
  o.format = a.f;
  auto b = open_block(path, o, &err);
  if (!b) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  uint64_t cur = b->size(), ns;
  if (sign < 0) {
    if (n >= cur) {
      std::fprintf(stderr, "vireo-img: New image size must be positive\n");
      return 1;
    }
    ns = cur - n;
  } else {
    ns = sign > 0 ? cur + n : n;
  }
  if (ns == 0) {
    std::fprintf(stderr, "vireo-img: New image size must be positive\n");
    return 1;
  }
  if (ns < cur && !a.shrink) {
    std::fprintf(stderr,
                 "vireo-img: Use the --shrink option to perform a shrink operation.\n"
                 "vireo-img: warning: Shrinking an image will delete all data beyond the shrunken image's "
                 "end. Before performing such an operation, make sure there is no important data there.\n");
    return 1;
  }
  if (ns < cur && prealloc != Prealloc::Off) {
    std::fprintf(stderr, "vireo-img: Preallocation can only be used for growing images\n");
    return 1;
  }
  int r;
  if (auto* q = dynamic_cast<Qcow2Backend*>(b.get())) {
    r = q->resize(ns, &err, prealloc);
  } else if (auto* raw = dynamic_cast<RawBackend*>(b.get())) {
    r = grow_raw(raw->fd(), cur, ns, prealloc, &err);  // or shrink (prealloc off); on failure the old size
  } else {
    r = -ENOTSUP;
    err = "format '" + b->format() + "' cannot be resized";
  }
  if (r) {
    std::fprintf(stderr, "vireo-img: cannot resize '%s': %s\n", path.c_str(), err.c_str());
    return 1;
  }
  if (!a.q) std::printf("Image resized.\n");
  return 0;
}

int cmd_rebase(Args& a) {
  if (a.pos.size() != 1 || !a.have_b) return usage("rebase");
  if (!a.u) {
    std::fprintf(stderr, "vireo-img: only 'rebase -u' (rewrite the header, copy no data) is supported\n");
    return 1;
  }
  if (!a.f.empty() && a.f != "qcow2") {
    std::fprintf(stderr, "vireo-img: only qcow2 images have a backing file\n");
    return 1;
  }
  std::string err;
  if (set_backing_file(a.pos[0], a.b, a.F, &err)) {
    std::fprintf(stderr, "vireo-img: %s\n", err.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(stdout, "");
    return 0;
  }
  bool known = false;
  for (auto& u : kUsage) known = known || cmd == u[0];
  if (!known) {
    std::fprintf(stderr, "vireo-img: unknown command '%s'\n", cmd.c_str());
    return usage();
  }
  Args a;
  if (!parse_args(cmd, argc - 2, argv + 2, &a)) return usage(cmd);
  if (a.help) {
    print_usage(stdout, cmd);
    return 0;
  }
  if (g_force_share && !(cmd == "info" || cmd == "convert" || (cmd == "check" && a.r.empty()) ||
                         (cmd == "snapshot" && a.snap_op == 'l'))) {
    std::fprintf(stderr, "vireo-img: -U/--force-share is only for reading (info, check without -r, convert, "
                         "snapshot -l): an image is never changed without its lock\n");
    return 1;
  }
  if (cmd == "create") return cmd_create(a);
  if (cmd == "info") return cmd_info(a);
  if (cmd == "check") return cmd_check(a);
  if (cmd == "convert") return cmd_convert(a);
  if (cmd == "snapshot") return cmd_snapshot(a);
  if (cmd == "resize") return cmd_resize(a);
  if (cmd == "rebase") return cmd_rebase(a);
  std::fprintf(stderr, "vireo-img: unknown command '%s'\n", cmd.c_str());
  return usage();
}
