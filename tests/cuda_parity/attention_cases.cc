// Parity cases of causal grouped-query attention on the GPU (kernels/attention_cuda.h) against the
// CPU AttentionForward / AttentionBackward (kernels/attention.h) and a float64 reference written
// here: straightforward O(T^2) loops over each query's visible keys (its document, up to itself).
//
// q, k, v and dout are drawn as floats and rounded to bf16 first; the GPU gets the bf16 bits, the
// CPU and the float64 reference the same rounded values. The GPU backward takes the GPU forward's
// out (bf16) and lse, as the model does; the CPU backward the CPU forward's; the float64 backward
// the float64 forward's. Every output and the workspace start as NaN bytes, so an element left
// unwritten, or scratch read before it is written, shows.
//
// Shapes: T never a multiple of the 64-token tiles; documents packed in a sequence (a tile then
// spans a boundary, and whole tiles are skipped); B > 1; GQA groups of 2, 3 and 4 and plain MHA
// (the backward splits a group over blocks when there are few key tiles, or loops it in a block);
// every supported head dim; one shape long enough for tiles fully inside a row's window (the
// unmasked path) and many key tiles per query (the online-softmax rescaling).
//
// Tolerances (measured in a host emulation of the kernels, exact mma fragment semantics, on these
// shapes: out ~1.9e-3, dq/dk/dv ~2.3e-3..3.4e-3, lse ~5e-8; CPU reference <= 4e-7):
//   - out (bf16), 1e-2: the output is rounded to bf16 once (<= 2^-9 relative per element, ~1.1e-3
//     RMS) and P is rounded to bf16 as the operand of P V (another ~1e-3 on the weighted average).
//     Transposed heads, a wrong GQA mapping, a document leak or a missed tile give > 1e-1.
//   - lse (fp32), 1e-5, as its own case: the scores are fp32 accumulations of exact bf16 products
//     and the log-sum-exp runs in fp32 (~1e-7 relative on values ~1..7); a bf16-rounded score
//     (~4e-3) or a dropped key (~1/T) is far above it.
//   - dq, dk, dv (bf16), 1.5e-2: besides the output rounding, P and dS = P (dP - delta) are rounded
//     to bf16 as operands of the dV, dK and dQ products, and delta = rowsum(dout * out) uses the
//     bf16 out; together ~2.5-3.5e-3. 1.5e-2 leaves >4x, while a dropped query tile or head, a race
//     on dq, or a GQA sum over the wrong heads lands at 1e-1 or more.
//   - CPU reference, 1e-5 for all: fp32 throughout (sgemm products, double row sums), measured
//     <= 5e-8 (lse), <= 2.5e-7 (out) and <= 4e-7 (gradients), so 25x margin.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/attention.h"
#include "kernels/attention_cuda.h"
#include "tests/cuda_parity.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"

namespace lorasweep {
namespace {

constexpr double kOutTolerance = 1e-2;
constexpr double kLseTolerance = 1e-5;
constexpr double kGradTolerance = 1.5e-2;
constexpr double kCpuTolerance = 1e-5;

struct AttentionShape {
  int64_t B, T, Hq, Hkv, D;
  // Positions (besides 0) where a document starts, per sequence; missing sequences have one.
  std::vector<std::vector<int64_t>> doc_starts;
  // Elements the q, k, v and dout device pointers sit past a 16-byte boundary (2: the kernels'
  // plain-load path instead of 16-byte cp.async copies).
  int64_t offset = 0;
};

std::string ShapeName(const AttentionShape& s) {
  int64_t docs = 0;
  for (int64_t b = 0; b < s.B; ++b) {
    docs += 1 + (b < static_cast<int64_t>(s.doc_starts.size())
                     ? static_cast<int64_t>(s.doc_starts[b].size())
                     : 0);
  }
  return absl::StrCat("b", s.B, "_t", s.T, "_hq", s.Hq, "_hkv", s.Hkv, "_d", s.D, "_docs", docs,
                      s.offset != 0 ? "_misaligned" : "");
}

struct Inputs {
  std::vector<float> q, k, v, dout;  // bf16-exact values
  std::vector<uint8_t> doc_start;
};

std::vector<float> DrawBf16(std::mt19937_64& rng, int64_t n, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = Bf16ToFloat(FloatToBf16(normal(rng)));
  return v;
}

Inputs Draw(const AttentionShape& s, uint64_t seed) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull ^ 0xa77e);
  Inputs in;
  // q a little wider than k: scores of standard deviation ~1.5, softmax rows neither flat nor
  // one-hot.
  in.q = DrawBf16(rng, s.B * s.T * s.Hq * s.D, 1.5f);
  in.k = DrawBf16(rng, s.B * s.T * s.Hkv * s.D, 1.0f);
  in.v = DrawBf16(rng, s.B * s.T * s.Hkv * s.D, 1.0f);
  in.dout = DrawBf16(rng, s.B * s.T * s.Hq * s.D, 1.0f);
  in.doc_start.assign(s.B * s.T, 0);
  for (int64_t b = 0; b < s.B; ++b) {
    in.doc_start[b * s.T] = 1;
    if (b < static_cast<int64_t>(s.doc_starts.size())) {
      for (int64_t t : s.doc_starts[b]) in.doc_start[b * s.T + t] = 1;
    }
  }
  return in;
}

