/* transport_cuda.h -- AsyncEP's GPU transports, host side (DESIGN.md section
   3): `p2p` (each device pulls its peers' shards with cudaMemcpyPeerAsync on a
   dedicated copy stream: no SMs used, devices not coupled) and `nccl`
   (ncclAllGather of one layer on a dedicated stream per device). Built only
   when the Makefile finds nvcc/CUDA (ZP_HAVE_CUDA); the CPU executors do not
   use them yet: CUDA executors are a later issue. Every CUDA and NCCL call is
   checked. One owner thread (the comm thread) per zp_cuda_xport. */
#ifndef ZP_TRANSPORT_CUDA_H
#define ZP_TRANSPORT_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define ZP_CUDA_DEVICES_MAX 16

typedef struct zp_cuda_xport zp_cuda_xport;

/* Devices 0..ndev-1: a copy stream each, peer access enabled where the
   hardware allows, and an NCCL communicator over them when nccl. NULL with e
   set (no device, no peer path, NCCL failure). */
zp_cuda_xport *zp_cuda_xport_new(int ndev, bool nccl, zp_err *e);
void zp_cuda_xport_free(zp_cuda_xport *x);

/* p2p: device dst pulls shard[p] (on device p, bytes[p] long) into
   buf + off[p] for every p != dst, then waits for the copies. 0 or -1. */
int zp_cuda_p2p_gather(zp_cuda_xport *x, int dst, void *buf, void *const *shard,
		       const size_t *off, const size_t *bytes, zp_err *e);

/* nccl: every device contributes shard[d] (shard_bytes each, equal sizes:
   pad the last) and receives all of them in order into buf[d]. 0 or -1. */
int zp_cuda_nccl_gather(zp_cuda_xport *x, void *const *shard, void *const *buf,
			size_t shard_bytes, zp_err *e);

#endif
