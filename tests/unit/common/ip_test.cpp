#include "common/ip.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace garda::common {
namespace {

IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

Prefix prefix(const char* text) {
  auto p = Prefix::parse(text);
  EXPECT_TRUE(p.has_value()) << text;
  return p.value_or(Prefix{});
}

std::string matchOf(const PrefixSet& set, const char* address) {
  auto m = set.longestMatch(ip(address));
  return m ? m->toString() : "none";
}

// ---- IpAddress -------------------------------------------------------------

TEST(IpAddress, ParsesIpv4AndKeepsItsBytes) {
  auto a = IpAddress::parse("198.18.2.1");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->isV4());
  uint8_t bytes[16];
  ASSERT_EQ(a->toBytes(bytes), 4u);
  EXPECT_EQ(bytes[0], 198);
  EXPECT_EQ(bytes[1], 18);
  EXPECT_EQ(bytes[2], 2);
  EXPECT_EQ(bytes[3], 1);
  // Held as ::ffff:198.18.2.1 in the 128-bit form.
  EXPECT_EQ(a->hi(), 0u);
  EXPECT_EQ(a->lo(), 0x0000ffffc6120201ULL);
}

TEST(IpAddress, ParsesIpv6AndKeepsItsBytes) {
  auto a = IpAddress::parse("2001:db8::1");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->isV4());
  uint8_t bytes[16];
  ASSERT_EQ(a->toBytes(bytes), 16u);
  const std::array<uint8_t, 16> expected{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                         0,    0,    0,    0,    0, 0, 0, 1};
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(bytes[i], expected[i]) << "byte " << i;
  EXPECT_EQ(a->hi(), 0x20010db800000000ULL);
  EXPECT_EQ(a->lo(), 1u);
}

TEST(IpAddress, RejectsTextThatIsNoAddress) {
  for (const char* bad :
       {"", "not-an-ip", "198.18.2", "198.18.2.256", "198.18.2.1.5", "198.18.2.1/24", " 198.18.2.1",
        "2001:db8:::1", "2001:db8::g", "1:2:3:4:5:6:7:8:9"})
    EXPECT_FALSE(IpAddress::parse(bad)) << '"' << bad << '"';
}

TEST(IpAddress, ToStringRoundTripsCanonicalText) {
  for (const char* text :
       {"0.0.0.0", "10.0.0.1", "198.18.2.1", "255.255.255.255", "::", "::1", "2001:db8::1",
        "2001:db8:1:2:3:4:5:6", "fe80::1:2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    EXPECT_EQ(ip(text).toString(), text);
    EXPECT_EQ(IpAddress::parse(ip(text).toString()), ip(text)) << text;
  }
  // Non-canonical IPv6 text comes back in RFC 5952 form.
  EXPECT_EQ(ip("2001:0db8:0000:0000:0000:0000:0000:0001").toString(), "2001:db8::1");
}

TEST(IpAddress, IsV4TellsTheFamiliesApart) {
  EXPECT_TRUE(ip("0.0.0.0").isV4());
  EXPECT_TRUE(ip("10.0.0.1").isV4());
  EXPECT_FALSE(ip("::").isV4());
  EXPECT_FALSE(ip("::1").isV4());
  EXPECT_FALSE(ip("::a00:1").isV4());  // IPv4-compatible (deprecated) form is IPv6
  EXPECT_FALSE(ip("2001:db8::1").isV4());
  EXPECT_NE(ip("0.0.0.0"), ip("::"));
}

TEST(IpAddress, FromBytesTakesOnlyFourOrSixteenBytes) {
  const std::array<uint8_t, 17> raw{10, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
  for (size_t n = 0; n <= raw.size(); ++n) {
    auto a = IpAddress::fromBytes(std::span<const uint8_t>(raw.data(), n));
    if (n == 4) {
      ASSERT_TRUE(a);
      EXPECT_EQ(*a, ip("10.1.2.3"));
    } else if (n == 16) {
      ASSERT_TRUE(a);
      EXPECT_EQ(*a, ip("a01:203:506:708:90a:b0c:d0e:f10"));
    } else {
      EXPECT_FALSE(a) << n << " bytes";
    }
  }
}

TEST(IpAddress, MaskedKeepsTheTopBits) {
  EXPECT_EQ(ip("2001:db8:ffff::1").masked(32), ip("2001:db8::"));
  EXPECT_EQ(ip("2001:db8:ffff::1").masked(0), ip("::"));
  EXPECT_EQ(ip("2001:db8:ffff::1").masked(128), ip("2001:db8:ffff::1"));
  EXPECT_EQ(ip("ffff:ffff:ffff:ffff:ffff::").masked(64), ip("ffff:ffff:ffff:ffff::"));
  EXPECT_EQ(ip("ffff:ffff:ffff:ffff:ffff::").masked(65), ip("ffff:ffff:ffff:ffff:8000::"));
  // IPv4 lengths are +96 in the 128-bit form.
  EXPECT_EQ(ip("198.18.2.77").masked(96 + 24), ip("198.18.2.0"));
}

// ---- Prefix ----------------------------------------------------------------

TEST(Prefix, ParsesIpv4AndIpv6) {
  auto p = Prefix::parse("198.18.2.0/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->address(), ip("198.18.2.0"));
  EXPECT_EQ(p->length(), 24u);
  EXPECT_EQ(p->length128(), 120u);
  EXPECT_EQ(p->toString(), "198.18.2.0/24");

  auto q = Prefix::parse("2001:db8::/32");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->length(), 32u);
  EXPECT_EQ(q->length128(), 32u);
  EXPECT_EQ(q->toString(), "2001:db8::/32");
}

TEST(Prefix, BareAddressIsAHostPrefix) {
  EXPECT_EQ(prefix("198.18.2.1").toString(), "198.18.2.1/32");
  EXPECT_EQ(prefix("2001:db8::1").toString(), "2001:db8::1/128");
}

TEST(Prefix, StrictParseRefusesHostBitsAndNonStrictMasksThem) {
  EXPECT_FALSE(Prefix::parse("198.18.2.1/24"));
  EXPECT_FALSE(Prefix::parse("198.18.2.1/24", true));
  EXPECT_FALSE(Prefix::parse("2001:db8::1/64"));

  auto p = Prefix::parse("198.18.2.1/24", false);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->toString(), "198.18.2.0/24");
  auto q = Prefix::parse("2001:db8:aaaa:bbbb::1/36", false);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->toString(), "2001:db8:a000::/36");
}

