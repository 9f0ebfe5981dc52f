// libFuzzer target: EnvelopeDecoder::decode() on arbitrary bytes, as the
// aggregator's ingest and console server and the sensor's uplink receive them.
//
// Contract checked: decode() never crashes or trips a sanitizer, and gives
// the same answer for the same bytes whether or not they are word-aligned.
// An Envelope it accepts (kNone) is then read once by its consumer, the way
// that consumer reads it; that read must not crash either.
//
// decode() checks the values consumers rely on, not every pointer: a Text
// field it does not look at may still be a struct pointer or lack its NUL, and
// reading it then throws kj::Exception (a std::exception: the aggregator's
// ingest and console server catch it; the sensor's uplink and the console
// client let it end the program). By default that is tolerated here; with
// GARDA_FUZZ_STRICT_ENVELOPE=1 in the environment it aborts, to hunt for such
// envelopes (see tests/fuzz/crashes/envelope-*).
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "common/envelope.h"
#include "common/ip.h"
#include "schemas/garda.capnp.h"
#include "sensor/enforce/enforcer.h"
#include "sensor/orders.h"

namespace garda::common {
namespace {

// Every value read goes through here so the reads cannot be optimised away.
volatile uint64_t gSink = 0;

// Unsigned: wraps, never overflows.
void use(uint64_t v) { gSink = gSink + v; }
void use(capnp::Text::Reader t) { use(std::string(t.cStr()).size()); }
void use(capnp::Data::Reader d) {
  for (uint8_t b : d) use(b);
}

void useAddress(capnp::Data::Reader d) {
  if (auto a = readAddress(d)) use(a->toString().size());
}

void usePrefix(wire::Prefix::Reader p) {
  use(p.getLength());
  if (auto q = readPrefix(p)) use(q->toString().size());
}

void usePorts(capnp::List<wire::PortCount>::Reader ports) {
  for (auto p : ports) {
    use(p.getPort());
    use(p.getPackets());
    use(p.getBytes());
  }
}

void useSources(capnp::List<wire::SourceCount>::Reader sources) {
  for (auto s : sources) {
    useAddress(s.getAddress());
    use(s.getPackets());
    use(s.getError());
  }
}

// Everything in a stored summary, as the aggregator's history and incident
// views read it back from the store.
void readStoredSummary(wire::Summary::Reader s) {
  use(s.getSensorId());
  use(s.getBootId());
  use(s.getSeq());
  use(static_cast<uint64_t>(s.getWindowStartNs()));
  use(s.getWindowMs());
  auto t = s.getTotals();
  for (uint64_t n : {t.getPackets(), t.getBytes(), t.getTcp(), t.getUdp(), t.getIcmp(), t.getOther()})
    use(n);
  for (auto v : s.getVictims()) {
    useAddress(v.getAddress());
    use(v.getPackets());
    use(v.getBytes());
    for (auto vc : v.getVectors()) {
      use(static_cast<uint64_t>(vc.getVector()));
      use(vc.getPackets());
      use(vc.getBytes());
    }
    usePorts(v.getReflectionPorts());
    useSources(v.getTopSources());
    use(v.getDistinctSources());
    usePorts(v.getTopSrcPorts());
    usePorts(v.getTopDstPorts());
  }
  use(s.getVictimsCut());
  use(s.getKernelDrops());
  for (auto r : s.getDecodeErrors()) {
    use(r.getReason());
    use(r.getCount());
  }
  useSources(s.getOutbound());
  use(s.getDroppedSummaries());
  use(s.getVictimPacketsCut());
}

// How older aggregators stored a summary (copied into a message of its own);
// history still reads such copies back. (Ingest now stores the envelope as
// it came, which the decode above already covers.)
void consumeSummary(wire::Summary::Reader sum) {
  use(sum.getSensorId());
  capnp::MallocMessageBuilder copy;
  copy.setRoot(sum);
  std::string stored = encodeMessage(copy, WireEncoding::kFlat);
  use(sum.getBootId());
  use(sum.getSeq());
  use(sum.getKernelDrops());
  use(static_cast<uint64_t>(sum.getWindowStartNs()));
  use(sum.getTotals().getPackets());
  use(sum.getWindowMs());

  // As QueryService::history reads it from the store (aggregator/query.cpp).
  if (stored.size() % sizeof(capnp::word) != 0) abort();
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(stored.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), stored.data(), stored.size());
  capnp::FlatArrayMessageReader reader(words);
  readStoredSummary(reader.getRoot<wire::Summary>());
}

void consumeOrder(wire::Order::Reader o) {
  use(o.getOrderId());
  use(o.getIncidentId());
  use(static_cast<uint64_t>(o.getAction()));
  usePrefix(o.getSource());
  usePrefix(o.getDestination());
  use(o.getProtocol());
  use(o.getSourcePort());
  use(o.getDestinationPort());
  use(o.getRatePps());
  use(static_cast<uint64_t>(o.getExpiresAtNs()));
  use(o.getReason());
  use(o.getCreatedBy());
  use(o.getRemove());
}

void consumeQuery(wire::Query::Reader q) {
  use(q.getRequestId());
  auto c = q.getCommand();
  switch (c.which()) {
    case wire::Query::Command::STATUS:
    case wire::Query::Command::BLOCK_LIST: break;
    case wire::Query::Command::HISTORY: {
      auto h = c.getHistory();
      use(h.getSensorId());
      use(static_cast<uint64_t>(h.getSinceNs()));
      use(static_cast<uint64_t>(h.getUntilNs()));
      use(h.getLimit());
      use(h.getPoints());
      use(h.getVictim());
      break;
    }
    case wire::Query::Command::INCIDENTS:
      use(c.getIncidents().getOpenOnly());
      use(static_cast<uint64_t>(c.getIncidents().getSinceNs()));
      break;
    case wire::Query::Command::INCIDENT_SHOW: use(c.getIncidentShow()); break;
    case wire::Query::Command::TOP: {
      auto t = c.getTop();
      use(t.getSources());
      use(static_cast<uint64_t>(t.getSinceNs()));
      use(t.getSensorId());
      use(t.getLimit());
      break;
    }
    case wire::Query::Command::BLOCK_ADD: {
      auto b = c.getBlockAdd();
      usePrefix(b.getPrefix());
      use(b.getTtlMs());
      use(b.getReason());
      break;
    }
    case wire::Query::Command::BLOCK_REMOVE: use(c.getBlockRemove()); break;
    case wire::Query::Command::ORDER_APPROVE: use(c.getOrderApprove()); break;
    case wire::Query::Command::ORDER_REJECT: use(c.getOrderReject()); break;
    case wire::Query::Command::INCIDENT_PCAP: use(c.getIncidentPcap()); break;
    case wire::Query::Command::INCIDENT_EXPORT: {
      auto x = c.getIncidentExport();
      use(x.getIncidentId());
      use(x.getFormat());
      break;
    }
    case wire::Query::Command::AUDIT: {
      auto a = c.getAudit();
      use(static_cast<uint64_t>(a.getSinceNs()));
      use(a.getLimit());
      break;
    }
  }
}

// Reads the accepted envelope once, as the consumer of its body kind does
// (aggregator ingest, console server, sensor uplink, console client).
void consume(wire::Envelope::Reader e) {
  use(e.getVersion());
  use(static_cast<uint64_t>(e.getSentAtNs()));
  auto body = e.getBody();
  switch (body.which()) {
    case wire::Envelope::Body::HELLO: {
      auto h = body.getHello();
      use(h.getSensorId());
      use(h.getBootId());
      use(h.getOpd());
      use(h.getVersion());
      use(h.getWindowMs());
      use(h.getCaptureSource());
      for (auto p : h.getProtected()) usePrefix(p);
      break;
    }
    case wire::Envelope::Body::SUMMARY: consumeSummary(body.getSummary()); break;
    case wire::Envelope::Body::ALERT: {
      auto a = body.getAlert();
      use(a.getSensorId());
      use(a.getBootId());
      useAddress(a.getVictim());
      use(static_cast<uint64_t>(a.getVector()));
      use(a.getPackets());
      use(static_cast<uint64_t>(a.getWindowStartNs()));
      use(static_cast<uint64_t>(a.getAtNs()));
      use(a.getThresholdPps());
      break;
    }
    case wire::Envelope::Body::ACK: {
      auto a = body.getAck();
      use(a.getBootId());
      use(a.getSeq());
      use(static_cast<uint64_t>(a.getStatus()));
      use(a.getReason());
      for (auto more : a.getMore()) {  // the sanity check allows no deeper nesting
        use(more.getBootId());
        use(more.getSeq());
        use(static_cast<uint64_t>(more.getStatus()));
        use(more.getReason());
      }
      break;
    }
    case wire::Envelope::Body::ORDER: consumeOrder(body.getOrder()); break;
    case wire::Envelope::Body::ORDER_SYNC:
      for (auto o : body.getOrderSync().getOrders()) consumeOrder(o);
      break;
    case wire::Envelope::Body::ORDER_REPORT: {
      auto r = body.getOrderReport();
      use(r.getOrderId());
      use(static_cast<uint64_t>(r.getState()));
      use(r.getReason());
      use(r.getPacketsDropped());
      use(static_cast<uint64_t>(r.getAtNs()));
      break;
    }
    case wire::Envelope::Body::HEARTBEAT: {
      auto h = body.getHeartbeat();
      use(h.getSensorId());
      use(h.getBootId());
      use(static_cast<uint64_t>(h.getAtNs()));
      use(h.getBacklog());
      use(h.getKernelDrops());
      break;
    }
    case wire::Envelope::Body::QUERY: consumeQuery(body.getQuery()); break;
    case wire::Envelope::Body::EVIDENCE_REQUEST: {
      auto r = body.getEvidenceRequest();
      use(r.getIncidentId());
      use(r.getRequestId());
      usePrefix(r.getVictim());
      use(r.getProtocol());
      use(r.getSourcePort());
      use(r.getDestinationPort());
      use(r.getMaxPackets());
      use(r.getSnapLen());
      use(static_cast<uint64_t>(r.getDeadlineNs()));
      break;
    }
    case wire::Envelope::Body::EVIDENCE: {
      auto e = body.getEvidence();
      use(e.getIncidentId());
      use(e.getRequestId());
      use(e.getSensorId());
      use(e.getLinkType());
      for (auto p : e.getPackets()) {
        use(static_cast<uint64_t>(p.getTsNs()));
        use(p.getOrigLen());
        use(p.getData());
      }
      use(e.getPart());
      use(e.getDone());
      use(e.getReason());
      break;
    }
    case wire::Envelope::Body::SUMMARY_BATCH: {
      // As the aggregator's ingest reads a batch: each element decoded on its
      // own, and read as a summary when it is one.
      static EnvelopeDecoder inner;
      for (auto d : body.getSummaryBatch().getSummaries()) {
        use(d.size());
        if (inner.decode(std::span<const uint8_t>(d.begin(), d.size())) == EnvelopeReject::kNone &&
            inner.envelope().getBody().which() == wire::Envelope::Body::SUMMARY)
          consume(inner.envelope());
      }
      break;
    }
    case wire::Envelope::Body::REPLY: {
      // As the console client reads it (console/console_client.cpp).
      auto r = body.getReply();
      use(r.getRequestId());
      use(r.getOk());
      use(r.getError());
      auto json = nlohmann::json::parse(r.getJson().cStr(), nullptr, false);
      use(json.is_discarded());
      use(r.getData());
      break;
    }
  }
}

bool strict() {
  static const bool on = [] {
    const char* v = std::getenv("GARDA_FUZZ_STRICT_ENVELOPE");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

void consumeOrDie(wire::Envelope::Reader e) {
  try {
    consume(e);
  } catch (const kj::Exception& ex) {
    if (!strict()) return;
    std::fprintf(stderr, "envelope_fuzz: decode() accepted an envelope (body %d) that its "
                         "consumer cannot read: %s\n",
                 static_cast<int>(e.getBody().which()), ex.getDescription().cStr());
    abort();
  }
}

}  // namespace
}  // namespace garda::common

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using garda::common::EnvelopeDecoder;
  using garda::common::EnvelopeReject;
  // One decoder reused across inputs, as a receiving thread reuses its own.
  static EnvelopeDecoder decoder;

