//! Bad settings are refused at `create` with a config error; the plugins are registered.

mod common;

use common::*;
use serde_json::json;
use waav_plugin_api::{ErrorCategory, Plugin, PluginHandle, PluginKind, ProcessorPlugin};
use waav_processors::{DenoisePlugin, GainPlugin, ResamplePlugin, VadPlugin, PROCESSOR_IDS};

fn refused(p: &dyn ProcessorPlugin, rate: u32, ch: u16, v: serde_json::Value) -> String {
    match p.create(&ctx(rate, ch), &cfg(v.clone())) {
        Ok(_) => panic!("{v} was accepted"),
        Err(e) => {
            assert_eq!(e.category(), ErrorCategory::Config, "{e}");
            let msg = e.to_string();
            assert!(msg.contains("plugins.processors.test.config"), "{msg}");
            msg
        }
    }
}

#[test]
fn bad_configs_are_refused() {
    let r = &ResamplePlugin;
    refused(r, 16_000, 1, json!({}));
    refused(r, 16_000, 1, json!({"to_rate": 7_999}));
    refused(r, 16_000, 1, json!({"to_rate": 1_000_000_000_000u64}));
    refused(r, 16_000, 1, json!({"to_rate": 16_000.5}));
    refused(r, 16_000, 1, json!({"to_rate": "48000"}));
    assert!(refused(r, 16_000, 1, json!({"to_rate": 48_000, "quality": 3})).contains("quality"));

    let v = &VadPlugin;
    refused(v, 16_000, 1, json!({"threshold": 1.5}));
    refused(v, 16_000, 1, json!({"threshold": -0.1}));
    refused(v, 16_000, 1, json!({"min_speech_ms": -1}));
    refused(v, 16_000, 1, json!({"min_silence_ms": 1e12}));
    refused(v, 16_000, 1, json!({"engine": "silero"}));
    refused(
        v,
        16_000,
        1,
        json!({"threshold": 0.5, "neg_threshold": 0.7}),
    );
    refused(v, 16_000, 1, json!({"treshold": 0.5}));

    let d = &DenoisePlugin;
    refused(d, 16_000, 1, json!({"mix": 2}));
    refused(d, 16_000, 1, json!({"strength": 1}));

    let g = &GainPlugin;
    refused(g, 16_000, 1, json!({"gain_db": 100}));
    refused(g, 16_000, 1, json!({"mode": "loud"}));
    refused(g, 16_000, 1, json!({"mode": "agc", "target_dbfs": 3}));
    refused(g, 16_000, 1, json!({"mode": "agc", "max_gain_db": 1e9}));
    refused(g, 16_000, 1, json!({"mode": "agc", "attack_ms": 0}));
    // A fixed-mode setting in AGC mode (and vice versa) is a mistake worth reporting.
    refused(g, 16_000, 1, json!({"mode": "agc", "gain_db": 6}));
    refused(g, 16_000, 1, json!({"mode": "fixed", "target_dbfs": -20}));

    // Audio layouts outside 8–192 kHz, 1–8 channels.
    for p in [r as &dyn ProcessorPlugin, v, d, g] {
        let ok = if p.info().id == "resample" {
            json!({"to_rate": 16_000})
        } else {
            json!({})
        };
        refused(p, 4_000, 1, ok.clone());
        refused(p, 400_000, 1, ok.clone());
        refused(p, 16_000, 0, ok.clone());
        refused(p, 16_000, 9, ok.clone());
        assert!(p.create(&ctx(16_000, 2), &cfg(ok)).is_ok());
    }
}

#[test]
fn good_configs_are_accepted() {
    let c = |v| cfg(v);
    assert!(VadPlugin
        .create(
            &ctx(16_000, 1),
            &c(
                json!({"engine": "earshot", "threshold": 0.6, "min_speech_ms": 50,
                     "min_silence_ms": 500, "pre_speech_pad_ms": 200})
            )
        )
        .is_ok());
    assert!(GainPlugin
        .create(
            &ctx(48_000, 2),
            &c(json!({"mode": "AGC", "target_dbfs": -18, "max_gain_db": 20,
                     "attack_ms": 5, "release_ms": 800, "limit_dbfs": -0.5}))
        )
        .is_ok());
    assert!(ResamplePlugin
        .create(&ctx(44_100, 2), &c(json!({"to_rate": 16000.0})))
        .is_ok());
    assert!(DenoisePlugin
        .create(&ctx(22_050, 1), &c(json!({"mix": 0.8})))
        .is_ok());
}

#[test]
fn all_four_are_registered_as_processors() {
    let mut found = Vec::new();
    for r in waav_plugin_api::registrations() {
        let h = (r.create)();
        if let PluginHandle::Processor(p) = &h {
            assert_eq!(h.kind(), PluginKind::Processor);
            assert!(!p.stages().is_empty());
            found.push(p.info().id);
        }
    }
    for id in PROCESSOR_IDS {
        assert!(found.contains(&id), "{id} not registered: {found:?}");
    }
    assert!(VadPlugin.info().aliases.contains(&"earshot"));
}
