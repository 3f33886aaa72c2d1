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
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/elog.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

/* Implemented in Rust (src/read_audit.rs). */
extern void aegis_read_audit_before_start(QueryDesc *queryDesc, int eflags);
extern void aegis_read_audit_before_end(QueryDesc *queryDesc);
extern void aegis_read_audit_copy_begin(PlannedStmt *pstmt);
extern void aegis_read_audit_copy_done(PlannedStmt *pstmt, QueryCompletion *qc);
extern void aegis_guard_detach_concurrently(Oid relid);
extern void aegis_guard_reassign_owned(ReassignOwnedStmt *stmt);
extern void aegis_guard_after_reassign_owned(void);
extern void aegis_count_denied_access(void);
/* src/masked_pseudonym.c */
extern void aegis_approve_masked_pseudonyms(QueryDesc *queryDesc);
extern void aegis_forget_masked_pseudonyms(QueryDesc *queryDesc);

static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorEnd_hook_type prev_executor_end = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static emit_log_hook_type prev_emit_log = NULL;

/*
 * Ciphertext stored as text. aegis.encrypt() returns bytea; PostgreSQL
 * assigns any value to a text or varchar column through its output
 * function, so "UPDATE media SET sendto = aegis.encrypt(sendto)" on a
 * varchar column would silently store the envelope's hex text (readable by
 * nobody's decrypt(), and twice as big). An INSERT, UPDATE or MERGE whose
 * plan assigns one of pg_aegis's encrypting functions to a string type
 * through that implicit conversion is refused before it starts. An explicit
 * cast (aegis.encrypt(...)::text) is the caller's choice and passes.
 */
static bool
is_ciphertext_call(Node *node)
{
	FuncExpr   *f;
	char	   *name;
	Oid			nsp;
	bool		found;

	if (node == NULL || !IsA(node, FuncExpr))
		return false;
	f = (FuncExpr *) node;
	if (f->funcresulttype != BYTEAOID)
		return false;
	nsp = get_namespace_oid("aegis", true);
	if (!OidIsValid(nsp) || get_func_namespace(f->funcid) != nsp)
		return false;
	name = get_func_name(f->funcid);
	found = name != NULL && (strcmp(name, "encrypt") == 0 || strcmp(name, "encrypt_for_subject") == 0
							 || strcmp(name, "reencrypt") == 0);
	if (name != NULL)
		pfree(name);
	return found;
}

typedef struct HexContext
{
	Plan	   *plan;			/* the plan node whose expressions are walked */
	PlannedStmt *pstmt;
} HexContext;

static bool expr_is_ciphertext(Node *node, Plan *plan, PlannedStmt *pstmt, int depth);

/* The initplan (a SubPlan in some node's initPlan list) that sets a param. */
static SubPlan *
initplan_setting(Plan *plan, PlannedStmt *pstmt, int paramid, int depth)
{
	ListCell   *lc;

	if (plan == NULL || depth > 64)
		return NULL;
	foreach(lc, plan->initPlan)
	{
		SubPlan    *sp = (SubPlan *) lfirst(lc);

		if (list_member_int(sp->setParam, paramid))
			return sp;
	}
	{
		SubPlan    *sp = initplan_setting(plan->lefttree, pstmt, paramid, depth + 1);

		if (sp == NULL)
			sp = initplan_setting(plan->righttree, pstmt, paramid, depth + 1);
		if (sp == NULL && IsA(plan, SubqueryScan))
			sp = initplan_setting(((SubqueryScan *) plan)->subplan, pstmt, paramid, depth + 1);
		if (sp == NULL && IsA(plan, Append))
			foreach(lc, ((Append *) plan)->appendplans)
				if (sp == NULL)
					sp = initplan_setting((Plan *) lfirst(lc), pstmt, paramid, depth + 1);
		return sp;
	}
}

/* The expression a subplan's n-th output column computes. */
static bool
subplan_output_is_ciphertext(PlannedStmt *pstmt, int plan_id, int n, int depth)
{
	Plan	   *sub;

	if (plan_id < 1 || plan_id > list_length(pstmt->subplans))
		return false;
	sub = (Plan *) list_nth(pstmt->subplans, plan_id - 1);
	if (sub == NULL || n < 0 || n >= list_length(sub->targetlist))
		return false;
	return expr_is_ciphertext((Node *) ((TargetEntry *) list_nth(sub->targetlist, n))->expr, sub, pstmt, depth + 1);
}

/*
 * Does this expression yield what an encrypting function returned, followed
 * through the plan: a column of a lower node (outer, inner, subquery scan,
 * CTE scan), the output of an initplan or of a scalar subquery.
 */
