//! The HTTP API's OpenAPI document passes a real validator
//! (`openapi-spec-validator`, which `make test` installs into
//! `.tools/requirements-test`): a 3.0.3 document with 3.1 syntax in it
//! (`"type": ["string", "null"]`) did not (issue 14, point 13).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_openapi_document_is_valid_openapi_3_0() {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/requirements-test/bin/openapi-spec-validator");
    assert!(
        bin.exists(),
        "openapi-spec-validator is not installed: run `make test`, or ./scripts/with-tools infra/requirements-test.txt true"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&api::openapi::document()).unwrap()).unwrap();
    let out = Command::new(bin).arg(&file).output().expect("running openapi-spec-validator");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
