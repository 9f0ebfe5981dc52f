#include "sensor/evidence.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <thread>
#include <vector>

#include "common/envelope.h"

namespace garda::sensor {
namespace {

// An Ethernet + IPv4 + TCP/UDP frame from a fixed template (RFC 791/793/768
// layouts), patched at the offsets named below.
struct Packet {
  uint8_t protocol = IPPROTO_TCP;
  std::array<uint8_t, 4> dst = {198, 18, 2, 10};
  uint16_t srcPort = 40000, dstPort = 80;
  uint8_t tcpFlags = 0x02;
  uint16_t fragment = 0;  // IPv4 flags + offset field (0x2000 = MF)
  size_t padding = 0;     // payload bytes after the L4 header

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> f(14 + 20 + 20 + padding, 0);
    f[12] = 0x08;  // IPv4
    uint8_t* ip = f.data() + 14;
    const size_t ipLen = f.size() - 14;
    ip[0] = 0x45;
    ip[2] = static_cast<uint8_t>(ipLen >> 8);
    ip[3] = static_cast<uint8_t>(ipLen);
    ip[6] = static_cast<uint8_t>(fragment >> 8);
    ip[7] = static_cast<uint8_t>(fragment);
    ip[8] = 64;
    ip[9] = protocol;
    ip[12] = 203, ip[13] = 0, ip[14] = 113, ip[15] = 9;
    for (int i = 0; i < 4; ++i) ip[16 + i] = dst[static_cast<size_t>(i)];
    uint8_t* l4 = ip + 20;
    l4[0] = static_cast<uint8_t>(srcPort >> 8), l4[1] = static_cast<uint8_t>(srcPort);
    l4[2] = static_cast<uint8_t>(dstPort >> 8), l4[3] = static_cast<uint8_t>(dstPort);
    if (protocol == IPPROTO_TCP) {
      l4[12] = 5 << 4;
      l4[13] = tcpFlags;
    } else {
      l4[4] = 0, l4[5] = 8;
    }
    return f;
  }
};

CapturedPacket captured(const std::vector<uint8_t>& f, int64_t ts = 1, uint32_t wire = 0) {
  CapturedPacket p;
  p.timestampNs = ts;
  p.capturedLength = static_cast<uint32_t>(f.size());
  p.wireLength = wire ? wire : static_cast<uint32_t>(f.size());
  p.data = f.data();
  return p;
}

// Whether `filter` takes the frame `spec` makes.
bool matches(const EvidenceFilter& filter, const Packet& spec) {
  const auto f = spec.bytes();
  PacketView v;
  EXPECT_EQ(decodePacket(1, f.data(), f.size(), v), DecodeStatus::kOk);
  return filter.matches(v);
}

EvidenceFilter filterTo(const char* victim, uint8_t protocol = 0) {
  EvidenceFilter f;
  f.victim = *common::Prefix::parse(victim);
  f.protocol = protocol;
  return f;
}

EvidenceRequest request(uint32_t maxPackets, uint32_t snapLen = 1600, int64_t deadline = 1000) {
  EvidenceRequest r;
  r.incidentId = "inc-20240101T000000Z-000001";
  r.requestId = 7;
  r.filter = filterTo("198.18.2.10/32", IPPROTO_TCP);
  r.filter.tcpFlagsMask = 0x12;
  r.filter.tcpFlags = 0x02;
  r.maxPackets = maxPackets;
  r.snapLen = snapLen;
  r.deadlineNs = deadline;
  return r;
}

TEST(EvidenceFilter, MatchesVictimProtocolPortsAndFlags) {
  EXPECT_TRUE(matches(filterTo("198.18.2.10/32"), {}));
  EXPECT_FALSE(matches(filterTo("198.18.2.11/32"), {}));
  EXPECT_TRUE(matches(filterTo("198.18.2.0/24", IPPROTO_TCP), {}));
  EXPECT_FALSE(matches(filterTo("198.18.2.0/24", IPPROTO_UDP), {}));

  auto dns = filterTo("198.18.2.10/32", IPPROTO_UDP);
  dns.sourcePort = 53;
  Packet answer{.protocol = IPPROTO_UDP, .srcPort = 53, .dstPort = 3333};
  EXPECT_TRUE(matches(dns, answer));
  answer.srcPort = 123;
  EXPECT_FALSE(matches(dns, answer));
  dns.destinationPort = 80;
  answer.srcPort = 53;
  EXPECT_FALSE(matches(dns, answer));

  auto syn = filterTo("198.18.2.10/32", IPPROTO_TCP);
  syn.tcpFlagsMask = 0x12;
  syn.tcpFlags = 0x02;
  EXPECT_TRUE(matches(syn, {.tcpFlags = 0x02}));
  EXPECT_TRUE(matches(syn, {.tcpFlags = 0xC2}));   // SYN with ECE/CWR
  EXPECT_FALSE(matches(syn, {.tcpFlags = 0x12}));  // SYN+ACK
  EXPECT_FALSE(matches(syn, {.tcpFlags = 0x10}));  // ACK
}

TEST(EvidenceFilter, NonFirstFragmentsMatchOnProtocolAlone) {
  auto dns = filterTo("198.18.2.10/32", IPPROTO_UDP);
  dns.sourcePort = 53;
  // Offset 185 * 8 bytes: no UDP header in it, its bytes are the answer's tail.
  Packet tail{.protocol = IPPROTO_UDP, .srcPort = 0x1111, .fragment = 185};
  EXPECT_TRUE(matches(dns, tail));
  tail.protocol = IPPROTO_TCP;
  EXPECT_FALSE(matches(dns, tail));
  // A first fragment has its ports: they must match.
  Packet head{.protocol = IPPROTO_UDP, .srcPort = 123, .fragment = 0x2000};
  EXPECT_FALSE(matches(dns, head));
}

TEST(EvidenceTap, NothingArmedCopiesNothing) {
  EvidenceTap tap;
  auto f = Packet{}.bytes();
  for (int i = 0; i < 10; ++i) tap.offer(captured(f));
  EXPECT_FALSE(tap.take(1'000'000, "end_of_capture"));
  EXPECT_EQ(tap.counters().framesCopied, 0u);
}

TEST(EvidenceTap, CopiesTheFirstNMatchingFramesThenDisarms) {
  EvidenceTap tap;
  EXPECT_FALSE(tap.arm(request(3)));
  const auto syn = Packet{}.bytes();
  const auto ack = Packet{.tcpFlags = 0x10}.bytes();
  const auto other = Packet{.dst = {198, 18, 2, 99}}.bytes();
  tap.offer(captured(ack, 1));
  tap.offer(captured(other, 2));
  EXPECT_FALSE(tap.take(0)) << "not full, before the deadline";
  for (int64_t i = 0; i < 10; ++i) tap.offer(captured(syn, 10 + i));
  auto r = tap.take(0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "full");
  ASSERT_EQ(r->frames.size(), 3u);
  EXPECT_EQ(r->frames[0].tsNs, 10);
  EXPECT_EQ(r->frames[2].tsNs, 12);
  EXPECT_EQ(r->frames[0].data, std::string(syn.begin(), syn.end()));
  EXPECT_EQ(tap.counters().framesCopied, 3u);
  EXPECT_FALSE(tap.holding());
}

TEST(EvidenceTap, CutsFramesToTheSnapLengthAndKeepsTheWireLength) {
  EvidenceTap tap;
  tap.arm(request(2, 64));
  const auto big = Packet{.padding = 1400}.bytes();
  tap.offer(captured(big, 5));
  auto r = tap.take(0, "end_of_capture");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "end_of_capture");
  ASSERT_EQ(r->frames.size(), 1u);
  EXPECT_EQ(r->frames[0].data.size(), 64u);
  EXPECT_EQ(r->frames[0].origLen, big.size());
}

