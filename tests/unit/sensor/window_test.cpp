#include "sensor/window.h"

#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace garda::sensor {
namespace {

using common::IpAddress;
using common::Prefix;
using common::PrefixSet;
using Frame = std::vector<uint8_t>;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000 * kMs;

constexpr uint8_t kFin = 0x01;
constexpr uint8_t kSyn = 0x02;
constexpr uint8_t kRst = 0x04;
constexpr uint8_t kPsh = 0x08;
constexpr uint8_t kAck = 0x10;
constexpr uint8_t kEce = 0x40;
constexpr uint8_t kCwr = 0x80;

// ---- frame builder ---------------------------------------------------------
// Frames are assembled byte by byte from the RFC layouts, so the expected
// vector of each one is known from how it was built, not from the decoder.

void put8(Frame& f, uint8_t v) {
  f.push_back(v);
}
void put16(Frame& f, uint16_t v) {
  f.push_back(static_cast<uint8_t>(v >> 8));
  f.push_back(static_cast<uint8_t>(v));
}
void put32(Frame& f, uint32_t v) {
  put16(f, static_cast<uint16_t>(v >> 16));
  put16(f, static_cast<uint16_t>(v));
}
void putBytes(Frame& f, const Frame& b) {
  f.insert(f.end(), b.begin(), b.end());
}

Frame addressBytes(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a) << text;
  uint8_t b[16];
  size_t n = a->toBytes(b);
  return Frame(b, b + n);
}

Frame ethernet(uint16_t etherType, const Frame& payload) {
  Frame f = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02};
  put16(f, etherType);
  putBytes(f, payload);
  return f;
}

Frame tcp(uint16_t srcPort, uint16_t dstPort, uint8_t flags) {
  Frame f;
  put16(f, srcPort);
  put16(f, dstPort);
  put32(f, 1000);   // seq
  put32(f, 0);      // ack
  put8(f, 5 << 4);  // data offset: 20 bytes
  put8(f, flags);
  put16(f, 65535);
  put16(f, 0);
  put16(f, 0);
  return f;
}

Frame udp(uint16_t srcPort, uint16_t dstPort, size_t payloadLength = 16) {
  Frame f;
  put16(f, srcPort);
  put16(f, dstPort);
  put16(f, static_cast<uint16_t>(8 + payloadLength));
  put16(f, 0);
  f.resize(f.size() + payloadLength, 0xAB);
  return f;
}

Frame icmpEcho(uint8_t type) {
  Frame f;
  put8(f, type);
  put8(f, 0);
  put16(f, 0);
  put32(f, 0x00010001);
  return f;
}

// fragmentField: flags and offset as on the wire (0x2000 = MF, low 13 bits =
// offset in 8-byte units).
Frame ipv4(const char* src, const char* dst, uint8_t protocol, const Frame& payload,
           uint16_t fragmentField = 0) {
  Frame f;
  put8(f, 0x45);
  put8(f, 0);
  put16(f, static_cast<uint16_t>(20 + payload.size()));
  put16(f, 0x1234);
  put16(f, fragmentField);
  put8(f, 64);
  put8(f, protocol);
  put16(f, 0);
  putBytes(f, addressBytes(src));
  putBytes(f, addressBytes(dst));
  putBytes(f, payload);
  return f;
}

Frame ipv6(const char* src, const char* dst, uint8_t nextHeader, const Frame& payload) {
  Frame f;
  put32(f, 6u << 28);
  put16(f, static_cast<uint16_t>(payload.size()));
  put8(f, nextHeader);
  put8(f, 64);
  putBytes(f, addressBytes(src));
  putBytes(f, addressBytes(dst));
  putBytes(f, payload);
  return f;
}

Frame ipv6FragmentHeader(uint8_t next, uint16_t offsetUnits, bool more) {
  Frame f;
  put8(f, next);
  put8(f, 0);
  put16(f, static_cast<uint16_t>((offsetUnits << 3) | (more ? 1 : 0)));
  put32(f, 0xCAFE);
  return f;
}

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86DD;
constexpr uint16_t kEtherArp = 0x0806;

constexpr const char* kAttacker = "203.0.113.9";
constexpr const char* kVictimA = "198.18.2.10";
constexpr const char* kVictimB = "198.18.2.20";
constexpr const char* kVictim6 = "2001:db8:1::10";
constexpr const char* kOutsider = "192.0.2.1";

Frame tcpTo(const char* dst, uint8_t flags, uint16_t srcPort = 40000) {
  return ethernet(kEtherIpv4, ipv4(kAttacker, dst, IPPROTO_TCP, tcp(srcPort, 80, flags)));
}

Frame udpTo(const char* dst, uint16_t srcPort, uint16_t dstPort = 33333) {
  return ethernet(kEtherIpv4, ipv4(kAttacker, dst, IPPROTO_UDP, udp(srcPort, dstPort)));
}

PrefixSet protectedSet() {
  return PrefixSet({*Prefix::parse("198.18.2.0/24"), *Prefix::parse("2001:db8:1::/48")});
}

