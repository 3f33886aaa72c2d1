-- Control: pruning the audit trail (0.5.0). prune_audit() removes the sealed
-- entries older than a cutoff behind a checkpoint signed with the audit_head
-- key; what remains verifies from the checkpoint, verify_table() keeps
-- working (re-baselined rows), the receipt is an audit entry, checkpoints
-- are append-only, a forged checkpoint is caught, and only superusers prune.
-- Sealing needs committed transactions, so this runs in a database of its own.
\set VERBOSITY terse
\set SHOW_CONTEXT never
\pset null '(null)'
SET client_min_messages = warning;
CREATE DATABASE aegis_regress_prune;
\c aegis_regress_prune
SET client_min_messages = warning;
CREATE EXTENSION pg_aegis;
CREATE ROLE prune_admin LOGIN IN ROLE aegis_admin;
CREATE ROLE prune_auditor LOGIN IN ROLE aegis_auditor;
SELECT aegis.create_key('pseudonym') IS NOT NULL AS pseudonym_key;
CREATE TABLE app_events (id int PRIMARY KEY, note text);
SELECT aegis.protect('app_events');
INSERT INTO app_events SELECT g, 'n' || g FROM generate_series(1, 10) g;
SELECT aegis.seal() AS sealed;
-- Without the audit_head key there is nothing to sign the checkpoint with.
SELECT aegis.prune_audit(now());
SELECT aegis.create_key('audit_head') IS NOT NULL AS head_key;
SELECT aegis.chain_head() AS early_head \gset
INSERT INTO app_events SELECT g, 'n' || g FROM generate_series(11, 20) g;
SELECT aegis.seal() AS sealed;
SELECT pg_sleep(0.05);
SELECT now() AS cutoff \gset
SELECT pg_sleep(0.05);
UPDATE app_events SET note = 'changed' WHERE id <= 3;
SELECT aegis.seal() AS sealed;
SELECT aegis.chain_head() AS late_head \gset

-- Only superusers prune (or whom they grant it to).
SET ROLE prune_admin;
SELECT aegis.prune_audit(:'cutoff');
RESET ROLE;
SET ROLE prune_auditor;
SELECT aegis.prune_audit(:'cutoff');
RESET ROLE;
SELECT aegis.prune_audit(NULL) IS NULL AS strict;

-- The prune: the 20 inserts before the cutoff go; the 3 updates stay.
SELECT r ->> 'entries_pruned' AS pruned, r -> 'checkpoint' ->> 'position' AS checkpoint_position,
       r -> 'rebaselined' AS rebaselined, r ->> 'previous_checkpoint_position' AS previous
FROM aegis.prune_audit(:'cutoff') r;
SELECT operation, count(*) FROM aegis.audit_log GROUP BY 1 ORDER BY 1;
SELECT min(position) AS first_position_left FROM aegis.audit_chain;
SELECT position, entries_pruned, pruned_before = :'cutoff' AS cutoff_recorded FROM aegis.audit_checkpoints;
-- The receipt is an entry; after sealing, the chain verifies from the
-- checkpoint, and the table against its re-baselined rows.
SELECT detail ->> 'entries_pruned' AS receipt_pruned FROM aegis.audit_log WHERE operation = 'PRUNE';
SELECT aegis.seal() AS sealed;
SELECT ok, entries_checked, problem FROM aegis.verify_chain();
SELECT ok, rows_checked, mismatches FROM aegis.verify_table('app_events');
-- A head saved after the checkpoint still vouches for what remains; one
-- from inside the pruned part cannot, and saying so is an error, not a pass.
SELECT ok, entries_checked FROM aegis.verify_chain(:'late_head');
SELECT * FROM aegis.verify_chain(:'early_head');
-- Nothing older left: a second prune with the same cutoff prunes nothing.
SELECT r ->> 'entries_pruned' AS pruned, r ->> 'reason' AS reason FROM aegis.prune_audit(:'cutoff') r;

-- Checkpoints are append-only for every role.
UPDATE aegis.audit_checkpoints SET entries_pruned = 0;
DELETE FROM aegis.audit_checkpoints;
TRUNCATE aegis.audit_checkpoints;
SET ROLE prune_admin;
INSERT INTO aegis.audit_checkpoints VALUES (999, '\x00', 0, '\x00', now(), 0);
RESET ROLE;
-- A superuser who switches the guard off and forges a checkpoint (to hide
-- a rewrite of the entries after it) cannot sign it.
ALTER TABLE aegis.audit_checkpoints DISABLE TRIGGER append_only;
UPDATE aegis.audit_checkpoints SET chain_hash = decode(repeat('ab', 32), 'hex');
ALTER TABLE aegis.audit_checkpoints ENABLE ALWAYS TRIGGER append_only;
SELECT ok, first_bad_position > 0 AS at_checkpoint, problem FROM aegis.verify_chain();

\c aegis_regress
SET client_min_messages = warning;
DROP DATABASE aegis_regress_prune;
DROP ROLE prune_admin, prune_auditor;
