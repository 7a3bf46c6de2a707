/*
 * nccl_ep/ep_enums.h — the constants and enumerations of the NCCL EP v0.1 API.
 *
 * Included by nccl_ep.h as "nccl_ep/ep_enums.h", where NCCL EP keeps them; usable on its own
 * (no CUDA or NCCL headers needed). Names and values are fixed by the API.
 */
#ifndef NCCL_EP_EP_ENUMS_H_
#define NCCL_EP_EP_ENUMS_H_

/* "Let the library choose" for any sizing field (and the value of NCCL_EP_LAYOUT_UNSET). */
#define NCCL_EP_AUTO 0

/* The mode a group runs in. */
typedef enum {
  NCCL_EP_ALGO_LOW_LATENCY = 0,    /* decode: direct sends per token, ~100s of tokens */
  NCCL_EP_ALGO_HIGH_THROUGHPUT = 1 /* prefill / training: channelised, 1000s of tokens */
} ncclEpAlgorithm_t;

/* How dispatch lays out what a rank receives (and so what combine takes back). */
typedef enum {
  NCCL_EP_LAYOUT_UNSET = NCCL_EP_AUTO, /* zero-initialised: must be replaced before use */
  NCCL_EP_LAYOUT_EXPERT_MAJOR = 1,     /* rows grouped by local expert */
  NCCL_EP_LAYOUT_RANK_MAJOR = 2,       /* LL only: rows grouped by source rank */
  NCCL_EP_LAYOUT_FLAT = 3              /* HT only: one row per received token */
} ncclEpLayout_t;

/* Training pass a dispatch or combine belongs to (HT only; LL ignores it). */
typedef enum { NCCL_EP_FWD_PASS = 0, NCCL_EP_BWD_PASS = 1 } ncclEpPassDir_t;

#endif /* NCCL_EP_EP_ENUMS_H_ */