static bool
expr_is_ciphertext(Node *node, Plan *plan, PlannedStmt *pstmt, int depth)
{
	if (node == NULL || depth > 32)
		return false;
	if (IsA(node, RelabelType))
		return expr_is_ciphertext((Node *) ((RelabelType *) node)->arg, plan, pstmt, depth + 1);
	if (is_ciphertext_call(node))
		return true;
	if (IsA(node, Var) && plan != NULL)
	{
		Var		   *v = (Var *) node;
		Plan	   *child = NULL;

		if (v->varno == OUTER_VAR)
			child = plan->lefttree;
		else if (v->varno == INNER_VAR)
			child = plan->righttree;
		else if (IsA(plan, SubqueryScan) && (Index) v->varno == ((Scan *) plan)->scanrelid)
			child = ((SubqueryScan *) plan)->subplan;
		else if (IsA(plan, CteScan) && (Index) v->varno == ((Scan *) plan)->scanrelid)
			return subplan_output_is_ciphertext(pstmt, ((CteScan *) plan)->ctePlanId, v->varattno - 1, depth);
		if (child != NULL && v->varattno > 0 && v->varattno <= list_length(child->targetlist))
			return expr_is_ciphertext((Node *) ((TargetEntry *) list_nth(child->targetlist, v->varattno - 1))->expr,
									  child, pstmt, depth + 1);
		return false;
	}
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
	{
		int			paramid = ((Param *) node)->paramid;
		SubPlan    *sp = initplan_setting(pstmt->planTree, pstmt, paramid, 0);
		ListCell   *lc;

		foreach(lc, pstmt->subplans)
		{
			if (sp == NULL)
				sp = initplan_setting((Plan *) lfirst(lc), pstmt, paramid, 0);
		}
		if (sp != NULL)
		{
			int			idx = 0;
			ListCell   *c2;

			foreach(c2, sp->setParam)
			{
				if (lfirst_int(c2) == paramid)
					break;
				idx++;
			}
			return subplan_output_is_ciphertext(pstmt, sp->plan_id, idx, depth);
		}
		return false;
	}
	if (IsA(node, SubPlan) && ((SubPlan *) node)->subLinkType == EXPR_SUBLINK)
		return subplan_output_is_ciphertext(pstmt, ((SubPlan *) node)->plan_id, 0, depth);
	return false;
}

static bool
hex_ciphertext_walker(Node *node, void *context)
{
	HexContext *ctx = (HexContext *) context;

	if (node == NULL)
		return false;
	if (IsA(node, CoerceViaIO))
	{
		CoerceViaIO *c = (CoerceViaIO *) node;

		if (c->coerceformat != COERCE_EXPLICIT_CAST
			&& (c->resulttype == TEXTOID || c->resulttype == VARCHAROID || c->resulttype == BPCHAROID
				|| c->resulttype == NAMEOID)
			&& exprType((Node *) c->arg) == BYTEAOID
			&& expr_is_ciphertext((Node *) c->arg, ctx->plan, ctx->pstmt, 0))
			return true;
	}
	return expression_tree_walker(node, hex_ciphertext_walker, context);
}

static bool
plan_stores_hex_ciphertext(Plan *plan, PlannedStmt *pstmt)
{
	ListCell   *lc;
	HexContext	ctx;

	if (plan == NULL)
		return false;
	ctx.plan = plan;
	ctx.pstmt = pstmt;
	if (hex_ciphertext_walker((Node *) plan->targetlist, &ctx))
		return true;
	switch (nodeTag(plan))
	{
		case T_ValuesScan:
			if (hex_ciphertext_walker((Node *) ((ValuesScan *) plan)->values_lists, &ctx))
				return true;
			break;
		case T_ModifyTable:
			{
				ModifyTable *mt = (ModifyTable *) plan;

				if (hex_ciphertext_walker((Node *) mt->onConflictSet, &ctx))
					return true;
				foreach(lc, mt->mergeActionLists)
				{
					ListCell   *la;

					foreach(la, (List *) lfirst(lc))
					{
						if (hex_ciphertext_walker((Node *) ((MergeAction *) lfirst(la))->targetList, &ctx))
							return true;
					}
				}
				break;
			}
		case T_Append:
			foreach(lc, ((Append *) plan)->appendplans)
				if (plan_stores_hex_ciphertext((Plan *) lfirst(lc), pstmt))
					return true;
			break;
		case T_MergeAppend:
			foreach(lc, ((MergeAppend *) plan)->mergeplans)
				if (plan_stores_hex_ciphertext((Plan *) lfirst(lc), pstmt))
					return true;
			break;
		case T_SubqueryScan:
			if (plan_stores_hex_ciphertext(((SubqueryScan *) plan)->subplan, pstmt))
				return true;
			break;
		default:
			break;
	}
	return plan_stores_hex_ciphertext(plan->lefttree, pstmt) || plan_stores_hex_ciphertext(plan->righttree, pstmt);
}

static void
refuse_hex_ciphertext(QueryDesc *queryDesc)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;
	ListCell   *lc;
	bool		found;

	if (queryDesc->operation != CMD_INSERT && queryDesc->operation != CMD_UPDATE
#if PG_VERSION_NUM >= 150000
		&& queryDesc->operation != CMD_MERGE
#endif
		)
		return;
	found = plan_stores_hex_ciphertext(pstmt->planTree, pstmt);
	foreach(lc, pstmt->subplans)
		found = found || plan_stores_hex_ciphertext((Plan *) lfirst(lc), pstmt);
	if (found)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("pg_aegis ciphertext would be stored as text"),
				 errdetail("aegis.encrypt() returns bytea; assigned to a text or varchar column it becomes its hex text, which aegis.decrypt() does not take back."),
				 errhint("Store ciphertext in a bytea column (README: Encrypting an existing column), or cast explicitly (aegis.encrypt(...)::text) if the hex text is what you want.")));
}

static void
aegis_executor_start(QueryDesc *queryDesc, int eflags)
{
	refuse_hex_ciphertext(queryDesc);
	aegis_approve_masked_pseudonyms(queryDesc);
	aegis_read_audit_before_start(queryDesc, eflags);
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
aegis_executor_end(QueryDesc *queryDesc)
{
	aegis_forget_masked_pseudonyms(queryDesc);
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
