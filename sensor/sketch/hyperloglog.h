#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include "common/ip.h"

namespace garda::sensor {

// HyperLogLog (Flajolet et al. 2007): the number of distinct keys in a stream,
// here distinct sources per window and victim, in 2^precision one-byte
// registers (precision 13: 8 KiB, standard error 1.04 / sqrt(2^13) ~ 1.15%).
// The estimate uses Ertl's improved estimator ("New cardinality estimation
// algorithms for HyperLogLog sketches", 2017), which is unbiased from 0 up to
// far beyond 2^32 without HLL++'s empirical bias tables or a switch to linear
// counting.
//
// Invariant: register i holds the largest rank (1 + leading zeros of the bits
// below the index, capped at 65 - precision) of any hash whose top `precision`
// bits are i; 0 when none. Registers only grow, so adding a key twice, or
// merging a sketch twice, changes nothing.
//
// Allocates only in the constructor; addHash(), add() and reset() never
// allocate, lock or throw. Not thread-safe: one per worker thread and victim,
// merged after the window closes.
class HyperLogLog {
 public:
  static constexpr unsigned kMinPrecision = 4;
  static constexpr unsigned kMaxPrecision = 16;
  static constexpr unsigned kDefaultPrecision = 13;

  // Throws std::invalid_argument unless 4 <= precision <= 16.
  explicit HyperLogLog(unsigned precision = kDefaultPrecision);

  // Adds a key by its 64-bit hash; the hash must be well mixed in every bit.
  void addHash(uint64_t hash) noexcept {
    const uint64_t index = hash >> (64 - precision_);
    // The sentinel bit caps the leading-zero count at 64 - precision.
    const uint64_t rest = (hash << precision_) | (uint64_t{1} << (precision_ - 1));
    const auto rank = static_cast<uint8_t>(std::countl_zero(rest) + 1);
    uint8_t& reg = registers_[index];
    reg = std::max(reg, rank);
  }
  void add(const common::IpAddress& address) noexcept { addHash(hashAddress(address)); }
  // Brings the register addHash(hash) will update toward the cache.
  void prefetch(uint64_t hash) const noexcept {
    __builtin_prefetch(&registers_[hash >> (64 - precision_)], 1);
  }

  // The estimated number of distinct keys added since the last reset.
  uint64_t estimate() const;

  // Folds in `other` (register-wise max): the sketch of the union. Throws
  // std::invalid_argument if the precisions differ: a wiring error, and
  // silently mixing them would be meaningless.
  void merge(const HyperLogLog& other);
  // The same from registers shipped elsewhere (a worker's window, a
  // summary); throws std::invalid_argument unless there are 2^precision.
  void mergeRegisters(std::span<const uint8_t> registers);

  void reset() noexcept;

  unsigned precision() const noexcept { return precision_; }
  // 2^precision bytes, register i at index i, each 0..65 - precision: the
  // form to ship a sketch in.
  std::span<const uint8_t> registers() const noexcept { return registers_; }

  // The 64-bit hash add() uses: both words through a splitmix64-style
  // finaliser, so IPv4 (hi == 0) and sequential addresses spread over every bit.
  static uint64_t hashAddress(const common::IpAddress& address) noexcept {
    return mix64(mix64(address.hi() + 0x9e3779b97f4a7c15ULL) ^ address.lo());
  }

 private:
  static uint64_t mix64(uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
  }

  unsigned precision_;
  std::vector<uint8_t> registers_;
};

}  // namespace garda::sensor
