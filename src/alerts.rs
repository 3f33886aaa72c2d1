//! Metric alerts: a statement-level trigger on a metrics table (the
//! reference schema's `server_metrics`) evaluates `aegis.alert_rules` over
//! the statement's new rows (its transition table), writes an alert to the
//! alerts table named by the trigger's argument and to `aegis.alert_events`
//! (read under row-level security), and sends `NOTIFY aegis_alerts` with
//! only the event's id, at most once per rule and server within the rule's
//! cooldown.
//!
//! Threshold rules compare a column with a constant. Anomaly rules compare
//! with that server's recent mean: per (table, metric, server) a count, mean
//! and sum of squared deviations (Chan et al.'s pairwise update, with the
//! old count capped at 1000 samples so old samples fade), so no
//! insert ever scans history. Rows are checked against the baseline as it
//! was before the statement, then the baseline takes them in.
//! The standard deviation is floored at 1% of the mean and at 1, so a
//! perfectly steady series does not alert on the smallest change.
//!
//! Inserts never wait for each other (nor for an ingest session that keeps
//! its transaction open): each statement appends its figures to
//! `aegis.metric_baseline_deltas` and locks nothing; the background worker
//! folds pending deltas into `aegis.metric_baselines` every round, in short
//! transactions of its own. The baseline in force is the folded one merged
//! with the pending deltas (`aegis.current_baselines`).
//! Cooldown firings are appended to `aegis.alert_state`, never locked.
//!
//! Everything set-shaped runs as SQL over the transition table (one scan per
//! rule, one per anomaly metric for the baseline); Rust builds those queries
//! from the cached rules, binds every value as a parameter and quotes every
//! identifier, and does the per-alert bookkeeping. The queries run with
//! `search_path = pg_catalog, pg_temp`, so their operators and functions are
//! pg_catalog's (operators are never looked up in pg_temp).

use std::cell::RefCell;
use std::ffi::CStr;

use pgrx::prelude::*;

use crate::error::{protocol_error, raise, AegisError, AegisResult};
use crate::keyring::{as_extension_owner, spi_error, with_safe_search_path};
use pgrx::{pg_shmem_init, PgAtomic};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone)]
struct Rule {
    id: i64,
    name: String,
    anomaly: bool,
    metric: String,
    comparison: &'static str,
    threshold: f64,
    min_samples: i64,
    severity: String,
    cooldown: String,
}

#[derive(Default)]
struct Cache {
    callback_registered: bool,
    rules_relid: Option<pg_sys::Oid>,
    rules: Option<Vec<Rule>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if relid == pg_sys::InvalidOid || Some(relid) == c.rules_relid {
            c.rules = None;
            c.rules_relid = None;
        }
    });
}

fn comparison(op: &str) -> Option<&'static str> {
    Some(match op {
        ">" => ">",
        ">=" => ">=",
        "<" => "<",
        "<=" => "<=",
        _ => return None,
    })
}

