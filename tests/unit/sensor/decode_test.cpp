#include "sensor/decode.h"

#include <netinet/in.h>

#include <array>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace garda::sensor {
namespace {

using Frame = std::vector<uint8_t>;

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86DD;
constexpr uint16_t kEtherArp = 0x0806;
constexpr uint16_t kEtherLldp = 0x88CC;
constexpr uint16_t kTpidVlan = 0x8100;
constexpr uint16_t kTpidQinQ = 0x88A8;
constexpr uint16_t kTpidQinQLegacy = 0x9100;

constexpr uint8_t kFin = 0x01;
constexpr uint8_t kSyn = 0x02;
constexpr uint8_t kAck = 0x10;

constexpr std::array<uint8_t, 4> kSrc4{10, 0, 0, 1};
constexpr std::array<uint8_t, 4> kDst4{192, 0, 2, 7};
constexpr std::array<uint8_t, 16> kSrc6{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
constexpr std::array<uint8_t, 16> kDst6{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xef};

constexpr std::array<int, 10> kSupportedLinkTypes{
    kLinkTypeNull,  kLinkTypeEthernet, kLinkTypeRawDlt, kLinkTypeRawOpenBsd, kLinkTypeRaw,
    kLinkTypeLoop,  kLinkTypeLinuxSll, kLinkTypeIpv4,   kLinkTypeIpv6,       kLinkTypeLinuxSll2};

// ---- frame builder ---------------------------------------------------------

void put8(Frame& f, uint8_t v) { f.push_back(v); }

void put16(Frame& f, uint16_t v) {
  f.push_back(static_cast<uint8_t>(v >> 8));
  f.push_back(static_cast<uint8_t>(v));
}

void put32(Frame& f, uint32_t v) {
  put16(f, static_cast<uint16_t>(v >> 16));
  put16(f, static_cast<uint16_t>(v));
}

template <typename Bytes>
void putBytes(Frame& f, const Bytes& bytes) {
  f.insert(f.end(), std::begin(bytes), std::end(bytes));
}

Frame concat(std::initializer_list<Frame> parts) {
  Frame out;
  for (const Frame& p : parts) putBytes(out, p);
  return out;
}

struct VlanTag {
  uint16_t tpid;
  uint16_t tci;
};

Frame ethernet(uint16_t etherType, const Frame& payload, std::initializer_list<VlanTag> tags = {}) {
  Frame f;
  putBytes(f, std::array<uint8_t, 6>{0x02, 0, 0, 0, 0, 0x01});
  putBytes(f, std::array<uint8_t, 6>{0x02, 0, 0, 0, 0, 0x02});
  for (const VlanTag& t : tags) {
    put16(f, t.tpid);
    put16(f, t.tci);
  }
  put16(f, etherType);
  putBytes(f, payload);
  return f;
}

Frame tcp(uint16_t srcPort, uint16_t dstPort, uint8_t flags) {
  Frame f;
  put16(f, srcPort);
  put16(f, dstPort);
  put32(f, 0x01020304);  // seq
  put32(f, 0);           // ack
  put8(f, 5 << 4);       // data offset
  put8(f, flags);
  put16(f, 65535);  // window
  put16(f, 0);      // checksum
  put16(f, 0);      // urgent
  return f;
}

Frame udp(uint16_t srcPort, uint16_t dstPort, size_t payloadLength = 0) {
  Frame f;
  put16(f, srcPort);
  put16(f, dstPort);
  put16(f, static_cast<uint16_t>(8 + payloadLength));
  put16(f, 0);
  f.resize(f.size() + payloadLength, 0xAB);
  return f;
}

Frame icmp(uint8_t type, uint8_t code) {
  Frame f;
  put8(f, type);
  put8(f, code);
  put16(f, 0);       // checksum
  put32(f, 0x1234);  // id/seq or unused
  return f;
}

struct Ipv4Spec {
  uint8_t protocol = IPPROTO_TCP;
  uint16_t fragmentField = 0;  // flags + offset in 8-byte units, as on the wire
  Frame options;               // caller pads to a multiple of 4
  int versionOverride = -1;
  int ihlOverride = -1;
  int totalLengthOverride = -1;
};

Frame ipv4(const Ipv4Spec& spec, const Frame& payload) {
  const size_t headerLength = 20 + spec.options.size();
  const int ihl = spec.ihlOverride >= 0 ? spec.ihlOverride : static_cast<int>(headerLength / 4);
  const int version = spec.versionOverride >= 0 ? spec.versionOverride : 4;
  const int totalLength = spec.totalLengthOverride >= 0
                              ? spec.totalLengthOverride
                              : static_cast<int>(headerLength + payload.size());
  Frame f;
  put8(f, static_cast<uint8_t>((version << 4) | (ihl & 0x0F)));
  put8(f, 0);
  put16(f, static_cast<uint16_t>(totalLength));
  put16(f, 0x4242);  // id
  put16(f, spec.fragmentField);
  put8(f, 64);
  put8(f, spec.protocol);
  put16(f, 0);
  putBytes(f, kSrc4);
  putBytes(f, kDst4);
  putBytes(f, spec.options);
  putBytes(f, payload);
  return f;
}

Frame ipv4(uint8_t protocol, const Frame& payload) {
  Ipv4Spec spec;
  spec.protocol = protocol;
  return ipv4(spec, payload);
}

// payload holds the extension headers (if any) followed by the L4 bytes.
Frame ipv6(uint8_t nextHeader, const Frame& payload, int payloadLengthOverride = -1,
           uint8_t version = 6) {
  Frame f;
  put32(f, static_cast<uint32_t>(version) << 28);
  put16(f, static_cast<uint16_t>(payloadLengthOverride >= 0 ? payloadLengthOverride
                                                            : static_cast<int>(payload.size())));
  put8(f, nextHeader);
  put8(f, 64);
  putBytes(f, kSrc6);
  putBytes(f, kDst6);
  putBytes(f, payload);
  return f;
}

// Hop-by-hop, routing, destination options: length in 8-byte units minus one.
Frame ipv6Options(uint8_t next, size_t units = 1) {
  Frame f;
  put8(f, next);
  put8(f, static_cast<uint8_t>(units - 1));
  f.resize(units * 8, 0);  // Pad1 options
  return f;
}

Frame ipv6Fragment(uint8_t next, uint16_t offsetUnits, bool more) {
  Frame f;
  put8(f, next);
  put8(f, 0);
  put16(f, static_cast<uint16_t>((offsetUnits << 3) | (more ? 1 : 0)));
  put32(f, 0xCAFE);
  return f;
}

// AH: length in 4-byte units minus two.
Frame ipv6Ah(uint8_t next, size_t totalLength) {
  Frame f;
  put8(f, next);
  put8(f, static_cast<uint8_t>(totalLength / 4 - 2));
  f.resize(totalLength, 0x5A);
  return f;
}

Frame sll(uint16_t protocol, const Frame& payload) {
  Frame f;
  put16(f, 0);  // packet type: to us
  put16(f, 1);  // ARPHRD_ETHER
  put16(f, 6);
  putBytes(f, std::array<uint8_t, 8>{0x02, 0, 0, 0, 0, 0x01, 0, 0});
  put16(f, protocol);
  putBytes(f, payload);
  return f;
}

Frame sll2(uint16_t protocol, const Frame& payload) {
  Frame f;
  put16(f, protocol);
  put16(f, 0);     // reserved
  put32(f, 3);     // interface index
  put16(f, 1);     // ARPHRD_ETHER
  put8(f, 0);      // packet type
  put8(f, 6);      // address length
  putBytes(f, std::array<uint8_t, 8>{0x02, 0, 0, 0, 0, 0x01, 0, 0});
  putBytes(f, payload);
  return f;
}

Frame nullHeader(uint32_t family, bool networkOrder, const Frame& payload) {
  Frame f;
  if (networkOrder) {
    put32(f, family);
  } else {
    for (int i = 0; i < 4; ++i) put8(f, static_cast<uint8_t>(family >> (8 * i)));
  }
  putBytes(f, payload);
  return f;
}

Frame arp() {
  Frame f;
  put16(f, 1);
  put16(f, kEtherIpv4);
  put8(f, 6);
  put8(f, 4);
  put16(f, 1);
  f.resize(28, 0);
  return f;
}

Frame ethernetTcpSyn() { return ethernet(kEtherIpv4, ipv4(IPPROTO_TCP, tcp(40000, 80, kSyn))); }

// ---- decoding helpers ------------------------------------------------------

// Decodes from an exact-size heap copy so ASan flags any read past the
// captured bytes (a std::vector's spare capacity would hide it).
struct Decoded {
  DecodeStatus status;
  PacketView view;
  std::unique_ptr<uint8_t[]> bytes;  // keeps view.src/dst alive
};

Decoded decode(int linkType, const uint8_t* data, size_t length) {
  Decoded d{DecodeStatus::kCount, {}, std::make_unique<uint8_t[]>(length)};
  if (length > 0) std::memcpy(d.bytes.get(), data, length);
  d.status = decodePacket(linkType, d.bytes.get(), length, d.view);
  return d;
}

Decoded decode(int linkType, const Frame& f, size_t length) {
  return decode(linkType, f.data(), length);
}

Decoded decode(int linkType, const Frame& f) { return decode(linkType, f.data(), f.size()); }

bool sameBytes(const uint8_t* p, const auto& expected) {
  return p != nullptr && std::memcmp(p, expected.data(), expected.size()) == 0;
}

// Properties every decode must hold, whatever the input.
void expectSane(const Decoded& d, size_t length) {
  ASSERT_LT(static_cast<size_t>(d.status), kDecodeStatusCount);
  const PacketView& v = d.view;
  const uint8_t* begin = d.bytes.get();
  if (v.ipVersion == 0) {
    EXPECT_EQ(v.src, nullptr);
    EXPECT_EQ(v.dst, nullptr);
    EXPECT_NE(d.status, DecodeStatus::kOk);
  } else {
    ASSERT_TRUE(v.ipVersion == 4 || v.ipVersion == 6);
    const size_t addressLength = v.ipVersion == 4 ? 4 : 16;
    ASSERT_GE(length, addressLength);
    EXPECT_GE(v.src, begin);
    EXPECT_LE(v.src, begin + length - addressLength);
    EXPECT_GE(v.dst, begin);
    EXPECT_LE(v.dst, begin + length - addressLength);
  }
  if (v.hasPorts) {
    EXPECT_EQ(d.status, DecodeStatus::kOk);
  }
  if (v.isFirstFragment) {
    EXPECT_TRUE(v.isFragment);
  }
  if (v.isFragment && !v.isFirstFragment) {
    EXPECT_FALSE(v.hasPorts);
  }
  EXPECT_LE(v.vlanTags, kMaxVlanTags);
  EXPECT_LE(v.outerVlanId, 0x0FFF);
}

// ---- Ethernet, IPv4, L4 ----------------------------------------------------

TEST(Decode, Ipv4TcpSynOverEthernet) {
  const Decoded d = decode(kLinkTypeEthernet, ethernetTcpSyn());
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  const PacketView& v = d.view;
  EXPECT_EQ(v.ipVersion, 4);
  EXPECT_TRUE(sameBytes(v.src, kSrc4));
  EXPECT_TRUE(sameBytes(v.dst, kDst4));
  EXPECT_EQ(v.src, d.bytes.get() + 14 + 12);
  EXPECT_EQ(v.l4Protocol, IPPROTO_TCP);
  EXPECT_TRUE(v.hasPorts);
  EXPECT_EQ(v.srcPort, 40000);
  EXPECT_EQ(v.dstPort, 80);
  EXPECT_EQ(v.tcpFlags, kSyn);
  EXPECT_FALSE(v.isFragment);
  EXPECT_FALSE(v.isFirstFragment);
  EXPECT_EQ(v.vlanTags, 0);
  EXPECT_EQ(v.outerVlanId, 0);
}

TEST(Decode, TcpFlagsByteIsReportedRaw) {
  const Decoded d = decode(kLinkTypeEthernet,
                           ethernet(kEtherIpv4, ipv4(IPPROTO_TCP, tcp(1, 2, kFin | kAck | 0xC0))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.tcpFlags, kFin | kAck | 0xC0);
}

TEST(Decode, Ipv4UdpPorts) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_UDP, udp(53, 33333, 12))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_UDP);
  EXPECT_TRUE(d.view.hasPorts);
  EXPECT_EQ(d.view.srcPort, 53);
  EXPECT_EQ(d.view.dstPort, 33333);
  EXPECT_EQ(d.view.tcpFlags, 0);
}

