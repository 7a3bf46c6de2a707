#include "verbs/loader.h"

#include <map>
#include <memory>
#include <mutex>

#include "engine/dynlib.h"

namespace epyard::net::verbs {
namespace {

struct Loaded {
  VerbsApi api{};
  std::string error;
};

std::unique_ptr<Loaded> load(const std::string& library) {
  auto out = std::make_unique<Loaded>();
  DynamicLibrary lib(library);
  VerbsApi& a = out->api;
  lib.bind(a.get_device_list, "ibv_get_device_list");
  lib.bind(a.free_device_list, "ibv_free_device_list");
  lib.bind(a.get_device_name, "ibv_get_device_name");
  lib.bind(a.open_device, "ibv_open_device");
  lib.bind(a.close_device, "ibv_close_device");
  lib.bind(a.query_device, "ibv_query_device");
  lib.bind(a.query_port, "ibv_query_port");
  lib.bind(a.query_gid, "ibv_query_gid");
  lib.bind(a.alloc_pd, "ibv_alloc_pd");
  lib.bind(a.dealloc_pd, "ibv_dealloc_pd");
  lib.bind(a.reg_mr, "ibv_reg_mr");
  lib.bind(a.dereg_mr, "ibv_dereg_mr");
  lib.bind(a.create_cq, "ibv_create_cq");
  lib.bind(a.destroy_cq, "ibv_destroy_cq");
  lib.bind(a.create_qp, "ibv_create_qp");
  lib.bind(a.modify_qp, "ibv_modify_qp");
  lib.bind(a.destroy_qp, "ibv_destroy_qp");
  lib.bind(a.create_srq, "ibv_create_srq");
  lib.bind(a.destroy_srq, "ibv_destroy_srq");
  lib.bind(a.get_async_event, "ibv_get_async_event");
  lib.bind(a.ack_async_event, "ibv_ack_async_event");
  lib.bind(a.wc_status_str, "ibv_wc_status_str");
  lib.bind(a.event_type_str, "ibv_event_type_str");
  lib.bind(a.reg_dmabuf_mr, "ibv_reg_dmabuf_mr", /*required=*/false);
  lib.bind(a.reg_mr_iova2, "ibv_reg_mr_iova2", /*required=*/false);
  out->error = lib.error();
  return out;
}

}  // namespace

const VerbsApi* loadVerbs(const std::string& library, std::string* why) {
  // Never destroyed: detached async-event threads read the table until the process is gone.
  static auto* mu = new std::mutex;
  static auto* cache = new std::map<std::string, std::unique_ptr<Loaded>>;
  std::lock_guard<std::mutex> lock(*mu);
  std::unique_ptr<Loaded>& entry = (*cache)[library];
  if (!entry) entry = load(library);
  if (!entry->error.empty()) {
    if (why) *why = entry->error;
    return nullptr;
  }
  return &entry->api;
}

}  // namespace epyard::net::verbs
