// errorOf<E>(fn): the message (without backtrace) of the E that fn throws; a test
// failure, and "", when it throws nothing.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace loom::test {

template <typename Error, typename Fn>
std::string errorOf(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "expected the error type";
  return "";
}

}  // namespace loom::test