TEST(Decode, Ipv4IcmpTypeAndCode) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_ICMP, icmp(3, 13))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_ICMP);
  EXPECT_EQ(d.view.icmpType, 3);
  EXPECT_EQ(d.view.icmpCode, 13);
  EXPECT_FALSE(d.view.hasPorts);
}

TEST(Decode, Ipv4IcmpShorterThanEightBytesIsTruncatedL4) {
  Frame message = icmp(8, 0);
  message.resize(4);
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_ICMP, message)));
  EXPECT_EQ(d.status, DecodeStatus::kTruncatedL4);
}

TEST(Decode, UnknownL4ProtocolIsOkWithoutPorts) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_GRE, Frame(4, 0))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_GRE);
  EXPECT_FALSE(d.view.hasPorts);
}

TEST(Decode, IpInIpReportsOuterHeaderOnly) {
  const Frame inner = ipv4(IPPROTO_TCP, tcp(1, 2, kSyn));
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_IPIP, inner)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_IPIP);
  EXPECT_FALSE(d.view.hasPorts);
  EXPECT_EQ(d.view.src, d.bytes.get() + 14 + 12);
}

TEST(Decode, SctpPortsDecoded) {
  Frame sctp;
  put16(sctp, 2905);
  put16(sctp, 3868);
  put32(sctp, 0);
  put32(sctp, 0);
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_SCTP, sctp)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.hasPorts);
  EXPECT_EQ(d.view.srcPort, 2905);
  EXPECT_EQ(d.view.dstPort, 3868);
}

