-- Runs last. Grants are deliberate and listed here in one place.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA aegis FROM PUBLIC;
--
-- Hashing functions are harmless and pgcrypto grants them to PUBLIC; we do the
-- same so existing queries keep working after a switch from pgcrypto.
GRANT USAGE ON SCHEMA aegis TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    aegis.digest(bytea, text), aegis.digest(text, text),
    aegis.hmac(bytea, bytea, text), aegis.hmac(text, text, text),
    aegis.version()
TO PUBLIC;
-- Not granted: build_info() reveals deployment details (build profile,
-- preload state): superusers and explicit grantees only.

-- Harmless lookups: the role catalog, and session helpers that reveal only the
-- caller's own memberships and on-call assignments. RLS policies and masking
-- views call the helpers with the reader's privileges, so every role needs them.
GRANT EXECUTE ON FUNCTION
    aegis.role_catalog(),
    aegis.is_member(oid), aegis.member_role_oids(), aegis.member_role_names(),
    aegis.is_member_of_any(name[]),
    aegis.oncall_servers()
TO PUBLIC;

-- Encryption: anyone may encrypt (it reveals nothing); decrypting checks the
-- key's decrypt_role inside the function, so it can be granted to PUBLIC too.
GRANT EXECUTE ON FUNCTION
    aegis.encrypt(bytea, text, text), aegis.encrypt(text, text, text),
    aegis.decrypt(bytea, text), aegis.decrypt_bytea(bytea, text)
TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    aegis.reencrypt(bytea, text), aegis.new_wrapped_key(uuid, integer),
    aegis.create_key(text, regrole), aegis.rotate_key(text), aegis.retire_key_version(text, integer),
    aegis.invalidate_keyring_cache(), aegis.keyring_changed()
TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.keys_overview() TO aegis_admin, aegis_auditor;
-- Coarsening IPs reveals nothing; pseudonyms are an oracle for guessing
-- low-entropy values (is this email's pseudonym X?), so only roles that
-- write or administer data get them.
GRANT EXECUTE ON FUNCTION aegis.anonymize_ip(inet, integer, integer) TO PUBLIC;
GRANT EXECUTE ON FUNCTION aegis.pseudonymize(text, text) TO aegis_admin, aegis_ingest;
-- Answers only in masking views (src/masked_pseudonym.c).
GRANT EXECUTE ON FUNCTION aegis.masked_pseudonym(text) TO PUBLIC;
-- PII functions read nothing but their arguments. The hash style of
-- redact_pii() is a pseudonym oracle like pseudonymize(): it checks for
-- EXECUTE on pseudonymize() itself, so granting these to PUBLIC opens nothing.
GRANT EXECUTE ON FUNCTION
    aegis.redact_pii(text), aegis.redact_pii(text, text[], text),
    aegis.has_pii(text), aegis.detect_pii(text), aegis.pii_kinds(),
    aegis.sanitize_log(text, integer), aegis.sanitize_columns()
TO PUBLIC;
-- Subject keys: writers encrypt per subject; only admins find or destroy them.
GRANT EXECUTE ON FUNCTION aegis.encrypt_for_subject(text, text) TO aegis_admin, aegis_ingest;
GRANT EXECUTE ON FUNCTION aegis.subject_key_name(text), aegis.forget_subject(text) TO aegis_admin;

-- Policy administration: aegis_admin only. (create_roles() and
-- create_monitoring_schema() are granted to nobody: they need a superuser or
-- a DBA the superuser grants them to.)
GRANT EXECUTE ON FUNCTION
    aegis.protect(regclass, jsonb), aegis.unprotect(regclass),
    aegis.enforce_rls(regclass), aegis.relax_rls(regclass), aegis.take_baseline(regclass),
    aegis.create_masking_view(regclass, name, regrole[]),
    aegis.create_scope(text, regclass, name), aegis.assign_scope(regrole, text, text, timestamptz),
    aegis.unassign_scope(regrole, text, text), aegis.check_scope_key(text, text),
    aegis.assign_oncall(regrole, text, timestamptz), aegis.unassign_oncall(regrole, text)
TO aegis_admin;
GRANT SELECT ON aegis.protected_tables, aegis.column_classes TO aegis_admin, aegis_auditor;
-- What each role profile grants: public documentation. Scope keys: each
-- role its own (the policies call it).
GRANT EXECUTE ON FUNCTION aegis.profile_catalog(), aegis.scope_keys(text) TO PUBLIC;
-- Records only the caller's own counted reads.
GRANT EXECUTE ON FUNCTION aegis.flush_application_reads() TO PUBLIC;
-- The checks protect(), set_retention() and place_legal_hold() run, which
-- the catalog guard runs again on direct changes (95_catalog_guard.sql).
GRANT EXECUTE ON FUNCTION
    aegis.check_policy(regclass, jsonb), aegis.is_enforced(regclass), aegis.profile_in_force(regclass),
    aegis.check_subject_directory(regclass, jsonb), aegis.scope_predicate_of(regclass, jsonb),
    aegis.application_roles_of(jsonb), aegis.application_roles_in_force(oid), aegis.profile_of(jsonb),
    aegis.policy_code(oid, boolean), aegis.policy_untrusted_code(oid),
    aegis.check_retention_rule(regclass, interval, name, text, text), aegis.check_legal_hold(regclass, text, text)
TO aegis_admin;
-- protect()/unprotect() run with the admin's own rights on the catalog, so
-- the catalog records who really called them.
GRANT INSERT, UPDATE, DELETE ON aegis.protected_tables, aegis.column_classes TO aegis_admin;

-- Audit trail: sealing and verification for admins and auditors. The
-- capture trigger functions are executable by PUBLIC: a table owner's new
-- partition of a protected table clones them (CREATE TABLE ... PARTITION OF
-- needs EXECUTE), and they refuse to run on any table pg_aegis does not
-- protect. Trigger functions cannot be called directly.
GRANT EXECUTE ON FUNCTION aegis.audit_row(), aegis.audit_statement(), aegis.audit_truncate() TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    aegis.seal(), aegis.verify_chain(), aegis.verify_chain(jsonb), aegis.verify_chain_incremental(), aegis.chain_head(),
    aegis.verify_table(regclass)
TO aegis_admin, aegis_auditor;
-- aegis.audit_trail filters row images for whoever reads it (70_audit.sql);
-- the filters reveal only what the caller itself may read.
GRANT EXECUTE ON FUNCTION aegis.reads_all_rows(regclass), aegis.role_reads_all_rows(regclass, oid),
    aegis.visible_image(text, jsonb), aegis.is_chunk(jsonb, jsonb, jsonb) TO PUBLIC;
-- The DDL guard's event triggers run as whoever issues the DDL. These reveal
-- only which tables are protected, and guard_report() refuses unless the
-- caller is a superuser (audit_event() and guard_forget() stay ungranted).
GRANT EXECUTE ON FUNCTION
    aegis.guard_compliant_tables(), aegis.guard_protected_tables(), aegis.guard_report(text[], text, text),
    aegis.guard_verify(text),
    aegis.guard_state(oid), aegis.guard_protect_partitions(), aegis.guard_check(), aegis.guard_remembered()
TO PUBLIC;

-- Lifecycle: retention and legal holds are administered by aegis_admin (the
-- catalogs are written with the admin's own rights, so the audit trigger
-- records who did it); the row-filter validator and the table check are what
-- those functions call. apply_retention() is the definer-rights step.
GRANT EXECUTE ON FUNCTION
    aegis.set_retention(regclass, interval, name, text, text), aegis.remove_retention(regclass),
    aegis.place_legal_hold(regclass, text, text), aegis.release_legal_hold(bigint),
    aegis.apply_retention(boolean),
    aegis.row_filter(regclass, text, regrole), aegis.lifecycle_check_table(regclass, name),
    aegis.schedule_retention(text), aegis.unschedule_retention(), aegis.cron_next(text, timestamptz),
    aegis.legal_hold_filter(regclass), aegis.erase_subject(text, boolean)
TO aegis_admin;
-- Security checks: admins and auditors (the worker runs them as superuser).
GRANT EXECUTE ON FUNCTION aegis.security_alerts(boolean), aegis.denied_access_count(),
    aegis.current_baselines(oid, name, text[])
TO aegis_admin, aegis_auditor;
-- Reading the alert a notification announces: anyone may ask; row-level
-- security on aegis.alert_events decides what comes back.
GRANT EXECUTE ON FUNCTION aegis.alert_event(text) TO PUBLIC;
-- Metric alerts on any table: admins attach them; the mapping is public to
-- admins and auditors; the DDL guard checks hand-written triggers.
GRANT EXECUTE ON FUNCTION aegis.attach_metric_alerts(regclass, name, name, name[], text, regclass, jsonb),
    aegis.detach_metric_alerts(regclass) TO aegis_admin;
GRANT EXECUTE ON FUNCTION aegis.check_metric_alerts_trigger(oid) TO PUBLIC;
GRANT SELECT ON aegis.metric_alert_sources TO aegis_admin, aegis_auditor;
-- The compliance report: admins and auditors; the mapping is documentation.
GRANT EXECUTE ON FUNCTION aegis.compliance_report(), aegis.compliance_report_json() TO aegis_admin, aegis_auditor;
GRANT EXECUTE ON FUNCTION aegis.compliance_mapping() TO PUBLIC;
-- Finding and erasing mentions reads nothing but the arguments.
GRANT EXECUTE ON FUNCTION aegis.mentions(text, text), aegis.erase_mentions(text, text),
    aegis.mentions_any(text, text[]), aegis.erase_mentions_all(text, text[]) TO PUBLIC;

COMMENT ON FUNCTION aegis.version() IS 'The installed pg_aegis version';
COMMENT ON FUNCTION aegis.is_member(oid) IS
    'True if the current user is a member of the role (false for an OID that is not a role)';
COMMENT ON FUNCTION aegis.build_info() IS
    'Build and load facts: version, postgres_major, profile, preloaded (superuser only)';
