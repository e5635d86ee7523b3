// Conversions between the trainer's one-buffer adapter (LoraLayout) and a PEFT adapter folder's
// tensors (peft_adapter.h).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/lora_layout.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {

// The PEFT view of `params`; `base_model` and the base quantization are recorded in the folder.
PeftAdapter AdapterFromParams(const LoraLayout& layout, const float* params,
                              const std::string& base_model, const BaseQuantization& quant);

// LoRA options a PEFT adapter was trained with (rank, alpha, rsLoRA, targets; dropout kept for the
// record, unused at inference).
LoraOptions LoraOptionsFromAdapter(const PeftAdapter& adapter);

// The adapter's tensors in `layout` order. Fails naming the layer/module when the adapter does not
// fit the model (missing module, wrong shapes, layer out of range).
absl::StatusOr<std::vector<float>> ParamsFromAdapter(const PeftAdapter& adapter,
                                                     const LoraLayout& layout);

}  // namespace lorasweep
