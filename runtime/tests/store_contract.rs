//! The user store contract, run through the `UserStore` trait against both backends: SQLite
//! (a temporary file) and PostgreSQL (a fresh database on the server `$VRF_TEST_POSTGRES_URL`
//! names; `scripts/with-postgres.sh` starts a throw-away one). Without that variable the
//! PostgreSQL half is skipped, unless `VRF_REQUIRE_POSTGRES=1` (the test script), where it fails.
//! Then PostgreSQL-only promises: migrations, a damaged row, the password kept out of errors,
//! bounded failure when the server is unreachable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vrf_format::manifest::Pooling;
use vrf_format::{ModelError, UserState};
use vrf_runtime::serve::{
    export_users, import_users, PgOptions, PgStore, SqliteStore, StoreError, StoredUser, UserStore,
};

const D: usize = 3;

/// The admin URL of the test server, or `None` (skip) when there is none and none is required.
fn admin_url() -> Option<String> {
    match std::env::var("VRF_TEST_POSTGRES_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var("VRF_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("VRF_REQUIRE_POSTGRES=1 but VRF_TEST_POSTGRES_URL is unset: run under scripts/with-postgres.sh")
        }
        Err(_) => {
            eprintln!("skipping the PostgreSQL half: VRF_TEST_POSTGRES_URL is unset");
            None
        }
    }
}

/// Runs `sql` on the database `url` names (test set-up only).
fn psql(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = task.await;
    });
}

/// A new, empty database on the test server; its URL.
fn fresh_database(admin: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "vrf_contract_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    psql(admin, &format!("CREATE DATABASE {name}"));
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Opens stores of one backend: the same location each call, for the model `digest`.
trait Backend {
    fn open(&self, digest: &str) -> Result<Box<dyn UserStore>, StoreError>;
    fn name(&self) -> &'static str;
}

struct Sqlite(tempfile::TempDir);
impl Backend for Sqlite {
    fn open(&self, digest: &str) -> Result<Box<dyn UserStore>, StoreError> {
        let path = self.0.path().join("u.sqlite");
        Ok(Box::new(SqliteStore::open(path, digest, Pooling::Pog, D)?))
    }
    fn name(&self) -> &'static str {
        "sqlite"
    }
}

struct Postgres(String);
impl Backend for Postgres {
    fn open(&self, digest: &str) -> Result<Box<dyn UserStore>, StoreError> {
        Ok(Box::new(PgStore::connect(
            &self.0,
            digest,
            Pooling::Pog,
            D,
            &PgOptions::default(),
        )?))
    }
    fn name(&self) -> &'static str {
        "postgres"
    }
}

/// A new location of each backend available here.
fn backends() -> Vec<Box<dyn Backend>> {
    let mut b: Vec<Box<dyn Backend>> = vec![Box::new(Sqlite(tempfile::tempdir().unwrap()))];
    if let Some(admin) = admin_url() {
        b.push(Box::new(Postgres(fresh_database(&admin))));
    }
    b
}

/// The error of an open that must fail.
fn refused(r: Result<Box<dyn UserStore>, StoreError>) -> StoreError {
    match r {
        Ok(_) => panic!("the store opened; it should have been refused"),
        Err(e) => e,
    }
}

fn state(count: usize, v: f32) -> UserState {
    UserState {
        pooling: Pooling::Pog,
        count,
        a: vec![v; D],
        b: vec![-v; D],
    }
}

fn add_one(old: Option<&StoredUser>) -> Result<UserState, StoreError> {
    let c = old.map_or(0, |o| o.state.count);
    Ok(state(c + 1, (c + 1) as f32))
}

