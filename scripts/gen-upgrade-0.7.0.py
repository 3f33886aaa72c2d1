#!/usr/bin/env python3
# Regenerates sql/pg_aegis--0.6.0--0.7.0.sql from the sql/ sources: the update
# script restates every function, table and trigger 0.7.0 changes, taken
# verbatim from the files a fresh install runs (so the two cannot drift;
# pg_test/sql/upgrade.sql compares them object by object). Development
# tool: run it after changing one of the listed objects, and add new ones
# to the lists. 0.7.0 is not released yet; once it is, its script is frozen.
import os
root=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'sql') + '/'
def block(fname, name_sig):
    s=open(root+fname).read()
    i=s.index('CREATE FUNCTION aegis.'+name_sig)
    j=s.rfind('\n\n',0,i)+2
    k=s.index('COMMENT ON FUNCTION aegis.'+name_sig.split('(')[0]+'(', i)
    e=s.index("';\n",k)+3
    return s[j:e]
out=['''-- pg_aegis 0.6.0 -> 0.7.0: what a fourth cold attack review of 0.6.0
-- found. The DDL guard fingerprints protected tables by OID (renaming a
-- schema or a role breaks nothing), follows what their policies and rules
-- use (functions, operators, views), and runs after every DDL command;
-- protect() refuses policies that call code a non-superuser owns;
-- retention and erasure record reads their statements set off (rules);
-- verify_chain() reports rows with transaction ids never assigned or
-- aborted and takes erasure receipts only from the chain or from entries
-- that may still be waiting for it. Digest-mode capture ("audit_inserts":
-- "digest"): statement triggers over transition tables, entries carrying
-- a content change (aegis.audit_log.content_change; entries without one
-- hash as before, so existing trails verify unchanged). A fresh 0.7.0
-- install and 0.6.0
-- updated with this script have the same catalog (pg_test/sql/upgrade.sql).
\\echo Use "ALTER EXTENSION pg_aegis UPDATE TO '0.7.0'" to load this file. \\quit
REVOKE ALL ON SCHEMA aegis FROM PUBLIC;

DROP FUNCTION aegis.run_restricted(oid, boolean, text, text[]);
-- apply_retention() also reports the expired rows it could not delete
-- because another transaction had them locked.
DROP FUNCTION aegis.apply_retention(boolean);
ALTER TABLE aegis.retention_rules ADD COLUMN last_locked bigint;
-- Integer epoch time columns (time_unit) and whole expired partitions.
ALTER TABLE aegis.retention_rules ADD COLUMN time_unit text CHECK (time_unit IN ('seconds', 'milliseconds'));
DROP FUNCTION aegis.set_retention(regclass, interval, name, text);
DROP FUNCTION aegis.check_retention_rule(regclass, interval, name, text);
DROP EVENT TRIGGER aegis_guard_end;
ALTER TABLE aegis.audit_log ADD COLUMN content_change bytea;
ALTER TABLE aegis.audit_log ALTER COLUMN content_change SET STORAGE EXTERNAL;
ALTER TABLE aegis.audit_log SET (toast_tuple_target = 4096);
@@LZ4@@-- Capture with statement triggers in both modes; the mode the triggers
-- and baseline of each protected table were made for.
ALTER TABLE aegis.rls_enforced ADD COLUMN capture text;
-- The role profile in force on each protected table.
ALTER TABLE aegis.rls_enforced ADD COLUMN profile text;

''']
# The LZ4 setting of the image columns, as a fresh install runs it.
_au=open(root+'70_audit.sql').read()
_i=_au.index('-- Row images, in chunk entries arrays')
out[0]=out[0].replace('@@LZ4@@', _au[_i:_au.index('END $$;\n', _i)+len('END $$;\n')])
new=[('70_audit.sql','audit_statement('),('70_audit.sql','verify_chain_incremental('),('30_policy.sql','capture_mode('),('30_policy.sql','is_statement_capture('),('30_policy.sql','switch_capture('),
     ('80_lifecycle.sql','run_restricted('),('30_policy.sql','policy_code('),('30_policy.sql','policy_untrusted_code('),
     ('70_audit.sql','entry_may_be_pending('),('70_audit.sql','guard_verify('),('85_alerts.sql','report_blocked_sealer('),
     ('85_alerts.sql','current_baselines('),('85_alerts.sql','fold_metric_baselines('),('85_alerts.sql','in_transaction_block('),('85_alerts.sql','alert_upkeep('),
     ('80_lifecycle.sql','apply_retention('),('80_lifecycle.sql','expired_partitions('),('70_audit.sql','retire_partition('),('70_audit.sql','is_chunk('),
     ('80_lifecycle.sql','check_retention_rule('),('80_lifecycle.sql','set_retention('),
     ('30_policy.sql','application_roles_of('),('30_policy.sql','application_roles_in_force('),('30_policy.sql','sync_application_policy('),
     ('30_policy.sql','enforce_access('),('30_policy.sql','protected_tables_enforce('),
     ('30_policy.sql','profile_catalog('),('30_policy.sql','profile_of('),('30_policy.sql','sync_profile('),('30_policy.sql','sync_masking_policy('),('30_policy.sql','scope_predicate('),('95_catalog_guard.sql','profile_in_force('),
     ('80_lifecycle.sql','mentions_any('),('80_lifecycle.sql','erase_mentions_all('),('80_lifecycle.sql','check_subject_directory('),
     ('80_lifecycle.sql','erasure_cascades('),
     ('85_alerts.sql','alerts_table_untrusted('),('85_alerts.sql','check_alert_column('),('85_alerts.sql','check_metric_alert_source('),('85_alerts.sql','attach_metric_alerts('),
     ('85_alerts.sql','detach_metric_alerts('),('85_alerts.sql','check_metric_alerts_trigger('),
     ('30_policy.sql','scope_keys('),('30_policy.sql','check_scope_key('),('30_policy.sql','create_scope('),('30_policy.sql','assign_scope('),
     ('30_policy.sql','unassign_scope('),('30_policy.sql','scope_predicate_of('),
     ('50_keyring.sql','masked_pseudonym('),('30_policy.sql','create_masking_view('),('70_audit.sql','flush_application_reads(')]