TEST(Prefix, RejectsBadLengthsAndAddresses) {
  for (const char* bad : {"10.0.0.1/33", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/",
                          "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8a", "10.0.0.0/1000",
                          "10.0.0.0/8/8", "not-an-ip", "not-an-ip/8", "/8", "", "10.0.0.0/ 8"})
    EXPECT_FALSE(Prefix::parse(bad, false)) << '"' << bad << '"';
}

TEST(Prefix, ZeroAndFullLengthsInBothFamilies) {
  EXPECT_EQ(prefix("0.0.0.0/0").length(), 0u);
  EXPECT_EQ(prefix("0.0.0.0/0").length128(), 96u);
  EXPECT_EQ(prefix("::/0").length128(), 0u);
  EXPECT_EQ(prefix("10.0.0.1/32").length128(), 128u);
  EXPECT_EQ(prefix("2001:db8::1/128").length128(), 128u);
}

TEST(Prefix, MakeMasksTheAddressAndChecksTheLength) {
  auto p = Prefix::make(ip("10.1.2.3"), 16);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->toString(), "10.1.0.0/16");
  EXPECT_FALSE(Prefix::make(ip("10.1.2.3"), 33));
  EXPECT_TRUE(Prefix::make(ip("2001:db8::1"), 128));
  EXPECT_FALSE(Prefix::make(ip("2001:db8::1"), 129));
}