CapturedPacket packet(const Frame& f, int64_t timestampNs = 0, uint32_t wireLength = 0,
                      int linkType = 1) {
  CapturedPacket p;
  p.timestampNs = timestampNs;
  p.capturedLength = static_cast<uint32_t>(f.size());
  p.wireLength = wireLength != 0 ? wireLength : static_cast<uint32_t>(f.size());
  p.linkType = linkType;
  p.data = f.data();
  return p;
}

void countTimes(WindowCounter& c, const Frame& f, int times, uint32_t wireLength = 0) {
  for (int i = 0; i < times; ++i) c.count(packet(f, 0, wireLength));
}

const VictimCounters* findVictim(const WindowStats& w, const char* address) {
  const IpAddress a = *IpAddress::parse(address);
  for (const auto& v : w.victims)
    if (v.address == a) return &v;
  return nullptr;
}

uint64_t vectorPackets(const VictimCounters& v, Vector vec) {
  return v.vectorPackets[static_cast<size_t>(vec)];
}

uint64_t statusCount(const WindowStats& w, DecodeStatus s) {
  return w.decodeStatus[static_cast<size_t>(s)];
}

// ---- isReflectionPort ------------------------------------------------------

TEST(ReflectionPort, KnownAmplifiersAreReflectionPorts) {
  for (uint16_t port : {19,   53,   69,   111,  123,  137,  161,   389,   500,   520,  1434,
                        1900, 3283, 3702, 4500, 5353, 5683, 10001, 11211, 37810, 47808})
    EXPECT_TRUE(isReflectionPort(port)) << port;
}

TEST(ReflectionPort, OrdinaryPortsAreNot) {
  for (uint16_t port : {0, 1, 20, 22, 52, 54, 80, 122, 124, 443, 4444, 8080, 33333, 65535})
    EXPECT_FALSE(isReflectionPort(port)) << port;
}

// ---- WindowCounter ---------------------------------------------------------

TEST(WindowCounter, TcpFlagsSplitSynSynAckAndOther) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, tcpTo(kVictimA, kSyn), 5);
  countTimes(c, tcpTo(kVictimA, kSyn | kEce | kCwr), 1);  // ECN-setup SYN is still a SYN
  countTimes(c, tcpTo(kVictimA, kSyn | kAck), 3);
  countTimes(c, tcpTo(kVictimA, kAck), 2);
  countTimes(c, tcpTo(kVictimA, kRst), 1);
  countTimes(c, tcpTo(kVictimA, kPsh | kAck), 1);
  countTimes(c, tcpTo(kVictimA, kFin | kAck), 1);
  countTimes(c, tcpTo(kVictimA, 0), 1);  // null scan

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  const VictimCounters& v = w.victims[0];
  EXPECT_EQ(v.address, *IpAddress::parse(kVictimA));
  EXPECT_EQ(v.packets, 15u);
  EXPECT_EQ(vectorPackets(v, Vector::kTcpSyn), 6u);
  EXPECT_EQ(vectorPackets(v, Vector::kTcpSynAck), 3u);
  EXPECT_EQ(vectorPackets(v, Vector::kTcpOther), 6u);
  EXPECT_EQ(vectorPackets(v, Vector::kUdp), 0u);
  EXPECT_EQ(w.totals.packets, 15u);
  EXPECT_EQ(w.totals.tcp, 15u);
  EXPECT_EQ(w.totals.udp + w.totals.icmp + w.totals.other, 0u);
}

TEST(WindowCounter, UdpFromAReflectionSourcePortIsReflection) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, udpTo(kVictimA, 53), 4);        // DNS answers: reflection
  countTimes(c, udpTo(kVictimA, 123), 2);       // NTP monlist answers
  countTimes(c, udpTo(kVictimA, 4444), 3);      // plain UDP flood
  countTimes(c, udpTo(kVictimA, 4444, 53), 1);  // to port 53: the source port decides

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(vectorPackets(w.victims[0], Vector::kUdpReflection), 6u);
  EXPECT_EQ(vectorPackets(w.victims[0], Vector::kUdp), 4u);
  EXPECT_EQ(w.totals.udp, 10u);
}

TEST(WindowCounter, IcmpAndIcmpv6CountAsIcmp) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, IPPROTO_ICMP, icmpEcho(8))), 3);
  countTimes(
      c, ethernet(kEtherIpv6, ipv6("2001:db8:ffff::1", kVictim6, IPPROTO_ICMPV6, icmpEcho(128))),
      2);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 2u);
  EXPECT_EQ(vectorPackets(*findVictim(w, kVictimA), Vector::kIcmp), 3u);
  EXPECT_EQ(vectorPackets(*findVictim(w, kVictim6), Vector::kIcmp), 2u);
  EXPECT_EQ(w.totals.icmp, 5u);
}

TEST(WindowCounter, Ipv6VictimIsCountedUnderItsSixteenByteAddress) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, ethernet(kEtherIpv6, ipv6("2001:db8:ffff::1", kVictim6, IPPROTO_UDP, udp(123, 9))),
             2);
  countTimes(
      c,
      ethernet(kEtherIpv6, ipv6("2001:db8:ffff::1", kVictim6, IPPROTO_TCP, tcp(1234, 443, kSyn))),
      1);
  // Outside 2001:db8:1::/48.
  countTimes(
      c, ethernet(kEtherIpv6, ipv6("2001:db8:ffff::1", "2001:db8:2::10", IPPROTO_UDP, udp(123, 9))),
      1);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  const VictimCounters& v = w.victims[0];
  EXPECT_FALSE(v.address.isV4());
  EXPECT_EQ(v.address.toString(), kVictim6);
  EXPECT_EQ(v.packets, 3u);
  EXPECT_EQ(vectorPackets(v, Vector::kUdpReflection), 2u);
  EXPECT_EQ(vectorPackets(v, Vector::kTcpSyn), 1u);
  EXPECT_EQ(w.totals.packets, 4u);
}

