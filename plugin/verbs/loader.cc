#include "verbs/loader.h"

#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

namespace epyard::net::verbs {
namespace {

struct Loaded {
  VerbsApi api{};
  std::string error;
};

std::unique_ptr<Loaded> load(const std::string& library) {
  auto out = std::make_unique<Loaded>();
  // The library stays loaded for the life of the process (providers keep threads and handlers).
  void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    out->error = "cannot load " + library + ": " + (err ? err : "unknown error");
    return out;
  }
  auto bind = [&](auto& field, const char* symbol, bool required) {
    field = reinterpret_cast<std::remove_reference_t<decltype(field)>>(dlsym(lib, symbol));
    if (field == nullptr && required && out->error.empty())
      out->error = library + " lacks " + symbol;
  };
  VerbsApi& a = out->api;
  bind(a.get_device_list, "ibv_get_device_list", true);
  bind(a.free_device_list, "ibv_free_device_list", true);
  bind(a.get_device_name, "ibv_get_device_name", true);
  bind(a.open_device, "ibv_open_device", true);
  bind(a.close_device, "ibv_close_device", true);
  bind(a.query_device, "ibv_query_device", true);
  bind(a.query_port, "ibv_query_port", true);
  bind(a.query_gid, "ibv_query_gid", true);
  bind(a.alloc_pd, "ibv_alloc_pd", true);
  bind(a.dealloc_pd, "ibv_dealloc_pd", true);
  bind(a.reg_mr, "ibv_reg_mr", true);
  bind(a.dereg_mr, "ibv_dereg_mr", true);
  bind(a.create_cq, "ibv_create_cq", true);
  bind(a.destroy_cq, "ibv_destroy_cq", true);
  bind(a.create_qp, "ibv_create_qp", true);
  bind(a.modify_qp, "ibv_modify_qp", true);
  bind(a.destroy_qp, "ibv_destroy_qp", true);
  bind(a.create_srq, "ibv_create_srq", true);
  bind(a.destroy_srq, "ibv_destroy_srq", true);
  bind(a.get_async_event, "ibv_get_async_event", true);
  bind(a.ack_async_event, "ibv_ack_async_event", true);
  bind(a.wc_status_str, "ibv_wc_status_str", true);
  bind(a.event_type_str, "ibv_event_type_str", true);
  bind(a.reg_dmabuf_mr, "ibv_reg_dmabuf_mr", false);
  return out;
}

}  // namespace

const VerbsApi* loadVerbs(const std::string& library, std::string* why) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Loaded>> cache;
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<Loaded>& entry = cache[library];
  if (!entry) entry = load(library);
  if (!entry->error.empty()) {
    if (why) *why = entry->error;
    return nullptr;
  }
  return &entry->api;
}

}  // namespace epyard::net::verbs