#[test]
fn updates_persist_across_reopen_and_delete_forgets() {
    for b in backends() {
        let n = b.name();
        {
            let s = b.open("abc").unwrap();
            assert!(s.get("u1").unwrap().is_none(), "{n}");
            assert!(s.is_empty().unwrap(), "{n}");
            s.update("u1", &mut add_one).unwrap();
            let u = s.update("u1", &mut add_one).unwrap();
            assert_eq!(u.state, state(2, 2.0), "{n}");
            assert!(u.updated_at_ms >= u.created_at_ms, "{n}");
            s.update("u2", &mut add_one).unwrap();
            assert_eq!(s.len().unwrap(), 2, "{n}");
            s.ping().unwrap();
        }
        let s = b.open("abc").unwrap();
        let u1 = s.get("u1").unwrap().unwrap();
        assert_eq!(u1.state, state(2, 2.0), "{n}");
        assert!(s.delete("u1").unwrap(), "{n}");
        assert!(!s.delete("u1").unwrap(), "{n}");
        assert!(s.get("u1").unwrap().is_none(), "{n}");
        assert_eq!(s.len().unwrap(), 1, "{n}");
    }
}

#[test]
fn a_failed_update_writes_nothing() {
    for b in backends() {
        let n = b.name();
        let s = b.open("abc").unwrap();
        s.update("u", &mut add_one).unwrap();
        let e = s
            .update("u", &mut |_| {
                Err(ModelError::StateMismatch {
                    message: "no".into(),
                }
                .into())
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Update(_)), "{n}: {e}");
        let e = s
            .update("u", &mut |_| Ok(UserState::empty(Pooling::Pog, 2)))
            .unwrap_err();
        assert!(e.to_string().contains("latent dimension"), "{n}: {e}");
        // A new user whose first update fails is not created either.
        let e = s
            .update("new", &mut |_| Err(StoreError::Expired))
            .unwrap_err();
        assert!(matches!(e, StoreError::Expired), "{n}: {e}");
        assert!(s.get("new").unwrap().is_none(), "{n}");
        assert_eq!(s.get("u").unwrap().unwrap().state, state(1, 1.0), "{n}");
    }
}

#[test]
fn another_models_store_is_refused_naming_both_digests() {
    for b in backends() {
        let n = b.name();
        b.open("abc").unwrap();
        let e = refused(b.open("def"));
        assert!(matches!(e, StoreError::Foreign { .. }), "{n}: {e}");
        let t = e.to_string();
        assert!(t.contains("abc") && t.contains("def"), "{n}: {t}");
    }
}

#[test]
fn two_stores_on_one_location_lose_no_update() {
    for b in backends() {
        let n = b.name();
        // Two stores stand for two replicas: only the database serialises them. The first
        // update of the user races too (no row to lock yet).
        let stores = [b.open("abc").unwrap(), b.open("abc").unwrap()];
        std::thread::scope(|scope| {
            for s in &stores {
                for _ in 0..3 {
                    scope.spawn(move || {
                        for _ in 0..15 {
                            s.update("u", &mut add_one).unwrap();
                        }
                    });
                }
            }
        });
        let u = stores[1].get("u").unwrap().unwrap();
        assert_eq!(u.state, state(90, 90.0), "{n}");
    }
}

