#include "sensor/decode.h"

#include <netinet/in.h>

namespace garda::sensor {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86DD;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88A8;
constexpr uint16_t kEtherTypeQinQLegacy = 0x9100;

constexpr size_t kEthernetHeaderLength = 14;
constexpr size_t kEthernetTypeOffset = 12;
constexpr size_t kVlanTagLength = 4;
constexpr size_t kNullHeaderLength = 4;
constexpr size_t kSllHeaderLength = 16;
constexpr size_t kSllProtocolOffset = 14;
constexpr size_t kSll2HeaderLength = 20;
constexpr size_t kIpv4MinHeaderLength = 20;
constexpr size_t kIpv6HeaderLength = 40;
// Every IPv6 extension header format (generic, AH, fragment) is >= 8 bytes, so
// one check covers reading the next-header and length bytes of any of them.
constexpr size_t kIpv6MinExtensionLength = 8;
constexpr size_t kIpv6FragmentHeaderLength = 8;
constexpr size_t kTcpMinHeaderLength = 20;
constexpr size_t kUdpHeaderLength = 8;
constexpr size_t kSctpCommonHeaderLength = 12;
// RFC 792: every ICMP message carries at least 8 bytes; RFC 4443 only fixes
// type, code and checksum for ICMPv6.
constexpr size_t kIcmpHeaderLength = 8;
constexpr size_t kIcmpv6HeaderLength = 4;

constexpr uint16_t kIpv4MoreFragments = 0x2000;
constexpr uint16_t kIpv4FragmentOffsetMask = 0x1FFF;
constexpr uint16_t kVlanIdMask = 0x0FFF;

// Address family values seen in NULL/LOOP headers across OSes.
constexpr uint32_t kAfInet = 2;
constexpr uint32_t kAfInet6Linux = 10;
constexpr uint32_t kAfInet6Windows = 23;   // Npcap loopback
constexpr uint32_t kAfInet6NetBsd = 24;    // also OpenBSD
constexpr uint32_t kAfInet6FreeBsd = 28;
constexpr uint32_t kAfInet6Darwin = 30;

constexpr uint8_t kIpprotoHip = 139;
constexpr uint8_t kIpprotoShim6 = 140;

// Byte assembly instead of pointer casts: no alignment assumptions, and the
// compiler still folds these into a single load + bswap.
inline uint16_t load16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>((static_cast<unsigned>(p[0]) << 8) | p[1]);
}

