/*
 * Executor and utility hook trampolines for read auditing (src/read_audit.rs)
 * and the DDL guard's check before a command starts (src/ddl_guard.rs).
 *
 * They are in C so that an ERROR raised by the standard executor or a utility
 * command (a DO block, a procedure, COPY FROM hitting a constraint) passes
 * through them by longjmp untouched, with every field (position, context,
 * constraint name) intact. The Rust side only runs before or after those
 * calls and is guarded itself.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/elog.h"
#include "utils/json.h"

/* Implemented in Rust (src/read_audit.rs). */
extern void aegis_read_audit_before_start(QueryDesc *queryDesc, int eflags);
extern void aegis_read_audit_before_end(QueryDesc *queryDesc);
extern void aegis_read_audit_copy_begin(PlannedStmt *pstmt);
extern void aegis_read_audit_copy_done(PlannedStmt *pstmt, QueryCompletion *qc);
extern void aegis_guard_detach_concurrently(Oid relid);
extern void aegis_guard_reassign_owned(ReassignOwnedStmt *stmt);
extern void aegis_guard_after_reassign_owned(void);
extern void aegis_count_denied_access(void);

static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorEnd_hook_type prev_executor_end = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static emit_log_hook_type prev_emit_log = NULL;

static void
aegis_executor_start(QueryDesc *queryDesc, int eflags)
{
	aegis_read_audit_before_start(queryDesc, eflags);
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
aegis_executor_end(QueryDesc *queryDesc)
{
	aegis_read_audit_before_end(queryDesc);
	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/*
 * ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY commits its first step
 * (the partition marked as being detached, its rows no longer shown through
 * the table) before any event trigger runs: the DDL guard must decide
 * before the command starts. The name is resolved without a lock, as
 * PostgreSQL's own permission pre-checks do; the command locks it itself.
 */
static Oid
detached_concurrently_from(Node *stmt)
{
	ListCell   *lc;

	if (stmt == NULL || !IsA(stmt, AlterTableStmt))
		return InvalidOid;
	foreach(lc, ((AlterTableStmt *) stmt)->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype == AT_DetachPartition && cmd->def != NULL
			&& IsA(cmd->def, PartitionCmd) && ((PartitionCmd *) cmd->def)->concurrent)
			return RangeVarGetRelid(((AlterTableStmt *) stmt)->relation, NoLock, true);
	}
	return InvalidOid;
}

static void
aegis_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		copy_to = pstmt->utilityStmt != NULL && IsA(pstmt->utilityStmt, CopyStmt)
		&& !((CopyStmt *) pstmt->utilityStmt)->is_from;

	Oid			detach_from = detached_concurrently_from(pstmt->utilityStmt);

	if (OidIsValid(detach_from))
		aegis_guard_detach_concurrently(detach_from);
	/* REASSIGN OWNED fires no event trigger at all. */
	if (pstmt->utilityStmt != NULL && IsA(pstmt->utilityStmt, ReassignOwnedStmt))
		aegis_guard_reassign_owned((ReassignOwnedStmt *) pstmt->utilityStmt);
	if (copy_to)
		aegis_read_audit_copy_begin(pstmt);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if (copy_to)
		aegis_read_audit_copy_done(pstmt, qc);
	if (pstmt->utilityStmt != NULL && IsA(pstmt->utilityStmt, ReassignOwnedStmt))
		aegis_guard_after_reassign_owned();
}

/*
 * A role without USAGE on a schema is refused while the statement's names
 * are looked up, before any hook that knows its tables runs: the only trace
 * is the error itself. When it reaches the server log, it is counted as a
 * denied attempt and carries a pg_aegis access_denied line (DETAIL, server
 * log only) with the schema. Nothing here looks anything up (an error is
 * being reported): roles are given by OID. An error a PL/pgSQL exception
 * block catches is never reported, so it is not counted.
 */
static void
aegis_emit_log(ErrorData *edata)
{
	static const char prefix[] = "permission denied for schema ";

	if (IsUnderPostmaster && edata->elevel >= ERROR && edata->output_to_server
		&& edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE
		&& edata->message_id != NULL
		&& strcmp(edata->message_id, "permission denied for schema %s") == 0
		&& edata->detail_log == NULL)
	{
		StringInfoData buf;

		aegis_count_denied_access();
		initStringInfo(&buf);
		appendStringInfoString(&buf, "pg_aegis: {\"event\":\"access_denied\",\"schema\":");
		if (edata->message != NULL && strncmp(edata->message, prefix, sizeof(prefix) - 1) == 0)
			escape_json(&buf, edata->message + sizeof(prefix) - 1);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfo(&buf, ",\"tables\":null,\"user_oid\":%u,\"session_user_oid\":%u,\"backend_pid\":%d}",
						 GetUserId(), GetSessionUserId(), MyProcPid);
		edata->detail_log = buf.data;
	}
	if (prev_emit_log)
		prev_emit_log(edata);
}

void
aegis_install_read_audit_hooks(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = aegis_executor_start;
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = aegis_executor_end;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = aegis_process_utility;
	prev_emit_log = emit_log_hook;
	emit_log_hook = aegis_emit_log;
}

/*
 * Executor nesting depth, for digest-mode capture (src/audit/digest.rs):
 * pg_aegis's own lifecycle statement (a retention or erasure DELETE run by
 * aegis.run_restricted) is recorded as one statement entry without row
 * images, and only that statement: one that the table owner's trigger
 * runs underneath it is nested deeper and recorded as usual. The depth
 * counts ExecutorRun and ExecutorFinish frames (AFTER triggers fire inside
 * ExecutorFinish; statements of BEFORE ROW triggers inside ExecutorRun),
 * restored on error. Installed whenever the library is loaded, preloaded
 * or not: frames that began before the load were never counted, so the
 * counter only ever compares frames it saw begin.
 */
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static int	aegis_exec_depth = 0;

int
aegis_executor_depth(void)
{
	return aegis_exec_depth;
}

#if PG_VERSION_NUM >= 180000
static void
aegis_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count)
{
	aegis_exec_depth++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(queryDesc, direction, count);
		else
			standard_ExecutorRun(queryDesc, direction, count);
	}
	PG_FINALLY();
	{
		aegis_exec_depth--;
	}
	PG_END_TRY();
}
#else
static void
aegis_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				   bool execute_once)
{
	aegis_exec_depth++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		aegis_exec_depth--;
	}
	PG_END_TRY();
}
#endif

static void
aegis_executor_finish(QueryDesc *queryDesc)
{
	aegis_exec_depth++;
	PG_TRY();
	{
		if (prev_executor_finish)
			prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		aegis_exec_depth--;
	}
	PG_END_TRY();
}

void
aegis_install_depth_hooks(void)
{
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = aegis_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = aegis_executor_finish;
}