TEST(WindowCounter, NonFirstFragmentCountsAsFragment) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  // First fragment (MF set, offset 0) still has its UDP header: DNS reflection.
  countTimes(
      c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, IPPROTO_UDP, udp(53, 33333, 64), 0x2000)),
      1);
  // Middle (MF, offset 185 x 8) and last (offset 370 x 8) fragments: no L4 header.
  Frame body(64, 0xCD);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, IPPROTO_UDP, body, 0x2000 | 185)),
             2);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, IPPROTO_UDP, body, 370)), 1);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, IPPROTO_TCP, body, 100)), 1);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, IPPROTO_ICMP, body, 100)), 1);
  // IPv6 non-first fragment of a UDP datagram.
  Frame ext = ipv6FragmentHeader(IPPROTO_UDP, 100, false);
  putBytes(ext, body);
  countTimes(c, ethernet(kEtherIpv6, ipv6("2001:db8:ffff::1", kVictim6, IPPROTO_FRAGMENT, ext)), 1);

  WindowStats w;
  c.closeInto(w);
  const VictimCounters* a = findVictim(w, kVictimA);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(vectorPackets(*a, Vector::kUdpReflection), 1u);
  EXPECT_EQ(vectorPackets(*a, Vector::kFragment), 5u);
  EXPECT_EQ(vectorPackets(*a, Vector::kUdp), 0u);
  const VictimCounters* six = findVictim(w, kVictim6);
  ASSERT_NE(six, nullptr);
  EXPECT_EQ(vectorPackets(*six, Vector::kFragment), 1u);
  // Totals still go by the IP protocol.
  EXPECT_EQ(w.totals.udp, 5u);
  EXPECT_EQ(w.totals.tcp, 1u);
  EXPECT_EQ(w.totals.icmp, 1u);
}

TEST(WindowCounter, OtherIpProtocolsCountAsOther) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, 47 /* GRE */, Frame(24, 0))), 2);
  countTimes(c, ethernet(kEtherIpv4, ipv4(kAttacker, kVictimA, 50 /* ESP */, Frame(24, 0))), 1);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(vectorPackets(w.victims[0], Vector::kOther), 3u);
  EXPECT_EQ(w.totals.other, 3u);
  EXPECT_EQ(statusCount(w, DecodeStatus::kOk), 3u);
}

TEST(WindowCounter, DestinationsOutsideTheProtectedSetCountOnlyInTotals) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, tcpTo(kOutsider, kSyn), 7);
  countTimes(c, udpTo("198.18.3.10", 53), 2);  // next /24 over
  countTimes(c, tcpTo(kVictimA, kSyn), 1);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(w.victims[0].address, *IpAddress::parse(kVictimA));
  EXPECT_EQ(w.totals.packets, 10u);
  EXPECT_EQ(w.totals.tcp, 8u);
  EXPECT_EQ(w.totals.udp, 2u);
  EXPECT_EQ(w.victimsCut, 0u);
}

TEST(WindowCounter, BytesAreWireLengthsNotCapturedLengths) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  const Frame syn = tcpTo(kVictimA, kSyn);
  countTimes(c, syn, 2, 1500);  // snaplen cut a 1500-byte frame
  countTimes(c, udpTo(kVictimA, 53), 1, 900);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(w.victims[0].bytes, 3900u);
  EXPECT_EQ(w.victims[0].vectorBytes[static_cast<size_t>(Vector::kTcpSyn)], 3000u);
  EXPECT_EQ(w.victims[0].vectorBytes[static_cast<size_t>(Vector::kUdpReflection)], 900u);
  EXPECT_EQ(w.totals.bytes, 3900u);
}

TEST(WindowCounter, MaxVictimsCapCountsTheVictimsLeftOut) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 2);
  countTimes(c, tcpTo("198.18.2.1", kSyn), 3);
  countTimes(c, tcpTo("198.18.2.2", kSyn), 2);
  // Table full: one packet each to three more victims.
  countTimes(c, tcpTo("198.18.2.3", kSyn), 1);
  countTimes(c, tcpTo("198.18.2.4", kSyn), 1);
  countTimes(c, tcpTo("198.18.2.5", kSyn), 1);
  // Victims already tracked keep counting.
  countTimes(c, tcpTo("198.18.2.2", kSyn), 2);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 2u);
  EXPECT_EQ(w.victims[0].packets, 4u);  // .2
  EXPECT_EQ(w.victims[1].packets, 3u);  // .1
  EXPECT_EQ(w.victimPacketsCut, 3u);
  EXPECT_EQ(w.totals.packets, 10u);
}

