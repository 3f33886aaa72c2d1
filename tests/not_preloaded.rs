//! Without shared_preload_libraries the library loads on first use in each
//! session; everything in this release must work the same way, and the
//! superuser-only GUC must stay superuser-only even when a user sets it as a
//! placeholder before the library has defined it.

use aegis_integration::{sqlstate, superuser_on, Cluster, LoginRole};

const C: Cluster = Cluster::NotPreloaded;

#[test]
fn works_without_preloading() {
    let mut c = superuser_on(C);
    let row = c
        .query_one(
            "SELECT value, aegis.digest('abc', 'sha256') = digest('abc', 'sha256'),
                    aegis.hmac('abc', 'k', 'sha512') = hmac('abc', 'k', 'sha512')
             FROM aegis.build_info() WHERE item = 'preloaded'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "false");
    assert!(row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2));
}

#[test]
fn placeholder_set_before_load_cannot_enable_legacy_hashes() {
    let mut admin = superuser_on(C);
    let role = LoginRole::create_on(C, &mut admin, "placeholder");
    let mut c = role.connect().expect("login");
    // In a fresh session the library is not loaded yet, so this creates a
    // placeholder, which PostgreSQL lets anyone do...
    let set = c.batch_execute("SET aegis.allow_legacy_hashes = on");
    // ...but once the library defines the GUC as superuser-only, the
    // placeholder's value must not survive for a non-superuser.
    let e = c
        .query_one("SELECT aegis.digest('abc', 'md5')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023", "SET result was {set:?}");
    let v: String = c
        .query_one("SHOW aegis.allow_legacy_hashes", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, "off");
    drop(c);
    role.drop_with(&mut admin);
}

#[test]
fn superuser_placeholder_survives_load() {
    // A fresh superuser session: set before the library loads, then use it.
    let _ = superuser_on(C); // database and extensions exist
    let mut c = aegis_integration::superuser_to(C, aegis_integration::DB);
    c.batch_execute("SET aegis.allow_legacy_hashes = on")
        .unwrap();
    let same: bool = c
        .query_one(
            "SELECT aegis.digest('abc', 'md5') = digest('abc', 'md5')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same);
}
