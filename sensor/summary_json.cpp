#include "sensor/summary_json.h"

namespace garda::sensor {

const char* vectorName(Vector v) noexcept {
  switch (v) {
    case Vector::kTcpSyn: return "tcp_syn";
    case Vector::kTcpSynAck: return "tcp_syn_ack";
    case Vector::kTcpOther: return "tcp_other";
    case Vector::kUdp: return "udp";
    case Vector::kUdpReflection: return "udp_reflection";
    case Vector::kIcmp: return "icmp";
    case Vector::kFragment: return "fragment";
    case Vector::kOther: return "other";
    case Vector::kCount: break;
  }
  return "unknown";
}

namespace {

nlohmann::json sourcesJson(const std::vector<SourceCount>& in) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : in)
    out.push_back({{"address", s.address.toString()}, {"packets", s.packets}, {"error", s.error}});
  return out;
}

nlohmann::json portsJson(const std::vector<PortCount>& in) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : in) out.push_back({{"port", p.port}, {"packets", p.packets}});
  return out;
}

}  // namespace

nlohmann::json windowToJson(const WindowStats& w, const std::string& sensorId) {
  nlohmann::json decode = nlohmann::json::object();
  for (size_t k = 0; k < w.decodeStatus.size(); ++k)
    if (w.decodeStatus[k] != 0) decode[decodeStatusName(static_cast<DecodeStatus>(k))] = w.decodeStatus[k];
  nlohmann::json victims = nlohmann::json::array();
  for (const auto& v : w.victims) {
    nlohmann::json vectors = nlohmann::json::object();
    for (size_t k = 0; k < kVectorCount; ++k)
      if (v.vectorPackets[k] != 0)
        vectors[vectorName(static_cast<Vector>(k))] = {{"packets", v.vectorPackets[k]},
                                                       {"bytes", v.vectorBytes[k]}};
    nlohmann::json reflection = nlohmann::json::object();
    for (size_t k = 0; k < kReflectionPortCount; ++k)
      if (v.reflectionPackets[k] != 0)
        reflection[std::to_string(reflectionPortAt(k))] = {{"packets", v.reflectionPackets[k]},
                                                           {"bytes", v.reflectionBytes[k]}};
    victims.push_back({{"address", v.address.toString()},
                       {"packets", v.packets},
                       {"bytes", v.bytes},
                       {"vectors", vectors},
                       {"reflection_ports", reflection},
                       {"distinct_sources", v.distinctSources},
                       {"top_sources", sourcesJson(v.topSources)},
                       {"top_src_ports", portsJson(v.topSrcPorts)},
                       {"top_dst_ports", portsJson(v.topDstPorts)}});
  }
  return {{"sensor", sensorId},
          {"window_start_ns", w.startNs},
          {"window_ms", w.windowMs},
          {"late_packets", w.latePackets},
          {"victims_cut", w.victimsCut},
          {"victim_packets_cut", w.victimPacketsCut},
          {"totals",
           {{"packets", w.totals.packets},
            {"bytes", w.totals.bytes},
            {"tcp", w.totals.tcp},
            {"udp", w.totals.udp},
            {"icmp", w.totals.icmp},
            {"other", w.totals.other}}},
          {"decode", decode},
          {"victims", victims},
          {"outbound", sourcesJson(w.outbound)}};
}

}  // namespace garda::sensor