// A full victim table cannot know how many distinct victims it missed
// without allocating: it counts their packets (victimPacketsCut); victimsCut
// counts victims left out where they are known (the merge cap).
TEST(WindowCounter, FullVictimTableCountsThePacketsItCouldNotAttribute) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 1);
  countTimes(c, tcpTo("198.18.2.1", kSyn), 1);
  countTimes(c, tcpTo("198.18.2.2", kSyn), 10);
  countTimes(c, tcpTo("198.18.2.3", kSyn), 10);

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(w.victimPacketsCut, 20u);
  EXPECT_EQ(w.victimsCut, 0u);
}

TEST(WindowCounter, CloseIntoSortsVictimsByPacketsAndResets) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  countTimes(c, tcpTo("198.18.2.1", kSyn), 1);
  countTimes(c, tcpTo("198.18.2.2", kSyn), 5);
  countTimes(c, tcpTo("198.18.2.3", kSyn), 3);
  countTimes(c, ethernet(kEtherIpv6, ipv6("2001:db8:ffff::1", kVictim6, IPPROTO_UDP, udp(53, 9))),
             4);
  c.count(packet(Frame{1, 2, 3}));  // one decode error, to see it reset too
  EXPECT_FALSE(c.empty());

  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 4u);
  EXPECT_EQ(w.victims[0].address.toString(), "198.18.2.2");
  EXPECT_EQ(w.victims[1].address.toString(), kVictim6);
  EXPECT_EQ(w.victims[2].address.toString(), "198.18.2.3");
  EXPECT_EQ(w.victims[3].address.toString(), "198.18.2.1");
  for (size_t i = 1; i < w.victims.size(); ++i)
    EXPECT_GE(w.victims[i - 1].packets, w.victims[i].packets);
  EXPECT_EQ(w.totals.packets, 14u);
  EXPECT_TRUE(c.empty());

  // Nothing carries over: an empty close, then fresh counts for a victim seen before.
  WindowStats empty;
  c.closeInto(empty);
  EXPECT_TRUE(empty.victims.empty());
  EXPECT_EQ(empty.totals.packets, 0u);
  EXPECT_EQ(empty.totals.bytes, 0u);
  EXPECT_EQ(empty.victimsCut, 0u);
  for (uint64_t n : empty.decodeStatus) EXPECT_EQ(n, 0u);

  countTimes(c, tcpTo("198.18.2.2", kAck), 1);
  WindowStats next;
  c.closeInto(next);
  ASSERT_EQ(next.victims.size(), 1u);
  EXPECT_EQ(next.victims[0].packets, 1u);
  EXPECT_EQ(vectorPackets(next.victims[0], Vector::kTcpSyn), 0u);
  EXPECT_EQ(vectorPackets(next.victims[0], Vector::kTcpOther), 1u);
}

TEST(WindowCounter, CapResetsBetweenWindows) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 1);
  countTimes(c, tcpTo("198.18.2.1", kSyn), 1);
  countTimes(c, tcpTo("198.18.2.2", kSyn), 1);
  WindowStats w;
  c.closeInto(w);
  EXPECT_EQ(w.victimPacketsCut, 1u);

  // A new window has room again, for a victim that was cut before.
  countTimes(c, tcpTo("198.18.2.2", kSyn), 1);
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(w.victims[0].address.toString(), "198.18.2.2");
  EXPECT_EQ(w.victimPacketsCut, 0u);
}

TEST(WindowCounter, AlertFiresOnceWhenAVictimReachesTheThreshold) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16, 5);
  const Frame syn = tcpTo(kVictimA, kSyn);
  const Frame other = tcpTo(kVictimB, kSyn);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.count(packet(syn)), nullptr) << i;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.count(packet(other)), nullptr) << i;
  const VictimCounters* v = c.count(packet(syn));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->address, *IpAddress::parse(kVictimA));
  EXPECT_EQ(v->packets, 5u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(c.count(packet(syn)), nullptr) << "only once";
  // Traffic to unprotected addresses never alerts.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(c.count(packet(tcpTo(kOutsider, kSyn))), nullptr);

  // A new window starts the count again.
  WindowStats w;
  c.closeInto(w);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.count(packet(syn)), nullptr);
  EXPECT_NE(c.count(packet(syn)), nullptr);
}

TEST(WindowCounter, ZeroAlertThresholdNeverAlerts) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(c.count(packet(tcpTo(kVictimA, kSyn))), nullptr);
  c.setAlertPackets(3);
  EXPECT_EQ(c.count(packet(tcpTo(kVictimB, kSyn))), nullptr);
  EXPECT_EQ(c.count(packet(tcpTo(kVictimB, kSyn))), nullptr);
  EXPECT_NE(c.count(packet(tcpTo(kVictimB, kSyn))), nullptr);
}

