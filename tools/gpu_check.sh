#!/bin/sh
# gpu_check.sh -- everything GPU-side in one run, for a machine with a lent GPU
# (the device tool): what the GPUs are, then the CUDA transports' test
# (p2p and NCCL gathers checked byte for byte, with their GB/s).
set -eu
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=index,name,memory.total --format=csv || true
nvidia-smi topo -m || true
make build/test_transport_cuda
./build/test_transport_cuda
