#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "sensor/sketch/space_saving.h"

namespace garda::sensor {

// Space-Saving behind a hashed pre-filter: the top keys of a stream of unit
// increments (packets), where most increments never touch the Space-Saving.
// A spoofed flood makes every packet a new source, and plain Space-Saving
// then evicts on every packet (an index delete and insert and a heap sift
// from the root, across cache lines of one victim's sketch among thousands);
// here such a packet costs one counter in a small array.
//
// How: 2^filterBits counters a[b], one per hash bucket. Once the Space-Saving
// has evicted a key, a packet of key x (bucket b) is absorbed, a[b] += 1, while
// a[b] < T(n) = floor + n / 2^rateShift, where n counts every packet offered
// so far; otherwise it goes to the Space-Saving. Until then every packet goes
// to it, so a stream of at most `capacity` distinct keys is counted exactly,
// as by Space-Saving alone. A key's reported count and error are
// its Space-Saving count and error plus a[b] of its bucket.
//
// Guarantees, for every key x with true count f(x) among the N = total()
// packets since the last reset, m = capacity() and
// A = absorbedBound() = floor + N / 2^rateShift:
//   - T(n) only grows, so no bucket absorbs more than A packets; the
//     Space-Saving sees f(x) - a[b] >= f(x) - A of x's packets, out of at most N;
//   - a reported x has count - error <= f(x) <= count (Space-Saving's bounds
//     on the packets it saw, plus [0, a[b]] for those absorbed);
//   - an unreported x has f(x) <= untrackedBound() <= N / m + A, so every key
//     with f(x) > N / m + A is reported. Defaults for sources (m = 128,
//     filterBits 10, rateShift 9, floor 2): f(x) > 0.98% N + 2, which holds
//     for every source above 1% of a victim's packets once N > 8,600, and for
//     every source above 5% (what the accuracy tests ask) once N > 50.
// With 2^filterBits = 2 x 2^rateShift, a uniform spread of keys fills each
// bucket at half its threshold, so in a spoofed flood almost every packet is
// absorbed.
// merge() keeps all of these for the concatenated stream, with A the sum of
// the two sides' absorbed bounds (buckets add).
//
// Allocates only in the constructor; add() and reset() never allocate, lock
// or throw. top() and merge() allocate (window close). Not thread-safe: one
// per worker thread and victim, merged after the window closes.
template <typename Key, typename Hash = SketchKeyHash<Key>>
class FilteredSpaceSaving {
 public:
  using Entry = typename SpaceSaving<Key, Hash>::Entry;
  struct Shape {
    size_t capacity = 128;     // Space-Saving counters
    unsigned filterBits = 10;  // 2^filterBits filter counters
    unsigned rateShift = 9;    // T(n) grows by 1 every 2^rateShift packets
    uint32_t floor = 2;        // T(0)
  };

  // Throws std::invalid_argument for a capacity SpaceSaving refuses,
  // filterBits outside 1..24 or rateShift outside 0..32.
  explicit FilteredSpaceSaving(const Shape& shape, Hash hash = Hash())
      : filterShift_(64 - checkedBits(shape.filterBits)),
        rateShift_(checkedShift(shape.rateShift)),
        floor_(shape.floor),
        filter_(size_t{1} << shape.filterBits, 0),
        hash_(hash),
        sketch_(shape.capacity, hash) {}

  // The 64-bit hash add() and prefetch() take: the caller computes it once.
  // Its top 32 bits are SpaceSaving's hash of the key, its top filterBits
  // the filter bucket.
  uint64_t hashOf(const Key& key) const noexcept {
    return static_cast<uint64_t>(hash_(key)) * 0x9e3779b97f4a7c15ULL;
  }
  // Brings what add() will read toward the cache: the key's filter counter,
  // or until the first eviction (every packet goes to the Space-Saving) its
  // index entry.
  void prefetch(uint64_t hash) const noexcept {
    if (filtering_) {
      __builtin_prefetch(&filter_[bucket(hash)], 1);
    } else {
      sketch_.prefetch(static_cast<uint32_t>(hash >> 32));
    }
  }

  // After prefetch() has landed: if the packet would go to the Space-Saving
  // now, brings its index entry toward the cache.
  void prefetchSketch(uint64_t hash) const noexcept {
    if (filtering_ && filter_[bucket(hash)] < threshold()) return;
    sketch_.prefetch(static_cast<uint32_t>(hash >> 32));
  }

  // Counts one packet of `key`; `hash` must be hashOf(key).
  void add(const Key& key, uint64_t hash) noexcept {
    ++seen_;
    if (filtering_) {
      uint32_t& a = filter_[bucket(hash)];
      if (a < threshold()) {
        ++a;
        return;
      }
    }
    filtering_ |= sketch_.addHashed(key, static_cast<uint32_t>(hash >> 32));
  }
  void add(const Key& key) noexcept { add(key, hashOf(key)); }