repl=[('70_audit.sql','audit_row('),('30_policy.sql','owner_ddl('),('30_policy.sql','check_policy('),('30_policy.sql','switch_rls('),('30_policy.sql','enforce_rls('),
      ('30_policy.sql','protect('),('30_policy.sql','relax_rls('),('70_audit.sql','guard_compliant_tables('),('70_audit.sql','guard_state('),('70_audit.sql','guard_check('),
      ('80_lifecycle.sql','erase_subject('),('80_lifecycle.sql','lifecycle_check_table('),('80_lifecycle.sql','legal_hold_filter('),('95_catalog_guard.sql','catalog_guard('),('40_monitoring_schema.sql','monitoring_schema_ddl('),('40_monitoring_schema.sql','create_monitoring_schema('),('85_alerts.sql','security_alerts('),('70_audit.sql','guard_ddl_end('),('70_audit.sql','guard_report('),('70_audit.sql','guard_protect_partitions('),('90_compliance.sql','compliance_mapping('),('90_compliance.sql','compliance_report()')]
al=open(root+'85_alerts.sql').read()
lc=open(root+'80_lifecycle.sql').read()
out.append(lc[lc.index('CREATE VIEW aegis.retention_policies'):lc.index('-- ===', lc.index('CREATE VIEW aegis.retention_policies'))]
    .replace('CREATE VIEW', 'CREATE OR REPLACE VIEW', 1))
