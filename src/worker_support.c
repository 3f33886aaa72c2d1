/*
 * What the scheduled retention worker (src/sealer.rs) needs from the server
 * in C: PostgreSQL's own SIGTERM handler for a backend, and a statement
 * timeout (armed by the client protocol only; a worker arms its own). In C
 * because pqsignal() is a macro on some versions and TimeoutId's numbering
 * is the server's; neither is in pgrx's bindings in a usable form.
 */
#include "postgres.h"

#include <signal.h>

#include "tcop/tcopprot.h"
#include "utils/timeout.h"

void
aegis_die_on_sigterm(void)
{
	pqsignal(SIGTERM, die);
}

void
aegis_arm_statement_timeout(int delay_ms)
{
	enable_timeout_after(STATEMENT_TIMEOUT, delay_ms);
}

void
aegis_disarm_statement_timeout(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
}
