//! The example plugin is available in a gateway build that links it, with no gateway edit.

use serde_json::Value;
use waav_example_morse as _;
use waav_gateway::config::GatewayConfig;
use waav_gateway::Gateway;

#[test]
fn the_custom_binary_lists_the_plugin() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waav-gateway-morse"))
        .arg("plugins")
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.contains("morse")).expect(&table);
    assert!(
        row.starts_with("tts") && row.contains("Morse Code") && row.contains("cw"),
        "{row}"
    );
}

#[tokio::test]
async fn plugins_route_lists_the_plugin_and_its_config_is_applied() {
    let env = |_: &str| None;
    let cfg = GatewayConfig::from_sources(
        Some("plugins:\n  tts:\n    cw: { unit_ms: 0 }\n"),
        &env,
        &Default::default(),
    )
    .unwrap();
    let gateway = Gateway::start(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    let body: Value = reqwest::get(format!("http://{addr}/plugins"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let morse = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "morse")
        .expect("morse listed");
    assert_eq!(morse["kind"], "tts");
    // unit_ms: 0 is rejected by the plugin's init, reached through its alias `cw`.
    assert_eq!(morse["state"]["state"], "failed");
    assert!(morse["state"]["reason"]
        .as_str()
        .unwrap()
        .contains("plugins.tts.cw"));
}
