// libFuzzer target: PackedReader (the aggregator's unpacker of every packed
// frame) against Cap'n Proto's own PackedInputStream, on arbitrary bytes.
//
// Contract checked: for the same input and the same sequence of reads, both
// succeed or fail on the same read, give the same words, and leave the same
// bytes unread; PackedReader never reads or writes outside its buffers
// (ASan). The first input byte picks the sizes of the reads (as
// EnvelopeDecoder makes them: a word, the rest of a segment table, the
// segments); the rest is the packed stream. The seeds are the envelope
// corpus's packed messages.
#include <capnp/serialize-packed.h>
#include <kj/exception.h>
#include <kj/io.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "common/packed_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t shape = data[0];
  std::span<const uint8_t> packed(data + 1, size - 1);
  // A message's own reads when shape is 0: its first word, then the rest
  // of the table, then the segments (sizes from the library's unpacking of
  // that first word); otherwise three reads of sizes drawn from shape.
  std::vector<size_t> reads = {1u + (shape & 3u), (shape >> 2u) & 7u, size_t{shape} * 8u};

  kj::ArrayInputStream in(kj::arrayPtr(packed.data(), packed.size()));
  capnp::_::PackedInputStream library(in);
  garda::common::PackedReader ours(packed);
  for (size_t i = 0; i < reads.size(); ++i) {
    const size_t n = reads[i];
    std::vector<uint64_t> a(n), b(n);
    bool libraryOk = true;
    try {
      library.read(a.data(), n * 8);
    } catch (const kj::Exception&) {
      libraryOk = false;
    }
    const bool oursOk = ours.read(b.data(), n);
    if (libraryOk != oursOk) {
      std::fprintf(stderr, "read %zu of %zu words: library %s, PackedReader %s\n", i, n,
                   libraryOk ? "ok" : "failed", oursOk ? "ok" : "failed");
      std::abort();
    }
    if (!libraryOk) return 0;
    if (a != b) {
      std::fprintf(stderr, "read %zu of %zu words: different words\n", i, n);
      std::abort();
    }
    if (shape == 0 && i == 0) {
      // The message's own table and segment sizes, bounded to keep runs fast.
      uint32_t head[2];
      std::memcpy(head, a.data(), 8);
      const size_t segments = size_t{head[0]} + 1;
      if (segments > 64 || head[1] > (1u << 16)) return 0;
      reads[1] = (segments + 2) / 2 - 1;
      reads[2] = head[1];  // the first segment; the others, if any, are not read
    }
  }
  if (in.tryGetReadBuffer().size() != ours.remaining()) {
    std::fprintf(stderr, "unread bytes differ: library %zu, PackedReader %zu\n",
                 in.tryGetReadBuffer().size(), ours.remaining());
    std::abort();
  }
  return 0;
}