// ---- VLAN ------------------------------------------------------------------

TEST(Decode, SingleVlanTag) {
  // PCP 5 and DEI set: only the 12-bit VID is reported.
  const Decoded d = decode(kLinkTypeEthernet,
                           ethernet(kEtherIpv4, ipv4(IPPROTO_UDP, udp(1000, 2000)),
                                    {{kTpidVlan, static_cast<uint16_t>(0xB000 | 100)}}));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.vlanTags, 1);
  EXPECT_EQ(d.view.outerVlanId, 100);
  EXPECT_EQ(d.view.srcPort, 1000);
  EXPECT_EQ(d.view.dstPort, 2000);
}

TEST(Decode, Ipv4TcpSynOverQinQ) {
  const Decoded d = decode(kLinkTypeEthernet,
                           ethernet(kEtherIpv4, ipv4(IPPROTO_TCP, tcp(40000, 443, kSyn)),
                                    {{kTpidQinQ, 200}, {kTpidVlan, 100}}));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.vlanTags, 2);
  EXPECT_EQ(d.view.outerVlanId, 200);
  EXPECT_EQ(d.view.tcpFlags, kSyn);
  EXPECT_EQ(d.view.dstPort, 443);
  EXPECT_TRUE(sameBytes(d.view.dst, kDst4));
}

TEST(Decode, LegacyQinQTpid9100) {
  const Decoded d = decode(kLinkTypeEthernet,
                           ethernet(kEtherIpv6, ipv6(IPPROTO_UDP, udp(5, 6)),
                                    {{kTpidQinQLegacy, 7}, {kTpidVlan, 8}}));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.vlanTags, 2);
  EXPECT_EQ(d.view.outerVlanId, 7);
  EXPECT_EQ(d.view.ipVersion, 6);
}

TEST(Decode, FourVlanTagsAccepted) {
  const Decoded d = decode(kLinkTypeEthernet,
                           ethernet(kEtherIpv4, ipv4(IPPROTO_UDP, udp(1, 2)),
                                    {{kTpidQinQ, 1}, {kTpidVlan, 2}, {kTpidVlan, 3}, {kTpidVlan, 4}}));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.vlanTags, kMaxVlanTags);
  EXPECT_EQ(d.view.outerVlanId, 1);
}

TEST(Decode, FiveVlanTagsAreTooMany) {
  const Decoded d = decode(
      kLinkTypeEthernet,
      ethernet(kEtherIpv4, ipv4(IPPROTO_UDP, udp(1, 2)),
               {{kTpidQinQ, 1}, {kTpidVlan, 2}, {kTpidVlan, 3}, {kTpidVlan, 4}, {kTpidVlan, 5}}));
  EXPECT_EQ(d.status, DecodeStatus::kTooManyVlanTags);
}

TEST(Decode, TruncatedVlanTagIsTruncatedL2) {
  const Frame f = ethernet(kEtherIpv4, {}, {{kTpidVlan, 100}});
  const Decoded d = decode(kLinkTypeEthernet, f, 16);  // tag cut after the TCI's first byte
  EXPECT_EQ(d.status, DecodeStatus::kTruncatedL2);
}

