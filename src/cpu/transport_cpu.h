/* transport_cpu.h -- the cpu transport (transport.h): executors that share
   host memory; a gather is memcpy from peers' shards, run by the comm thread. */
#ifndef ZP_TRANSPORT_CPU_H
#define ZP_TRANSPORT_CPU_H

#include "transport.h"

zp_transport *zp_transport_cpu_new(void);

#endif
