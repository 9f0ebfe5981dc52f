#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <array>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip.h"
#include "schemas/garda.capnp.h"

namespace garda::common {

// Why an incoming message was rejected. Stable names (envelopeRejectName)
// are metric labels.
enum class EnvelopeReject : uint8_t {
  kNone = 0,
  kEmpty,        // zero bytes
  kTooLarge,     // over DecodeLimits::maxBytes
  kNotWords,     // flat, and its length is not a multiple of 8: not a Cap'n Proto message
  kMalformed,    // bad segment table or pointers, or a traversal/nesting limit hit
  kBadVersion,   // a protocol version this build does not speak
  kUnknownBody,  // a union member from a newer schema
  kInsane,       // well-formed, but values that cannot be true
  kCount
};
const char* envelopeRejectName(EnvelopeReject r) noexcept;

// Evidence (sampled attack packets) bounds, checked on both messages.
constexpr uint32_t kMaxEvidencePackets = 1000;
constexpr uint32_t kMinEvidenceSnapLen = 64;
constexpr uint32_t kMaxEvidenceSnapLen = 65535;

// Acks one message may carry (the first and up to this many less one in
// Ack.more); the aggregator sends a longer run of acks in several messages.
constexpr uint32_t kMaxAcksPerMessage = 1024;

// Summaries one summaryBatch may carry, and the bytes a sensor puts in one
// (a summary larger than that goes alone): well under the aggregator's
// max_message_bytes (4 MiB by default).
constexpr uint32_t kMaxSummariesPerBatch = 256;
constexpr size_t kSummaryBatchBytes = 512 << 10;
// A sensor whose aggregator takes batches holds a new summary while this
// many of its messages of summaries are unacked, and sends the held ones
// together once one of those is. One: the batch then grows to what came in
// one ack round trip (2 measured slower: batches half as large, and no
// shorter round trip; docs/decisions.md, "Summary batches").
constexpr size_t kSummaryMessagesInFlight = 1;

// The end of the summaries from `first` that go in one batch: as many as
// kMaxSummariesPerBatch and kSummaryBatchBytes allow, and always `first`
// (too big to share a message, it goes alone). `bytesOf(*it)` is a
// summary's encoded size.
template <class It, class BytesOf>
It summaryBatchEnd(It first, It last, BytesOf bytesOf) {
  size_t bytes = bytesOf(*first), count = 1;
  It end = std::next(first);
  for (;
       end != last && count < kMaxSummariesPerBatch && bytes + bytesOf(*end) <= kSummaryBatchBytes;
       ++end, ++count)
    bytes += bytesOf(*end);
  return end;
}

// Messages go on the wire in Cap'n Proto's packed encoding (the zero bytes of
// fixed-width fields squeezed out: a busy summary is about a third of its
// flat size). Receivers also take the flat encoding that releases before the
// packed wire sent, and answer a peer in the encoding it spoke. The two are
// told apart by the first byte: a flat message starts with its segment count
// - 1 (under 0x10: at most 16 segments, which nothing Garda sends reaches),
// a packed one with the tag byte of that word, whose non-zero segment-size
// half makes it 0x10 or more. See docs/protocol.md, "Encoding".
enum class WireEncoding : uint8_t { kPacked, kFlat };
bool isPackedWire(std::span<const uint8_t> bytes) noexcept;

// Cap'n Proto's own bound on segments in a stream message.
constexpr uint64_t kMaxSegments = 512;

struct DecodeLimits {
  // A frame's bytes and, packed, the bytes of the flat message it unpacks to.
  size_t maxBytes = 4 << 20;
  // Words the reader may traverse, as a multiple of the message's own size:
  // more than 1 because validation and the consumer each read it once, and
  // a bound because a message of pointers aliasing one big blob could
  // otherwise amplify a small message into a huge amount of work.
  uint64_t traversalFactor = 4;
  // After that validating walk, the Envelope handed out may be read this
  // many times over (x traversalFactor) by the stages that use it: detection
  // walks a victim's lists once per key, so a busy summary needs about two
  // (measured with makeLoadWindow(100)); 16 leaves room for more stages.
  uint64_t readPasses = 16;
  int nestingLimit = 16;
};

// Decodes Envelopes from received bytes with limits, and validates every
// value a peer could lie about. One decoder per thread: it reuses its aligned
// scratch buffer, so steady-state decoding does not allocate. decode() never
// throws; the Envelope it hands out stays valid until the next decode() and
// only while the caller's bytes live.
class EnvelopeDecoder {
 public:
  explicit EnvelopeDecoder(DecodeLimits limits = {});

  EnvelopeReject decode(std::span<const uint8_t> bytes) noexcept;
  // Valid after decode() returned kNone.
  wire::Envelope::Reader envelope() const { return root_; }
  // How the last message came: packed (what this release sends) or flat.
  bool packed() const noexcept { return packed_; }
  WireEncoding encoding() const noexcept {
    return packed_ ? WireEncoding::kPacked : WireEncoding::kFlat;
  }
  // A person-readable reason for the last rejection.
  const std::string& detail() const noexcept { return detail_; }

 private:
  friend std::string toFlat(std::span<const uint8_t> wire, size_t maxBytes);
  bool reserve(size_t words) noexcept;
  // Unpacks a packed frame into scratch_ as its flat message of `words`.
  EnvelopeReject unpack(std::span<const uint8_t> bytes, size_t& words) noexcept;

  DecodeLimits limits_;
  bool packed_ = false;
  kj::Array<capnp::word> scratch_;
  std::optional<capnp::FlatArrayMessageReader> reader_;
  wire::Envelope::Reader root_;
  std::string detail_;
};

// Checks the values of a decoded Envelope (window lengths, counts, prefix
// lengths, address sizes, id syntax). Returns an empty string when sane, or
// what is wrong. May throw kj::Exception on malformed data (decode() wraps it).
std::string checkEnvelopeSanity(wire::Envelope::Reader e);

// Serialises a built message into one byte string (a ZeroMQ frame), packed
// unless a peer that speaks only flat asks otherwise.
std::string encodeMessage(capnp::MessageBuilder& builder,
                          WireEncoding encoding = WireEncoding::kPacked);
// A flat message's packed form, and either encoding's flat form (at most
// maxBytes unpacked). Both throw kj::Exception on bytes that are not one.
std::string packFlat(std::span<const uint8_t> flat);
std::string toFlat(std::span<const uint8_t> wire, size_t maxBytes = 64 << 20);

// One summaryBatch message holding these summary envelopes (each as
// encodeMessage made it), in their order; at most kMaxSummariesPerBatch.
// In the flat encoding: its summaries are packed already.
std::string encodeSummaryBatch(std::span<const std::string_view> summaries);

// Sets version and send time; returns the body builder to fill in.
wire::Envelope::Builder initEnvelope(capnp::MessageBuilder& builder);

// The wire's addresses are Data of 4 or 16 bytes. These convert both ways;
// readAddress returns nullopt for any other size.
std::optional<IpAddress> readAddress(capnp::Data::Reader d);
void writePrefix(wire::Prefix::Builder out, const Prefix& p);
std::optional<Prefix> readPrefix(wire::Prefix::Reader p);

// Holds an address's wire bytes for a setter (`b.setAddress(AddressBytes(a))`).
class AddressBytes {
 public:
  explicit AddressBytes(const IpAddress& a) noexcept : size_(a.toBytes(bytes_)) {}
  operator capnp::Data::Reader() const noexcept { return capnp::Data::Reader(bytes_, size_); }

 private:
  uint8_t bytes_[16];
  size_t size_;
};

}  // namespace garda::common