// ---- IPv4 header details ---------------------------------------------------

TEST(Decode, Ipv4OptionsSkippedViaIhl) {
  Ipv4Spec spec;
  spec.protocol = IPPROTO_TCP;
  spec.options = Frame{0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};  // router alert, NOPs, EOL
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1234, 22, kSyn | kAck))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.srcPort, 1234);
  EXPECT_EQ(d.view.dstPort, 22);
  EXPECT_EQ(d.view.tcpFlags, kSyn | kAck);
}

TEST(Decode, Ipv4IhlBelowFiveIsBadHeaderLength) {
  Ipv4Spec spec;
  spec.ihlOverride = 4;
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn))));
  EXPECT_EQ(d.status, DecodeStatus::kBadIpHeaderLength);
  EXPECT_EQ(d.view.ipVersion, 0);
}

TEST(Decode, Ipv4IhlBeyondCaptureIsBadHeaderLength) {
  Ipv4Spec spec;
  spec.ihlOverride = 15;  // 60 bytes, only 20 + 0 captured
  const Decoded d = decode(kLinkTypeIpv4, ipv4(spec, Frame(4, 0)));
  EXPECT_EQ(d.status, DecodeStatus::kBadIpHeaderLength);
}

TEST(Decode, Ipv4TotalLengthSmallerThanHeaderIsBad) {
  Ipv4Spec spec;
  spec.totalLengthOverride = 19;
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn))));
  EXPECT_EQ(d.status, DecodeStatus::kBadIpTotalLength);
}

TEST(Decode, Ipv4TotalLengthBeyondCaptureIsSnaplenNotError) {
  Ipv4Spec spec;
  spec.totalLengthOverride = 1500;
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.hasPorts);
}

TEST(Decode, EthernetPaddingAfterTotalLengthIsIgnored) {
  Frame f = ethernet(kEtherIpv4, ipv4(IPPROTO_UDP, udp(7, 9)));
  f.resize(60, 0);  // minimum Ethernet frame without FCS
  const Decoded d = decode(kLinkTypeEthernet, f);
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.srcPort, 7);
}

TEST(Decode, L4HeaderOnlyInPaddingIsTruncatedL4) {
  // Total length says 10 TCP bytes; the rest of the header sits in padding.
  Ipv4Spec spec;
  spec.totalLengthOverride = 30;
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn))));
  EXPECT_EQ(d.status, DecodeStatus::kTruncatedL4);
  EXPECT_FALSE(d.view.hasPorts);
}

TEST(Decode, TruncatedL4KeepsIpFields) {
  Frame segment = tcp(1, 2, kSyn);
  segment.resize(12);
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(IPPROTO_TCP, segment)));
  ASSERT_EQ(d.status, DecodeStatus::kTruncatedL4);
  EXPECT_EQ(d.view.ipVersion, 4);
  EXPECT_TRUE(sameBytes(d.view.src, kSrc4));
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_TCP);
  EXPECT_FALSE(d.view.hasPorts);
}

TEST(Decode, Ipv4VersionMismatchIsBadVersion) {
  Ipv4Spec spec;
  spec.versionOverride = 6;
  EXPECT_EQ(decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn)))).status,
            DecodeStatus::kBadIpVersion);
  // An IPv4 packet behind the IPv6 ethertype.
  EXPECT_EQ(decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv4(IPPROTO_TCP, Frame(40, 0)))).status,
            DecodeStatus::kBadIpVersion);
}

TEST(Decode, Ipv4DontFragmentIsNotAFragment) {
  Ipv4Spec spec;
  spec.fragmentField = 0x4000;
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_FALSE(d.view.isFragment);
  EXPECT_FALSE(d.view.isFirstFragment);
  EXPECT_TRUE(d.view.hasPorts);
}

TEST(Decode, Ipv4FirstFragmentHasPorts) {
  Ipv4Spec spec;
  spec.protocol = IPPROTO_UDP;
  spec.fragmentField = 0x2000;  // MF, offset 0
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, udp(123, 456, 64))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.isFragment);
  EXPECT_TRUE(d.view.isFirstFragment);
  EXPECT_TRUE(d.view.hasPorts);
  EXPECT_EQ(d.view.srcPort, 123);
  EXPECT_EQ(d.view.dstPort, 456);
}

TEST(Decode, Ipv4LaterFragmentHasNoPorts) {
  Ipv4Spec spec;
  spec.protocol = IPPROTO_UDP;
  spec.fragmentField = 0x2000 | 185;
  // Three bytes of payload would be a truncated UDP header, but a later
  // fragment has no L4 header to truncate.
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, Frame{1, 2, 3})));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.isFragment);
  EXPECT_FALSE(d.view.isFirstFragment);
  EXPECT_FALSE(d.view.hasPorts);
  EXPECT_EQ(d.view.srcPort, 0);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_UDP);
  EXPECT_TRUE(sameBytes(d.view.src, kSrc4));
}

TEST(Decode, Ipv4LastFragmentWithoutMoreFlagIsAFragment) {
  Ipv4Spec spec;
  spec.fragmentField = 370;
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv4, ipv4(spec, tcp(1, 2, kSyn))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.isFragment);
  EXPECT_FALSE(d.view.isFirstFragment);
  EXPECT_FALSE(d.view.hasPorts);
}

// ---- IPv6 ------------------------------------------------------------------