/// The enabled rules, cached until aegis.alert_rules changes (its statement
/// trigger invalidates the relcache entry, which clears this).
fn rules() -> Result<Vec<Rule>, AegisError> {
    if let Some(r) = CACHE.with(|c| c.borrow().rules.clone()) {
        return Ok(r);
    }
    let (relid, rules) = with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect(|client| {
                let relid = client
                    .select(
                        "SELECT 'aegis.alert_rules'::pg_catalog.regclass::pg_catalog.oid",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?
                    .first()
                    .get_one::<pg_sys::Oid>()
                    .map_err(spi_error)?;
                let mut out = Vec::new();
                for row in client
                    .select(
                        "SELECT id, name, kind OPERATOR(pg_catalog.=) 'anomaly', metric::pg_catalog.text, \
                                COALESCE(comparison, '>'), threshold, min_samples, severity, cooldown::pg_catalog.text \
                         FROM aegis.alert_rules WHERE enabled ORDER BY id",
                        None,
                        &[],
                    )
                    .map_err(spi_error)?
                {
                    let op: String = row.get(5).map_err(spi_error)?.unwrap_or_default();
                    out.push(Rule {
                        id: row.get(1).map_err(spi_error)?.unwrap_or(0),
                        name: row.get(2).map_err(spi_error)?.unwrap_or_default(),
                        anomaly: row.get(3).map_err(spi_error)?.unwrap_or(false),
                        metric: row.get(4).map_err(spi_error)?.unwrap_or_default(),
                        comparison: comparison(&op).unwrap_or(">"),
                        threshold: row.get(6).map_err(spi_error)?.unwrap_or(0.0),
                        min_samples: row.get::<i32>(7).map_err(spi_error)?.unwrap_or(30) as i64,
                        severity: row.get(8).map_err(spi_error)?.unwrap_or_default(),
                        cooldown: row.get(9).map_err(spi_error)?.unwrap_or_default(),
                    });
                }
                Ok((relid, out))
            })
        })
    })?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !c.callback_registered {
            // SAFETY: registers a process-lifetime callback once per backend.
            unsafe {
                pg_sys::CacheRegisterRelcacheCallback(
                    Some(on_relcache_inval),
                    pg_sys::Datum::from(0),
                )
            };
            c.callback_registered = true;
        }
        c.rules_relid = relid;
        c.rules = Some(rules.clone());
    });
    Ok(rules)
}

