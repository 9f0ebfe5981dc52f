// Writes the seed corpora of envelope_fuzz and packet_fuzz:
//
//   fuzz_make_seeds <tests/fuzz/corpus> <shared/data>
//
// envelope/: one real encoded Envelope per body kind (and per query command),
//   built with the same builders the daemons use; the summaries come from
//   encodeSummary(), one of them from counting a real attack capture. Each
//   packed, as the wire carries it, and flat (flat-NAME).
// packet/:   frames from the shared captures, one per kind of outcome
//   (link type, decode status, IP version, L4 protocol, fragment, VLAN), cut
//   to kMaxFrameBytes, plus IP packets re-wrapped in the link types no
//   capture uses. Format: one byte, the index into packet_fuzz.cpp's
//   kLinkTypes, then the frame.
// packed/:  the envelope seeds in the packed encoding, each after a 0 byte
//   (packed_fuzz's shape byte: read them as a message).
// The config/ seeds are written by hand (the operator guide's examples and
// broken variants of them).
//
// Output is deterministic for the same inputs, so a rerun shows no diff.
#include <pcap/pcap.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "common/envelope.h"
#include "common/ip.h"
#include "schemas/garda.capnp.h"
#include "sensor/capture/source.h"
#include "sensor/decode.h"
#include "sensor/uplink.h"
#include "sensor/window.h"

namespace fs = std::filesystem;

