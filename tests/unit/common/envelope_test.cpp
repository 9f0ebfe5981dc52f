#include "common/envelope.h"

#include <capnp/message.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sensor/uplink.h"
#include "sensor/window.h"

namespace garda::common {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the hand-assembled messages below write Cap'n Proto's little-endian words natively");

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kWindowStart = 1'700'000'000 * kSec;  // a multiple of any whole-ms window <= 1 s

// Bytes held in 8-byte-aligned storage, as a ZeroMQ frame normally is.
class Frame {
 public:
  explicit Frame(const std::string& bytes) : size_(bytes.size()), words_((bytes.size() + 7) / 8) {
    if (!bytes.empty()) std::memcpy(words_.data(), bytes.data(), bytes.size());
  }
  std::span<const uint8_t> span() const {
    return {reinterpret_cast<const uint8_t*>(words_.data()), size_};
  }
  std::span<const uint8_t> prefix(size_t n) const { return span().first(n); }

 private:
  size_t size_;
  std::vector<uint64_t> words_;
};

// A summary that passes every sanity check; tests break one field at a time.
void fillValidSummary(wire::Summary::Builder s) {
  s.setSensorId("kominfo-jkt-1");
  s.setBootId(0x1234);
  s.setSeq(7);
  s.setWindowStartNs(kWindowStart);
  s.setWindowMs(1000);
  auto t = s.initTotals();
  t.setPackets(100);
  t.setBytes(6400);
  t.setTcp(60);
  t.setUdp(30);
  t.setIcmp(5);
  t.setOther(5);
  auto victims = s.initVictims(1);
  const uint8_t addr[4] = {198, 18, 2, 10};
  victims[0].setAddress(capnp::Data::Reader(addr, 4));
  victims[0].setPackets(50);
  victims[0].setBytes(3200);
  auto vectors = victims[0].initVectors(1);
  vectors[0].setVector(wire::Vector::TCP_SYN);
  vectors[0].setPackets(50);
  vectors[0].setBytes(3200);
}

std::string summaryMessage(const std::function<void(wire::Summary::Builder)>& tweak = {},
                           WireEncoding encoding = WireEncoding::kPacked) {
  capnp::MallocMessageBuilder m;
  auto s = initEnvelope(m).getBody().initSummary();
  fillValidSummary(s);
  if (tweak) tweak(s);
  return encodeMessage(m, encoding);
}

// The tests that patch a message's structure patch its flat form.
std::string flatSummaryMessage() {
  return summaryMessage({}, WireEncoding::kFlat);
}

std::string helloMessage(const std::function<void(wire::Hello::Builder)>& tweak = {}) {
  capnp::MallocMessageBuilder m;
  auto h = initEnvelope(m).getBody().initHello();
  h.setSensorId("kominfo-jkt-1");
  h.setBootId(0x1234);
  h.setVersion("0.1.0");
  h.setOpd("Kominfo");
  h.setWindowMs(1000);
  h.setCaptureSource("afpacket:eth0");
  auto prot = h.initProtected(2);
  writePrefix(prot[0], *Prefix::parse("198.18.2.0/24"));
  writePrefix(prot[1], *Prefix::parse("2001:db8:1::/48"));
  if (tweak) tweak(h);
  return encodeMessage(m);
}

struct Decoded {
  EnvelopeReject reject;
  std::string detail;
};

Decoded decode(const std::string& bytes, DecodeLimits limits = {}) {
  Frame f(bytes);
  EnvelopeDecoder d(limits);
  EnvelopeReject r = d.decode(f.span());
  return {r, d.detail()};
}

std::string insaneDetail(const std::string& bytes) {
  Decoded d = decode(bytes);
  EXPECT_EQ(d.reject, EnvelopeReject::kInsane) << envelopeRejectName(d.reject) << ": " << d.detail;
  return d.detail;
}

// Evidence of `count` packets of `size` bytes, `origLen` on the wire.
std::string evidenceMessage(unsigned count, size_t size, uint32_t origLen) {
  capnp::MallocMessageBuilder m;
  auto e = initEnvelope(m).getBody().initEvidence();
  e.setSensorId("dukcapil");
  e.setIncidentId("inc-20240101T000000Z-000001");
  auto packets = e.initPackets(count);
  const std::string data(size, 'x');
  for (unsigned i = 0; i < count; ++i) {
    packets[i].setOrigLen(origLen);
    packets[i].setData(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(data.data()),
                                           data.size()));
  }
  return encodeMessage(m);
}

std::string evidenceRequestMessage(uint32_t maxPackets, uint32_t snapLen, int64_t deadlineNs) {
  capnp::MallocMessageBuilder m;
  auto r = initEnvelope(m).getBody().initEvidenceRequest();
  r.setIncidentId("inc-20240101T000000Z-000001");
  writePrefix(r.initVictim(), *Prefix::parse("198.18.2.10/32"));
  r.setMaxPackets(maxPackets);
  r.setSnapLen(snapLen);
  r.setDeadlineNs(deadlineNs);
  return encodeMessage(m);
}

TEST(EnvelopeDecoder, EvidenceWithinItsBoundsPassesAndBeyondIsInsane) {
  EXPECT_EQ(decode(evidenceMessage(1000, 64, 1514)).reject, EnvelopeReject::kNone);
  EXPECT_EQ(decode(evidenceRequestMessage(1000, 65535, 1)).reject, EnvelopeReject::kNone);
  EXPECT_EQ(insaneDetail(evidenceMessage(1001, 64, 1514)), "too many evidence packets");
  EXPECT_EQ(insaneDetail(evidenceMessage(1, 65536, 70000)), "evidence packet over the snap length");
  EXPECT_EQ(insaneDetail(evidenceMessage(1, 100, 60)), "evidence packet longer than on the wire");
  EXPECT_EQ(insaneDetail(evidenceRequestMessage(0, 1600, 1)), "evidence request for 0 packets");
  EXPECT_EQ(insaneDetail(evidenceRequestMessage(1001, 1600, 1)),
            "evidence request for 1001 packets");
  EXPECT_EQ(insaneDetail(evidenceRequestMessage(10, 63, 1)), "evidence request snap length 63");
  EXPECT_EQ(insaneDetail(evidenceRequestMessage(10, 1600, 0)), "evidence request without deadline");
}

