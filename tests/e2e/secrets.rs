//! No secret in the logs: a full rotation with debug logging everywhere
//! (the handler, `reqwest`, `hyper`, `azure_core`), with throttling, a failed
//! write and a status poll that fails on the way, in text and in JSON, and
//! not one line carries a token, an `Authorization` header or the
//! identity header's value.

use standin::azure::{ARM_TOKEN, FakeAzure, Fault, VAULT_TOKEN};

use crate::support::*;

#[tokio::test]
async fn no_token_or_identity_header_value_appears_in_any_log_line() {
    for format in ["text", "json"] {
        let w = World::start_with(&[("RUST_LOG", "debug"), ("CMK_LOG_FORMAT", format)]).await;
        w.add_version(&v(1));
        let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
        w.add_server("contoso-pg-02", &key_uri(&v(1)));
        w.add_version(&v(2));
        w.azure
            .inject(Fault::throttled(Some("GET"), "/keys/pg-cmk", "0"));
        w.azure
            .inject(Fault::status(Some("PATCH"), "contoso-pg-01", 500));
        w.azure
            .inject(Fault::status(Some("GET"), "azureAsyncOperation", 500));
        w.azure
            .inject(Fault::status(Some("GET"), "/msi/token", 500));

        w.deliver(&new_version_event("e-1", &v(2))).await;
        w.deliver(&new_version_event("e-1", &v(2))).await;
        w.drain().await;
        assert_eq!(
            w.encryption(&id, "primaryKeyURI"),
            key_uri(&v(2)),
            "{format}"
        );

        let logs = w.host.logs();
        assert!(
            logs.iter().any(|l| l.contains("azure call")),
            "{format}: debug logging is on"
        );
        let secrets = [VAULT_TOKEN, ARM_TOKEN, FakeAzure::IDENTITY_HEADER];
        for line in &logs {
            for secret in secrets {
                assert!(!line.contains(secret), "{format}: secret in {line}");
            }
            assert!(!line.contains("Bearer "), "{format}: bearer in {line}");
            // The identity crate logs request headers at debug with their
            // values redacted; a header name is fine, a value is not.
            for name in ["authorization", "x-identity-header"] {
                assert!(
                    only_redacted(line, name),
                    "{format}: {name} value in {line}"
                );
            }
        }
    }
}

/// Every occurrence of header `name` in `line` is followed by a redacted
/// value (`name: REDACTED` or `"name":"REDACTED"`).
fn only_redacted(line: &str, name: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.match_indices(name).all(|(at, _)| {
        let rest = lower[at + name.len()..].trim_start_matches(['"', ':', ' ', '=']);
        rest.starts_with("redacted") || rest.starts_with("<redacted>")
    })
}