TEST(Decode, Ipv6TcpOverEthernet) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_TCP, tcp(5555, 443, kSyn))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.ipVersion, 6);
  EXPECT_TRUE(sameBytes(d.view.src, kSrc6));
  EXPECT_TRUE(sameBytes(d.view.dst, kDst6));
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_TCP);
  EXPECT_EQ(d.view.srcPort, 5555);
  EXPECT_EQ(d.view.dstPort, 443);
  EXPECT_EQ(d.view.tcpFlags, kSyn);
  EXPECT_FALSE(d.view.isFragment);
}

TEST(Decode, Icmpv6TypeAndCode) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_ICMPV6, icmp(128, 0))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_ICMPV6);
  EXPECT_EQ(d.view.icmpType, 128);
  EXPECT_EQ(d.view.icmpCode, 0);
}

TEST(Decode, Ipv6HopByHopThenFirstFragmentHasPorts) {
  const Frame payload = concat({ipv6Options(IPPROTO_FRAGMENT), ipv6Fragment(IPPROTO_UDP, 0, true),
                                udp(4444, 53, 100)});
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_HOPOPTS, payload)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_UDP);
  EXPECT_TRUE(d.view.isFragment);
  EXPECT_TRUE(d.view.isFirstFragment);
  EXPECT_TRUE(d.view.hasPorts);
  EXPECT_EQ(d.view.srcPort, 4444);
  EXPECT_EQ(d.view.dstPort, 53);
}

TEST(Decode, Ipv6HopByHopThenLaterFragmentHasNoPorts) {
  const Frame payload =
      concat({ipv6Options(IPPROTO_FRAGMENT), ipv6Fragment(IPPROTO_UDP, 181, false), Frame{9, 9}});
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_HOPOPTS, payload)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_UDP);
  EXPECT_TRUE(d.view.isFragment);
  EXPECT_FALSE(d.view.isFirstFragment);
  EXPECT_FALSE(d.view.hasPorts);
  EXPECT_TRUE(sameBytes(d.view.src, kSrc6));
}

TEST(Decode, Ipv6AtomicFragmentIsFirstFragment) {
  const Frame payload = concat({ipv6Fragment(IPPROTO_TCP, 0, false), tcp(1, 2, kSyn)});
  const Decoded d = decode(kLinkTypeIpv6, ipv6(IPPROTO_FRAGMENT, payload));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.isFragment);
  EXPECT_TRUE(d.view.isFirstFragment);
  EXPECT_TRUE(d.view.hasPorts);
}

TEST(Decode, Ipv6AuthenticationHeaderUsesFourByteUnits) {
  // AH length 24 = (4 + 2) * 4; read in 8-byte units it would land mid-TCP.
  const Frame payload = concat({ipv6Ah(IPPROTO_TCP, 24), tcp(7000, 8000, kAck)});
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_AH, payload)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_TCP);
  EXPECT_EQ(d.view.srcPort, 7000);
  EXPECT_EQ(d.view.dstPort, 8000);
  EXPECT_EQ(d.view.tcpFlags, kAck);
}

TEST(Decode, Ipv6RoutingDestinationAndMobilityHeadersAreWalked) {
  const Frame payload = concat({ipv6Options(IPPROTO_DSTOPTS, 3), ipv6Options(IPPROTO_MH, 2),
                                ipv6Options(IPPROTO_UDP, 1), udp(11, 22)});
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_ROUTING, payload)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_UDP);
  EXPECT_EQ(d.view.srcPort, 11);
  EXPECT_EQ(d.view.dstPort, 22);
}

TEST(Decode, Ipv6EspEndsChain) {
  const Frame payload = concat({ipv6Options(IPPROTO_ESP), Frame(16, 0x77)});
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_HOPOPTS, payload)));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_ESP);
  EXPECT_FALSE(d.view.hasPorts);
}

TEST(Decode, Ipv6NoNextHeaderEndsChain) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherIpv6, ipv6(IPPROTO_NONE, {})));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.l4Protocol, IPPROTO_NONE);
  EXPECT_FALSE(d.view.hasPorts);
}

Frame ipv6WithDestinationOptions(int count) {
  Frame payload;
  for (int i = 0; i < count; ++i) {
    const uint8_t next = i + 1 < count ? uint8_t{IPPROTO_DSTOPTS} : uint8_t{IPPROTO_TCP};
    putBytes(payload, ipv6Options(next));
  }
  putBytes(payload, tcp(1, 2, kSyn));
  return ipv6(IPPROTO_DSTOPTS, payload);
}

TEST(Decode, Ipv6EightExtensionHeadersAccepted) {
  const Decoded d = decode(kLinkTypeIpv6, ipv6WithDestinationOptions(kMaxIpv6Extensions));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.hasPorts);
}

TEST(Decode, Ipv6ExtensionChainTooLong) {
  const Decoded d = decode(kLinkTypeIpv6, ipv6WithDestinationOptions(kMaxIpv6Extensions + 1));
  EXPECT_EQ(d.status, DecodeStatus::kIpv6ExtensionChain);
  EXPECT_EQ(d.view.ipVersion, 6);  // addresses still usable for accounting
  EXPECT_TRUE(sameBytes(d.view.src, kSrc6));
}

TEST(Decode, Ipv6ExtensionHeaderBeyondCaptureIsChainError) {
  const Frame f = ipv6(IPPROTO_HOPOPTS, concat({ipv6Options(IPPROTO_TCP, 4), tcp(1, 2, kSyn)}));
  const Decoded d = decode(kLinkTypeIpv6, f, 40 + 16);  // header claims 32 bytes
  EXPECT_EQ(d.status, DecodeStatus::kIpv6ExtensionChain);
}

TEST(Decode, Ipv6ExtensionHeaderBeyondPayloadLengthIsChainError) {
  const Frame f = ipv6(IPPROTO_HOPOPTS, concat({ipv6Options(IPPROTO_TCP, 4), tcp(1, 2, kSyn)}), 16);
  EXPECT_EQ(decode(kLinkTypeIpv6, f).status, DecodeStatus::kIpv6ExtensionChain);
}

