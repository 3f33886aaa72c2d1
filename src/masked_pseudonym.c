/*
 * aegis.masked_pseudonym(value text): pseudonyms in masking views.
 *
 * A masking view (owned by aegis_masking_owner) should be able to show a
 * person's pseudonym to readers who may not compute pseudonyms themselves:
 * whoever can call a pseudonym function on any value of their choosing can
 * re-identify people by guessing (pseudonymize('mary.smith') and compare).
 * PostgreSQL checks EXECUTE on a view's functions for the reader, so the
 * function is executable by everyone and decides at run time instead:
 *
 * Before a query starts (the ExecutorStart hook, so the library must be
 * preloaded), every call of aegis.masked_pseudonym() in its plan is looked
 * at. A call is approved only if its argument is a column of a table the
 * plan reads with the rights of aegis_masking_owner, which is what a view
 * owned by aegis_masking_owner does (its table's range table entry is
 * checked as the view owner; nobody can make such a view but a superuser),
 * and one the table's classification pseudonymizes (subject_id or pii), so
 * never a column whose values a reader could have chosen.
 * The approved call sites (the FuncExpr nodes of this plan) are remembered
 * while the query runs: until its ExecutorEnd (or the end of the
 * (sub)transaction it fails in). Never longer: a plan freed at its end
 * leaves memory the next plan may be copied into, and a reader's own plan
 * of the same shape would then sit at an approved address (a cold review
 * found exactly that with two prepared statements). When the function
 * runs, it answers only for an approved call site (fn_expr), and raises
 * otherwise: a call in the reader's own query on a value they chose, in a
 * CHECK constraint, a default, a PL/pgSQL expression or a view of their
 * own is refused.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

/* src/keyring.rs: is this column classified subject_id or pii? */
extern bool aegis_column_is_pseudonymized(Oid relid, int16 attnum);

static Oid	cached_func = InvalidOid;
static bool callbacks_registered = false;

/* Approved call sites, each with the query whose plan holds it. */
typedef struct Approval
{
	void	   *site;
	QueryDesc  *query;
} Approval;

static Approval *approved = NULL;
static int	n_approved = 0;
static int	max_approved = 0;
/* The query being approved (set around approve_plan()). */
static QueryDesc *approving = NULL;

static void
forget_approved(void)
{
	n_approved = 0;
}

static void
on_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT
		|| event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT
		|| event == XACT_EVENT_PREPARE)
		forget_approved();
}

static void
on_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	/* A failed subtransaction's plans are freed: their call sites go too. */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_approved();
}

static void
on_proc_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_func = InvalidOid;
}

static Oid
masked_pseudonym_oid(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(on_xact, NULL);
		RegisterSubXactCallback(on_subxact, NULL);
		CacheRegisterSyscacheCallback(PROCOID, on_proc_inval, (Datum) 0);
		callbacks_registered = true;
	}
	if (!OidIsValid(cached_func))
	{
		Oid			argtypes[1] = {TEXTOID};

		cached_func = LookupFuncName(list_make2(makeString("aegis"), makeString("masked_pseudonym")),
									 1, argtypes, true);
	}
	return cached_func;
}

static void
approve(void *site)
{
	if (n_approved == max_approved)
	{
		int			newmax = max_approved == 0 ? 16 : max_approved * 2;

		if (approved == NULL)
			approved = MemoryContextAlloc(TopMemoryContext, sizeof(Approval) * newmax);
		else
			approved = repalloc(approved, sizeof(Approval) * newmax);
		max_approved = newmax;
	}
	approved[n_approved].site = site;
	approved[n_approved].query = approving;
	n_approved++;
}

static bool
is_approved(void *site)
{
	int			i;

	for (i = 0; i < n_approved; i++)
		if (approved[i].site == site)
			return true;
	return false;
}

/*
 * Called from the ExecutorEnd hook (src/read_audit_hooks.c), before the
 * plan is freed: the query's call sites are approved no longer.
 */
void
aegis_forget_masked_pseudonyms(QueryDesc *queryDesc)
{
	int			i,
				kept = 0;

	for (i = 0; i < n_approved; i++)
		if (approved[i].query != queryDesc)
			approved[kept++] = approved[i];
	n_approved = kept;
}

/* The role a range table entry's relation is read with (0: the invoker). */
static Oid
check_as_user(RangeTblEntry *rte, PlannedStmt *pstmt)
{
#if PG_VERSION_NUM >= 160000
	if (rte->perminfoindex == 0 || (int) rte->perminfoindex > list_length(pstmt->permInfos))
		return InvalidOid;
	return ((RTEPermissionInfo *) list_nth(pstmt->permInfos, rte->perminfoindex - 1))->checkAsUser;
#else
	return rte->checkAsUser;
#endif
}

