//! The `vrf` binary's error output.

use std::process::Command;

/// A missing model directory: one line naming the file, with the OS error once (not repeated
/// by the error chain).
#[cfg(unix)]
#[test]
fn missing_model_prints_the_os_error_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_vrf"))
        .args(["user", "--model", "/nonexistent/vrf-model", "--seen", "u0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vrf-model/vrf.json"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}
