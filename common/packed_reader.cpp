#include "common/packed_reader.h"

#include <array>
#include <bit>
#include <cstring>

// The shuffle path needs GCC's generic vector shuffle (clang has no
// variable-index one) and is chosen at run time on x86-64 only.
#if defined(__x86_64__) && !defined(__clang__)
#define GARDA_PACKED_SHUFFLE 1
#endif

namespace garda::common {
namespace {

static_assert(std::endian::native == std::endian::little,
              "PackedReader lays out words as the wire does: little-endian hosts only");

#if GARDA_PACKED_SHUFFLE
// For each tag byte, where each of the word's 8 bytes comes from: byte i is
// the index among the tag's following bytes (the count of set bits below
// bit i) when bit i is set, and 8 (a zero byte) when it is not.
constexpr std::array<uint64_t, 256> kSpread = [] {
  std::array<uint64_t, 256> t{};
  for (unsigned tag = 0; tag < 256; ++tag) {
    uint64_t s = 0;
    unsigned rank = 0;
    for (unsigned i = 0; i < 8; ++i) {
      const uint64_t from = (tag >> i & 1) ? rank++ : 8;
      s |= from << (8 * i);
    }
    t[tag] = s;
  }
  return t;
}();
#endif

// One word from a tag and its bytes at src, which has at least 8 readable
// bytes (so nothing is read past the input whatever the tag).
template <bool kShuffle>
[[gnu::always_inline]] inline void spreadWord(uint8_t tag, const uint8_t* src,
                                              uint8_t* out) noexcept {
#if GARDA_PACKED_SHUFFLE
  if constexpr (kShuffle) {
    const uint64_t from = kSpread[tag];
    // The 8 bytes in the low half of a vector whose high half is zero, so an
    // index of 8 picks a zero byte: in a function built for SSSE3, one pshufb.
    using Words = uint64_t __attribute__((vector_size(16)));
    using Bytes = uint8_t __attribute__((vector_size(16)));
    uint64_t in;
    std::memcpy(&in, src, 8);
    const Words bytes = {in, 0}, index = {from, 0};
    const auto w = reinterpret_cast<Words>(
        __builtin_shuffle(reinterpret_cast<Bytes>(bytes), reinterpret_cast<Bytes>(index)));
    const uint64_t word = w[0];
    std::memcpy(out, &word, 8);
    return;
  }
#endif
  uint8_t w[8];
  for (unsigned i = 0; i < 8; ++i) w[i] = (tag >> i & 1) ? *src++ : 0;
  std::memcpy(out, w, 8);
}

// The whole of PackedReader::read, over locals (out may alias anything, so
// members would be reloaded after every store).
template <bool kShuffle>
[[gnu::always_inline]] inline bool unpack(const uint8_t*& pIn, const uint8_t* end, uint8_t* out,
                                          size_t words) noexcept {
  const uint8_t* p = pIn;
  uint8_t* const outEnd = out + words * 8;
  bool ok = true;
  while (out != outEnd) {
    if (p == end) {
      ok = false;
      break;
    }
    const uint8_t tag = *p++;
    const auto n = static_cast<unsigned>(std::popcount(tag));
    if (end - p >= 8) {
      spreadWord<kShuffle>(tag, p, out);
    } else {
      if (static_cast<size_t>(end - p) < n) {
        ok = false;
        break;
      }
      uint8_t tail[8] = {};
      std::memcpy(tail, p, n);
      spreadWord<kShuffle>(tag, tail, out);
    }
    p += n;
    out += 8;
    if (tag == 0x00 || tag == 0xff) {
      // A run of that many more zero words, or of that many literal words.
      if (p == end) {
        ok = false;
        break;
      }
      const size_t run = size_t{*p++} * 8;
      if (run > static_cast<size_t>(outEnd - out)) {
        ok = false;
        break;
      }
      if (tag == 0x00) {
        std::memset(out, 0, run);
      } else {
        if (static_cast<size_t>(end - p) < run) {
          ok = false;
          break;
        }
        std::memcpy(out, p, run);
        p += run;
      }
      out += run;
    }
  }
  pIn = p;
  return ok;
}

#if GARDA_PACKED_SHUFFLE
// SSSE3's pshufb and POPCNT, which every x86-64 CPU since about 2011 has;
// chosen once, at the first read.
__attribute__((target("ssse3,popcnt"))) bool unpackShuffled(const uint8_t*& p, const uint8_t* end,
                                                            uint8_t* out, size_t words) noexcept {
  return unpack<true>(p, end, out, words);
}
bool canShuffle() noexcept {
  static const bool yes = __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("popcnt");
  return yes;
}
#endif

}  // namespace

bool PackedReader::read(void* out, size_t words) noexcept {
#if GARDA_PACKED_SHUFFLE
  if (canShuffle()) return unpackShuffled(p_, end_, static_cast<uint8_t*>(out), words);
#endif
  return readPortable(out, words);
}

bool PackedReader::readPortable(void* out, size_t words) noexcept {
  return unpack<false>(p_, end_, static_cast<uint8_t*>(out), words);
}

}  // namespace garda::common