TEST(WindowCounter, DecodeErrorsAreCountedByStatusAndAsOther) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 16);
  c.count(packet(Frame(10, 0)));                       // shorter than an Ethernet header
  c.count(packet(ethernet(kEtherArp, Frame(28, 0))));  // not IP
  c.count(packet(ethernet(kEtherArp, Frame(28, 0))));
  Frame badIhl = ipv4(kAttacker, kVictimA, IPPROTO_TCP, tcp(1, 2, kSyn));
  badIhl[0] = 0x44;  // IHL 4: under the 20-byte minimum
  c.count(packet(ethernet(kEtherIpv4, badIhl)));
  // A SYN cut inside its TCP header, to a protected address: no victim either.
  Frame cut = ipv4(kAttacker, kVictimA, IPPROTO_TCP, tcp(1, 2, kSyn));
  cut.resize(20 + 10);
  c.count(packet(ethernet(kEtherIpv4, cut)));
  c.count(packet(tcpTo(kVictimA, kSyn), 0, 0, 9999));  // unknown link type
  c.count(packet(tcpTo(kVictimA, kSyn)));              // one good frame

  WindowStats w;
  c.closeInto(w);
  EXPECT_EQ(statusCount(w, DecodeStatus::kTruncatedL2), 1u);
  EXPECT_EQ(statusCount(w, DecodeStatus::kNotIp), 2u);
  EXPECT_EQ(statusCount(w, DecodeStatus::kBadIpHeaderLength), 1u);
  EXPECT_EQ(statusCount(w, DecodeStatus::kTruncatedL4), 1u);
  EXPECT_EQ(statusCount(w, DecodeStatus::kUnsupportedLinkType), 1u);
  EXPECT_EQ(statusCount(w, DecodeStatus::kOk), 1u);
  EXPECT_EQ(w.totals.packets, 7u);
  EXPECT_EQ(w.totals.other, 6u);
  EXPECT_EQ(w.totals.tcp, 1u);
  ASSERT_EQ(w.victims.size(), 1u);
  EXPECT_EQ(w.victims[0].packets, 1u);
}

// ---- Windower --------------------------------------------------------------

// Records what the Windower hands over: WindowStats is reused by the
// Windower, so each closed window is copied out.
struct Recorder {
  std::vector<WindowStats> windows;
  Windower::CloseFn fn() {
    return [this](WindowStats& w) { windows.push_back(w); };
  }
  std::vector<int64_t> starts() const {
    std::vector<int64_t> out;
    for (const auto& w : windows) out.push_back(w.startNs);
    return out;
  }
};

void send(Windower& w, const Frame& f, int64_t timestampNs) {
  w.onPacket(packet(f, timestampNs));
}

TEST(Windower, CutsWindowsOnWindowBoundariesByPacketTime) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  const Frame syn = tcpTo(kVictimA, kSyn);
  const int64_t base = 1'700'000'000 * kSec;  // a realistic epoch time, a whole second
  send(w, syn, base + 200 * kMs);
  send(w, syn, base + 999 * kMs);
  EXPECT_TRUE(r.windows.empty());
  send(w, syn, base + 1000 * kMs);  // exactly on the boundary: the next window
  send(w, syn, base + 1500 * kMs);
  send(w, syn, base + 1999 * kMs + 999'999);
  send(w, syn, base + 2000 * kMs);
  ASSERT_EQ(r.windows.size(), 2u);
  w.flush();

  ASSERT_EQ(r.windows.size(), 3u);
  EXPECT_EQ(r.starts(), (std::vector<int64_t>{base, base + kSec, base + 2 * kSec}));
  EXPECT_EQ(r.windows[0].totals.packets, 2u);
  EXPECT_EQ(r.windows[1].totals.packets, 3u);
  EXPECT_EQ(r.windows[2].totals.packets, 1u);
  for (const auto& win : r.windows) {
    EXPECT_EQ(win.windowMs, 1000u);
    EXPECT_EQ(win.latePackets, 0u);
    ASSERT_EQ(win.victims.size(), 1u);
    EXPECT_EQ(win.victims[0].packets, win.totals.packets);
  }
}

TEST(Windower, StartsAreMultiplesOfTheWindowAndHoldTheirPackets) {
  PrefixSet prot = protectedSet();
  Recorder r;
  const unsigned windowMs = 250;
  const int64_t windowNs = windowMs * kMs;
  Windower w(prot, windowMs, 16, r.fn());
  const Frame syn = tcpTo(kVictimA, kSyn);
  // Ascending, irregular timestamps starting off any boundary.
  std::vector<int64_t> times;
  int64_t t = 1'700'000'000 * kSec + 123'456'789;
  for (int i = 0; i < 500; ++i) {
    t += (i * 7919) % 97 * kMs + 13;
    times.push_back(t);
    send(w, syn, t);
  }
  w.flush();

  ASSERT_FALSE(r.windows.empty());
  uint64_t total = 0;
  for (size_t i = 0; i < r.windows.size(); ++i) {
    const auto& win = r.windows[i];
    EXPECT_EQ(win.startNs % windowNs, 0) << win.startNs;
    if (i > 0) {
      EXPECT_GT(win.startNs, r.windows[i - 1].startNs);
    }
    uint64_t expected = 0;
    for (int64_t ts : times) expected += ts >= win.startNs && ts < win.startNs + windowNs;
    EXPECT_EQ(win.totals.packets, expected) << "window at " << win.startNs;
    total += win.totals.packets;
  }
  EXPECT_EQ(total, times.size());
}