TEST(Prefix, ContainsOnlyAddressesUnderIt) {
  Prefix p = prefix("198.18.2.0/24");
  EXPECT_TRUE(p.contains(ip("198.18.2.0")));
  EXPECT_TRUE(p.contains(ip("198.18.2.255")));
  EXPECT_FALSE(p.contains(ip("198.18.3.0")));
  EXPECT_FALSE(p.contains(ip("198.18.1.255")));

  Prefix q = prefix("2001:db8::/32");
  EXPECT_TRUE(q.contains(ip("2001:db8::1")));
  EXPECT_TRUE(q.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(q.contains(ip("2001:db9::")));

  // Odd lengths that do not fall on a byte.
  Prefix r = prefix("10.0.0.0/9");
  EXPECT_TRUE(r.contains(ip("10.127.255.255")));
  EXPECT_FALSE(r.contains(ip("10.128.0.0")));
}

TEST(Prefix, AnIpv4AddressIsNeverInAnIpv6Prefix) {
  EXPECT_FALSE(prefix("::/0").contains(ip("10.0.0.1")));
  EXPECT_FALSE(prefix("::/0").contains(ip("0.0.0.0")));
  EXPECT_FALSE(prefix("::/96").contains(ip("10.0.0.1")));
  EXPECT_FALSE(prefix("::/80").contains(ip("255.255.255.255")));
  EXPECT_TRUE(prefix("::/0").contains(ip("2001:db8::1")));
  EXPECT_TRUE(prefix("::/0").contains(ip("::")));
}

TEST(Prefix, AllOfIpv4ContainsEveryIpv4AndNoIpv6) {
  Prefix all4 = prefix("0.0.0.0/0");
  for (const char* a : {"0.0.0.0", "10.0.0.1", "198.18.2.1", "255.255.255.255"})
    EXPECT_TRUE(all4.contains(ip(a))) << a;
  for (const char* a : {"::", "::1", "::a00:1", "2001:db8::1", "ffff:ffff::"})
    EXPECT_FALSE(all4.contains(ip(a))) << a;
}

TEST(Prefix, OverlapsWhenOneHoldsTheOther) {
  EXPECT_TRUE(prefix("10.0.0.0/8").overlaps(prefix("10.1.0.0/16")));
  EXPECT_TRUE(prefix("10.1.0.0/16").overlaps(prefix("10.0.0.0/8")));
  EXPECT_TRUE(prefix("10.1.0.0/16").overlaps(prefix("10.1.0.0/16")));
  EXPECT_TRUE(prefix("10.1.2.3/32").overlaps(prefix("0.0.0.0/0")));
  EXPECT_FALSE(prefix("10.0.0.0/8").overlaps(prefix("11.0.0.0/8")));
  EXPECT_FALSE(prefix("10.1.0.0/16").overlaps(prefix("10.2.0.0/16")));
  EXPECT_TRUE(prefix("2001:db8::/32").overlaps(prefix("2001:db8:1::/48")));
  EXPECT_FALSE(prefix("2001:db8::/32").overlaps(prefix("2001:db9::/32")));
  // Different families never overlap, not even the two "everything" prefixes.
  EXPECT_FALSE(prefix("0.0.0.0/0").overlaps(prefix("::/0")));
  EXPECT_FALSE(prefix("::/0").overlaps(prefix("10.0.0.0/8")));
}

// ---- PrefixSet -------------------------------------------------------------

TEST(PrefixSet, LongestMatchPicksTheLongestIpv4Prefix) {
  PrefixSet set(
      {prefix("10.0.0.0/8"), prefix("10.1.0.0/16"), prefix("10.1.2.0/24"), prefix("10.1.2.3/32")});
  EXPECT_EQ(matchOf(set, "10.1.2.3"), "10.1.2.3/32");
  EXPECT_EQ(matchOf(set, "10.1.2.4"), "10.1.2.0/24");
  EXPECT_EQ(matchOf(set, "10.1.3.4"), "10.1.0.0/16");
  EXPECT_EQ(matchOf(set, "10.2.3.4"), "10.0.0.0/8");
  EXPECT_EQ(matchOf(set, "11.1.2.3"), "none");
  EXPECT_TRUE(set.contains(ip("10.255.255.255")));
  EXPECT_FALSE(set.contains(ip("9.255.255.255")));
}

TEST(PrefixSet, LongestMatchPicksTheLongestIpv6Prefix) {
  PrefixSet set({prefix("2001:db8::/32"), prefix("2001:db8:1::/48"), prefix("2001:db8:1:2::/64"),
                 prefix("2001:db8:1:2::7/128")});
  EXPECT_EQ(matchOf(set, "2001:db8:1:2::7"), "2001:db8:1:2::7/128");
  EXPECT_EQ(matchOf(set, "2001:db8:1:2::8"), "2001:db8:1:2::/64");
  EXPECT_EQ(matchOf(set, "2001:db8:1:3::8"), "2001:db8:1::/48");
  EXPECT_EQ(matchOf(set, "2001:db8:2::8"), "2001:db8::/32");
  EXPECT_EQ(matchOf(set, "2001:db9::"), "none");
}

TEST(PrefixSet, InsertionOrderDoesNotChangeTheAnswer) {
  PrefixSet set;
  set.add(prefix("10.1.2.3/32"));
  set.add(prefix("10.0.0.0/8"));
  set.add(prefix("10.1.2.0/24"));
  set.add(prefix("10.1.0.0/16"));
  EXPECT_EQ(matchOf(set, "10.1.2.3"), "10.1.2.3/32");
  EXPECT_EQ(matchOf(set, "10.1.2.4"), "10.1.2.0/24");
  EXPECT_EQ(matchOf(set, "10.1.3.4"), "10.1.0.0/16");
  EXPECT_EQ(matchOf(set, "10.9.3.4"), "10.0.0.0/8");
}

TEST(PrefixSet, EmptySetMatchesNothing) {
  PrefixSet set;
  EXPECT_TRUE(set.empty());
  EXPECT_EQ(matchOf(set, "10.0.0.1"), "none");
  EXPECT_EQ(matchOf(set, "::"), "none");
  EXPECT_FALSE(set.overlaps(prefix("0.0.0.0/0")));
}

TEST(PrefixSet, FamiliesNeverMatchEachOther) {
  PrefixSet v6only({prefix("::/0")});
  EXPECT_EQ(matchOf(v6only, "10.0.0.1"), "none");
  EXPECT_EQ(matchOf(v6only, "0.0.0.0"), "none");
  EXPECT_EQ(matchOf(v6only, "2001:db8::1"), "::/0");

  PrefixSet v4only({prefix("0.0.0.0/0")});
  EXPECT_EQ(matchOf(v4only, "10.0.0.1"), "0.0.0.0/0");
  EXPECT_EQ(matchOf(v4only, "::"), "none");
  EXPECT_EQ(matchOf(v4only, "::a00:1"), "none");
  EXPECT_EQ(matchOf(v4only, "2001:db8::1"), "none");

  // ::/96 sits at the same 128-bit length as 0.0.0.0/0; neither captures the other family.
  PrefixSet both({prefix("0.0.0.0/0"), prefix("::/96")});
  EXPECT_EQ(matchOf(both, "10.0.0.1"), "0.0.0.0/0");
  EXPECT_EQ(matchOf(both, "::a00:1"), "::/96");
}

TEST(PrefixSet, ManyLengthsEachAnswerAtTheirOwnLength) {
  // 0.0.0.0/0, 0.0.0.0/1, ... 10.255.255.255/32: every IPv4 length on one address's path.
  PrefixSet set;
  const IpAddress target = ip("10.255.255.255");
  for (unsigned len = 0; len <= 32; ++len) set.add(*Prefix::make(target, len));
  for (unsigned len = 0; len <= 32; ++len) {
    // An address that agrees with target in exactly the first `len` bits.
    uint8_t b[4] = {10, 255, 255, 255};
    if (len < 32) b[len / 8] ^= static_cast<uint8_t>(0x80 >> (len % 8));
    auto a = IpAddress::fromBytes(std::span<const uint8_t>(b, 4));
    auto m = set.longestMatch(*a);
    ASSERT_TRUE(m) << a->toString();
    EXPECT_EQ(m->length(), len) << a->toString();
  }
}

TEST(PrefixSet, DuplicatesAreIgnored) {
  PrefixSet set({prefix("10.0.0.0/8"), prefix("10.0.0.0/8"), prefix("2001:db8::/32")});
  set.add(prefix("10.0.0.0/8"));
  set.add(*Prefix::parse("10.9.9.9/8", false));
  set.add(prefix("2001:db8::/32"));
  EXPECT_EQ(set.prefixes().size(), 2u);
  EXPECT_EQ(matchOf(set, "10.9.9.9"), "10.0.0.0/8");
}

TEST(PrefixSet, SameAddressDifferentLengthsAreDistinct) {
  PrefixSet set({prefix("10.0.0.0/8"), prefix("10.0.0.0/16")});
  EXPECT_EQ(set.prefixes().size(), 2u);
  EXPECT_EQ(matchOf(set, "10.0.1.1"), "10.0.0.0/16");
  EXPECT_EQ(matchOf(set, "10.1.1.1"), "10.0.0.0/8");
}

TEST(PrefixSet, OverlapsAnyMember) {
  PrefixSet set({prefix("198.18.2.0/24"), prefix("2001:db8:1::/48")});
  EXPECT_TRUE(set.overlaps(prefix("198.18.0.0/16")));
  EXPECT_TRUE(set.overlaps(prefix("198.18.2.128/25")));
  EXPECT_TRUE(set.overlaps(prefix("2001:db8::/32")));
  EXPECT_FALSE(set.overlaps(prefix("198.18.3.0/24")));
  EXPECT_FALSE(set.overlaps(prefix("2001:db8:2::/48")));
  EXPECT_TRUE(set.overlaps(prefix("2001:db8:1:5::/64")));
  EXPECT_TRUE(set.overlaps(prefix("::/0")));
  EXPECT_TRUE(set.overlaps(prefix("0.0.0.0/0")));
}

// The reference model for the cross-check: family, 16 network-order bytes
// (IPv4 in the first 4) and a length, compared bit by bit. It shares no code
// with PrefixSet or Prefix::contains.
struct RefPrefix {
  bool v4;
  std::array<uint8_t, 16> bytes;
  unsigned length;
};

bool refContains(const RefPrefix& p, bool v4, const std::array<uint8_t, 16>& a) {
  if (p.v4 != v4) return false;
  for (unsigned bit = 0; bit < p.length; ++bit) {
    const unsigned mask = 0x80u >> (bit % 8);
    if ((p.bytes[bit / 8] & mask) != (a[bit / 8] & mask)) return false;
  }
  return true;
}

IpAddress toIp(bool v4, const std::array<uint8_t, 16>& b) {
  return *IpAddress::fromBytes(std::span<const uint8_t>(b.data(), v4 ? 4 : 16));
}

TEST(PrefixSet, LongestMatchAgreesWithALinearScanOnRandomData) {
  std::mt19937_64 rng(20260217);
  auto byte = [&] { return static_cast<uint8_t>(rng()); };

  // Prefixes cluster under 10.0.0.0/8 and 2001:db8::/32 so that many nest.
  std::vector<RefPrefix> refs;
  PrefixSet set;
  for (int i = 0; i < 200; ++i) {
    RefPrefix r{};
    r.v4 = i % 2 == 0;
    for (auto& b : r.bytes) b = byte();
    if (r.v4) {
      r.bytes[0] = 10;
      r.bytes[1] = static_cast<uint8_t>(rng() % 4);  // 10.0/16 .. 10.3/16
      r.length = 8 + static_cast<unsigned>(rng() % 25);
    } else {
      const uint8_t top[6] = {0x20, 0x01, 0x0d, 0xb8, 0, static_cast<uint8_t>(rng() % 4)};
      std::copy(std::begin(top), std::end(top), r.bytes.begin());
      r.length = 16 + static_cast<unsigned>(rng() % 113);
    }
    auto p = Prefix::make(toIp(r.v4, r.bytes), r.length);
    ASSERT_TRUE(p);
    set.add(*p);
    refs.push_back(r);
  }

  int matched = 0;
  for (int i = 0; i < 10000; ++i) {
    bool v4 = rng() % 2 == 0;
    std::array<uint8_t, 16> a{};
    for (auto& b : a) b = byte();
    if (i % 3 != 0) {
      // Start from a random member's bits, then randomise the host bits.
      const RefPrefix& base = refs[rng() % refs.size()];
      v4 = base.v4;
      for (unsigned bit = 0; bit < base.length; ++bit) {
        const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
        a[bit / 8] = static_cast<uint8_t>((a[bit / 8] & ~mask) | (base.bytes[bit / 8] & mask));
      }
    }
    const RefPrefix* best = nullptr;
    for (const auto& r : refs)
      if (refContains(r, v4, a) && (!best || r.length > best->length)) best = &r;

    const IpAddress address = toIp(v4, a);
    auto m = set.longestMatch(address);
    ASSERT_EQ(m.has_value(), best != nullptr) << address.toString();
    if (!best) continue;
    ++matched;
    EXPECT_EQ(m->length(), best->length) << address.toString();
    uint8_t got[16];
    ASSERT_EQ(m->address().toBytes(got), v4 ? 4u : 16u) << address.toString();
    std::array<uint8_t, 16> wantBytes{};
    for (unsigned bit = 0; bit < best->length; ++bit)
      if (best->bytes[bit / 8] & (0x80u >> (bit % 8)))
        wantBytes[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
    for (size_t k = 0; k < (v4 ? 4u : 16u); ++k)
      ASSERT_EQ(got[k], wantBytes[k]) << address.toString() << " byte " << k;
    EXPECT_EQ(set.contains(address), true);
  }
  // The data must exercise the matching path, not only misses.
  EXPECT_GT(matched, 6000);
}

}  // namespace
}  // namespace garda::common