TEST(Decode, Ipv6PayloadLengthBoundsL4) {
  const Frame f = ipv6(IPPROTO_TCP, tcp(1, 2, kSyn), 10);
  EXPECT_EQ(decode(kLinkTypeIpv6, f).status, DecodeStatus::kTruncatedL4);
}

TEST(Decode, Ipv6ZeroPayloadLengthUsesCapture) {
  const Frame f = ipv6(IPPROTO_TCP, tcp(1, 2, kSyn), 0);  // jumbogram / TSO capture
  const Decoded d = decode(kLinkTypeIpv6, f);
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_TRUE(d.view.hasPorts);
}

TEST(Decode, Ipv6VersionMismatchIsBadVersion) {
  const Frame f = ipv6(IPPROTO_TCP, tcp(1, 2, kSyn), -1, 4);
  EXPECT_EQ(decode(kLinkTypeEthernet, ethernet(kEtherIpv6, f)).status, DecodeStatus::kBadIpVersion);
  EXPECT_EQ(decode(kLinkTypeIpv6, f).status, DecodeStatus::kBadIpVersion);
}

// ---- truncation sweeps -----------------------------------------------------

TEST(Decode, EveryTruncationOfTcpSynFrame) {
  const Frame f = ethernetTcpSyn();
  ASSERT_EQ(f.size(), 54u);
  for (size_t length = 0; length <= f.size(); ++length) {
    SCOPED_TRACE("length " + std::to_string(length));
    const Decoded d = decode(kLinkTypeEthernet, f, length);
    expectSane(d, length);
    DecodeStatus expected = DecodeStatus::kOk;
    if (length < 14) {
      expected = DecodeStatus::kTruncatedL2;
    } else if (length < 34) {
      expected = DecodeStatus::kTruncatedIp;
    } else if (length < 54) {
      expected = DecodeStatus::kTruncatedL4;
    }
    EXPECT_EQ(d.status, expected) << decodeStatusName(d.status);
  }
}

TEST(Decode, EveryTruncationOfVlanIpv6FragmentFrame) {
  const Frame f = ethernet(
      kEtherIpv6,
      ipv6(IPPROTO_HOPOPTS, concat({ipv6Options(IPPROTO_FRAGMENT, 2),
                                    ipv6Fragment(IPPROTO_TCP, 0, true), tcp(1, 2, kSyn)})),
      {{kTpidQinQ, 10}, {kTpidVlan, 20}});
  const std::set<DecodeStatus> allowed{DecodeStatus::kTruncatedL2, DecodeStatus::kTruncatedIp,
                                       DecodeStatus::kIpv6ExtensionChain,
                                       DecodeStatus::kTruncatedL4};
  for (size_t length = 0; length <= f.size(); ++length) {
    SCOPED_TRACE("length " + std::to_string(length));
    const Decoded d = decode(kLinkTypeEthernet, f, length);
    expectSane(d, length);
    if (length == f.size()) {
      EXPECT_EQ(d.status, DecodeStatus::kOk);
    } else {
      EXPECT_TRUE(allowed.count(d.status)) << decodeStatusName(d.status);
    }
  }
}

TEST(Decode, EveryTruncationOfIpv4WithOptions) {
  Ipv4Spec spec;
  spec.protocol = IPPROTO_UDP;
  spec.options = Frame(12, 0x01);
  const Frame f = ipv4(spec, udp(1, 2));
  for (size_t length = 0; length < f.size(); ++length) {
    const Decoded d = decode(kLinkTypeRaw, f, length);
    expectSane(d, length);
    const DecodeStatus expected = length < 20   ? DecodeStatus::kTruncatedIp
                                  : length < 32 ? DecodeStatus::kBadIpHeaderLength
                                                : DecodeStatus::kTruncatedL4;
    EXPECT_EQ(d.status, expected) << "length " << length;
  }
  EXPECT_EQ(decode(kLinkTypeRaw, f).status, DecodeStatus::kOk);
}

// ---- non-IP and other link types -------------------------------------------

TEST(Decode, ArpIsNotIp) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherArp, arp()));
  EXPECT_EQ(d.status, DecodeStatus::kNotIp);
  EXPECT_EQ(d.view.ipVersion, 0);
  EXPECT_FALSE(isDecodeError(d.status));
}

TEST(Decode, VlanTaggedArpIsNotIpButCountsTags) {
  const Decoded d = decode(kLinkTypeEthernet, ethernet(kEtherArp, arp(), {{kTpidVlan, 42}}));
  EXPECT_EQ(d.status, DecodeStatus::kNotIp);
  EXPECT_EQ(d.view.vlanTags, 1);
  EXPECT_EQ(d.view.outerVlanId, 42);
}

TEST(Decode, Ieee8023LengthFieldIsNotIp) {
  // STP BPDU: 802.3 length 38 then LLC 42 42 03.
  Frame llc{0x42, 0x42, 0x03};
  llc.resize(38, 0);
  EXPECT_EQ(decode(kLinkTypeEthernet, ethernet(38, llc)).status, DecodeStatus::kNotIp);
}

TEST(Decode, UnknownEtherTypeIsNotIp) {
  EXPECT_EQ(decode(kLinkTypeEthernet, ethernet(kEtherLldp, Frame(20, 0))).status,
            DecodeStatus::kNotIp);
}

