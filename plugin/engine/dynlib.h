// A transport's library opened with dlopen, and its entry points bound by name. The library
// stays loaded for the life of the process: providers keep threads and atexit handlers that
// must not outlive their code. The first failure is kept as the reason.
#pragma once

#include <dlfcn.h>

#include <string>
#include <type_traits>

namespace epyard::net {

class DynamicLibrary {
 public:
  explicit DynamicLibrary(const std::string& name) : name_(name) {
    lib_ = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib_ == nullptr) {
      const char* err = dlerror();
      error_ = "cannot load " + name + ": " + (err ? err : "unknown error");
    }
  }
  // Binds `field` to `symbol`; a missing required symbol becomes the error.
  template <class Fn>
  void bind(Fn& field, const char* symbol, bool required = true) {
    field = lib_ ? reinterpret_cast<std::remove_reference_t<Fn>>(dlsym(lib_, symbol)) : nullptr;
    if (field == nullptr && required && error_.empty()) error_ = name_ + " lacks " + symbol;
  }
  const std::string& error() const { return error_; }

 private:
  std::string name_, error_;
  void* lib_ = nullptr;
};

}  // namespace epyard::net