// ---- A hand-assembled message ----------------------------------------------
//
// For shapes the generated builders cannot make (several pointers aliasing one
// object, nesting deeper than the schema allows), the message is assembled word
// by word following the Cap'n Proto encoding spec:
//   struct pointer: bits 0-1 = 0, bits 2-31 = signed offset in words from the
//     end of the pointer to the struct, bits 32-47 = data words, 48-63 = pointers
//   list pointer:   bits 0-1 = 1, bits 2-31 = offset, bits 32-34 = element size
//     (2 = byte, 7 = inline composite), bits 35-63 = element count (for a
//     composite list: the word count of its elements, without the tag)
//   composite tag:  a struct-pointer-shaped word whose offset field holds the
//     element count, ahead of the elements
// The flat (framed) form starts with the segment table: uint32 segment count
// minus one, then uint32 size of each segment in words (padded to a word).
class RawMessage {
 public:
  // Not inlined: GCC 12 reports a false -Warray-bounds on vector growth inlined here.
  [[gnu::noinline]] size_t alloc(size_t words) {
    size_t at = words_.size();
    words_.resize(at + words, 0);
    return at;
  }
  void setWord(size_t at, uint64_t value) { words_[at] = value; }
  void structPointer(size_t at, size_t target, uint16_t dataWords, uint16_t pointers) {
    words_[at] = offsetBits(at, target) | uint64_t{dataWords} << 32 | uint64_t{pointers} << 48;
  }
  void listPointer(size_t at, size_t target, unsigned elementSize, uint32_t count) {
    words_[at] = offsetBits(at, target) | 1 | uint64_t{elementSize} << 32 | uint64_t{count} << 35;
  }
  void compositeTag(size_t at, uint32_t elements, uint16_t dataWords, uint16_t pointers) {
    words_[at] = uint64_t{elements} << 2 | uint64_t{dataWords} << 32 | uint64_t{pointers} << 48;
  }
  // Text (NUL-terminated bytes) in fresh words; returns its first word.
  size_t text(const std::string& s) {
    size_t at = alloc((s.size() + 1 + 7) / 8);
    std::memcpy(&words_[at], s.data(), s.size());
    return at;
  }
  std::string flat() const {
    std::vector<uint64_t> out;
    out.push_back(uint64_t{words_.size()} << 32);  // one segment: count - 1 = 0, then its size
    out.insert(out.end(), words_.begin(), words_.end());
    return std::string(reinterpret_cast<const char*>(out.data()), out.size() * 8);
  }

 private:
  static uint64_t offsetBits(size_t at, size_t target) {
    int64_t offset = static_cast<int64_t>(target) - static_cast<int64_t>(at) - 1;
    return (static_cast<uint64_t>(offset) << 2) & 0xFFFFFFFCULL;
  }
  std::vector<uint64_t> words_;
};

constexpr unsigned kByteElements = 2;
constexpr unsigned kCompositeElements = 7;

struct RawSummaryShape {
  // A chain of this many one-pointer structs hung off a Summary pointer slot
  // far past the known ones (kUnknownSummarySlot, as a newer schema might
  // add): unknown to this reader, but still walked.
  int chainDepth = 0;
  // decodeErrors entries whose `reason` pointers all alias one Text blob.
  uint32_t aliasedReasons = 0;
  uint32_t blobBytes = 0;
};

// Summary's pointer fields use slots 0..5 (orderCounters is 5); later
// fields will take the next ones.
constexpr uint16_t kUnknownSummarySlot = 15;

// Envelope{version 1, body = summary} with a Summary that passes the sanity
// checks (id "edge-1", seq 1, 1000 ms window starting at 0, zero totals).
std::string rawSummary(const RawSummaryShape& shape) {
  RawMessage m;
  const size_t root = m.alloc(1);
  const size_t envelope = m.alloc(3);  // Envelope: 2 data words, 1 pointer
  m.structPointer(root, envelope, 2, 1);
  m.setWord(envelope, wire::PROTOCOL_VERSION | uint64_t{1} << 16);  // union tag 1 = summary
  m.setWord(envelope + 1, 1);                                       // sentAtNs

  const uint16_t pointers = shape.chainDepth > 0 ? kUnknownSummarySlot + 1 : 5;
  const size_t summary = m.alloc(6 + pointers);  // Summary: 6 data words, 5 pointers
  m.structPointer(envelope + 2, summary, 6, pointers);
  m.setWord(summary + 0, 7);     // bootId
  m.setWord(summary + 1, 1);     // seq
  m.setWord(summary + 2, 0);     // windowStartNs
  m.setWord(summary + 3, 1000);  // windowMs (low half), victimsCut (high half)
  const size_t ptrs = summary + 6;

  const std::string id = "edge-1";
  m.listPointer(ptrs + 0, m.text(id), kByteElements, static_cast<uint32_t>(id.size() + 1));

  if (shape.aliasedReasons > 0) {
    const uint32_t n = shape.aliasedReasons;
    const size_t tag = m.alloc(1 + 2 * size_t{n});  // ReasonCount: 1 data word, 1 pointer
    m.compositeTag(tag, n, 1, 1);
    m.listPointer(ptrs + 3, tag, kCompositeElements, 2 * n);
    const size_t blob = m.text(std::string(shape.blobBytes - 1, 'a'));
    for (uint32_t i = 0; i < n; ++i) {
      m.setWord(tag + 1 + 2 * i, i + 1);  // count
      m.listPointer(tag + 2 + 2 * i, blob, kByteElements, shape.blobBytes);
    }
  }

  size_t slot = ptrs + kUnknownSummarySlot;
  for (int i = 0; i < shape.chainDepth; ++i) {
    const size_t node = m.alloc(1);  // 0 data words, 1 pointer
    m.structPointer(slot, node, 0, 1);
    slot = node;
  }
  return m.flat();
}