TEST(Decode, RawLinkTypesPickVersionFromFirstNibble) {
  for (int linkType : {kLinkTypeRawDlt, kLinkTypeRawOpenBsd, kLinkTypeRaw}) {
    SCOPED_TRACE(linkType);
    const Decoded v4 = decode(linkType, ipv4(IPPROTO_UDP, udp(1, 2)));
    ASSERT_EQ(v4.status, DecodeStatus::kOk);
    EXPECT_EQ(v4.view.ipVersion, 4);
    EXPECT_EQ(v4.view.src, v4.bytes.get() + 12);
    const Decoded v6 = decode(linkType, ipv6(IPPROTO_TCP, tcp(3, 4, kSyn)));
    ASSERT_EQ(v6.status, DecodeStatus::kOk);
    EXPECT_EQ(v6.view.ipVersion, 6);
    EXPECT_EQ(v6.view.dstPort, 4);
    EXPECT_EQ(decode(linkType, Frame(40, 0x50)).status, DecodeStatus::kBadIpVersion);
    EXPECT_EQ(decode(linkType, Frame{}).status, DecodeStatus::kTruncatedIp);
  }
}

TEST(Decode, Ipv4AndIpv6LinkTypes) {
  const Decoded v4 = decode(kLinkTypeIpv4, ipv4(IPPROTO_TCP, tcp(1, 2, kSyn)));
  ASSERT_EQ(v4.status, DecodeStatus::kOk);
  EXPECT_EQ(v4.view.ipVersion, 4);
  const Decoded v6 = decode(kLinkTypeIpv6, ipv6(IPPROTO_UDP, udp(3, 4)));
  ASSERT_EQ(v6.status, DecodeStatus::kOk);
  EXPECT_EQ(v6.view.ipVersion, 6);
  EXPECT_EQ(decode(kLinkTypeIpv4, ipv6(IPPROTO_UDP, udp(3, 4))).status, DecodeStatus::kBadIpVersion);
  EXPECT_EQ(decode(kLinkTypeIpv6, ipv4(IPPROTO_UDP, Frame(40, 0))).status,
            DecodeStatus::kBadIpVersion);
}

TEST(Decode, LinuxSllProtocolAtOffset14) {
  const Decoded d = decode(kLinkTypeLinuxSll, sll(kEtherIpv4, ipv4(IPPROTO_TCP, tcp(9, 10, kSyn))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.src, d.bytes.get() + 16 + 12);
  EXPECT_EQ(d.view.srcPort, 9);
  EXPECT_EQ(decode(kLinkTypeLinuxSll, sll(kEtherArp, arp())).status, DecodeStatus::kNotIp);
  EXPECT_EQ(decode(kLinkTypeLinuxSll, sll(kEtherIpv4, {}), 15).status, DecodeStatus::kTruncatedL2);
}

TEST(Decode, LinuxSllWithReinsertedVlanTag) {
  Frame tagged;
  put16(tagged, 30);  // TCI
  put16(tagged, kEtherIpv6);
  putBytes(tagged, ipv6(IPPROTO_UDP, udp(1, 2)));
  const Decoded d = decode(kLinkTypeLinuxSll, sll(kTpidVlan, tagged));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.vlanTags, 1);
  EXPECT_EQ(d.view.outerVlanId, 30);
}

TEST(Decode, LinuxSll2ProtocolAtOffset0) {
  const Decoded d = decode(kLinkTypeLinuxSll2, sll2(kEtherIpv6, ipv6(IPPROTO_UDP, udp(500, 4500))));
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.view.src, d.bytes.get() + 20 + 8);
  EXPECT_EQ(d.view.srcPort, 500);
  EXPECT_EQ(d.view.dstPort, 4500);
  EXPECT_EQ(decode(kLinkTypeLinuxSll2, sll2(kEtherArp, arp())).status, DecodeStatus::kNotIp);
  EXPECT_EQ(decode(kLinkTypeLinuxSll2, sll2(kEtherIpv4, {}), 19).status, DecodeStatus::kTruncatedL2);
}

TEST(Decode, NullAndLoopAcceptEitherByteOrder) {
  for (int linkType : {kLinkTypeNull, kLinkTypeLoop}) {
    for (bool networkOrder : {false, true}) {
      SCOPED_TRACE(std::to_string(linkType) + (networkOrder ? " network" : " host"));
      const Decoded v4 = decode(linkType, nullHeader(2, networkOrder, ipv4(IPPROTO_UDP, udp(1, 2))));
      ASSERT_EQ(v4.status, DecodeStatus::kOk);
      EXPECT_EQ(v4.view.ipVersion, 4);
      EXPECT_EQ(v4.view.src, v4.bytes.get() + 4 + 12);
      for (uint32_t af6 : {10u, 23u, 24u, 28u, 30u}) {
        const Decoded v6 =
            decode(linkType, nullHeader(af6, networkOrder, ipv6(IPPROTO_TCP, tcp(1, 2, kSyn))));
        ASSERT_EQ(v6.status, DecodeStatus::kOk) << "AF " << af6;
        EXPECT_EQ(v6.view.ipVersion, 6);
      }
      EXPECT_EQ(decode(linkType, nullHeader(7, networkOrder, Frame(40, 0))).status,
                DecodeStatus::kNotIp);
      EXPECT_EQ(decode(linkType, nullHeader(2, networkOrder, {}), 3).status,
                DecodeStatus::kTruncatedL2);
    }
  }
}

TEST(Decode, UnsupportedLinkType) {
  const Frame f = ethernetTcpSyn();
  for (int linkType : {-1, 2, 105, 127, 147, 1000}) {
    EXPECT_FALSE(isLinkTypeSupported(linkType)) << linkType;
    EXPECT_EQ(decode(linkType, f).status, DecodeStatus::kUnsupportedLinkType) << linkType;
  }
  for (int linkType : kSupportedLinkTypes) EXPECT_TRUE(isLinkTypeSupported(linkType)) << linkType;
}

