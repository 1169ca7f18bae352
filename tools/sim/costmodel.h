/* costmodel.h -- the simulator's device and link cost model (tools/simulate.c):
   how long one executor's forward takes, and what of it is exposed gather
   wait or communication, under each parallel mode. Two sources of op times:
     profile   per-op and whole-forward times measured by `zprefill bench
               --profile` on the backend in use (this machine's CPU), fitted
               to a + b tokens + c pairs;
     roofline  a device that is not here: per op class max(FLOPs / (peak x
               efficiency), bytes / (HBM bandwidth x efficiency)) plus a launch
               cost per kernel, from the hardware table in costmodel.c (every
               number there with its source).
   Links: bandwidth per direction x efficiency, plus a latency per transfer.
   Executors sharing CPU cores (profile, --cores C): a forward is the
   profile's CPU seconds (forward_cpu_s), and k busy executors each run at
   min(1, C / k) of a core (simulate.c's speed()). The time slicing is
   counted there and only there: a profile taken under the run's own
   concurrency (`# concurrency=N`: N copies of bench at once on the run's
   cores, as tools/sim/validate.sh takes it) has wall times that already
   hold the C / N share, so its wall fit is never used; its CPU seconds
   hold what sharing costs besides the slicing (caches shared by N working
   sets, switches), which is why it is taken that way. Such a profile
   needs --cores.
   Pure functions over a built model; single-threaded tool code. */
#ifndef ZP_SIM_COSTMODEL_H
#define ZP_SIM_COSTMODEL_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "forward.h"

enum sim_mode { SIM_ASYNCEP, SIM_DPEP, SIM_REPLICATE, SIM_TP };
const char *sim_mode_name(enum sim_mode m);
int sim_mode_parse(const char *s, enum sim_mode *m);

/* One device kind (roofline) */
typedef struct {
	const char *name;
	double bf16_flops, fp8_flops;	/* dense peak, FLOP/s (fp8 0: none, W8A16) */
	double hbm_bytes_s, mem_bytes;
	const char *link;		/* its GPU-to-GPU link (sim_link_find) */
	const char *source;
} sim_device;

typedef struct {
	const char *name;
	double bytes_s;			/* per direction */
	double latency_s;		/* per transfer */
	const char *source;
} sim_link;

const sim_device *sim_device_find(const char *name);
const sim_link *sim_link_find(const char *name);
/* The table, with sources and the efficiencies, to f. */
void sim_hw_print(FILE *f);

/* One executor's forward: what it computes. */
typedef struct {
	double tokens;			/* computed tokens */
	double pairs;			/* attention (query, key) pairs, per layer */
	int seqs;			/* sequences: lm_head rows (one each) */
} sim_work;

/* What a forward cost. */
typedef struct {
	double total_s;			/* start to results */
	double wait_s;			/* of it: exposed expert-gather wait (asyncep) */
	double comm_s;			/* of it: AllToAll (dpep) or AllReduce (tp) */
	double mlp_s;			/* of it: the MoE/MLP part, waits included (T's rate) */
	double gather_s;		/* one layer's gather, when it paced a layer (else 0) */
} sim_cost;

/* A fit t = a + b tokens + c pairs (c 0 where pairs do not matter). */
typedef struct {
	double a, b, c;
} sim_fit;

typedef struct {
	const zp_config *cfg;
	enum sim_mode mode;
	int gpus;			/* N: devices (executors, or one TP group) */
	/* roofline (dev non-NULL) */
	const sim_device *dev;
	const sim_link *link;
	bool fp8;			/* fp8 weights (compute fp8 where the device has it) */
	/* profile (dev NULL) */
	sim_fit fwd;			/* whole forward, unprofiled: wall seconds */
	sim_fit fwd_cpu;		/* the same in the process's CPU seconds */
	bool use_cpu;			/* forwards take fwd_cpu (executors share cores) */
	sim_fit op[ZP_FOP_N];		/* per op class (totals over layers) */
	double prof_gather_s;		/* one layer's gather measured at prof_gather_n */
	int prof_gather_n;
	int prof_threads;
	int prof_concurrency;		/* copies of bench that ran at once (1: alone) */
	char prof_desc[256];		/* the profile's device line */
} sim_model;

/* Reads a profile of `zprefill bench --profile` and fits it: 0, or -1 with
   a message on stderr. */
int sim_model_profile(sim_model *m, const char *path);
/* One layer's expert gather (asyncep, N > 1), seconds. */
double sim_gather_s(const sim_model *m);
/* The calibration the engine would take (asyncep.h's zp_place_calib): the
   expert GEMMs' achieved FLOP rate at a forward of `tokens`. */
double sim_expert_rate(const sim_model *m, int tokens);
/* Forward of w on one executor (asyncep, replicate; tp: the group). */
sim_cost sim_forward(const sim_model *m, const sim_work *w);
/* dpep: one lockstep round of n members' forwards (w[i].tokens 0: a filler);
   every member finishes at the round's total. */
sim_cost sim_round_dpep(const sim_model *m, const sim_work *w, int n);
/* Roofline only: the bytes one device holds for the weights (*weights_bytes)
   and what is left of DEVICE_UTIL (0.9) of its memory after them and the
   workspace of a forward of batch_tokens (*free_bytes: the prefix cache's
   room). 0 when that is positive, else -1 with why ("does not fit: ..."). */
int sim_fits(const sim_model *m, int batch_tokens, double *weights_bytes, double *free_bytes,
	     char *why, size_t why_len);

#endif
