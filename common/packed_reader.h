#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace garda::common {

// Reads Cap'n Proto's packed encoding (capnproto.org/encoding.html#packing)
// back into words, for the aggregator's decode of every received frame.
// Cap'n Proto's own PackedInputStream does the same a byte and a branch at a
// time; it was a quarter of the aggregator's loop thread at 1,000 sensors, so
// this one expands a word with one table lookup and a byte shuffle (SSSE3's
// pshufb, chosen at run time; a byte loop where the CPU lacks it). Its
// contract is the library's, byte for byte (a differential test and fuzz
// target hold it to that): a zero or literal run may not reach past the end
// of one read(), and input that ends early is an error. Never throws, never
// allocates; reads only inside the span it was given, and writes only inside
// the words each read() is asked for. Not thread-safe; one per decode.
class PackedReader {
 public:
  explicit PackedReader(std::span<const uint8_t> in) noexcept
      : p_(in.data()), end_(in.data() + in.size()) {}

  // Unpacks exactly `words` words into out (8-byte words, little-endian as
  // on the wire). Returns false, with out partly written, when the input
  // ends first or a run reaches past `words`.
  bool read(void* out, size_t words) noexcept;
  // The same a byte at a time: what read() does on a CPU without SSSE3 (and
  // in clang builds). Public so that tests hold both ways to one contract.
  bool readPortable(void* out, size_t words) noexcept;
  // Input bytes not yet read.
  size_t remaining() const noexcept { return static_cast<size_t>(end_ - p_); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace garda::common
