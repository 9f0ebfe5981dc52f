// Bounds-checked, zero-copy, allocation-free packet decoder for the capture
// hot path. Every read is checked against the captured length; nothing here
// allocates, throws, or keeps state between calls.
#pragma once

#include <cstddef>
#include <cstdint>

namespace garda::sensor {

// pcap LINKTYPE_/DLT_ values accepted by decodePacket().
inline constexpr int kLinkTypeNull = 0;          // 4-byte AF header, capturing host's byte order
inline constexpr int kLinkTypeEthernet = 1;      // EN10MB
inline constexpr int kLinkTypeRawDlt = 12;       // DLT_RAW as most OSes number it
inline constexpr int kLinkTypeRawOpenBsd = 14;   // DLT_RAW on OpenBSD
inline constexpr int kLinkTypeRaw = 101;         // LINKTYPE_RAW as stored in files
inline constexpr int kLinkTypeLoop = 108;        // 4-byte AF header, network byte order
inline constexpr int kLinkTypeLinuxSll = 113;    // Linux cooked capture v1
inline constexpr int kLinkTypeIpv4 = 228;
inline constexpr int kLinkTypeIpv6 = 229;
inline constexpr int kLinkTypeLinuxSll2 = 276;   // Linux cooked capture v2

inline constexpr uint8_t kMaxVlanTags = 4;
inline constexpr uint8_t kMaxIpv6Extensions = 8;

// Why a frame could not be fully decoded. kOk and kNotIp are not errors; every
// other value below kCount is one, and decodeStatusName() gives each a stable
// metric label. kCount is a sentinel, never returned.
enum class DecodeStatus : uint8_t {
  kOk = 0,              // IPv4/IPv6 decoded (L4 fields filled where present)
  kNotIp,               // valid L2, but not IP (ARP, STP, LLDP, ...): counted as "other"
  kUnsupportedLinkType,
  kTruncatedL2,         // frame shorter than its link header / VLAN tags
  kTooManyVlanTags,     // more than kMaxVlanTags
  kTruncatedIp,
  kBadIpVersion,        // version nibble does not match the ethertype/link type
  kBadIpHeaderLength,   // IPv4 IHL < 5 or beyond the captured bytes
  kBadIpTotalLength,    // IPv4 total length < IHL*4 (larger than the capture is fine: snaplen)
  kIpv6ExtensionChain,  // extension chain truncated or longer than kMaxIpv6Extensions
  kTruncatedL4,         // first fragment/unfragmented packet too short for its TCP/UDP/ICMP header
  kCount
};

inline constexpr size_t kDecodeStatusCount = static_cast<size_t>(DecodeStatus::kCount);

// Stable snake_case names ("ok", "not_ip", "truncated_l4", ...), used as metric
// labels; never null ("unknown" for values outside the enum).
const char* decodeStatusName(DecodeStatus s) noexcept;

inline constexpr bool isDecodeError(DecodeStatus s) noexcept {
  return s != DecodeStatus::kOk && s != DecodeStatus::kNotIp;
}

// What decodePacket() found in one frame. Non-owning: src/dst point into the
// caller's frame and are valid only while that frame is. decodePacket() resets
// the whole view first, so a reused view never carries fields from an earlier
// frame. Invariant: ipVersion != 0 exactly when the fixed IP header was
// validated, and then src/dst are valid, even if the status is a later error
// (kTruncatedL4, kIpv6ExtensionChain). Plain value; one per thread.
struct PacketView {
  uint8_t ipVersion = 0;          // 4, 6, or 0
  const uint8_t* src = nullptr;   // 4 or 16 bytes inside the frame
  const uint8_t* dst = nullptr;
  uint8_t l4Protocol = 0;         // IPPROTO_* after IPv6 extension headers; ESP(50)/NONE(59) end the chain
  bool isFragment = false;        // IPv4 MF or offset != 0; IPv6 fragment header present
  bool isFirstFragment = false;   // fragment with offset 0 (L4 header present)
  bool hasPorts = false;          // TCP/UDP (also UDP-Lite, SCTP) header decoded
  uint16_t srcPort = 0;           // host byte order
  uint16_t dstPort = 0;
  uint8_t tcpFlags = 0;           // raw flags byte: FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80
  uint8_t icmpType = 0;           // ICMP (over IPv4) or ICMPv6 (over IPv6)
  uint8_t icmpCode = 0;
  uint8_t vlanTags = 0;           // number of 802.1Q/802.1ad tags seen
  uint16_t outerVlanId = 0;       // VID (12 bits) of the first tag, 0 if untagged
};

// Decodes one captured frame. linkType is the value from pcap_datalink().
// Supported: 1 EN10MB (VLAN tags 0x8100/0x88a8/0x9100, QinQ), 0 NULL and
// 108 LOOP (AF header in either byte order), 12/14/101 RAW, 228 IPV4,
// 229 IPV6, 113 LINUX_SLL, 276 LINUX_SLL2. IP-in-IP is not descended: the
// outer header is reported. Never reads outside [data, data + capturedLength).
DecodeStatus decodePacket(int linkType, const uint8_t* data, size_t capturedLength,
                          PacketView& out) noexcept;

bool isLinkTypeSupported(int linkType) noexcept;

}  // namespace garda::sensor