// ---- Accepting good messages -----------------------------------------------

TEST(EnvelopeDecoder, SummaryFromEncodeSummaryDecodesWithItsValues) {
  sensor::WindowStats w;
  w.startNs = kWindowStart + 3 * kSec;
  w.windowMs = 1000;
  w.totals = {.packets = 1000, .bytes = 64000, .tcp = 600, .udp = 300, .icmp = 50, .other = 50};
  w.victimsCut = 2;
  sensor::VictimCounters a;
  a.address = *IpAddress::parse("198.18.2.10");
  a.packets = 700;
  a.bytes = 44800;
  a.vectorPackets[static_cast<size_t>(sensor::Vector::kTcpSyn)] = 500;
  a.vectorBytes[static_cast<size_t>(sensor::Vector::kTcpSyn)] = 32000;
  a.vectorPackets[static_cast<size_t>(sensor::Vector::kUdpReflection)] = 200;
  a.vectorBytes[static_cast<size_t>(sensor::Vector::kUdpReflection)] = 12800;
  sensor::VictimCounters b;
  b.address = *IpAddress::parse("2001:db8:1::10");
  b.packets = 40;
  b.bytes = 2560;
  b.vectorPackets[static_cast<size_t>(sensor::Vector::kIcmp)] = 40;
  b.vectorBytes[static_cast<size_t>(sensor::Vector::kIcmp)] = 2560;
  w.victims = {a, b};
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kOk)] = 940;
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kNotIp)] = 7;  // not an error
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kBadIpVersion)] = 1;
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kTruncatedL4)] = 3;

  const std::string bytes = sensor::encodeSummary(w, "kominfo-jkt-1", 0xB007, 42, 11, 4);
  Frame f(bytes);
  EnvelopeDecoder d;
  ASSERT_EQ(d.decode(f.span()), EnvelopeReject::kNone) << d.detail();
  EXPECT_TRUE(d.detail().empty());

  auto e = d.envelope();
  EXPECT_EQ(e.getVersion(), wire::PROTOCOL_VERSION);
  EXPECT_GT(e.getSentAtNs(), 0);
  ASSERT_EQ(e.getBody().which(), wire::Envelope::Body::SUMMARY);
  auto s = e.getBody().getSummary();
  EXPECT_EQ(std::string(s.getSensorId().cStr()), "kominfo-jkt-1");
  EXPECT_EQ(s.getBootId(), 0xB007u);
  EXPECT_EQ(s.getSeq(), 42u);
  EXPECT_EQ(s.getWindowStartNs(), kWindowStart + 3 * kSec);
  EXPECT_EQ(s.getWindowMs(), 1000u);
  EXPECT_EQ(s.getKernelDrops(), 11u);
  EXPECT_EQ(s.getDroppedSummaries(), 4u);
  EXPECT_EQ(s.getVictimsCut(), 2u);
  auto t = s.getTotals();
  EXPECT_EQ(t.getPackets(), 1000u);
  EXPECT_EQ(t.getBytes(), 64000u);
  EXPECT_EQ(t.getTcp(), 600u);
  EXPECT_EQ(t.getUdp(), 300u);
  EXPECT_EQ(t.getIcmp(), 50u);
  EXPECT_EQ(t.getOther(), 50u);

  ASSERT_EQ(s.getVictims().size(), 2u);
  auto va = s.getVictims()[0];
  EXPECT_EQ(va.getAddress().size(), 4u);
  EXPECT_EQ(readAddress(va.getAddress()), a.address);
  EXPECT_EQ(va.getPackets(), 700u);
  EXPECT_EQ(va.getBytes(), 44800u);
  ASSERT_EQ(va.getVectors().size(), 2u);
  EXPECT_EQ(va.getVectors()[0].getVector(), wire::Vector::TCP_SYN);
  EXPECT_EQ(va.getVectors()[0].getPackets(), 500u);
  EXPECT_EQ(va.getVectors()[0].getBytes(), 32000u);
  EXPECT_EQ(va.getVectors()[1].getVector(), wire::Vector::UDP_REFLECTION);
  EXPECT_EQ(va.getVectors()[1].getPackets(), 200u);
  EXPECT_EQ(va.getVectors()[1].getBytes(), 12800u);
  auto vb = s.getVictims()[1];
  EXPECT_EQ(vb.getAddress().size(), 16u);
  EXPECT_EQ(readAddress(vb.getAddress()), b.address);
  ASSERT_EQ(vb.getVectors().size(), 1u);
  EXPECT_EQ(vb.getVectors()[0].getVector(), wire::Vector::ICMP);
  EXPECT_EQ(vb.getVectors()[0].getPackets(), 40u);

  ASSERT_EQ(s.getDecodeErrors().size(), 2u);  // ok and not_ip are not errors
  EXPECT_EQ(std::string(s.getDecodeErrors()[0].getReason().cStr()), "bad_ip_version");
  EXPECT_EQ(s.getDecodeErrors()[0].getCount(), 1u);
  EXPECT_EQ(std::string(s.getDecodeErrors()[1].getReason().cStr()), "truncated_l4");
  EXPECT_EQ(s.getDecodeErrors()[1].getCount(), 3u);
}

