// Builds wire Summaries and Alerts for the detector and correlator tests,
// the way the sensor's uplink fills them (victims with vectors, reflection
// ports, top sources with Space-Saving errors, distinct-source estimates).
#pragma once

#include <capnp/message.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/envelope.h"
#include "common/ip.h"
#include "schemas/garda.capnp.h"

namespace garda::aggregator::testing {

struct SourceSpec {
  std::string address;
  uint64_t packets = 0;
  uint64_t error = 0;
};

struct VictimSpec {
  std::string address;
  std::vector<std::pair<wire::Vector, uint64_t>> vectors;  // packets in the window
  std::vector<std::pair<uint16_t, uint64_t>> reflectionPorts;
  std::vector<SourceSpec> sources;
  uint64_t distinctSources = 0;
};

inline common::IpAddress ip(const std::string& text) {
  return *common::IpAddress::parse(text);
}

// A built message and a reader of its root; the reader lives as long as this.
class BuiltSummary {
 public:
  // Every packet counts `bytesPerPacket` bytes.
  BuiltSummary(const std::string& sensorId, int64_t windowStartNs, unsigned windowMs,
               const std::vector<VictimSpec>& victims, uint64_t bytesPerPacket = 100)
      : message_(std::make_unique<capnp::MallocMessageBuilder>()) {
    auto s = message_->initRoot<wire::Summary>();
    s.setSensorId(sensorId);
    s.setBootId(1);
    s.setSeq(1);
    s.setWindowStartNs(windowStartNs);
    s.setWindowMs(windowMs);
    auto out = s.initVictims(static_cast<unsigned>(victims.size()));
    for (unsigned i = 0; i < victims.size(); ++i) {
      const auto& v = victims[i];
      auto o = out[i];
      o.setAddress(common::AddressBytes(ip(v.address)));
      uint64_t total = 0;
      auto vectors = o.initVectors(static_cast<unsigned>(v.vectors.size()));
      for (unsigned j = 0; j < v.vectors.size(); ++j) {
        vectors[j].setVector(v.vectors[j].first);
        vectors[j].setPackets(v.vectors[j].second);
        vectors[j].setBytes(v.vectors[j].second * bytesPerPacket);
        total += v.vectors[j].second;
      }
      auto ports = o.initReflectionPorts(static_cast<unsigned>(v.reflectionPorts.size()));
      for (unsigned j = 0; j < v.reflectionPorts.size(); ++j) {
        ports[j].setPort(v.reflectionPorts[j].first);
        ports[j].setPackets(v.reflectionPorts[j].second);
        ports[j].setBytes(v.reflectionPorts[j].second * bytesPerPacket);
      }
      auto sources = o.initTopSources(static_cast<unsigned>(v.sources.size()));
      for (unsigned j = 0; j < v.sources.size(); ++j) {
        sources[j].setAddress(common::AddressBytes(ip(v.sources[j].address)));
        sources[j].setPackets(v.sources[j].packets);
        sources[j].setError(v.sources[j].error);
      }
      o.setPackets(total);
      o.setBytes(total * bytesPerPacket);
      o.setDistinctSources(v.distinctSources ? v.distinctSources : v.sources.size());
      auto dst = o.initTopDstPorts(1);
      dst[0].setPort(80);
      dst[0].setPackets(total);
    }
  }
  wire::Summary::Reader reader() const { return message_->getRoot<wire::Summary>().asReader(); }

 private:
  std::unique_ptr<capnp::MallocMessageBuilder> message_;
};

class BuiltAlert {
 public:
  BuiltAlert(const std::string& sensorId, const std::string& victim, wire::Vector v,
             uint64_t packets, int64_t windowStartNs, int64_t atNs)
      : message_(std::make_unique<capnp::MallocMessageBuilder>()) {
    auto a = message_->initRoot<wire::Alert>();
    a.setSensorId(sensorId);
    a.setBootId(1);
    a.setVictim(common::AddressBytes(ip(victim)));
    a.setVector(v);
    a.setPackets(packets);
    a.setWindowStartNs(windowStartNs);
    a.setAtNs(atNs);
    a.setThresholdPps(50000);
  }
  wire::Alert::Reader reader() const { return message_->getRoot<wire::Alert>().asReader(); }

 private:
  std::unique_ptr<capnp::MallocMessageBuilder> message_;
};

constexpr int64_t kT0 = 1'700'000'000'000'000'000;  // a window start (multiple of 1 s)
constexpr int64_t kSecond = 1'000'000'000;

// `n` sources in 203.0.113.0/24-style blocks: "<prefix>.<first + i>", each
// with `packets` and no error (real, certain sources).
inline std::vector<SourceSpec> sources(const std::string& prefix, int first, int n,
                                       uint64_t packets) {
  std::vector<SourceSpec> out;
  for (int i = 0; i < n; ++i) out.push_back({prefix + "." + std::to_string(first + i), packets, 0});
  return out;
}

}  // namespace garda::aggregator::testing
