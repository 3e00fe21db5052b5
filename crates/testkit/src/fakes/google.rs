//! The Google Cloud fake (Speech-to-Text v2 `StreamingRecognize`, Text-to-Speech v1 and the
//! OAuth2 token endpoint) is a tonic gRPC server and lives with its plugin, in
//! `crates/providers/google/tests/fake/`: the generated `googleapis-tonic-*` crates ship no
//! server stubs, so the fake needs tonic's server features, tonic-prost and the googleapis
//! crates, which would otherwise be built by every crate that uses this testkit.