TEST(Decode, ReusedViewIsResetBetweenFrames) {
  const Frame syn = ethernetTcpSyn();
  const Frame arpFrame = ethernet(kEtherArp, arp(), {{kTpidVlan, 5}});
  PacketView view;
  ASSERT_EQ(decodePacket(kLinkTypeEthernet, syn.data(), syn.size(), view), DecodeStatus::kOk);
  ASSERT_EQ(decodePacket(kLinkTypeEthernet, arpFrame.data(), arpFrame.size(), view),
            DecodeStatus::kNotIp);
  EXPECT_EQ(view.ipVersion, 0);
  EXPECT_EQ(view.src, nullptr);
  EXPECT_FALSE(view.hasPorts);
  EXPECT_EQ(view.srcPort, 0);
  EXPECT_EQ(view.tcpFlags, 0);
  EXPECT_EQ(view.vlanTags, 1);
}

TEST(Decode, NullDataIsTreatedAsEmpty) {
  for (int linkType : kSupportedLinkTypes) {
    PacketView view;
    const DecodeStatus s = decodePacket(linkType, nullptr, 100, view);
    EXPECT_TRUE(s == DecodeStatus::kTruncatedL2 || s == DecodeStatus::kTruncatedIp)
        << linkType << " " << decodeStatusName(s);
  }
}

// ---- robustness ------------------------------------------------------------

TEST(Decode, RandomBytesNeverCrash) {
  std::mt19937 rng(0x6A7DA);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<size_t> length(0, 160);
  std::uniform_int_distribution<size_t> linkIndex(0, kSupportedLinkTypes.size());
  std::vector<size_t> statusCounts(kDecodeStatusCount, 0);
  for (int i = 0; i < 20000; ++i) {
    Frame f(length(rng));
    for (uint8_t& b : f) b = static_cast<uint8_t>(byte(rng));
    const size_t index = linkIndex(rng);
    const int linkType = index < kSupportedLinkTypes.size() ? kSupportedLinkTypes[index] : 9999;
    const Decoded d = decode(linkType, f);
    expectSane(d, f.size());
    if (static_cast<size_t>(d.status) < kDecodeStatusCount) ++statusCounts[static_cast<size_t>(d.status)];
  }
  EXPECT_GT(statusCounts[static_cast<size_t>(DecodeStatus::kUnsupportedLinkType)], 0u);
}

TEST(Decode, MutatedValidFramesNeverCrash) {
  // Random bytes rarely get past the version checks; flipping bytes of valid
  // frames drives the length, option and extension-chain paths instead.
  const std::vector<std::pair<int, Frame>> seeds{
      {kLinkTypeEthernet, ethernetTcpSyn()},
      {kLinkTypeEthernet,
       ethernet(kEtherIpv6,
                ipv6(IPPROTO_HOPOPTS, concat({ipv6Options(IPPROTO_AH), ipv6Ah(IPPROTO_FRAGMENT, 16),
                                              ipv6Fragment(IPPROTO_UDP, 0, true), udp(1, 2, 8)})),
                {{kTpidQinQ, 1}, {kTpidVlan, 2}})},
      {kLinkTypeLinuxSll, sll(kEtherIpv4, ipv4(IPPROTO_ICMP, icmp(8, 0)))},
      {kLinkTypeLinuxSll2, sll2(kEtherIpv6, ipv6(IPPROTO_ICMPV6, icmp(135, 0)))},
      {kLinkTypeNull, nullHeader(30, false, ipv6(IPPROTO_DSTOPTS, concat({ipv6Options(IPPROTO_TCP),
                                                                           tcp(1, 2, kSyn)})))},
      {kLinkTypeRaw, ipv4(IPPROTO_UDP, udp(1, 2, 4))},
  };
  std::mt19937 rng(0xDD05);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<size_t> okCount(seeds.size(), 0);
  for (int i = 0; i < 20000; ++i) {
    const size_t s = static_cast<size_t>(i) % seeds.size();
    Frame f = seeds[s].second;
    const int flips = 1 + byte(rng) % 4;
    for (int k = 0; k < flips; ++k) f[static_cast<size_t>(byte(rng)) % f.size()] = static_cast<uint8_t>(byte(rng));
    const size_t length = static_cast<size_t>(byte(rng)) % 8 == 0 ? static_cast<size_t>(byte(rng)) % (f.size() + 1)
                                                                 : f.size();
    const Decoded d = decode(seeds[s].first, f, length);
    expectSane(d, length);
    if (d.status == DecodeStatus::kOk) ++okCount[s];
  }
  for (size_t s = 0; s < seeds.size(); ++s) EXPECT_GT(okCount[s], 0u) << "seed " << s;
}

// ---- status names ----------------------------------------------------------

TEST(Decode, StatusNamesAreNonNullAndDistinct) {
  std::set<std::string> names;
  for (size_t i = 0; i < kDecodeStatusCount; ++i) {
    const char* name = decodeStatusName(static_cast<DecodeStatus>(i));
    ASSERT_NE(name, nullptr) << i;
    EXPECT_GT(std::strlen(name), 0u) << i;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), kDecodeStatusCount);
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kTruncatedL4), "truncated_l4");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kOk), "ok");
  EXPECT_STREQ(decodeStatusName(DecodeStatus::kNotIp), "not_ip");
  EXPECT_NE(decodeStatusName(DecodeStatus::kCount), nullptr);
  EXPECT_NE(decodeStatusName(static_cast<DecodeStatus>(200)), nullptr);
}

TEST(Decode, OnlyOkAndNotIpAreNotErrors) {
  for (size_t i = 0; i < kDecodeStatusCount; ++i) {
    const auto s = static_cast<DecodeStatus>(i);
    EXPECT_EQ(isDecodeError(s), s != DecodeStatus::kOk && s != DecodeStatus::kNotIp) << i;
  }
}

}  // namespace
}  // namespace garda::sensor
