//! `vrf store export` / `vrf store import` end to end through the binary: SQLite → JSONL →
//! PostgreSQL (when `$VRF_TEST_POSTGRES_URL` names a server; else SQLite → SQLite) → JSONL gives
//! the same bytes; the password never shows in the output; another model's store refuses the
//! file, naming both digests.

use std::path::Path;
use std::process::{Command, Output};

use vrf_format::fixture::{write_features_model_dir, Dims};
use vrf_format::manifest::Manifest;
use vrf_format::UserState;
use vrf_runtime::serve::{SqliteStore, StoredUser, UserStore};

fn vrf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vrf"))
        .args(args)
        .output()
        .unwrap()
}

fn model(dir: &Path, seed: u64) -> Manifest {
    let dims = Dims {
        hidden: 6,
        enc_hidden: 5,
        d: 3,
        k: 2,
    };
    write_features_model_dir(dir, dims, false, 0, seed).unwrap()
}

/// A new database on the test server, or `None` (no server, and none required).
fn postgres() -> Option<String> {
    let Ok(admin) = std::env::var("VRF_TEST_POSTGRES_URL") else {
        assert_ne!(
            std::env::var("VRF_REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "VRF_REQUIRE_POSTGRES=1 but VRF_TEST_POSTGRES_URL is unset"
        );
        return None;
    };
    let name = format!("vrf_cli_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    });
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

#[test]
fn export_import_through_the_cli_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, other_dir) = (tmp.path().join("model"), tmp.path().join("other"));
    let m = model(&dir, 1);
    let other = model(&other_dir, 2);
    assert_ne!(m.digest(), other.digest());
    let src = tmp.path().join("src.sqlite");
    {
        let s = SqliteStore::for_model(&src, &m).unwrap();
        for i in 0..25usize {
            let v = 0.1 + i as f32 / 7.0;
            let u = StoredUser {
                state: UserState {
                    pooling: m.encoder.pooling,
                    count: i + 1,
                    a: vec![v, v * 3.0, v / 11.0],
                    b: vec![-v, 1.0 / v, 0.0],
                },
                created_at_ms: 1_000 + i as i64,
                updated_at_ms: 2_000 + i as i64,
            };
            s.put(&format!("user-{i}"), &u).unwrap();
        }
    }
    let dest = postgres().unwrap_or_else(|| tmp.path().join("dest.sqlite").display().to_string());
    let (a, b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    let s = |p: &Path| p.display().to_string();
    let dir_s = s(&dir);
    let steps: [&[&str]; 3] = [
        &[
            "store",
            "export",
            "--model",
            &dir_s,
            "--store",
            &s(&src),
            "--out",
            &s(&a),
        ],
        &[
            "store",
            "import",
            "--model",
            &dir_s,
            "--store",
            &dest,
            "--input",
            &s(&a),
        ],
        &[
            "store",
            "export",
            "--model",
            &dir_s,
            "--store",
            &dest,
            "--out",
            &s(&b),
        ],
    ];
    for args in steps {
        let out = vrf(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(err.contains("25 users"), "{err}");
        if let Ok(password) = std::env::var("VRF_TEST_POSTGRES_PASSWORD") {
            assert!(!err.contains(&password), "{err}");
        }
    }
    let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 26);
    assert_eq!(a, b, "the round trip changed the export");

    // Another model's store refuses the file, naming both digests; nothing is imported.
    let wrong = tmp.path().join("wrong.sqlite");
    let out = vrf(&[
        "store",
        "import",
        "--model",
        &s(&other_dir),
        "--store",
        &s(&wrong),
        "--input",
        &s(&tmp.path().join("a.jsonl")),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&m.digest()) && err.contains(&other.digest()),
        "{err}"
    );
    let n = SqliteStore::for_model(&wrong, &other)
        .unwrap()
        .len()
        .unwrap();
    assert_eq!(n, 0);
}
