#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/ip.h"

namespace garda::sensor {

// The hash SpaceSaving uses unless told otherwise: std::hash for integral keys
// (ports), IpAddressHash for addresses. SpaceSaving re-mixes whatever this
// returns, so an identity hash (std::hash<uint16_t>) is fine.
template <typename Key>
struct SketchKeyHash : std::hash<Key> {};
template <>
struct SketchKeyHash<common::IpAddress> : common::IpAddressHash {};

// Space-Saving (Metwally, Agrawal, El Abbadi 2005): the heaviest keys of a
// weighted stream in `capacity` counters. Per window and victim it keeps the
// top sources by packets, and the top source and destination ports.
//
// Guarantees, for every key x with true weight f(x) in the stream(s) seen since
// the last reset, N = total() and m = minCount() (0 until the sketch is full):
//   - a tracked x has count - error <= f(x) <= count, and count - f(x) <= m;
//   - an untracked x has f(x) <= m, so every key with f(x) > m is tracked;
//   - m <= N / capacity, so every key with f(x) > N / capacity is tracked.
// These hold after merge() too (see there).
//
// Layout: counters live in `capacity` fixed slots (key, error); a 4-ary
// min-heap of (count, slot) finds the counter to evict, and an
// open-addressing index (linear probing, a power of two >= 2 x capacity
// entries, so load <= 1/2) maps a key to its slot. Deleting the evicted key
// from the index uses backward-shift deletion, so there are no tombstones and
// probe chains never grow with churn. Each slot remembers its index position,
// which makes eviction a direct delete and reset() O(size()).
// Why a heap rather than Metwally's Stream-Summary bucket list: adds are
// weighted (packets now, bytes later), and Stream-Summary is O(1) only for
// unit increments; a weighted increment walks the buckets it passes. The heap
// is O(log capacity) for any weight, in flat arrays with no pointers to chase,
// and a hit only sifts down past smaller counts, which heavy hitters soon
// leave behind (they settle at the leaves, where a sift is one compare).
//
// Allocates only in the constructor; add() and reset() never allocate, lock or
// throw. top() and merge() allocate (window close). Not thread-safe: one per
// worker thread and victim, merged after the window closes.
//
// Key: default-constructible, copyable, equality-comparable. Hash: a functor
// returning size_t.
template <typename Key, typename Hash = SketchKeyHash<Key>>
class SpaceSaving {
 public:
  struct Entry {
    Key key;
    uint64_t count = 0;  // upper bound on the key's true weight
    uint64_t error = 0;  // count - error is a lower bound
  };

  // Throws std::invalid_argument unless 1 <= capacity <= 2^30.
  explicit SpaceSaving(size_t capacity, Hash hash = Hash())
      : capacity_(checkedCapacity(capacity)),
        hash_(std::move(hash)),
        indexMask_(std::bit_ceil(2 * capacity_) - 1),
        keys_(capacity_),
        errors_(capacity_),
        indexPos_(capacity_),
        heapPos_(capacity_),
        heap_(capacity_ + kArity, kVacant),
        index_(indexMask_ + 1) {}

  // Counts `weight` for `key`. Amortised O(1) index probe plus an
  // O(log capacity) heap sift.
  void add(const Key& key, uint64_t weight = 1) noexcept { addHashed(key, mixedHash(key), weight); }

  // The same with the key's hash computed ahead: `hash` must be hashOf(key).
  // Returns true when the key took over another key's counter (an eviction).
  bool addHashed(const Key& key, uint32_t hash, uint64_t weight = 1) noexcept {
    if (weight == 0) return false;
    total_ += weight;
    const uint32_t h = hash;
    size_t i = h & indexMask_;
    for (IndexEntry e = index_[i]; e.slotPlus1 != 0; e = index_[i = (i + 1) & indexMask_]) {
      if (e.hash == h && keys_[e.slotPlus1 - 1] == key) {
        const uint32_t pos = heapPos_[e.slotPlus1 - 1];
        heap_[pos].count += weight;
        siftDown(pos);
        return false;
      }
    }
    if (size_ < capacity_) {
      const uint32_t slot = static_cast<uint32_t>(size_);
      keys_[slot] = key;
      errors_[slot] = 0;
      placeInIndex(i, h, slot);
      placeInHeap(size_, {weight, slot});
      ++size_;
      siftUp(size_ - 1);
      return false;
    }
    // Full: the key takes over the smallest counter, inheriting its count as
    // the possible overestimate.
    const uint32_t slot = heap_[0].slot;
    const uint64_t minCount = heap_[0].count;
    eraseFromIndex(indexPos_[slot]);
    // The erase may have shifted entries into the hole found above: probe again.
    i = h & indexMask_;
    while (index_[i].slotPlus1 != 0) i = (i + 1) & indexMask_;
    keys_[slot] = key;
    errors_[slot] = minCount;
    placeInIndex(i, h, slot);
    heap_[0].count = minCount + weight;
    siftDown(0);
    return true;
  }

