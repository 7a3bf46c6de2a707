#include <mutex>

#include "engine/dynlib.h"
#include "ofi/ofi.h"

namespace epyard::net::ofi {

const OfiApi* loadOfi(std::string* why) {
  static OfiApi api;
  static std::string load_error;
  static bool loaded = false;
  static std::once_flag once;
  std::call_once(once, [] {
    DynamicLibrary lib("libfabric.so.1");
    lib.bind(api.getinfo, "fi_getinfo");
    lib.bind(api.freeinfo, "fi_freeinfo");
    lib.bind(api.dupinfo, "fi_dupinfo");
    lib.bind(api.fabric, "fi_fabric");
    lib.bind(api.strerror, "fi_strerror");
    lib.bind(api.version, "fi_version");
    load_error = lib.error();
    loaded = load_error.empty();
  });
  if (!loaded) {
    if (why) *why = load_error;
    return nullptr;
  }
  return &api;
}

}  // namespace epyard::net::ofi