  // libFuzzer's copy is exactly `size` bytes and (from malloc) word-aligned,
  // so decode() reads it in place and ASan sees any read past the end.
  const EnvelopeReject aligned = decoder.decode(std::span<const uint8_t>(data, size));
  if (aligned == EnvelopeReject::kNone) {
    garda::common::consumeOrDie(decoder.envelope());
    // Orders and syncs also go through the sensor's OrderManager, as the
    // uplink hands them over (dry-run backend, a small rule cap).
    static garda::common::SensorConfig config = [] {
      spdlog::set_level(spdlog::level::off);
      garda::common::SensorConfig c;
      c.neverBlock = {*garda::common::Prefix::parse("198.18.100.0/24")};
      c.maxRules = 64;
      return c;
    }();
    static garda::sensor::DryRunEnforcer enforcer;
    static garda::sensor::OrderManager orders(config, enforcer);
    constexpr int64_t kNow = 1'800'000'000'000'000'000;
    auto body = decoder.envelope().getBody();
    try {
      if (body.which() == garda::wire::Envelope::Body::ORDER)
        (void)orders.onOrder(body.getOrder(), kNow);
      else if (body.which() == garda::wire::Envelope::Body::ORDER_SYNC)
        (void)orders.onSync(body.getOrderSync().getOrders(), kNow);
      (void)orders.tick(kNow);
    } catch (const kj::Exception&) {
      // A mistyped text field: the uplink catches this too (counted, dropped).
    }
    if (orders.active() > config.maxRules) abort();
  }
  if (garda::common::envelopeRejectName(aligned) == nullptr) abort();

  // The same bytes one byte off alignment take the scratch-copy path.
  std::vector<uint8_t> shifted(size + 1);
  if (size != 0) std::memcpy(shifted.data() + 1, data, size);
  const EnvelopeReject misaligned =
      decoder.decode(std::span<const uint8_t>(shifted.data() + 1, size));
  if (misaligned != aligned) {
    std::fprintf(stderr, "envelope_fuzz: aligned bytes gave %s, misaligned bytes gave %s (%s)\n",
                 garda::common::envelopeRejectName(aligned),
                 garda::common::envelopeRejectName(misaligned), decoder.detail().c_str());
    abort();
  }
  if (misaligned == EnvelopeReject::kNone) garda::common::consumeOrDie(decoder.envelope());
  return 0;
}
