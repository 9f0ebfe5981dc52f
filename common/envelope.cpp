#include "common/envelope.h"

#include <capnp/serialize-packed.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <kj/vector.h>

#include <array>
#include <cstring>

#include "common/clock.h"
#include "common/config.h"
#include "common/packed_reader.h"

namespace garda::common {
namespace {

constexpr int64_t kNsPerMs = 1000000;
// Nothing Garda sends has more elements in one list than this.
constexpr uint32_t kMaxListElements = 1 << 20;
// No single window on one sensor plausibly sees more packets than this
// (100 Gbit/s of 64-byte frames for 60 s is about 9e9).
constexpr uint64_t kMaxPacketsPerWindow = 100'000'000'000ULL;

bool addressOk(capnp::Data::Reader d) { return d.size() == 4 || d.size() == 16; }

std::string prefixProblem(wire::Prefix::Reader p) {
  auto a = p.getAddress();
  if (!addressOk(a)) return "prefix address of " + std::to_string(a.size()) + " bytes";
  unsigned max = a.size() == 4 ? 32 : 128;
  if (p.getLength() > max) return "prefix length " + std::to_string(p.getLength());
  return {};
}

std::string checkSummary(wire::Summary::Reader s) {
  if (!isValidSensorId(s.getSensorId())) return "summary sensor id is not [a-z0-9-]{1,32}";
  if (s.getSeq() == 0) return "summary seq 0 (seqs start at 1)";
  uint32_t ms = s.getWindowMs();
  if (ms < 100 || ms > 60000) return "window of " + std::to_string(ms) + " ms";
  int64_t start = s.getWindowStartNs();
  if (start < 0 || start % (int64_t{ms} * kNsPerMs) != 0)
    return "window start " + std::to_string(start) + " is not a multiple of the window";
  auto t = s.getTotals();
  if (t.getPackets() > kMaxPacketsPerWindow) return "impossible packet count";
  if (t.getTcp() > t.getPackets() || t.getUdp() > t.getPackets() ||
      t.getIcmp() > t.getPackets() || t.getOther() > t.getPackets() ||
      t.getTcp() + t.getUdp() + t.getIcmp() + t.getOther() > t.getPackets())
    return "protocol counts exceed the packet total";
  if (t.getBytes() < t.getPackets()) return "fewer bytes than packets";
  auto victims = s.getVictims();
  if (victims.size() > kMaxListElements) return "too many victims";
  for (auto v : victims) {
    if (!addressOk(v.getAddress())) return "victim address of bad size";
    if (v.getPackets() > t.getPackets()) return "victim has more packets than the window";
    uint64_t sum = 0;
    for (auto vc : v.getVectors()) {
      if (vc.getPackets() > v.getPackets()) return "vector count exceeds victim packets";
      sum += vc.getPackets();
    }
    if (sum > v.getPackets()) return "vector counts exceed victim packets";
    for (auto src : v.getTopSources())
      if (!addressOk(src.getAddress())) return "top source address of bad size";
  }
  for (auto o : s.getOutbound())
    if (!addressOk(o.getAddress())) return "outbound source address of bad size";
  // One counter per active rule: enforce.max_rules is at most 1000000.
  if (s.getOrderCounters().size() > 1000000) return "too many order counters";
  for (auto c : s.getOrderCounters()) {
    if (c.getOrderId().size() == 0 || c.getOrderId().size() > 64) return "order counter id length";
    if (c.getBytes() < c.getPackets()) return "order counter has fewer bytes than packets";
  }
  return {};
}

std::string checkEvidenceRequest(wire::EvidenceRequest::Reader r) {
  if (r.getIncidentId().size() > 64) return "evidence request incident id length";
  if (auto p = prefixProblem(r.getVictim()); !p.empty()) return "evidence request victim: " + p;
  if (r.getMaxPackets() < 1 || r.getMaxPackets() > kMaxEvidencePackets)
    return "evidence request for " + std::to_string(r.getMaxPackets()) + " packets";
  if (r.getSnapLen() < kMinEvidenceSnapLen || r.getSnapLen() > kMaxEvidenceSnapLen)
    return "evidence request snap length " + std::to_string(r.getSnapLen());
  if (r.getDeadlineNs() <= 0) return "evidence request without deadline";
  return {};
}

std::string checkEvidence(wire::Evidence::Reader e) {
  if (!isValidSensorId(e.getSensorId())) return "evidence sensor id is not [a-z0-9-]{1,32}";
  if (e.getIncidentId().size() > 64) return "evidence incident id length";
  if (e.getPackets().size() > kMaxEvidencePackets) return "too many evidence packets";
  for (auto p : e.getPackets()) {
    if (p.getData().size() > kMaxEvidenceSnapLen) return "evidence packet over the snap length";
    if (p.getData().size() > p.getOrigLen()) return "evidence packet longer than on the wire";
  }
  return {};
}

std::string checkOrder(wire::Order::Reader o) {
  if (o.getOrderId().size() == 0 || o.getOrderId().size() > 64) return "order id length";
  if (auto p = prefixProblem(o.getSource()); !p.empty() && o.getSource().getAddress().size() != 0)
    return "order source: " + p;
  if (auto p = prefixProblem(o.getDestination());
      !p.empty() && o.getDestination().getAddress().size() != 0)
    return "order destination: " + p;
  if (!o.getRemove() && o.getExpiresAtNs() <= 0) return "order without expiry";
  return {};
}

}  // namespace

const char* envelopeRejectName(EnvelopeReject r) noexcept {
  switch (r) {
    case EnvelopeReject::kNone: return "none";
    case EnvelopeReject::kEmpty: return "empty";
    case EnvelopeReject::kTooLarge: return "too_large";
    case EnvelopeReject::kNotWords: return "not_words";
    case EnvelopeReject::kMalformed: return "malformed";
    case EnvelopeReject::kBadVersion: return "bad_version";
    case EnvelopeReject::kUnknownBody: return "unknown_body";
    case EnvelopeReject::kInsane: return "insane";
    case EnvelopeReject::kCount: break;
  }
  return "unknown";
}

std::string checkEnvelopeSanity(wire::Envelope::Reader e) {
  auto body = e.getBody();
  switch (body.which()) {
    case wire::Envelope::Body::HELLO: {
      auto h = body.getHello();
      if (!isValidSensorId(h.getSensorId())) return "hello sensor id is not [a-z0-9-]{1,32}";
      uint32_t ms = h.getWindowMs();
      if (ms < 100 || ms > 60000) return "hello window of " + std::to_string(ms) + " ms";
      if (h.getProtected().size() > kMaxListElements) return "too many protected prefixes";
      for (auto p : h.getProtected())
        if (auto why = prefixProblem(p); !why.empty()) return "protected " + why;
      return {};
    }
    case wire::Envelope::Body::SUMMARY: return checkSummary(body.getSummary());
    case wire::Envelope::Body::ALERT: {
      auto a = body.getAlert();
      if (!isValidSensorId(a.getSensorId())) return "alert sensor id is not [a-z0-9-]{1,32}";
      if (!addressOk(a.getVictim())) return "alert victim address of bad size";
      return {};
    }
    case wire::Envelope::Body::ORDER: return checkOrder(body.getOrder());
    case wire::Envelope::Body::ORDER_SYNC:
      for (auto o : body.getOrderSync().getOrders())
        if (auto why = checkOrder(o); !why.empty()) return why;
      return {};
    case wire::Envelope::Body::HEARTBEAT: {
      auto h = body.getHeartbeat();
      if (h.getSensorId().size() != 0 && !isValidSensorId(h.getSensorId()))
        return "heartbeat sensor id is not [a-z0-9-]{1,32}";
      return {};
    }
    case wire::Envelope::Body::QUERY: {
      auto q = body.getQuery();
      if (q.getCommand().which() == wire::Query::Command::BLOCK_ADD)
        if (auto why = prefixProblem(q.getCommand().getBlockAdd().getPrefix()); !why.empty())
          return "block " + why;
      return {};
    }
    case wire::Envelope::Body::EVIDENCE_REQUEST:
      return checkEvidenceRequest(body.getEvidenceRequest());
    case wire::Envelope::Body::EVIDENCE: return checkEvidence(body.getEvidence());
    case wire::Envelope::Body::ACK: {
      auto more = body.getAck().getMore();
      if (more.size() >= kMaxAcksPerMessage)
        return std::to_string(more.size() + 1) + " acks in one message";
      for (auto a : more)
        if (a.getMore().size() != 0) return "acks nested in a batched ack";
      return {};
    }
    case wire::Envelope::Body::SUMMARY_BATCH: {
      // Each summary is decoded, checked and answered on its own by the
      // receiver; here only the batch's own shape.
      auto summaries = body.getSummaryBatch().getSummaries();
      if (summaries.size() == 0) return "empty summary batch";
      if (summaries.size() > kMaxSummariesPerBatch)
        return std::to_string(summaries.size()) + " summaries in one batch";
      return {};
    }
    case wire::Envelope::Body::ORDER_REPORT:
    case wire::Envelope::Body::REPLY: return {};
  }
  return "unknown body";
}

EnvelopeDecoder::EnvelopeDecoder(DecodeLimits limits) : limits_(limits) {}

bool EnvelopeDecoder::reserve(size_t words) noexcept {
  if (scratch_.size() >= words) return true;
  try {
    scratch_ = kj::heapArray<capnp::word>(words);
    return true;
  } catch (...) {
    return false;
  }
}

EnvelopeReject EnvelopeDecoder::unpack(std::span<const uint8_t> bytes, size_t& words) noexcept {
  // Unpacked into the scratch buffer as the flat message it stands for. The
  // segment table is read first and bounds the rest: a few bytes of zero runs
  // cannot unpack into more than maxBytes of flat message. As with Cap'n
  // Proto's own reader, a run may not reach across the table's end.
  PackedReader packed(bytes);
  uint32_t first[2];
  if (!packed.read(first, 1)) {
    detail_ = "packed segment table cut short";
    return EnvelopeReject::kMalformed;
  }
  const uint64_t segments = uint64_t{first[0]} + 1;
  if (segments > kMaxSegments) {
    detail_ = std::to_string(segments) + " segments";
    return EnvelopeReject::kMalformed;
  }
  const size_t tableWords = (segments + 2) / 2;  // count + sizes, padded to a word
  const size_t maxWords = limits_.maxBytes / sizeof(capnp::word);
  std::array<uint32_t, kMaxSegments + 2> sizes;
  sizes[0] = first[0];
  sizes[1] = first[1];
  if (tableWords > 1 && !packed.read(sizes.data() + 2, tableWords - 1)) {
    detail_ = "packed segment table cut short";
    return EnvelopeReject::kMalformed;
  }
  uint64_t total = tableWords;
  for (size_t i = 1; i <= segments; ++i) total += sizes[i];
  if (total > maxWords) {
    detail_ = "unpacks to " + std::to_string(total * sizeof(capnp::word)) + " bytes, limit " +
              std::to_string(limits_.maxBytes);
    return EnvelopeReject::kTooLarge;
  }
  if (!reserve(total)) return EnvelopeReject::kTooLarge;
  std::memcpy(static_cast<void*>(scratch_.begin()), sizes.data(),
              tableWords * sizeof(capnp::word));
  if (!packed.read(scratch_.begin() + tableWords, total - tableWords)) {
    detail_ = "packed segments cut short or a run past their end";
    return EnvelopeReject::kMalformed;
  }
  if (packed.remaining() != 0) {
    detail_ = "bytes after the packed message";
    return EnvelopeReject::kMalformed;
  }
  words = total;
  return EnvelopeReject::kNone;
}

EnvelopeReject EnvelopeDecoder::decode(std::span<const uint8_t> bytes) noexcept {
  reader_.reset();
  detail_.clear();
  packed_ = false;
  if (bytes.empty()) return EnvelopeReject::kEmpty;
  if (bytes.size() > limits_.maxBytes) {
    detail_ = std::to_string(bytes.size()) + " bytes, limit " + std::to_string(limits_.maxBytes);
    return EnvelopeReject::kTooLarge;
  }
  size_t words = 0;
  const capnp::word* data = nullptr;
  if (isPackedWire(bytes)) {
    packed_ = true;
    if (auto r = unpack(bytes, words); r != EnvelopeReject::kNone) return r;
    data = scratch_.begin();
  } else {
    if (bytes.size() % sizeof(capnp::word) != 0) return EnvelopeReject::kNotWords;
    words = bytes.size() / sizeof(capnp::word);
    data = reinterpret_cast<const capnp::word*>(bytes.data());
    // Cap'n Proto reads words in place; copy only when the frame is misaligned.
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) != 0) {
      if (!reserve(words)) return EnvelopeReject::kTooLarge;
      std::memcpy(scratch_.begin(), bytes.data(), bytes.size());
      data = scratch_.begin();
    }
  }
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = limits_.traversalFactor * words + 64;
    options.nestingLimit = limits_.nestingLimit;
    reader_.emplace(kj::arrayPtr(data, words), options);
    root_ = reader_->getRoot<wire::Envelope>();
    // Walks every pointer once: bounds, nesting and traversal limits. This
    // walk is what bounds amplification (pointers aliasing one blob count
    // every time they are followed).
    (void)root_.totalSize();
    // The stages that read the message next (sanity, store, detection with
    // its per-key walks of a victim's lists, incidents, counters, metrics)
    // read it again and again, a bounded number of times each: they read
    // through a second reader of the same words whose budget only the
    // validated size bounds.
    options.traversalLimitInWords = limits_.readPasses * (limits_.traversalFactor * words + 64);
    reader_.emplace(kj::arrayPtr(data, words), options);
    root_ = reader_->getRoot<wire::Envelope>();
    if (root_.getVersion() != wire::PROTOCOL_VERSION) {
      detail_ = "version " + std::to_string(root_.getVersion());
      return EnvelopeReject::kBadVersion;
    }
    if (static_cast<unsigned>(root_.getBody().which()) > wire::Envelope::Body::SUMMARY_BATCH)
      return EnvelopeReject::kUnknownBody;
    detail_ = checkEnvelopeSanity(root_);
    if (!detail_.empty()) return EnvelopeReject::kInsane;
  } catch (const kj::Exception& e) {
    detail_ = e.getDescription().cStr();
    reader_.reset();
    return EnvelopeReject::kMalformed;
  } catch (const std::exception& e) {
    detail_ = e.what();
    reader_.reset();
    return EnvelopeReject::kMalformed;
  }
  return EnvelopeReject::kNone;
}

