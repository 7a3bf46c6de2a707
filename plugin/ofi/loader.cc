#include <dlfcn.h>

#include <mutex>

#include "ofi/ofi.h"

namespace epyard::net::ofi {

const OfiApi* loadOfi(std::string* why) {
  static OfiApi api;
  static std::string load_error;
  static bool loaded = false;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libfabric.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* err = dlerror();
      load_error = std::string("cannot load libfabric.so.1: ") + (err ? err : "unknown error");
      return;
    }
    auto bind = [&](auto& field, const char* symbol) {
      field = reinterpret_cast<std::remove_reference_t<decltype(field)>>(dlsym(lib, symbol));
      if (field == nullptr && load_error.empty())
        load_error = std::string("libfabric.so.1 lacks ") + symbol;
    };
    bind(api.getinfo, "fi_getinfo");
    bind(api.freeinfo, "fi_freeinfo");
    bind(api.dupinfo, "fi_dupinfo");
    bind(api.fabric, "fi_fabric");
    bind(api.strerror, "fi_strerror");
    bind(api.version, "fi_version");
    loaded = load_error.empty();
    // The library stays loaded for the life of the process: providers keep threads and
    // atexit handlers that must not outlive their code.
  });
  if (!loaded) {
    if (why) *why = load_error;
    return nullptr;
  }
  return &api;
}

}  // namespace epyard::net::ofi