std::vector<uint16_t> Bf16Bits(const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = FloatToBf16(v[i]);
  return bits;
}

std::vector<float> Bf16Values(const std::vector<uint16_t>& bits) {
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) v[i] = Bf16ToFloat(bits[i]);
  return v;
}

struct Results {
  std::vector<float> out, lse, dq, dk, dv;
};

struct Reference {
  std::vector<double> out, lse, dq, dk, dv;
};

// float64 forward and backward, one (sequence, query head, query) row at a time.
Reference Float64Reference(const AttentionShape& s, const Inputs& in) {
  const int64_t B = s.B, T = s.T, Hq = s.Hq, Hkv = s.Hkv, D = s.D;
  const int64_t group = Hq / Hkv, q_stride = Hq * D, kv_stride = Hkv * D;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Reference r;
  r.out.assign(B * T * q_stride, 0.0);
  r.lse.assign(B * Hq * T, 0.0);
  r.dq.assign(B * T * q_stride, 0.0);
  r.dk.assign(B * T * kv_stride, 0.0);
  r.dv.assign(B * T * kv_stride, 0.0);
  std::vector<double> p(T), ds(T);
  std::vector<int64_t> first(T);
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (t == 0 || in.doc_start[b * T + t]) start = t;
      first[t] = start;
    }
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kvh = h / group;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t qi = (b * T + t) * q_stride + h * D;
        const int64_t lo = first[t];
        double mx = -INFINITY;
        for (int64_t u = lo; u <= t; ++u) {
          const int64_t ki = (b * T + u) * kv_stride + kvh * D;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(in.q[qi + d]) * in.k[ki + d];
          p[u] = dot * scale;
          mx = std::max(mx, p[u]);
        }
        double sum = 0;
        for (int64_t u = lo; u <= t; ++u) sum += std::exp(p[u] - mx);
        const double lse = mx + std::log(sum);
        r.lse[(b * Hq + h) * T + t] = lse;
        double* o = &r.out[qi];
        for (int64_t u = lo; u <= t; ++u) {
          p[u] = std::exp(p[u] - lse);
          const int64_t vi = (b * T + u) * kv_stride + kvh * D;
          for (int64_t d = 0; d < D; ++d) o[d] += p[u] * in.v[vi + d];
        }
        // Backward of this row: dS = P (dP - delta), delta = dout . out.
        double delta = 0;
        for (int64_t d = 0; d < D; ++d) delta += in.dout[qi + d] * o[d];
        for (int64_t u = lo; u <= t; ++u) {
          const int64_t vi = (b * T + u) * kv_stride + kvh * D;
          double dp = 0;
          for (int64_t d = 0; d < D; ++d) dp += static_cast<double>(in.dout[qi + d]) * in.v[vi + d];
          ds[u] = p[u] * (dp - delta);
        }
        for (int64_t u = lo; u <= t; ++u) {
          const int64_t ki = (b * T + u) * kv_stride + kvh * D;
          for (int64_t d = 0; d < D; ++d) {
            r.dq[qi + d] += scale * ds[u] * in.k[ki + d];
            r.dk[ki + d] += scale * ds[u] * in.q[qi + d];
            r.dv[ki + d] += p[u] * in.dout[qi + d];
          }
        }
      }
    }
  }
  return r;
}

