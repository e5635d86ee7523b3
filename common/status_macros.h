// Status propagation helpers. Debian's Abseil 20220623 ships absl::Status but not
// absl/status/status_macros.h, so lorasweep carries its own two macros.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LORASWEEP_CONCAT_INNER_(a, b) a##b
#define LORASWEEP_CONCAT_(a, b) LORASWEEP_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status lorasweep_status_ = (expr);        \
    if (!lorasweep_status_.ok()) return lorasweep_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` from an absl::StatusOr<T>, or returns
// the error status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(LORASWEEP_CONCAT_(lorasweep_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()