  // The hash addHashed() takes: the top 32 bits of Hash()(key) times
  // 2^64 / phi (Fibonacci hashing spreads identity hashes and consecutive
  // keys across the index).
  uint32_t hashOf(const Key& key) const noexcept { return mixedHash(key); }
  // Brings the index entry where a key with this hash is looked up toward
  // the cache.
  void prefetch(uint32_t hash) const noexcept { __builtin_prefetch(&index_[hash & indexMask_]); }

  // The n heaviest counters, highest count first (ties: smaller error first).
  std::vector<Entry> top(size_t n) const { return heaviest(entries(), n); }

  // The n heaviest of `entries`, highest count first (ties: smaller error first).
  static std::vector<Entry> heaviest(std::vector<Entry> entries, size_t n) {
    n = std::min(n, entries.size());
    auto heavier = [](const Entry& a, const Entry& b) {
      return a.count != b.count ? a.count > b.count : a.error < b.error;
    };
    std::partial_sort(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(n),
                      entries.end(), heavier);
    entries.resize(n);
    return entries;
  }

  // Folds `other` (another worker's sketch of the same window) into this one,
  // following the mergeable-summaries construction (Agarwal et al. 2012;
  // Cafaro et al. 2016 for Space-Saving): counts and errors of shared keys
  // add; a key tracked on one side only takes the other side's minCount() as
  // both count and error from that side (0 when that side is not full, as the
  // key then truly never appeared there); the `capacity` largest are kept.
  // Every guarantee in the class comment then holds for the concatenated
  // stream with N = total() + other.total(): each side's counts bound its own
  // stream from above and the filled-in minimum bounds an absent key, so the
  // sums do; every candidate's count is >= the sum of the two minimums, so the
  // new minimum still bounds every key dropped or never seen; and any
  // `capacity` candidates have counts summing to <= N, so the new minimum is
  // <= N / capacity. Throws std::invalid_argument if the capacities differ
  // (a wiring error: a smaller sketch's minimum would not carry over).
  // Allocates; not for the packet path.
  void merge(const SpaceSaving& other) {
    if (other.capacity_ != capacity_) {
      throw std::invalid_argument("SpaceSaving merge needs equal capacities, got " +
                                  std::to_string(capacity_) + " and " +
                                  std::to_string(other.capacity_));
    }
    if (&other == this) {
      // The stream twice over: every key is shared, so counts and errors
      // double, and the heap order is unchanged.
      for (size_t p = 0; p < size_; ++p) {
        heap_[p].count *= 2;
        errors_[heap_[p].slot] *= 2;
      }
      total_ *= 2;
      return;
    }
    if (other.size_ == 0) return;
    const uint64_t ourMin = minCount();
    const uint64_t theirMin = other.minCount();
    std::vector<Entry> merged;
    merged.reserve(size_ + other.size_);
    for (const Entry& e : entries()) {
      const int64_t theirSlot = other.find(e.key);
      Entry combined = e;
      if (theirSlot >= 0) {
        const auto s = static_cast<uint32_t>(theirSlot);
        combined.count += other.heap_[other.heapPos_[s]].count;
        combined.error += other.errors_[s];
      } else {
        combined.count += theirMin;
        combined.error += theirMin;
      }
      merged.push_back(combined);
    }
    for (const Entry& e : other.entries()) {
      if (find(e.key) >= 0) continue;
      merged.push_back({e.key, e.count + ourMin, e.error + ourMin});
    }
    if (merged.size() > capacity_) {
      std::nth_element(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(capacity_),
                       merged.end(),
                       [](const Entry& a, const Entry& b) { return a.count > b.count; });
      merged.resize(capacity_);
    }
    const uint64_t total = total_ + other.total_;
    rebuild(merged);
    total_ = total;
  }

  // Empties the sketch for the next window: O(size()), no allocation.
  void reset() noexcept {
    for (size_t s = 0; s < size_; ++s) {
      index_[indexPos_[s]] = IndexEntry{};
      heap_[s] = kVacant;
    }
    size_ = 0;
    total_ = 0;
  }

  // Sum of all weights added (and merged) since the last reset.
  uint64_t total() const noexcept { return total_; }
  // Counters in use: distinct keys seen, up to capacity().
  size_t size() const noexcept { return size_; }
  size_t capacity() const noexcept { return capacity_; }
  // The smallest count when full, else 0: an upper bound on the weight of any
  // key not tracked, and on any tracked count's overestimate.
  uint64_t minCount() const noexcept { return size_ == capacity_ ? heap_[0].count : 0; }

 private:
  struct HeapEntry {
    uint64_t count;
    uint32_t slot;
  };
  // A 4-ary heap: half the depth of a binary one, and a node's children
  // share one cache line. Positions from size_ on hold kVacant, which no
  // count reaches, so a sift compares all four children without bounds checks.
  static constexpr size_t kArity = 4;
  static constexpr HeapEntry kVacant{std::numeric_limits<uint64_t>::max(), 0};
  // hash: 32 bits of the mixed key hash (its low bits give the home
  // position, the rest filter most key comparisons). slotPlus1 == 0: empty.
  struct IndexEntry {
    uint32_t hash = 0;
    uint32_t slotPlus1 = 0;
  };