TEST(Windower, EmptyWindowsAreNotEmitted) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  w.tick(5 * kSec);  // nothing open yet
  w.flush();
  EXPECT_TRUE(r.windows.empty());

  const Frame syn = tcpTo(kVictimA, kSyn);
  send(w, syn, 10 * kSec + 500 * kMs);
  for (int64_t now = 11 * kSec; now < 17 * kSec; now += 100 * kMs) w.tick(now);
  send(w, syn, 17 * kSec + 500 * kMs);
  w.flush();
  w.flush();  // a second flush has nothing left to close
  EXPECT_EQ(r.starts(), (std::vector<int64_t>{10 * kSec, 17 * kSec}));
}

TEST(Windower, TickClosesTheWindowOnlyOnceItHasEnded) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  send(w, tcpTo(kVictimA, kSyn), 2 * kSec + 100 * kMs);
  w.tick(2 * kSec + 999 * kMs);
  EXPECT_TRUE(r.windows.empty());
  w.tick(3 * kSec);
  ASSERT_EQ(r.windows.size(), 1u);
  EXPECT_EQ(r.windows[0].startNs, 2 * kSec);
  w.tick(4 * kSec);
  EXPECT_EQ(r.windows.size(), 1u);
}

TEST(Windower, LatePacketIsCountedInTheOpenWindowAndReportedLate) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  const Frame syn = tcpTo(kVictimA, kSyn);
  send(w, syn, 1 * kSec + 100 * kMs);
  send(w, syn, 2 * kSec + 100 * kMs);  // closes [1 s, 2 s)
  send(w, syn, 2 * kSec + 200 * kMs);
  send(w, syn, 1 * kSec + 500 * kMs);  // clock stepped back: late
  send(w, syn, 0);                     // far back: late too
  send(w, syn, 2 * kSec + 300 * kMs);
  send(w, syn, 3 * kSec);  // closes [2 s, 3 s)
  w.flush();

  ASSERT_EQ(r.windows.size(), 3u);
  EXPECT_EQ(r.starts(), (std::vector<int64_t>{1 * kSec, 2 * kSec, 3 * kSec}));
  EXPECT_EQ(r.windows[0].latePackets, 0u);
  EXPECT_EQ(r.windows[1].totals.packets, 5u);
  EXPECT_EQ(r.windows[1].latePackets, 2u);
  EXPECT_EQ(r.windows[1].victims[0].packets, 5u);
  EXPECT_EQ(r.windows[2].latePackets, 0u);
}

TEST(Windower, WindowClosedByTickIsNeverReopened) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  const Frame syn = tcpTo(kVictimA, kSyn);
  send(w, syn, 2 * kSec + 100 * kMs);
  w.tick(3 * kSec + 50 * kMs);  // [2 s, 3 s) is closed and sent
  ASSERT_EQ(r.windows.size(), 1u);

  send(w, syn, 2 * kSec + 500 * kMs);  // belongs to the sent window: goes to the next
  send(w, syn, 3 * kSec + 200 * kMs);
  w.flush();

  ASSERT_EQ(r.windows.size(), 2u);
  EXPECT_EQ(r.windows[1].startNs, 3 * kSec);
  EXPECT_EQ(r.windows[1].totals.packets, 2u);
  EXPECT_EQ(r.windows[1].latePackets, 1u);
}

TEST(Windower, WindowStartsStrictlyIncreaseWhenTheClockJumpsBack) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  const Frame syn = tcpTo(kVictimA, kSyn);
  // Each packet is followed by a tick past its window, then the clock steps
  // back by a few windows.
  int64_t t = 100 * kSec;
  for (int i = 0; i < 20; ++i) {
    send(w, syn, t);
    w.tick(t + kSec);
    t += (i % 3 == 0) ? -3 * kSec : 2 * kSec;
  }
  w.flush();
  ASSERT_GT(r.windows.size(), 1u);
  uint64_t packets = 0, late = 0;
  for (size_t i = 0; i < r.windows.size(); ++i) {
    EXPECT_EQ(r.windows[i].startNs % kSec, 0);
    if (i > 0) {
      EXPECT_GT(r.windows[i].startNs, r.windows[i - 1].startNs) << "window " << i;
    }
    packets += r.windows[i].totals.packets;
    late += r.windows[i].latePackets;
  }
  EXPECT_EQ(packets, 20u);
  EXPECT_GT(late, 0u);
}

TEST(Windower, FlushEmitsTheLastWindow) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  send(w, udpTo(kVictimA, 53), 42 * kSec + 1);
  send(w, udpTo(kVictimB, 4444), 42 * kSec + 2);
  EXPECT_TRUE(r.windows.empty());
  w.flush();
  ASSERT_EQ(r.windows.size(), 1u);
  EXPECT_EQ(r.windows[0].startNs, 42 * kSec);
  EXPECT_EQ(r.windows[0].totals.udp, 2u);
  ASSERT_EQ(r.windows[0].victims.size(), 2u);
  EXPECT_EQ(vectorPackets(*findVictim(r.windows[0], kVictimA), Vector::kUdpReflection), 1u);
  EXPECT_EQ(vectorPackets(*findVictim(r.windows[0], kVictimB), Vector::kUdp), 1u);
}