inline uint32_t load32(const uint8_t* p) noexcept {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

// All helpers below take offsets with off <= end <= capturedLength, so
// "end - off" never wraps and is the number of readable bytes.

DecodeStatus decodeL4(const uint8_t* data, size_t off, size_t end, uint8_t protocol,
                      uint8_t ipVersion, PacketView& out) noexcept {
  const size_t avail = end - off;
  const uint8_t* l4 = data + off;
  switch (protocol) {
    case IPPROTO_TCP:
      if (avail < kTcpMinHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL4;
      out.srcPort = load16(l4);
      out.dstPort = load16(l4 + 2);
      out.tcpFlags = l4[13];
      out.hasPorts = true;
      return DecodeStatus::kOk;
    case IPPROTO_UDP:
    case IPPROTO_UDPLITE:
      if (avail < kUdpHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL4;
      out.srcPort = load16(l4);
      out.dstPort = load16(l4 + 2);
      out.hasPorts = true;
      return DecodeStatus::kOk;
    case IPPROTO_SCTP:
      if (avail < kSctpCommonHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL4;
      out.srcPort = load16(l4);
      out.dstPort = load16(l4 + 2);
      out.hasPorts = true;
      return DecodeStatus::kOk;
    case IPPROTO_ICMP:
      // ICMPv4 inside IPv6 is meaningless; leave it as an opaque protocol.
      if (ipVersion != 4) return DecodeStatus::kOk;
      if (avail < kIcmpHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL4;
      out.icmpType = l4[0];
      out.icmpCode = l4[1];
      return DecodeStatus::kOk;
    case IPPROTO_ICMPV6:
      if (ipVersion != 6) return DecodeStatus::kOk;
      if (avail < kIcmpv6HeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL4;
      out.icmpType = l4[0];
      out.icmpCode = l4[1];
      return DecodeStatus::kOk;
    default:
      return DecodeStatus::kOk;
  }
}

DecodeStatus decodeIpv4(const uint8_t* data, size_t off, size_t len, PacketView& out) noexcept {
  const size_t avail = len - off;
  if (avail < kIpv4MinHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedIp;
  const uint8_t* ip = data + off;
  if ((ip[0] >> 4) != 4) [[unlikely]] return DecodeStatus::kBadIpVersion;
  const size_t headerLength = static_cast<size_t>(ip[0] & 0x0F) * 4;
  if (headerLength < kIpv4MinHeaderLength || headerLength > avail) [[unlikely]] {
    return DecodeStatus::kBadIpHeaderLength;
  }
  const size_t totalLength = load16(ip + 2);
  if (totalLength < headerLength) [[unlikely]] return DecodeStatus::kBadIpTotalLength;

  out.ipVersion = 4;
  out.src = ip + 12;
  out.dst = ip + 16;
  out.l4Protocol = ip[9];
  const uint16_t fragment = load16(ip + 6);
  const uint16_t fragmentOffset = fragment & kIpv4FragmentOffsetMask;
  const bool moreFragments = (fragment & kIpv4MoreFragments) != 0;
  out.isFragment = moreFragments || fragmentOffset != 0;
  out.isFirstFragment = moreFragments && fragmentOffset == 0;
  if (fragmentOffset != 0) return DecodeStatus::kOk;

  // Bound L4 by the total length too, so Ethernet padding is never parsed as
  // a header; a total length beyond the capture is just snaplen.
  const size_t end = off + (totalLength < avail ? totalLength : avail);
  return decodeL4(data, off + headerLength, end, out.l4Protocol, 4, out);
}

inline bool isIpv6Extension(uint8_t next) noexcept {
  switch (next) {
    case IPPROTO_HOPOPTS:
    case IPPROTO_ROUTING:
    case IPPROTO_FRAGMENT:
    case IPPROTO_DSTOPTS:
    case IPPROTO_AH:
    case IPPROTO_MH:
    case kIpprotoHip:
    case kIpprotoShim6:
      return true;
    default:
      return false;
  }
}

DecodeStatus decodeIpv6(const uint8_t* data, size_t off, size_t len, PacketView& out) noexcept {
  const size_t avail = len - off;
  if (avail < kIpv6HeaderLength) [[unlikely]] return DecodeStatus::kTruncatedIp;
  const uint8_t* ip = data + off;
  if ((ip[0] >> 4) != 6) [[unlikely]] return DecodeStatus::kBadIpVersion;

  out.ipVersion = 6;
  out.src = ip + 8;
  out.dst = ip + 24;
  const size_t payloadLength = load16(ip + 4);
  // Payload length 0 means a jumbogram (RFC 2675) or a TSO capture: only the
  // capture bounds it then.
  size_t end = len;
  if (payloadLength != 0 && payloadLength < avail - kIpv6HeaderLength) {
    end = off + kIpv6HeaderLength + payloadLength;
  }

  uint8_t next = ip[6];
  size_t cur = off + kIpv6HeaderLength;
  for (uint8_t count = 0;; ++count) {
    if (!isIpv6Extension(next)) break;
    if (count == kMaxIpv6Extensions || end - cur < kIpv6MinExtensionLength) [[unlikely]] {
      return DecodeStatus::kIpv6ExtensionChain;
    }
    const uint8_t* ext = data + cur;
    size_t extLength;
    if (next == IPPROTO_FRAGMENT) {
      const uint16_t fragmentOffset = load16(ext + 2) >> 3;
      out.isFragment = true;
      out.isFirstFragment = fragmentOffset == 0;
      if (fragmentOffset != 0) {
        // Later fragments carry no L4 header; report what the chain says follows.
        out.l4Protocol = ext[0];
        return DecodeStatus::kOk;
      }
      extLength = kIpv6FragmentHeaderLength;
    } else if (next == IPPROTO_AH) {
      extLength = (static_cast<size_t>(ext[1]) + 2) * 4;
    } else {
      extLength = (static_cast<size_t>(ext[1]) + 1) * 8;
    }
    if (extLength > end - cur) [[unlikely]] return DecodeStatus::kIpv6ExtensionChain;
    next = ext[0];
    cur += extLength;
  }

  // ESP (50) and no-next-header (59) land here too: decodeL4 treats them as
  // opaque protocols and returns kOk.
  out.l4Protocol = next;
  return decodeL4(data, cur, end, next, 6, out);
}

DecodeStatus decodeIpByVersion(const uint8_t* data, size_t off, size_t len,
                               PacketView& out) noexcept {
  if (off >= len) [[unlikely]] return DecodeStatus::kTruncatedIp;
  switch (data[off] >> 4) {
    case 4:
      return decodeIpv4(data, off, len, out);
    case 6:
      return decodeIpv6(data, off, len, out);
    default:
      return DecodeStatus::kBadIpVersion;
  }
}

// Shared by Ethernet and both SLL variants (libpcap re-inserts stripped VLAN
// tags into cooked captures too). Ethertypes below 1536 are 802.3 length
// fields (LLC/SNAP): they fall through to kNotIp with every unknown type.
DecodeStatus decodeEtherType(const uint8_t* data, size_t off, size_t len, uint16_t etherType,
                             PacketView& out) noexcept {
  while (etherType == kEtherTypeVlan || etherType == kEtherTypeQinQ ||
         etherType == kEtherTypeQinQLegacy) {
    if (out.vlanTags == kMaxVlanTags) [[unlikely]] return DecodeStatus::kTooManyVlanTags;
    if (len - off < kVlanTagLength) [[unlikely]] return DecodeStatus::kTruncatedL2;
    if (out.vlanTags == 0) out.outerVlanId = load16(data + off) & kVlanIdMask;
    ++out.vlanTags;
    etherType = load16(data + off + 2);
    off += kVlanTagLength;
  }
  switch (etherType) {
    case kEtherTypeIpv4:
      return decodeIpv4(data, off, len, out);
    case kEtherTypeIpv6:
      return decodeIpv6(data, off, len, out);
    default:
      return DecodeStatus::kNotIp;
  }
}

DecodeStatus decodeNull(const uint8_t* data, size_t len, PacketView& out) noexcept {
  if (len < kNullHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL2;
  // NULL is in the capturing host's byte order and LOOP in network order, but
  // files travel between hosts and some writers get LOOP wrong. AF values are
  // small, so a nonzero high half means the other byte order.
  uint32_t family = load32(data);
  if ((family & 0xFFFF0000U) != 0) family = __builtin_bswap32(family);
  switch (family) {
    case kAfInet:
      return decodeIpv4(data, kNullHeaderLength, len, out);
    case kAfInet6Linux:
    case kAfInet6Windows:
    case kAfInet6NetBsd:
    case kAfInet6FreeBsd:
    case kAfInet6Darwin:
      return decodeIpv6(data, kNullHeaderLength, len, out);
    default:
      return DecodeStatus::kNotIp;
  }
}

}  // namespace

const char* decodeStatusName(DecodeStatus s) noexcept {
  switch (s) {
    case DecodeStatus::kOk:
      return "ok";
    case DecodeStatus::kNotIp:
      return "not_ip";
    case DecodeStatus::kUnsupportedLinkType:
      return "unsupported_link_type";
    case DecodeStatus::kTruncatedL2:
      return "truncated_l2";
    case DecodeStatus::kTooManyVlanTags:
      return "too_many_vlan_tags";
    case DecodeStatus::kTruncatedIp:
      return "truncated_ip";
    case DecodeStatus::kBadIpVersion:
      return "bad_ip_version";
    case DecodeStatus::kBadIpHeaderLength:
      return "bad_ip_header_length";
    case DecodeStatus::kBadIpTotalLength:
      return "bad_ip_total_length";
    case DecodeStatus::kIpv6ExtensionChain:
      return "ipv6_extension_chain";
    case DecodeStatus::kTruncatedL4:
      return "truncated_l4";
    case DecodeStatus::kCount:
      break;
  }
  return "unknown";
}

bool isLinkTypeSupported(int linkType) noexcept {
  switch (linkType) {
    case kLinkTypeNull:
    case kLinkTypeEthernet:
    case kLinkTypeRawDlt:
    case kLinkTypeRawOpenBsd:
    case kLinkTypeRaw:
    case kLinkTypeLoop:
    case kLinkTypeLinuxSll:
    case kLinkTypeIpv4:
    case kLinkTypeIpv6:
    case kLinkTypeLinuxSll2:
      return true;
    default:
      return false;
  }
}

DecodeStatus decodePacket(int linkType, const uint8_t* data, size_t capturedLength,
                          PacketView& out) noexcept {
  out = PacketView{};
  const size_t len = data != nullptr ? capturedLength : 0;
  switch (linkType) {
    case kLinkTypeEthernet:
      if (len < kEthernetHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL2;
      return decodeEtherType(data, kEthernetHeaderLength, len, load16(data + kEthernetTypeOffset),
                             out);
    case kLinkTypeRawDlt:
    case kLinkTypeRawOpenBsd:
    case kLinkTypeRaw:
      return decodeIpByVersion(data, 0, len, out);
    case kLinkTypeIpv4:
      return decodeIpv4(data, 0, len, out);
    case kLinkTypeIpv6:
      return decodeIpv6(data, 0, len, out);
    case kLinkTypeLinuxSll:
      if (len < kSllHeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL2;
      return decodeEtherType(data, kSllHeaderLength, len, load16(data + kSllProtocolOffset), out);
    case kLinkTypeLinuxSll2:
      if (len < kSll2HeaderLength) [[unlikely]] return DecodeStatus::kTruncatedL2;
      return decodeEtherType(data, kSll2HeaderLength, len, load16(data), out);
    case kLinkTypeNull:
    case kLinkTypeLoop:
      return decodeNull(data, len, out);
    default:
      return DecodeStatus::kUnsupportedLinkType;
  }
}

}  // namespace garda::sensor