TEST(EnvelopeDecoder, ValidHelloDecodes) {
  Decoded d = decode(helloMessage());
  EXPECT_EQ(d.reject, EnvelopeReject::kNone) << d.detail;
}

TEST(EnvelopeDecoder, MisalignedBytesDecodeLikeAlignedOnes) {
  const std::string bytes = summaryMessage();
  std::vector<uint64_t> storage(bytes.size() / 8 + 2);
  uint8_t* odd = reinterpret_cast<uint8_t*>(storage.data()) + 3;
  std::memcpy(odd, bytes.data(), bytes.size());
  EnvelopeDecoder d;
  ASSERT_EQ(d.decode({odd, bytes.size()}), EnvelopeReject::kNone) << d.detail();
  EXPECT_EQ(d.envelope().getBody().getSummary().getSeq(), 7u);
  EXPECT_EQ(std::string(d.envelope().getBody().getSummary().getSensorId().cStr()), "kominfo-jkt-1");
}

TEST(EnvelopeDecoder, OneDecoderServesManyMessages) {
  EnvelopeDecoder d;
  Frame good(summaryMessage());
  Frame insane(summaryMessage([](auto s) { s.setSeq(0); }));
  Frame junk(std::string(24, '\xff'));
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(d.decode(insane.span()), EnvelopeReject::kInsane);
    EXPECT_FALSE(d.detail().empty());
    EXPECT_EQ(d.decode(good.span()), EnvelopeReject::kNone);
    EXPECT_TRUE(d.detail().empty()) << d.detail();
    EXPECT_EQ(d.envelope().getBody().getSummary().getSeq(), 7u);
    EXPECT_EQ(d.decode(junk.span()), EnvelopeReject::kMalformed);
  }
}

// ---- Framing ---------------------------------------------------------------

TEST(EnvelopeDecoder, RejectsEmpty) {
  EnvelopeDecoder d;
  EXPECT_EQ(d.decode({}), EnvelopeReject::kEmpty);
  const uint8_t one = 0;
  EXPECT_EQ(d.decode({&one, 0}), EnvelopeReject::kEmpty);
  EXPECT_STREQ(envelopeRejectName(EnvelopeReject::kEmpty), "empty");
}

TEST(EnvelopeDecoder, RejectsMessagesOverTheByteLimit) {
  const std::string bytes = flatSummaryMessage();
  Decoded d = decode(bytes, {.maxBytes = 64});
  EXPECT_EQ(d.reject, EnvelopeReject::kTooLarge);
  EXPECT_EQ(d.detail, std::to_string(bytes.size()) + " bytes, limit 64");
  // The limit itself is allowed.
  EXPECT_EQ(decode(bytes, {.maxBytes = bytes.size()}).reject, EnvelopeReject::kNone);
  EXPECT_EQ(decode(bytes, {.maxBytes = bytes.size() - 1}).reject, EnvelopeReject::kTooLarge);
  // The size check comes before anything else: an odd-length frame over the limit is too large.
  EXPECT_EQ(decode(std::string(101, 'x'), {.maxBytes = 100}).reject, EnvelopeReject::kTooLarge);
}

TEST(EnvelopeDecoder, APackedMessageIsHeldToTheLimitByWhatItUnpacksTo) {
  const std::string packed = summaryMessage();
  const std::string flat = flatSummaryMessage();
  ASSERT_LT(packed.size(), flat.size());
  EXPECT_EQ(decode(packed, {.maxBytes = flat.size()}).reject, EnvelopeReject::kNone);
  Decoded d = decode(packed, {.maxBytes = flat.size() - 8});
  EXPECT_EQ(d.reject, EnvelopeReject::kTooLarge);
  EXPECT_EQ(d.detail, "unpacks to " + std::to_string(flat.size()) + " bytes, limit " +
                          std::to_string(flat.size() - 8));
}

TEST(EnvelopeDecoder, ZeroRunsClaimingMoreThanTheLimitAreRefusedBeforeUnpacking) {
  // A segment table claiming a 32 GiB segment (2^32 - 1 words and the table's), then zero runs (tag
  // 0x00 and a count of 255 more zero words: 2 KiB of flat message in 2 bytes).
  std::string bomb;
  bomb += static_cast<char>(0xf0);  // tag: bytes 4-7 of the table word are non-zero
  bomb += std::string(4, '\xff');   // segment 0 of 2^32 - 1 words
  for (int i = 0; i < 1000; ++i) bomb += std::string("\0\xff", 2);
  Decoded d = decode(bomb);
  EXPECT_EQ(d.reject, EnvelopeReject::kTooLarge);
  EXPECT_NE(d.detail.find("unpacks to 34359738368 bytes"), std::string::npos) << d.detail;
  // Within the limit but shorter than its table says: malformed, not a crash.
  std::string shortSegment;
  shortSegment += static_cast<char>(0x10);
  shortSegment += static_cast<char>(100);    // 100 words promised
  shortSegment += std::string("\0\x05", 2);  // 6 zero words given
  EXPECT_EQ(decode(shortSegment).reject, EnvelopeReject::kMalformed);
}

