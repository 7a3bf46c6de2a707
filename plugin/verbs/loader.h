// libibverbs, opened with dlopen so the plugin loads (and falls back to libfabric) on machines
// without it. The entry points the verbs transport calls directly; the data-path calls
// (ibv_post_send, ibv_post_recv, ibv_poll_cq) are inline in verbs.h and go through the
// context's ops table, so they need no symbol here.
#pragma once

#include <infiniband/verbs.h>

#include <string>

namespace epyard::net::verbs {

struct VerbsApi {
  struct ibv_device** (*get_device_list)(int* num_devices);
  void (*free_device_list)(struct ibv_device** list);
  const char* (*get_device_name)(struct ibv_device* device);
  struct ibv_context* (*open_device)(struct ibv_device* device);
  int (*close_device)(struct ibv_context* context);
  int (*query_device)(struct ibv_context* context, struct ibv_device_attr* attr);
  // The exported ibv_query_port; pass a zeroed full-size ibv_port_attr (verbs.h's inline
  // wrapper does the same).
  int (*query_port)(struct ibv_context* context, uint8_t port, struct ibv_port_attr* attr);
  int (*query_gid)(struct ibv_context* context, uint8_t port, int index, union ibv_gid* gid);
  struct ibv_pd* (*alloc_pd)(struct ibv_context* context);
  int (*dealloc_pd)(struct ibv_pd* pd);
  struct ibv_mr* (*reg_mr)(struct ibv_pd* pd, void* addr, size_t length, int access);
  int (*dereg_mr)(struct ibv_mr* mr);
  struct ibv_cq* (*create_cq)(struct ibv_context* context, int cqe, void* cq_context,
                              struct ibv_comp_channel* channel, int comp_vector);
  int (*destroy_cq)(struct ibv_cq* cq);
  struct ibv_qp* (*create_qp)(struct ibv_pd* pd, struct ibv_qp_init_attr* attr);
  int (*modify_qp)(struct ibv_qp* qp, struct ibv_qp_attr* attr, int mask);
  int (*destroy_qp)(struct ibv_qp* qp);
  struct ibv_srq* (*create_srq)(struct ibv_pd* pd, struct ibv_srq_init_attr* attr);
  int (*destroy_srq)(struct ibv_srq* srq);
  int (*get_async_event)(struct ibv_context* context, struct ibv_async_event* event);
  void (*ack_async_event)(struct ibv_async_event* event);
  const char* (*wc_status_str)(enum ibv_wc_status status);
  const char* (*event_type_str)(enum ibv_event_type event);
  // Optional (rdma-core 34+): DMA-BUF registration; null when the library lacks it.
  struct ibv_mr* (*reg_dmabuf_mr)(struct ibv_pd* pd, uint64_t offset, size_t length,
                                  uint64_t iova, int fd, int access);
  // Optional (rdma-core 29+): registration that accepts the optional access flags (relaxed
  // ordering), which the old ibv_reg_mr entry point may refuse.
  struct ibv_mr* (*reg_mr_iova2)(struct ibv_pd* pd, void* addr, size_t length, uint64_t iova,
                                 unsigned int access);
};

// Loads `library` once per name ("libibverbs.so.1" in the plugin; tests may name another);
// nullptr with *why when it cannot be opened or lacks a required symbol.
const VerbsApi* loadVerbs(const std::string& library, std::string* why);

}  // namespace epyard::net::verbs