# Metric alerts never wait for each other: baselines take deltas; a
# baseline's row may exist before anything is folded into it (n = 0).
out.append('''ALTER TABLE aegis.alert_state DROP CONSTRAINT alert_state_pkey;
-- The cooldown is per metrics table too (firings before the update: none).
ALTER TABLE aegis.alert_state ADD COLUMN relid oid;
CREATE INDEX alert_state_rule_table_server ON aegis.alert_state (rule_id, relid, server_id, last_fired_at);
COMMENT ON TABLE aegis.alert_state IS 'Internal: when each alert rule fired for each server of each metrics table (cooldown; appended, pruned by the worker)';
ALTER TABLE aegis.metric_baselines DROP CONSTRAINT metric_baselines_n_check;
ALTER TABLE aegis.metric_baselines ADD CONSTRAINT metric_baselines_n_check CHECK (n >= 0);
'''+al[al.index('COMMENT ON TABLE aegis.metric_baselines IS'):al.index('-- The baselines in force for a metrics table')])
out.append(al[al.index('-- Every alert pg_aegis raised, metric and security'):al.index('-- The trigger, attached by attach_metric_alerts()')])
out.append(al[al.index('-- Which table\'s inserts are evaluated, and how its columns map'):al.index('-- Is a column of this table usable as this part of the mapping?')])
au=open(root+'70_audit.sql').read()
_po=open(root+'30_policy.sql').read()
out.append(_po[_po.index('CREATE TABLE aegis.scopes ('):_po.index('-- The keys of a scope assigned to the current user')])
out.append('''CREATE TRIGGER aegis_catalog_guard BEFORE INSERT OR UPDATE OR DELETE ON aegis.scope_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.catalog_guard();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.scopes
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
CREATE TRIGGER aegis_audit AFTER INSERT OR UPDATE OR DELETE ON aegis.scope_assignments
    FOR EACH ROW EXECUTE FUNCTION aegis.audit_row();
''')
out.append(au[au.index('-- Where incremental verification resumes'):au.index('CREATE FUNCTION aegis.verify_chain_incremental')])
for f,n in new: out.append(block(f,n)+'\n')
for f,n in repl:
    out.append(block(f,n).replace('CREATE FUNCTION aegis.','CREATE OR REPLACE FUNCTION aegis.',1)+'\n')
# The trail view shows chunk entries row by row (a new last column, item).
out.append(au[au.index('-- A chunk entry (the row images'):au.index("hashes for superusers';", au.index('CREATE VIEW aegis.audit_trail'))+len("hashes for superusers';")]
    .replace('CREATE VIEW', 'CREATE OR REPLACE VIEW', 1)+'\n\n')