TEST(EnvelopeDecoder, PackedAndFlatFormsDecodeAlikeAndTheDecoderSaysWhichCame) {
  EnvelopeDecoder d;
  capnp::MallocMessageBuilder m;
  fillValidSummary(initEnvelope(m).getBody().initSummary());
  const std::string packed = encodeMessage(m), flat = encodeMessage(m, WireEncoding::kFlat);
  EXPECT_TRUE(
      isPackedWire(std::span(reinterpret_cast<const uint8_t*>(packed.data()), packed.size())));
  EXPECT_FALSE(isPackedWire(std::span(reinterpret_cast<const uint8_t*>(flat.data()), flat.size())));
  Frame fp(packed), ff(flat);
  ASSERT_EQ(d.decode(fp.span()), EnvelopeReject::kNone) << d.detail();
  EXPECT_TRUE(d.packed());
  EXPECT_EQ(d.encoding(), WireEncoding::kPacked);
  const auto packedSum = d.envelope().getBody().getSummary();
  const std::string fromPacked = std::to_string(packedSum.getSeq()) + "/" +
                                 std::to_string(packedSum.getVictims()[0].getPackets()) + "/" +
                                 std::string(packedSum.getSensorId());
  ASSERT_EQ(d.decode(ff.span()), EnvelopeReject::kNone) << d.detail();
  EXPECT_FALSE(d.packed());
  const auto flatSum = d.envelope().getBody().getSummary();
  EXPECT_EQ(fromPacked, std::to_string(flatSum.getSeq()) + "/" +
                            std::to_string(flatSum.getVictims()[0].getPackets()) + "/" +
                            std::string(flatSum.getSensorId()));
  // Converting either way gives back the other form, byte for byte.
  EXPECT_EQ(toFlat(fp.span()), flat);
  EXPECT_EQ(packFlat(ff.span()), packed);
  EXPECT_EQ(toFlat(ff.span()), flat);
}

TEST(EnvelopeDecoder, BytesAfterAPackedMessageAreMalformed) {
  const std::string packed = summaryMessage();
  for (const std::string& tail : {std::string(1, '\0'), std::string("\x01\x07", 2)}) {
    Decoded d = decode(packed + tail);
    EXPECT_EQ(d.reject, EnvelopeReject::kMalformed) << tail.size();
  }
}

TEST(EnvelopeDecoder, RandomBytesNeverCrashAndOddLengthsAreNotWords) {
  std::mt19937_64 rng(7450);
  EnvelopeDecoder d;
  int counts[static_cast<size_t>(EnvelopeReject::kCount)] = {};
  for (int i = 0; i < 20000; ++i) {
    const size_t size = rng() % 600;
    std::string bytes(size, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    // Half the word-sized inputs get a plausible one-segment table, so that
    // the pointer checks (not only the segment table) see random data.
    if (size >= 16 && size % 8 == 0 && i % 2 == 0) {
      const uint32_t table[2] = {0, static_cast<uint32_t>(size / 8 - 1)};
      std::memcpy(bytes.data(), table, sizeof table);
    }
    Frame f(bytes);
    EnvelopeReject r = d.decode(f.span());
    ASSERT_LT(r, EnvelopeReject::kCount);
    counts[static_cast<size_t>(r)]++;
    if (size == 0) {
      EXPECT_EQ(r, EnvelopeReject::kEmpty);
    } else if (static_cast<uint8_t>(bytes[0]) >= 0x10) {
      EXPECT_NE(r, EnvelopeReject::kNotWords) << "packed: any length";
    } else if (size % 8 != 0) {
      EXPECT_EQ(r, EnvelopeReject::kNotWords) << size << " bytes";
    } else {
      EXPECT_NE(r, EnvelopeReject::kNotWords);
    }
    if (r == EnvelopeReject::kNone) {
      EXPECT_EQ(checkEnvelopeSanity(d.envelope()), "");
    }
  }
  EXPECT_GT(counts[static_cast<size_t>(EnvelopeReject::kMalformed)], 100);
}

TEST(EnvelopeDecoder, MutatedSummariesNeverCrashAndAcceptedOnesAreSane) {
  const std::string packed = summaryMessage(), flat = flatSummaryMessage();
  std::mt19937_64 rng(7451);
  EnvelopeDecoder d;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = i % 2 ? packed : flat;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    Frame f(bytes);
    EnvelopeReject r = d.decode(f.span());
    ASSERT_LT(r, EnvelopeReject::kCount);
    if (r == EnvelopeReject::kNone) {
      EXPECT_EQ(checkEnvelopeSanity(d.envelope()), "");
      EXPECT_EQ(d.envelope().getVersion(), wire::PROTOCOL_VERSION);
    }
  }
}

TEST(EnvelopeDecoder, EveryTruncationOfASummaryIsRejected) {
  sensor::WindowStats w;
  w.startNs = kWindowStart;
  w.windowMs = 1000;
  w.totals = {.packets = 10, .bytes = 640, .tcp = 10};
  sensor::VictimCounters v;
  v.address = *IpAddress::parse("198.18.2.10");
  v.packets = 10;
  v.bytes = 640;
  v.vectorPackets[0] = 10;
  v.vectorBytes[0] = 640;
  w.victims = {v};
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kTruncatedL4)] = 1;
  const std::string packed = sensor::encodeSummary(w, "kominfo-jkt-1", 1, 1, 0, 0);
  Frame fp(packed);
  const std::string bytes = toFlat(fp.span());
  Frame f(bytes);

  EnvelopeDecoder d;
  for (size_t n = 0; n < bytes.size(); ++n) {
    EnvelopeReject r = d.decode(f.prefix(n));
    if (n == 0) {
      EXPECT_EQ(r, EnvelopeReject::kEmpty);
    } else if (n % 8 != 0) {
      EXPECT_EQ(r, EnvelopeReject::kNotWords) << n << " of " << bytes.size() << " bytes";
    } else {
      EXPECT_EQ(r, EnvelopeReject::kMalformed) << n << " of " << bytes.size() << " bytes";
    }
  }
  EXPECT_EQ(d.decode(f.span()), EnvelopeReject::kNone) << d.detail();
  // Packed, every cut ends inside the segments the table promised.
  for (size_t n = 1; n < packed.size(); ++n)
    EXPECT_EQ(d.decode(fp.prefix(n)), EnvelopeReject::kMalformed) << n << " of " << packed.size();
  EXPECT_EQ(d.decode(fp.span()), EnvelopeReject::kNone) << d.detail();
}