TEST(EvidenceTap, SendsWhatItHasAtTheDeadlineAndWhenReplaced) {
  EvidenceTap tap;
  tap.arm(request(100, 1600, /*deadline=*/500));
  const auto syn = Packet{}.bytes();
  tap.offer(captured(syn));
  EXPECT_FALSE(tap.take(499));
  auto r = tap.take(500);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "deadline");
  EXPECT_EQ(r->frames.size(), 1u);

  tap.arm(request(100));
  tap.offer(captured(syn));
  auto replaced = tap.arm(request(100));
  ASSERT_TRUE(replaced);
  EXPECT_EQ(replaced->reason, "replaced");
  EXPECT_EQ(replaced->frames.size(), 1u);
}

TEST(EvidenceTap, ManyCaptureThreadsNeverExceedTheBound) {
  EvidenceTap tap;
  tap.arm(request(50));
  const auto syn = Packet{}.bytes();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) tap.offer(captured(syn));
    });
  for (auto& t : threads) t.join();
  auto r = tap.take(0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->frames.size(), 50u);
}

TEST(EncodeEvidence, SplitsOverTheSizeLimitAndEveryPartDecodes) {
  EvidenceResult r;
  r.request = request(10);
  r.reason = "full";
  for (int i = 0; i < 10; ++i) r.frames.push_back({i, 1000, std::string(1000, 'x')});
  auto parts = encodeEvidence(r, "dukcapil", 3000);
  ASSERT_EQ(parts.size(), 4u);  // 3 + 3 + 3 + 1 frames
  common::EnvelopeDecoder decoder;
  size_t frames = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(parts[i].data()), parts[i].size());
    ASSERT_EQ(decoder.decode(bytes), common::EnvelopeReject::kNone) << decoder.detail();
    auto e = decoder.envelope().getBody().getEvidence();
    EXPECT_EQ(e.getPart(), i);
    EXPECT_EQ(e.getDone(), i + 1 == parts.size());
    EXPECT_EQ(e.getRequestId(), 7u);
    EXPECT_EQ(std::string(e.getSensorId().cStr()), "dukcapil");
    frames += e.getPackets().size();
  }
  EXPECT_EQ(frames, 10u);
  // Nothing collected: still one message, done, with the reason.
  r.frames.clear();
  r.reason = "deadline";
  ASSERT_EQ(encodeEvidence(r, "dukcapil", 3000).size(), 1u);
}

}  // namespace
}  // namespace garda::sensor