Results CpuReference(const AttentionShape& s, const Inputs& in, bool backward) {
  const int64_t q_elems = s.B * s.T * s.Hq * s.D, kv_elems = s.B * s.T * s.Hkv * s.D;
  Results r;
  r.out.assign(q_elems, NAN);
  r.lse.assign(s.B * s.Hq * s.T, NAN);
  AttentionForward(in.q.data(), in.k.data(), in.v.data(), in.doc_start.data(), s.B, s.T, s.Hq,
                   s.Hkv, s.D, r.out.data(), r.lse.data());
  if (backward) {
    r.dq.assign(q_elems, NAN);
    r.dk.assign(kv_elems, NAN);
    r.dv.assign(kv_elems, NAN);
    AttentionBackward(in.q.data(), in.k.data(), in.v.data(), in.doc_start.data(), r.out.data(),
                      in.dout.data(), r.lse.data(), s.B, s.T, s.Hq, s.Hkv, s.D, r.dq.data(),
                      r.dk.data(), r.dv.data());
  }
  return r;
}

absl::StatusOr<DeviceBuffer<uint16_t>> NanBf16(int64_t n, const char* what) {
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> b, DeviceBuffer<uint16_t>::Allocate(n, what));
  CUDA_RETURN_IF_ERROR(cudaMemset(b.data(), 0xff, b.bytes()));  // 0xffff: a bf16 NaN
  return b;
}

// A device copy of bf16 values starting `offset` elements into its allocation.
struct OffsetBf16 {
  DeviceBuffer<uint16_t> buffer;
  int64_t offset = 0;
  bf16* get() { return reinterpret_cast<bf16*>(buffer.data() + offset); }
};

absl::StatusOr<OffsetBf16> Upload(const std::vector<float>& values, int64_t offset,
                                  const char* what) {
  const std::vector<uint16_t> bits = Bf16Bits(values);
  OffsetBf16 b;
  b.offset = offset;
  ASSIGN_OR_RETURN(
      b.buffer, DeviceBuffer<uint16_t>::Allocate(static_cast<int64_t>(bits.size()) + offset, what));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpy(b.get(), bits.data(), bits.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
  return b;
}

absl::StatusOr<Results> GpuRun(const AttentionShape& s, const Inputs& in, bool backward) {
  const int64_t q_elems = s.B * s.T * s.Hq * s.D, kv_elems = s.B * s.T * s.Hkv * s.D;
  ASSIGN_OR_RETURN(OffsetBf16 q, Upload(in.q, s.offset, "q"));
  ASSIGN_OR_RETURN(OffsetBf16 k, Upload(in.k, s.offset, "k"));
  ASSIGN_OR_RETURN(OffsetBf16 v, Upload(in.v, s.offset, "v"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> doc_start,
                   DeviceBuffer<uint8_t>::FromHost(in.doc_start, "doc_start"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> out, NanBf16(q_elems, "out"));
  ASSIGN_OR_RETURN(DeviceBuffer<float> lse, DeviceBuffer<float>::Allocate(s.B * s.Hq * s.T, "lse"));
  CUDA_RETURN_IF_ERROR(cudaMemset(lse.data(), 0xff, lse.bytes()));
  ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> workspace,
                   DeviceBuffer<uint8_t>::Allocate(
                       AttentionWorkspaceBytes(s.B, s.T, s.Hq, s.Hkv, s.D), "workspace"));
  CUDA_RETURN_IF_ERROR(cudaMemset(workspace.data(), 0xff, workspace.bytes()));
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  auto bf = [](DeviceBuffer<uint16_t>& b) { return reinterpret_cast<bf16*>(b.data()); };
  CUDA_RETURN_IF_ERROR(AttentionForwardCuda(q.get(), k.get(), v.get(), doc_start.data(), s.B, s.T,
                                            s.Hq, s.Hkv, s.D, workspace.data(), bf(out), lse.data(),
                                            /*stream=*/nullptr));
  Results r;
  if (backward) {
    ASSIGN_OR_RETURN(OffsetBf16 dout, Upload(in.dout, s.offset, "dout"));
    ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> dq, NanBf16(q_elems, "dq"));
    ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> dk, NanBf16(kv_elems, "dk"));
    ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> dv, NanBf16(kv_elems, "dv"));
    CUDA_RETURN_IF_ERROR(AttentionBackwardCuda(
        q.get(), k.get(), v.get(), doc_start.data(), bf(out), dout.get(), lse.data(), s.B, s.T,
        s.Hq, s.Hkv, s.D, workspace.data(), bf(dq), bf(dk), bf(dv), /*stream=*/nullptr));
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
    ASSIGN_OR_RETURN(std::vector<uint16_t> dq_bits, dq.ToHost());
    ASSIGN_OR_RETURN(std::vector<uint16_t> dk_bits, dk.ToHost());
    ASSIGN_OR_RETURN(std::vector<uint16_t> dv_bits, dv.ToHost());
    r.dq = Bf16Values(dq_bits);
    r.dk = Bf16Values(dk_bits);
    r.dv = Bf16Values(dv_bits);
  }
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  ASSIGN_OR_RETURN(std::vector<uint16_t> out_bits, out.ToHost());
  r.out = Bf16Values(out_bits);
  ASSIGN_OR_RETURN(r.lse, lse.ToHost());
  return r;
}

