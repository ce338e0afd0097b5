// Result<T>: a value or an errno, for the hot path (lib/overlay, fuse/), which
// never throws and never builds strings. Result<void> carries only an errno.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace layer {

struct Errno {
  int value;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}           // NOLINT: implicit by design
  Result(Errno e) : v_(e) { assert(e.value > 0); }  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return ok() ? 0 : std::get<1>(v_).value; }
  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Errno> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Errno e) : err_(e.value) { assert(e.value > 0); }  // NOLINT
  bool ok() const { return err_ == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return err_; }

 private:
  int err_ = 0;
};

// Errno of the last failed syscall, as a Result error.
inline Errno last_errno() { return Errno{errno ? errno : EIO}; }

}  // namespace layer