TEST(EnvelopeDecoder, SegmentTableClaimingMoreThanTheFrameIsMalformed) {
  const std::string good = flatSummaryMessage();
  ASSERT_EQ(decode(good).reject, EnvelopeReject::kNone);

  std::string longSegment = good;
  const uint32_t words = static_cast<uint32_t>(good.size() / 8);  // one more than the segment
  std::memcpy(longSegment.data() + 4, &words, 4);
  EXPECT_EQ(decode(longSegment).reject, EnvelopeReject::kMalformed);

  // 600 segments: the table alone would be longer than the frame.
  std::string manySegments = good;
  const uint32_t countMinusOne = 599;
  std::memcpy(manySegments.data(), &countMinusOne, 4);
  EXPECT_EQ(decode(manySegments).reject, EnvelopeReject::kMalformed);
}

// ---- Limits against hostile shapes -----------------------------------------

TEST(EnvelopeDecoder, RejectsNestingDeeperThanTheLimit) {
  // The schema has no recursive type, so depth comes from a chain of structs
  // under an extra pointer slot of Summary (see RawSummaryShape). The reader
  // must still walk it, and must stop at DecodeLimits::nestingLimit.
  const std::string shallow = rawSummary({.chainDepth = 4});
  EXPECT_EQ(decode(shallow).reject, EnvelopeReject::kNone) << decode(shallow).detail;

  const std::string deep = rawSummary({.chainDepth = 40});
  Decoded d = decode(deep);
  EXPECT_EQ(d.reject, EnvelopeReject::kMalformed);
  EXPECT_NE(d.detail.find("nest"), std::string::npos) << d.detail;
  // The same bytes are fine under a higher limit: the depth, not the shape, is refused.
  EXPECT_EQ(decode(deep, {.nestingLimit = 64}).reject, EnvelopeReject::kNone);
}

TEST(EnvelopeDecoder, NestingLimitIsHonouredAtItsEdge) {
  // Find the deepest chain the default limit accepts; one more must fail, and
  // that edge must move with the limit.
  auto deepestAccepted = [](int limit) {
    int depth = 0;
    while (depth < 200 &&
           decode(rawSummary({.chainDepth = depth + 1}), {.nestingLimit = limit}).reject ==
               EnvelopeReject::kNone)
      ++depth;
    return depth;
  };
  const int atDefault = deepestAccepted(DecodeLimits{}.nestingLimit);
  EXPECT_GT(atDefault, 0);
  EXPECT_LT(atDefault, DecodeLimits{}.nestingLimit);
  EXPECT_EQ(deepestAccepted(DecodeLimits{}.nestingLimit + 10), atDefault + 10);
}

TEST(EnvelopeDecoder, RejectsPointersAliasingOneBlob) {
  // 64 decodeErrors entries whose reason Text pointers all point at the same
  // 4 KiB blob: about 5 KiB on the wire, but 64 x 4 KiB to walk. The limit is
  // traversalFactor (4) x the message's own words, so this must be refused.
  const std::string amplified = rawSummary({.aliasedReasons = 64, .blobBytes = 4096});
  EXPECT_LT(amplified.size(), 6000u);
  Decoded d = decode(amplified);
  EXPECT_EQ(d.reject, EnvelopeReject::kMalformed);
  EXPECT_NE(d.detail.find("traversal limit"), std::string::npos) << d.detail;

  // With room for the amplification the same bytes decode, and the aliasing is real.
  Frame f(amplified);
  EnvelopeDecoder roomy({.traversalFactor = 100});
  ASSERT_EQ(roomy.decode(f.span()), EnvelopeReject::kNone) << roomy.detail();
  auto errors = roomy.envelope().getBody().getSummary().getDecodeErrors();
  ASSERT_EQ(errors.size(), 64u);
  EXPECT_EQ(errors[0].getReason().size(), 4095u);
  EXPECT_EQ(static_cast<const void*>(errors[63].getReason().begin()),
            static_cast<const void*>(errors[0].getReason().begin()));

  // A few aliases stay inside the default budget.
  EXPECT_EQ(decode(rawSummary({.aliasedReasons = 2, .blobBytes = 4096})).reject,
            EnvelopeReject::kNone);
}

// ---- Version and body ------------------------------------------------------

TEST(EnvelopeDecoder, RejectsOtherProtocolVersions) {
  for (uint16_t version : {0, 2, 0xffff}) {
    capnp::MallocMessageBuilder m;
    auto e = initEnvelope(m);
    fillValidSummary(e.getBody().initSummary());
    e.setVersion(version);
    Decoded d = decode(encodeMessage(m));
    EXPECT_EQ(d.reject, EnvelopeReject::kBadVersion) << version;
    EXPECT_EQ(d.detail, "version " + std::to_string(version));
  }
}

