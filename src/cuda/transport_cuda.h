/* transport_cuda.h -- AsyncEP's GPU transports behind transport.h's
   interface (DESIGN.md section 3), host side: `p2p` (the destination device
   pulls each segment with cudaMemcpyPeerAsync on its own copy stream: copy
   engines, no SMs, devices not coupled) and `nccl` (each device-to-device
   segment is an ncclSend/ncclRecv pair on the two devices' streams, all of a
   call in one NCCL group: a whole layer for every device in one call is an
   all-gather). Segments with a host end (offload's prefetch from the host
   store) or within one device are cudaMemcpyAsync on that device's stream, in
   both. Built only when the Makefile finds CUDA and NCCL (ZP_HAVE_CUDA); the
   CPU executors use the cpu transport. Every CUDA and NCCL call is checked.
   Threads: transport.h's (one copying thread at a time). */
#ifndef ZP_TRANSPORT_CUDA_H
#define ZP_TRANSPORT_CUDA_H

#include "transport.h"

#define ZP_CUDA_DEVICES_MAX 16

/* Transport name ("p2p" or "nccl") over CUDA devices 0..ndev-1: a copy stream
   each, peer access enabled between every pair, and for nccl a communicator
   whose rank d is device d. Segments name devices below ndev (or
   ZP_DEV_HOST, at most one end of each). NULL with e set: another name, no
   such devices, no peer path, an NCCL failure. */
zp_transport *zp_transport_cuda_new(const char *name, int ndev, zp_err *e);

#endif