static bool
is_table_scan(Plan *plan)
{
	switch (nodeTag(plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_IndexOnlyScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
			return true;
		default:
			return false;
	}
}

/*
 * Is this expression, at this node of the plan, a column of a table read
 * with aegis_masking_owner's rights? Followed down through joins, subquery
 * scans, appends and index-only scans; anything else is not.
 */
static bool
masked_column(Node *node, Plan *plan, PlannedStmt *pstmt, Oid owner, int depth, Oid *relid, AttrNumber *attnum)
{
	Var		   *v;

	if (node == NULL || plan == NULL || depth > 32)
		return false;
	if (IsA(node, RelabelType))
		return masked_column((Node *) ((RelabelType *) node)->arg, plan, pstmt, owner, depth + 1, relid, attnum);
	/* The column rendered as text (a bigint id): still that column. */
	if (IsA(node, CoerceViaIO))
		return masked_column((Node *) ((CoerceViaIO *) node)->arg, plan, pstmt, owner, depth + 1, relid, attnum);
	if (!IsA(node, Var))
		return false;
	v = (Var *) node;
	if (v->varattno <= 0 || v->varlevelsup != 0)
		return false;
	if (v->varno == OUTER_VAR || v->varno == INNER_VAR)
	{
		Plan	   *child = v->varno == OUTER_VAR ? plan->lefttree : plan->righttree;
		ListCell   *lc;

		if (child == NULL && v->varno == OUTER_VAR && (IsA(plan, Append) || IsA(plan, MergeAppend)))
		{
			List	   *subs = IsA(plan, Append) ? ((Append *) plan)->appendplans : ((MergeAppend *) plan)->mergeplans;

			if (subs == NIL)
				return false;
			foreach(lc, subs)
			{
				Plan	   *sub = (Plan *) lfirst(lc);

				if (v->varattno > list_length(sub->targetlist)
					|| !masked_column((Node *) ((TargetEntry *) list_nth(sub->targetlist, v->varattno - 1))->expr,
									  sub, pstmt, owner, depth + 1, relid, attnum))
					return false;
			}
			return true;
		}
		if (child == NULL || v->varattno > list_length(child->targetlist))
			return false;
		return masked_column((Node *) ((TargetEntry *) list_nth(child->targetlist, v->varattno - 1))->expr,
							 child, pstmt, owner, depth + 1, relid, attnum);
	}
	if (v->varno == INDEX_VAR)
	{
		if (IsA(plan, IndexOnlyScan) && v->varattno <= list_length(((IndexOnlyScan *) plan)->indextlist))
			return masked_column((Node *) ((TargetEntry *) list_nth(((IndexOnlyScan *) plan)->indextlist,
																   v->varattno - 1))->expr,
								 plan, pstmt, owner, depth + 1, relid, attnum);
		return false;
	}
	if (IsA(plan, SubqueryScan) && (Index) v->varno == ((Scan *) plan)->scanrelid)
	{
		Plan	   *sub = ((SubqueryScan *) plan)->subplan;

		if (sub == NULL || v->varattno > list_length(sub->targetlist))
			return false;
		return masked_column((Node *) ((TargetEntry *) list_nth(sub->targetlist, v->varattno - 1))->expr,
							 sub, pstmt, owner, depth + 1, relid, attnum);
	}
	if (is_table_scan(plan) && (Index) v->varno == ((Scan *) plan)->scanrelid
		&& v->varno >= 1 && v->varno <= list_length(pstmt->rtable))
	{
		RangeTblEntry *rte = (RangeTblEntry *) list_nth(pstmt->rtable, v->varno - 1);

		if (rte->rtekind != RTE_RELATION || check_as_user(rte, pstmt) != owner)
			return false;
		/* Through an Append, every branch must be a pseudonymized column. */
		if (OidIsValid(*relid) && !aegis_column_is_pseudonymized(rte->relid, v->varattno))
			return false;
		*relid = rte->relid;
		*attnum = v->varattno;
		return true;
	}
	return false;
}

/*
 * Could the current user have chosen this column's values? A role that may
 * insert or update it could write a guess and read its pseudonym back
 * (re-identifying people by their pseudonyms elsewhere), unless it may
 * compute pseudonyms anyway (EXECUTE on aegis.pseudonymize: admins and
 * collectors, superusers).
 */
static bool
chooses_values(Oid relid, AttrNumber attnum)
{
	Oid			user = GetUserId();
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Oid			pseudonymize;

	if (pg_class_aclcheck(relid, user, ACL_INSERT | ACL_UPDATE) != ACLCHECK_OK
		&& pg_attribute_aclcheck(relid, attnum, user, ACL_INSERT | ACL_UPDATE) != ACLCHECK_OK)
		return false;
	pseudonymize = LookupFuncName(list_make2(makeString("aegis"), makeString("pseudonymize")), 2, argtypes, true);
#if PG_VERSION_NUM >= 160000
	return !(OidIsValid(pseudonymize) && object_aclcheck(ProcedureRelationId, pseudonymize, user, ACL_EXECUTE) == ACLCHECK_OK);
#else
	return !(OidIsValid(pseudonymize) && pg_proc_aclcheck(pseudonymize, user, ACL_EXECUTE) == ACLCHECK_OK);
#endif
}

typedef struct ApproveContext
{
	Plan	   *plan;
	PlannedStmt *pstmt;
	Oid			func;
	Oid			owner;
} ApproveContext;

static bool
approve_walker(Node *node, void *context)
{
	ApproveContext *ctx = (ApproveContext *) context;

	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid == ctx->func)
	{
		FuncExpr   *f = (FuncExpr *) node;

		Oid			relid = InvalidOid;
		AttrNumber	attnum = 0;

		/*
		 * A column of the table read with the masking view owner's rights,
		 * and one the table's classification pseudonymizes (subject_id,
		 * pii): never a column whose values a reader could have written.
		 */
		if (list_length(f->args) == 1
			&& masked_column((Node *) linitial(f->args), ctx->plan, ctx->pstmt, ctx->owner, 0, &relid, &attnum)
			&& aegis_column_is_pseudonymized(relid, attnum)
			&& !chooses_values(relid, attnum))
			approve(node);
		/* Its argument is a column: nothing more to find inside. */
		return false;
	}
	return expression_tree_walker(node, approve_walker, context);
}