#[test]
fn export_import_round_trips_exactly_between_backends() {
    let bs = backends();
    // Awkward values: subnormal (in `b`), tiny, huge, negative zero; ids whose byte order matters.
    let values = [1.0e-30f32, 3.0e-8, 1.234_567_9e30, 0.1, 1.0 / 3.0, 7.0];
    let mut want = BTreeMap::new();
    for (i, id) in ["b", "a", "A", "é", "a.b", "user-10", "user-9"]
        .iter()
        .enumerate()
    {
        let v = values[i % values.len()];
        let u = StoredUser {
            state: UserState {
                pooling: Pooling::Pog,
                count: i * 7 + 1,
                a: vec![v, v * 2.0, v / 3.0],
                b: vec![-0.0, -v, 1.0e-40],
            },
            created_at_ms: 1_700_000_000_000 + i as i64,
            updated_at_ms: 1_800_000_000_000 - i as i64,
        };
        want.insert(id.to_string(), u);
    }
    let bits = |u: &StoredUser| {
        let f = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        (
            f(&u.state.a),
            f(&u.state.b),
            u.state.count,
            u.created_at_ms,
            u.updated_at_ms,
        )
    };
    // Every ordered pair of backends (and each with itself): source → JSONL → destination.
    for src in &bs {
        let s = src.open("abc").unwrap();
        for (id, u) in &want {
            s.put(id, u).unwrap();
        }
        let mut order = Vec::new();
        s.for_each(&mut |id, _| {
            order.push(id.to_string());
            Ok(())
        })
        .unwrap();
        // Byte order of the ids, the same on both backends.
        let sorted: Vec<String> = want.keys().cloned().collect();
        assert_eq!(order, sorted, "{}", src.name());
        let mut jsonl = Vec::new();
        let n = export_users(s.as_ref(), "abc", Pooling::Pog, D, &mut jsonl, "mem").unwrap();
        assert_eq!(n as usize, want.len());
        for dst in backends() {
            let t = dst.open("abc").unwrap();
            let n = import_users(t.as_ref(), "abc", &mut jsonl.as_slice(), "mem").unwrap();
            assert_eq!(n as usize, want.len());
            for (id, u) in &want {
                let got = t.get(id).unwrap().unwrap();
                assert_eq!(bits(&got), bits(u), "{} → {}: {id}", src.name(), dst.name());
            }
            // Exporting the copy gives the same bytes.
            let mut again = Vec::new();
            export_users(t.as_ref(), "abc", Pooling::Pog, D, &mut again, "mem").unwrap();
            assert_eq!(again, jsonl, "{} → {}", src.name(), dst.name());
            // Another model's store refuses the file, naming both digests.
            let other = dst.open("abc").unwrap();
            let e = import_users(other.as_ref(), "zzz", &mut jsonl.as_slice(), "users.jsonl")
                .unwrap_err();
            let t = e.to_string();
            assert!(
                t.contains("abc") && t.contains("zzz") && t.contains("users.jsonl"),
                "{t}"
            );
        }
    }
}

