//! Session lookups for row-level security policies and masking views.
//!
//! `aegis.is_member(role)` is what every membership test in the policy pack
//! reduces to. It is C (through PostgreSQL's cached membership list) rather
//! than `pg_has_role()` in a SQL function because policies call it once per
//! query, and a SQL-language helper is re-planned on every query, which was
//! the larger part of the RLS overhead on short queries (see the RLS
//! benchmark in docs/benchmarks.md). It also returns false, instead of
//! raising an error, for a role OID that no longer exists (an on-call
//! assignment of a dropped role).

use pgrx::prelude::*;

/// `aegis.is_member(role oid) → boolean`: is the current user a member of
/// `role`, directly or indirectly (superusers are members of every role, as
/// with `pg_has_role(role, 'MEMBER')`)?
#[pg_extern(stable, strict, parallel_safe)]
fn is_member(role: pg_sys::Oid) -> bool {
    let key = pg_sys::Datum::from(role.to_u32());
    let zero = pg_sys::Datum::from(0usize);
    // SAFETY: a syscache probe by OID and a membership check for the current
    // user; both only read catalogs, from the backend's main thread.
    unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            key,
            zero,
            zero,
            zero,
        ) && pg_sys::is_member_of_role(pg_sys::GetUserId(), role)
    }
}

#[cfg(any(test, feature = "pg_test"))]
// In-backend tests may assign xids freely.
#[allow(clippy::disallowed_methods)]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn membership_follows_grants_and_ignores_dropped_roles() {
        Spi::run("CREATE ROLE t_group NOLOGIN; CREATE ROLE t_user NOLOGIN IN ROLE t_group; CREATE ROLE t_other NOLOGIN")
            .unwrap();
        Spi::run("SET ROLE t_user").unwrap();
        let q = |r: &str| {
            Spi::get_one::<bool>(&format!("SELECT aegis.is_member('{r}'::regrole)"))
                .unwrap()
                .unwrap()
        };
        assert!(q("t_user"));
        assert!(q("t_group"));
        assert!(!q("t_other"));
        Spi::run("RESET ROLE").unwrap();
        // An OID that is not a role: false, not an error.
        let gone = Spi::get_one::<bool>("SELECT aegis.is_member(4294967295::oid)").unwrap();
        assert_eq!(gone, Some(false));
    }
}