enum class Part { kOut, kLse, kBackward };

absl::StatusOr<std::vector<ParityOutput>> RunAttention(const AttentionShape& s, Part part,
                                                       uint64_t seed) {
  const Inputs in = Draw(s, seed);
  const bool backward = part == Part::kBackward;
  ASSIGN_OR_RETURN(Results gpu, GpuRun(s, in, backward));
  const Results cpu = CpuReference(s, in, backward);
  const Reference ref = Float64Reference(s, in);
  std::vector<ParityOutput> outputs;
  switch (part) {
    case Part::kOut:
      outputs.push_back({"out", RelativeError(gpu.out, ref.out), RelativeError(cpu.out, ref.out)});
      break;
    case Part::kLse:
      outputs.push_back({"lse", RelativeError(gpu.lse, ref.lse), RelativeError(cpu.lse, ref.lse)});
      break;
    case Part::kBackward:
      outputs.push_back({"dq", RelativeError(gpu.dq, ref.dq), RelativeError(cpu.dq, ref.dq)});
      outputs.push_back({"dk", RelativeError(gpu.dk, ref.dk), RelativeError(cpu.dk, ref.dk)});
      outputs.push_back({"dv", RelativeError(gpu.dv, ref.dv), RelativeError(cpu.dv, ref.dv)});
      break;
  }
  return outputs;
}

std::vector<ParityCase> AttentionCases() {
  const std::vector<AttentionShape> shapes = {
      // Three documents in the first sequence, two in the second; GQA group of 2.
      {2, 37, 4, 2, 64, {{11, 25}, {30}}},
      // SmolLM2-135M's heads (9 query, 3 kv, D 64), three documents.
      {1, 300, 9, 3, 64, {{70, 200}}},
      // Plain multi-head attention at D 128, one document.
      {1, 130, 4, 4, 128, {}},
      // D 32, group of 2 over one kv head, short documents and a one-token one at the end.
      {2, 70, 2, 1, 32, {{5, 6, 7, 64}, {69}}},
      // D 96, group of 4 over 2 kv heads.
      {1, 100, 8, 2, 96, {{33}}},
      // Many key tiles per query, tiles wholly inside the window; group of 4 over one kv head.
      {1, 1100, 4, 1, 64, {{600}}},
      // Inputs 4 bytes past a 16-byte boundary: the plain-load path.
      {2, 45, 4, 2, 64, {{20}}, 2},
  };
  std::vector<ParityCase> cases;
  for (const AttentionShape& s : shapes) {
    const std::string name = ShapeName(s);
    const std::pair<Part, std::string> parts[] = {
        {Part::kOut, "attention_forward/" + name},
        {Part::kLse, "attention_forward/" + name + "_lse"},
        {Part::kBackward, "attention_backward/" + name}};
    for (const auto& [part, case_name] : parts) {
      ParityCase c;
      c.name = case_name;
      c.tolerance = part == Part::kOut   ? kOutTolerance
                    : part == Part::kLse ? kLseTolerance
                                         : kGradTolerance;
      c.cpu_tolerance = kCpuTolerance;
      c.run = [s, part = part](uint64_t seed) { return RunAttention(s, part, seed); };
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(AttentionCases);

}  // namespace lorasweep
