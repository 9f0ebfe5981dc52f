#include "common/packed_reader.h"

#include <capnp/serialize-packed.h>
#include <kj/exception.h>
#include <kj/io.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bench/load_window.h"
#include "sensor/uplink.h"

namespace garda::common {
namespace {

using Bytes = std::vector<uint8_t>;

// What reading `reads` (word counts, in turn) out of `packed` gives: the
// words of each read that succeeded, whether all did, and the bytes left.
struct Outcome {
  std::vector<std::vector<uint64_t>> words;
  bool ok = true;
  size_t left = 0;
  bool operator==(const Outcome&) const = default;
};

Outcome byLibrary(const Bytes& packed, const std::vector<size_t>& reads) {
  Outcome o;
  kj::ArrayInputStream in(kj::arrayPtr(packed.data(), packed.size()));
  capnp::_::PackedInputStream stream(in);
  for (size_t n : reads) {
    std::vector<uint64_t> w(n);
    try {
      stream.read(w.data(), n * 8);
    } catch (const kj::Exception&) {
      o.ok = false;
      return o;
    }
    o.words.push_back(std::move(w));
  }
  o.left = in.tryGetReadBuffer().size();
  return o;
}

Outcome byReader(const Bytes& packed, const std::vector<size_t>& reads, bool portable) {
  Outcome o;
  PackedReader reader(std::span(packed.data(), packed.size()));
  for (size_t n : reads) {
    std::vector<uint64_t> w(n);
    if (!(portable ? reader.readPortable(w.data(), n) : reader.read(w.data(), n))) {
      o.ok = false;
      return o;
    }
    o.words.push_back(std::move(w));
  }
  o.left = reader.remaining();
  return o;
}

Bytes pack(const std::vector<uint64_t>& words) {
  kj::VectorOutputStream out;
  capnp::_::PackedOutputStream packed(out);
  packed.write(words.data(), words.size() * 8);
  auto a = out.getArray();
  return Bytes(a.begin(), a.end());
}

Bytes bytesOf(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// The reads EnvelopeDecoder makes of a whole packed message: its first word,
// the rest of its segment table, then all its segments.
std::vector<size_t> messageReads(const Bytes& whole) {
  const Outcome first = byLibrary(whole, {1});
  EXPECT_TRUE(first.ok);
  uint32_t head[2];
  std::memcpy(head, first.words.at(0).data(), 8);
  const size_t segments = head[0] + 1, tableWords = (segments + 2) / 2;
  const Outcome table = byLibrary(whole, {1, tableWords - 1});
  std::vector<uint32_t> sizes(tableWords * 2);
  std::memcpy(sizes.data(), first.words.at(0).data(), 8);
  if (tableWords > 1) std::memcpy(sizes.data() + 2, table.words.at(1).data(), (tableWords - 1) * 8);
  size_t total = 0;
  for (size_t i = 1; i <= segments; ++i) total += sizes[i];
  return {1, tableWords - 1, total};
}

TEST(PackedReader, UnpacksARealSummaryAsCapnProtoDoesBothWays) {
  const Bytes packed =
      bytesOf(sensor::encodeSummary(bench::makeLoadWindow(10, 1000), "load-0", 7, 1, 0, 0));
  const std::vector<size_t> reads = messageReads(packed);
  const Outcome library = byLibrary(packed, reads);
  ASSERT_TRUE(library.ok);
  EXPECT_EQ(library.left, 0u);
  EXPECT_EQ(byReader(packed, reads, false), library);
  EXPECT_EQ(byReader(packed, reads, true), library);
}

TEST(PackedReader, EveryCutOfARealSummaryFailsAsCapnProtoFails) {
  const Bytes whole =
      bytesOf(sensor::encodeSummary(bench::makeLoadWindow(2, 1000), "load-0", 7, 1, 0, 0));
  const std::vector<size_t> reads = messageReads(whole);
  ASSERT_TRUE(byLibrary(whole, reads).ok);
  for (size_t len = 0; len < whole.size(); ++len) {
    const Bytes cut(whole.begin(), whole.begin() + static_cast<ptrdiff_t>(len));
    const Outcome library = byLibrary(cut, reads);
    ASSERT_FALSE(library.ok) << len;
    ASSERT_EQ(byReader(cut, reads, false), library) << len;
    ASSERT_EQ(byReader(cut, reads, true), library) << len;
  }
}

TEST(PackedReader, EveryTagAndRunAgreesWithCapnProto) {
  // Words whose bytes are zero or not in every pattern, runs of zero and of
  // literal words, packed by Cap'n Proto and read in pieces of random size.
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint64_t> words;
    const size_t n = 1 + rng() % 600;
    while (words.size() < n) {
      switch (rng() % 4) {
        case 0:  // a run of zero words
          words.insert(words.end(), rng() % 300, 0);
          break;
        case 1:  // a run of dense words (a literal run)
          for (size_t k = rng() % 300; k > 0; --k) words.push_back(rng() | 0x0101010101010101);
          break;
        default: {  // a word with a random tag
          const uint64_t mask = rng() & 0xff;
          uint64_t w = 0;
          for (unsigned i = 0; i < 8; ++i)
            if (mask >> i & 1) w |= ((rng() % 255) + 1) << (8 * i);
          words.push_back(w);
        }
      }
    }
    const Bytes packed = pack(words);
    std::vector<size_t> reads;
    for (size_t left = words.size(); left > 0;) {
      const size_t r = round % 2 ? left : std::min(left, 1 + rng() % 64);
      reads.push_back(r);
      left -= r;
    }
    const Outcome library = byLibrary(packed, reads);
    // Runs cross a piece's end unless the pieces are the whole; then both fail.
    ASSERT_EQ(byReader(packed, reads, false), library) << round;
    ASSERT_EQ(byReader(packed, reads, true), library) << round;
    if (round % 2) {
      ASSERT_TRUE(library.ok) << round;
      ASSERT_EQ(library.words.at(0), words) << round;
    }
  }
}

TEST(PackedReader, ArbitraryBytesAgreeWithCapnProto) {
  // Not packed by anyone: tags 0x00 and 0xff (runs) are made common.
  std::mt19937_64 rng(11);
  size_t libraryOk = 0;
  for (int round = 0; round < 20000; ++round) {
    Bytes b(rng() % 80);
    for (auto& x : b) {
      const auto r = rng() % 8;
      x = r == 0 ? 0x00 : r == 1 ? 0xff : r == 2 ? 1 : static_cast<uint8_t>(rng());
    }
    const std::vector<size_t> reads = {1 + rng() % 4, rng() % 20};
    const Outcome library = byLibrary(b, reads);
    libraryOk += library.ok;
    ASSERT_EQ(byReader(b, reads, false), library) << round;
    ASSERT_EQ(byReader(b, reads, true), library) << round;
  }
  // Both outcomes were seen many times, or the comparison proved little.
  EXPECT_GT(libraryOk, 1000u);
  EXPECT_LT(libraryOk, 19000u);
}

TEST(PackedReader, ARunPastTheReadIsRefusedAndNothingIsWrittenPastIt) {
  // A zero word announcing 5 more zero words, read as 3 words: Cap'n Proto
  // refuses it ("did not end cleanly on a segment boundary"), and so do we,
  // without touching the guard word after the 3.
  const Bytes packed = {0x00, 0x05};
  uint64_t out[4] = {1, 1, 1, 0xfeedface};
  PackedReader r(std::span(packed.data(), packed.size()));
  EXPECT_FALSE(r.read(out, 3));
  EXPECT_EQ(out[3], 0xfeedfaceu);
  EXPECT_FALSE(byLibrary(packed, {3}).ok);
  EXPECT_TRUE(byLibrary(packed, {6}).ok);
  PackedReader whole(std::span(packed.data(), packed.size()));
  uint64_t six[6];
  EXPECT_TRUE(whole.read(six, 6));
  EXPECT_EQ(whole.remaining(), 0u);
}

}  // namespace
}  // namespace garda::common
