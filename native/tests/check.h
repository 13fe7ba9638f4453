// A very small test framework: each tests/*_test.cc is one executable that
// includes this header once. TEST registers a case; CHECK/CHECK_EQ fail it;
// SKIP("reason") skips it with a printed reason. Exit status: 0 all passed
// (or some skipped), 1 any failed, 77 every case skipped (ctest SKIP_RETURN_CODE).
#pragma once

// VIREO_ASAN: 1 in an AddressSanitizer build, with gcc (__SANITIZE_ADDRESS__) or clang
// (__has_feature(address_sanitizer), which clang 14 has instead of the gcc macro).
#if defined(__SANITIZE_ADDRESS__)
#define VIREO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VIREO_ASAN 1
#endif
#endif
#ifndef VIREO_ASAN
#define VIREO_ASAN 0
#endif
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace vireo_test {
struct Failure { std::string msg; };
struct Skip { std::string reason; };
struct Case { const char* name; void (*fn)(); };
inline std::vector<Case>& registry() { static std::vector<Case> r; return r; }
struct Reg { Reg(const char* n, void (*f)()) { registry().push_back({n, f}); } };
template <class T> std::string show(const T& v) {
  if constexpr (requires(std::ostream& o) { o << v; }) {
    std::ostringstream s; s << v; return s.str();
  } else {
    return "<value>";
  }
}
inline std::string show(unsigned char v) { std::ostringstream s; s << "0x" << std::hex << unsigned(v); return s.str(); }
}  // namespace vireo_test

#define TEST(name)                                                   \
  static void test_##name();                                         \
  static vireo_test::Reg reg_##name(#name, test_##name);             \
  static void test_##name()

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::ostringstream s_;                                                             \
      s_ << __FILE__ << ":" << __LINE__ << ": CHECK(" #cond ") failed";                  \
      throw vireo_test::Failure{s_.str()};                                               \
    }                                                                                    \
  } while (0)

#define CHECK_EQ(a, b)                                                                   \
  do {                                                                                   \
    auto va_ = (a);                                                                      \
    auto vb_ = (b);                                                                      \
    if (!(va_ == vb_)) {                                                                 \
      std::ostringstream s_;                                                             \
      s_ << __FILE__ << ":" << __LINE__ << ": CHECK_EQ(" #a ", " #b ") failed: "         \
         << vireo_test::show(va_) << " != " << vireo_test::show(vb_);                    \
      throw vireo_test::Failure{s_.str()};                                               \
    }                                                                                    \
  } while (0)

#define SKIP(reason) throw vireo_test::Skip{reason}

int main(int argc, char** argv) {
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failures;  // repeated at the end, where a log's tail shows them
  const char* only = argc > 1 ? argv[1] : nullptr;
  for (auto& c : vireo_test::registry()) {
    if (only && std::string(c.name).find(only) == std::string::npos) continue;
    try {
      c.fn();
      std::printf("  ok    %s\n", c.name);
      passed++;
    } catch (vireo_test::Skip& s) {
      std::printf("  skip  %s: %s\n", c.name, s.reason.c_str());
      skipped++;
    } catch (vireo_test::Failure& f) {
      std::printf("  FAIL  %s\n        %s\n", c.name, f.msg.c_str());
      failures.push_back(std::string(c.name) + ": " + f.msg);
      failed++;
    } catch (std::exception& e) {
      std::printf("  FAIL  %s\n        exception: %s\n", c.name, e.what());
      failures.push_back(std::string(c.name) + ": exception: " + e.what());
      failed++;
    }
    std::fflush(stdout);
  }
  for (auto& f : failures) std::printf("failed: %s\n", f.c_str());
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  if (failed) return 1;
  if (passed == 0 && skipped > 0) return 77;
  return 0;
}