static void
approve_plan(Plan *plan, PlannedStmt *pstmt, Oid func, Oid owner, int depth)
{
	ApproveContext ctx;
	ListCell   *lc;

	if (plan == NULL || depth > 256)
		return;
	ctx.plan = plan;
	ctx.pstmt = pstmt;
	ctx.func = func;
	ctx.owner = owner;
	approve_walker((Node *) plan->targetlist, &ctx);
	approve_walker((Node *) plan->qual, &ctx);
	switch (nodeTag(plan))
	{
		case T_Append:
			foreach(lc, ((Append *) plan)->appendplans)
				approve_plan((Plan *) lfirst(lc), pstmt, func, owner, depth + 1);
			break;
		case T_MergeAppend:
			foreach(lc, ((MergeAppend *) plan)->mergeplans)
				approve_plan((Plan *) lfirst(lc), pstmt, func, owner, depth + 1);
			break;
		case T_SubqueryScan:
			approve_plan(((SubqueryScan *) plan)->subplan, pstmt, func, owner, depth + 1);
			break;
		default:
			break;
	}
	approve_plan(plan->lefttree, pstmt, func, owner, depth + 1);
	approve_plan(plan->righttree, pstmt, func, owner, depth + 1);
}

/* Called from the ExecutorStart hook (src/read_audit_hooks.c). */
void
aegis_approve_masked_pseudonyms(QueryDesc *queryDesc)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;
	Oid			func;
	Oid			owner;
	ListCell   *lc;
	QueryDesc  *volatile saved;

	if (pstmt == NULL || !IsTransactionState())
		return;
	func = masked_pseudonym_oid();
	if (!OidIsValid(func))
		return;
	owner = get_role_oid("aegis_masking_owner", true);
	if (!OidIsValid(owner))
		return;
	/* Approved again if this query was seen before (a rerun portal). */
	aegis_forget_masked_pseudonyms(queryDesc);
	/*
	 * Nested: the classification lookup runs queries of its own (SPI), whose
	 * ExecutorStart comes back here; each approval belongs to its own query.
	 */
	saved = approving;
	approving = queryDesc;
	PG_TRY();
	{
		approve_plan(pstmt->planTree, pstmt, func, owner, 0);
		foreach(lc, pstmt->subplans)
			approve_plan((Plan *) lfirst(lc), pstmt, func, owner, 0);
	}
	PG_FINALLY();
	{
		approving = saved;
	}
	PG_END_TRY();
}

/*
 * Is this call of aegis.masked_pseudonym() at an approved call site? The
 * SQL-callable function is in Rust (src/keyring.rs: a C symbol of this
 * static library would not be exported from the extension's library);
 * nothing here raises.
 */
bool
aegis_masked_call_approved(FunctionCallInfo fcinfo)
{
	void	   *site = fcinfo->flinfo != NULL ? (void *) fcinfo->flinfo->fn_expr : NULL;

	return site != NULL && is_approved(site);
}
