#include "worker/model/token_layout.h"

#include <algorithm>

#include "worker/data/token_shard.h"

namespace lorasweep {

TokenLayout MakeTokenLayout(const MicroBatch& batch) {
  const int64_t B = batch.batch, T = batch.seq_len, n = B * T;
  TokenLayout layout;
  layout.positions.resize(n);
  layout.doc_start.resize(n);
  layout.targets.assign(n, -100);
  for (int64_t b = 0; b < B; ++b) {
    int32_t position = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      const uint8_t flags = batch.flags ? batch.flags[i] : kTokenLoss;
      const bool starts = t == 0 || (flags & kTokenDocStart) != 0;
      if (starts) position = 0;
      layout.doc_start[i] = starts ? 1 : 0;
      layout.positions[i] = position;
      layout.max_position = std::max(layout.max_position, position);
      ++position;
      if (t + 1 < T) {
        const uint8_t next = batch.flags ? batch.flags[i + 1] : kTokenLoss;
        if ((next & kTokenLoss) && !(next & kTokenDocStart) && !(next & kTokenPad)) {
          layout.targets[i] = batch.ids[i + 1];
          ++layout.num_targets;
        }
      }
    }
  }
  return layout;
}

}  // namespace lorasweep
