# Device-machine environment (copied from the shared notes so it travels with the repo).
# Source inside a `device` run before building or running GPU code. Read off nvidia-h200-x4, 2026-11-21.
# - NCCL 2.28.9 comes with torch's pip packages; it ships libnccl.so.2 but no libnccl.so symlink.
# - OpenMPI lives under /usr/lib/x86_64-linux-gnu/openmpi; mpirun needs --allow-run-as-root.
# - NVLink multicast must stay off on these shared hosts.
NCCL_PIP=/opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl
export EPYARD_NCCL_HOME=/tmp/epyard-nccl
mkdir -p "$EPYARD_NCCL_HOME/lib"
ln -sfn "$NCCL_PIP/include" "$EPYARD_NCCL_HOME/include"
ln -sf "$NCCL_PIP/lib/libnccl.so.2" "$EPYARD_NCCL_HOME/lib/libnccl.so.2"
ln -sf "$NCCL_PIP/lib/libnccl.so.2" "$EPYARD_NCCL_HOME/lib/libnccl.so"
export LD_LIBRARY_PATH="$EPYARD_NCCL_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH=/opt/torch/.venv/bin:$PATH   # python3 with torch 2.11.0+cu130, cmake, ninja
# libfabric 1.17 runtime is installed, its headers are not: unpack Debian's libfabric-dev 1.17
# (apt-get download libfabric-dev on the CPU machine, carry the .deb) with `dpkg -x` into a
# folder of your own and point CMake at it — never into /.
