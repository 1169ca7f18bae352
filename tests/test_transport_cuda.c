/* test_transport_cuda.c -- the GPU transports through transport.h on real
   devices: shards of random bytes on every device; each device's own part
   comes from host memory (offload's prefetch) and its peers' parts from their
   devices: by p2p one call per destination (as the comm thread gathers), by
   nccl one call for every device (an all-gather). The buffers read back must
   equal the shards laid out in order; an injected fault fails one call only.
   Prints GB/s of each. Everywhere: the CPU engine refuses p2p and nccl with
   the reason. Exit 77 (after those checks) where this build has no CUDA or
   the machine no GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "device.h"
#include "util.h"

/* CPU executors: the device transports are refused, naming CUDA. */
static void check_cpu_refuses(void)
{
	zp_err e;
	CHECK(!zp_device_transport_new(ZP_DEV_CPU, "p2p", &e) && strstr(e.msg, "CUDA"), "p2p refused: %s", e.msg);
	CHECK(!zp_device_transport_new(ZP_DEV_CPU, "nccl", &e) && strstr(e.msg, "CUDA"), "nccl refused: %s", e.msg);
	CHECK(!zp_device_transport_new(ZP_DEV_CPU, "tcp", &e) && strstr(e.msg, "cpu, nccl or p2p"), "tcp: %s", e.msg);
}

#ifndef ZP_HAVE_CUDA
int main(void)
{
	check_cpu_refuses();
	if (check_failures)
		return check_exit("test_transport_cuda");
	printf("built without CUDA: the GPU transports are not compiled in\n");
	return 77;
}
#else
#include <cuda_runtime.h>

#include "transport_cuda.h"

#define SHARD (64u << 20)
#define NDEV_MAX 8

static int ndev;
static unsigned char *host;			/* [ndev * SHARD] the layer, as it must arrive */
static void *shard[NDEV_MAX], *buf[NDEV_MAX];	/* [SHARD] on device d; [ndev * SHARD] on d */

static zp_copy_seg seg(void *dst, int dst_dev, const void *src, int src_dev, size_t bytes)
{
	return (zp_copy_seg){ .dst = dst, .src = src, .bytes = bytes, .dst_dev = dst_dev,
			      .src_dev = src_dev };
}

/* Device d's gather: its own part from the host, every peer's from its device. */
static int gather_segs(int d, zp_copy_seg *segs)
{
	int n = 0;
	segs[n++] = seg((char *)buf[d] + (size_t)d * SHARD, d, host + (size_t)d * SHARD, ZP_DEV_HOST,
			SHARD);
	for (int p = 0; p < ndev; p++)
		if (p != d)
			segs[n++] = seg((char *)buf[d] + (size_t)p * SHARD, d, shard[p], p, SHARD);
	return n;
}

static void check_layers(const char *name, unsigned char *back)
{
	for (int d = 0; d < ndev; d++) {
		CHECK(cudaSetDevice(d) == cudaSuccess, "set device");
		CHECK(cudaMemcpy(back, buf[d], (size_t)SHARD * ndev, cudaMemcpyDeviceToHost) ==
		      cudaSuccess, "download");
		CHECK(memcmp(back, host, (size_t)SHARD * ndev) == 0, "%s: device %d's layer differs",
		      name, d);
	}
}

static void check_transport(const char *name, unsigned char *back)
{
	zp_err e;
	zp_copy_seg segs[NDEV_MAX * NDEV_MAX];
	zp_transport *t = zp_transport_cuda_new(name, ndev, &e);
	CHECK(t, "%s: %s", name, e.msg);
	if (!t)
		return;
	for (int d = 0; d < ndev; d++) { /* nothing left from the last transport */
		CHECK(cudaSetDevice(d) == cudaSuccess, "set device");
		CHECK(cudaMemset(buf[d], 0, (size_t)SHARD * ndev) == cudaSuccess, "clear");
	}
	int rc = 0, n = 0;
	double t0 = zp_now_s();
	if (!strcmp(name, "nccl")) {
		for (int d = 0; d < ndev; d++)
			n += gather_segs(d, segs + n);
		rc = zp_transport_copy(t, segs, n, &e);
	} else {
		for (int d = 0; d < ndev && !rc; d++)
			rc = zp_transport_copy(t, segs, gather_segs(d, segs), &e);
	}
	double dt = zp_now_s() - t0;
	CHECK(rc == 0, "%s gather: %s", name, e.msg);
	check_layers(name, back);
	printf("%s: %d devices, %.2f GB moved (host parts included) in %.3f ms: %.1f GB/s\n", name,
	       ndev, (double)SHARD * ndev * ndev / 1e9, dt * 1e3,
	       (double)SHARD * ndev * ndev / 1e9 / dt);
	/* a fault fails that call only; the next one (device to host) is exact */
	zp_transport_fail_after(t, 1);
	CHECK(zp_transport_copy(t, segs, gather_segs(0, segs), &e) == -1 &&
	      strstr(e.msg, "injected fault"), "%s: injected fault: %s", name, e.msg);
	memset(back, 0, SHARD);
	segs[0] = seg(back, ZP_DEV_HOST, shard[ndev - 1], ndev - 1, SHARD);
	CHECK(zp_transport_copy(t, segs, 1, &e) == 0, "%s after the fault: %s", name, e.msg);
	CHECK(memcmp(back, host + (size_t)(ndev - 1) * SHARD, SHARD) == 0, "%s: download differs",
	      name);
	zp_transport_free(t);
}

int main(void)
{
	zp_err e;
	int count = 0;
	check_cpu_refuses();
	CHECK(!zp_transport_cuda_new("tcp", 1, &e) && strstr(e.msg, "p2p or nccl"), "tcp: %s", e.msg);
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
		/* the constructor says why instead of failing later */
		CHECK(!zp_transport_cuda_new("p2p", 1, &e) && e.msg[0], "no device: refused");
		printf("no CUDA device here (%s)\n", e.msg);
		return check_failures ? check_exit("test_transport_cuda") : 77;
	}
	CHECK(!zp_transport_cuda_new("p2p", count + 1, &e) && strstr(e.msg, "devices asked"),
	      "too many devices: %s", e.msg);
	ndev = count > NDEV_MAX ? NDEV_MAX : count;
	host = zp_xmalloc((size_t)SHARD * ndev);
	unsigned char *back = zp_xmalloc((size_t)SHARD * ndev);
	for (size_t i = 0; i < (size_t)SHARD * ndev; i++)
		host[i] = (unsigned char)(i * 2654435761u >> 13);
	for (int d = 0; d < ndev; d++) {
		CHECK(cudaSetDevice(d) == cudaSuccess, "set device");
		CHECK(cudaMalloc(&shard[d], SHARD) == cudaSuccess, "malloc shard");
		CHECK(cudaMalloc(&buf[d], (size_t)SHARD * ndev) == cudaSuccess, "malloc buf");
		CHECK(cudaMemcpy(shard[d], host + (size_t)d * SHARD, SHARD, cudaMemcpyHostToDevice) ==
		      cudaSuccess, "upload");
	}
	check_transport("p2p", back);
	check_transport("nccl", back);
	for (int d = 0; d < ndev; d++) {
		CHECK(cudaSetDevice(d) == cudaSuccess && cudaFree(shard[d]) == cudaSuccess &&
		      cudaFree(buf[d]) == cudaSuccess, "free device %d", d);
	}
	free(host);
	free(back);
	return check_exit("test_transport_cuda");
}
#endif
