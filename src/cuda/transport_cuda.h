/* transport_cuda.h -- AsyncEP's nccl transport on cuda executors (DESIGN.md
   section 3; transport.h's collective interface): a round is every
   executor's gather of one layer as one NCCL group: for each destination
   executor and each peer shard, an ncclSend on the source's copy-queue
   stream paired with an ncclRecv on the destination's; a segment from host
   memory (offload's host store) is a cudaMemcpyAsync on the destination's
   queue. Communicators: one rank per executor over the executors' GPUs
   (ncclCommInitAll), made at the first round; NCCL needs one rank per GPU,
   so executors sharing a GPU are refused there (use p2p). Every CUDA and
   NCCL call is checked; a failed round fails with the call's reason.
   Built where NCCL is found (ZP_HAVE_NCCL). Threads: transport.h's. */
#ifndef ZP_TRANSPORT_CUDA_H
#define ZP_TRANSPORT_CUDA_H

#include "transport.h"

#define ZP_CUDA_RANKS_MAX 64	/* executors of one engine (ZP_EXECUTORS_MAX) */

/* NULL where this build has no NCCL (the registry says so). */
zp_transport *zp_transport_nccl_new(void);

#endif
