/* pooling.h -- what a sequence returns of its hidden states (the embedding
   endpoints): the backends' pool op computes it, requests ask for it. */
#ifndef ZP_POOLING_H
#define ZP_POOLING_H

enum zp_pooling { ZP_POOLING_NONE, ZP_POOLING_LAST, ZP_POOLING_MEAN };

#endif