namespace garda::fuzz {
namespace {

using common::IpAddress;
using common::Prefix;
using Bytes = std::vector<uint8_t>;

// The same table, in the same order, as packet_fuzz.cpp's kLinkTypes.
constexpr int kLinkTypes[] = {sensor::kLinkTypeEthernet, sensor::kLinkTypeNull,
                              sensor::kLinkTypeLoop,     sensor::kLinkTypeRawDlt,
                              sensor::kLinkTypeRawOpenBsd, sensor::kLinkTypeRaw,
                              sensor::kLinkTypeIpv4,     sensor::kLinkTypeIpv6,
                              sensor::kLinkTypeLinuxSll, sensor::kLinkTypeLinuxSll2};
constexpr size_t kMaxFrameBytes = 256;
constexpr size_t kMaxCaptureSeeds = 50;
constexpr size_t kFramesPerFile = 400;
// At most this many seeds from one capture, so that the 50 spread over many.
constexpr size_t kSeedsPerFile = 2;
constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kWindowStart = 1'700'000'000 * kSec;

int linkIndex(int linkType) {
  for (size_t i = 0; i < std::size(kLinkTypes); ++i)
    if (kLinkTypes[i] == linkType) return static_cast<int>(i);
  return -1;
}

void writeFile(const fs::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// ---- envelopes -------------------------------------------------------------

Prefix prefix(const char* text) { return *Prefix::parse(text); }

// initEnvelope() stamps the wall clock; seeds carry a fixed time instead, so
// that regenerating them changes nothing.
std::string pinSendTime(const std::string& packed) {
  const std::string bytes =
      common::toFlat(std::span(reinterpret_cast<const uint8_t*>(packed.data()), packed.size()));
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), words.asBytes().size());
  capnp::FlatArrayMessageReader reader(words);
  capnp::MallocMessageBuilder copy;
  copy.setRoot(reader.getRoot<wire::Envelope>());
  copy.getRoot<wire::Envelope>().setSentAtNs(kWindowStart + kSec);
  return common::encodeMessage(copy);
}

// Every seed must be one the aggregator accepts, or be refused for the
// reason it was made for.
void writeEnvelopeBytes(const fs::path& dir, const std::string& name, const std::string& raw,
                        common::EnvelopeReject expected = common::EnvelopeReject::kNone) {
  const std::string bytes = pinSendTime(raw);
  common::EnvelopeDecoder check;
  auto r = check.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  if (r != expected)
    throw std::runtime_error("seed " + name + " is " +
                             (r == common::EnvelopeReject::kNone ? std::string("accepted")
                                                                 : std::string("rejected: ") +
                                                                       common::envelopeRejectName(r)) +
                             ", expected " + common::envelopeRejectName(expected) + ": " +
                             check.detail());
  writeFile(dir / name, bytes.data(), bytes.size());
  // The flat encoding too, which receivers still take from older releases.
  const std::string flat =
      common::toFlat(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  writeFile(dir / ("flat-" + name), flat.data(), flat.size());
}

void writeEnvelope(const fs::path& dir, const std::string& name, capnp::MessageBuilder& m,
                   common::EnvelopeReject expected = common::EnvelopeReject::kNone) {
  writeEnvelopeBytes(dir, name, common::encodeMessage(m), expected);
}

void fillOrder(wire::Order::Builder o, const char* id, wire::OrderAction action, bool remove) {
  o.setOrderId(id);
  o.setIncidentId("inc-20240101-0001");
  o.setAction(action);
  common::writePrefix(o.initSource(), prefix("203.0.113.0/24"));
  common::writePrefix(o.initDestination(), prefix("198.18.2.10/32"));
  o.setProtocol(17);
  o.setSourcePort(123);
  o.setDestinationPort(0);
  o.setRatePps(action == wire::OrderAction::RATE_LIMIT ? 1000 : 0);
  o.setExpiresAtNs(kWindowStart + 600 * kSec);
  o.setReason("udp reflection from ntp");
  o.setCreatedBy("planner");
  o.setRemove(remove);
}

sensor::WindowStats handMadeWindow() {
  sensor::WindowStats w;
  w.startNs = kWindowStart;
  w.windowMs = 1000;
  w.totals = {.packets = 1000, .bytes = 640000, .tcp = 600, .udp = 300, .icmp = 50, .other = 50};
  for (const char* a : {"198.18.2.10", "2001:db8:2::10"}) {
    sensor::VictimCounters v;
    v.address = *IpAddress::parse(a);
    v.packets = 400;
    v.bytes = 25600;
    v.vectorPackets[static_cast<size_t>(sensor::Vector::kTcpSyn)] = 300;
    v.vectorPackets[static_cast<size_t>(sensor::Vector::kUdpReflection)] = 100;
    v.vectorBytes[static_cast<size_t>(sensor::Vector::kTcpSyn)] = 19200;
    v.vectorBytes[static_cast<size_t>(sensor::Vector::kUdpReflection)] = 6400;
    v.reflectionPackets[static_cast<size_t>(sensor::reflectionPortIndex(123))] = 100;
    v.reflectionBytes[static_cast<size_t>(sensor::reflectionPortIndex(123))] = 6400;
    v.topSources = {{*IpAddress::parse("203.0.113.7"), 120, 3},
                    {*IpAddress::parse("2001:db8:ffff::1"), 80, 0}};
    v.topSrcPorts = {{123, 100}, {40000, 50}};
    v.topDstPorts = {{80, 300}};
    v.distinctSources = 57;
    w.victims.push_back(v);
  }
  w.outbound = {{*IpAddress::parse("198.18.2.20"), 30, 0}};
  w.victimsCut = 2;
  w.victimPacketsCut = 7;
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kTruncatedL4)] = 3;
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kNotIp)] = 40;
  return w;
}

// One window of a real attack capture, as the sensor would send it.
sensor::WindowStats captureWindow(const fs::path& pcapFile, const char* protectedPrefix) {
  common::PrefixSet protectedSet({prefix(protectedPrefix)});
  sensor::WindowCounter counter(protectedSet, 64, 0, {});
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(pcapFile.c_str(), err);
  if (!p) throw std::runtime_error(err);
  const int link = pcap_datalink(p);
  pcap_pkthdr* h;
  const u_char* d;
  for (int i = 0; i < 2000 && pcap_next_ex(p, &h, &d) == 1; ++i)
    counter.count({.timestampNs = kWindowStart, .wireLength = h->len, .capturedLength = h->caplen,
                   .linkType = link, .data = d});
  pcap_close(p);
  sensor::WindowStats w;
  counter.closeInto(w);
  w.startNs = kWindowStart;
  w.windowMs = 1000;
  return w;
}