fn quote_ident(s: &str) -> String {
    let cs = std::ffi::CString::new(s).unwrap_or_default();
    // SAFETY: quote_identifier returns its argument or a palloc'd string.
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(cs.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// Numeric columns of the table (the metrics a rule may name).
unsafe fn numeric_columns(rel: pg_sys::Relation) -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: an open relation's tuple descriptor.
    unsafe {
        let tupdesc = (*rel).rd_att;
        for att in crate::compat::tupdesc_attrs(tupdesc) {
            let numeric = [
                pg_sys::INT2OID,
                pg_sys::INT4OID,
                pg_sys::INT8OID,
                pg_sys::FLOAT4OID,
                pg_sys::FLOAT8OID,
                pg_sys::NUMERICOID,
            ]
            .contains(&att.atttypid);
            if !att.attisdropped && numeric {
                out.push(
                    CStr::from_ptr(att.attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out
}

/// Where a metrics table's values come from and where its alerts go: the
/// mapping recorded by `aegis.attach_metric_alerts()`, or the reference
/// layout (server_id, ts; the alerts table as the trigger's argument).
struct Source {
    entity: String,
    time: String,
    time_unit: Option<String>,
    /// The columns rules may name (None: every numeric column).
    metrics: Option<Vec<String>>,
    alerts_table: Option<String>,
    /// (field, column) of the alerts table; empty for the reference layout.
    alerts_columns: Vec<(String, String)>,
    reference: bool,
}

impl Source {
    fn reference(alerts_table: &str) -> Source {
        Source {
            entity: "server_id".into(),
            time: "ts".into(),
            time_unit: None,
            metrics: None,
            alerts_table: Some(alerts_table.to_string()),
            alerts_columns: Vec::new(),
            reference: true,
        }
    }

    /// The mapping recorded for the table (read with the extension
    /// owner's rights: the catalog has no grants).
    fn recorded(relid: pg_sys::Oid, table: &str) -> Result<Source, AegisError> {
        let row = with_safe_search_path(|| {
            as_extension_owner(|| {
                Spi::connect(|client| {
                    let rows = client
                        .select(
                            "SELECT entity_column::text, time_column::text, time_unit, metrics::text[], \
                                    alerts_table::text, alerts_columns::text \
                             FROM aegis.metric_alert_sources WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
                            None,
                            &[relid.into()],
                        )
                        .map_err(spi_error)?;
                    if rows.is_empty() {
                        return Ok(None);
                    }
                    let r = rows.first();
                    Ok(Some((
                        r.get::<String>(1).map_err(spi_error)?.unwrap_or_default(),
                        r.get::<String>(2).map_err(spi_error)?.unwrap_or_default(),
                        r.get::<String>(3).map_err(spi_error)?,
                        r.get::<Vec<String>>(4).map_err(spi_error)?,
                        r.get::<String>(5).map_err(spi_error)?,
                        r.get::<String>(6).map_err(spi_error)?,
                    )))
                })
            })
        })?;
        let Some((entity, time, time_unit, metrics, alerts_table, columns)) = row else {
            return Err(AegisError::AlertsMapping {
                table: table.to_string(),
                what: "no metric alert mapping is recorded for this table".into(),
            });
        };
        let mut alerts_columns = Vec::new();
        if let Some(c) = columns {
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&c)
            {
                for (field, col) in m {
                    if let serde_json::Value::String(col) = col {
                        alerts_columns.push((field, col));
                    }
                }
            }
        }
        Ok(Source {
            entity,
            time,
            time_unit,
            metrics,
            alerts_table,
            alerts_columns,
            reference: false,
        })
    }

    /// The time column as ISO 8601 text, over the transition table `n`.
    fn time_expr(&self) -> String {
        let col = quote_ident(&self.time);
        match self.time_unit.as_deref() {
            Some("milliseconds") => format!(
                "to_json(pg_catalog.to_timestamp(n.{col}::pg_catalog.float8 / 1000)) #>> '{{}}'"
            ),
            Some(_) => {
                format!("to_json(pg_catalog.to_timestamp(n.{col}::pg_catalog.float8)) #>> '{{}}'")
            }
            None => format!("to_json(n.{col}) #>> '{{}}'"),
        }
    }
}

/// The mapped key columns the trigger reads with pg_aegis's rights (cast
/// to text, sorted, compared, rendered as JSON) must still exist and be of
/// built-in types: a type a non-superuser created brings its own casts and
/// operators, which would run with those rights. (Checked at attach time;
/// checked again here in case the table changed since.)
unsafe fn mapped_key_problem(rel: pg_sys::Relation, source: &Source) -> Option<AegisError> {
    // SAFETY: an open relation's tuple descriptor.
    let atts = unsafe { crate::compat::tupdesc_attrs((*rel).rd_att) };
    for key in [&source.entity, &source.time] {
        let att = atts.iter().find(|att| {
            !att.attisdropped
                // SAFETY: attname is a NUL-terminated NameData.
                && unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_string_lossy() == **key
        });
        match att {
            None if source.reference => {
                return Some(AegisError::AlertsMapping {
                    table: String::new(),
                    what: format!("the table has no column {key} (the reference layout needs server_id and ts; map other columns with aegis.attach_metric_alerts())"),
                })
            }
            None => {
                return Some(AegisError::AlertsMapping {
                    table: String::new(),
                    what: format!("mapped column {key} no longer exists"),
                })
            }
            Some(att) if u32::from(att.atttypid) >= pg_sys::FirstNormalObjectId => {
                return Some(AegisError::AlertsUntrusted {
                    what: format!("column {key} has a type that is not built in"),
                })
            }
            Some(_) => {}
        }
    }
    None
}

struct Candidate {
    rule: Rule,
    server_id: String,
    ts: String,
    value: f64,
    mean: Option<f64>,
    stddev: Option<f64>,
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn evaluate(
    relid: pg_sys::Oid,
    rules: Vec<Rule>,
    source: &Source,
    td: *mut pg_sys::TriggerData,
    new_rows: &str,
) -> Result<usize, AegisError> {
    let newtab = quote_ident(new_rows);
    let entity = quote_ident(&source.entity);
    let time = source.time_expr();
    // Whose insert raised the alerts (before switching to the extension
    // owner, who writes them).
    // SAFETY: the current user of the running statement.
    let collector = crate::audit::role_name(unsafe { pg_sys::GetUserId() });
    with_safe_search_path(|| {
        as_extension_owner(|| {
            Spi::connect_mut(|client| {
                // SAFETY: makes this trigger's transition tables visible to
                // the queries of this SPI connection (PostgreSQL's own
                // procedural languages do the same).
                unsafe { pg_sys::SPI_register_trigger_data(td) };
                // 1. Candidates: per rule, the worst row of each server.
                let mut candidates = Vec::new();
                for r in &rules {
                    let col = quote_ident(&r.metric);
                    let rows = if r.anomaly {
                        client
                            .select(
                                &format!(
                                    "SELECT DISTINCT ON (n.{entity}::text) n.{entity}::text, {time}, n.{col}::float8, b.mean, \
                                            GREATEST(sqrt(b.m2 / NULLIF(b.n - 1, 0)), abs(b.mean) * 0.01, 1) \
                                     FROM {newtab} n JOIN aegis.current_baselines($1, $2, \
                                            (SELECT array_agg(DISTINCT s.{entity}::text) FROM {newtab} s)) b \
                                       ON b.server_id = n.{entity}::text \
                                     WHERE b.n >= GREATEST($3, 2) \
                                       AND n.{col}::float8 > (b.mean + ($4 * GREATEST(sqrt(b.m2 / NULLIF(b.n - 1, 0)), abs(b.mean) * 0.01, 1))) \
                                     ORDER BY n.{entity}::text, n.{col} DESC"
                                ),
                                None,
                                &[relid.into(), r.metric.clone().into(), r.min_samples.into(), r.threshold.into()],
                            )
                            .map_err(spi_error)?
                    } else {
                        let (op, order) = (
                            r.comparison,
                            if r.comparison.starts_with('<') {
                                "ASC"
                            } else {
                                "DESC"
                            },
                        );
                        client
                            .select(
                                &format!(
                                    "SELECT DISTINCT ON (n.{entity}::text) n.{entity}::text, {time}, n.{col}::float8, \
                                            NULL::float8, NULL::float8 \
                                     FROM {newtab} n WHERE n.{col}::float8 {op} $1 \
                                     ORDER BY n.{entity}::text, n.{col} {order}"
                                ),
                                None,
                                &[r.threshold.into()],
                            )
                            .map_err(spi_error)?
                    };
                    for row in rows {
                        candidates.push(Candidate {
                            rule: r.clone(),
                            server_id: row.get(1).map_err(spi_error)?.unwrap_or_default(),
                            ts: row.get(2).map_err(spi_error)?.unwrap_or_default(),
                            value: row.get(3).map_err(spi_error)?.unwrap_or(0.0),
                            mean: row.get(4).map_err(spi_error)?,
                            stddev: row.get(5).map_err(spi_error)?,
                        });
                    }
                }
                // 2. Baselines take this statement's rows in, once per
                // metric: appended as deltas. The background worker folds
                // them (an insert takes no lock another transaction could
                // need, so no open transaction can pin one).
                let mut merged: Vec<&str> = Vec::new();
                for r in rules.iter().filter(|r| r.anomaly) {
                    if merged.contains(&r.metric.as_str()) {
                        continue;
                    }
                    merged.push(&r.metric);
                    let col = quote_ident(&r.metric);
                    client
                        .update(
                            &format!(
                                "INSERT INTO aegis.metric_baseline_deltas (relid, metric, server_id, n, mean, m2) \
                                 SELECT $1, $2, s.server_id, count(*), avg(s.x), COALESCE(var_pop(s.x) * count(*), 0) \
                                 FROM (SELECT n.{entity}::text AS server_id, n.{col}::float8 AS x \
                                       FROM {newtab} n WHERE n.{col} IS NOT NULL) s \
                                 GROUP BY s.server_id"
                            ),
                            None,
                            &[relid.into(), r.metric.clone().into()],
                        )
                        .map_err(spi_error)?;
                }
                if candidates.is_empty() {
                    return Ok(0);
                }
                // The alerts table is resolved only when there is something
                // to write (most statements alert nobody), by name each time
                // (a renamed or dropped table is noticed, not cached).
                let insert = match &source.alerts_table {
                    None => None,
                    Some(alerts_table) => Some(alerts_insert(client, source, alerts_table)?),
                };
                // The metrics table, named in every alert it raises.
                let table: Option<String> = client
                    .select(
                        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) \
                         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.oid = $1",
                        None,
                        &[relid.into()],
                    )
                    .map_err(spi_error)?
                    .first()
                    .get_one::<String>()
                    .map_err(spi_error)?;
                // 3. Fire what the cooldown allows (per rule, table and
                // entity).
                let mut fired = 0;
                for c in candidates {
                    if !claim(client, c.rule.id, relid, &c.server_id, &c.rule.cooldown)? {
                        continue;
                    }
                    let message =
                        match (c.mean, c.stddev) {
                            (Some(mean), Some(sd)) if c.rule.anomaly => {
                                format!(
                            "{} {} on {} is {:.1} standard deviations above its recent mean {}",
                            c.rule.metric,
                            format_value(c.value),
                            c.server_id,
                            if sd > 0.0 { (c.value - mean) / sd } else { f64::INFINITY },
                            format_value(mean)
                        )
                            }
                            _ => format!(
                                "{} {} {} {} on {}",
                                c.rule.metric,
                                format_value(c.value),
                                c.rule.comparison,
                                format_value(c.rule.threshold),
                                c.server_id
                            ),
                        };
                    let params = [
                        c.server_id.clone().into(),
                        c.ts.clone().into(),
                        c.rule.name.clone().into(),
                        c.rule.severity.clone().into(),
                        c.rule.metric.clone().into(),
                        c.value.into(),
                        message.clone().into(),
                    ];
                    let id: Option<i64> = match &insert {
                        None => None,
                        Some(sql) if source.reference => client
                            .update(sql, None, &params)
                            .map_err(spi_error)?
                            .first()
                            .get_one::<i64>()
                            .map_err(spi_error)?,
                        Some(sql) => {
                            client.update(sql, None, &params).map_err(spi_error)?;
                            None
                        }
                    };
                    let mut payload = serde_json::json!({
                        "kind": if c.rule.anomaly { "anomaly" } else { "threshold" },
                        "alert_id": id,
                        "rule": c.rule.name,
                        "severity": c.rule.severity,
                        "server_id": c.server_id,
                        "metric": c.rule.metric,
                        "value": c.value,
                        "ts": c.ts,
                        "table": table,
                        "message": message,
                    });
                    if let serde_json::Value::Object(m) = &mut payload {
                        if c.rule.anomaly {
                            m.insert("mean".into(), c.mean.into());
                            m.insert("stddev".into(), c.stddev.into());
                            m.insert("k".into(), c.rule.threshold.into());
                        } else {
                            m.insert("comparison".into(), c.rule.comparison.into());
                            m.insert("threshold".into(), c.rule.threshold.into());
                        }
                    }
                    // The content goes where row-level security decides
                    // who reads it; the notification carries only its id.
                    client
                        .update(
                            "SELECT aegis.announce_alert('metric', $1, $2, $3, $4, $5::pg_catalog.jsonb)",
                            None,
                            &[
                                c.rule.name.clone().into(),
                                c.rule.severity.clone().into(),
                                c.server_id.clone().into(),
                                collector.as_str().into(),
                                payload.to_string().into(),
                            ],
                        )
                        .map_err(spi_error)?;
                    fired += 1;
                }
                Ok(fired)
            })
        })
    })
}

/// The INSERT that writes one alert into the alerts table, with the
/// parameters $1..$7 = entity, time (ISO 8601), rule, severity, metric,
/// value, message. The table must be a superuser's: its triggers,
/// defaults, constraints and rules run with pg_aegis's rights. A mapped
/// table takes each field in the column the mapping names, cast to that
/// column's type (an integer time column as epoch seconds).
fn alerts_insert(
    client: &mut pgrx::spi::SpiClient<'_>,
    source: &Source,
    alerts_table: &str,
) -> Result<String, AegisError> {
    let target = client
        .select(
            "SELECT format('%I.%I', n.nspname, c.relname), aegis.alerts_table_untrusted(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
            None,
            &[alerts_table.into()],
        )
        .map_err(spi_error)?;
    let (target, untrusted) = if target.is_empty() {
        (None, None)
    } else {
        let row = target.first();
        (
            row.get::<String>(1).map_err(spi_error)?,
            row.get::<String>(2).map_err(spi_error)?,
        )
    };
    let target = target.ok_or_else(|| AegisError::AlertsTable {
        name: alerts_table.to_string(),
    })?;
    // Its triggers, defaults, constraints and rules run with pg_aegis's
    // rights: every relation of it a superuser's, and all they use.
    if let Some(what) = untrusted {
        return Err(AegisError::AlertsUntrusted {
            what: format!("alerts table {target}: {what}"),
        });
    }
    if source.reference {
        return Ok(format!(
            "INSERT INTO {target} (server_id, ts, rule, severity, metric, value, message) \
             VALUES ($1, $2::pg_catalog.timestamptz, $3, $4, $5, $6, $7) RETURNING id::pg_catalog.int8"
        ));
    }
    let mut cols = Vec::new();
    let mut values = Vec::new();
    for (field, column) in &source.alerts_columns {
        let typ = client
            .select(
                "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), \
                        a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype, \
                                       'pg_catalog.int8'::pg_catalog.regtype) \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                   AND a.atttypid < 16384",
                None,
                &[alerts_table.into(), column.as_str().into()],
            )
            .map_err(spi_error)?;
        if typ.is_empty() {
            return Err(AegisError::AlertsMapping {
                table: target.clone(),
                what: format!("alerts column {column} (for {field}) no longer exists or is not of a built-in type"),
            });
        }
        let row = typ.first();
        let ty: String = row.get(1).map_err(spi_error)?.unwrap_or_default();
        let integer: bool = row.get(2).map_err(spi_error)?.unwrap_or(false);
        let value = match field.as_str() {
            "entity" => format!("$1::{ty}"),
            "time" if integer => format!(
                "pg_catalog.floor(pg_catalog.date_part('epoch', $2::pg_catalog.timestamptz))::{ty}"
            ),
            "time" => format!("$2::pg_catalog.timestamptz::{ty}"),
            "rule" => format!("$3::{ty}"),
            "severity" => format!("$4::{ty}"),
            "metric" => format!("$5::{ty}"),
            "value" => format!("$6::pg_catalog.float8::{ty}"),
            "message" => format!("$7::{ty}"),
            _ => continue,
        };
        cols.push(quote_ident(column));
        values.push(value);
    }
    Ok(format!(
        "INSERT INTO {target} ({}) VALUES ({})",
        cols.join(", "),
        values.join(", ")
    ))
}

/// May this rule fire for this server of this metrics table now (its
/// cooldown)? Looks at the
/// firings committed by now (the latest snapshot: a repeatable-read
/// collector does not fire again what committed after its snapshot) and
/// this transaction's own, and appends this firing to `aegis.alert_state`.
/// Nothing is locked: a collector's open transaction can neither make
/// another wait nor silence its alerts; two collectors firing the same pair
/// at the same moment may both alert.
fn claim(
    client: &mut pgrx::spi::SpiClient<'_>,
    rule: i64,
    relid: pg_sys::Oid,
    server: &str,
    cooldown: &str,
) -> Result<bool, AegisError> {
    let recent = crate::spi::bool_in_latest_snapshot(
        c"SELECT EXISTS (SELECT 1 FROM aegis.alert_state s \
                         WHERE s.rule_id = $1 AND s.relid = $2 AND s.server_id = $3 \
                           AND s.last_fired_at > pg_catalog.now() - $4::pg_catalog.text::pg_catalog.interval)",
        &[rule.into(), relid.into(), server.into(), cooldown.into()],
    )
    .map_err(spi_error)?;
    if recent {
        return Ok(false);
    }
    client
        .update(
            "INSERT INTO aegis.alert_state (rule_id, relid, server_id, last_fired_at) VALUES ($1, $2, $3, pg_catalog.now())",
            None,
            &[rule.into(), relid.into(), server.into()],
        )
        .map_err(spi_error)?;
    Ok(true)
}

/// `aegis.metric_alerts()`: AFTER INSERT ... REFERENCING NEW TABLE AS ...
/// FOR EACH STATEMENT, with the alerts table as its argument.
#[pg_trigger(sql = false)]
fn metric_alerts<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    use pgrx::trigger_support::{PgTriggerLevel, PgTriggerOperation, PgTriggerWhen};
    if !matches!(trigger.when(), Ok(PgTriggerWhen::After))
        || !matches!(trigger.level(), PgTriggerLevel::Statement)
        || !matches!(trigger.op(), Ok(PgTriggerOperation::Insert))
    {
        protocol_error(
            "aegis.metric_alerts() must be an AFTER INSERT ... FOR EACH STATEMENT trigger",
        );
    }
    let Ok(Some(new_rows)) = trigger.new_transition_table_name() else {
        protocol_error("aegis.metric_alerts() needs REFERENCING NEW TABLE AS <name>");
    };
    let args = trigger.extra_args().unwrap_or_default();
    let td = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    // SAFETY: a statement trigger: the relation is open for the call.
    let (relid, numeric) = unsafe {
        let rel = (*td).tg_relation;
        ((*rel).rd_id, numeric_columns(rel))
    };
    // Most statements alert nobody: no rule on a metric of this table, no
    // further work (not even the mapping lookup).
    let rules = match rules() {
        Ok(r) => r,
        Err(e) => raise(e),
    };
    let rules: Vec<Rule> = rules
        .into_iter()
        .filter(|r| numeric.contains(&r.metric))
        .collect();
    if rules.is_empty() {
        return Ok(None);
    }
    let table = trigger.table_name().unwrap_or_default();
    let source = match args.as_slice() {
        [] => Source::recorded(relid, &table).unwrap_or_else(|e| raise(e)),
        [alerts_table] => Source::reference(alerts_table),
        _ => protocol_error(
            "aegis.metric_alerts() takes at most one argument (the reference alerts table)",
        ),
    };
    // SAFETY: as above.
    if let Some(mut e) = unsafe { mapped_key_problem((*td).tg_relation, &source) } {
        if let AegisError::AlertsMapping { table: t, .. } = &mut e {
            *t = table.clone();
        }
        raise(e);
    }
    let rules: Vec<Rule> = match &source.metrics {
        Some(m) => rules
            .into_iter()
            .filter(|r| m.contains(&r.metric))
            .collect(),
        None => rules,
    };
    if rules.is_empty() {
        return Ok(None);
    }
    if let Err(e) = evaluate(relid, rules, &source, td, new_rows) {
        raise(e);
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// Security alerts: the denied-access counter
// ---------------------------------------------------------------------------

/// Permission-denied attempts on protected tables since the server started,
/// in every database (counted by the read-audit hook; shared memory, so only
/// with the library preloaded).
static DENIED_ACCESSES: PgAtomic<AtomicU64> =
    // SAFETY: the name is ours alone.
    unsafe { PgAtomic::new(c"pg_aegis denied accesses") };

/// Ask for the counter's shared memory (from `_PG_init`, while preloading).
pub(crate) fn init_shared_memory() {
    pg_shmem_init!(DENIED_ACCESSES);
}

/// One more denied attempt (called by the read-audit hook, which exists only
/// when the library is preloaded, so the counter is there).
pub(crate) fn count_denied_access() {
    DENIED_ACCESSES.get().fetch_add(1, Ordering::Relaxed);
}

/// The same, for the server-log hook (src/read_audit_hooks.c: a schema's
/// USAGE refused at name lookup), which runs while an error is reported:
/// nothing may raise there.
#[unsafe(no_mangle)]
pub extern "C" fn aegis_count_denied_access() {
    let _ = std::panic::catch_unwind(count_denied_access);
}

/// `aegis.denied_access_count() → bigint`: NULL when not preloaded.
#[pg_extern(volatile, sql = false)]
fn denied_access_count() -> AegisResult<Option<i64>> {
    Ok(crate::info::preloaded().then(|| DENIED_ACCESSES.get().load(Ordering::Relaxed) as i64))
}

/// `aegis.in_transaction_block() → boolean`: whether the calling statement
/// runs inside a transaction block (explicit `BEGIN`, or several statements
/// sent as one query). Internal: security_alerts() refuses to hold its
/// state locks past its own statement for non-superusers.
#[pg_extern(volatile, sql = false)]
fn in_transaction_block() -> bool {
    // SAFETY: reads the backend's transaction state.
    unsafe { pg_sys::IsTransactionBlock() }
}

/// One round of the worker's security checks: `aegis.security_alerts(true)`
/// if this database's pg_aegis has it. Returns how many findings there were.
pub(crate) fn run_security_checks() -> Result<i64, AegisError> {
    with_safe_search_path(|| {
        Spi::connect(|client| {
            let has = client
                .select(
                    "SELECT pg_catalog.to_regprocedure('aegis.security_alerts(boolean)') IS NOT NULL",
                    None,
                    &[],
                )
                .map_err(spi_error)?
                .first()
                .get_one::<bool>()
                .map_err(spi_error)?
                .unwrap_or(false);
            if !has {
                return Ok(0);
            }
            Ok(client
                .select(
                    "SELECT pg_catalog.count(*) FROM aegis.security_alerts(true)",
                    None,
                    &[],
                )
                .map_err(spi_error)?
                .first()
                .get_one::<i64>()
                .map_err(spi_error)?
                .unwrap_or(0))
        })
    })
}

/// The worker's upkeep of metric alerts (`aegis.alert_upkeep()`, if this
/// database's pg_aegis has it): folds the pending baseline deltas no insert
/// could fold, forgets firings past their cooldown. Returns how many
/// baselines it folded.
pub(crate) fn alert_upkeep() -> Result<i64, AegisError> {
    with_safe_search_path(|| {
        Spi::connect_mut(|client| {
            let has = client
                .select(
                    "SELECT pg_catalog.to_regprocedure('aegis.alert_upkeep()') IS NOT NULL",
                    None,
                    &[],
                )
                .map_err(spi_error)?
                .first()
                .get_one::<bool>()
                .map_err(spi_error)?
                .unwrap_or(false);
            if !has {
                return Ok(0);
            }
            Ok(client
                .update("SELECT aegis.alert_upkeep()", None, &[])
                .map_err(spi_error)?
                .first()
                .get_one::<i64>()
                .map_err(spi_error)?
                .unwrap_or(0))
        })
    })
}

/// The background sealer could not take the chain's lock: a security alert
/// naming who holds it (aegis.report_blocked_sealer, rate-limited there).
pub(crate) fn report_blocked_sealer(holders: &str) -> Result<(), AegisError> {
    with_safe_search_path(|| {
        Spi::connect_mut(|client| {
            let has = client
                .select(
                    "SELECT pg_catalog.to_regprocedure('aegis.report_blocked_sealer(text)') IS NOT NULL",
                    None,
                    &[],
                )
                .map_err(spi_error)?
                .first()
                .get_one::<bool>()
                .map_err(spi_error)?
                .unwrap_or(false);
            if has {
                client
                    .update(
                        "SELECT aegis.report_blocked_sealer($1)",
                        None,
                        &[holders.into()],
                    )
                    .map_err(spi_error)?;
            }
            Ok(())
        })
    })
}
