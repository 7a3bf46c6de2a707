// ProcessGroupEpyard: the torch.distributed backend "epyard". Collectives go through NCCL (and
// so through NCCL's net plugin, epyard's where NCCL_NET_PLUGIN=epyard) on a stream of the
// group's own; every call returns a WorkEpyard. A watchdog thread aborts the communicators when
// a call overruns the group's timeout or NCCL reports an asynchronous error, so waiting ranks
// raise instead of hanging.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <condition_variable>
#include <deque>
#include <optional>
#include <thread>

#include "nccl_comms.hpp"
#include "work.hpp"

namespace epyard::c10d_backend {

class ProcessGroupEpyard : public ::c10d::Backend {
 public:
  ProcessGroupEpyard(const c10::intrusive_ptr<::c10d::Store>& store, int rank, int size,
                     std::chrono::milliseconds timeout);
  ~ProcessGroupEpyard() override;

  // The creator torch.distributed calls (Backend.register_backend).
  static c10::intrusive_ptr<::c10d::Backend> create(const c10::intrusive_ptr<::c10d::Store>& store,
                                                    int rank, int size,
                                                    const std::chrono::duration<float>& timeout);

  const std::string getBackendName() const override { return "epyard"; }

  c10::intrusive_ptr<::c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                             const ::c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                             const ::c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                          const ::c10d::ReduceOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                             std::vector<at::Tensor>& inputs,
                                             const ::c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                   const ::c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> allgather_into_tensor_coalesced(
      std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
      const ::c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                  std::vector<std::vector<at::Tensor>>& inputs,
                                                  const ::c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> _reduce_scatter_base(
      at::Tensor& output, at::Tensor& input, const ::c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> reduce_scatter_tensor_coalesced(
      std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
      const ::c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                                 std::vector<int64_t>& output_splits,
                                                 std::vector<int64_t>& input_splits,
                                                 const ::c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> alltoall(std::vector<at::Tensor>& outputs,
                                            std::vector<at::Tensor>& inputs,
                                            const ::c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> send(std::vector<at::Tensor>& tensors, int dst_rank,
                                        int tag) override;
  c10::intrusive_ptr<::c10d::Work> recv(std::vector<at::Tensor>& tensors, int src_rank,
                                        int tag) override;
  c10::intrusive_ptr<::c10d::Work> allreduce_coalesced(
      std::vector<at::Tensor>& tensors, const ::c10d::AllreduceCoalescedOptions& opts) override;
  c10::intrusive_ptr<::c10d::Work> barrier(const ::c10d::BarrierOptions& opts) override;

  // Coalescing (torch's _coalescing_manager, batch_isend_irecv): the calls between start and
  // end go into one NCCL group; each returns a Work that completes with the group, and
  // endCoalescing returns one Work for all of them (none when no call was made).
  bool supportsCoalescing() const override { return true; }
  void startCoalescing() override;
  c10::intrusive_ptr<::c10d::Work> endCoalescing() override;

  // The communicator of `device` (the EP module builds its groups on it, holding a Use).
  std::shared_ptr<DeviceComm> deviceComm(c10::DeviceIndex device) { return comms_.get(device); }
  void abort() override { comms_.abortAll("aborted by the application"); }

 private:
  using Launch = std::function<void(ncclComm_t, cudaStream_t)>;
  // Checks the tensors, orders the group's stream after the caller's current stream, runs
  // `launch`, and returns the Work covering it.
  // `uncoalescable`: the launch queues work behind its NCCL call (copies out of a staging
  // buffer) or hands it a temporary (a packed input): inside a coalesced NCCL group the call
  // only runs at the group's end, after both, so such collectives refuse to join one.
  c10::intrusive_ptr<::c10d::Work> run(::c10d::OpType type, const char* name,
                                       std::vector<at::Tensor> outputs,
                                       std::vector<at::Tensor> inputs, const Launch& launch,
                                       bool blocking = false, bool uncoalescable = false);
  void watch();
  // One round of the watchdog outside works_mu_: why the group must abort ("" if it need not).
  std::string asyncError();

  std::chrono::milliseconds timeout_;
  NcclComms comms_;
  std::mutex works_mu_;
  std::deque<c10::intrusive_ptr<WorkEpyard>> works_;  // not yet completed, oldest first
  std::thread watchdog_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  // Coalescing state (the caller's thread only, as in torch).
  bool coalescing_ = false;
  std::shared_ptr<DeviceComm> coalesced_dc_;
  std::optional<CommState::Use> coalesced_use_;  // the block's NCCL group is open on it
  std::vector<c10::intrusive_ptr<WorkEpyard>> coalesced_works_;
  std::vector<at::Tensor> coalesced_outputs_, coalesced_inputs_;
};

}  // namespace epyard::c10d_backend