a=open(root+'70_audit.sql').read()
i=a.index('-- Every DDL command: what can change a protected table without naming it')
j=a.index('CREATE EVENT TRIGGER aegis_guard_rewrite')
et=a[i:j]
out.append('''-- Grants (99_finalize.sql).
REVOKE EXECUTE ON FUNCTION aegis.run_restricted(oid, regclass, boolean, text, text[]),
    aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid), aegis.entry_may_be_pending(xid8), aegis.is_chunk(jsonb, jsonb, jsonb), aegis.guard_verify(text), aegis.report_blocked_sealer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.apply_retention(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.apply_retention(boolean) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.guard_verify(text), aegis.is_chunk(jsonb, jsonb, jsonb) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.alert_event(text), aegis.announce_alert(text, text, text, text, name, jsonb),
    aegis.current_baselines(oid, name, text[]), aegis.fold_metric_baselines(oid, text[]), aegis.in_transaction_block(), aegis.alert_upkeep() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.current_baselines(oid, name, text[]) TO aegis_admin, aegis_auditor;
GRANT SELECT ON aegis.metric_baseline_deltas TO aegis_admin, aegis_auditor;
GRANT EXECUTE ON FUNCTION aegis.alert_event(text) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.capture_mode(regclass), aegis.is_statement_capture(oid), aegis.switch_capture(regclass),
    aegis.audit_statement() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.audit_statement() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.verify_chain_incremental() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.verify_chain_incremental() TO aegis_admin, aegis_auditor;
REVOKE EXECUTE ON FUNCTION aegis.expired_partitions(regclass, name, text), aegis.retire_partition(regclass),
    aegis.check_retention_rule(regclass, interval, name, text, text), aegis.set_retention(regclass, interval, name, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.check_retention_rule(regclass, interval, name, text, text),
    aegis.set_retention(regclass, interval, name, text, text) TO aegis_admin;

REVOKE EXECUTE ON FUNCTION aegis.application_roles_of(jsonb), aegis.application_roles_in_force(oid),
    aegis.sync_application_policy(oid, name[]), aegis.enforce_access(regclass), aegis.protected_tables_enforce(),
    aegis.profile_of(jsonb), aegis.sync_profile(oid, oid, text, jsonb, text), aegis.scope_predicate(regclass),
    aegis.profile_catalog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.profile_catalog() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.flush_application_reads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.flush_application_reads() TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.profile_in_force(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.profile_of(jsonb), aegis.profile_in_force(regclass) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.mentions_any(text, text[]), aegis.erase_mentions_all(text, text[]),
    aegis.check_subject_directory(regclass, jsonb), aegis.erasure_cascades(regclass, text, text[], text, oid[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.mentions_any(text, text[]), aegis.erase_mentions_all(text, text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.check_subject_directory(regclass, jsonb) TO aegis_admin;
REVOKE EXECUTE ON FUNCTION aegis.check_alert_column(regclass, name, text, regtype[]), aegis.alerts_table_untrusted(regclass),
    aegis.check_metric_alert_source(regclass, name, name, name[], text, regclass, jsonb),
    aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb), aegis.detach_metric_alerts(regclass),
    aegis.check_metric_alerts_trigger(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb),
    aegis.detach_metric_alerts(regclass) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.check_metric_alerts_trigger(oid) TO PUBLIC;
GRANT SELECT ON aegis.metric_alert_sources TO aegis_admin, aegis_auditor;
REVOKE EXECUTE ON FUNCTION aegis.scope_keys(text), aegis.check_scope_key(text, text), aegis.create_scope(text, regclass, name),
    aegis.assign_scope(regrole, text, text, timestamptz), aegis.unassign_scope(regrole, text, text),
    aegis.scope_predicate_of(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.scope_keys(text) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION aegis.masked_pseudonym(text), aegis.create_masking_view(regclass, name, regrole[]),
    aegis.sync_masking_policy(regclass, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.masked_pseudonym(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.create_masking_view(regclass, name, regrole[]) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.create_scope(text, regclass, name), aegis.assign_scope(regrole, text, text, timestamptz),
    aegis.unassign_scope(regrole, text, text), aegis.check_scope_key(text, text), aegis.scope_predicate_of(regclass, jsonb) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.application_roles_of(jsonb), aegis.application_roles_in_force(oid) TO aegis_admin;
CREATE TRIGGER aegis_enforce AFTER INSERT OR UPDATE ON aegis.protected_tables
    FOR EACH ROW EXECUTE FUNCTION aegis.protected_tables_enforce();

GRANT USAGE ON SCHEMA aegis TO PUBLIC;

-- Every protected table of 0.6.0 (all image mode) now captures with the
-- statement triggers: its row trigger gives way (its entries, and how
-- verify_table() reads them, are unchanged).
UPDATE aegis.rls_enforced SET capture = 'image';
SELECT aegis.switch_capture(e.relid) FROM aegis.rls_enforced e
WHERE pg_catalog.to_regclass(e.relid::pg_catalog.text) IS NOT NULL;

-- What the DDL guard compares with, in the new (OID) form, for every
-- protected table; then the guard watches every DDL command.
SELECT aegis.guard_remember();
'''+et)
open(root+'pg_aegis--0.6.0--0.7.0.sql','w').write(''.join(out))