// Byte offset of the Envelope.body union tag in a flat single-segment message.
// `capnp compile -ocapnp schemas/garda.capnp` shows
//   struct Envelope  # 16 bytes, 1 ptrs
//     union {  # tag bits [16, 32)
// so the tag is the little-endian UInt16 at byte 2 of Envelope's data
// section. The flat message is: 8 bytes of segment table (one segment), the
// root pointer at bytes 8-15, whose bits 2-31 give the struct's offset in
// words after the pointer; the data section starts there.
size_t bodyTagOffset(const std::string& flat) {
  uint32_t segmentsMinusOne;
  std::memcpy(&segmentsMinusOne, flat.data(), 4);
  EXPECT_EQ(segmentsMinusOne, 0u);
  uint64_t rootPointer;
  std::memcpy(&rootPointer, flat.data() + 8, 8);
  EXPECT_EQ(rootPointer & 3, 0u) << "root is a struct pointer";
  const int32_t offsetWords = static_cast<int32_t>(static_cast<uint32_t>(rootPointer)) >> 2;
  return 16 + 8 * static_cast<size_t>(offsetWords) + 2;
}

TEST(EnvelopeDecoder, UnknownBodyMemberIsReportedAsUnknown) {
  static_assert(static_cast<unsigned>(wire::Envelope::Body::SUMMARY_BATCH) == 12);
  const std::string good = flatSummaryMessage();
  const size_t at = bodyTagOffset(good);
  uint16_t tag;
  std::memcpy(&tag, good.data() + at, 2);
  ASSERT_EQ(tag, static_cast<uint16_t>(wire::Envelope::Body::SUMMARY)) << "offset " << at;

  for (uint16_t unknown : {13, 14, 0x7fff, 0xffff}) {
    std::string patched = good;
    std::memcpy(patched.data() + at, &unknown, 2);
    EXPECT_EQ(decode(patched).reject, EnvelopeReject::kUnknownBody) << unknown;
  }
  // Patching back to a known member that fits the same pointer is fine again.
  std::string same = good;
  const uint16_t summary = 1;
  std::memcpy(same.data() + at, &summary, 2);
  EXPECT_EQ(decode(same).reject, EnvelopeReject::kNone);
}

// ---- Values that cannot be true ---------------------------------------------

TEST(EnvelopeSanity, WindowOfZeroMsIsInsane) {
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.setWindowMs(0); })), "window of 0 ms");
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.setWindowMs(99); })), "window of 99 ms");
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.setWindowMs(60001); })),
            "window of 60001 ms");
}

TEST(EnvelopeSanity, WindowStartOffTheWindowGridIsInsane) {
  EXPECT_EQ(
      insaneDetail(summaryMessage([](auto s) { s.setWindowStartNs(kWindowStart + 1); })),
      "window start " + std::to_string(kWindowStart + 1) + " is not a multiple of the window");
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) {
              s.setWindowMs(300);
              s.setWindowStartNs(1'000'000'000);  // 1 s is not a multiple of 300 ms
            })),
            "window start 1000000000 is not a multiple of the window");
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.setWindowStartNs(-kSec); })),
            "window start -1000000000 is not a multiple of the window");
  EXPECT_EQ(decode(summaryMessage([](auto s) {
              s.setWindowMs(300);
              s.setWindowStartNs(3'000'000'000);
            })).reject,
            EnvelopeReject::kNone);
}

TEST(EnvelopeSanity, ProtocolCountsAbovePacketsAreInsane) {
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.getTotals().setTcp(101); })),
            "protocol counts exceed the packet total");
  // Each under the total, the sum over it.
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) {
              s.getTotals().setTcp(60);
              s.getTotals().setUdp(40);
              s.getTotals().setIcmp(1);
              s.getTotals().setOther(0);
            })),
            "protocol counts exceed the packet total");
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.getTotals().setBytes(99); })),
            "fewer bytes than packets");
}

TEST(EnvelopeSanity, VictimCountsAboveTheirTotalsAreInsane) {
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.getVictims()[0].setPackets(101); })),
            "victim has more packets than the window");
  EXPECT_EQ(insaneDetail(
                summaryMessage([](auto s) { s.getVictims()[0].getVectors()[0].setPackets(51); })),
            "vector count exceeds victim packets");
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) {
              auto v = s.getVictims()[0].initVectors(2);
              v[0].setPackets(30);
              v[1].setVector(wire::Vector::UDP);
              v[1].setPackets(30);
            })),
            "vector counts exceed victim packets");
}

TEST(EnvelopeSanity, AddressesOfBadSizeAreInsane) {
  const uint8_t five[5] = {198, 18, 2, 10, 0};
  EXPECT_EQ(insaneDetail(summaryMessage(
                [&](auto s) { s.getVictims()[0].setAddress(capnp::Data::Reader(five, 5)); })),
            "victim address of bad size");
  EXPECT_EQ(insaneDetail(summaryMessage(
                [](auto s) { s.getVictims()[0].setAddress(capnp::Data::Reader()); })),
            "victim address of bad size");
  EXPECT_EQ(insaneDetail(summaryMessage([&](auto s) {
              auto src = s.getVictims()[0].initTopSources(1);
              src[0].setAddress(capnp::Data::Reader(five, 5));
            })),
            "top source address of bad size");
  EXPECT_EQ(insaneDetail(summaryMessage([&](auto s) {
              auto out = s.initOutbound(1);
              out[0].setAddress(capnp::Data::Reader(five, 3));
            })),
            "outbound source address of bad size");

  capnp::MallocMessageBuilder m;
  auto a = initEnvelope(m).getBody().initAlert();
  a.setSensorId("kominfo-jkt-1");
  a.setVictim(capnp::Data::Reader(five, 5));
  EXPECT_EQ(insaneDetail(encodeMessage(m)), "alert victim address of bad size");
}

TEST(EnvelopeSanity, SeqZeroIsInsane) {
  EXPECT_EQ(insaneDetail(summaryMessage([](auto s) { s.setSeq(0); })),
            "summary seq 0 (seqs start at 1)");
}

