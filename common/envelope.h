#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/ip.h"
#include "schemas/garda.capnp.h"

namespace garda::common {

// Why an incoming message was rejected. Stable names (envelopeRejectName)
// are metric labels.
enum class EnvelopeReject : uint8_t {
  kNone = 0,
  kEmpty,          // zero bytes
  kTooLarge,       // over DecodeLimits::maxBytes
  kNotWords,       // length not a multiple of 8: not a Cap'n Proto message
  kMalformed,      // bad segment table or pointers, or a traversal/nesting limit hit
  kBadVersion,     // a protocol version this build does not speak
  kUnknownBody,    // a union member from a newer schema
  kInsane,         // well-formed, but values that cannot be true
  kCount
};
const char* envelopeRejectName(EnvelopeReject r) noexcept;

// Evidence (sampled attack packets) bounds, checked on both messages.
constexpr uint32_t kMaxEvidencePackets = 1000;
constexpr uint32_t kMinEvidenceSnapLen = 64;
constexpr uint32_t kMaxEvidenceSnapLen = 65535;

struct DecodeLimits {
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
  // A person-readable reason for the last rejection.
  const std::string& detail() const noexcept { return detail_; }

 private:
  DecodeLimits limits_;
  kj::Array<capnp::word> scratch_;
  std::optional<capnp::FlatArrayMessageReader> reader_;
  wire::Envelope::Reader root_;
  std::string detail_;
};

// Checks the values of a decoded Envelope (window lengths, counts, prefix
// lengths, address sizes, id syntax). Returns an empty string when sane, or
// what is wrong. May throw kj::Exception on malformed data (decode() wraps it).
std::string checkEnvelopeSanity(wire::Envelope::Reader e);

// Serialises a built message into one flat byte string (a ZeroMQ frame).
std::string encodeMessage(capnp::MessageBuilder& builder);

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