#[test]
fn a_bad_import_line_is_named() {
    let b = Sqlite(tempfile::tempdir().unwrap());
    let s = b.open("abc").unwrap();
    let header = r#"{"vrf_users":1,"model_digest":"abc","pooling":"pog","d":3}"#;
    let good = r#"{"id":"u","pooling":"pog","count":1,"a":["1","1","1"],"b":["0","0","0"],"created_at_ms":1,"updated_at_ms":2}"#;
    let cases = [
        (format!("{header}\n{good}\n{{\"id\":\"v\"}}\n"), "line 3"),
        (
            format!(
                "{header}\n{}",
                good.replace(r#"["1","1","1"]"#, r#"["1","1"]"#)
            ),
            "line 2",
        ),
        (
            format!(
                "{header}\n{}",
                good.replace(r#"["1","1","1"]"#, r#"["x","1","1"]"#)
            ),
            "line 2",
        ),
        ("{\"x\":1}\n".to_string(), "line 1"),
        (String::new(), "empty file"),
    ];
    for (text, want) in cases {
        let e = import_users(s.as_ref(), "abc", &mut text.as_bytes(), "in.jsonl").unwrap_err();
        let t = e.to_string();
        assert!(t.contains("in.jsonl") && t.contains(want), "{want}: {t}");
    }
}

/// `url` with its password replaced.
fn with_password(url: &str, password: &str, new: &str) -> String {
    url.replacen(&format!(":{password}@"), &format!(":{new}@"), 1)
}

#[test]
fn postgres_migrations_damaged_rows_and_secrets() {
    let Some(admin) = admin_url() else { return };
    let url = fresh_database(&admin);
    let p = Postgres(url.clone());
    let s = p.open("abc").unwrap();
    s.update("u", &mut add_one).unwrap();
    // The layout is recorded as applied migrations; a second start applies nothing.
    drop(p.open("abc").unwrap());
    psql(
        &url,
        "DO $$ BEGIN IF (SELECT string_agg(version::text, ',') FROM vrf_schema_migrations) \
         <> '1' THEN RAISE EXCEPTION 'migrations'; END IF; END $$",
    );

    // A hand-edited row is reported, not served.
    psql(&url, "UPDATE vrf_users SET a = '\\x0000' WHERE id = 'u'");
    let e = s.get("u").unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");

    // A store written by a newer build is refused, naming the versions.
    psql(
        &url,
        "INSERT INTO vrf_schema_migrations (version, name) VALUES (99, 'future')",
    );
    let e = refused(p.open("abc"));
    assert!(e.to_string().contains("99"), "{e}");

    // The password is never in an error: a wrong one, and the right one on a wrong database.
    if let Ok(password) = std::env::var("VRF_TEST_POSTGRES_PASSWORD") {
        let wrong = with_password(&admin, &password, "not-the-password-xyz");
        let e = refused(Postgres(wrong).open("abc")).to_string();
        assert!(!e.contains("not-the-password-xyz"), "{e}");
        let (base, _) = admin.rsplit_once('/').unwrap();
        let e = refused(Postgres(format!("{base}/no_such_db")).open("abc"));
        let t = format!("{e} {e:?}");
        assert!(!t.contains(&password) && t.contains("no_such_db"), "{t}");
        let store = PgStore::connect(&url, "abc", Pooling::Pog, D, &PgOptions::default());
        assert!(store.is_err()); // the newer layout above
        #[cfg(not(feature = "postgres-tls"))]
        let e = PgStore::connect(
            &format!("{url}?sslmode=require"),
            "abc",
            Pooling::Pog,
            D,
            &PgOptions::default(),
        )
        .unwrap_err()
        .to_string();
        #[cfg(not(feature = "postgres-tls"))]
        assert!(e.contains("TLS") && !e.contains(&password), "{e}");
    }
}

#[test]
fn an_unreachable_server_fails_fast_as_unavailable() {
    // A loopback port nobody listens on: refused at once, never a hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://vrf:secret-pw-123@127.0.0.1:{port}/x");
    let started = Instant::now();
    let e = PgStore::connect(&url, "abc", Pooling::Pog, D, &PgOptions::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let t = format!("{e} {e:?}");
    assert!(!t.contains("secret-pw-123"), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{port}")), "{t}");
}

/// With the `postgres-tls` feature, `sslmode=require` connects over TLS (the role may only
/// connect over TLS), verifying the server against `$PGSSLROOTCERT`.
#[cfg(feature = "postgres-tls")]
#[test]
fn tls_when_the_url_asks_for_it() {
    let Some(admin) = admin_url() else { return };
    let Ok(tls_url) = std::env::var("VRF_TEST_POSTGRES_TLS_URL") else {
        panic!("VRF_TEST_POSTGRES_TLS_URL is unset (scripts/with-postgres.sh needs openssl)");
    };
    let db = fresh_database(&admin);
    let (_, name) = db.rsplit_once('/').unwrap();
    psql(&admin, &format!("ALTER DATABASE {name} OWNER TO vrf_tls"));
    let (base, _) = tls_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}?sslmode=require");
    let s = Postgres(url).open("abc").unwrap();
    s.update("u", &mut add_one).unwrap();
    assert_eq!(s.get("u").unwrap().unwrap().state.count, 1);
    // Without TLS the same role is refused: the store above did use TLS.
    let e = refused(Postgres(format!("{base}/{name}?sslmode=disable")).open("abc"));
    assert!(
        e.to_string().contains("28000") || e.to_string().contains("pg_hba"),
        "{e}"
    );
}