bool isPackedWire(std::span<const uint8_t> bytes) noexcept {
  return !bytes.empty() && bytes[0] >= 0x10;
}

std::string encodeMessage(capnp::MessageBuilder& builder, WireEncoding encoding) {
  if (encoding == WireEncoding::kFlat) {
    auto words = capnp::messageToFlatArray(builder);
    auto bytes = words.asBytes();
    return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  }
  kj::VectorOutputStream out(4096);
  capnp::writePackedMessage(out, builder);
  auto bytes = out.getArray();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string encodeSummaryBatch(std::span<const std::string_view> summaries) {
  KJ_REQUIRE(!summaries.empty() && summaries.size() <= kMaxSummariesPerBatch,
             "a summary batch holds 1 to kMaxSummariesPerBatch summaries");
  size_t words = 64;  // the envelope and the list's pointers
  for (auto s : summaries) words += s.size() / sizeof(capnp::word) + 2;
  capnp::MallocMessageBuilder message(static_cast<uint>(words));
  auto list = initEnvelope(message).getBody().initSummaryBatch().initSummaries(
      static_cast<unsigned>(summaries.size()));
  for (size_t i = 0; i < summaries.size(); ++i)
    list.set(static_cast<unsigned>(i),
             capnp::Data::Reader(reinterpret_cast<const kj::byte*>(summaries[i].data()),
                                 summaries[i].size()));
  // Flat: the summaries in it are packed already, so packing them again
  // would only cost a pass over their bytes at each end.
  return encodeMessage(message, WireEncoding::kFlat);
}

std::string packFlat(std::span<const uint8_t> flat) {
  KJ_REQUIRE(flat.size() % sizeof(capnp::word) == 0, "not a flat message");
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(flat.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), flat.data(), flat.size());
  capnp::FlatArrayMessageReader reader(words);
  kj::Vector<kj::ArrayPtr<const capnp::word>> segments;
  for (uint id = 0;; ++id) {
    auto s = reader.getSegment(id);
    if (s == nullptr) break;
    segments.add(s);
  }
  kj::VectorOutputStream out(flat.size() / 2 + 64);
  capnp::writePackedMessage(out, segments.asPtr());
  auto bytes = out.getArray();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string toFlat(std::span<const uint8_t> wire, size_t maxBytes) {
  EnvelopeDecoder d(DecodeLimits{.maxBytes = maxBytes});
  if (!isPackedWire(wire))
    return std::string(reinterpret_cast<const char*>(wire.data()), wire.size());
  size_t words = 0;
  if (d.unpack(wire, words) != EnvelopeReject::kNone)
    KJ_FAIL_REQUIRE("not a packed message", d.detail());
  return std::string(reinterpret_cast<const char*>(d.scratch_.begin()),
                     words * sizeof(capnp::word));
}

wire::Envelope::Builder initEnvelope(capnp::MessageBuilder& builder) {
  auto e = builder.initRoot<wire::Envelope>();
  e.setVersion(wire::PROTOCOL_VERSION);
  e.setSentAtNs(wallNowNs());
  return e;
}

std::optional<IpAddress> readAddress(capnp::Data::Reader d) {
  return IpAddress::fromBytes(std::span<const uint8_t>(d.begin(), d.size()));
}

void writePrefix(wire::Prefix::Builder out, const Prefix& p) {
  out.setAddress(AddressBytes(p.address()));
  out.setLength(static_cast<uint8_t>(p.length()));
}

std::optional<Prefix> readPrefix(wire::Prefix::Reader p) {
  auto a = readAddress(p.getAddress());
  if (!a) return std::nullopt;
  return Prefix::make(*a, p.getLength());
}

}  // namespace garda::common