TEST(Windower, NegativeTimestampsCountAsTheEpochWindow) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  send(w, tcpTo(kVictimA, kSyn), -5 * kSec);
  w.flush();
  ASSERT_EQ(r.windows.size(), 1u);
  EXPECT_EQ(r.windows[0].startNs, 0);
  EXPECT_EQ(r.windows[0].totals.packets, 1u);
}

TEST(Windower, AlertNamesTheVictimItsLargestVectorAndTheWindow) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn());
  std::vector<Windower::Alert> alerts;
  w.setAlert(3, [&](const Windower::Alert& a) { alerts.push_back(a); });
  send(w, tcpTo(kVictimA, kSyn), 5 * kSec + 100 * kMs);
  send(w, udpTo(kVictimA, 123), 5 * kSec + 200 * kMs);
  EXPECT_TRUE(alerts.empty());
  send(w, udpTo(kVictimA, 11211), 5 * kSec + 300 * kMs);
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].victim, *IpAddress::parse(kVictimA));
  EXPECT_EQ(alerts[0].vector, Vector::kUdpReflection);
  EXPECT_EQ(alerts[0].packets, 3u);
  EXPECT_EQ(alerts[0].windowStartNs, 5 * kSec);
  EXPECT_EQ(alerts[0].atNs, 5 * kSec + 300 * kMs);
  send(w, udpTo(kVictimA, 53), 5 * kSec + 400 * kMs);
  EXPECT_EQ(alerts.size(), 1u);
  // Next window, same victim: a new alert.
  for (int i = 0; i < 3; ++i) send(w, tcpTo(kVictimA, kSyn), 6 * kSec + i);
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_EQ(alerts[1].vector, Vector::kTcpSyn);
  EXPECT_EQ(alerts[1].windowStartNs, 6 * kSec);
}

TEST(Windower, LiveModeReportsSilentWindowsAsTheClockTicks) {
  PrefixSet prot = protectedSet();
  Recorder r;
  Windower w(prot, 1000, 16, r.fn(), /*emitEmpty=*/true);
  w.tick(10 * kSec + 500 * kMs);  // opens [10 s, 11 s)
  w.tick(11 * kSec);              // closes it, silent, and opens [11 s, 12 s)
  ASSERT_EQ(r.windows.size(), 1u);
  EXPECT_EQ(r.windows[0].startNs, 10 * kSec);
  EXPECT_EQ(r.windows[0].totals.packets, 0u);
  EXPECT_TRUE(r.windows[0].victims.empty());
  EXPECT_EQ(r.windows[0].windowMs, 1000u);

  send(w, tcpTo(kVictimA, kSyn), 11 * kSec + 200 * kMs);
  w.tick(12 * kSec);
  w.tick(13 * kSec);
  w.flush();
  EXPECT_EQ(r.starts(), (std::vector<int64_t>{10 * kSec, 11 * kSec, 12 * kSec, 13 * kSec}));
  EXPECT_EQ(r.windows[1].totals.packets, 1u);
  EXPECT_EQ(r.windows[2].totals.packets, 0u);
}

// ---- mergeWindow -----------------------------------------------------------

VictimCounters victim(const char* address, uint64_t packets, Vector vec) {
  VictimCounters v;
  v.address = *IpAddress::parse(address);
  v.packets = packets;
  v.bytes = packets * 100;
  v.vectorPackets[static_cast<size_t>(vec)] = packets;
  v.vectorBytes[static_cast<size_t>(vec)] = packets * 100;
  return v;
}

// The sketches run behind the counters (see WindowCounter): packets to many
// victims interleave in the queue, and closeInto() must apply all of them.
TEST(WindowCounter, SpoofedFloodAtManyVictimsReportsHeavySourcesAndDistinctCounts) {
  PrefixSet prot = protectedSet();
  WindowCounter c(prot, 64);
  constexpr uint32_t kVictims = 40;
  constexpr uint32_t kPerVictim = 5'000;
  constexpr uint32_t kHeavyEvery = 25;  // two heavy sources per victim, 4% each
  std::mt19937 rng(3);
  std::vector<uint32_t> order(kVictims * kPerVictim);
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (uint32_t i : order) {
    const uint32_t victim = i % kVictims;
    const uint32_t n = i / kVictims;
    std::string src = n % kHeavyEvery == 0   ? "203.0.113.1"
                      : n % kHeavyEvery == 1 ? "203.0.113.2"
                                             : "10." + std::to_string(n >> 8 & 0xff) + "." +
                                                   std::to_string(n & 0xff) + "." +
                                                   std::to_string(victim);
    const std::string dst = "198.18.2." + std::to_string(100 + victim);
    const Frame f = ethernet(kEtherIpv4, ipv4(src.c_str(), dst.c_str(), IPPROTO_TCP,
                                              tcp(static_cast<uint16_t>(rng()), 80, kSyn)));
    c.count(packet(f));
  }
  WindowStats w;
  c.closeInto(w);
  ASSERT_EQ(w.victims.size(), kVictims);
  const uint64_t distinct = kPerVictim - 2 * kPerVictim / kHeavyEvery + 2;
  for (const VictimCounters& v : w.victims) {
    EXPECT_EQ(v.packets, kPerVictim);
    // Four standard errors of the default HyperLogLog (p = 12) per victim:
    // 40 victims at two sigma would fail now and then by design.
    EXPECT_NEAR(static_cast<double>(v.distinctSources), distinct, 4 * 1.04 / 64 * distinct);
    ASSERT_GE(v.topSources.size(), 2u) << v.address.toString();
    for (size_t k = 0; k < 2; ++k) {
      const SourceCount& s = v.topSources[k];
      EXPECT_TRUE(s.address == *IpAddress::parse("203.0.113.1") ||
                  s.address == *IpAddress::parse("203.0.113.2"))
          << v.address.toString() << " " << s.address.toString();
      EXPECT_GE(s.packets, kPerVictim / kHeavyEvery);
      EXPECT_LE(s.packets - s.error, kPerVictim / kHeavyEvery);
    }
    ASSERT_FALSE(v.topDstPorts.empty());
    EXPECT_EQ(v.topDstPorts[0].port, 80);
    EXPECT_EQ(v.topDstPorts[0].packets, kPerVictim);
  }
}

