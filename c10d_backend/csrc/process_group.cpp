#include "process_group.hpp"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdio>

#include <numeric>
#include <utility>

namespace epyard::c10d_backend {
namespace {

void checkTensor(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.is_cuda(), "epyard: ", op, " got a ", t.device(),
              " tensor; the epyard backend handles CUDA tensors (for CPU tensors give the group a "
              "CPU backend too: init_process_group(\"cpu:gloo,cuda:epyard\"))");
  TORCH_CHECK(!t.is_sparse(), "epyard: ", op, " does not support sparse tensors");
  TORCH_CHECK(t.is_contiguous(), "epyard: ", op, " needs contiguous tensors");
}

void one(const std::vector<at::Tensor>& v, const char* op) {
  TORCH_CHECK(v.size() == 1, "epyard: ", op, " takes one tensor per process, got ", v.size());
}

}  // namespace

ProcessGroupEpyard::ProcessGroupEpyard(const c10::intrusive_ptr<::c10d::Store>& store, int rank,
                                       int size, std::chrono::milliseconds timeout)
    : Backend(rank, size),
      timeout_(timeout),
      comms_(store, rank, size, "epyard", timeout),
      watchdog_([this] { watch(); }) {}

ProcessGroupEpyard::~ProcessGroupEpyard() {
  {
    std::lock_guard<std::mutex> lock(works_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  watchdog_.join();
}

c10::intrusive_ptr<::c10d::Backend> ProcessGroupEpyard::create(
    const c10::intrusive_ptr<::c10d::Store>& store, int rank, int size,
    const std::chrono::duration<float>& timeout) {
  return c10::make_intrusive<ProcessGroupEpyard>(
      store, rank, size, std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
}

void ProcessGroupEpyard::watch() {
  bool capture_mode_set = false;
  std::unique_lock<std::mutex> lock(works_mu_);
  while (!stop_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (!works_.empty() && !capture_mode_set) {
      // Another thread's global-mode graph capture would forbid this thread's event queries
      // (and be invalidated by them): this thread never captures, so it opts out of that rule.
      cudaStreamCaptureMode mode = cudaStreamCaptureModeThreadLocal;
      capture_mode_set = cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess;
      if (!capture_mode_set) (void)cudaGetLastError();
    }
    // Any exception here would end the process (std::terminate on this thread): it becomes the
    // reason to abort instead.
    std::string reason;
    try {
      while (!works_.empty() && works_.front()->isCompleted()) works_.pop_front();
      for (const auto& w : works_)
        if (w->overdue()) {
          reason = w->describe();
          break;
        }
    } catch (const std::exception& e) {
      reason = std::string("the watchdog could not query a call's state: ") + e.what();
    }
    lock.unlock();  // NCCL calls below: the caller's threads keep queueing work meanwhile
    try {
      if (reason.empty()) reason = asyncError();
      if (!reason.empty()) {
        TORCH_WARN("epyard: ", reason, "; aborting the group's communicators");
        comms_.abortAll(reason);
      }
    } catch (const std::exception& e) {
      fprintf(stderr, "epyard: the watchdog failed while aborting the group: %s\n", e.what());
    }
    lock.lock();
    if (!reason.empty()) works_.clear();
  }
}

std::string ProcessGroupEpyard::asyncError() {
  for (const auto& dc : comms_.all()) {
    std::optional<CommState::Use> use = dc->state.enter(nullptr);
    ncclResult_t async = ncclSuccess;
    if (use && ncclCommGetAsyncError(use->comm(), &async) == ncclSuccess && async != ncclSuccess)
      return std::string("NCCL reported an asynchronous error on cuda:") + std::to_string(dc->device) +
             ": " + ncclGetErrorString(async);
  }
  return "";
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::run(::c10d::OpType type, const char* name,
                                                         std::vector<at::Tensor> outputs,
                                                         std::vector<at::Tensor> inputs,
                                                         const Launch& launch, bool blocking,
                                                         bool uncoalescable) {
  TORCH_CHECK(!outputs.empty() || !inputs.empty(), "epyard: ", name, " got no tensors");
  TORCH_CHECK(!coalescing_ || !(blocking || uncoalescable), "epyard: ", name,
              " cannot run inside a coalescing block (torch's _coalescing_manager); call it "
              "outside, or use the *_into_tensor / *_tensor form");
  const at::Tensor& first = !inputs.empty() ? inputs.front() : outputs.front();
  // Caller errors are raised here, before anything is queued (not from inside the launch).
  for (const std::vector<at::Tensor>* list : {&inputs, &outputs})
    for (const at::Tensor& t : *list) {
      checkTensor(t, name);
      toNcclType(t, name);
    }
  const c10::DeviceIndex device = first.device().index();
  for (const at::Tensor& t : inputs)
    TORCH_CHECK(t.device() == first.device(), "epyard: ", name, " needs all tensors on one device");
  for (const at::Tensor& t : outputs)
    TORCH_CHECK(t.device() == first.device(), "epyard: ", name, " needs all tensors on one device");
  c10::cuda::CUDAGuard guard(device);
  // Works made during a graph capture are not watched: their events are recorded only when the
  // graph replays, and querying them would invalidate the capture.
  const bool capturing = c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
  TORCH_CHECK(!(blocking && capturing), "epyard: ", name,
              " blocks the CPU until done, which a CUDA graph capture cannot; call it outside the capture");
  std::shared_ptr<DeviceComm> dc = comms_.get(device);
  TORCH_CHECK(!coalescing_ || coalesced_dc_ == nullptr || coalesced_dc_ == dc, "epyard: ", name,
              " on cuda:", int(device), " inside a coalescing block that began on cuda:",
              coalesced_dc_ ? int(coalesced_dc_->device) : -1, "; one block, one device");
  // A coalesced block's NCCL group opens at its first call, once the communicator exists (a
  // communicator created inside a group would only be initialised at the group's end).
  // The communicator stays valid (an abort waits) while this call, or the open block, uses it.
  std::string why;
  std::optional<CommState::Use> use;
  if (!coalescing_ || coalesced_dc_ == nullptr) {
    use = dc->state.enter(&why);
    TORCH_CHECK(use, "epyard: ", name, ": the communicator on cuda:", int(device), " was aborted: ", why);
  }
  const ncclComm_t comm = use ? use->comm() : coalesced_use_->comm();
  if (coalescing_ && coalesced_dc_ == nullptr) {
    EPYARD_NCCL(comm, ncclGroupStart());
    coalesced_dc_ = dc;
    coalesced_use_.emplace(std::move(*use));
    use.reset();
  }
  // The group's stream waits for what the caller queued before this call.
  at::cuda::CUDAEvent ready;
  ready.record(c10::cuda::getCurrentCUDAStream(device));
  ready.block(dc->stream);
  for (const at::Tensor& t : inputs) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), dc->stream);
  for (const at::Tensor& t : outputs) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), dc->stream);
  {
    c10::cuda::CUDAStreamGuard stream_guard(dc->stream);
    launch(comm, dc->stream.stream());
  }
  if (coalescing_) {  // queued in the NCCL group: finished by endCoalescing
    coalesced_outputs_.insert(coalesced_outputs_.end(), outputs.begin(), outputs.end());
    coalesced_inputs_.insert(coalesced_inputs_.end(), inputs.begin(), inputs.end());
    auto work = c10::make_intrusive<WorkEpyard>(rank_, type, name, dc, std::move(outputs),
                                                std::move(inputs), timeout_, false);
    coalesced_works_.push_back(work);
    return work;
  }
  auto work = c10::make_intrusive<WorkEpyard>(rank_, type, name, dc, std::move(outputs),
                                              std::move(inputs), timeout_, blocking);
  work->finish();
  if (!capturing) {
    std::lock_guard<std::mutex> lock(works_mu_);
    works_.push_back(work);
  }
  return work;
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::broadcast(std::vector<at::Tensor>& tensors,
                                                               const ::c10d::BroadcastOptions& opts) {
  one(tensors, "broadcast");
  at::Tensor t = tensors[0];
  const int root = static_cast<int>(opts.rootRank);
  return run(::c10d::OpType::BROADCAST, "broadcast", {t}, {}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), toNcclType(t, "broadcast"), root, c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::allreduce(std::vector<at::Tensor>& tensors,
                                                               const ::c10d::AllreduceOptions& opts) {
  one(tensors, "allreduce");
  at::Tensor t = tensors[0];
  const ncclRedOp_t op = toNcclOp(opts.reduceOp, t, "allreduce");
  return run(::c10d::OpType::ALLREDUCE, "allreduce", {t}, {}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), toNcclType(t, "allreduce"), op, c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::reduce(std::vector<at::Tensor>& tensors,
                                                            const ::c10d::ReduceOptions& opts) {
  one(tensors, "reduce");
  at::Tensor t = tensors[0];
  const ncclRedOp_t op = toNcclOp(opts.reduceOp, t, "reduce");
  const int root = static_cast<int>(opts.rootRank);
  return run(::c10d::OpType::REDUCE, "reduce", {t}, {}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclReduce(t.data_ptr(), t.data_ptr(), t.numel(), toNcclType(t, "reduce"), op, root, c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::_allgather_base(at::Tensor& output, at::Tensor& input,
                                                                     const ::c10d::AllgatherOptions&) {
  TORCH_CHECK(output.numel() == input.numel() * getSize(), "epyard: _allgather_base output has ",
              output.numel(), " elements, expected ", input.numel() * getSize());
  TORCH_CHECK(output.scalar_type() == input.scalar_type(), "epyard: allgather dtypes differ");
  at::Tensor in = input, out = output;
  return run(::c10d::OpType::_ALLGATHER_BASE, "_allgather_base", {out}, {in}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), toNcclType(in, "allgather"), c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                                               std::vector<at::Tensor>& inputs,
                                                               const ::c10d::AllgatherOptions&) {
  one(inputs, "allgather");
  TORCH_CHECK(outputs.size() == 1 && static_cast<int>(outputs[0].size()) == getSize(),
              "epyard: allgather needs one output list of ", getSize(), " tensors");
  at::Tensor in = inputs[0];
  for (const at::Tensor& o : outputs[0])
    TORCH_CHECK(o.numel() == in.numel() && o.scalar_type() == in.scalar_type(),
                "epyard: allgather outputs must match the input's size and dtype");
  std::vector<at::Tensor> outs = outputs[0];
  return run(::c10d::OpType::ALLGATHER, "allgather", outs, {in}, [&](ncclComm_t c, cudaStream_t s) {
    at::Tensor flat = at::empty({in.numel() * getSize()}, in.options());
    EPYARD_NCCL(c, ncclAllGather(in.data_ptr(), flat.data_ptr(), in.numel(), toNcclType(in, "allgather"), c, s));
    for (int r = 0; r < getSize(); ++r) outs[r].copy_(flat.narrow(0, r * in.numel(), in.numel()).view_as(outs[r]));
  }, /*blocking=*/false, /*uncoalescable=*/true);
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::allgather_into_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs, const ::c10d::AllgatherOptions&) {
  TORCH_CHECK(outputs.size() == inputs.size(), "epyard: allgather_into_tensor_coalesced needs as many outputs as inputs");
  for (size_t i = 0; i < inputs.size(); ++i)
    TORCH_CHECK(outputs[i].numel() == inputs[i].numel() * getSize(), "epyard: allgather_into_tensor_coalesced output ",
                i, " has ", outputs[i].numel(), " elements, expected ", inputs[i].numel() * getSize());
  return run(::c10d::OpType::COALESCED, "allgather_into_tensor_coalesced", outputs, inputs, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclGroupStart());
    for (size_t i = 0; i < inputs.size(); ++i)
      EPYARD_NCCL(c, ncclAllGather(inputs[i].data_ptr(), outputs[i].data_ptr(), inputs[i].numel(),
                                   toNcclType(inputs[i], "allgather_into_tensor_coalesced"), c, s));
    EPYARD_NCCL(c, ncclGroupEnd());
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::_reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                                          const ::c10d::ReduceScatterOptions& opts) {
  TORCH_CHECK(input.numel() == output.numel() * getSize(), "epyard: _reduce_scatter_base input has ",
              input.numel(), " elements, expected ", output.numel() * getSize());
  const ncclRedOp_t op = toNcclOp(opts.reduceOp, output, "reduce_scatter");
  at::Tensor in = input, out = output;
  return run(::c10d::OpType::_REDUCE_SCATTER_BASE, "_reduce_scatter_base", {out}, {in}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), toNcclType(out, "reduce_scatter"), op, c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::reduce_scatter(std::vector<at::Tensor>& outputs,
                                                                    std::vector<std::vector<at::Tensor>>& inputs,
                                                                    const ::c10d::ReduceScatterOptions& opts) {
  one(outputs, "reduce_scatter");
  TORCH_CHECK(inputs.size() == 1 && static_cast<int>(inputs[0].size()) == getSize(),
              "epyard: reduce_scatter needs one input list of ", getSize(), " tensors");
  at::Tensor out = outputs[0];
  std::vector<at::Tensor> ins = inputs[0];
  for (const at::Tensor& i : ins)
    TORCH_CHECK(i.numel() == out.numel() && i.scalar_type() == out.scalar_type(),
                "epyard: reduce_scatter inputs must match the output's size and dtype");
  const ncclRedOp_t op = toNcclOp(opts.reduceOp, out, "reduce_scatter");
  return run(::c10d::OpType::REDUCE_SCATTER, "reduce_scatter", {out}, ins, [&](ncclComm_t c, cudaStream_t s) {
    std::vector<at::Tensor> flat_parts;
    for (const at::Tensor& i : ins) flat_parts.push_back(i.reshape({-1}));
    at::Tensor flat = at::cat(flat_parts);
    EPYARD_NCCL(c, ncclReduceScatter(flat.data_ptr(), out.data_ptr(), out.numel(), toNcclType(out, "reduce_scatter"), op, c, s));
  }, /*blocking=*/false, /*uncoalescable=*/true);
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::reduce_scatter_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs, const ::c10d::ReduceScatterOptions& opts) {
  TORCH_CHECK(outputs.size() == inputs.size(), "epyard: reduce_scatter_tensor_coalesced needs as many outputs as inputs");
  std::vector<ncclRedOp_t> ops;
  for (size_t i = 0; i < inputs.size(); ++i) {
    TORCH_CHECK(inputs[i].numel() == outputs[i].numel() * getSize(), "epyard: reduce_scatter_tensor_coalesced input ",
                i, " has ", inputs[i].numel(), " elements, expected ", outputs[i].numel() * getSize());
    ops.push_back(toNcclOp(opts.reduceOp, outputs[i], "reduce_scatter_tensor_coalesced"));
  }
  return run(::c10d::OpType::COALESCED, "reduce_scatter_tensor_coalesced", outputs, inputs, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclGroupStart());
    for (size_t i = 0; i < inputs.size(); ++i)
      EPYARD_NCCL(c, ncclReduceScatter(inputs[i].data_ptr(), outputs[i].data_ptr(), outputs[i].numel(),
                                       toNcclType(outputs[i], "reduce_scatter_tensor_coalesced"), ops[i], c, s));
    EPYARD_NCCL(c, ncclGroupEnd());
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::alltoall_base(at::Tensor& output, at::Tensor& input,
                                                                   std::vector<int64_t>& output_splits,
                                                                   std::vector<int64_t>& input_splits,
                                                                   const ::c10d::AllToAllOptions&) {
  const int n = getSize();
  TORCH_CHECK(output.scalar_type() == input.scalar_type(), "epyard: alltoall_base dtypes differ");
  auto splits = [&](const at::Tensor& t, const std::vector<int64_t>& given, const char* which) {
    std::vector<int64_t> rows = given;
    const int64_t total = t.dim() > 0 ? t.size(0) : 0;
    if (rows.empty()) {
      TORCH_CHECK(total % n == 0, "epyard: alltoall_base ", which, " has ", total,
                  " rows, not a multiple of the group size ", n, " (pass split sizes)");
      rows.assign(n, total / n);
    }
    TORCH_CHECK(static_cast<int>(rows.size()) == n, "epyard: alltoall_base ", which, " splits have ",
                rows.size(), " entries for ", n, " ranks");
    TORCH_CHECK(std::accumulate(rows.begin(), rows.end(), int64_t{0}) == total, "epyard: alltoall_base ",
                which, " splits add up to ", std::accumulate(rows.begin(), rows.end(), int64_t{0}),
                " rows, the tensor has ", total);
    return rows;
  };
  const std::vector<int64_t> in_rows = splits(input, input_splits, "input");
  const std::vector<int64_t> out_rows = splits(output, output_splits, "output");
  // A row is everything after the first dimension, and both tensors must agree on it (as
  // ProcessGroupNCCL, which sizes receives from the output): receives are posted in the
  // output's rows, sends in the input's, and a mismatch would write past the output.
  auto trailing = [](const at::Tensor& t) {
    return t.dim() > 0 ? t.sizes().slice(1).vec() : std::vector<int64_t>{};
  };
  TORCH_CHECK(input.dim() > 0 && output.dim() > 0, "epyard: alltoall_base needs tensors with a first "
              "(row) dimension; got ", input.dim(), "-d input and ", output.dim(), "-d output");
  TORCH_CHECK(trailing(input) == trailing(output), "epyard: alltoall_base input rows have trailing shape ",
              c10::IntArrayRef(trailing(input)), " but output rows have ", c10::IntArrayRef(trailing(output)),
              " (the row shape after the first dimension must match)");
  int64_t row = 1;
  for (int64_t d : trailing(input)) row *= d;
  at::Tensor in = input, out = output;
  return run(::c10d::OpType::ALLTOALL_BASE, "alltoall_base", {out}, {in}, [&](ncclComm_t c, cudaStream_t s) {
    const ncclDataType_t type = toNcclType(in, "alltoall_base");
    const size_t element = in.element_size();
    char* src = static_cast<char*>(in.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    EPYARD_NCCL(c, ncclGroupStart());
    int64_t in_at = 0, out_at = 0;
    for (int r = 0; r < n; ++r) {
      EPYARD_NCCL(c, ncclSend(src + in_at * row * element, in_rows[r] * row, type, r, c, s));
      EPYARD_NCCL(c, ncclRecv(dst + out_at * row * element, out_rows[r] * row, type, r, c, s));
      in_at += in_rows[r];
      out_at += out_rows[r];
    }
    EPYARD_NCCL(c, ncclGroupEnd());
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::alltoall(std::vector<at::Tensor>& outputs,
                                                              std::vector<at::Tensor>& inputs,
                                                              const ::c10d::AllToAllOptions&) {
  const int n = getSize();
  TORCH_CHECK(static_cast<int>(outputs.size()) == n && static_cast<int>(inputs.size()) == n,
              "epyard: alltoall needs ", n, " input and ", n, " output tensors");
  return run(::c10d::OpType::ALLTOALL, "alltoall", outputs, inputs, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclGroupStart());
    for (int r = 0; r < n; ++r) {
      EPYARD_NCCL(c, ncclSend(inputs[r].data_ptr(), inputs[r].numel(), toNcclType(inputs[r], "alltoall"), r, c, s));
      EPYARD_NCCL(c, ncclRecv(outputs[r].data_ptr(), outputs[r].numel(), toNcclType(outputs[r], "alltoall"), r, c, s));
    }
    EPYARD_NCCL(c, ncclGroupEnd());
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::send(std::vector<at::Tensor>& tensors, int dst_rank, int) {
  one(tensors, "send");
  at::Tensor t = tensors[0];
  return run(::c10d::OpType::SEND, "send", {}, {t}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclSend(t.data_ptr(), t.numel(), toNcclType(t, "send"), dst_rank, c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::recv(std::vector<at::Tensor>& tensors, int src_rank, int) {
  one(tensors, "recv");
  at::Tensor t = tensors[0];
  return run(::c10d::OpType::RECV, "recv", {t}, {}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclRecv(t.data_ptr(), t.numel(), toNcclType(t, "recv"), src_rank, c, s));
  });
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::allreduce_coalesced(
    std::vector<at::Tensor>& tensors, const ::c10d::AllreduceCoalescedOptions& opts) {
  std::vector<ncclRedOp_t> ops;
  for (const at::Tensor& t : tensors) ops.push_back(toNcclOp(opts.reduceOp, t, "allreduce_coalesced"));
  std::vector<at::Tensor> ts = tensors;
  return run(::c10d::OpType::COALESCED, "allreduce_coalesced", ts, {}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclGroupStart());
    for (size_t i = 0; i < ts.size(); ++i)
      EPYARD_NCCL(c, ncclAllReduce(ts[i].data_ptr(), ts[i].data_ptr(), ts[i].numel(),
                                   toNcclType(ts[i], "allreduce_coalesced"), ops[i], c, s));
    EPYARD_NCCL(c, ncclGroupEnd());
  });
}

void ProcessGroupEpyard::startCoalescing() {
  TORCH_CHECK(!coalescing_, "epyard: startCoalescing inside a coalescing block (they do not nest)");
  coalescing_ = true;  // the NCCL group opens at the block's first call
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::endCoalescing() {
  TORCH_CHECK(coalescing_, "epyard: endCoalescing without startCoalescing");
  coalescing_ = false;
  // Take the block's state (std::exchange leaves the members empty for the next block).
  std::shared_ptr<DeviceComm> dc = std::exchange(coalesced_dc_, nullptr);
  std::optional<CommState::Use> use = std::move(coalesced_use_);  // released on return
  coalesced_use_.reset();
  auto works = std::exchange(coalesced_works_, {});
  auto outputs = std::exchange(coalesced_outputs_, {}), inputs = std::exchange(coalesced_inputs_, {});
  if (dc == nullptr) return nullptr;  // nothing was queued (as ProcessGroupNCCL)
  EPYARD_NCCL(use->comm(), ncclGroupEnd());  // launches everything queued
  c10::cuda::CUDAGuard guard(dc->device);
  auto all = c10::make_intrusive<WorkEpyard>(rank_, ::c10d::OpType::COALESCED, "coalesced block", dc,
                                             std::move(outputs), std::move(inputs), timeout_, false);
  all->finish();
  for (auto& w : works) w->finish();
  if (c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None) {
    std::lock_guard<std::mutex> lock(works_mu_);
    works_.push_back(all);
  }
  return all;
}

c10::intrusive_ptr<::c10d::Work> ProcessGroupEpyard::barrier(const ::c10d::BarrierOptions& opts) {
  c10::DeviceIndex device = c10::cuda::current_device();
  if (opts.device.has_value() && opts.device->is_cuda()) device = opts.device->index();
  if (!opts.device_ids.empty()) device = static_cast<c10::DeviceIndex>(opts.device_ids.front());
  at::Tensor t = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device));
  return run(::c10d::OpType::BARRIER, "barrier", {t}, {}, [&](ncclComm_t c, cudaStream_t s) {
    EPYARD_NCCL(c, ncclAllReduce(t.data_ptr(), t.data_ptr(), 1, ncclFloat32, ncclSum, c, s));
  }, /*blocking=*/true);
}

}  // namespace epyard::c10d_backend