TEST(EnvelopeSanity, BadSensorIdIsInsane) {
  for (const char* id :
       {"Dukcapil!", "", "UPPER", "has space", "a-very-long-sensor-id-over-32-chars"})
    EXPECT_EQ(insaneDetail(summaryMessage([&](auto s) { s.setSensorId(id); })),
              "summary sensor id is not [a-z0-9-]{1,32}")
        << '"' << id << '"';
  EXPECT_EQ(insaneDetail(helloMessage([](auto h) { h.setSensorId("Dukcapil!"); })),
            "hello sensor id is not [a-z0-9-]{1,32}");
}

TEST(EnvelopeSanity, HelloPrefixLengthBeyondItsFamilyIsInsane) {
  EXPECT_EQ(insaneDetail(helloMessage([](auto h) { h.getProtected()[0].setLength(200); })),
            "protected prefix length 200");
  EXPECT_EQ(insaneDetail(helloMessage([](auto h) { h.getProtected()[0].setLength(33); })),
            "protected prefix length 33");
  EXPECT_EQ(insaneDetail(helloMessage([](auto h) { h.getProtected()[1].setLength(129); })),
            "protected prefix length 129");
  EXPECT_EQ(decode(helloMessage([](auto h) {
              h.getProtected()[0].setLength(32);
              h.getProtected()[1].setLength(128);
            })).reject,
            EnvelopeReject::kNone);
  const uint8_t five[5] = {198, 18, 2, 0, 0};
  EXPECT_EQ(insaneDetail(helloMessage(
                [&](auto h) { h.getProtected()[0].setAddress(capnp::Data::Reader(five, 5)); })),
            "protected prefix address of 5 bytes");
  EXPECT_EQ(insaneDetail(helloMessage([](auto h) { h.setWindowMs(0); })), "hello window of 0 ms");
}

TEST(EnvelopeSanity, CheckedDirectlyOnABuiltMessage) {
  capnp::MallocMessageBuilder m;
  auto s = initEnvelope(m).getBody().initSummary();
  fillValidSummary(s);
  EXPECT_EQ(checkEnvelopeSanity(m.getRoot<wire::Envelope>().asReader()), "");
  s.setWindowMs(5);
  EXPECT_EQ(checkEnvelopeSanity(m.getRoot<wire::Envelope>().asReader()), "window of 5 ms");
}

std::string ackMessage(unsigned more, unsigned nestedInFirst) {
  capnp::MallocMessageBuilder m;
  auto ack = initEnvelope(m).getBody().initAck();
  ack.setBootId(7);
  ack.setSeq(1);
  auto rest = ack.initMore(more);
  for (unsigned i = 0; i < more; ++i) rest[i].setSeq(i + 2);
  if (more > 0 && nestedInFirst > 0) rest[0].initMore(nestedInFirst);
  return encodeMessage(m);
}

TEST(EnvelopeSanity, BatchedAcksAreBoundedAndNotNested) {
  EXPECT_EQ(decode(ackMessage(0, 0)).reject, EnvelopeReject::kNone);
  EXPECT_EQ(decode(ackMessage(kMaxAcksPerMessage - 1, 0)).reject, EnvelopeReject::kNone)
      << "the most one message may carry";
  EXPECT_EQ(insaneDetail(ackMessage(kMaxAcksPerMessage, 0)),
            std::to_string(kMaxAcksPerMessage + 1) + " acks in one message");
  EXPECT_EQ(insaneDetail(ackMessage(3, 1)), "acks nested in a batched ack");
}

TEST(EnvelopeSanity, SummaryBatchesAreBoundedAndHoldEachSummaryAsSent) {
  std::vector<std::string> summaries;
  for (uint64_t seq = 1; seq <= kMaxSummariesPerBatch + 1; ++seq) {
    sensor::WindowStats w;
    w.startNs = 1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000;
    w.windowMs = 1000;
    summaries.push_back(sensor::encodeSummary(w, "alpha", 7, seq, 0, 0));
  }
  const std::vector<std::string_view> all(summaries.begin(), summaries.end());
  const auto most = std::span(all).first(kMaxSummariesPerBatch);
  const std::string batch = encodeSummaryBatch(most);
  EnvelopeDecoder d;
  ASSERT_EQ(d.decode(std::span(reinterpret_cast<const uint8_t*>(batch.data()), batch.size())),
            EnvelopeReject::kNone)
      << d.detail();
  auto list = d.envelope().getBody().getSummaryBatch().getSummaries();
  ASSERT_EQ(list.size(), kMaxSummariesPerBatch) << "the most one message may carry";
  for (unsigned i = 0; i < list.size(); ++i)
    ASSERT_EQ(std::string_view(reinterpret_cast<const char*>(list[i].begin()), list[i].size()),
              all[i])
        << "each summary is carried in the very bytes it would be sent alone in";

  EXPECT_THROW(encodeSummaryBatch(all), kj::Exception) << "the encoder keeps to the bound";
  EXPECT_THROW(encodeSummaryBatch({}), kj::Exception);
  // Built by hand past the bound, and empty: the decoder refuses both.
  const auto handMade = [&](unsigned n) {
    capnp::MallocMessageBuilder m;
    auto l = initEnvelope(m).getBody().initSummaryBatch().initSummaries(n);
    for (unsigned i = 0; i < n; ++i)
      l.set(i,
            capnp::Data::Reader(reinterpret_cast<const kj::byte*>(all[i].data()), all[i].size()));
    return encodeMessage(m);
  };
  EXPECT_EQ(insaneDetail(handMade(kMaxSummariesPerBatch + 1)),
            std::to_string(kMaxSummariesPerBatch + 1) + " summaries in one batch");
  EXPECT_EQ(insaneDetail(handMade(0)), "empty summary batch");
}

}  // namespace
}  // namespace garda::common