  // The n highest reported counts, highest first (ties: smaller error first).
  std::vector<Entry> top(size_t n) const {
    std::vector<Entry> out = sketch_.top(sketch_.size());
    for (Entry& e : out) {
      const uint32_t a = filter_[bucket(hashOf(e.key))];
      e.count += a;
      e.error += a;
    }
    return SpaceSaving<Key, Hash>::heaviest(std::move(out), n);
  }

  // Folds in `other` (another worker's sketch of the same window): the
  // Space-Saving parts merge as SpaceSaving::merge() does, filter counters
  // and totals add. Throws std::invalid_argument unless the shapes match.
  void merge(const FilteredSpaceSaving& other) {
    if (other.filter_.size() != filter_.size() || other.rateShift_ != rateShift_ ||
        other.floor_ != floor_ || other.capacity() != capacity()) {
      throw std::invalid_argument("FilteredSpaceSaving merge needs equal shapes");
    }
    if (&other == this) {
      for (uint32_t& a : filter_) a = saturatingAdd(a, a);
    } else {
      for (size_t b = 0; b < filter_.size(); ++b)
        filter_[b] = saturatingAdd(filter_[b], other.filter_[b]);
    }
    sketch_.merge(other.sketch_);
    mergedBound_ = absorbedBound() + other.absorbedBound();
    seen_ += other.seen_;
    filtering_ = filtering_ || other.filtering_ || sketch_.size() == sketch_.capacity();
  }

  // Empties the sketch for the next window; no allocation.
  void reset() noexcept {
    // Counters only move once the Space-Saving has evicted (or by a merge).
    if (filtering_ || mergedBound_ != 0) std::memset(filter_.data(), 0, filter_.size() * 4);
    sketch_.reset();
    seen_ = 0;
    mergedBound_ = 0;
    filtering_ = false;
  }

  // Packets added (and merged) since the last reset.
  uint64_t total() const noexcept { return seen_; }
  // Of those, the packets that went to the Space-Saving (not absorbed).
  uint64_t passed() const noexcept { return sketch_.total(); }
  size_t size() const noexcept { return sketch_.size(); }
  size_t capacity() const noexcept { return sketch_.capacity(); }
  // An upper bound on the packets any one bucket absorbed: floor +
  // total() / 2^rateShift, or after a merge the sum of the two sides' bounds
  // if that is larger (a bucket holds the sum of both sides' counters, and
  // later adds raise it only below the threshold).
  uint64_t absorbedBound() const noexcept {
    return std::max<uint64_t>(mergedBound_, floor_ + (seen_ >> rateShift_));
  }
  // An upper bound on the count of any key not reported, and on how far any
  // reported count exceeds the truth: Space-Saving's minimum plus the
  // largest filter counter.
  uint64_t untrackedBound() const noexcept {
    const uint32_t a = *std::max_element(filter_.begin(), filter_.end());
    return sketch_.minCount() + a;
  }

 private:
  static unsigned checkedBits(unsigned bits) {
    if (bits < 1 || bits > 24)
      throw std::invalid_argument("FilteredSpaceSaving filterBits must be between 1 and 24, got " +
                                  std::to_string(bits));
    return bits;
  }
  static unsigned checkedShift(unsigned shift) {
    if (shift > 32)
      throw std::invalid_argument("FilteredSpaceSaving rateShift must be at most 32, got " +
                                  std::to_string(shift));
    return shift;
  }
  static uint32_t saturatingAdd(uint32_t a, uint32_t b) noexcept {
    return a > std::numeric_limits<uint32_t>::max() - b ? std::numeric_limits<uint32_t>::max()
                                                        : a + b;
  }

  size_t bucket(uint64_t hash) const noexcept { return static_cast<size_t>(hash >> filterShift_); }
  // T(n) for the packet being added (n = seen_), capped below 2^32 - 1 so a
  // counter never wraps.
  uint32_t threshold() const noexcept {
    const uint64_t t = floor_ + (seen_ >> rateShift_);
    return static_cast<uint32_t>(std::min<uint64_t>(t, std::numeric_limits<uint32_t>::max() - 1));
  }

  // Hot fields first: add() reads these and one filter counter.
  uint64_t seen_ = 0;
  bool filtering_ = false;  // the Space-Saving has evicted: the filter is on
  unsigned filterShift_;
  unsigned rateShift_;
  uint32_t floor_;
  std::vector<uint32_t> filter_;
  uint64_t mergedBound_ = 0;  // 0 until a merge
  Hash hash_;
  SpaceSaving<Key, Hash> sketch_;
};

}  // namespace garda::sensor
