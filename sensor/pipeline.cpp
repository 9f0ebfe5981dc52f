#include "sensor/pipeline.h"

#include "sensor/summary_json.h"

namespace garda::sensor {

SensorPipeline::SensorPipeline(const common::SensorConfig& config, Uplink* uplink,
                               std::FILE* jsonOut, const PacketSource* source)
    : protected_(config.protectedPrefixes),
      sensorId_(config.id),
      uplink_(uplink),
      jsonOut_(jsonOut),
      source_(source),
      windower_(protected_, config.windowMs, config.maxVictims, [this](WindowStats& w) {
        uint64_t drops = source_ ? source_->stats().kernelDrops : 0;
        if (uplink_) uplink_->sendSummary(w, drops - lastKernelDrops_);
        if (jsonOut_) {
          std::string line = windowToJson(w, sensorId_).dump() + "\n";
          std::fwrite(line.data(), 1, line.size(), jsonOut_);
        }
        lastKernelDrops_ = drops;
        windowsClosed_++;
      }) {}

void SensorPipeline::tick(int64_t nowNs) {
  windower_.tick(nowNs);
  if (uplink_) uplink_->poll(0);
}

}  // namespace garda::sensor