  static size_t checkedCapacity(size_t capacity) {
    if (capacity == 0 || capacity > (size_t{1} << 30)) {
      throw std::invalid_argument("SpaceSaving capacity must be between 1 and 2^30, got " +
                                  std::to_string(capacity));
    }
    return capacity;
  }

  // Fibonacci hashing over the caller's hash: spreads identity hashes
  // (std::hash<uint16_t>) and consecutive keys across the index.
  uint32_t mixedHash(const Key& key) const noexcept {
    const uint64_t h = static_cast<uint64_t>(hash_(key)) * 0x9e3779b97f4a7c15ULL;
    return static_cast<uint32_t>(h >> 32);
  }

  // Slot of `key`, or -1.
  int64_t find(const Key& key) const noexcept {
    const uint32_t h = mixedHash(key);
    for (size_t i = h & indexMask_; index_[i].slotPlus1 != 0; i = (i + 1) & indexMask_) {
      const IndexEntry e = index_[i];
      if (e.hash == h && keys_[e.slotPlus1 - 1] == key) return e.slotPlus1 - 1;
    }
    return -1;
  }

  void placeInIndex(size_t i, uint32_t h, uint32_t slot) noexcept {
    index_[i] = {h, slot + 1};
    indexPos_[slot] = static_cast<uint32_t>(i);
  }

  // Backward-shift deletion: pull each later entry of the probe run into the
  // hole unless the hole lies before its home position (cyclically).
  void eraseFromIndex(size_t hole) noexcept {
    size_t j = hole;
    for (;;) {
      j = (j + 1) & indexMask_;
      const IndexEntry e = index_[j];
      if (e.slotPlus1 == 0) break;
      const size_t home = e.hash & indexMask_;
      if (((j - home) & indexMask_) >= ((j - hole) & indexMask_)) {
        placeInIndex(hole, e.hash, e.slotPlus1 - 1);
        hole = j;
      }
    }
    index_[hole] = IndexEntry{};
  }

  void placeInHeap(size_t pos, const HeapEntry& e) noexcept {
    heap_[pos] = e;
    heapPos_[e.slot] = static_cast<uint32_t>(pos);
  }

  // Both sifts move a hole rather than swapping, writing the moving entry once.
  void siftUp(size_t pos) noexcept {
    const HeapEntry moving = heap_[pos];
    while (pos > 0) {
      const size_t parent = (pos - 1) / kArity;
      if (heap_[parent].count <= moving.count) break;
      placeInHeap(pos, heap_[parent]);
      pos = parent;
    }
    placeInHeap(pos, moving);
  }

  void siftDown(size_t pos) noexcept {
    const HeapEntry moving = heap_[pos];
    for (;;) {
      const size_t first = kArity * pos + 1;
      if (first >= size_) break;
      // Branch-free pick of the smallest child: which child it is does not
      // predict, and a miss costs more than the four compares.
      const size_t a = first + (heap_[first + 1].count < heap_[first].count);
      const size_t b = first + 2 + (heap_[first + 3].count < heap_[first + 2].count);
      const size_t smallest = a + (b - a) * (heap_[b].count < heap_[a].count);
      if (moving.count <= heap_[smallest].count) break;
      placeInHeap(pos, heap_[smallest]);
      pos = smallest;
    }
    placeInHeap(pos, moving);
  }

  std::vector<Entry> entries() const {
    std::vector<Entry> out;
    out.reserve(size_);
    for (size_t p = 0; p < size_; ++p) {
      const uint32_t s = heap_[p].slot;
      out.push_back({keys_[s], heap_[p].count, errors_[s]});
    }
    return out;
  }

  // Replaces the contents with `entries` (distinct keys, at most capacity).
  void rebuild(const std::vector<Entry>& entries) noexcept {
    reset();
    for (const Entry& e : entries) {
      const uint32_t slot = static_cast<uint32_t>(size_);
      const uint32_t h = mixedHash(e.key);
      size_t i = h & indexMask_;
      while (index_[i].slotPlus1 != 0) i = (i + 1) & indexMask_;
      keys_[slot] = e.key;
      errors_[slot] = e.error;
      placeInIndex(i, h, slot);
      placeInHeap(size_, {e.count, slot});
      ++size_;
    }
    if (size_ > 1) {
      for (size_t p = (size_ - 2) / kArity + 1; p-- > 0;) siftDown(p);
    }
  }

  size_t capacity_;
  Hash hash_;
  size_t indexMask_;
  size_t size_ = 0;
  uint64_t total_ = 0;
  // Per slot: key, error, position in index_, position in heap_.
  std::vector<Key> keys_;
  std::vector<uint64_t> errors_;
  std::vector<uint32_t> indexPos_;
  std::vector<uint32_t> heapPos_;
  // heap_[0..size_): 4-ary min-heap on count; kVacant after.
  std::vector<HeapEntry> heap_;
  std::vector<IndexEntry> index_;
};

}  // namespace garda::sensor