void writeEnvelopeSeeds(const fs::path& dir, const fs::path& data) {
  fs::create_directories(dir);
  {
    capnp::MallocMessageBuilder m;
    auto h = common::initEnvelope(m).getBody().initHello();
    h.setSensorId("dukcapil");
    h.setBootId(0x1234abcd5678ef00ULL);
    h.setVersion("0.1.0");
    h.setOpd("Dinas Kependudukan dan Pencatatan Sipil");
    auto ps = h.initProtected(2);
    common::writePrefix(ps[0], prefix("198.18.2.0/24"));
    common::writePrefix(ps[1], prefix("2001:db8:2::/48"));
    h.setWindowMs(1000);
    h.setCaptureSource("afpacket:eth0");
    writeEnvelope(dir, "hello", m);
  }
  writeEnvelopeBytes(dir, "summary-handmade",
                     sensor::encodeSummary(handMadeWindow(), "dukcapil", 0x1234, 7, 12, 1));
  writeEnvelopeBytes(dir, "summary-empty",
                     sensor::encodeSummary(sensor::WindowStats{.startNs = kWindowStart,
                                                               .windowMs = 1000},
                                           "dukcapil", 0x1234, 1, 0, 0));
  writeEnvelopeBytes(dir, "summary-isakmp-reflection",
                     sensor::encodeSummary(
                         captureWindow(data / "pcaps/amp.UDP.isakmp.pcap", "10.10.10.0/24"),
                         "kominfo-jkt-1", 0x99, 3, 0, 0));
  {
    // A summary batch: two summaries (each a whole envelope, as sent alone)
    // and, third, bytes that are no envelope, which the aggregator skips.
    const std::string one =
        pinSendTime(sensor::encodeSummary(handMadeWindow(), "dukcapil", 0x1234, 8, 0, 0));
    const std::string two = pinSendTime(
        sensor::encodeSummary(sensor::WindowStats{.startNs = kWindowStart + kSec, .windowMs = 1000},
                              "dukcapil", 0x1234, 9, 0, 0));
    const std::string junk = "not an envelope";
    const std::string_view parts[] = {one, two, junk};
    writeEnvelopeBytes(dir, "summary-batch", common::encodeSummaryBatch(parts));
  }
  {
    capnp::MallocMessageBuilder m;
    auto a = common::initEnvelope(m).getBody().initAlert();
    a.setSensorId("dukcapil");
    a.setBootId(0x1234);
    a.setVictim(common::AddressBytes(*IpAddress::parse("198.18.2.10")));
    a.setVector(wire::Vector::TCP_SYN);
    a.setPackets(150000);
    a.setWindowStartNs(kWindowStart);
    a.setAtNs(kWindowStart + 400'000'000);
    a.setThresholdPps(100000);
    writeEnvelope(dir, "alert", m);
  }
  for (auto [name, status] : {std::pair{"stored", wire::AckStatus::STORED},
                              std::pair{"refused", wire::AckStatus::REFUSED}}) {
    capnp::MallocMessageBuilder m;
    auto a = common::initEnvelope(m).getBody().initAck();
    a.setBootId(0x1234);
    a.setSeq(7);
    a.setStatus(status);
    if (status == wire::AckStatus::REFUSED) a.setReason("this key is bound to sensor 'x'");
    writeEnvelope(dir, std::string("ack-") + name, m);
  }
  {
    // A batch: one message answering several summaries (Ack.more).
    capnp::MallocMessageBuilder m;
    auto a = common::initEnvelope(m).getBody().initAck();
    a.setBootId(0x1234);
    a.setSeq(7);
    a.setStatus(wire::AckStatus::STORED);
    auto more = a.initMore(3);
    for (unsigned i = 0; i < 3; ++i) {
      more[i].setBootId(0x1234);
      more[i].setSeq(8 + i);
      more[i].setStatus(i == 2 ? wire::AckStatus::THROTTLED : wire::AckStatus::DUPLICATE);
    }
    more[2].setReason("over this sensor's rate limit: resend later");
    writeEnvelope(dir, "ack-batch", m);
  }
  {
    capnp::MallocMessageBuilder m;
    fillOrder(common::initEnvelope(m).getBody().initOrder(), "ord-1", wire::OrderAction::DROP,
              false);
    writeEnvelope(dir, "order-drop", m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto s = common::initEnvelope(m).getBody().initOrderSync().initOrders(2);
    fillOrder(s[0], "ord-1", wire::OrderAction::DROP, false);
    fillOrder(s[1], "ord-2", wire::OrderAction::RATE_LIMIT, false);
    writeEnvelope(dir, "order-sync", m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto o = common::initEnvelope(m).getBody().initOrder();
    o.setOrderId("ord-3");
    o.setRemove(true);
    writeEnvelope(dir, "order-remove", m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto r = common::initEnvelope(m).getBody().initOrderReport();
    r.setOrderId("ord-1");
    r.setState(wire::OrderState::REJECTED);
    r.setReason("overlaps never_block 198.18.100.1/32");
    r.setPacketsDropped(0);
    r.setAtNs(kWindowStart);
    writeEnvelope(dir, "order-report", m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto h = common::initEnvelope(m).getBody().initHeartbeat();
    h.setSensorId("dukcapil");
    h.setBootId(0x1234);
    h.setAtNs(kWindowStart);
    h.setBacklog(3);
    h.setKernelDrops(17);
    writeEnvelope(dir, "heartbeat", m);
  }
  auto query = [&](const std::string& name, auto fill) {
    capnp::MallocMessageBuilder m;
    auto q = common::initEnvelope(m).getBody().initQuery();
    q.setRequestId(42);
    fill(q.getCommand());
    writeEnvelope(dir, "query-" + name, m);
  };
  query("status", [](auto c) { c.setStatus(); });
  query("history", [](auto c) {
    auto h = c.initHistory();
    h.setSensorId("dukcapil");
    h.setSinceNs(kWindowStart);
    h.setLimit(100);
  });
  query("incidents", [](auto c) { c.initIncidents().setOpenOnly(true); });
  query("incident-show", [](auto c) { c.setIncidentShow("inc-20240101-0001"); });
  query("top", [](auto c) {
    auto t = c.initTop();
    t.setSources(true);
    t.setSensorId("dukcapil");
    t.setLimit(10);
  });
  query("block-add", [](auto c) {
    auto b = c.initBlockAdd();
    common::writePrefix(b.initPrefix(), prefix("2001:db8:bad::/48"));
    b.setTtlMs(600000);
    b.setReason("manual");
  });
  query("block-list", [](auto c) { c.setBlockList(); });
  query("block-remove", [](auto c) { c.setBlockRemove("ord-1"); });
  query("order-approve", [](auto c) { c.setOrderApprove("ord-1"); });
  query("order-reject", [](auto c) { c.setOrderReject("ord-2"); });
  query("incident-pcap", [](auto c) { c.setIncidentPcap("inc-20240101-0001"); });
  query("incident-export", [](auto c) {
    auto x = c.initIncidentExport();
    x.setIncidentId("inc-20240101-0001");
    x.setFormat("stix");
  });
  {
    capnp::MallocMessageBuilder m;
    auto r = common::initEnvelope(m).getBody().initReply();
    r.setRequestId(42);
    r.setOk(true);
    r.setJson(R"({"sensors":[{"id":"dukcapil","up":true,"last_window_packets":1000}]})");
    const uint8_t pcapMagic[] = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0};
    r.setData(capnp::Data::Reader(pcapMagic, sizeof(pcapMagic)));
    writeEnvelope(dir, "reply-ok", m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto r = common::initEnvelope(m).getBody().initEvidenceRequest();
    r.setIncidentId("inc-20240101T000000Z-000001");
    r.setRequestId(7);
    common::writePrefix(r.initVictim(), prefix("198.18.2.10/32"));
    r.setProtocol(17);
    r.setSourcePort(53);
    r.setMaxPackets(100);
    r.setSnapLen(1600);
    r.setDeadlineNs(kWindowStart);
    writeEnvelope(dir, "evidence-request", m);
  }
  // Evidence: a sane one, and one over the packet bound (insane).
  for (unsigned count : {2u, 1001u}) {
    capnp::MallocMessageBuilder m;
    auto e = common::initEnvelope(m).getBody().initEvidence();
    e.setIncidentId("inc-20240101T000000Z-000001");
    e.setRequestId(7);
    e.setSensorId("dukcapil");
    e.setLinkType(1);
    auto packets = e.initPackets(count);
    const uint8_t frame[64] = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45};
    for (unsigned i = 0; i < count; ++i) {
      packets[i].setTsNs(kWindowStart + i);
      packets[i].setOrigLen(1514);
      packets[i].setData(capnp::Data::Reader(frame, sizeof(frame)));
    }
    e.setDone(true);
    e.setReason("full");
    if (count > 1000)
      writeEnvelope(dir, "evidence-too-many", m, common::EnvelopeReject::kInsane);
    else
      writeEnvelope(dir, "evidence", m);
  }
  {
    capnp::MallocMessageBuilder m;
    auto r = common::initEnvelope(m).getBody().initReply();
    r.setRequestId(42);
    r.setOk(false);
    r.setError("forbidden: 'analyst-1' has role viewer");
    writeEnvelope(dir, "reply-error", m);
  }
}

// ---- packets ---------------------------------------------------------------

std::string stem(const fs::path& p) {
  std::string s = p.stem().string();
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return s.substr(0, 40);
}

void writePacket(const fs::path& dir, const std::string& name, int linkType, const uint8_t* frame,
                 size_t length) {
  Bytes b;
  b.push_back(static_cast<uint8_t>(linkIndex(linkType)));
  b.insert(b.end(), frame, frame + std::min(length, kMaxFrameBytes));
  writeFile(dir / name, b.data(), b.size());
}

struct Sample {
  Bytes ip;  // an IP packet (no link header), cut to kMaxFrameBytes
};

// Where the IP header starts in a decoded frame (the frame's own src pointer
// minus the fixed offset of the source address in the IP header).
size_t ipOffset(const sensor::PacketView& v, const uint8_t* frame) {
  return static_cast<size_t>(v.src - frame) - (v.ipVersion == 4 ? 12 : 8);
}

void writePacketSeeds(const fs::path& dir, const fs::path& data) {
  fs::create_directories(dir);
  std::vector<fs::path> files;
  for (const char* sub : {"pcaps", "tcpdump-tests"})
    for (const auto& e : fs::directory_iterator(data / sub))
      if (e.is_regular_file() && e.path().extension() != ".tsv") files.push_back(e.path());
  // Attack captures first, then the peer's suite; each in name order.
  std::sort(files.begin(), files.end());

  std::set<std::tuple<int, int, int, int, bool, bool, bool, bool>> seen;
  std::vector<Sample> v4, v6;
  size_t written = 0;
  for (const auto& f : files) {
    if (written >= kMaxCaptureSeeds) break;
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = pcap_open_offline(f.c_str(), err);
    if (!p) continue;
    const int link = pcap_datalink(p);
    if (!sensor::isLinkTypeSupported(link)) {
      pcap_close(p);
      continue;
    }
    pcap_pkthdr* h;
    const u_char* d;
    size_t fromFile = 0;
    for (size_t i = 0; i < kFramesPerFile && written < kMaxCaptureSeeds && fromFile < kSeedsPerFile &&
                       pcap_next_ex(p, &h, &d) == 1;
         ++i) {
      const size_t len = std::min<size_t>(h->caplen, kMaxFrameBytes);
      sensor::PacketView v;
      auto st = sensor::decodePacket(link, d, len, v);
      auto key = std::make_tuple(link, static_cast<int>(st), int{v.ipVersion},
                                 int{v.l4Protocol}, v.isFragment, v.isFirstFragment,
                                 v.vlanTags > 0, v.hasPorts);
      if (st == sensor::DecodeStatus::kOk && !v.isFragment && v.vlanTags == 0) {
        auto& samples = v.ipVersion == 4 ? v4 : v6;
        if (samples.size() < 2) samples.push_back({Bytes(d + ipOffset(v, d), d + len)});
      }
      if (!seen.insert(key).second) continue;
      writePacket(dir,
                  std::string("capture-") + std::to_string(link) + "-" + stem(f) + "-" +
                      std::to_string(i),
                  link, d, len);
      ++written;
      ++fromFile;
    }
    pcap_close(p);
  }

  // Link types no capture here uses: the same IP packets behind their headers.
  auto wrap = [&](const std::string& name, int linkType, Bytes header, const Bytes& ip) {
    header.insert(header.end(), ip.begin(), ip.end());
    writePacket(dir, "wrapped-" + name, linkType, header.data(), header.size());
  };
  for (size_t k = 0; k < v4.size() && k < 1; ++k) {
    const Bytes& ip = v4[k].ip;
    wrap("loop-v4", sensor::kLinkTypeLoop, {0, 0, 0, 2}, ip);
    wrap("null-le-v4", sensor::kLinkTypeNull, {2, 0, 0, 0}, ip);
    wrap("raw-openbsd-v4", sensor::kLinkTypeRawOpenBsd, {}, ip);
    wrap("raw-dlt-v4", sensor::kLinkTypeRawDlt, {}, ip);
    // SLL2: protocol, reserved, ifindex, hatype, pkttype, halen, address[8].
    wrap("sll2-v4", sensor::kLinkTypeLinuxSll2,
         {0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0}, ip);
  }
  for (size_t k = 0; k < v6.size() && k < 1; ++k) {
    const Bytes& ip = v6[k].ip;
    wrap("loop-v6-bsd", sensor::kLinkTypeLoop, {0, 0, 0, 24}, ip);
    wrap("null-le-v6-darwin", sensor::kLinkTypeNull, {30, 0, 0, 0}, ip);
    wrap("sll2-v6", sensor::kLinkTypeLinuxSll2,
         {0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 0x02, 0, 0, 0, 0, 1, 0, 0}, ip);
    wrap("ipv6-linktype", sensor::kLinkTypeIpv6, {}, ip);
  }
}

void writePackedSeeds(const fs::path& dir, const fs::path& envelopes) {
  fs::create_directories(dir);
  std::vector<fs::path> names;
  for (const auto& e : fs::directory_iterator(envelopes))
    if (!e.path().filename().string().starts_with("flat-")) names.push_back(e.path());
  std::sort(names.begin(), names.end());
  for (const auto& path : names) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string flat =
        common::toFlat(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    const std::string seed =
        std::string(1, '\0') +
        common::packFlat(std::span(reinterpret_cast<const uint8_t*>(flat.data()), flat.size()));
    writeFile(dir / path.filename(), seed.data(), seed.size());
  }
}

}  // namespace
}  // namespace garda::fuzz

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: fuzz_make_seeds <tests/fuzz/corpus> <shared/data>\n";
    return 2;
  }
  try {
    const fs::path out = argv[1];
    const fs::path data = argv[2];
    garda::fuzz::writeEnvelopeSeeds(out / "envelope", data);
    garda::fuzz::writePacketSeeds(out / "packet", data);
    garda::fuzz::writePackedSeeds(out / "packed", out / "envelope");
  } catch (const std::exception& e) {
    std::cerr << "fuzz_make_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