TEST(WindowCounter, ManyProtectedPrefixesOfBothFamiliesMatchAsThePrefixSetDoes) {
  for (size_t extra : {0, 30}) {  // 30 more prefixes: past the scan, the set answers
    std::vector<Prefix> prefixes = {*Prefix::parse("198.18.2.0/24"),
                                    *Prefix::parse("2001:db8:1::/48")};
    for (size_t i = 0; i < extra; ++i)
      prefixes.push_back(*Prefix::parse("100.64." + std::to_string(i) + ".0/24"));
    PrefixSet prot(prefixes);
    WindowCounter c(prot, 16);
    c.count(packet(tcpTo(kVictimA, kSyn)));
    c.count(packet(tcpTo(kOutsider, kSyn)));
    c.count(packet(tcpTo("198.18.3.1", kSyn)));
    c.count(packet(ethernet(kEtherIpv6, ipv6("2001:db8:9::1", kVictim6, IPPROTO_TCP,
                                             tcp(1, 80, kSyn)))));
    c.count(packet(ethernet(kEtherIpv6, ipv6("2001:db8:9::1", "2001:db8:2::1", IPPROTO_TCP,
                                             tcp(1, 80, kSyn)))));
    WindowStats w;
    c.closeInto(w);
    ASSERT_EQ(w.victims.size(), 2u) << extra;
    EXPECT_EQ(w.totals.packets, 5u);
  }
}

TEST(MergeWindow, SumsCountersAndMergesVictimsByAddress) {
  WindowStats a;
  a.totals = {.packets = 10, .bytes = 1000, .tcp = 6, .udp = 4};
  a.latePackets = 1;
  a.decodeStatus[static_cast<size_t>(DecodeStatus::kOk)] = 10;
  a.victims = {victim(kVictimA, 6, Vector::kTcpSyn), victim(kVictimB, 4, Vector::kUdp)};
  WindowStats b;
  b.totals = {.packets = 20, .bytes = 2000, .udp = 18, .other = 2};
  b.latePackets = 2;
  b.decodeStatus[static_cast<size_t>(DecodeStatus::kOk)] = 18;
  b.decodeStatus[static_cast<size_t>(DecodeStatus::kTruncatedL2)] = 2;
  b.victims = {victim(kVictimB, 18, Vector::kUdpReflection)};

  mergeWindow(a, b, 16);
  EXPECT_EQ(a.totals.packets, 30u);
  EXPECT_EQ(a.totals.bytes, 3000u);
  EXPECT_EQ(a.totals.tcp, 6u);
  EXPECT_EQ(a.totals.udp, 22u);
  EXPECT_EQ(a.totals.other, 2u);
  EXPECT_EQ(a.latePackets, 3u);
  EXPECT_EQ(statusCount(a, DecodeStatus::kOk), 28u);
  EXPECT_EQ(statusCount(a, DecodeStatus::kTruncatedL2), 2u);
  ASSERT_EQ(a.victims.size(), 2u);
  // B now leads: re-sorted by packets.
  EXPECT_EQ(a.victims[0].address, *IpAddress::parse(kVictimB));
  EXPECT_EQ(a.victims[0].packets, 22u);
  EXPECT_EQ(a.victims[0].bytes, 2200u);
  EXPECT_EQ(vectorPackets(a.victims[0], Vector::kUdp), 4u);
  EXPECT_EQ(vectorPackets(a.victims[0], Vector::kUdpReflection), 18u);
  EXPECT_EQ(a.victims[1].packets, 6u);
}

TEST(MergeWindow, KeepsAtMostMaxVictimsAndCountsTheRestAsCut) {
  WindowStats a;
  a.victims = {victim("198.18.2.1", 5, Vector::kTcpSyn), victim("198.18.2.2", 1, Vector::kTcpSyn)};
  WindowStats b;
  b.victims = {victim("198.18.2.3", 3, Vector::kTcpSyn), victim("198.18.2.4", 2, Vector::kTcpSyn)};
  mergeWindow(a, b, 2);
  ASSERT_EQ(a.victims.size(), 2u);
  EXPECT_EQ(a.victims[0].address.toString(), "198.18.2.1");
  EXPECT_EQ(a.victims[1].address.toString(), "198.18.2.3");
  EXPECT_EQ(a.victimsCut, 2u);
}

}  // namespace
}  // namespace garda::sensor
