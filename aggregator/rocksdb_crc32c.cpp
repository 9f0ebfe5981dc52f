// RocksDB's CRC32C in hardware. Debian builds librocksdb portable, without
// SSE4.2, so its crc32c::Extend runs a table-driven loop in software: at
// 20,000 summaries a second that checksumming of every WAL record and every
// blob record was 11% of the aggregator's CPU. Garda links librocksdb.a, and
// every object in it that checksums calls crc32c::Extend (or the inline
// crc32c::Value, which calls it) by its symbol; the link wraps that symbol
// (--wrap, aggregator/CMakeLists.txt), so those calls come here. This
// computes the same function (CRC-32C, Castagnoli, with RocksDB's pre- and
// post-inversion) with the CPU's crc32 instruction, and passes on to the
// library's own where the CPU has no SSE4.2. docs/decisions.md, "The last
// step to 20,000/s at N=1000 (session 10)".
#include "aggregator/rocksdb_crc32c.h"

#include <atomic>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace {

std::atomic<uint64_t> gCalls{0};

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t extendSse42(uint32_t crc, const char* p,
                                                        size_t n) noexcept {
  uint64_t l = crc ^ 0xffffffffu;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    l = _mm_crc32_u8(static_cast<uint32_t>(l), static_cast<uint8_t>(*p++));
    --n;
  }
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
    l = _mm_crc32_u64(l, word);
  }
  for (; n > 0; --n) l = _mm_crc32_u8(static_cast<uint32_t>(l), static_cast<uint8_t>(*p++));
  return static_cast<uint32_t>(l) ^ 0xffffffffu;
}

// Asked once, as packed_reader.cpp's canShuffle() does.
bool hasSse42() noexcept {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#else
bool hasSse42() noexcept { return false; }
#endif

}  // namespace

// rocksdb::crc32c::Extend(unsigned int, char const*, unsigned long): the
// library's own (__real_) and what the link sends its callers to (__wrap_).
extern "C" uint32_t __real__ZN7rocksdb6crc32c6ExtendEjPKcm(uint32_t crc, const char* data,
                                                           size_t n);
extern "C" uint32_t __wrap__ZN7rocksdb6crc32c6ExtendEjPKcm(uint32_t crc, const char* data,
                                                           size_t n) {
  gCalls.fetch_add(1, std::memory_order_relaxed);
#if defined(__x86_64__)
  if (hasSse42()) return extendSse42(crc, data, n);
#endif
  return __real__ZN7rocksdb6crc32c6ExtendEjPKcm(crc, data, n);
}

namespace garda::aggregator {

Crc32cUse rocksdbCrc32c() noexcept {
  return {hasSse42(), gCalls.load(std::memory_order_relaxed)};
}

uint32_t rocksdbCrc32cExtend(uint32_t crc, const char* data, size_t n) noexcept {
  return __wrap__ZN7rocksdb6crc32c6ExtendEjPKcm(crc, data, n);
}

uint32_t rocksdbOwnCrc32cExtend(uint32_t crc, const char* data, size_t n) noexcept {
  return __real__ZN7rocksdb6crc32c6ExtendEjPKcm(crc, data, n);
}

}  // namespace garda::aggregator
