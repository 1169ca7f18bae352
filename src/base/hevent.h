/* hevent.h -- host events: a count of records under a mutex and condition
   variable. For threads that hold no backend (AsyncEP's comm thread) and for
   the cpu backend's own events. zp_hevent_record returns the count after it;
   zp_hevent_wait(ev, n) returns once the count is >= n. Any thread. The
   recorder's writes before a record are visible to a waiter past it. */
#ifndef ZP_HEVENT_H
#define ZP_HEVENT_H

#include <stdint.h>

typedef struct zp_hevent zp_hevent;

zp_hevent *zp_hevent_new(void);
void zp_hevent_free(zp_hevent *ev);
uint64_t zp_hevent_record(zp_hevent *ev);
void zp_hevent_wait(zp_hevent *ev, uint64_t n);

#endif
