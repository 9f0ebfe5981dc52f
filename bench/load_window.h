#pragma once
// The realistic summary content shared by ingest_load and bench_store.

#include <fmt/core.h>

#include <algorithm>
#include <random>

#include "common/ip.h"
#include "sensor/window.h"

namespace garda::bench {

// A plausible busy window: V victims in 198.51.100.0/24 with decreasing
// traffic, a mix of vectors, reflection ports on some, 20 top sources and 10
// top ports each way, a few outbound sources and decode errors. With
// divisor 1 every victim is under attack (2 Mpps / (v + 1), far above every
// detection floor); with divisor 4000 the same shape is an office's normal
// traffic (500 pps and less per victim, under every floor). Packet counts
// are per window: the same rates whatever windowMs.
inline sensor::WindowStats makeLoadWindow(unsigned victims, unsigned windowMs,
                                          unsigned divisor = 1) {
  sensor::WindowStats w;
  w.windowMs = windowMs;
  std::mt19937_64 rng(42);
  for (unsigned v = 0; v < victims; ++v) {
    sensor::VictimCounters c;
    c.address = *common::IpAddress::parse(fmt::format("198.51.100.{}", 1 + v % 250));
    c.packets = 2'000'000 / (v + 1) / divisor;
    c.bytes = c.packets * 600;
    // Two vectors: 60% and 30% of the victim's packets (the sum may not
    // exceed them: the decoder checks).
    const size_t main = v % sensor::kVectorCount, second = (v + 3) % sensor::kVectorCount;
    c.vectorPackets[main] = c.packets * 6 / 10;
    c.vectorPackets[second] = c.packets * 3 / 10;
    for (size_t k : {main, second}) c.vectorBytes[k] = c.vectorPackets[k] * 600;
    for (size_t k = 0; k < sensor::kReflectionPortCount; k += 4 + v % 3) {
      c.reflectionPackets[k] = c.packets / 10 + k;
      c.reflectionBytes[k] = c.reflectionPackets[k] * 1200;
    }
    for (unsigned s = 0; s < 20; ++s) {
      uint32_t a = static_cast<uint32_t>(rng());
      c.topSources.push_back(
          {*common::IpAddress::parse(fmt::format("{}.{}.{}.{}", 1 + (a >> 24) % 223,
                                                 (a >> 16) & 255, (a >> 8) & 255, a & 255)),
           c.packets / (s + 2), s * 7});
    }
    for (unsigned p = 0; p < 10; ++p) {
      c.topSrcPorts.push_back({static_cast<uint16_t>(1024 + rng() % 60000), c.packets / (p + 3)});
      c.topDstPorts.push_back(
          {static_cast<uint16_t>(p == 0 ? 80 : 1 + rng() % 65535), c.packets / (p + 3)});
    }
    c.distinctSources = 50'000 / (v + 1) / divisor + 1;
    w.totals.packets += c.packets;
    w.totals.bytes += c.bytes;
    w.victims.push_back(std::move(c));
  }
  w.totals.packets += 1000;
  w.totals.bytes += 600'000;
  w.totals.udp = w.totals.packets / 2;
  w.totals.tcp = w.totals.packets / 3;
  w.totals.icmp = w.totals.packets / 20;
  w.totals.other = 10;
  for (unsigned s = 0; s < 5; ++s)
    w.outbound.push_back(
        {*common::IpAddress::parse(fmt::format("198.51.100.{}", 200 + s)), 10'000u / (s + 1), 0});
  w.decodeStatus[static_cast<size_t>(sensor::DecodeStatus::kCount) - 1] = 3;
  // The counts above are a second's; a window of another length has the
  // same rates.
  if (windowMs != 1000) {
    auto scale = [&](uint64_t& n) { n = n * windowMs / 1000; };
    for (uint64_t* n : {&w.totals.packets, &w.totals.bytes, &w.totals.tcp, &w.totals.udp,
                        &w.totals.icmp, &w.totals.other})
      scale(*n);
    for (auto& c : w.victims) {
      for (uint64_t* n : {&c.packets, &c.bytes}) scale(*n);
      for (auto* a : {&c.vectorPackets, &c.vectorBytes}) std::for_each(a->begin(), a->end(), scale);
      for (auto* a : {&c.reflectionPackets, &c.reflectionBytes})
        std::for_each(a->begin(), a->end(), scale);
      for (auto& src : c.topSources) {
        scale(src.packets);
        scale(src.error);
      }
      for (auto* ports : {&c.topSrcPorts, &c.topDstPorts})
        for (auto& p : *ports) scale(p.packets);
    }
    for (auto& o : w.outbound) scale(o.packets);
  }
  return w;
}

}  // namespace garda::bench
