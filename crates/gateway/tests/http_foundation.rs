//! Foundation routes over a real socket: health, plugins, plugin health, headers, isolation.

mod common;

use common::TestServer;
use serde_json::Value;

#[tokio::test]
async fn health_route_is_exactly_ok_with_security_headers() {
    let server = TestServer::start("").await;
    let res = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.text().await.unwrap(), r#"{"status":"OK"}"#);

    let res = reqwest::get(server.url("/no/such/route")).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let res = reqwest::Client::new()
        .delete(server.url("/plugins"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    server.stop().await;
}

#[tokio::test]
async fn plugins_route_lists_linked_plugins_with_capabilities() {
    let server = TestServer::start("").await;
    let body: Value = reqwest::get(server.url("/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugins = body["plugins"].as_array().unwrap();
    let stt = plugins
        .iter()
        .find(|p| p["id"] == "loopback" && p["kind"] == "stt")
        .expect("loopback stt listed");
    assert_eq!(stt["aliases"][0], "loopback-stt");
    assert_eq!(stt["enabled"], true);
    assert_eq!(stt["state"]["state"], "ready");
    assert_eq!(stt["capabilities"]["interim_results"], true);
    let tts = plugins
        .iter()
        .find(|p| p["id"] == "loopback" && p["kind"] == "tts")
        .unwrap();
    assert_eq!(tts["capabilities"]["voices"][0]["id"], "tone-a4");
}

#[tokio::test]
async fn a_plugin_that_panics_in_init_is_failed_and_the_server_keeps_serving() {
    let server = TestServer::start(
        "plugins:\n  stt:\n    faulty: { panic_on_init: true, required: true }\n",
    )
    .await;
    let res = reqwest::get(server.url("/health/plugins")).await.unwrap();
    assert_eq!(res.status(), 503, "a required plugin is down");
    let body: Value = res.json().await.unwrap();
    let faulty = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "faulty")
        .unwrap();
    assert_eq!(faulty["status"], "failed");
    assert!(faulty["reason"]
        .as_str()
        .unwrap()
        .contains("injected panic in init"));
    let loopback = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "loopback")
        .unwrap();
    assert_eq!(loopback["status"], "healthy");
    // Still serving.
    let res = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(server
        .gateway
        .state()
        .registry
        .stt("loopback", None)
        .is_ok());
    server.stop().await;
}

#[tokio::test]
async fn health_is_200_when_no_required_plugin_is_down() {
    let server = TestServer::start("plugins:\n  stt:\n    faulty: { fail_on_init: true }\n").await;
    let res = reqwest::get(server.url("/health/plugins")).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}
