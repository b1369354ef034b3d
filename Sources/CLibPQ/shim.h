#ifndef PAYHOOK_CLIBPQ_SHIM_H
#define PAYHOOK_CLIBPQ_SHIM_H

/*
 * libpq, PostgreSQL's C client (Debian's libpq-dev). Only PayhookPostgres
 * imports this module: no PostgreSQL type leaves it
 * (docs/architecture.md, "Where a new store goes").
 */
#include <poll.h>
#include <libpq-fe.h>

#endif /* PAYHOOK_CLIBPQ_SHIM_H */
