#include "sensor/pipeline.h"

namespace garda::sensor {

SensorPipeline::SensorPipeline(const common::SensorConfig& config, Uplink& uplink,
                               const PacketSource* source)
    : protected_(config.protectedPrefixes),
      uplink_(uplink),
      source_(source),
      windower_(protected_, config.windowMs, config.maxVictims, [this](WindowStats& w) {
        uint64_t drops = source_ ? source_->stats().kernelDrops : 0;
        uplink_.sendSummary(w, drops - lastKernelDrops_);
        lastKernelDrops_ = drops;
        windowsClosed_++;
      }) {}

void SensorPipeline::tick(int64_t nowNs) {
  windower_.tick(nowNs);
  uplink_.poll(0);
}

}  // namespace garda::sensor
